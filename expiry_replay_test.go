package loyalty_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// replayWorld is one member's ledger as a hub builds it: changes arrive (some late, as from a
// store that was offline), a sweep runs every six hours, and every change that can make an
// expiry wrong (dated at or before the last expiry, or taking points back from a lot) is
// followed by the give-back ExpiryReplay computes, as the hub's apply does.
type replayWorld struct {
	rule      *loyalty.Expiry
	ledger    []loyalty.ExpiryEntry
	expiredAt time.Time
	gaveBack  int64
}

func (w *replayWorld) balance() int64 {
	var b int64
	for _, e := range w.ledger {
		b += e.Points
	}
	return b
}

// arrive appends a change, and the give-back it calls for. A change without proof that it
// happened when it says (proven false) counts from when it arrives.
func (w *replayWorld) arrive(e loyalty.ExpiryEntry, at time.Time, proven bool) {
	if !proven {
		e.Known = at
	}
	w.ledger = append(w.ledger, e)
	late := proven && !e.At.After(w.expiredAt)
	if w.expiredAt.IsZero() || (!late && (e.Reverses == "" || e.Points >= 0)) {
		return
	}
	if back := loyalty.ExpiryReplay(w.ledger); back > 0 {
		w.ledger = append(w.ledger, loyalty.ExpiryEntry{Kind: loyalty.KindExpire, Points: back, At: at})
		w.gaveBack += back
	}
}

// sweep runs the hub's expiry at now with what the ledger holds: mode lot through LotExpiry,
// mode inactivity the whole balance after after_days without an earn or a redemption.
func (w *replayWorld) sweep(now time.Time) {
	bal := w.balance()
	var due int64
	if w.rule.Mode == loyalty.ExpiryLot {
		net := map[string]int64{}
		var order []string
		at := map[string]time.Time{}
		for _, e := range w.ledger {
			if loyalty.IsLot(e.Kind, e.Points, e.Reverses) {
				net[e.ID] += e.Points
				order, at[e.ID] = append(order, e.ID), e.At
			}
		}
		for _, e := range w.ledger {
			if _, ok := at[e.Reverses]; ok && e.Reverses != "" {
				net[e.Reverses] += e.Points
			}
		}
		var lots []loyalty.Lot
		for _, id := range order {
			lots = append(lots, loyalty.Lot{Points: net[id], EarnedAt: at[id]})
		}
		due, _ = w.rule.LotExpiry(lots, bal, now)
	} else {
		var last time.Time
		for _, e := range w.ledger {
			if (e.Kind == loyalty.KindEarn || e.Kind == loyalty.KindRedeem) && e.At.After(last) {
				last = e.At
			}
		}
		if !last.IsZero() && !now.Before(w.rule.ExpiresAt(last)) && bal > 0 {
			due = bal
		}
	}
	if due > 0 {
		w.ledger = append(w.ledger, loyalty.ExpiryEntry{Kind: loyalty.KindExpire, Points: -due, At: now, Rule: w.rule})
		w.expiredAt = now
	}
}

// change is a generated change: the entry, when it reaches the hub, and whether it carries
// proof that it happened when it says (the member's code).
type change struct {
	e      loyalty.ExpiryEntry
	arrive time.Time
	proven bool
}

