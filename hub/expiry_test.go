package hub_test

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/migratetest"
)

// TestLotExpiry_Sweep: four lots of m1, one of them refunded in full, a redemption that spends
// part of the oldest, and sweeps on the expiry days. Each lot's points expire 30 days after its
// earn unless spent first; the refunded sale is no lot; a sweep run again expires nothing more;
// GET /v1/expiring lists the points of each lot with its date.
func TestLotExpiry_Sweep(t *testing.T) {
	a := openAKHub(t)
	h := a.Hub
	ctx := context.Background()
	day0 := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	now := day0
	h.Now = func() time.Time { return now }
	day := func(n int) time.Time { return day0.AddDate(0, 0, n) }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30, RemindDays: 7}
	})
	sale := func(order string, points int64) {
		t.Helper()
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: loyalty.Money(points * 100), Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	sweep := func(wantExpired int, wantBalance int64) {
		t.Helper()
		n, err := h.ExpirePoints(ctx)
		if err != nil || n != wantExpired {
			t.Fatalf("day %v: the sweep expired points of %d members (%v), want %d", now.Sub(day0).Hours()/24, n, err, wantExpired)
		}
		if b := balance(t, h, "m1"); b != wantBalance {
			t.Fatalf("day %v: balance %d, want %d", now.Sub(day0).Hours()/24, b, wantBalance)
		}
		mustCheck(t, h)
	}
	sale("L-A", 100) // day 0: expires day 30
	now = day(10)
	sale("L-B", 50) // expires day 40
	now = day(20)
	sale("L-C", 30) // expires day 50
	now = day(21)
	sale("L-D", 40) // refunded the next day: it never was a lot
	now = day(22)
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "L-D"}); err != nil {
		t.Fatal(err)
	}
	now = day(25)
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "R-1", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err) // 50 points: half of lot A
	}
	sweep(0, 130)

	// Within remind_days of lot A's expiry: its remaining 50 points, with their date.
	var page hub.ExpiringPage
	a.mustDo(t, akAdminKey, "GET", "/v1/expiring", "", http.StatusOK, &page)
	soon := page.Expiring
	if page.Next != "" || len(soon) != 1 || soon[0].Member != "m1" || soon[0].Points != 50 || soon[0].Balance != 130 || !soon[0].ExpiresAt.Equal(day(30)) {
		t.Fatalf("expiring on day 25: %+v, want m1's 50 points on day 30", soon)
	}

	now = day(30).Add(-time.Millisecond)
	sweep(0, 130)
	now = day(30)
	sweep(1, 80) // A's 50 left
	sweep(0, 80) // again: nothing expires twice
	v, err := h.Member(ctx, "m1", 1)
	if err != nil || v.Ledger[0].Kind != loyalty.KindExpire || v.Ledger[0].Points != -50 || v.Ledger[0].Store != loyalty.HubStore {
		t.Fatalf("the expiry in the ledger: %+v, %v", v.Ledger, err)
	}

	// Two hub processes sweeping the same database at once expire lot B once.
	now = day(40)
	other := hub.New(h.Store)
	other.Now, other.Logger = h.Now, h.Logger
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, x := range []*hub.Hub{h, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := x.ExpirePoints(ctx)
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		}()
	}
	wg.Wait()
	if counts[0]+counts[1] != 1 || balance(t, h, "m1") != 30 {
		t.Fatalf("two sweeps at once: %v expired, balance %d; want one expiry, 30 left", counts, balance(t, h, "m1"))
	}
	mustCheck(t, h)

	// New points after a spend: the spend took the oldest (C's 30), the new lot stays whole.
	now = day(45)
	sale("L-E", 60)
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "R-2", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	now = day(50)
	sweep(0, 40) // C was spent in full
	soon, err = h.ExpiringSoon(ctx)
	if err != nil || len(soon) != 0 {
		t.Fatalf("on day 50: expiring soon %+v, %v; want nothing (E expires on day 75)", soon, err)
	}
	now = day(75)
	sweep(1, 0) // the 40 of E that the redemption left
}

// TestLotExpiry_LateRedemption: an offline store's redemption that arrives after the expiry it
// predates spent half of the lot that expired; the hub gives that half back with the
// redemption, in its transaction, so the member is not short and no overdraft is recorded; lot 2
// expires in full later, as it would have had the redemption arrived in time.
func TestLotExpiry_LateRedemption(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	day0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // openHub's t0: the stores' claims are checked against it
	now := day0
	h.Now = func() time.Time { return now }
	day := func(n int) time.Time { return day0.AddDate(0, 0, n) }
	withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30} })
	syncStores(t, h)
	e1 := earn("s1", "m1", 10000) // 100 points on day 0
	e1.RuleVersion, e1.OccurredAt = 2, now
	pushOK(t, h, "s1", e1)
	now = day(10)
	e2 := earn("s1", "m1", 5000) // 50 points on day 10
	e2.RuleVersion, e2.OccurredAt = 2, now
	pushOK(t, h, "s1", e2)
	syncStores(t, h)

	now = day(30)
	if n, err := h.ExpirePoints(ctx); err != nil || n != 1 || balance(t, h, "m1") != 50 {
		t.Fatalf("day 30: %d expired, %v, balance %d; want lot 1's 100 expired", n, err, balance(t, h, "m1"))
	}
	// The store redeemed 50 on day 29, offline, from the member's code; it arrives now.
	late := redeem("s1", "m1", "coffee", 50)
	late.RuleVersion, late.OccurredAt = 2, day(29)
	late.Presence = codeAt(t, h, &now, "m1", day(29))
	syncStores(t, h)
	if r := pushOK(t, h, "s1", late).Results[0]; r.Status != "applied" {
		t.Fatalf("the late redemption: %+v", r)
	}
	if b := balance(t, h, "m1"); b != 50 {
		t.Fatalf("after the late redemption: %d, want 50 (lot 1's other half expired, lot 2 whole)", b)
	}
	if cs, err := h.Conflicts(ctx, 10); err != nil || len(cs) != 0 {
		t.Fatalf("conflicts %+v, %v; want none: the expired points paid for the redemption", cs, err)
	}
	v, err := h.Member(ctx, "m1", 1)
	if err != nil || v.Ledger[0].Kind != loyalty.KindExpire || v.Ledger[0].Points != 50 || v.Ledger[0].Store != loyalty.HubStore {
		t.Fatalf("the newest ledger entry: %+v, %v; want the hub's expire of +50", v.Ledger, err)
	}
	// Pushed again (its acknowledgement lost), it gives back nothing more.
	if r := pushOK(t, h, "s1", late).Results[0]; r.Status != "duplicate" || balance(t, h, "m1") != 50 {
		t.Fatalf("the redemption again: %+v, balance %d", r, balance(t, h, "m1"))
	}
	mustCheck(t, h)
	now = day(40)
	if n, err := h.ExpirePoints(ctx); err != nil || n != 1 || balance(t, h, "m1") != 0 {
		t.Fatalf("day 40: %d expired, %v, balance %d; want lot 2's 50 expired", n, err, balance(t, h, "m1"))
	}
	mustCheck(t, h)
}

