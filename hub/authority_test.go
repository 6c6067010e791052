package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// The tests of this file push what a hostile store would, through the hub's Push (the method the
// sync server calls for a store's session), and check that nothing moves: no balance, no budget.

// mustReject pushes d as store and requires a rejection with code, and no change to any balance
// or budget.
func mustReject(t *testing.T, h *hub.Hub, store string, d loyalty.Delta, code string) lsync.Result {
	t.Helper()
	before := snapshot(t, h)
	ack := pushOK(t, h, store, d)
	r := ack.Results[0]
	if r.Status != lsync.StatusRejected || r.Code != code {
		t.Errorf("%s: got %s %s (%s), want rejected %s", d.ID, r.Status, r.Code, r.Message, code)
	}
	if len(ack.Balances) != 0 {
		t.Errorf("a rejected delta reported balances %+v", ack.Balances)
	}
	if after := snapshot(t, h); after != before {
		t.Errorf("a rejected delta moved balances or budgets:\nbefore %s\nafter  %s", before, after)
	}
	return r
}

func mustApply(t *testing.T, h *hub.Hub, store string, d loyalty.Delta) {
	t.Helper()
	if r := pushOK(t, h, store, d).Results[0]; r.Status != lsync.StatusApplied {
		t.Fatalf("%s: got %s %s (%s), want applied", d.ID, r.Status, r.Code, r.Message)
	}
}

// snapshot describes every balance and budget figure, for before/after comparisons.
func snapshot(t *testing.T, h *hub.Hub) string {
	t.Helper()
	var b strings.Builder
	for _, m := range []string{"m1", "m2"} {
		b.WriteString(m + "=" + itoa(balance(t, h, m)) + " ")
	}
	bs, err := h.Budgets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range bs {
		b.WriteString(x.ID + ":" + itoa(x.Spent) + "/" + itoa(x.Outstanding) + " ")
		for _, l := range x.Leases {
			b.WriteString(l.ID + "=" + itoa(l.Consumed) + " ")
		}
	}
	return b.String()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Finding 1: lines whose amounts wrap around in int64 "added up" to the order amount and the hub
// applied a store's 500,000,000-point earn.
func TestAuthority_OverflowingLines(t *testing.T) {
	h := openHub(t)
	withProgram(t, h, func(p *loyalty.Program) {
		p.CategoryRates = []loyalty.CategoryRate{{Category: "coffee", PointsPerUnit: 3}, {SKU: "decaf-250g", PointsPerUnit: 0}}
	})
	syncStores(t, h)
	d := earn("s1", "m1", 1000)
	d.RuleVersion, d.Points = 2, 500_000_000
	d.Lines = []loyalty.Line{{Category: "coffee", Qty: 1, Amount: 6148914707903183872}, {SKU: "decaf-250g", Qty: 1, Amount: 9223372036854775807},
		{SKU: "decaf-250g", Qty: 1, Amount: 3074457328951592937}}
	mustReject(t, h, "s1", d, loyalty.EINVALID)
	d2 := earn("s1", "m1", 2)
	d2.Points = 0
	d2.Lines = []loyalty.Line{{Qty: 1, Amount: 9223372036854775807}, {Qty: 1, Amount: 9223372036854775807}, {Qty: 1, Amount: 4}}
	mustReject(t, h, "s1", d2, loyalty.EINVALID)
}

// Finding 2: a store's delta claiming the gold tier (3x) for a base member was applied.
func TestAuthority_ForgedTier(t *testing.T) {
	h := openHub(t)
	withProgram(t, h, func(p *loyalty.Program) {
		p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
			{ID: "base", Threshold: 0, Multiplier: 1000}, {ID: "gold", Threshold: 1_000_000, Multiplier: 3000}}}
	})
	syncStores(t, h)
	forged := earn("s1", "m1", 1000)
	forged.RuleVersion, forged.Tier, forged.Points = 2, "gold", 30
	r := mustReject(t, h, "s1", forged, loyalty.EINVALID)
	if !strings.Contains(r.Message, "tier") {
		t.Errorf("message %q does not say what was wrong", r.Message)
	}
	honest := earn("s1", "m1", 1000) // not placed yet: their total places them in base
	honest.RuleVersion, honest.Tier, honest.Points = 2, "base", 10
	mustApply(t, h, "s1", honest)
	unknown := earn("s1", "m1", 1000) // a member the store did not know: no tier
	unknown.RuleVersion, unknown.Points = 2, 10
	mustApply(t, h, "s1", unknown)
}