// replayHistory generates a member's changes over 100 days: earns, gifts, redemptions,
// deductions, refunds of earns (in part or in full), cancelled redemptions and deductions taken
// back (no lot: loyalty.IsLot); with late, a third of them reach the hub up to 20 days after
// their event time.
func replayHistory(rng *rand.Rand, late bool) []change {
	var out []change
	var earns, redeems, deductions []change
	refunded := map[string]int64{}
	for i := range 40 + rng.IntN(40) {
		t := lotDay0.Add(time.Duration(rng.Int64N(int64(100*24*time.Hour))) / time.Millisecond * time.Millisecond)
		e := loyalty.ExpiryEntry{ID: fmt.Sprintf("d%d", i), At: t}
		switch k := rng.IntN(10); {
		case k < 4:
			e.Kind, e.Points = loyalty.KindEarn, 1+rng.Int64N(200)
		case k < 5:
			e.Kind, e.Points = loyalty.KindAdjust, 1+rng.Int64N(100)
		case k < 7:
			e.Kind, e.Points = loyalty.KindRedeem, -1-rng.Int64N(150)
		case k < 8:
			e.Kind, e.Points = loyalty.KindAdjust, -1-rng.Int64N(50)
		case k < 9 && len(earns) > 0: // a refund, after the sale
			o := earns[rng.IntN(len(earns))].e
			left := o.Points - refunded[o.ID]
			if left == 0 {
				continue
			}
			n := 1 + rng.Int64N(left)
			refunded[o.ID] += n
			e.Kind, e.Points, e.Reverses = loyalty.KindReverse, -n, o.ID
			e.At = later(e.At, o.At)
		case len(deductions) > 0 && rng.IntN(3) == 0: // a deduction taken back, after it
			o := deductions[rng.IntN(len(deductions))]
			deductions = slices.DeleteFunc(deductions, func(c change) bool { return c.e.ID == o.e.ID })
			e.Kind, e.Points, e.Reverses = loyalty.KindAdjust, -o.e.Points, o.e.ID
			e.At = later(e.At, o.e.At)
		case len(redeems) > 0: // a cancelled redemption, after it
			o := redeems[rng.IntN(len(redeems))]
			redeems = slices.DeleteFunc(redeems, func(c change) bool { return c.e.ID == o.e.ID })
			e.Kind, e.Points, e.Reverses = loyalty.KindReverse, -o.e.Points, o.e.ID
			e.At = later(e.At, o.e.At)
		default:
			continue
		}
		c := change{e, e.At, true}
		if late && rng.IntN(3) == 0 {
			c.arrive = e.At.Add(time.Duration(rng.Int64N(int64(20 * 24 * time.Hour))))
			c.proven = rng.IntN(3) > 0
		}
		switch e.Kind {
		case loyalty.KindEarn:
			earns = append(earns, c)
		case loyalty.KindRedeem:
			redeems = append(redeems, c)
		case loyalty.KindAdjust:
			if e.Points < 0 && e.Reverses == "" {
				deductions = append(deductions, c)
			}
		}
		out = append(out, c)
	}
	return out
}

