package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Looker is a Syncer that can ask the hub for a member's standing: what only the hub knows, such
// as redemptions and earnings at other stores. lsync.Client is one. qr is the member's code (or
// the voucher's) the till scanned, "" for a member named by id: the hub hands a member the store
// does not hold yet only against a scanned code.
type Looker interface {
	Lookup(ctx context.Context, member, voucher, qr string) (*loyalty.Member, *lsync.Standing, error)
}

var _ Looker = (*lsync.Client)(nil)

// lookup asks the hub, while the store is online, for the member's current copy (balance, tier,
// punch cards) into the replica, and returns their standing, with the state of voucher if it is
// not empty. code is the member's (or voucher's) scanned code, "" for a member named by id, who
// is in the replica. It waits at most LookupTimeout. It returns nil when the store decides on its own
// records: offline, the hub slow or failing, or a sync client that cannot look up. A signed QR is
// enough to go on in every case. The error is the hub's EUNAUTHORIZED, when it does not count the
// member as this store's (a copy the replica kept across a restore of the hub, or a race with an
// eviction): the store may still award them points, but a redemption of their points would be
// refused at the hub (docs/PROTOCOL.md, "Replica scope"), so Redeem refuses it at the till.
//
// Online means exact: the store's own records know nothing of what the member did at other
// stores since the last sync, so a connected store asks rather than guesses (docs/PROTOCOL.md,
// "Online means exact").
func (a *Agent) lookup(ctx context.Context, member, voucher, code string) (*lsync.Standing, error) {
	if !a.Sync.Status().Online {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.LookupTimeout)
	defer cancel()
	l, ok := a.Sync.(Looker)
	if !ok {
		a.subscribe(ctx, member)
		return nil, nil
	}
	_, st, err := l.Lookup(ctx, member, voucher, code)
	if err != nil {
		a.Logger.Info("member lookup at the hub failed; deciding on this store's own records",
			slog.String("member", member), slog.Any("err", err))
		if loyalty.ErrorCode(err) == loyalty.EUNAUTHORIZED {
			return nil, err
		}
		return nil, nil
	}
	return st, nil
}

// earnAsksHub reports whether an earn must ask the hub before it decides: when what the hub
// counts at every store and channel can change its points (an earn cap on purchases, a punch card
// the sale's lines may punch), or the replica does not hold the member. Otherwise the store's copy
// decides, which the hub's notifications keep current while the store is connected (a tier
// changed elsewhere a moment ago may not be in it yet; the hub accepts an earn under the tier the
// store last had), and the sale costs no round trip to the hub. Offline nothing is asked anyway.
func (a *Agent) earnAsksHub(ctx context.Context, who identity, req loyalty.EarnRequest) bool {
	if !a.Sync.Status().Online {
		return false
	}
	ask := true
	a.Store.View(ctx, func(tx Tx) error {
		p, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		if p.HasEarnCap(loyalty.RulePurchase) || p.Punches(req.Lines) {
			return nil
		}
		if who.inReplica { // identify has just read it
			ask = false
			return nil
		}
		_, err = tx.Member(ctx, who.member)
		ask = err != nil
		return nil
	})
	return ask
}

// subscribe fetches a member the replica does not hold yet, for a sync client without Lookup.
func (a *Agent) subscribe(ctx context.Context, member string) {
	var known bool
	a.Store.View(ctx, func(tx Tx) error {
		_, err := tx.Member(ctx, member)
		known = err == nil
		return nil
	})
	if known {
		return
	}
	if _, err := a.Sync.Subscribe(ctx, member); err != nil {
		a.Logger.Info("member lookup at the hub failed; going on with the QR alone", slog.String("member", member), slog.Any("err", err))
	}
}

// checkedBy says on a receipt whose figures the call was checked against.
func checkedBy(st *lsync.Standing) string {
	if st != nil {
		return loyalty.CheckedByHub
	}
	return loyalty.CheckedByStore
}