// A store stamps an earn with the country it saw the member in. One that is not the member's
// stands only if the sale's points do not depend on it: a store that has not seen the member's
// new country yet keeps its sale, one that claims a country's campaign bonus the member is not
// due is refused.
func TestAuthority_CountryClaims(t *testing.T) {
	h := openHub(t)
	withProgram(t, h, func(p *loyalty.Program) {
		p.Campaigns = append(p.Campaigns, loyalty.Campaign{ID: "fr-bonus", Name: "FR members", Start: t0.Add(-time.Hour),
			End: t0.Add(24 * time.Hour), Bonus: 25, Segment: loyalty.Segment{Countries: []string{"FR"}}})
	})
	syncStores(t, h)
	forged := earn("s1", "m1", 1000)
	forged.RuleVersion, forged.Points, forged.Country = 2, 35, "FR"
	if r := mustReject(t, h, "s1", forged, loyalty.EINVALID); !strings.Contains(r.Message, "country") {
		t.Errorf("message %q does not say what was wrong", r.Message)
	}
	stale := earn("s1", "m1", 1000)
	stale.RuleVersion, stale.Points, stale.Country = 2, 10, "DE"
	mustApply(t, h, "s1", stale)
	v, err := h.Member(context.Background(), "m1", 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range v.Ledger {
		if e.ID == stale.ID {
			found = true
			if e.Country != v.Country {
				t.Errorf("the ledger keeps the stale claim %q, not the member's country %q", e.Country, v.Country)
			}
		}
	}
	if !found {
		t.Errorf("the stale sale is not in the member's ledger")
	}
}

// A stale tier, the one the member had when the store last synced, is accepted.
func TestAuthority_StaleTierAccepted(t *testing.T) {
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
			{ID: "base", Threshold: 0, Multiplier: 1000}, {ID: "gold", Threshold: 10_000, Multiplier: 2000}}}
	})
	syncStores(t, h)
	now = t0.Add(10 * time.Minute)
	if _, err := h.Earn(context.Background(), loyalty.EarnRequest{OrderID: "big", MemberID: "m1", Amount: 20_000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.Member(context.Background(), "m1", 0); v.Tier != "gold" {
		t.Fatalf("m1 is %q, want gold", v.Tier)
	}
	// s1 was offline and still had m1 in base: its sale after the upgrade is accepted as it is.
	stale := earn("s1", "m1", 1000)
	stale.RuleVersion, stale.Tier, stale.Points, stale.OccurredAt = 2, "base", 10, now.Add(time.Minute)
	mustApply(t, h, "s1", stale)
	// Gold before the upgrade is a tier m1 never had then.
	early := earn("s1", "m1", 1000)
	early.RuleVersion, early.Tier, early.Points, early.OccurredAt = 2, "gold", 20, t0.Add(-30*time.Minute)
	mustReject(t, h, "s1", early, loyalty.EINVALID)
}

// Finding 2: an earn dated ten years ahead through its clock offset was applied.
func TestAuthority_EventTimeWindow(t *testing.T) {
	h := openHub(t)
	future := earn("s1", "m1", 1000)
	future.ClockOffsetMS = (10 * 365 * 24 * time.Hour).Milliseconds()
	mustReject(t, h, "s1", future, loyalty.EINVALID)
	ahead := earn("s1", "m1", 1000)
	ahead.OccurredAt = t0.Add(time.Hour)
	mustReject(t, h, "s1", ahead, loyalty.EINVALID)
	// Before the store's previous sync (here: its registration) less the backdate allowance.
	old := earn("s1", "m1", 1000)
	old.OccurredAt = t0.Add(-2 * time.Hour)
	mustReject(t, h, "s1", old, loyalty.EINVALID)
	// A few minutes of clock error either way is fine.
	ok := earn("s1", "m1", 1000)
	ok.OccurredAt = t0.Add(5 * time.Minute)
	mustApply(t, h, "s1", ok)
}

// The floor moves with the store's flushed pulls, not with its sessions: a session cut before
// the outbox was all pushed proves nothing, and the rest of the outbox arrives later.
func TestAuthority_FloorFollowsFlushedPulls(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	offline := earn("s1", "m1", 1000)
	offline.OccurredAt = t0.Add(time.Hour) // made during an outage
	h.Seen(ctx, "s1", lsync.Health{Connected: true, At: now})
	now = t0.Add(5 * time.Hour)
	h.Seen(ctx, "s1", lsync.Health{Connected: false, At: now}) // a session cut before it pushed
	now = t0.Add(8 * time.Hour)
	mustApply(t, h, "s1", offline)
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000, Flushed: true}); err != nil {
		t.Fatal(err)
	}
	backdated := earn("s1", "m1", 1000)
	backdated.OccurredAt = t0.Add(2 * time.Hour) // before the flushed pull: it would have come before it
	mustReject(t, h, "s1", backdated, loyalty.EINVALID)
	// However the store behaves, nothing older than claims.max_offline is accepted.
	h.Claims.MaxOffline = 4 * time.Hour
	ancient := earn("s2", "m2", 1000)
	ancient.OccurredAt = t0.Add(3 * time.Hour)
	mustReject(t, h, "s2", ancient, loyalty.EINVALID)
}

// Finding 2: a store could pick the time zone that pays the most. The hub reads campaigns in the
// store's registered zone, whatever the delta says.
func TestAuthority_TimeZoneIsTheRegisteredOne(t *testing.T) {
	h := openHub(t)
	withProgram(t, h, func(p *loyalty.Program) {
		// 19:00 to 20:00 local: t0 (10:00 UTC) is 19:00 in Tokyo.
		p.Campaigns = []loyalty.Campaign{{ID: "evening", Name: "Evening", Start: t0.Add(-24 * time.Hour), End: t0.Add(24 * time.Hour),
			From: "19:00", To: "20:00", Multiplier: 2000}}
	})
	syncStores(t, h)
	forged := earn("s1", "m1", 1000)
	forged.RuleVersion, forged.TimeZone, forged.Points = 2, "Asia/Tokyo", 20
	mustReject(t, h, "s1", forged, loyalty.EINVALID)
	if err := h.SetStoreZone(context.Background(), "s1", "Asia/Tokyo"); err != nil {
		t.Fatal(err)
	}
	syncStores(t, h)
	forged.ID = loyalty.NewDeltaID() // the same change made anew: the rejected one stays rejected (TestPush_RejectionIsFinal)
	mustApply(t, h, "s1", forged)
	if err := h.SetStoreZone(context.Background(), "s1", "Mars/Olympus"); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("unknown zone: %v, want EINVALID", err)
	}
}

// TestOnline_CampaignHoursInTheProgramsZone: the online channel reads campaign hours in the
// program's online_timezone (UTC without one), and records the zone on its delta.
func TestOnline_CampaignHoursInTheProgramsZone(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	evening := func(p *loyalty.Program) {
		// 19:00 to 20:00 local: t0 (10:00 UTC) is 19:00 in Tokyo.
		p.Campaigns = []loyalty.Campaign{{ID: "evening", Name: "Evening", Start: t0.Add(-24 * time.Hour), End: t0.Add(24 * time.Hour),
			From: "19:00", To: "20:00", Multiplier: 2000}}
	}
	withProgram(t, h, evening)
	h.Now = func() time.Time { return t0 }
	r, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-1", MemberID: "m1", Amount: 1000, Currency: "EUR"})
	if err != nil || r.Points != 10 {
		t.Fatalf("online earn at 10:00 UTC without a zone: %+v, %v; want 10 points (no campaign)", r, err)
	}
	withProgram(t, h, func(p *loyalty.Program) { evening(p); p.OnlineTimeZone = "Asia/Tokyo" })
	r, err = h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-2", MemberID: "m1", Amount: 1000, Currency: "EUR"})
	if err != nil || r.Points != 20 {
		t.Fatalf("online earn at 19:00 in the program's zone: %+v, %v; want 20 points (the evening campaign)", r, err)
	}
	var e hub.LedgerEntry
	err = h.Store.View(ctx, func(tx hub.Tx) (err error) { e, err = tx.Delta(ctx, r.Deltas[0]); return err })
	if err != nil || e.TimeZone != "Asia/Tokyo" {
		t.Errorf("the online delta's zone: %q (%v), want Asia/Tokyo", e.TimeZone, err)
	}
}

