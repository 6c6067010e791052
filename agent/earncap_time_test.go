package agent_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/migratetest"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestEarnCap_PeriodOfTheEventTime: the agent counts an earn cap's day by each sale's event time
// (its clock plus the offset to the hub's it measured), as the hub does, not by its own clock.
// With the till an hour slow, a sale after midnight on the hub's clock was capped with the day
// before (the member told no while there was room); an hour fast, one before midnight was not
// (and the hub flagged an earn_cap conflict the store made alone).
func TestEarnCap_PeriodOfTheEventTime(t *testing.T) {
	for _, tc := range []struct {
		name         string
		offset       time.Duration // the hub's clock minus the till's
		first, later time.Time     // on the till's clock
		want         int64         // points of the later sale of 70
	}{
		{"slow till, the next day on the hub's clock", time.Hour,
			time.Date(2026, 11, 22, 22, 30, 0, 0, time.UTC), time.Date(2026, 11, 22, 23, 30, 0, 0, time.UTC), 70},
		{"fast till, the same day on the hub's clock", -time.Hour,
			time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 0, 30, 0, 0, time.UTC), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta := newTestAgent(t)
			ctx := context.Background()
			clock := offlineBudget(t, ta, 10, 72*time.Hour, func(p *loyalty.Program) {
				p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 100}}
			})
			ta.sync.status = lsync.Status{Sessions: 1, ClockOffset: tc.offset, ClockOffsetMS: tc.offset.Milliseconds()}
			*clock = tc.first
			if r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "e1", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil || r.Points != 100 {
				t.Fatalf("the first sale, the day's cap: %+v, %v", r, err)
			}
			*clock = tc.later
			r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "e2", MemberID: "m1", Amount: 7000, Currency: "EUR"})
			if err != nil || r.Points != tc.want {
				t.Fatalf("a sale of 70 points at %v on the hub's clock: %+v, %v; want %d points", tc.later.Add(tc.offset), r, err, tc.want)
			}
		})
	}
}

// TestEarnCap_RefundCountsInItsSalesPeriod: a refund gives back room in its sale's period, as the
// hub counts it, not in its own: a sale refunded the next day gave that day a second cap's worth
// of room at the store, and the hub an earn_cap conflict.
func TestEarnCap_RefundCountsInItsSalesPeriod(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	clock := offlineBudget(t, ta, 10, 72*time.Hour, func(p *loyalty.Program) {
		p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 100}}
	})
	*clock = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	if r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "e1", MemberID: "m1", Amount: 10000, Currency: "EUR"}); err != nil || r.Points != 100 {
		t.Fatalf("day 1's sale: %+v, %v", r, err)
	}
	*clock = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if r, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "e1"}); err != nil || r.Points != -100 {
		t.Fatalf("day 2's refund of day 1's sale: %+v, %v", r, err)
	}
	*clock = time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
	if r, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "e2", MemberID: "m1", Amount: 15000, Currency: "EUR"}); err != nil || r.Points != 100 {
		t.Fatalf("day 2's sale of 150 points under a cap of 100 a day: %+v, %v; want 100", r, err)
	}
}

// TestEarnCap_MigrationGivesDeltasTheirEventTime: migration 0013 gives the deltas an earlier
// version wrote their event time, from their occurred_at and clock offset, to the millisecond.
func TestEarnCap_MigrationGivesDeltasTheirEventTime(t *testing.T) {
	clock := now
	ca := newClocked(t, &clock, loyalty.DefaultProgram())
	db, err := sql.Open("sqlite", "file:"+ca.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]int64{}
	for i, d := range []loyalty.Delta{
		{ID: "old-1", Member: "m1", Kind: loyalty.KindEarn, Points: 5, OccurredAt: time.Date(2026, 11, 22, 23, 30, 0, 123456789, time.UTC), ClockOffsetMS: 3_600_000},
		{ID: "old-2", Member: "m1", Kind: loyalty.KindEarn, Points: 5, OccurredAt: time.Date(2026, 11, 23, 0, 30, 0, 0, time.FixedZone("", 3600)), ClockOffsetMS: -1500},
		{ID: "old-3", Member: "m1", Kind: loyalty.KindEarn, Points: 5, OccurredAt: time.Date(2026, 11, 23, 9, 0, 0, 999_000_000, time.UTC)},
	} {
		body, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO deltas (id, member, kind, points, body, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			d.ID, d.Member, d.Kind, d.Points, string(body), int64(i)); err != nil {
			t.Fatal(err)
		}
		want[d.ID] = d.EventTime().UnixMilli()
	}
	migratetest.Rerun(t, db, "sqlite/migrations/0013_delta_event_time.sql")
	for id, at := range want {
		var got int64
		if err := db.QueryRow(`SELECT event_at FROM deltas WHERE id = ?`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != at {
			t.Errorf("%s: event_at %d, want %d (%v)", id, got, at, time.UnixMilli(at).UTC())
		}
	}
}
