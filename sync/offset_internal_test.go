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
	if got := o.add(400*ms, -200*ms); got != -1*ms {
		t.Errorf("after a slow round trip: %s, want the quick one's -1ms", got)
	}
	if got := o.add(1*ms, 3*ms); got != 3*ms {
		t.Errorf("after a quicker round trip: %s, want its 3ms", got)
	}
	if got := o.add(1*ms, 4*ms); got != 4*ms {
		t.Errorf("after one as quick: %s, want the newer 4ms", got)
	}
	for i := range offsetWindow - 1 {
		if got := o.add(50*ms, 40*ms); got != 4*ms {
			t.Fatalf("after %d slower ones: %s, want 4ms still", i+1, got)
		}
	}
	if got := o.add(50*ms, 41*ms); got != 41*ms {
		t.Errorf("once the quick ones aged out: %s, want the newest of the equals, 41ms", got)
	}
	if got := o.add(-time.Second, 7*ms); got != 7*ms { // a clock that went back: no round trip is shorter than none
		t.Errorf("a negative round trip: %s, want its 7ms", got)
	}
}