// Finding 2: a store could pick a rule version it was never sent, or an old one that pays more.
func TestAuthority_RuleVersions(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	h.Seen(ctx, "s1", lsync.Health{Connected: true, At: now})
	now = t0.Add(time.Hour)
	withProgram(t, h, func(p *loyalty.Program) { p.Earn.PointsPerUnit = 2 })
	unsent := earn("s1", "m1", 1000)
	unsent.RuleVersion, unsent.Points, unsent.OccurredAt = 2, 20, now
	mustReject(t, h, "s1", unsent, loyalty.EINVALID)
	none := earn("s1", "m1", 1000)
	none.RuleVersion = 99
	mustReject(t, h, "s1", none, loyalty.ENOTFOUND)
	syncStores(t, h)
	unsent.ID = loyalty.NewDeltaID() // the same change made anew: the rejected one stays rejected (TestPush_RejectionIsFinal)
	mustApply(t, h, "s1", unsent)

	// Version 1 was replaced an hour in. A session that ended at 5h moves the floor to 4h: a
	// change made after that under version 1 is a store choosing the old rules.
	withProgram(t, h, func(p *loyalty.Program) { p.Earn.PointsPerUnit = 1 }) // version 3 pays less than 2
	syncStores(t, h)
	syncStores(t, h) // the next pull shows the store had the answer that carried version 3
	now = t0.Add(5 * time.Hour)
	h.Seen(ctx, "s1", lsync.Health{Connected: false, At: now})
	now = t0.Add(6 * time.Hour)
	h.Seen(ctx, "s1", lsync.Health{Connected: true, At: now})
	old := earn("s1", "m1", 1000)
	old.RuleVersion, old.Points, old.OccurredAt = 2, 20, now
	mustReject(t, h, "s1", old, loyalty.EINVALID)
	cur := earn("s1", "m1", 1000)
	cur.RuleVersion, cur.Points, cur.OccurredAt = 3, 10, now
	mustApply(t, h, "s1", cur)
}

// Finding 3: a percent-off reward redeemed without order_amount consumed nothing of a discount
// budget.
func TestAuthority_PercentOffNeedsTheOrderAmount(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Rewards = append(p.Rewards, loyalty.Reward{ID: "twenty", Name: "20% off", PointsCost: 10, Kind: "percent_off", Value: 20, MaxValue: 5000})
		p.Budgets = []loyalty.Budget{{ID: "disc", Metric: loyalty.MetricDiscount, Limit: 100_000}}
	})
	fund(t, h, "m1", 100)
	_, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "w1", MemberID: "m1", RewardID: "twenty"})
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(loyalty.ErrorMessage(err), "order_amount") {
		t.Errorf("online without order_amount: %v, want EINVALID naming order_amount", err)
	}
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "w2", MemberID: "m1", RewardID: "twenty", OrderAmount: 10_000}); err != nil {
		t.Fatal(err)
	}
	bs, _ := h.Budgets(ctx)
	if bs[0].Spent != 2000 {
		t.Errorf("discount spent %d, want 2000", bs[0].Spent)
	}
	// A store's redemption without the order amount is refused too.
	h.Pull(ctx, "s1", lsync.Pull{Limit: 1000})
	ls := mustLeases(t, h, "s1")
	d := redeem("s1", "m1", "twenty", 10)
	d.RuleVersion, d.Leases = 2, map[string]string{"disc": ls[0].ID}
	mustReject(t, h, "s1", d, loyalty.EINVALID)
}