// TestExpiry_GivesBack: each change review found an expiry took points for wrongly, on the
// embedded and the PostgreSQL backend alike: an offline sale dated before an inactivity expiry
// (the member was active after all), a refund of a sale whose lot had expired, the reversal of
// an adjustment whose points had expired. Each gives back in the change's own transaction, once.
func TestExpiry_GivesBack(t *testing.T) {
	ctx := context.Background()
	day0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	day := func(n int) time.Time { return day0.AddDate(0, 0, n) }
	setup := func(t *testing.T, x loyalty.Expiry) (*hub.Hub, *time.Time) {
		h := openHub(t)
		now := day0
		h.Now = func() time.Time { return now }
		withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &x })
		syncStores(t, h)
		return h, &now
	}
	expire := func(t *testing.T, h *hub.Hub, want int) {
		t.Helper()
		if n, err := h.ExpirePoints(ctx); err != nil || n != want {
			t.Fatalf("the sweep expired points of %d members (%v), want %d", n, err, want)
		}
	}
	want := func(t *testing.T, h *hub.Hub, b int64) {
		t.Helper()
		if got := balance(t, h, "m1"); got != b {
			t.Fatalf("balance %d, want %d", got, b)
		}
		if cs, err := h.Conflicts(ctx, 10); err != nil || len(cs) != 0 {
			t.Fatalf("conflicts %+v, %v; want none", cs, err)
		}
		mustCheck(t, h)
	}

	// expiredSale: 100 points earned at s1 on day 0, expired in mode inactivity (30 days) on day 31.
	expiredSale := func(t *testing.T) (*hub.Hub, *time.Time) {
		h, now := setup(t, loyalty.Expiry{Mode: loyalty.ExpiryInactivity, AfterDays: 30})
		e := earn("s1", "m1", 10000)
		e.RuleVersion, e.OccurredAt = 2, *now
		pushOK(t, h, "s1", e)
		*now = day(31)
		expire(t, h, 1)
		want(t, h, 0)
		return h, now
	}
	// pushApplied pushes changes and checks they were applied.
	pushApplied := func(t *testing.T, h *hub.Hub, store string, ds ...loyalty.Delta) {
		t.Helper()
		syncStores(t, h)
		for _, r := range pushOK(t, h, store, ds...).Results {
			if r.Status != "applied" {
				t.Fatalf("a late change: %+v", r)
			}
		}
	}
	// pushLate pushes changes made offline from the member's code, dated as they were, and checks
	// they were applied.
	pushLate := func(t *testing.T, h *hub.Hub, now *time.Time, store string, ds ...loyalty.Delta) {
		t.Helper()
		for i := range ds {
			ds[i].Presence = codeAt(t, h, now, ds[i].Member, ds[i].OccurredAt)
		}
		pushApplied(t, h, store, ds...)
	}

	t.Run("inactivity: an offline sale dated before the expiry", func(t *testing.T) {
		h, now := expiredSale(t)
		// Store s2 sold to the member on day 20, offline; it arrives on day 31. The member was
		// active within 30 days of day 31: the 100 points stay theirs, with the 20 new ones.
		late := earn("s2", "m1", 2000)
		late.RuleVersion, late.OccurredAt = 2, day(20)
		pushLate(t, h, now, "s2", late)
		want(t, h, 120)
		expire(t, h, 0) // the activity of day 20 keeps them until day 50
		*now = day(50)
		expire(t, h, 1)
		want(t, h, 0)
	})
	t.Run("inactivity: an offline redemption dated before the expiry", func(t *testing.T) {
		h, now := expiredSale(t)
		late := redeem("s1", "m1", "coffee", 50)
		late.RuleVersion, late.OccurredAt = 2, day(29)
		pushLate(t, h, now, "s1", late)
		want(t, h, 50) // not -50, and no overdraft
	})
	t.Run("inactivity: two late redemptions in one push", func(t *testing.T) {
		h, now := expiredSale(t)
		r1, r2 := redeem("s1", "m1", "coffee", 50), redeem("s1", "m1", "coffee", 50)
		r1.RuleVersion, r1.OccurredAt = 2, day(25)
		r2.RuleVersion, r2.OccurredAt = 2, day(26)
		pushLate(t, h, now, "s1", r1, r2)
		want(t, h, 0) // the expiry given back once, both redemptions spent, no overdraft
		v, err := h.Member(ctx, "m1", 10)
		if err != nil {
			t.Fatal(err)
		}
		var back int
		for _, e := range v.Ledger {
			if e.Kind == loyalty.KindExpire && e.Points > 0 {
				back++
			}
		}
		if back != 1 {
			t.Fatalf("%d give-backs in the ledger, want 1: %+v", back, v.Ledger)
		}
	})
	t.Run("an expiry written before give-backs is kept as written", func(t *testing.T) {
		// Before this version an operator set a member right by hand, with an adjustment the
		// replay cannot tell from any other: such an expiry (no reason) is never replayed.
		h, now := expiredSale(t)
		db := openRaw(t, whereOf(t, h.Store))
		strip := `UPDATE deltas SET body = json_remove(body, '$.reason') WHERE kind = 'expire'`
		if db.postgres {
			strip = `UPDATE deltas SET body = (body::jsonb - 'reason')::text WHERE kind = 'expire'`
		}
		if _, err := db.Exec(strip); err != nil {
			t.Fatal(err)
		}
		late := earn("s2", "m1", 2000)
		late.RuleVersion, late.OccurredAt = 2, day(20)
		pushLate(t, h, now, "s2", late)
		want(t, h, 20)
	})
	t.Run("a late sale without the member's code gives nothing back", func(t *testing.T) {
		// A store can invent a sale; dated before an expiry, it would bring back points nobody
		// paid for. Without the member's code (or with another member's) it is applied as it
		// stands, and the expiry stands.
		h, now := expiredSale(t)
		forged := earn("s2", "m1", 1)
		forged.RuleVersion, forged.OccurredAt = 2, day(30)
		other := earn("s2", "m1", 1)
		other.RuleVersion, other.OccurredAt = 2, day(30)
		other.Presence = codeAt(t, h, now, "m2", day(30))
		pushApplied(t, h, "s2", forged, other)
		want(t, h, 0)
	})
	t.Run("an invented late sale counts from when it arrived, in every later replay", func(t *testing.T) {
		// Without proof the sale is applied and the expiry stands; its store's refund of it then
		// replays the expiry (a refund of a lot dated before it), still without the sale as
		// activity on day 30: nothing was bought, nothing comes back.
		h, now := expiredSale(t)
		*now = now.Add(time.Minute)
		forged := earn("s2", "m1", 100)
		forged.RuleVersion, forged.OccurredAt = 2, day(30)
		pushApplied(t, h, "s2", forged)
		want(t, h, 1)
		refund := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s2", Member: "m1", Kind: loyalty.KindReverse, Points: -1,
			Reverses: forged.ID, RuleVersion: 2, OccurredAt: *now}
		pushApplied(t, h, "s2", refund)
		want(t, h, 0)
	})
	t.Run("a code issued after the change proves nothing of it", func(t *testing.T) {
		h, now := expiredSale(t)
		late := earn("s2", "m1", 100)
		late.RuleVersion, late.OccurredAt = 2, day(30)
		late.Presence = codeAt(t, h, now, "m1", day(31)) // shown on day 31, after the expiry
		pushApplied(t, h, "s2", late)
		want(t, h, 1)
	})
	t.Run("a code kept from a visit long before proves nothing of the change", func(t *testing.T) {
		h, now := expiredSale(t)
		late := earn("s2", "m1", 100)
		late.RuleVersion, late.OccurredAt = 2, day(30)
		late.Presence = codeAt(t, h, now, "m1", day(30).Add(-31*24*time.Hour)) // more than claims.max_offline before
		pushApplied(t, h, "s2", late)
		want(t, h, 1)
	})
	t.Run("when points last expired outlives the member's next change", func(t *testing.T) {
		h, now := expiredSale(t)
		*now = now.Add(time.Hour)
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-9", MemberID: "m1", Amount: 100, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		late := earn("s2", "m1", 2000)
		late.RuleVersion, late.OccurredAt = 2, day(20)
		pushLate(t, h, now, "s2", late)
		want(t, h, 121)
	})
	t.Run("lot: late redemptions with proof in two pushes", func(t *testing.T) {
		// The first push's proof is kept: the second push's replay counts its redemption on its
		// date too, and each gets back what it spent of the expired lot.
		h, now := setup(t, loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30})
		e := earn("s1", "m1", 10000)
		e.RuleVersion, e.OccurredAt = 2, *now
		pushOK(t, h, "s1", e)
		*now = day(30)
		expire(t, h, 1)
		r1, r2 := redeem("s1", "m1", "coffee", 50), redeem("s1", "m1", "coffee", 50)
		r1.RuleVersion, r1.OccurredAt = 2, day(25)
		r2.RuleVersion, r2.OccurredAt = 2, day(26)
		*now = now.Add(time.Minute)
		pushLate(t, h, now, "s1", r1)
		want(t, h, 0)
		*now = now.Add(time.Minute)
		pushLate(t, h, now, "s1", r2)
		want(t, h, 0) // both spent the lot before it expired: nothing expired, nothing owed
	})
	t.Run("lot: a redemption received while the sweep runs", func(t *testing.T) {
		// The sweep dates its expiries when its run starts, and reads m1's balance after a
		// redemption of day 25 (with m1's code) arrived between two of its batches: not late then,
		// so no proof was kept for it. The replay counts what the sweep's batch had counted: a
		// later redemption of day 26 gets back the 50 points it spent of the expired lot.
		h, now := setup(t, loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30})
		for _, m := range []string{"m2", "m1"} { // m2 due first
			e := earn("s1", m, 10000)
			e.RuleVersion, e.OccurredAt = 2, *now
			pushOK(t, h, "s1", e)
			*now = now.Add(time.Minute)
		}
		*now = day(30).Add(2 * time.Minute)
		batches := 0
		run, err := h.ExpirePointsWith(ctx, hub.JobOptions{Batch: 1, OnBatch: func(int) {
			if batches++; batches == 1 {
				*now = now.Add(time.Minute)
				r1 := redeem("s1", "m1", "coffee", 50)
				r1.RuleVersion, r1.OccurredAt = 2, day(25)
				pushLate(t, h, now, "s1", r1)
			}
		}})
		if err != nil || run.Changed != 2 {
			t.Fatalf("the sweep: %+v, %v; want both members' points expired", run, err)
		}
		want(t, h, 0) // 100: 50 spent on day 25, 50 expired
		*now = day(31)
		r2 := redeem("s1", "m1", "coffee", 50)
		r2.RuleVersion, r2.OccurredAt = 2, day(26)
		pushLate(t, h, now, "s1", r2)
		want(t, h, 0)
	})
	t.Run("lot: many late redemptions in one push", func(t *testing.T) {
		// The member's first hub.MaxReplays late redemptions each get back what they spent of
		// the expired lot as they are applied; past those, the replay waits for the end of the
		// push, and the redemptions before it are overdrafts for a while (conflicts an operator
		// sees: so many late changes for one member at once are worth a look). The member ends
		// where they would have had the redemptions arrived in time.
		h, now := setup(t, loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30})
		e := earn("s1", "m1", 5000*(hub.MaxReplays+4)) // enough for every redemption below
		e.RuleVersion, e.OccurredAt = 2, *now
		pushOK(t, h, "s1", e)
		*now = day(30)
		expire(t, h, 1)
		var ds []loyalty.Delta
		for i := range hub.MaxReplays + 4 {
			r := redeem("s1", "m1", "coffee", 50)
			r.RuleVersion, r.OccurredAt = 2, day(20).Add(time.Duration(i)*time.Minute)
			ds = append(ds, r)
		}
		pushLate(t, h, now, "s1", ds...)
		if b := balance(t, h, "m1"); b != 0 {
			t.Fatalf("balance %d, want 0: every redemption spent the lot before it expired", b)
		}
		cs, err := h.Conflicts(ctx, 100)
		if err != nil || len(cs) != 4 {
			t.Fatalf("conflicts %+v, %v; want the 4 redemptions past the first %d", cs, err, hub.MaxReplays)
		}
		v, err := h.Member(ctx, "m1", 100)
		if err != nil {
			t.Fatal(err)
		}
		var back, given int64
		for _, e := range v.Ledger {
			if e.Kind == loyalty.KindExpire && e.Points > 0 {
				back++
				given += e.Points
			}
		}
		if back != hub.MaxReplays+1 || given != 50*int64(hub.MaxReplays+4) {
			t.Fatalf("%d give-backs of %d points in all, want %d of %d", back, given, hub.MaxReplays+1, 50*(hub.MaxReplays+4))
		}
		mustCheck(t, h)
	})
	t.Run("lot: a refund of a sale whose points expired", func(t *testing.T) {
		h, now := setup(t, loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30})
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-1", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		*now = day(10)
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-2", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		*now = day(30)
		expire(t, h, 1)
		want(t, h, 100)
		// The first sale is refunded: its 100 points had expired, so the member keeps the second's.
		if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-1"}); err != nil {
			t.Fatal(err)
		}
		want(t, h, 100)
		*now = day(40)
		expire(t, h, 1)
		want(t, h, 0)
	})
	t.Run("lot: the reversal of an adjustment whose points expired", func(t *testing.T) {
		h, now := setup(t, loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30})
		_, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "ADJ-1", MemberID: "m1", Points: 100, Reason: "goodwill"})
		if err != nil {
			t.Fatal(err)
		}
		*now = day(10)
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-2", MemberID: "m1", Amount: 5000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		*now = day(30)
		expire(t, h, 1)
		want(t, h, 50)
		if _, err := h.ReverseAdjustment(ctx, "ADJ-1", "entered twice"); err != nil {
			t.Fatal(err)
		}
		want(t, h, 50)
	})
	t.Run("no give-back for a change dated after the expiry", func(t *testing.T) {
		h, now := setup(t, loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30})
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-1", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		*now = day(30)
		expire(t, h, 1)
		*now = day(31)
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-2", MemberID: "m1", Amount: 5000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "W-2"}); err != nil {
			t.Fatal(err)
		}
		want(t, h, 0)
	})
}

