package hub_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// rollingTiers is a rolling 12-month spend window with member (the lowest) and silver from
// 300.00 EUR, both earning 1x.
func rollingTiers(p *loyalty.Program) {
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowRolling12M, Tiers: []loyalty.Tier{
		{ID: "member", Name: "Member", Multiplier: 1000}, {ID: "silver", Name: "Silver", Threshold: 30000, Multiplier: 1000}}}
}

func requalify(t *testing.T, h *hub.Hub) hub.JobRun {
	t.Helper()
	r, err := h.RequalifyWith(context.Background(), hub.JobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func expirePoints(t *testing.T, h *hub.Hub, batch int) hub.JobRun {
	t.Helper()
	r, err := h.ExpirePointsWith(context.Background(), hub.JobOptions{Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sale(t *testing.T, h *hub.Hub, order, member string, amount loyalty.Money) {
	t.Helper()
	if _, err := h.Earn(context.Background(), loyalty.EarnRequest{OrderID: order, MemberID: member, Amount: amount, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
}

func tierOf(t *testing.T, h *hub.Hub, member string) string {
	t.Helper()
	v, err := h.Member(context.Background(), member, 0)
	if err != nil {
		t.Fatal(err)
	}
	return v.Tier
}

// TestRequalify_OnlyWhenAnEventLeavesTheWindow: a run visits a member only when a qualifying event
// leaves the window and their tier is above the lowest, exactly at the first millisecond it
// leaves; otherwise nobody, however often it runs.
func TestRequalify_OnlyWhenAnEventLeavesTheWindow(t *testing.T) {
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, rollingTiers)
	if r := requalify(t, h); r.Visited != 2 || r.Changed != 0 { // the new tiers: m1 and m2 are placed in member
		t.Fatalf("the run after the tiers were published: %+v, want m1 and m2 visited", r)
	}
	first := t0.Add(time.Hour)
	now = first
	sale(t, h, "a", "m1", 30000) // silver
	sale(t, h, "b", "m2", 1000)  // member: the lowest tier, nothing to lose
	now = t0.AddDate(0, 0, 100)
	sale(t, h, "c", "m1", 1000)
	if got := tierOf(t, h, "m1"); got != "silver" {
		t.Fatalf("m1 is %s, want silver", got)
	}
	for _, at := range []time.Time{t0.AddDate(0, 0, 101), t0.AddDate(0, 6, 0), first.AddDate(1, 0, 0)} {
		now = at
		if r := requalify(t, h); r.Visited != 0 {
			t.Fatalf("at %v, with no event leaving the window: %+v, want nobody visited", at, r)
		}
	}
	now = first.AddDate(1, 0, 0).Add(time.Millisecond) // sale a leaves the window
	if r := requalify(t, h); r.Visited != 1 || r.Changed != 1 || tierOf(t, h, "m1") != "member" {
		t.Fatalf("when m1's first sale leaves the window: %+v, tier %s; want m1 alone visited and downgraded", r, tierOf(t, h, "m1"))
	}
	if r := requalify(t, h); r.Visited != 0 {
		t.Fatalf("run again: %+v, want nobody", r)
	}
	now = t0.AddDate(2, 0, 0) // sale c has left too: m1 is in the lowest tier, nobody to visit
	if r := requalify(t, h); r.Visited != 0 {
		t.Fatalf("two years on: %+v, want nobody", r)
	}
	v, err := h.Member(context.Background(), "m1", 100)
	if err != nil {
		t.Fatal(err)
	}
	var tiers []string
	for _, e := range v.Ledger {
		if e.Kind == loyalty.KindTier {
			tiers = append(tiers, e.Tier)
		}
	}
	if !slices.Equal(tiers, []string{"member", "silver"}) { // newest first
		t.Errorf("m1's tier deltas %v, want silver then member", tiers)
	}
	mustCheck(t, h)
}

// TestRequalify_LeapDays: the rolling window starts on the same day a year before, and on 29
// February on 1 March of the year before: a sale of 29 February leaves it on 1 March at midnight,
// a sale of 1 March before a leap day leaves it on 29 February at its time of day. The review
// comes then, not a day later.
func TestRequalify_LeapDays(t *testing.T) {
	for _, tt := range []struct {
		name        string
		sale, leave time.Time
	}{
		{"sale of 29 February", time.Date(2028, 2, 29, 10, 0, 0, 0, time.UTC), time.Date(2029, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"sale of 1 March, before a leap day", time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC),
			time.Date(2028, 2, 29, 10, 0, 0, int(time.Millisecond), time.UTC)},
		{"sale of an ordinary day", time.Date(2027, 7, 14, 10, 0, 0, 0, time.UTC), time.Date(2028, 7, 14, 10, 0, 0, int(time.Millisecond), time.UTC)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := openHub(t)
			now := tt.sale
			h.Now = func() time.Time { return now }
			withProgram(t, h, rollingTiers)
			sale(t, h, "a", "m1", 30000)
			requalify(t, h) // m2's placement
			now = tt.leave.Add(-time.Millisecond)
			if r := requalify(t, h); r.Visited != 0 || tierOf(t, h, "m1") != "silver" {
				t.Fatalf("a millisecond before the sale leaves the window: %+v, tier %s", r, tierOf(t, h, "m1"))
			}
			now = tt.leave
			if r := requalify(t, h); r.Visited != 1 || tierOf(t, h, "m1") != "member" {
				t.Fatalf("when the sale leaves the window: %+v, tier %s; want m1 visited and downgraded", r, tierOf(t, h, "m1"))
			}
		})
	}
}

// TestRequalify_CalendarYear: in a calendar-year window, the members above the lowest tier are
// reviewed at the new year, and nobody else.
func TestRequalify_CalendarYear(t *testing.T) {
	h := openHub(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		rollingTiers(p)
		p.Tiers.Window = loyalty.WindowCalendar
	})
	sale(t, h, "a", "m1", 30000)
	sale(t, h, "b", "m2", 1000)
	now = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Millisecond)
	if r := requalify(t, h); r.Visited != 0 || tierOf(t, h, "m1") != "silver" {
		t.Fatalf("on 31 December: %+v, tier %s", r, tierOf(t, h, "m1"))
	}
	now = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	if r := requalify(t, h); r.Visited != 1 || r.Changed != 1 || tierOf(t, h, "m1") != "member" {
		t.Fatalf("on 1 January: %+v, tier %s; want m1 alone visited and downgraded", r, tierOf(t, h, "m1"))
	}
	now = time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	if r := requalify(t, h); r.Visited != 0 {
		t.Fatalf("a year later: %+v, want nobody", r)
	}
}

// TestRequalify_SaleDatedLaterEntersTheWindow: a store's clock a few minutes ahead dates a sale
// after the hub's clock; it counts from its time, and the member is reviewed then.
func TestRequalify_SaleDatedLaterEntersTheWindow(t *testing.T) {
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, rollingTiers)
	syncStores(t, h)
	requalify(t, h)
	e := earn("s1", "m1", 30000)
	e.RuleVersion, e.OccurredAt = 2, t0.Add(5*time.Minute)
	mustApply(t, h, "s1", e)
	if got := tierOf(t, h, "m1"); got != "member" {
		t.Fatalf("before the sale's time: %s", got)
	}
	if r := requalify(t, h); r.Visited != 0 {
		t.Fatalf("before the sale's time: %+v, want nobody visited", r)
	}
	now = t0.Add(5 * time.Minute)
	if r := requalify(t, h); r.Visited != 1 || tierOf(t, h, "m1") != "silver" {
		t.Fatalf("at the sale's time: %+v, tier %s; want m1 visited and upgraded", r, tierOf(t, h, "m1"))
	}
}

// manyMembers adds n members x00, x01, …, each with a sale of 1.00 EUR at the hub's clock.
func manyMembers(t *testing.T, h *hub.Hub, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("x%02d", i)
		if _, err := h.CreateMember(context.Background(), loyalty.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
		sale(t, h, "sale-"+id, id, 100)
		ids = append(ids, id)
	}
	return ids
}

// expiries returns how many expire deltas each member has.
func expiries(t *testing.T, h *hub.Hub, ids []string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, id := range ids {
		v, err := h.Member(context.Background(), id, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range v.Ledger {
			if e.Kind == loyalty.KindExpire {
				out[id]++
			}
		}
	}
	return out
}

// TestExpiry_ManyMembersInBatches: the members' points expire on the day, in batches, each once;
// before it a run visits nobody, and after it, nobody either.
func TestExpiry_ManyMembersInBatches(t *testing.T) {
	for _, mode := range []string{loyalty.ExpiryInactivity, loyalty.ExpiryLot} {
		t.Run(mode, func(t *testing.T) {
			h := openHub(t)
			day0 := t0
			now := day0
			h.Now = func() time.Time { return now }
			withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: mode, AfterDays: 30, RemindDays: 7} })
			ids := manyMembers(t, h, 40)
			now = day0.AddDate(0, 0, 30).Add(-time.Millisecond)
			if r := expirePoints(t, h, 7); r.Visited != 0 {
				t.Fatalf("a millisecond before: %+v, want nobody visited", r)
			}
			now = day0.AddDate(0, 0, 30)
			if r := expirePoints(t, h, 7); r.Visited != 40 || r.Changed != 40 || r.Batches != 6 {
				t.Fatalf("on the day: %+v, want 40 members in 6 batches of at most 7, every one expired", r)
			}
			for id, n := range expiries(t, h, ids) {
				if n != 1 || balance(t, h, id) != 0 {
					t.Errorf("%s: %d expiries, balance %d; want one, 0", id, n, balance(t, h, id))
				}
			}
			if r := expirePoints(t, h, 7); r.Visited != 0 || r.Changed != 0 {
				t.Fatalf("run again: %+v, want nobody", r)
			}
			mustCheck(t, h)
		})
	}
}