// Finding 3: the hub did not check that the lease a delta spends from belongs to the store, was
// active at the delta's event time, or is not overdrawn.
func TestAuthority_Leases(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40}}
	})
	fund(t, h, "m1", 1000)
	for _, s := range []string{"s1", "s2"} {
		if _, err := h.Pull(ctx, s, lsync.Pull{Limit: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	l1, l2 := mustLeases(t, h, "s1")[0], mustLeases(t, h, "s2")[0]
	coffee := func(lease string) loyalty.Delta {
		d := redeem("s1", "m1", "coffee", 50)
		d.RuleVersion, d.OccurredAt = 2, now
		if lease != "" {
			d.Leases = map[string]string{"coffees": lease}
		}
		return d
	}
	mustReject(t, h, "s1", coffee(l2.ID), loyalty.EBUDGET)            // another store's lease
	mustReject(t, h, "s1", coffee(""), loyalty.EBUDGET)               // no lease at all
	mustReject(t, h, "s1", coffee("lnotalease0000"), loyalty.EBUDGET) // a lease that never was
	for i := int64(0); i < l1.Granted; i++ {
		mustApply(t, h, "s1", coffee(l1.ID))
	}
	mustReject(t, h, "s1", coffee(l1.ID), loyalty.EBUDGET) // overdrawn
	// After the lease's expiry at the hub, a redemption dated then is not covered by it.
	now = l1.ExpiresAt.Add(5 * time.Minute)
	late := coffee(l1.ID)
	late.OccurredAt = l1.ExpiresAt.Add(time.Minute)
	mustReject(t, h, "s1", late, loyalty.EBUDGET)
}

// Finding 4: dedup ran before the store check, so a store re-pushing another store's delta id was
// told "duplicate" and received that member's balance.
func TestAuthority_CrossStoreReplay(t *testing.T) {
	h := openHub(t)
	d := earn("s1", "m1", 1000)
	mustApply(t, h, "s1", d)
	r := mustReject(t, h, "s2", d, loyalty.EUNAUTHORIZED)
	if strings.Contains(r.Message, d.ID) || strings.Contains(r.Message, "s1") {
		t.Errorf("the refusal %q tells the other store about the delta", r.Message)
	}
	as2 := d
	as2.Store = "s2"
	r = mustReject(t, h, "s2", as2, loyalty.EDUPLICATE)
	if strings.Contains(r.Message, "seq") || strings.Contains(r.Message, "m1") {
		t.Errorf("the refusal %q tells the other store about the delta", r.Message)
	}
}

// failingStore is a hub Store whose transactions fail to insert one delta: a poison delta.
type failingStore struct {
	hub.Store
	poison string
}

type failingTx struct {
	hub.Tx
	poison string
}

func (s failingStore) Update(ctx context.Context, fn func(hub.Tx) error) error {
	return s.Store.Update(ctx, func(tx hub.Tx) error { return fn(failingTx{tx, s.poison}) })
}

func (t failingTx) InsertDelta(ctx context.Context, d loyalty.Delta, hash string, at time.Time) (int64, bool, error) {
	if d.ID == t.poison {
		return 0, false, errors.New("disk I/O error (simulated)")
	}
	return t.Tx.InsertDelta(ctx, d, hash, at)
}

func (t failingTx) InsertDeltas(ctx context.Context, ds []hub.NewDelta) ([]int64, error) {
	for _, d := range ds {
		if d.Delta.ID == t.poison {
			return nil, errors.New("disk I/O error (simulated)")
		}
	}
	return t.Tx.InsertDeltas(ctx, ds)
}

// Finding 7: a delta whose apply fails with an internal error rolled back its whole batch, and
// the agent re-sent it for ever, so nothing behind it arrived.
func TestAuthority_PoisonDeltaIsSetAside(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	a, poison, b := earn("s1", "m1", 1000), earn("s1", "m1", 2000), earn("s1", "m1", 3000)
	h.Store = failingStore{h.Store, poison.ID}
	ack := pushOK(t, h, "s1", a, poison, b)
	want := []string{lsync.StatusApplied, lsync.StatusRejected, lsync.StatusApplied}
	for i, r := range ack.Results {
		if r.Status != want[i] {
			t.Errorf("result %d: %s %s %s, want %s", i, r.Status, r.Code, r.Message, want[i])
		}
	}
	if ack.Results[1].Code != loyalty.EINTERNAL || strings.Contains(ack.Results[1].Message, "disk") {
		t.Errorf("poison result %+v: want EINTERNAL without internal details", ack.Results[1])
	}
	if got := balance(t, h, "m1"); got != 40 {
		t.Errorf("balance %d, want 40 (the deltas around the poison one)", got)
	}
	rs, err := h.Rejections(ctx, 10)
	if err != nil || len(rs) != 1 || rs[0].Delta.ID != poison.ID || rs[0].Delta.Amount != 2000 {
		t.Errorf("rejections %+v, %v: want the whole poison delta kept for an operator", rs, err)
	}
	// A later push of the same batch changes nothing more.
	again := pushOK(t, h, "s1", a, b)
	for _, r := range again.Results {
		if r.Status != lsync.StatusDuplicate {
			t.Errorf("redelivery: %+v", r)
		}
	}
	mustCheck(t, h)
}

// A balance cannot be taken past MaxBalance, however many maximal earns arrive.
func TestAuthority_BalanceBound(t *testing.T) {
	h := openHub(t)
	withProgram(t, h, func(p *loyalty.Program) { p.Earn.PointsPerUnit = 100 }) // MaxAmount earns MaxPoints
	syncStores(t, h)
	n := int64(loyalty.MaxBalance / loyalty.MaxPoints)
	for sent := int64(0); sent <= n; {
		var ds []loyalty.Delta
		for ; len(ds) < 100 && sent <= n; sent++ {
			d := earn("s1", "m1", loyalty.MaxAmount)
			d.RuleVersion, d.Points = 2, loyalty.MaxPoints
			ds = append(ds, d)
		}
		for _, r := range pushOK(t, h, "s1", ds...).Results {
			if r.Status == lsync.StatusRejected {
				if r.Code != loyalty.EINVALID {
					t.Fatalf("over the balance bound: %+v", r)
				}
				if b := balance(t, h, "m1"); b > loyalty.MaxBalance {
					t.Fatalf("balance %d over %d", b, int64(loyalty.MaxBalance))
				}
				return
			}
		}
	}
	t.Fatalf("the balance passed MaxBalance without a rejection")
}

// During a long session a flushed pull moves the floor: everything made before it was pushed
// before it, so a change dated hours before it is a backdated one.
func TestAuthority_FlushedPullMovesTheFloor(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	h.Seen(ctx, "s1", lsync.Health{Connected: true, At: now})
	now = t0.Add(5 * time.Hour)
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000, Flushed: true}); err != nil {
		t.Fatal(err)
	}
	old := earn("s1", "m1", 1000)
	old.OccurredAt = t0.Add(2 * time.Hour)
	mustReject(t, h, "s1", old, loyalty.EINVALID)
	recent := earn("s1", "m1", 1000)
	recent.OccurredAt = now.Add(-30 * time.Minute) // within the allowance for clock error
	mustApply(t, h, "s1", recent)
}

// A store that received a newer rule version cannot go on using the old one once the allowance
// has passed, even within one session.
func TestAuthority_OldVersionAfterTheNewOneArrived(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	h.Seen(ctx, "s1", lsync.Health{Connected: true, At: now})
	withProgram(t, h, func(p *loyalty.Program) { p.Earn.PointsPerUnit = 2 })
	now = t0.Add(time.Minute)
	syncStores(t, h) // s1 is sent version 2 now...
	syncStores(t, h) // ...and its next pull shows it had it
	soon := earn("s1", "m1", 1000)
	soon.OccurredAt = now.Add(10 * time.Minute) // an old agent finishing a sale under version 1
	now = now.Add(11 * time.Minute)
	mustApply(t, h, "s1", soon)
	late := earn("s1", "m1", 1000)
	now = t0.Add(3 * time.Hour)
	late.OccurredAt = now
	mustReject(t, h, "s1", late, loyalty.EINVALID)
}

// A store that first synced after version 2 was published never had version 1, although
// version 1 is older than everything it was sent.
func TestAuthority_VersionNeverReceived(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) { p.Earn.PointsPerUnit = 2 })
	if _, _, err := h.CreateStore(ctx, "s3", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Pull(ctx, "s3", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	v1 := earn("s3", "m1", 1000)
	mustReject(t, h, "s3", v1, loyalty.EINVALID)
	v2 := earn("s3", "m1", 1000)
	v2.RuleVersion, v2.Points = 2, 20
	mustApply(t, h, "s3", v2)
}

// A store cannot stay on an old rule version by naming a cursor past the program's: the hub sends
// the current program to a store it never sent it to, and a version's replacement counts from the
// store's next pull.
func TestAuthority_CursorCannotHideANewVersion(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) { p.Earn.PointsPerUnit = 2 })
	ch, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: 1 << 62, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Program == nil || ch.Program.Version != 2 {
		t.Fatalf("a pull past the cursor got program %+v, want version 2", ch.Program)
	}
	h.Pull(ctx, "s1", lsync.Pull{Cursor: 1 << 62, Limit: 10}) // it had the answer
	now = t0.Add(2 * time.Hour)
	old := earn("s1", "m1", 1000)
	old.OccurredAt = now
	mustReject(t, h, "s1", old, loyalty.EINVALID)
}

