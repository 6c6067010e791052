// Package unixms is how the hub's storage backends (hub/sqlite, hub/postgres) keep times: Unix
// milliseconds in integer columns, 0 for the zero time, and the largest integer for "no end".
package unixms

import (
	"math"
	"time"
)

// Of returns t in Unix milliseconds; the zero time is 0.
func Of(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// Time returns the UTC time of v Unix milliseconds; 0 is the zero time.
func Time(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// Until returns the exclusive end of a period in milliseconds: a zero time has no end.
func Until(t time.Time) int64 {
	if t.IsZero() {
		return math.MaxInt64
	}
	return Of(t)
}