// TestExpiry_ProgramChangeReschedules: a program that shortens after_days makes the next run look
// at every member with points and expire those now due; one that lengthens it makes the next run
// put their expiry later, and nobody's points go early.
func TestExpiry_ProgramChangeReschedules(t *testing.T) {
	for _, mode := range []string{loyalty.ExpiryInactivity, loyalty.ExpiryLot} {
		t.Run(mode, func(t *testing.T) {
			h := openHub(t)
			day0 := t0
			now := day0
			h.Now = func() time.Time { return now }
			expiry := func(days int) {
				withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: mode, AfterDays: days} })
			}
			expiry(30)
			ids := manyMembers(t, h, 12)
			now = day0.AddDate(0, 0, 15)
			if r := expirePoints(t, h, 5); r.Visited != 0 {
				t.Fatalf("day 15 under 30 days: %+v, want nobody visited", r)
			}
			expiry(10)
			if r := expirePoints(t, h, 5); r.Visited != 12 || r.Changed != 12 {
				t.Fatalf("day 15 under 10 days: %+v, want all 12 visited and expired", r)
			}
			if r := expirePoints(t, h, 5); r.Visited != 0 {
				t.Fatalf("run again: %+v", r)
			}
			for id, n := range expiries(t, h, ids) {
				if n != 1 {
					t.Errorf("%s: %d expiries", id, n)
				}
			}

			// Longer: new points on day 15 would expire on day 25 under 10 days, on day 75 under 60.
			for _, id := range ids {
				sale(t, h, "again-"+id, id, 100)
			}
			expiry(60)
			if r := expirePoints(t, h, 5); r.Visited != 12 || r.Changed != 0 {
				t.Fatalf("after lengthening: %+v, want all 12 looked at, none expired", r)
			}
			now = day0.AddDate(0, 0, 25)
			if r := expirePoints(t, h, 5); r.Visited != 0 {
				t.Fatalf("day 25 under 60 days: %+v, want nobody", r)
			}
			now = day0.AddDate(0, 0, 75)
			if r := expirePoints(t, h, 5); r.Visited != 12 || r.Changed != 12 {
				t.Fatalf("day 75: %+v, want all 12 expired", r)
			}
			mustCheck(t, h)
		})
	}
}

// TestExpiry_BackdatedSaleIsTheOldestLot: a store's sale that arrives after an online one but is
// dated before it is the member's oldest lot: the member is looked at when it expires, not when
// the online sale's points do.
func TestExpiry_BackdatedSaleIsTheOldestLot(t *testing.T) {
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30} })
	syncStores(t, h)
	now = t0.Add(time.Hour)
	sale(t, h, "online", "m1", 1000) // 10 points, expire on day 30 + 1h
	e := earn("s1", "m1", 2000)      // 20 points dated 40 minutes earlier
	e.RuleVersion, e.OccurredAt = 2, now.Add(-40*time.Minute)
	mustApply(t, h, "s1", e)
	now = e.OccurredAt.AddDate(0, 0, 30).Add(-time.Millisecond)
	if r := expirePoints(t, h, 0); r.Visited != 0 {
		t.Fatalf("before the store's sale expires: %+v", r)
	}
	now = e.OccurredAt.AddDate(0, 0, 30)
	if r := expirePoints(t, h, 0); r.Visited != 1 || r.Changed != 1 || balance(t, h, "m1") != 10 {
		t.Fatalf("when the store's sale expires: %+v, balance %d; want its 20 points expired", r, balance(t, h, "m1"))
	}
	now = t0.Add(time.Hour).AddDate(0, 0, 30)
	if r := expirePoints(t, h, 0); r.Visited != 1 || r.Changed != 1 || balance(t, h, "m1") != 0 {
		t.Fatalf("when the online sale expires: %+v, balance %d", r, balance(t, h, "m1"))
	}
	mustCheck(t, h)
}