// A session's first pull comes after its whole outbox, so it moves the floor to the session's
// start even from a store that never says its pulls are flushed.
func TestAuthority_SessionStartIsAFloor(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0.Add(10 * time.Hour)
	h.Now = func() time.Time { return now }
	h.Seen(ctx, "s1", lsync.Health{Connected: true, At: now})
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	back := earn("s1", "m1", 1000)
	back.OccurredAt = now.Add(-3 * time.Hour)
	mustReject(t, h, "s1", back, loyalty.EINVALID)
	recent := earn("s1", "m1", 1000)
	recent.OccurredAt = now.Add(-time.Minute)
	mustApply(t, h, "s1", recent)
}

// Punch cards change only with a sale and its refund, by exactly the sale's units.
func TestAuthority_PunchesOnlyFromSales(t *testing.T) {
	h := openHub(t)
	withProgram(t, h, func(p *loyalty.Program) {
		p.PunchCards = []loyalty.PunchCard{{ID: "beans", Name: "Beans", Category: "beans", Buy: 5, Reward: "coffee"}}
	})
	syncStores(t, h)
	fund(t, h, "m1", 500)
	r := redeem("s1", "m1", "coffee", 50)
	r.RuleVersion, r.Punches = 2, map[string]int64{"beans": 9_000_000_000_000_000_000}
	mustReject(t, h, "s1", r, loyalty.EINVALID)
	sale := earn("s1", "m1", 1000)
	sale.RuleVersion, sale.Lines, sale.Punches = 2, []loyalty.Line{{Category: "beans", Qty: 3, Amount: 1000}}, map[string]int64{"beans": 3}
	mustApply(t, h, "s1", sale)
	refund := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse, Points: -sale.Points,
		Reverses: sale.ID, RuleVersion: 2, OccurredAt: t0}
	mustReject(t, h, "s1", refund, loyalty.EINVALID) // keeps the punches of a refunded sale
	refund.Punches = map[string]int64{"beans": -3}
	mustApply(t, h, "s1", refund)
}

// Finding 3: a reversal gave quota back to whatever lease it named, in whatever budget the
// current program counted, so a store could refund a redemption into a budget it was never
// charged to (or into a fresh lease) and spend the room again. The hub now gives back exactly what
// the reversed delta was charged, to the lease it was charged from.
func TestAuthority_ReversalGivesBackWhatWasCharged(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40}}
	})
	fund(t, h, "m1", 1000)
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	l1 := mustLeases(t, h, "s1")[0]
	d := redeem("s1", "m1", "coffee", 50)
	d.RuleVersion, d.Leases = 2, map[string]string{"coffees": l1.ID}
	mustApply(t, h, "s1", d)

	// The program now also counts every redemption in a new budget, and the store holds a lease of it.
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{
			{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40},
			{ID: "all", Metric: loyalty.MetricRedemptions, Limit: 100},
		}
	})
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	var all hub.Lease
	for _, l := range mustLeases(t, h, "s1") {
		if l.Budget == "all" {
			all = l
		}
	}
	if all.ID == "" {
		t.Fatal("the store was leased nothing of the new budget")
	}
	r := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse, Points: 50,
		Reverses: d.ID, RuleVersion: 3, OccurredAt: t0, Leases: map[string]string{"coffees": all.ID, "all": all.ID}}
	mustApply(t, h, "s1", r)

	bs, err := h.Budgets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Spent != 0 {
			t.Errorf("budget %s spent %d after the refund, want 0", b.ID, b.Spent)
		}
		for _, l := range b.Leases {
			if l.Consumed != 0 {
				t.Errorf("lease of %s consumed %d after the refund, want 0", b.ID, l.Consumed)
			}
		}
	}
}

// A reversal of a delta the hub applied before it recorded charges gives back what the program
// of that time counted, not what today's program would: a budget added since gains no room.
func TestAuthority_LegacyReversalUsesTheProgramOfItsTime(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	tick := func() { now = now.Add(time.Second) }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40}}
	})
	tick()
	fund(t, h, "m1", 1000)
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	l1 := mustLeases(t, h, "s1")[0]
	old := redeem("s1", "m1", "coffee", 50)
	old.RuleVersion, old.OccurredAt, old.Leases = 2, now, map[string]string{"coffees": l1.ID}
	mustApply(t, h, "s1", old)

	// As if that redemption had been applied by a version that recorded no charges.
	db := openRaw(t, whereOf(t, h.Store))
	if _, err := db.Exec(`UPDATE counters SET value = (SELECT MAX(seq) FROM deltas) WHERE name = 'charges_from'`); err != nil {
		t.Fatal(err)
	}

	tick()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{
			{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40},
			{ID: "all", Metric: loyalty.MetricRedemptions, Limit: 100},
		}
	})
	tick()
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	leases := map[string]string{}
	for _, l := range mustLeases(t, h, "s1") {
		leases[l.Budget] = l.ID
	}
	fresh := redeem("s1", "m1", "coffee", 50)
	fresh.RuleVersion, fresh.OccurredAt, fresh.Leases = 3, now, leases
	mustApply(t, h, "s1", fresh)

	tick()
	mustApply(t, h, "s1", loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse, Points: 50,
		Reverses: old.ID, RuleVersion: 3, OccurredAt: now})
	bs, err := h.Budgets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Spent != 1 {
			t.Errorf("budget %s spent %d after the refund of the old redemption, want 1 (the new one)", b.ID, b.Spent)
		}
	}
}

