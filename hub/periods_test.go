package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// conflictsOf returns the recorded conflicts of one kind, oldest first.
func conflictsOf(t *testing.T, h *hub.Hub, kind string) []hub.Conflict {
	t.Helper()
	cs, err := h.Conflicts(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []hub.Conflict
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].Kind == kind {
			out = append(out, cs[i])
		}
	}
	return out
}

// Late sales: two offline deltas dated yesterday arrive today, after the member's activity of
// today. Each is judged in yesterday's period: today's redemption and points do not count against
// it, so neither a member limit nor an earn cap is broken. A third delta of yesterday that does
// break them is still flagged.
func TestPeriods_LateSalesAreJudgedInTheirOwnPeriod(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0.Add(-48 * time.Hour)
	h.Now = func() time.Time { return now }
	fund(t, h, "m1", 1000) // two days before: in no period of this test
	now = t0               // 22 November, 10:00
	withProgram(t, h, func(p *loyalty.Program) {
		p.MemberLimits = []loyalty.MemberLimit{{Reward: "five-off", Period: loyalty.PeriodDay, Max: 1}}
		p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 100}}
	})
	syncStores(t, h) // s1 has version 2, then goes offline

	// Today, 23 November: one five-off online, and the day's 100 points.
	now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "web-r", MemberID: "m1", RewardID: "five-off"}); err != nil {
		t.Fatal(err)
	}
	if r, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-e", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil || r.Points != 100 {
		t.Fatalf("today's earn: %+v, %v", r, err)
	}

	// s1 comes back with yesterday's sales: the first five-off of the day and 80 points.
	yesterday := time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)
	r := redeem("s1", "m1", "five-off", 100)
	r.RuleVersion, r.OccurredAt = 2, yesterday
	e := earn("s1", "m1", 8000)
	e.RuleVersion, e.OccurredAt = 2, yesterday
	mustApply(t, h, "s1", r)
	mustApply(t, h, "s1", e)
	if cs := conflictsOf(t, h, hub.ConflictMemberLimit); len(cs) != 0 {
		t.Errorf("yesterday's only five-off was counted with today's: %+v", cs)
	}
	if cs := conflictsOf(t, h, hub.ConflictEarnCap); len(cs) != 0 {
		t.Errorf("yesterday's 80 points were counted with today's 100: %+v", cs)
	}

	// A second five-off and 30 more points yesterday do break yesterday's limit and cap.
	r2 := redeem("s1", "m1", "five-off", 100)
	r2.RuleVersion, r2.OccurredAt = 2, yesterday.Add(time.Hour)
	e2 := earn("s1", "m1", 3000)
	e2.RuleVersion, e2.OccurredAt = 2, yesterday.Add(time.Hour)
	mustApply(t, h, "s1", r2)
	mustApply(t, h, "s1", e2)
	if cs := conflictsOf(t, h, hub.ConflictMemberLimit); len(cs) != 1 || cs[0].Deltas[0] != r2.ID || cs[0].Amount != 1 {
		t.Errorf("member_limit conflicts: %+v, want one for the second five-off of 22 November", cs)
	}
	if cs := conflictsOf(t, h, hub.ConflictEarnCap); len(cs) != 1 || cs[0].Deltas[0] != e2.ID || cs[0].Amount != 10 {
		t.Errorf("earn_cap conflicts: %+v, want one of 10 points over for 22 November", cs)
	}
}

// A store's sale dated just after midnight (its clock a few minutes ahead, within
// claims.max_future) belongs to the next day: online, the member's limit and cap for the day that
// is still running do not count it, and neither does an action's max_times.
func TestPeriods_OnlineCountsOnlyTheCurrentPeriod(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0.Add(-48 * time.Hour)
	h.Now = func() time.Time { return now }
	fund(t, h, "m1", 1000)
	now = t0
	withProgram(t, h, func(p *loyalty.Program) {
		p.MemberLimits = []loyalty.MemberLimit{{Reward: "five-off", Period: loyalty.PeriodDay, Max: 1}}
		p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 100}}
		p.Actions = []loyalty.ActionRule{{ID: "review", Points: 10, MaxTimes: 1, Period: loyalty.PeriodDay}}
	})
	syncStores(t, h)
	now = time.Date(2026, 11, 22, 23, 55, 0, 0, time.UTC)
	tomorrow := time.Date(2026, 11, 23, 0, 2, 0, 0, time.UTC)
	r := redeem("s1", "m1", "five-off", 100)
	r.RuleVersion, r.OccurredAt = 2, tomorrow
	e := earn("s1", "m1", 10000)
	e.RuleVersion, e.OccurredAt = 2, tomorrow
	mustApply(t, h, "s1", r)
	mustApply(t, h, "s1", e)
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "web-r", MemberID: "m1", RewardID: "five-off"}); err != nil {
		t.Errorf("the day's first five-off online was refused: %v", err)
	}
	if rc, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "web-e", MemberID: "m1", Amount: 5000, Currency: "EUR"}); err != nil || rc.Points != 50 {
		t.Errorf("the day's first earn online: %+v, %v; want 50 points", rc, err)
	}
	// An action awarded tomorrow (a late clock is not possible online, so use the hub's clock).
	now = tomorrow.Add(time.Minute)
	if _, err := h.Action(ctx, loyalty.ActionRequest{OrderID: "rev-1", MemberID: "m1", Action: "review"}); err != nil {
		t.Fatal(err)
	}
	now = time.Date(2026, 11, 22, 23, 59, 0, 0, time.UTC) // the hub's clock set back a few minutes
	if _, err := h.Action(ctx, loyalty.ActionRequest{OrderID: "rev-0", MemberID: "m1", Action: "review"}); err != nil {
		t.Errorf("the day's first review was refused because of tomorrow's: %v", err)
	}
}

// The tier a member is placed in is that of the qualifying window that contains the hub's clock:
// a sale dated next year (a store clock a few minutes ahead on 31 December) counts toward next
// year's calendar-year total, not this year's.
func TestPeriods_TierWindowHasAnEnd(t *testing.T) {
	h := openHub(t)
	now := time.Date(2026, 12, 31, 23, 57, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowCalendar, Tiers: []loyalty.Tier{
			{ID: "member", Name: "Member", Multiplier: 1000}, {ID: "gold", Name: "Gold", Threshold: 10000, Multiplier: 2000}}}
	})
	syncStores(t, h)
	e := earn("s1", "m1", 20000)
	e.RuleVersion, e.OccurredAt = 2, time.Date(2027, 1, 1, 0, 5, 0, 0, time.UTC)
	mustApply(t, h, "s1", e)
	if m, _ := h.Member(context.Background(), "m1", 0); m.Tier != "member" {
		t.Errorf("on 31 December the member is %q: a sale of next year counted toward this year's tier", m.Tier)
	}
	now = time.Date(2027, 1, 1, 0, 30, 0, 0, time.UTC)
	if _, err := h.Requalify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m, _ := h.Member(context.Background(), "m1", 0); m.Tier != "gold" {
		t.Errorf("on 1 January the member is %q, want gold", m.Tier)
	}
}