// countingStore counts write transactions.
type countingStore struct {
	hub.Store
	updates *atomic.Int64
}

func (s countingStore) Update(ctx context.Context, fn func(hub.Tx) error) error {
	s.updates.Add(1)
	return s.Store.Update(ctx, fn)
}

func currentVersion(t *testing.T, h *hub.Hub) int64 {
	t.Helper()
	var v int64
	if err := h.Store.View(context.Background(), func(tx hub.Tx) error {
		var err error
		v, err = tx.CurrentVersion(context.Background())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// referenceExpiring is what expires soon as the hub computed it before members had a schedule:
// every member with points, from their ledger.
func referenceExpiring(t *testing.T, h *hub.Hub) []hub.Expiring {
	t.Helper()
	ctx := context.Background()
	var out []hub.Expiring
	err := h.Store.View(ctx, func(tx hub.Tx) error {
		p, _, err := tx.Program(ctx)
		if err != nil || p.Expiry == nil {
			return err
		}
		now := h.Now()
		for after := ""; ; {
			ms, err := tx.Members(ctx, after, 100)
			if err != nil || len(ms) == 0 {
				return err
			}
			after = ms[len(ms)-1].ID
			for _, m := range ms {
				if m.Balance <= 0 {
					continue
				}
				if p.Expiry.Mode == loyalty.ExpiryLot {
					lots, err := tx.Lots(ctx, m.ID, p.Expiry.LotsSince(now))
					if err != nil {
						return err
					}
					_, upcoming := p.Expiry.LotExpiry(lots, m.Balance, now)
					for _, x := range upcoming {
						if !now.Before(x.At.AddDate(0, 0, -p.Expiry.RemindDays)) {
							out = append(out, hub.Expiring{Member: m.ID, Balance: m.Balance, Points: x.Points, ExpiresAt: x.At})
						}
					}
					continue
				}
				last, err := ledgerLastActivity(ctx, tx, m.ID)
				if err != nil || last.IsZero() {
					return err
				}
				if at := p.Expiry.ExpiresAt(last); now.Before(at) && !now.Before(at.AddDate(0, 0, -p.Expiry.RemindDays)) {
					out = append(out, hub.Expiring{Member: m.ID, Balance: m.Balance, Points: m.Balance, ExpiresAt: at})
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameExpiring(a, b []hub.Expiring) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = sortedExpiring(a), sortedExpiring(b)
	for i := range a {
		if a[i].Member != b[i].Member || a[i].Balance != b[i].Balance || a[i].Points != b[i].Points || !a[i].ExpiresAt.Equal(b[i].ExpiresAt) {
			return false
		}
	}
	return true
}

// sortedExpiring is a copy of soon by member and time: the hub lists members in the order of
// their schedule, which a reference read from the ledger does not know.
func sortedExpiring(soon []hub.Expiring) []hub.Expiring {
	soon = slices.Clone(soon)
	slices.SortStableFunc(soon, func(x, y hub.Expiring) int {
		return cmp.Or(strings.Compare(x.Member, y.Member), x.ExpiresAt.Compare(y.ExpiresAt))
	})
	return soon
}

// TestExpiringSoon_OnlyReads: GET /v1/expiring and ExpiringSoon open no write transaction and
// change no version, and list what the ledger says, as before members had a schedule: also
// right after a program change made everyone due, before any run.
func TestExpiringSoon_OnlyReads(t *testing.T) {
	for _, mode := range []string{loyalty.ExpiryInactivity, loyalty.ExpiryLot} {
		t.Run(mode, func(t *testing.T) {
			a := openAKHub(t)
			h := a.Hub
			day0 := t0
			now := day0
			h.Now = func() time.Time { return now }
			withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: mode, AfterDays: 30, RemindDays: 7} })
			ids := manyMembers(t, h, 6) // day 0
			for i, id := range ids {
				now = day0.AddDate(0, 0, 3*i) // x01 on day 3, … x05 on day 15
				sale(t, h, "more-"+id, id, 5000)
			}
			now = day0.AddDate(0, 0, 5)
			if _, err := h.Redeem(context.Background(), loyalty.RedeemRequest{OrderID: "r", MemberID: "x03", RewardID: "coffee"}); err != nil {
				t.Fatal(err)
			}
			var updates atomic.Int64
			h.Store = countingStore{h.Store, &updates}
			check := func(when string) {
				t.Helper()
				want := referenceExpiring(t, h)
				before := currentVersion(t, h)
				n := updates.Load()
				got, err := h.ExpiringSoon(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				var viaHTTP hub.ExpiringPage
				a.mustDo(t, akAdminKey, "GET", "/v1/expiring?limit=1000", "", http.StatusOK, &viaHTTP)
				if updates.Load() != n || currentVersion(t, h) != before {
					t.Errorf("%s: %d write transactions, version %d → %d", when, updates.Load()-n, before, currentVersion(t, h))
				}
				if !sameExpiring(got, want) || !sameExpiring(viaHTTP.Expiring, want) || viaHTTP.Next != "" {
					t.Errorf("%s: expiring soon %+v (over HTTP %+v), want %+v", when, got, viaHTTP, want)
				}
			}
			for _, d := range []int{20, 24, 26, 30, 35, 44} {
				now = day0.AddDate(0, 0, d)
				check(fmt.Sprintf("day %d", d))
				if d == 26 {
					withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: mode, AfterDays: 30, RemindDays: 10} })
					check("day 26, remind_days changed, before any run")
					expirePoints(t, h, 0)
					check("day 26 after a run")
				}
				if d == 35 {
					expirePoints(t, h, 2)
					check("day 35 after a run")
				}
			}
		})
	}
}

// TestExpiringSoon_Pages: GET /v1/expiring goes a page at a time: at most limit members a page,
// a member's lots never split across two, every entry once, as one whole reading lists them.
// Right after a program change everyone with points is due and few have anything to be reminded
// of: a page stops after its scan with a next, however few members it holds. A cursor no page
// gave, a parameter the endpoint does not take and a limit out of range are 400 EINVALID.
func TestExpiringSoon_Pages(t *testing.T) {
	for _, mode := range []string{loyalty.ExpiryInactivity, loyalty.ExpiryLot} {
		t.Run(mode, func(t *testing.T) {
			a := openAKHub(t)
			h := a.Hub
			day0 := t0
			now := day0
			h.Now = func() time.Time { return now }
			withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: mode, AfterDays: 30, RemindDays: 7} })
			ids := manyMembers(t, h, 30) // a lot each on day 0
			now = day0.AddDate(0, 0, 2)
			for i, id := range ids {
				if i%3 == 0 {
					sale(t, h, "second-"+id, id, 200) // a second lot, expiring on day 32
				}
			}
			now = day0.AddDate(0, 0, 20)
			for i, id := range ids {
				if i%5 == 0 {
					sale(t, h, "late-"+id, id, 300) // active on day 20: expires on day 50 (inactivity)
				}
			}
			now = day0.AddDate(0, 0, 26)
			expirePoints(t, h, 0)
			want := referenceExpiring(t, h)
			if len(want) < 10 {
				t.Fatalf("the ledger lists %d entries expiring soon, want some to page through", len(want))
			}
			if mode == loyalty.ExpiryLot && len(want) == len(entriesByMember(want)) {
				t.Fatalf("no member has two lots expiring soon: %+v", want)
			}

			report := a.newKey(t, akAdminKey, "reminders", hub.ScopeReport).Key
			pages := func(limit int) (all []hub.Expiring, n int, short bool) {
				t.Helper()
				seen := map[string]bool{}
				for after := ""; ; n++ {
					if n > 100 {
						t.Fatalf("limit %d: still a next after %d pages", limit, n)
					}
					q := url.Values{"limit": {strconv.Itoa(limit)}}
					if after != "" {
						q.Set("after", after)
					}
					var page hub.ExpiringPage
					a.mustDo(t, report, "GET", "/v1/expiring?"+q.Encode(), "", http.StatusOK, &page)
					members := entriesByMember(page.Expiring)
					if len(members) > limit {
						t.Fatalf("limit %d: a page of %d members", limit, len(members))
					}
					for m := range members {
						if seen[m] {
							t.Fatalf("limit %d: member %s on two pages", limit, m)
						}
						seen[m] = true
					}
					all = append(all, page.Expiring...)
					if page.Next == "" {
						return all, n + 1, short
					}
					short = short || len(members) < limit
					after = page.Next
				}
			}
			for _, limit := range []int{1, 4, 1000} {
				got, n, _ := pages(limit)
				if !sameExpiring(got, want) {
					t.Fatalf("limit %d: %d pages listed %+v, the ledger says %+v", limit, n, got, want)
				}
				if wantPages := (len(entriesByMember(want)) + limit - 1) / limit; n < wantPages {
					t.Fatalf("limit %d: %d pages for %d members", limit, n, len(entriesByMember(want)))
				}
			}

			// A program change makes every member with points due at once. A page of one member
			// reads them 100 at a time all the same, not one by one: 30 due, none to remind, one
			// read.
			withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: mode, AfterDays: 30, RemindDays: 0} })
			reads := new(atomic.Int64)
			store := h.Store
			h.Store = dueCountingStore{Store: store, reads: reads}
			if p, err := h.ExpiringSoonPage(context.Background(), "", 1); err != nil || len(p.Expiring) != 0 || p.Next != "" || reads.Load() != 1 {
				t.Fatalf("a page of 1 after a program change: %+v, %v, due members read %d times; want nothing to remind of, read once", p, err, reads.Load())
			}
			h.Store = store
			withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: mode, AfterDays: 30, RemindDays: 5} })
			h.SetExpiringScan(7)
			want = referenceExpiring(t, h)
			got, n, short := pages(1000)
			if !sameExpiring(got, want) || n < 30/7 || !short {
				t.Fatalf("after a program change, 7 due members read a page: %d pages (one short of its limit with a next: %v) listed %+v, the ledger says %+v",
					n, short, got, want)
			}

			for _, q := range []string{
				"after=" + url.QueryEscape("not a cursor"),
				"after=" + base64.RawURLEncoding.EncodeToString([]byte("1000:nobody")), // names no member
				"after=" + base64.RawURLEncoding.EncodeToString([]byte("01000:x01")),   // not as a page writes it
				"after=" + strings.Repeat("A", 2000),
				"limit=0", "limit=1001", "limit=ten", "member=x01",
			} {
				status, body := a.do(t, akAdminKey, "GET", "/v1/expiring?"+q, "")
				jsonapitest.AssertError(t, status, body, http.StatusBadRequest, loyalty.EINVALID)
			}
		})
	}
}