// A stale tier is a copy of the member the store kept: a store that does not hold the member
// cannot have one, and its claim of a tier the member held a moment ago is refused.
func TestAuthority_StaleTierOnlyFromAStoreHoldingTheMember(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
			{ID: "base", Threshold: 0, Multiplier: 1000}, {ID: "silver", Threshold: 10_000, Multiplier: 1500},
			{ID: "gold", Threshold: 30_000, Multiplier: 2000}}}
	})
	syncStores(t, h)
	for i, amount := range []loyalty.Money{20_000, 20_000} { // silver, then gold
		now = t0.Add(time.Duration(i+1) * 10 * time.Minute)
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: fmt.Sprint("up", i), MemberID: "m1", Amount: amount, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := h.Member(ctx, "m1", 0); v.Tier != "gold" {
		t.Fatalf("m1 is %q, want gold", v.Tier)
	}
	now = t0.Add(30 * time.Minute)
	stale := func(store string) loyalty.Delta {
		d := earn(store, "m1", 1000)
		d.RuleVersion, d.Tier, d.Points, d.OccurredAt = 2, "silver", 15, now
		return d
	}
	// s2 never held m1 (whose home store is s1).
	if r := mustReject(t, h, "s2", stale("s2"), loyalty.EINVALID); !strings.Contains(r.Message, "does not hold") {
		t.Errorf("message %q does not say why", r.Message)
	}
	mustApply(t, h, "s1", stale("s1"))
}

// A store's earn or redemption that names another delta in reverses would count as that
// delta's refund wherever the hub adds up what was refunded: a voucher use undone (so that its
// purchase could be refunded online), a sale's refund allowed to give back far more than the
// sale earned. The hub refuses it: only a refund names what it reverses.
func TestAuthority_OnlyRefundsNameWhatTheyReverse(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "w1", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	v, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "w2", MemberID: "m1", RewardID: "coffee"})
	if err != nil {
		t.Fatal(err)
	}
	use := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindRedeem, Voucher: v.Voucher.ID,
		Reward: "coffee", RuleVersion: 1, OccurredAt: t0}
	mustApply(t, h, "s1", use)

	sale := earn("s1", "m1", 1000)
	mustApply(t, h, "s1", sale)
	forged := earn("s1", "m1", 100)
	forged.Reverses = use.ID
	mustReject(t, h, "s1", forged, loyalty.EINVALID)
	tote := redeem("s1", "m1", "tote", 250)
	tote.Amount, tote.Reverses = 1, sale.ID
	mustReject(t, h, "s1", tote, loyalty.EINVALID)

	// The voucher stays used, so its purchase cannot be refunded; the sale's refund gives back
	// what the sale earned, no more.
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "w2"}); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Errorf("refund of a used voucher's purchase: %v, want ECONFLICT", err)
	}
	greedy := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindReverse, Reverses: sale.ID,
		Points: -sale.Points + 250, RuleVersion: 1, OccurredAt: t0}
	mustReject(t, h, "s1", greedy, loyalty.EINVALID)
	mustCheck(t, h)
}

// A store spends only the points of members it holds: a hostile store must not spend those of a
// member it never saw (m2, of s2), nor bring them in by inventing a sale. One it scanned online,
// or whose code it scanned for a sale before in the same push or for the redemption itself (a
// new member met offline), it may; a voucher proves itself at any store.
func TestAuthority_RedeemOnlyForMembersTheStoreHolds(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	fund(t, h, "m2", 300)
	r := mustReject(t, h, "s1", redeem("s1", "m2", "tote", 250), loyalty.EUNAUTHORIZED)
	if !strings.Contains(r.Message, "scan") {
		t.Errorf("the refusal does not say what brings the member in: %q", r.Message)
	}
	// A sale of a cent, invented, then the redemption: the sale is the store's word alone.
	penny := earn("s1", "m2", 1)
	ack := pushOK(t, h, "s1", penny, redeem("s1", "m2", "tote", 250))
	if ack.Results[0].Status != lsync.StatusApplied || ack.Results[1].Code != loyalty.EUNAUTHORIZED {
		t.Errorf("an invented sale and a redemption: %+v", ack.Results)
	}
	if len(ack.Balances) != 0 {
		t.Errorf("the invented sale's ack told m2's balance: %+v", ack.Balances)
	}
	if again := pushOK(t, h, "s1", penny); again.Results[0].Status != lsync.StatusDuplicate || len(again.Balances) != 0 {
		t.Errorf("the invented sale sent again: %+v", again)
	}
	hold(t, h, "s1", "m2")
	mustApply(t, h, "s1", redeem("s1", "m2", "tote", 250))

	for _, id := range []string{"walk-in", "walk-in2"} {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	sale, coffee := scanned(t, h, earn("s1", "walk-in", 6000)), redeem("s1", "walk-in", "coffee", 50)
	for _, res := range pushOK(t, h, "s1", sale, coffee).Results {
		if res.Status != lsync.StatusApplied {
			t.Errorf("a sale and a redemption of a member met offline: %+v", res)
		}
	}
	if got := balance(t, h, "walk-in"); got != 10 {
		t.Errorf("walk-in's balance %d, want 10", got)
	}
	fund(t, h, "walk-in2", 100)
	mustApply(t, h, "s1", scanned(t, h, redeem("s1", "walk-in2", "coffee", 50)))

	v, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "w1", MemberID: "m2", RewardID: "coffee"})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, h, "s2", loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s2", Member: "m2", Kind: loyalty.KindRedeem,
		Voucher: v.Voucher.ID, Reward: "coffee", RuleVersion: 1, OccurredAt: t0})
	mustCheck(t, h)
}