// TestLots_NetOfRefunds: the store's lots are earns and positive adjustments from the given time
// on, each less what its reversals took back (a partial refund its share, a full reversal the
// rest); negative adjustments and redemptions are no lots. Lots are oldest first, those of the
// same time in ledger order, whichever their kind.
func TestLots_NetOfRefunds(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	at := func(d int) time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).AddDate(0, 0, d) }
	ds := []loyalty.Delta{
		{ID: "old", Kind: loyalty.KindEarn, Points: 500, Currency: "EUR", OccurredAt: at(-1)}, // before since
		{ID: "sale", Kind: loyalty.KindEarn, Points: 100, Amount: 10000, Currency: "EUR", OccurredAt: at(0)},
		{ID: "part", Kind: loyalty.KindReverse, Points: -30, Amount: 3000, Currency: "EUR", Reverses: "sale", OccurredAt: at(1)},
		{ID: "gift", Kind: loyalty.KindAdjust, Points: 20, OccurredAt: at(2)},
		{ID: "fix", Kind: loyalty.KindAdjust, Points: -5, OccurredAt: at(3)},
		{ID: "void", Kind: loyalty.KindEarn, Points: 40, Amount: 4000, Currency: "EUR", OccurredAt: at(4)},
		{ID: "undo", Kind: loyalty.KindReverse, Points: -40, Reverses: "void", OccurredAt: at(5)},
		{ID: "spend", Kind: loyalty.KindRedeem, Points: -50, Reward: "coffee", OccurredAt: at(6)},
		{ID: "same", Kind: loyalty.KindAdjust, Points: 9, OccurredAt: at(7)}, // the same time as the next: ledger order
		{ID: "review", Kind: loyalty.KindEarn, Points: 30, Currency: "EUR", Rule: "review", OccurredAt: at(7)},
	}
	var lots []loyalty.Lot
	err := h.Store.Update(ctx, func(tx hub.Tx) error {
		if err := insertAll(ctx, tx, at(8), ds, func(d *loyalty.Delta) { d.Store, d.Member = loyalty.HubStore, "m1" }); err != nil {
			return err
		}
		var err error
		lots, err = tx.Lots(ctx, "m1", at(0))
		return err
	})
	want := []loyalty.Lot{{Points: 70, EarnedAt: at(0)}, {Points: 20, EarnedAt: at(2)}, {Points: 9, EarnedAt: at(7)}, {Points: 30, EarnedAt: at(7)}}
	if err != nil || len(lots) != len(want) {
		t.Fatalf("lots %+v, %v; want %+v", lots, err, want)
	}
	for i := range want {
		if lots[i].Points != want[i].Points || !lots[i].EarnedAt.Equal(want[i].EarnedAt) {
			t.Errorf("lot %d: %+v, want %+v", i, lots[i], want[i])
		}
	}
}