// counted returns the hub's count for a limit or cap in the period containing at, from st, and
// whether it may be used: st must be the hub's count of that very period (a call at midnight may
// fall in the next period by the store's reckoning of hub time).
func counted(st *lsync.Standing, period string, at time.Time, find func(*lsync.Standing) (int64, bool)) (int64, bool) {
	if st == nil {
		return 0, false
	}
	n, ok := find(st)
	if !ok {
		return 0, false
	}
	hubStart, _ := loyalty.PeriodBounds(period, time.UnixMilli(st.At))
	start, _ := loyalty.PeriodBounds(period, at)
	return n, hubStart.Equal(start)
}

// earned is what a member earned from purchases in the period containing at (an event time), for
// earn caps: the hub's count at every store plus what this store made that the hub had not
// counted, or, without a standing, this store's own awards.
func (a *Agent) earned(ctx context.Context, tx Tx, st *lsync.Standing, member, period string, at time.Time) (int64, error) {
	hub, ok := counted(st, period, at, func(s *lsync.Standing) (int64, bool) { return s.EarnedUnder(loyalty.RulePurchase, period) })
	local, err := inPeriod(period, at, func(since time.Time) (int64, error) { return tx.Earned(ctx, member, since, ok) })
	return hub + local, err
}

// withinLimits checks the program's per-member limits for a redemption of r by m at event time
// at: online with the hub's counts (every store and online) plus this store's unsynced
// redemptions; offline with this store's own. It returns EBUDGET.
func (a *Agent) withinLimits(ctx context.Context, tx Tx, p *loyalty.Program, st *lsync.Standing, m loyalty.Member, r loyalty.Reward, at time.Time) error {
	for _, l := range p.MemberLimits {
		if l.Reward != "" && l.Reward != r.ID {
			continue
		}
		hub, ok := counted(st, l.Period, at, func(s *lsync.Standing) (int64, bool) { return s.Redeemed(l.Reward, l.Period) })
		local, err := inPeriod(l.Period, at, func(since time.Time) (int64, error) {
			return tx.Redemptions(ctx, m.ID, l.Reward, since, ok)
		})
		if err != nil {
			return err
		}
		if n := hub + local; n+1 > l.Max {
			what := r.Name
			if l.Reward == "" {
				what = "rewards"
			}
			return loyalty.Errorf(loyalty.EBUDGET, "%s has already redeemed %s %s %s; the limit is %d %s",
				memberName(m), what, times(n), loyalty.PeriodName(l.Period), l.Max, limitPer(l.Period))
		}
	}
	return nil
}

// times words a count of times.
func times(n int64) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}

// limitPer words a limit's period after its number: "2 a day".
func limitPer(period string) string {
	switch period {
	case loyalty.PeriodDay:
		return "a day"
	case loyalty.PeriodWeek:
		return "a week"
	case loyalty.PeriodMonth:
		return "a month"
	}
	return "in total"
}

// memberName is how a refusal names the member to the cashier.
func memberName(m loyalty.Member) string {
	if m.Name != "" {
		return m.Name
	}
	return "this member"
}

// voucherUsable refuses a voucher the hub says was used (at another store, or online) or
// cancelled, or does not know. Without a standing, the store's own record decides.
func voucherUsable(st *lsync.Standing) error {
	if st == nil {
		return nil
	}
	switch st.Voucher {
	case lsync.VoucherUsed:
		return loyalty.Errorf(loyalty.ECONFLICT, "this voucher was already used (at another store or online); it can be used once")
	case lsync.VoucherCancelled:
		return loyalty.Errorf(loyalty.ECONFLICT, "this voucher was cancelled: the order that bought it was refunded")
	case lsync.VoucherUnknown:
		return loyalty.Errorf(loyalty.ENOTFOUND, "head office has no record of this voucher for this member; ask the member for the voucher's QR code again")
	}
	return nil
}