// A member's copy holds personal data, and a store holding a member may spend their points: the
// hub hands a member to a store only with a reason, its home store's member, or one whose code
// the store scanned, current and theirs (for the subscription, or for a change it pushed). The
// refusals tell nothing of the member.
func TestAuthority_SubscribeNeedsAReason(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m7", Email: "victim@example.com", Name: "Victim", HomeStore: "s2"}); err != nil {
		t.Fatal(err)
	}
	code := func(member string) string {
		c, err := h.MemberToken(ctx, member)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, c := range []struct {
		what string
		req  lsync.Subscribe
		want string
	}{
		{"no code", lsync.Subscribe{Member: "m7"}, loyalty.EUNAUTHORIZED},
		{"another member's code", lsync.Subscribe{Member: "m7", QR: code("m1")}, loyalty.EUNAUTHORIZED},
		{"a forged code", lsync.Subscribe{Member: "m7", QR: code("m7")[:20] + "x" + code("m7")[21:]}, loyalty.EINVALID},
		{"no code, no member", lsync.Subscribe{Member: "ghost"}, loyalty.EUNAUTHORIZED},
	} {
		m, _, err := h.Subscribe(ctx, "s1", c.req)
		if loyalty.ErrorCode(err) != c.want || m != nil {
			t.Errorf("%s: %+v, %v; want %s", c.what, m, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "victim") {
			t.Errorf("%s: the refusal tells of the member: %v", c.what, err)
		}
	}
	if m, _, err := h.Subscribe(ctx, "s2", lsync.Subscribe{Member: "m7"}); err != nil || m.Email != "victim@example.com" {
		t.Errorf("the home store: %+v, %v", m, err)
	}
	if m, _, err := h.Subscribe(ctx, "s1", lsync.Subscribe{Member: "m7", QR: code("m7")}); err != nil || m.ID != "m7" {
		t.Fatalf("with the member's code: %+v, %v", m, err)
	}
	if _, _, err := h.Subscribe(ctx, "s1", lsync.Subscribe{Member: "m7"}); err != nil {
		t.Errorf("a member the store holds, without a code: %v", err)
	}
	// A code that proves nothing (expired) leaves the other reasons: the store holds m7 now.
	h.MemberTokenTTL = time.Minute
	expired := code("m7")
	h.MemberTokenTTL = 0
	now := h.Now()
	h.Now = func() time.Time { return now.Add(time.Hour) }
	if _, _, err := h.Subscribe(ctx, "s1", lsync.Subscribe{Member: "m7", QR: expired}); err != nil {
		t.Errorf("a member the store holds, with an expired code: %v", err)
	}
	if _, _, err := h.Subscribe(ctx, "s2", lsync.Subscribe{Member: "m1", QR: expired}); loyalty.ErrorCode(err) == "" {
		t.Error("another member's expired code was taken")
	}
	h.Now = func() time.Time { return now }
	// A sale is no reason: a store can invent one. A sale made from a scan of the member's code
	// brings them back.
	if err := h.Unsubscribe(ctx, "s1", []string{"m7"}); err != nil {
		t.Fatal(err)
	}
	mustApply(t, h, "s1", earn("s1", "m7", 1))
	if _, _, err := h.Subscribe(ctx, "s1", lsync.Subscribe{Member: "m7"}); loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED {
		t.Errorf("a member with a sale at the store and no code: %v, want EUNAUTHORIZED", err)
	}
	mustApply(t, h, "s1", scanned(t, h, earn("s1", "m7", 1000)))
	if _, _, err := h.Subscribe(ctx, "s1", lsync.Subscribe{Member: "m7"}); err != nil {
		t.Errorf("a member whose code the store scanned for a sale: %v", err)
	}
}

// A store's change brings its member into the store's scope only with proof that the member was
// there: the member's own code, authentic, and valid when the change happened. The hub checks
// the code and keeps it nowhere; a change sent again with or without it is the same change.
func TestAuthority_PresenceBringsAMemberIn(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	holds := func(store, member string) bool {
		t.Helper()
		_, _, err := h.Subscribe(ctx, store, lsync.Subscribe{Member: member})
		if err != nil && loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED {
			t.Fatal(err)
		}
		return err == nil
	}
	code := func(member string) string {
		c, err := h.MemberToken(ctx, member)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Codes valid for an hour: one minted two hours before the sale, one half an hour before.
	codeAt := func(member string, at time.Time) string {
		h.Now, h.MemberTokenTTL = func() time.Time { return at }, time.Hour
		defer func() { h.Now, h.MemberTokenTTL = func() time.Time { return t0 }, 0 }()
		return code(member)
	}
	expired, valid := codeAt("m2", t0.Add(-2*time.Hour)), codeAt("m2", t0.Add(-30*time.Minute))
	for _, c := range []struct{ what, presence string }{
		{"another member's code", code("m1")},
		{"a forged code", code("m2")[:20] + "x" + code("m2")[21:]},
		{"not a code", "LES1.nonsense"},
		{"a code expired when the sale happened", expired},
	} {
		d := earn("s1", "m2", 1000)
		d.Presence = c.presence
		if r := pushOK(t, h, "s1", d).Results[0]; r.Status != lsync.StatusApplied {
			t.Errorf("%s: %+v; the sale stands on its own", c.what, r)
		}
		if holds("s1", "m2") {
			t.Fatalf("%s brought m2 into s1's scope", c.what)
		}
	}

	// An offline sale, pushed two hours later: its code has expired since, not at the sale.
	d := earn("s1", "m2", 1000)
	d.Presence = valid
	h.Now = func() time.Time { return t0.Add(2 * time.Hour) }
	ack := pushOK(t, h, "s1", d)
	if ack.Results[0].Status != lsync.StatusApplied || !holds("s1", "m2") {
		t.Fatalf("m2's code, valid at the sale: %+v, in scope %v", ack.Results, holds("s1", "m2"))
	}
	again := d
	again.Presence = ""
	if r := pushOK(t, h, "s1", again).Results[0]; r.Status != lsync.StatusDuplicate {
		t.Errorf("the same sale sent again without its code: %+v", r)
	}
	bad := d
	bad.Presence = "LES1.other"
	if r := pushOK(t, h, "s1", bad).Results[0]; r.Status != lsync.StatusDuplicate {
		t.Errorf("the same sale sent again with another code: %+v", r)
	}
	v, err := h.Member(ctx, "m2", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Ledger) < 5 {
		t.Fatalf("m2's ledger: %d entries", len(v.Ledger))
	}
	if b, _ := json.Marshal(v.Ledger); strings.Contains(string(b), qr.Prefix) {
		t.Errorf("the ledger kept a scanned code: %s", b)
	}
	// A rejected change's record keeps no code either.
	big := earn("s1", "m2", 1000)
	big.Presence, big.Kind, big.Points = code("m2"), loyalty.KindAdjust, 5
	mustReject(t, h, "s1", big, loyalty.EUNAUTHORIZED)
	rej, err := h.Rejections(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rej {
		if r.Delta.Presence != "" {
			t.Errorf("rejection %s kept the scanned code", r.Delta.ID)
		}
	}

	// An erased member's codes name no one any more: a store that kept one gains nothing by it.
	erased := code("m1")
	if _, err := h.EraseMember(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	late := earn("s2", "m1", 1000)
	late.Presence = erased
	if r := pushOK(t, h, "s2", late).Results[0]; r.Status != lsync.StatusApplied {
		t.Errorf("a sale of an erased member: %+v", r)
	}
	if holds("s2", "m1") {
		t.Error("an erased member's code brought them into a store's scope")
	}
}

// A store's redemption is held to the reward's rules as the online channel is: a reward for
// some tiers only, for a member who held none of them while the store could have seen it, and a
// second reward on an order whose rewards do not stack, are refused. A gold member may have
// the gold reward, and stackable rewards share an order.
func TestAuthority_RedemptionRulesOfTheReward(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
			{ID: "base", Threshold: 0, Multiplier: 1000}, {ID: "gold", Threshold: 150_000, Multiplier: 1000}}}
		p.Rewards = append(p.Rewards, loyalty.Reward{ID: "lounge", Name: "Gold lounge", PointsCost: 10, Kind: "free_product", Tiers: []string{"gold"}})
		for i := range p.Rewards {
			p.Rewards[i].Stackable = p.Rewards[i].ID != "tote"
		}
	})
	syncStores(t, h)
	fund(t, h, "m1", 1000)
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "big", MemberID: "m2", Amount: 200_000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if v, err := h.Member(ctx, "m2", 0); err != nil || v.Tier != "gold" {
		t.Fatalf("m2: %+v, %v; want gold", v, err)
	}
	hold(t, h, "s1", "m2")
	at := func(d loyalty.Delta, order string) loyalty.Delta {
		d.RuleVersion, d.OrderID, d.OccurredAt = 2, order, h.Now()
		return d
	}
	mustReject(t, h, "s1", at(redeem("s1", "m1", "lounge", 10), "o1"), loyalty.EINVALID)
	mustApply(t, h, "s1", at(redeem("s1", "m2", "lounge", 10), "o2"))

	mustApply(t, h, "s1", at(redeem("s1", "m1", "coffee", 50), "o3"))
	mustApply(t, h, "s1", at(redeem("s1", "m1", "five-off", 100), "o3")) // both stack
	mustReject(t, h, "s1", at(redeem("s1", "m1", "tote", 250), "o3"), loyalty.EINVALID)
	mustApply(t, h, "s1", at(redeem("s1", "m1", "tote", 250), "o4"))
	mustCheck(t, h)
}

