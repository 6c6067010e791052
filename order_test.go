package loyalty_test

import (
	"encoding/binary"
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
	es := []loyalty.OrderEntry{{Delta: earn}, {Delta: coffee}, {Delta: tote, Reversals: []loyalty.Delta{undone}}, {Delta: undone}}

	if got := loyalty.StandingRewards(es); !slices.Equal(got, []string{"coffee"}) {
		t.Errorf("standing rewards %v, want [coffee] (tote was reversed)", got)
	}
	var ids []string
	for _, e := range loyalty.ToReverse(es) {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, []string{"d1", "d2"}) {
		t.Errorf("a refund undoes %v, want [d1 d2]", ids)
	}
	r := loyalty.Delta{ID: "r1", Member: "m1"}
	r.Undo(loyalty.OrderEntry{Delta: earn})
	if r.Kind != loyalty.KindReverse || r.Reverses != "d1" || r.Points != -12 || r.RuleVersion != 3 || r.Punches["espresso"] != -2 || r.ID != "r1" || r.Member != "m1" {
		t.Errorf("undo of %+v gave %+v", earn, r)
	}
	if earn.Punches["espresso"] != 2 {
		t.Error("Undo changed the original's punches")
	}
}

// A sale of 100.00 earning 7 points (and 3 espresso punches) refunded in three parts: 33.33,
// then one espresso line of 10.00, then the rest in full. Each part takes its share of the points
// rounded down over the running total, so the parts never take more than the sale earned and
// the last takes exactly the rest; the espresso line takes back its punch only.
func TestRefundParts(t *testing.T) {
	p := loyalty.DefaultProgram()
	p.PunchCards = []loyalty.PunchCard{{ID: "espresso", Name: "Espresso card", SKU: "espresso", Buy: 5, Reward: "coffee"}}
	sale := loyalty.Delta{ID: "d1", Kind: loyalty.KindEarn, Points: 7, Amount: 10000, Currency: "EUR", RuleVersion: 2,
		Punches: map[string]int64{"espresso": 3}}
	e := loyalty.OrderEntry{Delta: sale}

	var r1 loyalty.Delta
	if err := r1.RefundPart(e, loyalty.Refund{Amount: 3333}, p.PunchCardsOf()); err != nil {
		t.Fatal(err)
	}
	if r1.Points != -2 || r1.Amount != 3333 || r1.Reverses != "d1" || r1.Kind != loyalty.KindReverse || len(r1.Punches) != 0 {
		t.Errorf("refund of 33.33 of 100.00 (7 points): %+v; want -2 points (floor 2.33), no punches", r1)
	}
	e.Reversals = append(e.Reversals, r1)

	var r2 loyalty.Delta
	lines := []loyalty.Line{{SKU: "espresso", Qty: 1, Amount: 1000}}
	if err := r2.RefundPart(e, loyalty.Refund{Amount: 1000, Lines: lines}, p.PunchCardsOf()); err != nil {
		t.Fatal(err)
	}
	if r2.Points != -1 || r2.Punches["espresso"] != -1 { // floor(7×4333/10000)=3, less 2 taken
		t.Errorf("refund of one espresso line: %+v; want -1 point, -1 espresso punch", r2)
	}
	if err := loyalty.CheckRefund(e, r2); err != nil {
		t.Errorf("the hub refuses what the store computed: %v", err)
	}
	forged := r2
	forged.Points = -3
	if err := loyalty.CheckRefund(e, forged); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("a refund taking 3 points for its 1 passed the check: %v", err)
	}
	greedy := r2
	greedy.Punches = map[string]int64{"espresso": -4}
	if err := loyalty.CheckRefund(e, greedy); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("a refund taking 4 punches of the 3 left passed the check: %v", err)
	}
	e.Reversals = append(e.Reversals, r2)

	if left := e.Left(); left.Amount != 5667 || left.Points != 4 || left.Punches["espresso"] != 2 || left.None {
		t.Errorf("left after two refunds: %+v; want 5667, 4 points, 2 punches", left)
	}
	var tooMuch loyalty.Delta
	if err := tooMuch.RefundPart(e, loyalty.Refund{Amount: 5668}, p.PunchCardsOf()); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("a refund of more than is left: %v; want EINVALID", err)
	}
	var rest loyalty.Delta
	rest.Undo(e)
	if rest.Points != -4 || rest.Punches["espresso"] != -2 || rest.Amount != 0 {
		t.Errorf("the full refund of the rest: %+v; want -4 points, -2 punches", rest)
	}
	if err := loyalty.CheckRefund(e, rest); err != nil {
		t.Errorf("the hub refuses the full refund of the rest: %v", err)
	}
	e.Reversals = append(e.Reversals, rest)
	if !e.Reversed() || len(loyalty.ToReverse([]loyalty.OrderEntry{e})) != 0 {
		t.Error("an order refunded in full still has something to reverse")
	}
	var late loyalty.Delta
	if err := late.RefundPart(e, loyalty.Refund{Amount: 1}, p.PunchCardsOf()); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Errorf("a partial refund after the full one: %v; want ECONFLICT", err)
	}
	redeem := loyalty.OrderEntry{Delta: loyalty.Delta{ID: "d2", Kind: loyalty.KindRedeem, Points: -50, Reward: "coffee"}}
	if err := late.RefundPart(redeem, loyalty.Refund{Amount: 100}, p.PunchCardsOf()); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("a partial refund of a redemption: %v; want EINVALID", err)
	}
}

// FuzzRefundParts: however a sale is refunded in parts, the parts take back at most what it
// earned, each what the running total says, and refunding it all takes back exactly all of it.
func FuzzRefundParts(f *testing.F) {
	f.Add(int64(7), int64(10000), []byte{1, 2, 3})
	f.Add(int64(1_000_000_000_000), int64(1_000_000_000_000), []byte{255, 0, 7, 9})
	f.Add(int64(0), int64(1), []byte{})
	f.Fuzz(func(t *testing.T, points, amount int64, cuts []byte) {
		if points < 0 || points > loyalty.MaxPoints || amount <= 0 || amount > loyalty.MaxAmount {
			t.Skip()
		}
		e := loyalty.OrderEntry{Delta: loyalty.Delta{ID: "d1", Kind: loyalty.KindEarn, Points: points, Amount: amount, Currency: "EUR"}}
		none := func(loyalty.Line) []string { return nil }
		var taken, refunded int64
		for len(cuts) >= 2 && refunded < amount {
			part := 1 + int64(binary.BigEndian.Uint16(cuts))%(amount-refunded)
			cuts = cuts[2:]
			var r loyalty.Delta
			if err := r.RefundPart(e, loyalty.Refund{Amount: part}, none); err != nil {
				t.Fatalf("refund of %d with %d left: %v", part, amount-refunded, err)
			}
			if err := loyalty.CheckRefund(e, r); err != nil {
				t.Fatalf("the check refuses the refund it computes: %v", err)
			}
			taken, refunded = taken-r.Points, refunded+part
			if taken > points || taken < 0 {
				t.Fatalf("refunds took %d of %d points", taken, points)
			}
			e.Reversals = append(e.Reversals, r)
		}
		var rest loyalty.Delta
		if !e.Reversed() {
			rest.Undo(e)
		}
		if taken-rest.Points != points {
			t.Fatalf("refunded in full, %d points taken back of %d", taken-rest.Points, points)
		}
	})
}
