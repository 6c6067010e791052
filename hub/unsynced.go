package hub

import (
	"maps"
	"slices"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Unsynced is what a store said, with its last ping, its outbox holds that the hub has not
// acknowledged: the points earned and redeemed and the budget spent offline that the hub has not
// seen yet (docs/REPORTS.md, "Unsynced liability"). It is the store's claim, bounded by the hub
// (boundUnsynced) and shown as such; nothing is applied from it.
type Unsynced struct {
	ReportedBy     string           `json:"reported_by"` // always "store"
	ReportedAt     time.Time        `json:"reported_at"` // hub clock, when the ping arrived
	Deltas         int64            `json:"deltas"`
	PointsEarned   int64            `json:"points_earned"`
	PointsRedeemed int64            `json:"points_redeemed"`
	Budgets        map[string]int64 `json:"budgets,omitempty"`
	// OldestAt is when the oldest of the deltas was made, on the hub's clock (the store's clock
	// corrected by its measured offset); zero when the outbox is empty.
	OldestAt time.Time `json:"oldest_at,omitzero"`
	// Clamped is true when the store reported a number out of bounds (negative, beyond any real
	// balance, a time in the future) or too many budgets: the figure shown is the bound.
	Clamped bool `json:"clamped,omitempty"`
}

// Bounds on what a store may report of its outbox.
const (
	maxUnsyncedBudgets = 64                   // budgets listed; more are dropped (and Clamped set)
	maxUnsyncedAge     = 400 * 24 * time.Hour // an older "oldest delta" is clamped to this age
)

// boundUnsynced turns a store's report into what the hub keeps: every count clamped to
// [0, loyalty.MaxBalance], at most maxUnsyncedBudgets budgets with valid ids, and the oldest
// delta's time moved onto the hub's clock and clamped to [at - maxUnsyncedAge, at]. nil stays nil.
func boundUnsynced(u *lsync.Unsynced, offsetMS int64, at time.Time) *Unsynced {
	if u == nil {
		return nil
	}
	out := &Unsynced{ReportedBy: "store", ReportedAt: at}
	clamp := func(v int64) int64 {
		if v < 0 {
			out.Clamped = true
			return 0
		}
		if v > loyalty.MaxBalance {
			out.Clamped = true
			return loyalty.MaxBalance
		}
		return v
	}
	out.Deltas, out.PointsEarned, out.PointsRedeemed = clamp(u.Deltas), clamp(u.PointsEarned), clamp(u.PointsRedeemed)
	for _, id := range sortedKeys(u.Budgets) {
		if len(out.Budgets) == maxUnsyncedBudgets || id == "" || !loyalty.ValidText(id, loyalty.MaxIDLength) {
			out.Clamped = true
			continue
		}
		if out.Budgets == nil {
			out.Budgets = map[string]int64{}
		}
		out.Budgets[id] = clamp(u.Budgets[id])
	}
	if out.Deltas > 0 && u.OldestAt != 0 {
		const maxMS = 1 << 52 // far beyond any real time; keeps the sum below from overflowing
		ms := min(max(u.OldestAt, -maxMS), maxMS) + min(max(offsetMS, -maxMS), maxMS)
		t := time.UnixMilli(ms).UTC()
		switch {
		case t.After(at):
			t, out.Clamped = at, true
		case t.Before(at.Add(-maxUnsyncedAge)):
			t, out.Clamped = at.Add(-maxUnsyncedAge), true
		}
		out.OldestAt = t
	}
	return out
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sameUnsynced reports whether two reports say the same (their times of report aside).
func sameUnsynced(a, b *Unsynced) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Deltas == b.Deltas && a.PointsEarned == b.PointsEarned && a.PointsRedeemed == b.PointsRedeemed &&
		a.OldestAt.Equal(b.OldestAt) && a.Clamped == b.Clamped && maps.Equal(a.Budgets, b.Budgets)
}

// BacklogAge is how old the oldest unacknowledged delta was at time now (zero: none).
func (u *Unsynced) BacklogAge(now time.Time) time.Duration {
	if u == nil || u.OldestAt.IsZero() {
		return 0
	}
	return max(now.Sub(u.OldestAt), 0)
}
