package loyalty_test

import (
	"slices"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
)

// TestOrderCore: what agent and hub both derive from an order's entries.
func TestOrderCore(t *testing.T) {
	earn := loyalty.Delta{ID: "d1", Kind: loyalty.KindEarn, Points: 12, RuleVersion: 3, Punches: map[string]int64{"espresso": 2}}
	coffee := loyalty.Delta{ID: "d2", Kind: loyalty.KindRedeem, Points: -50, Reward: "coffee", RuleVersion: 3}
	tote := loyalty.Delta{ID: "d3", Kind: loyalty.KindRedeem, Points: -250, Reward: "tote", RuleVersion: 3}
	undone := loyalty.Delta{ID: "d4", Kind: loyalty.KindReverse, Points: 250, Reverses: "d3"}
	es := []loyalty.OrderEntry{{Delta: earn}, {Delta: coffee}, {Delta: tote, Reversed: true}, {Delta: undone}}

	if got := loyalty.StandingRewards(es); !slices.Equal(got, []string{"coffee"}) {
		t.Errorf("standing rewards %v, want [coffee] (tote was reversed)", got)
	}
	var ids []string
	for _, d := range loyalty.ToReverse(es) {
		ids = append(ids, d.ID)
	}
	if !slices.Equal(ids, []string{"d1", "d2"}) {
		t.Errorf("a refund undoes %v, want [d1 d2]", ids)
	}
	r := loyalty.Delta{ID: "r1", Member: "m1"}
	r.Undo(earn)
	if r.Kind != loyalty.KindReverse || r.Reverses != "d1" || r.Points != -12 || r.RuleVersion != 3 || r.Punches["espresso"] != -2 || r.ID != "r1" || r.Member != "m1" {
		t.Errorf("undo of %+v gave %+v", earn, r)
	}
	if earn.Punches["espresso"] != 2 {
		t.Error("Undo changed the original's punches")
	}
}
