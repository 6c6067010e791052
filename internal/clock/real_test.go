//go:build !fakeclock

package clock

import (
	"testing"
	"time"
)

func TestRealClock(t *testing.T) {
	if Fake {
		t.Fatal("a build without the fakeclock tag has a fake clock")
	}
	a := time.Now()
	if d := Now().Sub(a); d < 0 || d > time.Minute {
		t.Fatalf("Now is %s from time.Now", d)
	}
}