// dueCountingStore counts the readings of due members (Tx.MembersDue) in read transactions.
type dueCountingStore struct {
	hub.Store
	reads *atomic.Int64
}

func (s dueCountingStore) View(ctx context.Context, fn func(hub.Tx) error) error {
	return s.Store.View(ctx, func(tx hub.Tx) error { return fn(dueCountingTx{Tx: tx, reads: s.reads}) })
}

type dueCountingTx struct {
	hub.Tx
	reads *atomic.Int64
}

func (t dueCountingTx) MembersDue(ctx context.Context, job string, until time.Time, after hub.DueCursor, limit int) ([]hub.DueMember, error) {
	t.reads.Add(1)
	return t.Tx.MembersDue(ctx, job, until, after, limit)
}

// entriesByMember counts the entries of each member in soon.
func entriesByMember(soon []hub.Expiring) map[string]int {
	out := map[string]int{}
	for _, x := range soon {
		out[x.Member]++
	}
	return out
}

// lapsedSilverMembers returns a hub whose program has rolling tiers and lots that expire after
// 30 days, and n members each made silver by a sale, with its clock a year and a day on: every
// sale has left the tier window and every lot has expired.
func lapsedSilverMembers(t *testing.T, n int) (*hub.Hub, []string) {
	t.Helper()
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		rollingTiers(p)
		p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30}
	})
	ids := manyMembers(t, h, n)
	for _, id := range ids {
		sale(t, h, "big-"+id, id, 30000) // silver
	}
	now = t0.AddDate(1, 0, 1)
	return h, ids
}