// withoutRefunds returns changes with each refund of an earn taken out, and its points taken
// from the earn itself.
func withoutRefunds(changes []change) []change {
	refunds := map[string]int64{}
	for _, c := range changes {
		if c.e.Kind == loyalty.KindReverse && c.e.Points < 0 {
			refunds[c.e.Reverses] += c.e.Points
		}
	}
	var out []change
	for _, c := range changes {
		switch {
		case c.e.Kind == loyalty.KindReverse && c.e.Points < 0:
		case c.e.Kind == loyalty.KindEarn:
			c.e.Points += refunds[c.e.ID]
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return out
}

// overdrawn reports whether the member's balance went below zero at some point of the ledger.
func overdrawn(w *replayWorld) bool {
	var b int64
	for _, e := range w.ledger {
		if b += e.Points; b < 0 {
			return true
		}
	}
	return false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// run plays changes and sweeps in time order (a change that arrives with a sweep first), then
// a last sweep once everything has arrived, and returns the world.
func runReplay(rule *loyalty.Expiry, changes []change) *replayWorld {
	w := &replayWorld{rule: rule}
	cs := slices.Clone(changes)
	slices.SortStableFunc(cs, func(a, b change) int { return a.arrive.Compare(b.arrive) })
	next := lotDay0
	for _, c := range cs {
		for !next.After(c.arrive) {
			w.sweep(next)
			next = next.Add(6 * time.Hour)
		}
		w.arrive(c.e, c.arrive, c.proven)
	}
	w.sweep(lotDay0.AddDate(0, 0, 200))
	return w
}

// TestExpiryReplay_AgainstLateArrivals: a member's changes played twice, once as they arrive
// (a third of them late, a third of those without proof that they happened when they say) and
// once as if each with proof had reached the hub when it happened. With the
// give-backs, the member ends where they would have without the delays, whichever the mode;
// and once everything has arrived, replaying the ledger owes nothing (no give-back twice).
// Without late changes, only refunds of expired lots give anything back.
func TestExpiryReplay_AgainstLateArrivals(t *testing.T) {
	seeds := uint64(400)
	if testing.Short() {
		seeds = 100
	}
	var gave, better, worse, clean, cleanGave int
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 11))
		rule := &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 10 + rng.IntN(30)}
		if seed%2 == 1 {
			rule.Mode = loyalty.ExpiryInactivity
		}
		changes := replayHistory(rng, true)
		actual := runReplay(rule, changes)
		inTime := slices.Clone(changes) // those with proof; the others arrive as they did
		for i := range inTime {
			if inTime[i].proven {
				inTime[i].arrive = inTime[i].e.At
			}
		}
		ideal := runReplay(rule, inTime)
		// And as if each refunded sale had earned only what its refunds left of it from the start:
		// no refund to take back expired points, and so nothing to give back. The refunds' points
		// are in the lots already; the member ends where the in-time run does.
		asIf := runReplay(rule, withoutRefunds(inTime))
		if asIf.gaveBack != 0 {
			t.Fatalf("seed %d: %d given back without a late change or a refund", seed, asIf.gaveBack)
		}
		switch got, want := ideal.balance(), asIf.balance(); {
		case got < want:
			t.Errorf("seed %d (%s, %d days): in time the member ends with %d, worse off than with the refunds in the sales (%d)", seed, rule.Mode, rule.AfterDays, got, want)
		case got > want && !overdrawn(ideal) && !overdrawn(asIf):
			t.Errorf("seed %d (%s, %d days): in time the member ends with %d, with the refunds in the sales %d, and neither went below 0", seed, rule.Mode, rule.AfterDays, got, want)
		}
		if back := loyalty.ExpiryReplay(actual.ledger); back != 0 {
			t.Fatalf("seed %d (%s): the final ledger still owes %d", seed, rule.Mode, back)
		}
		// After an overdraft the two may part: which expiry instants the sweeps wrote depends on
		// when the hub learned of things, and the replay replays the ones written.
		got, want := actual.balance(), ideal.balance()
		switch {
		case got != want && !overdrawn(actual) && !overdrawn(ideal):
			t.Errorf("seed %d (%s, %d days): the member ends with %d, in time %d (%d given back), and neither went below 0", seed, rule.Mode, rule.AfterDays, got, want, actual.gaveBack)
		case got > want:
			better++
		case got < want:
			worse++
		}
		if actual.gaveBack > 0 {
			gave++
		}
		if !overdrawn(actual) && !overdrawn(ideal) {
			clean++
			if actual.gaveBack > 0 {
				cleanGave++
			}
		}
	}
	t.Logf("%d of %d seeds gave points back; %d never went below 0 (%d of them gave back); after an overdraft, %d ended better off "+
		"than in time, %d worse; replay one with its seed (rand.NewPCG(seed, 11))", gave, seeds, clean, cleanGave, better, worse)
	if cleanGave == 0 {
		t.Fatal("no seed without an overdraft gave anything back: the test exercises nothing")
	}
}

