//go:build fakeclock

package clock

import (
	"os"
	"strings"
	"time"
)

// Fake reports whether this binary was built with the fakeclock tag.
const Fake = true

func now() time.Time {
	return time.Now().Add(offset()) // Add keeps the monotonic reading
}

func offset() time.Duration {
	name := os.Getenv(Env)
	if name == "" {
		return 0
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return 0
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return d
}