// TestJobs_StopBetweenBatches: a run stopped between two batches (the hub shutting down, a crash)
// keeps what its committed batches did, loses nothing, and the next run does the rest, each member
// once.
func TestJobs_StopBetweenBatches(t *testing.T) {
	h, ids := lapsedSilverMembers(t, 25)

	ctx, cancel := context.WithCancel(context.Background())
	r, err := h.ExpirePointsWith(ctx, hub.JobOptions{Batch: 10, OnBatch: func(int) { cancel() }})
	if !errors.Is(err, context.Canceled) || r.Batches != 1 || r.Changed != 10 {
		t.Fatalf("stopped after its first batch: %+v, %v", r, err)
	}
	mustCheck(t, h)
	if r := expirePoints(t, h, 10); r.Changed != 15 || r.Visited != 15 {
		t.Fatalf("the next run: %+v, want the 15 left", r)
	}
	for id, n := range expiries(t, h, ids) {
		if n != 1 || balance(t, h, id) != 0 {
			t.Errorf("%s: %d expiries, balance %d", id, n, balance(t, h, id))
		}
	}

	// m1 and m2 (no sales) are placed in the entry tier in the first batch, which changes 8 of the
	// 25 silver members.
	ctx, cancel = context.WithCancel(context.Background())
	r, err = h.RequalifyWith(ctx, hub.JobOptions{Batch: 10, OnBatch: func(int) { cancel() }})
	if !errors.Is(err, context.Canceled) || r.Batches != 1 || r.Visited != 10 {
		t.Fatalf("requalification stopped after its first batch: %+v, %v", r, err)
	}
	first := r.Changed
	if r, err := h.RequalifyWith(context.Background(), hub.JobOptions{Batch: 10}); err != nil || first+r.Changed != 25 || r.Visited != 17 {
		t.Fatalf("the next requalification: %+v, %v; want the %d left", r, err, 25-first)
	}
	for _, id := range ids {
		if got := tierOf(t, h, id); got != "member" {
			t.Errorf("%s is %s", id, got)
		}
	}
	mustCheck(t, h)
}

// TestJobs_TwoHubsAtOnce: two hub processes (two stores on one database) running the jobs at
// the same time, in small batches, change each member once between them.
func TestJobs_TwoHubsAtOnce(t *testing.T) {
	h := openHub(t)
	day0 := t0
	now := day0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		rollingTiers(p)
		p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryInactivity, AfterDays: 30}
	})
	ids := manyMembers(t, h, 30)
	for _, id := range ids {
		sale(t, h, "big-"+id, id, 30000) // silver
	}
	requalify(t, h) // m1 and m2
	now = day0.AddDate(1, 0, 1)
	other := hub.New(openStore(t, whereOf(t, h.Store)))
	other.Now, other.Logger = h.Now, h.Logger
	hubs := []*hub.Hub{h, other}
	for _, job := range []string{"requalify", "expire"} {
		runs := make([]hub.JobRun, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, x := range hubs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := hub.JobOptions{Batch: 4}
				if job == "requalify" {
					runs[i], errs[i] = x.RequalifyWith(context.Background(), o)
				} else {
					runs[i], errs[i] = x.ExpirePointsWith(context.Background(), o)
				}
			}()
		}
		wg.Wait()
		if errors.Join(errs...) != nil || runs[0].Changed+runs[1].Changed != 30 {
			t.Fatalf("%s on two hubs at once: %+v, %v; want 30 members changed in all", job, runs, errors.Join(errs...))
		}
	}
	for _, id := range ids {
		v, err := h.Member(context.Background(), id, 100)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[loyalty.Kind]int{}
		for _, e := range v.Ledger {
			kinds[e.Kind]++
		}
		if kinds[loyalty.KindTier] != 2 || kinds[loyalty.KindExpire] != 1 || v.Tier != "member" || v.Balance != 0 {
			t.Errorf("%s: %v, tier %s, balance %d; want one upgrade, one downgrade and one expiry", id, kinds, v.Tier, v.Balance)
		}
	}
	mustCheck(t, h)
}

