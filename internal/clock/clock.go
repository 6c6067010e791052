// Package clock is the time the loyalty binary runs on: the machine's clock, except in a binary
// built with the fakeclock tag for end-to-end tests, where every process reads the same clock
// and a test moves it forward (an eight-hour outage in seconds). Only business time goes
// through it: lease deadlines, offline validity, when a sale happened. Network liveness
// (heartbeats, read deadlines) stays on the machine's clock.
package clock

import "time"

// Env names, in a fakeclock build, the file that holds how far the test has moved the clock ahead
// of the machine's, as a Go duration ("8h"). Every process given the same file runs on the same
// clock; no file, or an unreadable one, is no offset. A test replaces the file's content at once
// (write, then rename). Other builds ignore it.
const Env = "LOYALTY_FAKE_CLOCK_FILE"

// Now returns the current time: time.Now, or the shared test clock in a fakeclock build. It keeps
// time.Now's monotonic reading either way, so a wall-clock change never stretches a lease.
func Now() time.Time { return now() }