// The record of a rejected delta is the first one: a store that pushes the same id again with
// harmless content does not replace what operators see of what it pushed.
func TestAuthority_RejectionRecordStands(t *testing.T) {
	h := openHub(t)
	forged := earn("s1", "m1", 100)
	forged.Points = 1_000_000
	mustReject(t, h, "s1", forged, loyalty.EINVALID)
	again := forged
	again.Points, again.Amount = 1, 100
	again.Currency = "eur"
	mustReject(t, h, "s1", again, loyalty.EINVALID)
	rs, err := h.Rejections(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rs {
		if r.Delta.ID == forged.ID {
			n++
			if r.Delta.Points != forged.Points {
				t.Errorf("the rejection of %s records %d points, want the first push's %d", forged.ID, r.Delta.Points, forged.Points)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d records of %s, want 1", n, forged.ID)
	}
}

// A voucher's reward stacks as a redemption of it would, whichever came first on the order: a
// voucher used online on an order that carries a reward that is not stackable is refused (the
// agent refuses it at the till: agent's TestPOSBadInput). A store's use of it arrives as what the
// till gave, and is honoured: rejected, it would leave the voucher unused and usable again.
func TestAuthority_VoucherAfterRewardStacks(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	syncStores(t, h)
	fund(t, h, "m1", 1000)
	buy := func(order string) hub.Voucher {
		t.Helper()
		v, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: order, MemberID: "m1", RewardID: "five-off"})
		if err != nil {
			t.Fatal(err)
		}
		return v.Voucher
	}
	// Online.
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "W-1", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	online := buy("buy-1")
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "W-1", Voucher: online.Token}); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("a voucher on an online order with a reward: %v, want EINVALID", err)
	}
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "W-2", Voucher: online.Token}); err != nil {
		t.Errorf("the voucher on an order of its own: %v", err)
	}
	// From a store.
	coffee := redeem("s1", "m1", "coffee", 50)
	coffee.OrderID = "S-1"
	mustApply(t, h, "s1", coffee)
	store := buy("buy-2")
	use := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindRedeem, Reward: "five-off",
		Voucher: store.ID, OrderID: "S-1", RuleVersion: 1, OccurredAt: t0}
	mustApply(t, h, "s1", use)
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "W-3", Voucher: store.Token}); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Errorf("the voucher the store used, online: %v, want ECONFLICT (used)", err)
	}
	mustCheck(t, h)
}

// outageStore is a hub Store whose first failures write transactions fail, as storage that is
// down or out of reach does.
type outageStore struct {
	hub.Store
	failures int
	calls    *atomic.Int64
}

func (s outageStore) Update(ctx context.Context, fn func(hub.Tx) error) error {
	if s.calls.Add(1) <= int64(s.failures) {
		return errors.New("connection refused (simulated)")
	}
	return s.Store.Update(ctx, fn)
}

// A delta is set aside only for failing on its own: when storage fails every transaction, the
// push fails and the store sends it again. Before, an outage that ended just before the last
// step set a good sale aside for good (a rejection is final).
func TestAuthority_OutageSetsNothingAside(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	real := h.Store
	calls := &atomic.Int64{}
	// The batch's transaction, the delta's own and the next write fail.
	h.Store = outageStore{Store: real, failures: 3, calls: calls}
	sale := earn("s1", "m1", 1000)
	if _, err := h.Push(ctx, "s1", []loyalty.Delta{sale}); err == nil {
		t.Fatal("a push during the outage was answered")
	}
	h.Store = real
	if ack := pushOK(t, h, "s1", sale); ack.Results[0].Status != lsync.StatusApplied {
		t.Errorf("the sale pushed again after the outage: %+v, want applied", ack.Results[0])
	}
	if rs, err := h.Rejections(ctx, 10); err != nil || len(rs) != 0 {
		t.Errorf("rejections %+v, %v: want none", rs, err)
	}
}