// TestMigration_ScheduleBackfill: a database made before members had a schedule gets each
// member's last activity from the ledger, and every member due for both jobs (expiry: those with
// points), so that the first runs look at everyone.
func TestMigration_ScheduleBackfill(t *testing.T) {
	skipOnPostgres(t, "it runs hub/sqlite's migrations")
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	old := fstest.MapFS{}
	entries, err := os.ReadDir("sqlite/migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() >= "0018" {
			continue
		}
		b, err := fs.ReadFile(os.DirFS("sqlite/migrations"), e.Name())
		if err != nil {
			t.Fatal(err)
		}
		old[e.Name()] = &fstest.MapFile{Data: b}
	}
	db, err := sqlitedb.Open(ctx, path, old)
	if err != nil {
		t.Fatal(err)
	}
	day := func(n int) int64 { return t0.AddDate(0, 0, n).UnixMilli() }
	for _, q := range []string{
		`INSERT INTO members (id, balance, version, created_at) VALUES ('a', 100, 1, 0), ('b', 0, 2, 0), ('c', 50, 3, 0)`,
		fmt.Sprintf(`INSERT INTO deltas (id, hash, store, member, kind, points, occurred_at, received_at, event_at) VALUES
			('d1', '', 's1', 'a', 'earn', 100, 0, 0, %d), ('d2', '', 's1', 'a', 'redeem', -50, 0, 0, %d), ('d3', '', 's1', 'a', 'earn', 50, 0, 0, %d),
			('d4', '', 's1', 'b', 'earn', 10, 0, 0, %d), ('d5', '', 's1', 'b', 'expire', -10, 0, 0, %d),
			('d6', '', 'hub', 'c', 'adjust', 50, 0, 0, %d)`, day(1), day(5), day(3), day(2), day(40), day(4)),
		// No clock offsets: each delta happened when the store said (what Ledger's entries tell).
		`UPDATE deltas SET occurred_at = event_at`,
	} {
		if _, err := db.W.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	before := time.Now().Add(-time.Second)
	s, err := hubsqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[string]struct {
		last   time.Time
		expire bool
	}{"a": {time.UnixMilli(day(5)).UTC(), true}, "b": {time.UnixMilli(day(2)).UTC(), false}, "c": {time.Time{}, true}}
	err = s.View(ctx, func(tx hub.Tx) error {
		for id, w := range want {
			_, sc, err := tx.MemberWithSchedule(ctx, id)
			if err != nil {
				return err
			}
			last, err := ledgerLastActivity(ctx, tx, id)
			if err != nil {
				return err
			}
			if !sc.LastActive.Equal(w.last) || !last.Equal(w.last) {
				t.Errorf("%s: last active %v (ledger %v), want %v", id, sc.LastActive, last, w.last)
			}
			if sc.ReviewAt.Before(before) || sc.ReviewAt.After(time.Now()) {
				t.Errorf("%s: review at %v, want due now", id, sc.ReviewAt)
			}
			if w.expire != !sc.ExpireAt.IsZero() || w.expire && sc.ExpireAt.After(time.Now()) {
				t.Errorf("%s: expiry check at %v, want due now: %v", id, sc.ExpireAt, w.expire)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The later migrations' qualifying totals (0019) are filled from the same ledger.
	if r, err := hub.New(s).Check(ctx); err != nil || len(r.Mismatches) > 0 {
		t.Errorf("check after the migrations: %+v, %v", r, err)
	}
}

// ledgerQualifying computes a member's qualifying total in [from, to) from their ledger, the way
// Tx.Qualifying is specified: sales (earns of no rule) not reversed in full, less their partial
// refunds.
func ledgerQualifying(ledger []hub.LedgerEntry, basis string, from, to time.Time) int64 {
	var total int64
	for _, e := range ledger {
		at := e.EventTime()
		if e.Kind != loyalty.KindEarn || e.Rule != "" || at.Before(from) || !at.Before(to) {
			continue
		}
		var refunded int64
		full := false
		for _, r := range ledger {
			if r.Reverses != e.ID {
				continue
			}
			switch {
			case r.Amount == 0:
				full = true
			case r.Amount > 0 && basis == loyalty.BasisPoints:
				refunded -= r.Points
			case r.Amount > 0:
				refunded += r.Amount
			}
		}
		if full {
			continue
		}
		if basis == loyalty.BasisPoints {
			total += e.Points - refunded
		} else {
			total += e.Amount - refunded
		}
	}
	return total
}

// TestSchedule_NeverLate: random sales online and from a store (dated up to an hour back),
// redemptions, refunds in full and in part, adjustments, program changes and the clock moving on,
// with the jobs run now and then. After every step, for every member: the schedule's last
// activity is the ledger's; a member whose tier is not the one their window total gives now is
// due for a review; a member with points due to expire now is due, and otherwise their expiry
// check comes no later than their oldest held points expire; and when the jobs have just run,
// every tier is right and nothing is left to expire. The batch reads (QualifyingOf, LotsOf) agree
// with the single ones and with the ledger, and what expires soon is what the ledger says.
func TestSchedule_NeverLate(t *testing.T) {
	for _, mode := range []string{loyalty.ExpiryLot, loyalty.ExpiryInactivity} {
		t.Run(mode, func(t *testing.T) {
			h := openHub(t)
			ctx := context.Background()
			now := t0
			h.Now = func() time.Time { return now }
			rng := rand.New(rand.NewPCG(7, uint64(len(mode))))
			after, window := 40, loyalty.WindowRolling12M
			var published time.Time
			publish := func() {
				published = now
				withProgram(t, h, func(p *loyalty.Program) {
					rollingTiers(p)
					p.Tiers.Window = window
					p.Expiry = &loyalty.Expiry{Mode: mode, AfterDays: after, RemindDays: 10}
				})
				syncStores(t, h)
			}
			publish()
			members := []string{"m1", "m2", "p1", "p2"}
			for _, id := range members[2:] {
				if _, err := h.CreateMember(ctx, loyalty.Member{ID: id}); err != nil {
					t.Fatal(err)
				}
			}
			var orders []string // online orders, for refunds
			n := 0
			ran := false
			for step := range 220 {
				ran = false
				m := members[rng.IntN(len(members))]
				n++
				order := fmt.Sprintf("o%d", n)
				switch k := rng.IntN(20); {
				case k < 6:
					sale(t, h, order, m, loyalty.Money(100+rng.IntN(40000)))
					orders = append(orders, order)
				case k < 8: // a store's sale, dated up to 50 minutes back
					syncStores(t, h)
					d := earn("s1", m, int64(100+rng.IntN(40000)))
					back := min(time.Duration(rng.IntN(50))*time.Minute, now.Sub(published)) // under the current rules
					d.RuleVersion, d.OccurredAt = currentRuleVersion(t, h), now.Add(-back)
					mustApply(t, h, "s1", d)
				case k < 10:
					if balance(t, h, m) >= 50 {
						if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: order, MemberID: m, RewardID: "coffee"}); err != nil {
							t.Fatal(err)
						}
						orders = append(orders, order)
					}
				case k < 12 && len(orders) > 0: // a refund in full: of a sale, or of a redemption
					o := orders[rng.IntN(len(orders))]
					if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: o}); err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND &&
						loyalty.ErrorCode(err) != loyalty.ECONFLICT {
						t.Fatal(err)
					}
				case k < 13 && len(orders) > 0: // a partial refund of a sale
					o := orders[rng.IntN(len(orders))]
					_, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: o, RefundID: order, Amount: loyalty.Money(100 + rng.IntN(2000))})
					if code := loyalty.ErrorCode(err); err != nil && code != loyalty.ENOTFOUND && code != loyalty.EINVALID && code != loyalty.ECONFLICT {
						t.Fatal(err)
					}
				case k < 14: // an operator's adjustment, either way
					d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: m, Kind: loyalty.KindAdjust,
						Points: int64(rng.IntN(200) - 80), OccurredAt: now}
					if d.Points == 0 {
						d.Points = 1
					}
					mustApply(t, h, loyalty.HubStore, d)
				case k < 15:
					after = []int{20, 40, 90}[rng.IntN(3)]
					window = []string{loyalty.WindowRolling12M, loyalty.WindowCalendar}[rng.IntN(2)]
					publish()
				case k < 17:
					if _, err := h.RequalifyWith(ctx, hub.JobOptions{Batch: 1 + rng.IntN(3)}); err != nil {
						t.Fatal(err)
					}
					if _, err := h.ExpirePointsWith(ctx, hub.JobOptions{Batch: 1 + rng.IntN(3)}); err != nil {
						t.Fatal(err)
					}
					ran = true
				default:
					now = now.Add(time.Duration(1+rng.IntN(60*24*40)) * time.Minute)
				}
				checkSchedules(t, h, members, ran, fmt.Sprintf("step %d, %v", step, now))
			}
			mustCheck(t, h)
		})
	}
}

