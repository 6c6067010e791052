package hub_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// seeded returns the random source of a randomised test: from seed if it is not 0 (a replay),
// else from a new seed. It logs the seed and how to replay it with the test's flag.
func seeded(t *testing.T, seed uint64, flagName string) (*rand.Rand, uint64) {
	t.Helper()
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay: go test ./hub/ -run '^%s$' -%s %d)", seed, t.Name(), flagName, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seed
}

var qualifyingSeed = flag.Uint64("qualifying.seed", 0, "replay TestQualifyingTotalsMatchTheLedger with this seed (0: a new one)")

// TestQualifyingTotalsMatchTheLedger is a property test of the running totals per member and day
// (Tx.Qualifying) against the history scan they replace (Tx.QualifyingFromLedger): random sales,
// action earns, redemptions and adjustments dated over three years and around day boundaries,
// reversed in full or in part (some in the transaction of their sale), and every window the
// tiers have (rolling 12 months, calendar year, lifetime) at random times, plus arbitrary spans,
// on either basis, one member at a time and a batch at once. The seed is printed; replay a
// failure with -qualifying.seed.
func TestQualifyingTotalsMatchTheLedger(t *testing.T) {
	rng, seed := seeded(t, *qualifyingSeed, "qualifying.seed")
	ctx := context.Background()
	h := openHub(t)
	members, randomTime := writeRandomLedger(t, rng, h)

	windows := []string{loyalty.WindowRolling12M, loyalty.WindowCalendar, loyalty.WindowLifetime}
	check := func(tx hub.Tx, since, until time.Time, what string) error {
		for _, basis := range []string{loyalty.BasisSpend, loyalty.BasisPoints} {
			// A list may name a member twice, and a member without sales: each counts once.
			batch, err := tx.QualifyingOf(ctx, append([]string{"nobody", members[0]}, members...), basis, since, until)
			if err != nil {
				return err
			}
			if q := batch["nobody"]; q != (hub.Qualification{}) {
				t.Errorf("seed %d: a member without sales qualifies with %+v", seed, q)
			}
			for _, m := range members {
				want, err := tx.QualifyingFromLedger(ctx, m, basis, since, until)
				if err != nil {
					return err
				}
				got, err := tx.Qualifying(ctx, m, basis, since, until)
				if err != nil {
					return err
				}
				for _, g := range []hub.Qualification{got, batch[m]} {
					if g.Total != want.Total || !g.First.Equal(want.First) || !g.Next.Equal(want.Next) {
						t.Errorf("seed %d, %s, %s basis, member %s, [%s, %s): got %+v, the ledger says %+v", seed, what, basis, m,
							since.Format(time.RFC3339Nano), until.Format(time.RFC3339Nano), g, want)
						return nil
					}
				}
			}
		}
		return nil
	}
	err := h.Store.View(ctx, func(tx hub.Tx) error {
		for range 150 {
			now := randomTime()
			w := windows[rng.IntN(len(windows))]
			since, until := (&loyalty.TierRules{Window: w}).WindowBounds(now)
			if err := check(tx, since, until, w+" at "+now.Format(time.RFC3339Nano)); err != nil {
				return err
			}
		}
		for range 50 { // any span: within a day, across days, empty, open-ended
			a, b := randomTime(), randomTime()
			if b.Before(a) && rng.IntN(4) > 0 {
				a, b = b, a
			}
			if rng.IntN(8) == 0 {
				b = time.Time{}
			}
			if err := check(tx, a, b, "span"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The migration's backfill, from the same ledger, makes the same rows as the triggers did.
	db := openRaw(t, whereOf(t, h.Store))
	kept := qualifyingRows(t, db)
	file := "sqlite/migrations/0019_member_qualifying.sql"
	if onPostgres() {
		file = "postgres/migrations/0003_member_qualifying.sql"
	}
	backfill(t, db, file, "member_qualifying")
	if filled := qualifyingRows(t, db); filled != kept {
		t.Errorf("seed %d: the migration's backfill makes\n%s\nthe triggers kept\n%s", seed, filled, kept)
	}

	// Check compares the totals with the ledger too (the balances it also compares were not kept:
	// the deltas went straight into the ledger).
	r, err := h.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Mismatches {
		if strings.Contains(m, "qualifying") {
			t.Errorf("seed %d: check: %s", seed, m)
		}
	}
}

// writeRandomLedger writes random deltas straight into h's ledger, in 40 transactions, a delta
// at a time (Tx.InsertDelta) or all at once (Tx.InsertDeltas): sales (some of no points), action
// earns, redemptions and adjustments of four members (m1, m2, q3, q4), dated over three years and
// clustered on a few days and around midnight, so that windows' edges cut through days with
// events; sales reversed in full or in part, some in the transaction of their sale; redemptions
// reversed, and adjustments taken back by an adjustment, as the hub's operators do. It returns the
// members and the source of the deltas' times.
func writeRandomLedger(t *testing.T, rng *rand.Rand, h *hub.Hub) (members []string, randomTime func() time.Time) {
	t.Helper()
	ctx := context.Background()
	members = []string{"m1", "m2", "q3", "q4"}
	err := h.Store.Update(ctx, func(tx hub.Tx) error {
		for _, m := range members[2:] {
			if err := tx.InsertMember(ctx, loyalty.Member{ID: m, CreatedAt: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	span := 3 * 365 * 24 * time.Hour
	// Times cluster on a few days and around midnight, so that windows' edges cut through days
	// with events.
	days := make([]time.Time, 12)
	for i := range days {
		days[i] = start.Add(time.Duration(rng.Int64N(int64(span)))).Truncate(24 * time.Hour)
	}
	randomTime = func() time.Time {
		switch rng.IntN(3) {
		case 0:
			return start.Add(time.Duration(rng.Int64N(int64(span)))).Truncate(time.Millisecond)
		case 1:
			return days[rng.IntN(len(days))].Add(time.Duration(rng.Int64N(int64(24 * time.Hour)))).Truncate(time.Millisecond)
		}
		return days[rng.IntN(len(days))].Add(time.Duration(rng.Int64N(4000)-2000) * time.Millisecond)
	}
	type sale struct {
		d        loyalty.Delta
		left     int64 // amount not refunded yet
		reversed bool
	}
	var credits []*sale
	var spent, adjusted []loyalty.Delta // redemptions and adjustments not reversed yet
	n := 0
	newDelta := func(member string, kind loyalty.Kind) loyalty.Delta {
		n++
		d := loyalty.Delta{ID: fmt.Sprintf("q%05d", n), Store: "s1", Member: member, Kind: kind, OccurredAt: randomTime()}
		if rng.IntN(4) == 0 {
			d.ClockOffsetMS = rng.Int64N(600000) - 300000
		}
		return d
	}
	// takeBack reverses the oldest delta of list, with a delta of kind, and drops it from list.
	takeBack := func(list *[]loyalty.Delta, kind loyalty.Kind) loyalty.Delta {
		o := (*list)[0]
		*list = (*list)[1:]
		d := newDelta(o.Member, kind)
		d.Reverses, d.Points = o.ID, -o.Points
		return d
	}
	for txn := 0; txn < 40; txn++ {
		err := h.Store.Update(ctx, func(tx hub.Tx) error {
			var batch []hub.NewDelta // nil: each delta on its own
			if rng.IntN(2) == 0 {
				batch = []hub.NewDelta{}
			}
			for range 1 + rng.IntN(12) {
				var d loyalty.Delta
				switch r := rng.IntN(10); {
				case r < 5 || len(credits) == 0: // a sale, or an action's earn
					d = newDelta(members[rng.IntN(len(members))], loyalty.KindEarn)
					d.Amount = 1 + rng.Int64N(50000)
					d.Points = d.Amount / 100
					switch rng.IntN(10) {
					case 0, 1:
						d.Rule, d.Amount = "signup", 0
					case 2:
						d.Points = 0
					}
					credits = append(credits, &sale{d: d, left: d.Amount})
				case r < 6 && rng.IntN(3) == 0 && len(spent) > 0: // a redemption refunded
					d = takeBack(&spent, loyalty.KindReverse)
				case r < 6:
					d = newDelta(members[rng.IntN(len(members))], loyalty.KindRedeem)
					d.Points = -rng.Int64N(100)
					spent = append(spent, d)
				case r < 7 && rng.IntN(3) == 0 && len(adjusted) > 0: // an adjustment taken back
					d = takeBack(&adjusted, loyalty.KindAdjust)
				case r < 7:
					d = newDelta(members[rng.IntN(len(members))], loyalty.KindAdjust)
					d.Points = rng.Int64N(200) - 100
					adjusted = append(adjusted, d)
				default: // a reversal of an earlier sale, in full or in part
					s := credits[rng.IntN(len(credits))]
					if s.reversed {
						continue
					}
					d = newDelta(s.d.Member, loyalty.KindReverse)
					d.Reverses = s.d.ID
					if s.left > 1 && rng.IntN(2) == 0 {
						d.Amount = 1 + rng.Int64N(s.left-1)
						d.Points = -(d.Amount * s.d.Points / max(s.d.Amount, 1))
						s.left -= d.Amount
					} else {
						d.Points = -s.d.Points
						s.reversed = true
					}
				}
				d.Normalize()
				if batch != nil {
					batch = append(batch, hub.NewDelta{Delta: d, Hash: d.Hash(), ReceivedAt: t0})
				} else if _, _, err := tx.InsertDelta(ctx, d, d.Hash(), t0); err != nil {
					return err
				}
			}
			if len(batch) > 0 {
				_, err := tx.InsertDeltas(ctx, batch)
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	return members, randomTime
}

// backfill empties table and runs again what the migration in file (under hub/) runs after its
// line "-- The ledger so far.": the statements that fill table from the ledger.
func backfill(t *testing.T, db rawDB, file, table string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, fill, ok := strings.Cut(string(b), "-- The ledger so far.\n")
	if !ok {
		t.Fatalf("%s: no backfill", file)
	}
	if _, err := db.Exec(`DELETE FROM ` + table); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fill); err != nil {
		t.Fatal(err)
	}
}

// qualifyingRows returns the member_qualifying table as text, in order.
func qualifyingRows(t *testing.T, db rawDB) string {
	t.Helper()
	rows, err := db.Query(`SELECT member, day, amount, points, COALESCE(first, -1) FROM member_qualifying ORDER BY member, day`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var m string
		var day, amount, points, first int64
		if err := rows.Scan(&m, &day, &amount, &points, &first); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %d %d %d %d\n", m, day, amount, points, first)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
