// Background jobs the hub runs on a schedule: tier requalification and points expiry (birthday
// points are in birthday.go, lease expiry in leases.go).

package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Requalify recomputes every member's tier, so members whose rolling or calendar-year total fell
// below their tier's threshold are downgraded even without new activity. The hub runs it
// periodically; it returns how many tiers changed.
func (h *Hub) Requalify(ctx context.Context) (int, error) {
	changed := 0
	err := h.eachMember(ctx, func(m loyalty.Member) error {
		return h.update(ctx, func(tx Tx) error {
			a := h.newApplier(tx)
			bal, err := a.balance(ctx, m.ID)
			if err != nil {
				return err
			}
			before := a.members[m.ID].Tier
			if err := a.memberState(ctx, m.ID); err != nil {
				return err
			}
			now, err := tx.Member(ctx, m.ID)
			if err != nil || now.Tier == before {
				return err
			}
			if before != "" {
				changed++ // not the first placement in the entry tier
			}
			v, err := tx.NextVersion(ctx) // agents must learn the new tier
			if err != nil {
				return err
			}
			return tx.SetBalance(ctx, m.ID, bal, v)
		})
	})
	return changed, err
}

// eachMember calls fn for every member, in id order, a page at a time; it stops at fn's first
// error. Each page is read in its own snapshot, so fn may write.
func (h *Hub) eachMember(ctx context.Context, fn func(loyalty.Member) error) error {
	after := ""
	for {
		var ms []loyalty.Member
		if err := h.Store.View(ctx, func(tx Tx) error {
			var err error
			ms, err = tx.Members(ctx, after, 200)
			return err
		}); err != nil || len(ms) == 0 {
			return err
		}
		for _, m := range ms {
			if err := fn(m); err != nil {
				return err
			}
		}
		after = ms[len(ms)-1].ID
	}
}

// Expiring is points of a member that expire soon: their whole balance (mode inactivity), or
// one earned lot's points still held (mode lot; a member may have several entries).
type Expiring struct {
	Member    string    `json:"member_id"`
	Balance   int64     `json:"balance"`
	Points    int64     `json:"points"` // that expire at ExpiresAt unless spent first
	ExpiresAt time.Time `json:"expires_at"`
}

// ExpirePoints applies the program's expiry with ledgered expire deltas: in mode inactivity, a
// member inactive for expiry.after_days loses their balance; in mode lot, the points of lots
// earned more than after_days ago that were not spent first (loyalty.Expiry.LotExpiry). It
// returns how many members lost points, and what expires within expiry.remind_days, for
// reminders. Running it again expires nothing more. Without an expiry rule it does nothing.
func (h *Hub) ExpirePoints(ctx context.Context) (expired int, soon []Expiring, err error) {
	return h.expirePoints(ctx, true)
}

// ExpiringSoon lists members whose points expire within the program's remind_days, changing
// nothing.
func (h *Hub) ExpiringSoon(ctx context.Context) ([]Expiring, error) {
	_, soon, err := h.expirePoints(ctx, false)
	return soon, err
}

func (h *Hub) expirePoints(ctx context.Context, apply bool) (expired int, soon []Expiring, err error) {
	p, err := h.Program(ctx)
	if err != nil || p.Expiry == nil {
		return 0, nil, err
	}
	now := h.Now()
	err = h.eachMember(ctx, func(m loyalty.Member) error {
		if m.Balance <= 0 {
			return nil
		}
		return h.update(ctx, func(tx Tx) error {
			a := h.newApplier(tx)
			bal, err := a.balance(ctx, m.ID)
			if err != nil || bal <= 0 {
				return err
			}
			if p.Expiry.Mode == loyalty.ExpiryLot {
				n, s, err := a.expireLots(ctx, &p, m.ID, bal, now, apply)
				if n > 0 {
					expired++
				}
				soon = append(soon, s...)
				return err
			}
			last, err := tx.LastActivity(ctx, m.ID)
			if err != nil || last.IsZero() {
				return err
			}
			at := p.Expiry.ExpiresAt(last)
			if now.Before(at) || !apply {
				if now.Before(at) && !now.Before(at.AddDate(0, 0, -p.Expiry.RemindDays)) {
					soon = append(soon, Expiring{Member: m.ID, Balance: bal, Points: bal, ExpiresAt: at})
				}
				return nil
			}
			d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: m.ID, Kind: loyalty.KindExpire,
				Points: -bal, RuleVersion: p.Version, OccurredAt: now}
			if _, err := a.apply(ctx, loyalty.HubStore, d); err != nil {
				return err
			}
			expired++
			_, err = a.finish(ctx)
			return err
		})
	})
	return expired, soon, err
}

// expireLots applies expiry per earned lot to one member with balance bal, in a's transaction:
// what the balance holds beyond the member's lots that have not expired at now is expired (when
// apply), with expire deltas of store hub; and the lots' points still held that expire within
// remind_days are listed, one entry per expiry instant. It returns the points expired. The
// transaction reads the balance it changes, so a sweep run twice, or by two hub processes at
// once, expires the points once.
func (a *applier) expireLots(ctx context.Context, p *loyalty.Program, member string, bal int64, now time.Time, apply bool) (int64, []Expiring, error) {
	lots, err := a.tx.Lots(ctx, member, p.Expiry.LotsSince(now))
	if err != nil {
		return 0, nil, err
	}
	due, upcoming := p.Expiry.LotExpiry(lots, bal, now)
	if !apply {
		due = 0
	}
	for rest := due; rest > 0; { // a delta carries at most MaxPoints; a balance may hold more
		n := min(rest, loyalty.MaxPoints)
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: member, Kind: loyalty.KindExpire,
			Points: -n, RuleVersion: p.Version, OccurredAt: now}
		r, err := a.apply(ctx, loyalty.HubStore, d)
		if err != nil {
			return 0, nil, err
		} else if r.Status != lsync.StatusApplied {
			return 0, nil, fmt.Errorf("expiring %d points of member %s: %s %s", n, member, r.Code, r.Message)
		}
		rest -= n
	}
	if due > 0 {
		if _, err := a.finish(ctx); err != nil {
			return 0, nil, err
		}
	}
	var soon []Expiring
	for _, x := range upcoming {
		if now.Before(x.At.AddDate(0, 0, -p.Expiry.RemindDays)) {
			break // oldest first: the rest are further away
		}
		soon = append(soon, Expiring{Member: member, Balance: bal - due, Points: x.Points, ExpiresAt: x.At})
	}
	return due, soon, nil
}
