package hub_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// FuzzPush feeds arbitrary push messages from store s1 to the hub's apply path: Decode, as the
// sync server does, then Push. Seeds are honest deltas and forged ones (testdata/fuzz/FuzzPush
// holds more). Run it with
//
//	go test -run '^$' -fuzz '^FuzzPush$' -fuzztime 60s ./hub/
//
// Whatever arrives, the hub must
//   - answer every delta (applied, duplicate or rejected), never fail the push or panic;
//   - never reject with EINTERNAL (that is a bug the input found);
//   - apply only deltas of s1, dated inside the claims window, with points the rule version
//     gives (the hub recomputes them; a forged amount is refused);
//   - keep every balance equal to the sum of its ledger and within the balance bound.
func FuzzPush(f *testing.F) {
	// Each input meets the same fresh hub, a copy of this one, so a failing input replays.
	template := openHub(f)
	ctx := context.Background()
	fund(f, template, "m1", 1000)
	withProgram(f, template, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40}}
	})
	syncStores(f, template)
	kek := template.KEK
	fresh := templateOf(f, template) // template's store is closed on PostgreSQL
	honest := earn("s1", "m1", 1234)
	honest.RuleVersion = 2
	coffee := redeem("s1", "m1", "coffee", 50)
	coffee.RuleVersion = 2
	gold := earn("s1", "m1", 1000)
	gold.RuleVersion, gold.Tier = 2, "gold"
	future := earn("s1", "m1", 1000)
	future.RuleVersion, future.OccurredAt = 2, t0.AddDate(10, 0, 0)
	other := earn("s2", "m2", 1000)
	other.RuleVersion = 2
	for _, ds := range [][]loyalty.Delta{{honest}, {coffee}, {gold, future}, {other},
		{{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse, Points: -12, Reverses: honest.ID, RuleVersion: 2, OccurredAt: t0}}} {
		b, err := lsync.Encode(&lsync.Message{Type: lsync.TypePush, ID: 1, Push: &lsync.Push{Deltas: ds}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := lsync.Decode(b)
		if err != nil || m.Type != lsync.TypePush || len(m.Push.Deltas) > 50 {
			return // the decoder's own fuzz test covers refusals; the server caps batches
		}
		h := copyHub(t, fresh(t), kek)
		ack, err := h.Push(ctx, "s1", m.Push.Deltas)
		if err != nil {
			t.Fatalf("push failed as a whole: %v\ninput: %q", err, b)
		}
		if len(ack.Results) != len(m.Push.Deltas) {
			t.Fatalf("%d results for %d deltas", len(ack.Results), len(m.Push.Deltas))
		}
		for i, r := range ack.Results {
			d := m.Push.Deltas[i]
			switch {
			case r.Code == loyalty.EINTERNAL:
				t.Fatalf("delta %d rejected as internal: %s\ninput: %q", i, r.Message, b)
			case r.Status == lsync.StatusApplied && d.Store != "s1":
				t.Fatalf("applied a delta of store %q pushed by s1\ninput: %q", d.Store, b)
			case r.Status == lsync.StatusApplied && (d.EventTime().After(t0.Add(h.Claims.MaxFuture)) || d.EventTime().Before(t0.Add(-h.Claims.MaxOffline))):
				t.Fatalf("applied a delta dated %s, outside the claims window around %s\ninput: %q", d.EventTime(), t0, b)
			case r.Status == lsync.StatusRejected && len(d.ID) >= 8 && strings.Contains(r.Message, d.ID):
				t.Fatalf("a rejection names the delta's id: %q", r.Message)
			}
		}
		check, err := h.Check(ctx)
		if err != nil || len(check.Mismatches) != 0 {
			t.Fatalf("after the push: %v %v\ninput: %q", check.Mismatches, err, b)
		}
		for _, id := range []string{"m1", "m2"} {
			if v, err := h.Member(ctx, id, 0); err != nil || v.Balance > loyalty.MaxBalance || v.Balance < -loyalty.MaxBalance {
				t.Fatalf("member %s: balance %d, %v", id, v.Balance, err)
			}
		}
	})
}

// copyHub opens a hub on s, a copy of the template's database, at the tests' clock.
func copyHub(t *testing.T, s hub.Store, kek *seal.Box) *hub.Hub {
	t.Helper()
	h := hub.New(s)
	h.KEK, h.Logger, h.Now = kek, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return t0 }
	if err := h.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}
