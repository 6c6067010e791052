package loyalty_test

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

var lotDay0 = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func day(n int) time.Time { return lotDay0.AddDate(0, 0, n) }

// TestLotExpiry: three lots, expiring 30 days after each earn, with and without partial spends.
func TestLotExpiry(t *testing.T) {
	e := &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30}
	lots := []loyalty.Lot{{Points: 100, EarnedAt: day(0)}, {Points: 50, EarnedAt: day(10)}, {Points: 30, EarnedAt: day(20)}}
	for _, tt := range []struct {
		name     string
		balance  int64
		now      time.Time
		due      int64
		upcoming []loyalty.ExpiringPoints
	}{
		{"nothing spent, a millisecond before the first expiry", 180, day(30).Add(-time.Millisecond), 0,
			[]loyalty.ExpiringPoints{{Points: 100, At: day(30)}, {Points: 50, At: day(40)}, {Points: 30, At: day(50)}}},
		{"nothing spent, the first lot's expiry instant", 180, day(30), 100,
			[]loyalty.ExpiringPoints{{Points: 50, At: day(40)}, {Points: 30, At: day(50)}}},
		{"120 spent: the first lot and 20 of the second", 60, day(29), 0,
			[]loyalty.ExpiringPoints{{Points: 30, At: day(40)}, {Points: 30, At: day(50)}}},
		{"120 spent: nothing of the first lot left to expire", 60, day(30), 0,
			[]loyalty.ExpiringPoints{{Points: 30, At: day(40)}, {Points: 30, At: day(50)}}},
		{"120 spent: the rest of the second lot expires", 60, day(40), 30,
			[]loyalty.ExpiringPoints{{Points: 30, At: day(50)}}},
		{"everything expired", 180, day(50), 180, nil},
		{"spent in full", 0, day(35), 0, nil},
		{"overdrawn", -20, day(35), 0, nil},
		{"a balance from lots older than those given (they no longer count)", 500, day(25), 320,
			[]loyalty.ExpiringPoints{{Points: 100, At: day(30)}, {Points: 50, At: day(40)}, {Points: 30, At: day(50)}}},
	} {
		due, upcoming := e.LotExpiry(lots, tt.balance, tt.now)
		if due != tt.due || !reflect.DeepEqual(upcoming, tt.upcoming) {
			t.Errorf("%s: due %d, upcoming %+v; want %d, %+v", tt.name, due, upcoming, tt.due, tt.upcoming)
		}
		// Idempotent: with the due points expired, nothing more is due at the same time.
		if again, _ := e.LotExpiry(lots, tt.balance-due, tt.now); again != 0 {
			t.Errorf("%s: a second run expires %d more", tt.name, again)
		}
	}
	// Lots of the same instant are one entry; lots with no points left (refunded in full) and
	// lots given out of order count the same.
	same := []loyalty.Lot{{Points: 20, EarnedAt: day(5)}, {Points: 0, EarnedAt: day(1)}, {Points: 10, EarnedAt: day(2)}, {Points: 5, EarnedAt: day(5)}}
	due, upcoming := e.LotExpiry(same, 30, day(3))
	if want := []loyalty.ExpiringPoints{{Points: 5, At: day(32)}, {Points: 25, At: day(35)}}; due != 0 || !reflect.DeepEqual(upcoming, want) {
		t.Errorf("same instant: %d, %+v; want 0, %+v", due, upcoming, want)
	}
}

// TestLotExpiry_Large: sums of many large lots saturate instead of overflowing.
func TestLotExpiry_Large(t *testing.T) {
	e := &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: loyalty.MaxExpiryDays}
	var lots []loyalty.Lot
	for i := range 20_000 {
		lots = append(lots, loyalty.Lot{Points: loyalty.MaxPoints, EarnedAt: lotDay0.Add(time.Duration(i) * time.Second)})
	}
	due, upcoming := e.LotExpiry(lots, loyalty.MaxBalance, day(1))
	var sum int64
	for _, u := range upcoming {
		sum += u.Points
	}
	if due != 0 || sum != loyalty.MaxBalance || len(upcoming) != 1000 || upcoming[0].At != e.LotExpiresAt(lots[19_000].EarnedAt) {
		t.Errorf("the largest balance over 20000 of the largest lots: due %d, %d entries adding up to %d", due, len(upcoming), sum)
	}
	due, _ = e.LotExpiry(lots, loyalty.MaxBalance, day(loyalty.MaxExpiryDays+1))
	if due != loyalty.MaxBalance {
		t.Errorf("all of them expired: due %d", due)
	}
}

// TestLotExpiry_FIFO checks the stateless rule against a ledger kept lot by lot: random earns,
// redemptions (which take the oldest points left, whether or not their expiry passed since the
// last sweep) and sweeps (which expire what is left of every lot past its expiry). The rule,
// given only the lots and the balance, expires exactly what the lot-by-lot ledger does.
func TestLotExpiry_FIFO(t *testing.T) {
	e := &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		type held struct {
			left int64
			at   time.Time // expires
		}
		var queue []held // oldest first, with what is left of each lot
		var lots []loyalty.Lot
		var balance int64
		now := lotDay0
		for step := range 200 {
			now = now.Add(time.Duration(rng.Int64N(int64(72 * time.Hour))))
			switch rng.IntN(3) {
			case 0: // an earn
				p := 1 + rng.Int64N(200)
				lots = append(lots, loyalty.Lot{Points: p, EarnedAt: now})
				queue = append(queue, held{p, e.LotExpiresAt(now)})
				balance += p
			case 1: // a redemption the balance covers, oldest points first
				if balance == 0 {
					continue
				}
				spend := 1 + rng.Int64N(balance)
				balance -= spend
				for i := 0; spend > 0; i++ {
					n := min(spend, queue[i].left)
					queue[i].left -= n
					spend -= n
				}
			case 2: // a sweep
				var want int64
				for i := range queue {
					if !queue[i].at.After(now) {
						want += queue[i].left
						queue[i].left = 0
					}
				}
				due, upcoming := e.LotExpiry(lots, balance, now)
				if due != want {
					t.Fatalf("seed %d step %d: the rule expires %d, the lot-by-lot ledger %d", seed, step, due, want)
				}
				balance -= due
				// And what is still held of each lot, per expiry instant, is what it lists.
				var held []loyalty.ExpiringPoints
				for _, q := range queue {
					switch {
					case q.left == 0:
					case len(held) > 0 && held[len(held)-1].At.Equal(q.at):
						held[len(held)-1].Points += q.left
					default:
						held = append(held, loyalty.ExpiringPoints{Points: q.left, At: q.at})
					}
				}
				if !reflect.DeepEqual(upcoming, held) {
					t.Fatalf("seed %d step %d: upcoming %+v, the lot-by-lot ledger holds %+v", seed, step, upcoming, held)
				}
			}
		}
	}
}
