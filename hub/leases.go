package hub

import (
	"context"
	"crypto/rand"
	"math"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// LeaseConfig sizes and times budget leases (docs/BUDGETS.md, "Leases"). A zero field takes its
// default (DefaultLeaseConfig), except Margin.
type LeaseConfig struct {
	// TTL is how long a store may spend a lease without hearing from the hub, for a budget
	// without its own lease_ttl. It bounds how long an offline store spends a budget, and so how
	// long a kill switch takes to reach it.
	TTL time.Duration
	// Margin is added to TTL before the hub counts a lease as expired, to cover message transit
	// and clock rate differences: a store's own expiry always comes first.
	Margin time.Duration
	// ExpectedOutage is how long an outage a lease carries a store through at the demand the hub
	// saw from it, for a budget without its own expected_outage.
	ExpectedOutage time.Duration
	// DemandWindow is how far back the hub looks at a store's demand, and how long it must have
	// watched a store's demand for a budget before the lease is sized from it alone.
	DemandWindow time.Duration
	// Headroom multiplies the observed demand: a busier outage than the busiest seen still fits.
	Headroom float64
	Min      int64 // smallest lease granted
	// Share sizes the lease of a store the hub has not watched for a whole DemandWindow: this
	// share of the limit, but never more than Headroom times the store's fair share (what is left
	// of the budget split evenly among the registered stores and the online channel).
	Share float64
}

// DefaultLeaseConfig returns the defaults: leases a store may spend for 12 hours without the
// hub, sized to carry it through an 8 hour outage at 1.5 times the busiest 8 hours of its last 24
// hours of demand.
func DefaultLeaseConfig() LeaseConfig {
	return LeaseConfig{TTL: 12 * time.Hour, Margin: time.Minute, ExpectedOutage: 8 * time.Hour, DemandWindow: 24 * time.Hour,
		Headroom: 1.5, Min: 1, Share: 0.25}
}

// withDefaults fills the fields left zero.
func (c LeaseConfig) withDefaults() LeaseConfig {
	d := DefaultLeaseConfig()
	orDefault(&c.TTL, d.TTL)
	orDefault(&c.ExpectedOutage, d.ExpectedOutage)
	orDefault(&c.DemandWindow, d.DemandWindow)
	orDefault(&c.Headroom, d.Headroom)
	orDefault(&c.Min, d.Min)
	orDefault(&c.Share, d.Share)
	return c
}

// ttl is how long a store may spend its lease of b without hearing from the hub.
func (c LeaseConfig) ttl(b *loyalty.Budget) time.Duration {
	if b != nil && b.LeaseTTL > 0 {
		return time.Duration(b.LeaseTTL)
	}
	return c.withDefaults().TTL
}

// outage is how long an outage a lease of b should carry a store through.
func (c LeaseConfig) outage(b *loyalty.Budget) time.Duration {
	if b.ExpectedOutage > 0 {
		return time.Duration(b.ExpectedOutage)
	}
	return c.withDefaults().ExpectedOutage
}

// leaseSize is what a store should hold of a budget.
type leaseSize struct {
	target int64 // unspent quota: the expected outage's demand with headroom, or a new store's share
	need   int64 // one redemption's or one order's worth: a lease should never hold less
}

// size works out what store should hold unspent of budget b (docs/BUDGETS.md, "Lease size"):
//
//	need   = max(leases.min, the budget's unit, the largest single charge of the budget at any store
//	         in the demand window, for order_value the largest min_order of its rewards)
//	target = max(need, ⌈headroom × the most the store was charged in any expected_outage-long
//	         stretch of the demand window⌉)
//
// and, for a store whose demand the hub has not recorded for a whole window yet (a new store, a
// new budget, a hub just upgraded), at least its new-store share. f is the budget's figures,
// read with demand from the start of the window on (Tx.BudgetFigures).
func (a *applier) size(ctx context.Context, p *loyalty.Program, b *loyalty.Budget, store string, f BudgetFigures) (leaseSize, error) {
	cfg := a.Lease.withDefaults()
	now := a.Now()
	need := max(cfg.Min, b.Unit(p), f.Largest, minOrder(p, b))
	target := int64(math.Ceil(cfg.Headroom * peakDemand(f.Demand, cfg.DemandWindow, cfg.outage(b))))
	watched := f.Watched
	if watched.IsZero() { // the first look at this store's demand of b starts the watch
		var err error
		if watched, err = a.tx.WatchSince(ctx, store, b.ID, now); err != nil {
			return leaseSize{}, err
		}
	}
	if now.Sub(watched) < cfg.DemandWindow {
		fresh, err := a.newStoreShare(ctx, p, b, f.Spent)
		if err != nil {
			return leaseSize{}, err
		}
		target = max(target, fresh)
	}
	return leaseSize{target: max(target, need), need: need}, nil
}

// newStoreShare is what a store without a window of history gets: leases.share of the limit, and
// no more than its fair share, what is left of the budget split evenly among the registered
// stores, so that new stores together never ask for more than there is; never less than one
// unit.
func (a *applier) newStoreShare(ctx context.Context, p *loyalty.Program, b *loyalty.Budget, spent int64) (int64, error) {
	cfg := a.Lease.withDefaults()
	if a.storeCount == 0 { // read once for all the budgets of a pull
		n, err := a.tx.CountStores(ctx)
		if err != nil {
			return 0, err
		}
		a.storeCount = max(n, 1)
	}
	share := int64(float64(b.Limit) * cfg.Share)
	fair := max(b.Limit-spent, 0) / int64(a.storeCount)
	return max(cfg.Min, min(share, fair), b.Unit(p)), nil
}

// minOrder is the smallest order a reward under an order_value budget can be used on: a lease
// smaller than the largest of them lets none of that reward's orders through.
func minOrder(p *loyalty.Program, b *loyalty.Budget) int64 {
	if b.Metric != loyalty.MetricOrderValue {
		return 0
	}
	var m int64
	for _, r := range p.Rewards {
		if b.Reward == "" || b.Reward == r.ID {
			m = max(m, r.MinOrder)
		}
	}
	return m
}

// peakDemand is the most a store was charged in any stretch of outage within the window, in whole
// hours; for an outage as long as the window or longer, the window's demand scaled up to it.
// hours are oldest first. Taking the busiest stretch, not the average, sizes a lease for an outage
// at the busiest time of day: a day's demand is not spread evenly over its 24 hours.
func peakDemand(hours []DemandHour, window, outage time.Duration) float64 {
	var total int64
	for _, h := range hours {
		total += h.Amount
	}
	if outage >= window {
		return float64(total) * float64(outage) / float64(window)
	}
	span := time.Duration(math.Ceil(outage.Hours())) * time.Hour
	var best int64
	for i := range hours {
		var sum int64
		end := hours[i].Hour.Add(span)
		for j := i; j < len(hours) && hours[j].Hour.Before(end); j++ {
			sum += hours[j].Amount
		}
		best = max(best, sum)
	}
	return float64(best)
}

// session returns the start of store's live sync session as the hub recorded it (Seen), or zero
// when the hub knows of none: a pull made through a session the hub did not see start.
func (h *Hub) session(store string) time.Time {
	h.healthMu.Lock()
	defer h.healthMu.Unlock()
	return h.started[store]
}

// leases settles, renews, revokes, grants, refills and reclaims a store's leases at its pull, and
// returns the store's complete list. Ended leases are settled only when the pull is flushed
// (every delta the store had made was pushed before it, and the hub applies a session's messages
// in order): then everything spent under them is known. ls is the store's leases (Tx.Leases) as
// read in a's transaction.
func (a *applier) leases(ctx context.Context, store string, ls []Lease, flushed bool) ([]lsync.Lease, error) {
	p, err := a.current(ctx)
	if err != nil {
		return nil, err
	}
	now := a.Now()
	put := a.leasesPut
	session := a.session(store)
	held := map[string]*Lease{}
	for i := range ls {
		l := &ls[i]
		ev := LeaseEvent{Lease: l.ID, Store: store, Budget: l.Budget, At: now}
		b := budgetByID(p, l.Budget)
		switch {
		case l.State == LeaseEnded && !flushed:
			continue
		case l.State == LeaseEnded:
			ev.Kind, ev.Amount = "settle", l.Outstanding()
			l.State = LeaseSettled
		case b == nil || disabled(p, b):
			ev.Kind, ev.Amount = "revoke", l.Outstanding()
			l.State = LeaseEnded
		case heard(l, session, flushed):
			// The store heard of the lower figure a reclaim told it: what the reclaim took
			// comes back (see adjust).
			held[l.Budget] = l
			keep := max(l.Told(), l.Consumed)
			ev.Kind, ev.Amount = "reclaim", l.Granted-keep
			l.Granted, l.Reclaiming, l.ReclaimSession = keep, 0, time.Time{}
		default:
			held[l.Budget] = l
			continue
		}
		if err := a.putLease(ctx, *l, ev); err != nil {
			return nil, err
		}
	}
	var enabled []*loyalty.Budget
	for i := range p.Budgets {
		if !disabled(p, &p.Budgets[i]) {
			enabled = append(enabled, &p.Budgets[i])
		}
	}
	if len(enabled) > 0 {
		ids := make([]string, len(enabled))
		for i, b := range enabled {
			ids[i] = b.ID
		}
		// Read after the settlements, revocations and reclaims above, which they count. From
		// here on, a budget's figures change only with writes to its own lease and watch, made
		// in its own adjustment after they were used.
		figures, err := a.tx.BudgetFigures(ctx, store, ids, now.Add(-a.Lease.withDefaults().DemandWindow))
		if err != nil {
			return nil, err
		}
		for _, b := range enabled {
			f, ok := figures[b.ID]
			if !ok {
				return nil, loyalty.Errorf(loyalty.EINTERNAL, "the store's figures of budget %s were not read", b.ID)
			}
			if err := a.adjust(ctx, p, b, store, held[b.ID], f, session, flushed); err != nil {
				return nil, err
			}
		}
	}
	out := []lsync.Lease{}
	if a.leasesPut > put { // else the leases read above are as they stand
		if ls, err = a.tx.Leases(ctx, store); err != nil {
			return nil, err
		}
	}
	for _, l := range ls {
		// The store may spend until the hub's expiry less the margin: its own expiry always
		// comes first, however long the message takes (up to the margin). It is told what it may
		// spend, less what is being reclaimed.
		ttl := max(l.ExpiresAt.Sub(now)-a.Lease.Margin, 0)
		out = append(out, lsync.Lease{ID: l.ID, Budget: l.Budget, Granted: l.Told(), State: l.State, TTLMillis: ttl.Milliseconds()})
	}
	return out, nil
}

// adjust brings a store's active lease of b (nil: none yet) to its size at the store's pull:
// it renews the lease, and grants, refills or starts reclaiming (docs/BUDGETS.md, "Lease size"
// and "Rebalancing"). The quota of a reclaim the store has heard of was released before (leases).
//
// Safety of a reclaim: the hub lowers what it tells the store at once, but goes on reserving
// the whole Granted until a later flushed pull of the same session (the store pulls again only
// after it applied the answer to its previous pull, and the hub applies a session's messages in
// order). From then on the store spends at most max(told, what it had spent), and all it had
// spent has arrived: Granted drops to that. A store spends only what it was told, so no
// redemption it approved is ever refused for the reclaim; and checkLeases holds any store to
// Granted, so the budget holds whatever a store does.
//
// f is the budget's figures as they stood before the adjustment (Tx.BudgetFigures).
func (a *applier) adjust(ctx context.Context, p *loyalty.Program, b *loyalty.Budget, store string, l *Lease, f BudgetFigures, session time.Time, flushed bool) error {
	now := a.Now()
	cfg := a.Lease.withDefaults()
	var events []LeaseEvent
	event := func(kind string, amount int64) {
		events = append(events, LeaseEvent{Lease: l.ID, Store: store, Budget: b.ID, Kind: kind, Amount: amount, At: now})
	}
	var before Lease
	if l != nil {
		before = *l
		// Renewal, not ledgered (it moves no quota). At nearly every pull: a store that goes
		// offline must have close to a whole TTL ahead of it, not half.
		if ttl := cfg.ttl(b); l.ExpiresAt.Sub(now) < ttl+a.Lease.Margin-ttl/64 {
			l.ExpiresAt = now.Add(ttl + a.Lease.Margin)
		}
	}
	f.Outstanding = a.counted(f.Outstanding)
	free := b.Limit - f.Spent - f.Outstanding
	sz, err := a.size(ctx, p, b, store, f)
	if err != nil {
		return err
	}
	if l == nil {
		grant := min(sz.target, free)
		if grant <= 0 {
			return nil
		}
		l = &Lease{ID: "l" + strings.ToLower(rand.Text()[:16]), Store: store, Budget: b.ID, State: LeaseActive,
			Granted: grant, Wanted: sz.target - grant, CreatedAt: now, ExpiresAt: now.Add(cfg.ttl(b) + a.Lease.Margin)}
		event("grant", grant)
		return a.putLease(ctx, *l, events[0])
	}
	told := l.Told()
	have := told - l.Consumed
	l.Wanted = 0
	switch {
	case have < sz.need || have < sz.target-max(sz.need, sz.target/20):
		// Short: top up to the target. Below one redemption's worth (need) always: a quiet
		// store's target is little more than need, and the margin alone left it holding less
		// than one reward, refused at the till, and never refilled.
		told = l.Consumed + sz.target
		if told > l.Granted {
			extra := min(told-l.Granted, max(free, 0))
			if extra > 0 {
				l.Granted += extra
				event("refill", extra)
			}
			l.Wanted = told - l.Granted
		}
	case have > sz.target && flushed && !session.IsZero():
		// Idle quota, by exact figures (the pull is flushed: all the store spent has arrived), in
		// a session the hub can confirm a reclaim in: take back what is over the target when it
		// sits far over, or when others need it now.
		idle := have > sz.target+max(sz.need, sz.target/2)
		if !idle {
			wanted, err := a.tx.Wanted(ctx, b.ID)
			if err != nil {
				return err
			}
			idle = free < 2*sz.need || wanted-before.Wanted > free
		}
		if idle {
			told = l.Consumed + sz.target
		}
	}
	told = min(told, l.Granted)
	if l.Reclaiming = l.Granted - told; l.Reclaiming > 0 {
		// This answer tells the store the lower figure: a later flushed pull of this session
		// proves it heard it (heard). Unknown session: no proof can come, the reserve stays.
		l.ReclaimSession = session
	} else {
		l.ReclaimSession = time.Time{}
	}
	if *l == before && len(events) == 0 {
		return nil
	}
	ev := LeaseEvent{}
	if len(events) > 0 {
		ev = events[0]
	}
	return a.putLease(ctx, *l, ev)
}

// putLease writes a lease and the event that changed it, and counts the write (leasesPut).
func (a *applier) putLease(ctx context.Context, l Lease, e LeaseEvent) error {
	a.leasesPut++
	return a.tx.PutLease(ctx, l, e)
}

// heard reports whether a store has heard of the lower figure a reclaim told it: this pull is
// flushed and comes in the session whose earlier answer told it (ReclaimSession), which the store
// applied before it pulled again.
func heard(l *Lease, session time.Time, flushed bool) bool {
	return l.Reclaiming > 0 && flushed && !session.IsZero() && l.ReclaimSession.Equal(session)
}

// ExpireLeases ends the active leases of stores that have not renewed them within their TTL plus
// the margin. Their unspent quota stays reserved until the store reconnects and its spending is
// known (see docs/BUDGETS.md), or an operator writes the store off. It also forgets the demand
// recorded before the demand window.
func (h *Hub) ExpireLeases(ctx context.Context) (int, error) {
	n := 0
	err := h.update(ctx, func(tx Tx) error {
		n = 0 // a retried transaction starts over
		ls, err := tx.ExpiredLeases(ctx, h.Now())
		if err != nil {
			return err
		}
		for _, l := range ls {
			l.State = LeaseEnded
			if err := tx.PutLease(ctx, l, LeaseEvent{Lease: l.ID, Store: l.Store, Budget: l.Budget, Kind: "expire", Amount: l.Outstanding(), At: h.Now()}); err != nil {
				return err
			}
			n++
		}
		return tx.PruneDemand(ctx, h.Now().Add(-h.Lease.withDefaults().DemandWindow-time.Hour))
	})
	return n, err
}
