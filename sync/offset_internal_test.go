package sync

import (
	"testing"
	"time"
)

// offsetSamples takes the measurement of the hub's clock with the shortest round trip of the
// last offsetWindow: one slow round trip (the agent's goroutine waited for a core) no longer moves
// the offset the agent dates its changes by, until the good measurement ages out.
func TestOffsetSamples_ShortestRoundTrip(t *testing.T) {
	ms := time.Millisecond
	var o offsetSamples
	if got := o.add(2*ms, -1*ms); got != -1*ms {
		t.Errorf("the first measurement: %s, want -1ms", got)
	}
	if got := o.add(400*ms, -150*ms); got != -1*ms {
		t.Errorf("after a slow round trip: %s, want the quick one's -1ms", got)
	}
	if got := o.add(1*ms, 0); got != 0 {
		t.Errorf("after a quicker round trip: %s, want its 0ms", got)
	}
	if got := o.add(1*ms, 1*ms); got != 1*ms {
		t.Errorf("after one as quick: %s, want the newer 1ms", got)
	}
	for i := range offsetWindow - 1 {
		if got := o.add(50*ms, 20*ms); got != 1*ms {
			t.Fatalf("after %d slower ones: %s, want 1ms still", i+1, got)
		}
	}
	if got := o.add(50*ms, 21*ms); got != 21*ms {
		t.Errorf("once the quick ones aged out: %s, want the newest of the equals, 21ms", got)
	}
}

// A clock set during a session (a till that booted with its clock a quarter of an hour behind,
// then NTP stepped it; the hub's clock set right): the next measurement's bounds do not meet the
// best one's, and the offset follows at once, not after the old measurements age out. Even a
// small step is seen when the round trips are short. A round trip that comes out negative (a
// clock set back during it) is used as it is and kept by none.
func TestOffsetSamples_ClockSet(t *testing.T) {
	ms := time.Millisecond
	var o offsetSamples
	o.add(1*ms, 15*time.Minute) // the welcome, with the till's clock behind
	if got := o.add(3*ms, 0); got != 0 {
		t.Errorf("after the till's clock was set: %s, want the new 0s", got)
	}
	for range offsetWindow {
		o.add(40*ms, 10*ms)
	}
	if got := o.add(2*ms, -40*ms); got != -40*ms {
		t.Errorf("after a step of 50ms measured in 2ms: %s, want -40ms", got)
	}
	if got := o.add(-time.Second, 7*ms); got != 7*ms {
		t.Errorf("a negative round trip: %s, want its 7ms", got)
	}
	if got := o.add(30*ms, 20*ms); got != 20*ms {
		t.Errorf("after it: %s, want the next measurement's 20ms (the negative one is not kept)", got)
	}
}