var lotsSeed = flag.Uint64("lots.seed", 0, "replay TestLotsMatchTheLedger with this seed (0: a new one)")

// codeAt returns member's code as a till would have scanned it at at: minted then, with the hub's
// clock (*now) set back to it meanwhile.
func codeAt(t *testing.T, h *hub.Hub, now *time.Time, member string, at time.Time) string {
	t.Helper()
	was := *now
	*now = at
	defer func() { *now = was }()
	c, err := h.MemberToken(context.Background(), member)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// insertAll writes ds into the ledger as they are, each completed by fill and normalised, received
// at received: for ledgers that apply would refuse or write in another order.
func insertAll(ctx context.Context, tx hub.Tx, received time.Time, ds []loyalty.Delta, fill func(*loyalty.Delta)) error {
	for _, d := range ds {
		fill(&d)
		d.Normalize()
		if _, _, err := tx.InsertDelta(ctx, d, d.Hash(), received); err != nil {
			return err
		}
	}
	return nil
}

// ledgerLastActivity is the event time of member's last earn or redemption in their ledger
// (zero if none), computed in Go: what Schedule.LastActive must hold.
func ledgerLastActivity(ctx context.Context, tx hub.Tx, member string) (time.Time, error) {
	entries, err := tx.Ledger(ctx, member, 1<<30)
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	for _, e := range entries {
		if at := time.UnixMilli(e.EventTime().UnixMilli()).UTC(); (e.Kind == loyalty.KindEarn || e.Kind == loyalty.KindRedeem) && at.After(last) {
			last = at
		}
	}
	return last, nil
}

// ledgerLots computes member's lots from their ledger in Go, as Tx.Lots documents them: every
// earn, and every adjustment of positive points that reverses nothing, from since on, less what the deltas that
// reverse it took back, those with points left, oldest first (ledger order within a time).
func ledgerLots(ctx context.Context, tx hub.Tx, member string, since time.Time) ([]loyalty.Lot, error) {
	entries, err := tx.Ledger(ctx, member, 1<<30)
	if err != nil {
		return nil, err
	}
	slices.Reverse(entries) // oldest first
	var lots []loyalty.Lot
	for _, e := range entries {
		at := time.UnixMilli(e.EventTime().UnixMilli()).UTC()
		if !loyalty.IsLot(e.Kind, e.Points, e.Reverses) || at.Before(since) {
			continue
		}
		rs, err := tx.Reversals(ctx, e.ID)
		if err != nil {
			return nil, err
		}
		left := e.Points
		for _, r := range rs {
			left += r.Points
		}
		if left > 0 {
			lots = append(lots, loyalty.Lot{Points: left, EarnedAt: at})
		}
	}
	slices.SortStableFunc(lots, func(a, b loyalty.Lot) int { return a.EarnedAt.Compare(b.EarnedAt) })
	return lots, nil
}

// ledgerEarned computes in Go from member's ledger what Tx.MemberEarned and Tx.RuleCount read:
// the points of their earns under rule with an event time in [since, until) (a zero until has no
// end), each less what its reversals took back, and how many of those earns nothing reversed.
func ledgerEarned(ctx context.Context, tx hub.Tx, member, rule string, since, until time.Time) (earned, count int64, err error) {
	entries, err := tx.Ledger(ctx, member, 1<<30)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		at := time.UnixMilli(e.EventTime().UnixMilli())
		if e.Kind != loyalty.KindEarn || e.Rule != rule || at.Before(since) || !until.IsZero() && !at.Before(until) {
			continue
		}
		rs, err := tx.Reversals(ctx, e.ID)
		if err != nil {
			return 0, 0, err
		}
		earned += e.Points
		for _, r := range rs {
			earned += r.Points
		}
		if len(rs) == 0 {
			count++
		}
	}
	return earned, count, nil
}

