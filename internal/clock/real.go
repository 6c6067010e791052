//go:build !fakeclock

package clock

import "time"

// Fake reports whether this binary was built with the fakeclock tag.
const Fake = false

func now() time.Time { return time.Now() }