func currentRuleVersion(t *testing.T, h *hub.Hub) int64 {
	t.Helper()
	p, err := h.Program(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p.Version
}

func checkSchedules(t *testing.T, h *hub.Hub, members []string, ran bool, when string) {
	t.Helper()
	ctx := context.Background()
	now := h.Now()
	err := h.Store.View(ctx, func(tx hub.Tx) error {
		p, _, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		from, to := p.Tiers.WindowBounds(now)
		many, err := tx.QualifyingOf(ctx, members, p.Tiers.Basis, from, to)
		if err != nil {
			return err
		}
		lotsOf, err := tx.LotsOf(ctx, members, p.Expiry.LotsSince(now))
		if err != nil {
			return err
		}
		for _, id := range members {
			m, s, err := tx.MemberWithSchedule(ctx, id)
			if err != nil {
				return err
			}
			ledger, err := tx.Ledger(ctx, id, 100000)
			if err != nil {
				return err
			}
			q, err := tx.Qualifying(ctx, id, p.Tiers.Basis, from, to)
			if err != nil {
				return err
			}
			if want := ledgerQualifying(ledger, p.Tiers.Basis, from, to); q.Total != want || many[id] != q {
				t.Fatalf("%s: %s qualifies %d (batch %+v), the ledger says %d", when, id, q.Total, many[id], want)
			}
			last, err := ledgerLastActivity(ctx, tx, id)
			if err != nil {
				return err
			}
			if !s.LastActive.Equal(last) {
				t.Fatalf("%s: %s last active %v, the ledger says %v", when, id, s.LastActive, last)
			}
			if tier := p.Tiers.TierFor(q.Total).ID; tier != m.Tier && (s.ReviewAt.IsZero() || s.ReviewAt.After(now) || ran) {
				t.Fatalf("%s: %s is %q, should be %q, and is due for review at %v (jobs just ran: %v)", when, id, m.Tier, tier, s.ReviewAt, ran)
			}
			lots, err := tx.Lots(ctx, id, p.Expiry.LotsSince(now))
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(lots, lotsOf[id]) && len(lots)+len(lotsOf[id]) > 0 {
				t.Fatalf("%s: %s lots %+v, batch %+v", when, id, lots, lotsOf[id])
			}
			var due int64
			var next time.Time // when the member's points next expire
			if p.Expiry.Mode == loyalty.ExpiryLot {
				var upcoming []loyalty.ExpiringPoints
				due, upcoming = p.Expiry.LotExpiry(lots, m.Balance, now)
				if len(upcoming) > 0 {
					next = upcoming[0].At
				}
			} else if m.Balance > 0 && !last.IsZero() {
				if at := p.Expiry.ExpiresAt(last); now.Before(at) {
					next = at
				} else {
					due = m.Balance
				}
			}
			switch {
			case due > 0 && (s.ExpireAt.IsZero() || s.ExpireAt.After(now) || ran):
				t.Fatalf("%s: %s has %d points due to expire, and an expiry check at %v (jobs just ran: %v)", when, id, due, s.ExpireAt, ran)
			case due == 0 && !next.IsZero() && (s.ExpireAt.IsZero() || s.ExpireAt.After(next)):
				t.Fatalf("%s: %s's points expire at %v, the check is at %v", when, id, next, s.ExpireAt)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustExpiringSoon(t, h), referenceExpiring(t, h); !sameExpiring(got, want) {
		t.Fatalf("%s: expiring soon %+v, the ledger says %+v", when, got, want)
	}
}

func mustExpiringSoon(t *testing.T, h *hub.Hub) []hub.Expiring {
	t.Helper()
	soon, err := h.ExpiringSoon(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return soon
}

// insertCounter counts the ledger inserts of write transactions: statements of one delta
// (InsertDelta) and of many (InsertDeltas), and the deltas the latter carried.
type insertCounter struct {
	hub.Store
	one, many, rows *atomic.Int64
	lookups         *atomic.Int64 // reads of a delta by id (Tx.Delta), if not nil
}

func (s insertCounter) Update(ctx context.Context, fn func(hub.Tx) error) error {
	return s.Store.Update(ctx, func(tx hub.Tx) error { return fn(insertCountingTx{Tx: tx, s: s}) })
}

type insertCountingTx struct {
	hub.Tx
	s insertCounter
}

func (t insertCountingTx) InsertDelta(ctx context.Context, d loyalty.Delta, hash string, at time.Time) (int64, bool, error) {
	t.s.one.Add(1)
	return t.Tx.InsertDelta(ctx, d, hash, at)
}

func (t insertCountingTx) Delta(ctx context.Context, id string) (hub.LedgerEntry, error) {
	if t.s.lookups != nil {
		t.s.lookups.Add(1)
	}
	return t.Tx.Delta(ctx, id)
}

func (t insertCountingTx) InsertDeltas(ctx context.Context, ds []hub.NewDelta) ([]int64, error) {
	t.s.many.Add(1)
	t.s.rows.Add(int64(len(ds)))
	return t.Tx.InsertDeltas(ctx, ds)
}

// TestJobs_LedgerOneInsertPerBatch: the deltas a job's batch ledgers (expiries, tier changes) go
// into the ledger with one insert for the batch, never one each, and each member gets exactly
// theirs, after their earlier entries.
func TestJobs_LedgerOneInsertPerBatch(t *testing.T) {
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		rollingTiers(p)
		p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryInactivity, AfterDays: 400, RemindDays: 7}
	})
	requalify(t, h) // m1 and m2 placed in the entry tier
	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("x%02d", i)
		if _, err := h.CreateMember(context.Background(), loyalty.Member{ID: id}); err != nil {
			t.Fatal(err)
		}
		sale(t, h, "sale-"+id, id, 30000) // silver
		ids = append(ids, id)
	}
	one, many, rows := new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)
	h.Store = insertCounter{Store: h.Store, one: one, many: many, rows: rows}

	now = t0.AddDate(1, 0, 1) // the sales have left the tier window: every silver falls to member
	r, err := h.RequalifyWith(context.Background(), hub.JobOptions{Batch: 7})
	if err != nil {
		t.Fatal(err)
	}
	if r.Changed != 20 || r.Batches != 3 || one.Load() != 0 || many.Load() != 3 || rows.Load() != 20 {
		t.Fatalf("requalify: %+v with %d single inserts, %d batch inserts of %d deltas; want 20 changed in 3 batches, 3 inserts of 20",
			r, one.Load(), many.Load(), rows.Load())
	}
	one.Store(0)
	many.Store(0)
	rows.Store(0)
	now = t0.AddDate(1, 1, 5) // 400 days without activity: every balance expires
	if r := expirePoints(t, h, 7); r.Changed != 20 || r.Batches != 3 || one.Load() != 0 || many.Load() != 3 || rows.Load() != 20 {
		t.Fatalf("expire: %+v with %d single inserts, %d batch inserts of %d deltas; want 20 expired in 3 batches, 3 inserts of 20",
			r, one.Load(), many.Load(), rows.Load())
	}
	for _, id := range ids {
		v, err := h.Member(context.Background(), id, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []loyalty.Kind
		for _, e := range v.Ledger {
			kinds = append(kinds, e.Kind)
		}
		slices.Reverse(kinds) // the ledger is newest first
		if !slices.Equal(kinds, []loyalty.Kind{loyalty.KindEarn, loyalty.KindTier, loyalty.KindTier, loyalty.KindExpire}) || v.Balance != 0 || v.Tier != "member" {
			t.Errorf("%s: ledger %v, balance %d, tier %s; want the sale, silver, member, the expiry, and 0 points in member",
				id, kinds, v.Balance, v.Tier)
		}
	}
	mustCheck(t, h)
}

// TestPush_TierChangeLedgered: a pushed sale that lifts its member to a new tier ledgers the
// change with the batch, after the sale, and a later sale that claims the tier is accepted.
func TestPush_TierChangeLedgered(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, rollingTiers)
	syncStores(t, h)
	p, err := h.Program(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := earn("s1", "m1", 30000) // silver
	big.RuleVersion = p.Version
	if ack := pushOK(t, h, "s1", big); ack.Results[0].Status != lsync.StatusApplied {
		t.Fatalf("the sale: %+v", ack.Results[0])
	}
	v, err := h.Member(ctx, "m1", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Ledger) < 2 || v.Ledger[0].Kind != loyalty.KindTier || v.Ledger[0].Tier != "silver" || v.Ledger[1].ID != big.ID ||
		v.Ledger[0].Seq <= v.Ledger[1].Seq || v.Tier != "silver" {
		t.Fatalf("member %s, ledger %+v; want the sale, then the change to silver after it", v.Tier, v.Ledger)
	}
	claim := earn("s1", "m1", 1000)
	claim.RuleVersion, claim.Tier, claim.OccurredAt = p.Version, "silver", t0.Add(time.Minute)
	if ack := pushOK(t, h, "s1", claim); ack.Results[0].Status != lsync.StatusApplied {
		t.Fatalf("a sale in silver: %+v", ack.Results[0])
	}
	mustCheck(t, h)
}

// TestJobs_ReadAheadThatNoLongerHolds: a job reads each batch ahead of its write transaction
// (runJob). A member whose lots change in between, here by a sale and a debit that leave them
// due, is read again in the write transaction: the run expires what the ledger says when it
// writes. With the lots read ahead, the old lot would look held and its 10 points would expire,
// though the debit spent them.
func TestJobs_ReadAheadThatNoLongerHolds(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) { p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30} })
	sale(t, h, "old", "m1", 1000) // 10 points, which expire on day 30
	now = t0.AddDate(0, 0, 30)
	calls := 0
	h.SetJobHook(func() {
		if calls++; calls > 1 {
			return
		}
		sale(t, h, "new", "m1", 2000) // a lot of 20 points
		if _, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "a1", MemberID: "m1", Points: -20, Reason: "goodwill taken back"}); err != nil {
			t.Fatal(err)
		}
	})
	r := expirePoints(t, h, 0)
	if r.Visited != 1 || r.Changed != 0 || r.Reread != 1 || balance(t, h, "m1") != 10 {
		t.Fatalf("run: %+v, balance %d; want m1 read again and nothing expired (the debit spent the old lot)", r, balance(t, h, "m1"))
	}
	mustCheck(t, h)
}