// TestLotsMatchTheLedger is a property test of the lots the storage reads (Tx.Lots and
// Tx.LotsOf; on SQLite from the member_lots table its triggers keep) against the ledger, computed
// in Go (ledgerLots): writeRandomLedger's sales, reversals and adjustments, and things no store
// can push but a ledger may hold: a reversal written before the sale it reverses, and an
// adjustment that takes back part of a sale. Lots are read from random times, a member at a time
// and in a batch; the other reads of a member's earns in a span (MemberEarned, RuleCount) are
// compared with Go sums over the ledger too. On SQLite the migration's backfill, from the same
// ledger, makes the rows the triggers kept, and Check finds no lot that differs from the ledger, and finds those changed or
// removed by hand, also one with no points left. The seed is printed; replay a failure with
// -lots.seed.
func TestLotsMatchTheLedger(t *testing.T) {
	rng, seed := seeded(t, *lotsSeed, "lots.seed")
	ctx := context.Background()
	h := openHub(t)
	members, randomTime := writeRandomLedger(t, rng, h)
	at := randomTime()
	late := []loyalty.Delta{
		{ID: "late-undo", Kind: loyalty.KindReverse, Points: -30, Amount: 3000, Currency: "EUR", Reverses: "late-sale", OccurredAt: at.Add(time.Hour)},
		{ID: "late-sale", Kind: loyalty.KindEarn, Points: 100, Amount: 10000, Currency: "EUR", OccurredAt: at},
		{ID: "late-fix", Kind: loyalty.KindAdjust, Points: -20, Reverses: "late-sale", OccurredAt: at.Add(2 * time.Hour)},
		{ID: "gift", Kind: loyalty.KindAdjust, Points: 40, OccurredAt: at},
		{ID: "gift-back", Kind: loyalty.KindAdjust, Points: -40, Reverses: "gift", OccurredAt: at.Add(time.Hour)},
	}
	err := h.Store.Update(ctx, func(tx hub.Tx) error {
		return insertAll(ctx, tx, t0, late, func(d *loyalty.Delta) { d.Store, d.Member = "s1", "m2" })
	})
	if err != nil {
		t.Fatal(err)
	}
	same := func(a, b []loyalty.Lot) bool {
		return slices.EqualFunc(a, b, func(x, y loyalty.Lot) bool { return x.Points == y.Points && x.EarnedAt.Equal(y.EarnedAt) })
	}
	err = h.Store.View(ctx, func(tx hub.Tx) error {
		lots, err := tx.Lots(ctx, "m2", at)
		if err != nil {
			return err
		}
		var fromSale, fromGift int
		for _, l := range lots {
			if l.EarnedAt.Equal(at.UTC().Truncate(time.Millisecond)) {
				switch l.Points {
				case 50:
					fromSale++
				case 40:
					fromGift++
				}
			}
		}
		if fromSale != 1 || fromGift != 0 {
			t.Errorf("seed %d: lots of m2 from %s: %+v; want one of 50 points (a sale of 100, 30 refunded before it was written, 20 taken back by an adjustment) and none of the gift of 40 taken back",
				seed, at.Format(time.RFC3339Nano), lots)
		}
		// The other reads of a member's earns in a span of time, which search member_lots too on
		// SQLite: earn caps (MemberEarned), action limits (RuleCount).
		for range 100 {
			since, until := randomTime(), randomTime()
			if until.Before(since) {
				since, until = until, since
			}
			if rng.IntN(8) == 0 {
				until = time.Time{}
			}
			for _, m := range members {
				for _, rule := range []string{"", "signup"} {
					wantEarned, wantCount, err := ledgerEarned(ctx, tx, m, rule, since, until)
					if err != nil {
						return err
					}
					earned, err := tx.MemberEarned(ctx, m, rule, since, until)
					if err != nil {
						return err
					}
					count, err := tx.RuleCount(ctx, m, rule, since, until)
					if err != nil {
						return err
					}
					if earned != wantEarned || count != wantCount {
						t.Errorf("seed %d, member %s, rule %q, [%s, %s): earned %d, %d not reversed; the ledger says %d, %d", seed, m, rule,
							since.Format(time.RFC3339Nano), until.Format(time.RFC3339Nano), earned, count, wantEarned, wantCount)
						return nil
					}
				}
			}
		}
		for range 100 {
			since := randomTime()
			if rng.IntN(10) == 0 {
				since = time.Time{}
			}
			// A list may name a member twice, and a member without lots.
			batch, err := tx.LotsOf(ctx, append([]string{"nobody", members[0]}, members...), since)
			if err != nil {
				return err
			}
			if len(batch["nobody"]) > 0 {
				t.Errorf("seed %d: a member without credits has lots %+v", seed, batch["nobody"])
			}
			for _, m := range members {
				want, err := ledgerLots(ctx, tx, m, since)
				if err != nil {
					return err
				}
				got, err := tx.Lots(ctx, m, since)
				if err != nil {
					return err
				}
				if !same(got, want) || !same(batch[m], want) {
					t.Errorf("seed %d, member %s, since %s:\nlots       %+v\nin a batch %+v\nthe ledger %+v", seed, m,
						since.Format(time.RFC3339Nano), got, batch[m], want)
					return nil
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	lotMismatches := func() []string {
		t.Helper()
		r, err := h.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range r.Mismatches {
			if strings.Contains(m, ": lot of ") {
				out = append(out, m)
			}
		}
		return out
	}
	if ms := lotMismatches(); len(ms) > 0 {
		t.Errorf("seed %d: check: %q", seed, ms)
	}
	if onPostgres() {
		return // lots are read from the ledger: nothing is kept apart
	}

	// The migrations' backfill, from the same ledger, makes the same rows as the triggers did:
	// 0032's, less the deductions' reversals 0047 takes out.
	db := openRaw(t, whereOf(t, h.Store))
	rows := func() string {
		t.Helper()
		rs, err := db.Query(`SELECT member, at, seq, points FROM member_lots ORDER BY member, at, seq`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		var b strings.Builder
		for rs.Next() {
			var m string
			var at, seq, points int64
			if err := rs.Scan(&m, &at, &seq, &points); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %d %d %d\n", m, at, seq, points)
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	kept := rows()
	backfill(t, db, "sqlite/migrations/0032_member_lots.sql", "member_lots")
	migratetest.Rerun(t, db.DB, "sqlite/migrations/0047_deduction_reversals_no_lot.sql")
	if filled := rows(); filled != kept || kept == "" {
		t.Errorf("seed %d: the migration's backfill makes\n%s\nthe triggers kept\n%s", seed, filled, kept)
	}

	// Lots changed behind the ledger's back are mismatches Check reports: one with points more,
	// and the row of the gift taken back (no points left, so no lot to read) gone.
	for _, q := range []string{
		`UPDATE member_lots SET points = points + 1 WHERE seq = (SELECT seq FROM deltas WHERE id = 'late-sale')`,
		`DELETE FROM member_lots WHERE seq = (SELECT seq FROM deltas WHERE id = 'gift')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ms := lotMismatches()
	if len(ms) != 2 || !strings.Contains(ms[0], "kept 51 points, the ledger makes 50 points") && !strings.Contains(ms[1], "kept 51 points, the ledger makes 50 points") ||
		!strings.Contains(ms[0], "kept none, the ledger makes 0 points") && !strings.Contains(ms[1], "kept none, the ledger makes 0 points") {
		t.Errorf("seed %d: check after two lots were changed: %q; want both, m2's", seed, ms)
	}
	for _, m := range ms {
		if !strings.HasPrefix(m, "m2: lot of ") {
			t.Errorf("seed %d: %q does not name m2 first", seed, m)
		}
	}
}

// TestExpiry_MigrationMakesTakenBackGiftsDue runs the migration that came with lots counting an
// adjustment's reversal again, on the backend the suite runs on: a member with points and a gift
// taken back is due for expiry at once (their next expiry time may have been set by the gift's
// lot); one whose gift stands, and one without points, keep their times.
func TestExpiry_MigrationMakesTakenBackGiftsDue(t *testing.T) {
	migrationMakesDue(t, []loyalty.Delta{
		{ID: "gift1", Member: "m1", Kind: loyalty.KindAdjust, Points: 40},
		{ID: "back1", Member: "m1", Kind: loyalty.KindAdjust, Points: -40, Reverses: "gift1"},
		{ID: "gift2", Member: "m2", Kind: loyalty.KindAdjust, Points: 40},
		{ID: "gift3", Member: "m3", Kind: loyalty.KindAdjust, Points: 40},
		{ID: "back3", Member: "m3", Kind: loyalty.KindAdjust, Points: -40, Reverses: "gift3"},
	}, "sqlite/migrations/0033_adjustment_reversals_expire.sql", "postgres/migrations/0018_adjustment_reversals_expire.sql", nil)
}

// migrationMakesDue writes ds (m3 a member of its own) as an earlier version did, gives m1 and m2
// 100 points and m3 none, all with a next expiry time years away, runs before (if set) and then a
// migration's statements on the backend the suite runs on, and checks that m1 alone is due for
// expiry now and the others keep their times. It returns the database for further checks.
func migrationMakesDue(t *testing.T, ds []loyalty.Delta, sqliteFile, postgresFile string, before func(rawDB)) rawDB {
	t.Helper()
	h := openHub(t)
	ctx := context.Background()
	later := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	err := h.Store.Update(ctx, func(tx hub.Tx) error {
		if err := tx.InsertMember(ctx, loyalty.Member{ID: "m3", CreatedAt: t0}); err != nil {
			return err
		}
		return insertAll(ctx, tx, t0, ds, func(d *loyalty.Delta) { d.Store, d.OccurredAt = loyalty.HubStore, t0 })
	})
	if err != nil {
		t.Fatal(err)
	}
	db := openRaw(t, whereOf(t, h.Store))
	if _, err := db.Exec(`UPDATE members SET balance = CASE WHEN id = 'm3' THEN 0 ELSE 100 END, expire_at = ?`, later.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	file := sqliteFile
	if db.postgres {
		file = postgresFile
	}
	if before != nil {
		before(db)
	}
	start := time.Now()
	migratetest.Rerun(t, db.DB, file)
	end := time.Now()
	for _, m := range []string{"m1", "m2", "m3"} {
		var at int64
		if err := db.QueryRow(`SELECT expire_at FROM members WHERE id = ?`, m).Scan(&at); err != nil {
			t.Fatal(err)
		}
		due := at >= start.Add(-time.Second).UnixMilli() && at <= end.Add(time.Second).UnixMilli()
		if want := m == "m1"; due != want || !due && at != later.UnixMilli() {
			t.Errorf("%s: expire_at %s after the migration; due now: %v, want %v", m, time.UnixMilli(at).UTC(), due, want)
		}
	}
	return db
}

// TestExpiry_MigrationDeductionReversalsNoLot runs the migration that stops a deduction's
// reversal from counting as a lot, on the backend the suite runs on: a member with points and
// such a reversal is due for expiry at once, and on SQLite its lot row is gone while a gift's and
// a sale's stay; a member with a gift alone, and one without points, keep their times.
func TestExpiry_MigrationDeductionReversalsNoLot(t *testing.T) {
	db := migrationMakesDue(t, []loyalty.Delta{
		{ID: "sale1", Member: "m1", Kind: loyalty.KindEarn, Points: 70, Amount: 7000, Currency: "EUR", RuleVersion: 1},
		{ID: "take1", Member: "m1", Kind: loyalty.KindAdjust, Points: -30},
		{ID: "back1", Member: "m1", Kind: loyalty.KindAdjust, Points: 30, Reverses: "take1"},
		{ID: "gift2", Member: "m2", Kind: loyalty.KindAdjust, Points: 40},
		{ID: "take3", Member: "m3", Kind: loyalty.KindAdjust, Points: -30},
		{ID: "back3", Member: "m3", Kind: loyalty.KindAdjust, Points: 30, Reverses: "take3"},
	}, "sqlite/migrations/0047_deduction_reversals_no_lot.sql", "postgres/migrations/0034_deduction_reversals_no_lot.sql", func(db rawDB) {
		if db.postgres {
			return
		}
		if _, err := db.Exec(`INSERT INTO member_lots (member, at, seq, points) SELECT member, event_at, seq, points FROM deltas WHERE id = 'back1'`); err != nil {
			t.Fatal(err) // the row the old trigger wrote
		}
	})
	if !db.postgres {
		var lots []string
		rows, err := db.Query(`SELECT d.id FROM member_lots l JOIN deltas d ON d.seq = l.seq ORDER BY d.id`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			lots = append(lots, id)
		}
		rows.Close()
		if strings.Join(lots, " ") != "gift2 sale1" {
			t.Errorf("lots after the migration: %v; want the gift's and the sale's", lots)
		}
	}
}

// TestExpiry_MigrationFindsTheLastExpiry: the upgrade that keeps when a member's points last
// expired takes it from the ledger: the latest expiry that took points (not a give-back after
// it), and nothing for a member whose points never expired.
func TestExpiry_MigrationFindsTheLastExpiry(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	t1, t2, t3 := t0.AddDate(0, 0, 30), t0.AddDate(0, 0, 60), t0.AddDate(0, 0, 61)
	err := h.Store.Update(ctx, func(tx hub.Tx) error {
		return insertAll(ctx, tx, t0, []loyalty.Delta{
			{ID: "x1", Member: "m1", Kind: loyalty.KindExpire, Points: -10, OccurredAt: t1},
			{ID: "x2", Member: "m1", Kind: loyalty.KindExpire, Points: -20, OccurredAt: t2},
			{ID: "x3", Member: "m1", Kind: loyalty.KindExpire, Points: 5, OccurredAt: t3},
			{ID: "g2", Member: "m2", Kind: loyalty.KindAdjust, Points: 40, OccurredAt: t3},
		}, func(d *loyalty.Delta) { d.Store = loyalty.HubStore })
	})
	if err != nil {
		t.Fatal(err)
	}
	db := openRaw(t, whereOf(t, h.Store))
	if _, err := db.Exec(`UPDATE members SET expired_at = NULL`); err != nil {
		t.Fatal(err)
	}
	file := "sqlite/migrations/0045_member_expired_at.sql"
	if db.postgres {
		file = "postgres/migrations/0032_member_expired_at.sql"
	}
	migratetest.Rerun(t, db.DB, file)
	for m, want := range map[string]sql.NullInt64{"m1": {Int64: t2.UnixMilli(), Valid: true}, "m2": {}} {
		var at sql.NullInt64
		if err := db.QueryRow(`SELECT expired_at FROM members WHERE id = ?`, m).Scan(&at); err != nil {
			t.Fatal(err)
		}
		if at != want {
			t.Errorf("%s: expired_at %+v after the migration, want %+v", m, at, want)
		}
	}
}

// TestLotExpiry_DeductionTakenBack: points taken away by an operator and given back (a
// negative adjustment, then its reversal) are as old as the lot they came from, and expire with
// it. The reversal made a lot of its own, dated at the reversal: the 100 points of day 0 lived
// to day 50 instead of day 30. A gift's reversal and a sale stay as they were.
func TestLotExpiry_DeductionTakenBack(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	day0 := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	now := day0
	h.Now = func() time.Time { return now }
	day := func(n int) time.Time { return day0.AddDate(0, 0, n) }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30}
	})
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "A", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil {
		t.Fatal(err) // 100 points on day 0: they expire on day 30
	}
	now = day(10)
	if _, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "fix", MemberID: "m1", Points: -100, Reason: "keyed twice"}); err != nil {
		t.Fatal(err)
	}
	now = day(20)
	if _, err := h.ReverseAdjustment(ctx, "fix", "it was right after all"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "B", MemberID: "m1", Amount: 4000, Currency: "EUR"}); err != nil {
		t.Fatal(err) // 40 points on day 20: they expire on day 50
	}
	for _, step := range []struct {
		day     int
		members int
		balance int64
	}{{29, 0, 140}, {30, 1, 40}, {49, 0, 40}, {50, 1, 0}} {
		now = day(step.day)
		n, err := h.ExpirePoints(ctx)
		if err != nil || n != step.members || balance(t, h, "m1") != step.balance {
			t.Fatalf("day %d: the sweep expired points of %d members (%v), balance %d; want %d and %d",
				step.day, n, err, balance(t, h, "m1"), step.members, step.balance)
		}
		mustCheck(t, h)
	}
}