// FuzzExpiryReplay: any ledger, however hostile its numbers and references (points at the
// limits of int64, which count as the most a delta carries, reversals of themselves, of unknown changes or of redemptions, expiries of
// any sign, rules missing): the replay never panics, never gives back more than the expiries
// took net, and answers the same whatever the order of the entries.
func FuzzExpiryReplay(f *testing.F) {
	f.Add([]byte{0, 100, 1, 3, 50, 2, 4, 206, 3}, uint8(30), false)
	f.Add([]byte{0, 255, 0, 1, 10, 0, 4, 1, 40, 2, 246, 41, 2, 3, 200, 42}, uint8(7), true)
	f.Add([]byte{5, 128, 0, 5, 127, 9, 4, 128, 12, 3, 129, 1}, uint8(1), false)
	f.Fuzz(func(t *testing.T, data []byte, days uint8, inactivity bool) {
		rule := &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 1 + int(days)%60}
		if inactivity {
			rule.Mode = loyalty.ExpiryInactivity
		}
		kinds := []loyalty.Kind{loyalty.KindEarn, loyalty.KindAdjust, loyalty.KindRedeem, loyalty.KindReverse, loyalty.KindExpire, loyalty.KindTier}
		var entries []loyalty.ExpiryEntry
		var written int64
		for i := 0; i+2 < len(data) && len(entries) < 200; i += 3 {
			e := loyalty.ExpiryEntry{ID: fmt.Sprintf("d%d", len(entries)), Kind: kinds[int(data[i])%len(kinds)],
				At: lotDay0.Add(time.Duration(data[i+2]) * 12 * time.Hour)}
			switch v := int64(int8(data[i+1])); {
			case v == -128:
				e.Points = math.MinInt64
			case v == 127:
				e.Points = math.MaxInt64
			default:
				e.Points = v * 7
			}
			if e.Kind == loyalty.KindReverse || data[i]%7 == 6 {
				e.Reverses = fmt.Sprintf("d%d", int(data[i+2])%(len(entries)+2)) // itself, an earlier one or none
			}
			if e.Kind == loyalty.KindExpire && data[i]%2 == 0 {
				e.Rule = rule
			}
			if data[i]%5 == 4 { // known later (a store's change without proof), or earlier
				e.Known = e.At.Add(time.Duration(int(data[i+1])-100) * time.Hour)
			}
			if e.Kind == loyalty.KindExpire {
				written -= max(min(e.Points, loyalty.MaxPoints), -loyalty.MaxPoints)
			}
			entries = append(entries, e)
		}
		back := loyalty.ExpiryReplay(entries)
		if back < 0 || back > max(written, 0) {
			t.Fatalf("%d given back; the expiries took %d net", back, written)
		}
		reversed := slices.Clone(entries)
		slices.Reverse(reversed)
		if again := loyalty.ExpiryReplay(reversed); again != back {
			t.Fatalf("%d given back, %d with the entries in the other order", back, again)
		}
	})
}

// BenchmarkExpiryReplay: one replay of a member's whole ledger (a third earns, a fifth
// redemptions, refunds and expiries among them), at two sizes; a give-back costs one of these
// after the ledger's read.
func BenchmarkExpiryReplay(b *testing.B) {
	for _, n := range []int{1_000, 20_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			rule := &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30}
			entries := make([]loyalty.ExpiryEntry, 0, n)
			for i := range n {
				e := loyalty.ExpiryEntry{ID: fmt.Sprintf("d%d", i), At: lotDay0.Add(time.Duration(i) * time.Hour)}
				switch k := rng.IntN(15); {
				case k < 5:
					e.Kind, e.Points = loyalty.KindEarn, 1+rng.Int64N(200)
				case k < 8:
					e.Kind, e.Points = loyalty.KindRedeem, -1-rng.Int64N(100)
				case k < 9 && i > 0:
					e.Kind, e.Points, e.Reverses = loyalty.KindReverse, -1, fmt.Sprintf("d%d", rng.IntN(i))
				case k < 10:
					e.Kind, e.Points, e.Rule = loyalty.KindExpire, -1-rng.Int64N(50), rule
				default:
					e.Kind = loyalty.KindTier
				}
				entries = append(entries, e)
			}
			b.ResetTimer()
			for b.Loop() {
				loyalty.ExpiryReplay(entries)
			}
		})
	}
}

// TestExpiryReplay_SameInstantOtherRules: two expiries of one instant, one kept as written (no
// rule) and one replayed, are two expiries whatever their order in the ledger.
func TestExpiryReplay_SameInstantOtherRules(t *testing.T) {
	rule := &loyalty.Expiry{Mode: loyalty.ExpiryInactivity, AfterDays: 30}
	entries := []loyalty.ExpiryEntry{
		{ID: "e", Kind: loyalty.KindEarn, Points: 100, At: day(0)},
		{ID: "x1", Kind: loyalty.KindExpire, Points: -60, At: day(40)},
		{ID: "x2", Kind: loyalty.KindExpire, Points: -40, At: day(40), Rule: rule},
		{ID: "r", Kind: loyalty.KindRedeem, Points: -10, At: day(20)},
	}
	want := loyalty.ExpiryReplay(entries)
	for range 20 {
		rand.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
		if got := loyalty.ExpiryReplay(entries); got != want {
			t.Fatalf("%d given back, %d in another order: %+v", got, want, entries)
		}
	}
	if want != 40 { // the kept 60 stands; the replayed one finds the member active on day 20
		t.Fatalf("%d given back, want 40", want)
	}
}