// TestJobs_ReadAheadUsed: in runs nothing else writes during, every batch uses what was read
// ahead of it (runJob): no member is read again in a write transaction, though each batch's
// writes (its tier and expire deltas) come after the next batch's read ahead.
func TestJobs_ReadAheadUsed(t *testing.T) {
	h, _ := lapsedSilverMembers(t, 25)
	if r := expirePoints(t, h, 10); r.Visited != 25 || r.Changed != 25 || r.Batches != 3 || r.Reread != 0 {
		t.Errorf("expiry: %+v; want 25 members in 3 batches, none read again", r)
	}
	r, err := h.RequalifyWith(context.Background(), hub.JobOptions{Batch: 10})
	if err != nil || r.Changed != 25 || r.Reread != 0 {
		t.Errorf("requalification: %+v, %v; want 25 tiers changed, no member read again", r, err)
	}
	mustCheck(t, h)
}

// TestJobs_ReadAheadUnderAnotherProgram: a program published between a batch's read ahead and
// its write makes the write read the whole batch again: the totals read ahead were for the old
// program's basis (spend), and would keep m1 silver under the new one (points).
func TestJobs_ReadAheadUnderAnotherProgram(t *testing.T) {
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, rollingTiers)
	sale(t, h, "big", "m1", 30000) // 300.00 EUR, 300 points: silver
	now = t0.AddDate(0, 0, 1)
	withProgram(t, h, func(p *loyalty.Program) { rollingTiers(p); p.Tiers.Tiers[1].Name = "Argent" }) // everyone due
	calls := 0
	h.SetJobHook(func() {
		if calls++; calls > 1 {
			return
		}
		withProgram(t, h, func(p *loyalty.Program) {
			rollingTiers(p)
			p.Tiers.Basis, p.Tiers.Tiers[1].Threshold = loyalty.BasisPoints, 400
		})
	})
	r := requalify(t, h)
	if r.Visited != 2 || r.Reread != 2 || tierOf(t, h, "m1") != "member" {
		t.Fatalf("run: %+v, m1 %s; want every member read again, and m1 member (300 points of 400)", r, tierOf(t, h, "m1"))
	}
	mustCheck(t, h)
}

// TestLedgerHead_MembersAfter: what a batch read ahead checks at its write (runJob): the ledger's
// head, and which of the batch's members have deltas after it, each once.
func TestLedgerHead_MembersAfter(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	view := func(fn func(tx hub.Tx) error) {
		t.Helper()
		if err := h.Store.View(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	var empty int64
	view(func(tx hub.Tx) (err error) { empty, err = tx.LedgerHead(ctx); return err })
	sale(t, h, "o1", "m1", 1000)
	var head int64
	var after []string
	view(func(tx hub.Tx) (err error) {
		if head, err = tx.LedgerHead(ctx); err != nil {
			return err
		}
		after, err = tx.MembersAfter(ctx, head, []string{"m1", "m2"})
		return err
	})
	if head <= empty || len(after) != 0 {
		t.Fatalf("head %d after %d, members after it %v; want a later head and none", head, empty, after)
	}
	sale(t, h, "o2", "m2", 1000)
	sale(t, h, "o3", "m2", 1000)
	sale(t, h, "o4", "m1", 1000)
	var both, one, none []string
	view(func(tx hub.Tx) (err error) {
		if both, err = tx.MembersAfter(ctx, head, []string{"m1", "m2", "nobody"}); err != nil {
			return err
		}
		if one, err = tx.MembersAfter(ctx, head, []string{"m2"}); err != nil {
			return err
		}
		none, err = tx.MembersAfter(ctx, head, nil)
		return err
	})
	slices.Sort(both)
	if !slices.Equal(both, []string{"m1", "m2"}) || !slices.Equal(one, []string{"m2"}) || len(none) != 0 {
		t.Fatalf("members with deltas after the head: %v, of m2 alone: %v, of none: %v; want [m1 m2], [m2], []", both, one, none)
	}
}
