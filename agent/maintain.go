package agent

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// Retention says what the agent keeps in its replica, and for how long (README, "Operations":
// what a store keeps). Every duration is on the agent's clock (Agent.Now). Zero keeps forever.
type Retention struct {
	// EvictAfter: a member not seen at this store (a scan, or a sale, redemption or refund naming
	// them) for this long leaves the replica, and the store unsubscribes from them at the hub;
	// never while something of theirs waits for the hub, nor while a period of a limit or cap of
	// the program in which they were seen is still running. A member who comes back is fetched
	// again (online) or served on their signed QR code alone (offline), as a new one is.
	EvictAfter time.Duration
	// RetainAcked: an order whose deltas the hub has all acknowledged (and the members' copies
	// include) is deleted this long after its last delta, with its POS keys: this is how long
	// the store can refund it, and how long a POS retry of it is recognised. Orders that a
	// lifetime limit or cap counts are kept, and so is every order within the current period of
	// the program's limits and caps. What a deleted order spent of a budget lease the store still
	// holds goes on counting against the lease.
	RetainAcked time.Duration
	// ResultsRetention: the stored answer to a POS call is dropped this long after the call. The
	// key stays with the order (RetainAcked): a retry after this is refused with ECONFLICT, not
	// done again.
	ResultsRetention time.Duration
}

// Maintenance bounds: rows per transaction, so that POS calls never wait long behind a batch,
// and how often RunMaintenance runs.
const (
	MaintenanceBatch = 500
	MaintenanceEvery = time.Hour
	// unsubscribeTimeout bounds the wait for the hub's answer to one unsubscribe.
	unsubscribeTimeout = 30 * time.Second
)

// Unsubscriber is a Syncer that can take members out of the store's scope at the hub.
// lsync.Client is one.
type Unsubscriber interface {
	Unsubscribe(ctx context.Context, members []string) error
}

// MaintenanceStats counts what maintenance did since the agent started (GET /v1/status).
type MaintenanceStats struct {
	EvictedTotal       int64     `json:"evicted_total"`          // members evicted from the replica
	UnsubscribedTotal  int64     `json:"unsubscribed_total"`     // evicted members the hub took out of the store's scope
	PrunedDeltasTotal  int64     `json:"pruned_deltas_total"`    // acknowledged deltas deleted
	PrunedResultsTotal int64     `json:"pruned_results_total"`   // stored POS answers dropped
	MaintainedAt       time.Time `json:"maintained_at,omitzero"` // when the last maintenance run ended
}

// RunMaintenance runs Maintain now and then every MaintenanceEvery until ctx is done.
func (a *Agent) RunMaintenance(ctx context.Context) {
	tick := time.NewTicker(MaintenanceEvery)
	defer tick.Stop()
	for {
		if err := a.Maintain(ctx); err != nil && ctx.Err() == nil {
			a.Logger.Warn("replica maintenance failed; trying again at the next run", slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Maintain runs one maintenance pass: it evicts members not seen for Retention.EvictAfter and
// unsubscribes them at the hub (online), drops POS answers older than ResultsRetention, and
// deletes orders done with for RetainAcked. It works in batches of MaintenanceBatch rows, one
// transaction each.
func (a *Agent) Maintain(ctx context.Context) error {
	a.maint.Lock()
	defer a.maint.Unlock()
	r := a.Retention
	var p loyalty.Program
	var now time.Time
	err := a.Store.View(ctx, func(tx Tx) error {
		var err error
		if now, err = a.maintenanceNow(ctx, tx); err != nil {
			return err
		}
		p, err = tx.Program(ctx)
		return err
	})
	if err != nil && loyalty.ErrorCode(err) != loyalty.EUNAVAILABLE { // never synced: no program, no limits
		return err
	}
	// Orders the hub rejected a delta of are split again (pruning keeps them until then).
	if err := a.Store.Update(ctx, func(tx Tx) error { return resplit(ctx, tx) }); err != nil {
		return err
	}
	// Members last seen before the oldest period still running of the program's limits and caps
	// may go: their activity there counts no more (and the deltas it counts stay anyway).
	windows := periodsStart(&p, now)
	err = a.batches(ctx, func(tx Tx) (int64, error) { return tx.StampUnseen(ctx, now, MaintenanceBatch) }, nil)
	if err != nil {
		return err
	}
	if r.EvictAfter > 0 {
		before := minTime(now.Add(-r.EvictAfter), windows)
		err := a.batches(ctx, func(tx Tx) (int64, error) {
			ids, err := tx.Evict(ctx, before, now, MaintenanceBatch)
			return int64(len(ids)), err
		}, func(s *MaintenanceStats, n int64) { s.EvictedTotal += n })
		if err != nil {
			return err
		}
	}
	if err := a.unsubscribe(ctx); err != nil {
		return err
	}
	if r.ResultsRetention > 0 {
		before := now.Add(-r.ResultsRetention)
		err := a.batches(ctx, func(tx Tx) (int64, error) { return tx.ForgetResults(ctx, before, MaintenanceBatch) },
			func(s *MaintenanceStats, n int64) { s.PrunedResultsTotal += n })
		if err != nil {
			return err
		}
	}
	if r.RetainAcked > 0 {
		if err := a.pruneOrders(ctx, pruneRules(&p, minTime(now.Add(-r.RetainAcked), windows))); err != nil {
			return err
		}
	}
	a.addStats(func(s *MaintenanceStats) { s.MaintainedAt = a.Now() })
	return nil
}

// maintenanceNow is the time maintenance takes for now: the earliest of the device's clock, the
// agent time (which a clock set forward while the agent runs does not move) and the hub's clock
// as last measured. A clock set weeks ahead, by a bad time source or a failing battery, would
// otherwise make every order look done with and every member unseen: orders, and the answers
// that make a POS retry safe, would be deleted while they are still wanted. Taking the earliest
// only keeps things longer.
func (a *Agent) maintenanceNow(ctx context.Context, tx Tx) (time.Time, error) {
	now := a.Now()
	at, err := tx.AgentTime(ctx)
	if err != nil {
		return now, err
	}
	kept, err := tx.ClockOffset(ctx)
	hub := now.Add(time.Duration(a.offsetNow(kept)) * time.Millisecond)
	return minTime(minTime(now, at), hub), err
}

// batches runs fn in write transactions until one does fewer than MaintenanceBatch rows, and
// counts what each committed did with count, if not nil.
func (a *Agent) batches(ctx context.Context, fn func(Tx) (int64, error), count func(*MaintenanceStats, int64)) error {
	for {
		var n int64
		err := a.Store.Update(ctx, func(tx Tx) error {
			var err error
			n, err = fn(tx)
			return err
		})
		if err != nil {
			return err
		}
		if count != nil && n > 0 {
			a.addStats(func(s *MaintenanceStats) { count(s, n) })
		}
		if n < MaintenanceBatch {
			return nil
		}
	}
}

func (a *Agent) pruneOrders(ctx context.Context, p Prune) error {
	var after int64
	for {
		var r Pruned
		err := a.Store.Update(ctx, func(tx Tx) error {
			var err error
			r, err = tx.PruneOrders(ctx, p, after, MaintenanceBatch)
			return err
		})
		if err != nil {
			return err
		}
		a.addStats(func(s *MaintenanceStats) { s.PrunedDeltasTotal += r.Deltas; s.PrunedResultsTotal += r.Results })
		if r.Scanned < MaintenanceBatch {
			return nil
		}
		after = r.Next
	}
}

// unsubscribe asks the hub, while the store is online, to take the evicted members out of the
// store's scope, and subscribes again to those that came back meanwhile: the hub then handles
// that subscription after the unsubscribe, so its scope ends up as the replica is. Offline, or
// with a hub that cannot, the members wait in the replica for the next run.
func (a *Agent) unsubscribe(ctx context.Context) error {
	u, ok := a.Sync.(Unsubscriber)
	if !ok {
		return nil
	}
	for st := a.Sync.Status(); st.Online; st = a.Sync.Status() {
		n := MaintenanceBatch
		if st.MaxBatch > 0 { // the hub refuses more ids in one message than its max_batch
			n = min(n, st.MaxBatch)
		}
		var batch []Evicted
		err := a.Store.View(ctx, func(tx Tx) error {
			var err error
			batch, err = tx.Unsubscribes(ctx, n)
			return err
		})
		if err != nil || len(batch) == 0 {
			return err
		}
		members := make([]string, len(batch))
		for i, e := range batch {
			members[i] = e.Member
		}
		uctx, cancel := context.WithTimeout(ctx, unsubscribeTimeout)
		err = u.Unsubscribe(uctx, members)
		cancel()
		if err != nil {
			a.Logger.Info("the hub did not take evicted members out of this store's scope; trying again at the next run",
				slog.Int("members", len(members)), slog.Any("err", err))
			return nil
		}
		var back []string
		err = a.Store.Update(ctx, func(tx Tx) error {
			var err error
			back, err = tx.Unsubscribed(ctx, batch)
			return err
		})
		if err != nil {
			return err
		}
		a.addStats(func(s *MaintenanceStats) { s.UnsubscribedTotal += int64(len(batch) - len(back)) })
		for _, m := range back {
			err := a.resubscribe(ctx, m)
			if loyalty.ErrorCode(err) == loyalty.EUNAUTHORIZED {
				// The hub hands a member back only with a reason (their code), and a copy that
				// came back by a scan alone, or by changes that carried no code, gives it none:
				// the copy is dropped rather than kept stale; their next scan here fetches them
				// again.
				var dropped bool
				derr := a.Store.Update(ctx, func(tx Tx) error {
					var err error
					dropped, err = tx.DropCopy(ctx, m)
					return err
				})
				if derr == nil && dropped {
					a.Logger.Info("an evicted member came back by a scan while the hub took them out of this store's scope; "+
						"their copy is dropped, and their next scan here fetches them again", slog.String("member", m))
					continue
				}
				// Not dropped (a change of theirs with their code waits for the hub, and brings
				// them back), or the replica failed: logged below, with the replica's error first.
				err = cmp.Or(derr, err)
			}
			if err != nil {
				a.Logger.Warn("an evicted member came back while the hub took them out of this store's scope, and subscribing to them again failed; "+
					"the store gets their changes again at their next sale or online scan here",
					slog.String("member", m), slog.Any("err", err))
			}
		}
		if len(batch) < n {
			return nil
		}
	}
	return nil
}

// resubscribe subscribes again to an evicted member who came back while the hub took them out of
// the store's scope. A change of theirs made from a scan since carried their code, which the hub
// took before the unsubscribe and which it needs again now: it goes with the subscription.
func (a *Agent) resubscribe(ctx context.Context, member string) error {
	ctx, cancel := context.WithTimeout(ctx, unsubscribeTimeout)
	defer cancel()
	var code string
	if err := a.Store.View(ctx, func(tx Tx) error {
		var err error
		code, err = tx.Presence(ctx, member)
		return err
	}); err != nil {
		return err
	}
	if l, ok := a.Sync.(Looker); ok && code != "" {
		_, _, err := l.Lookup(ctx, member, "", code)
		if loyalty.ErrorCode(err) != loyalty.EINVALID {
			return err
		}
		// The code expired since, or its key was retired: the hub takes the member back only
		// for another reason, if it has one.
	}
	_, err := a.Sync.Subscribe(ctx, member)
	return err
}

// periodsStart returns the start of the oldest period still running at now among the program's
// member limits and earn caps (day, week, month) and offline redemption limits (day); now if it
// has none.
func periodsStart(p *loyalty.Program, now time.Time) time.Time {
	var periods []string
	for _, l := range p.MemberLimits {
		periods = append(periods, l.Period)
	}
	for _, c := range p.EarnCaps {
		periods = append(periods, c.Period)
	}
	for _, r := range p.Rewards {
		if r.Offline == loyalty.OfflineLimit {
			periods = append(periods, loyalty.PeriodDay)
		}
	}
	start := now
	for _, period := range periods {
		if s, _ := loyalty.PeriodBounds(period, now); !s.IsZero() && s.Before(start) {
			start = s
		}
	}
	return start
}

// pruneRules returns what PruneOrders may delete before before under p: lifetime ("total")
// limits and caps count a member's redemptions or sales at this store for ever, offline, so the
// orders they count are kept.
func pruneRules(p *loyalty.Program, before time.Time) Prune {
	r := Prune{Before: before}
	for _, l := range p.MemberLimits {
		if l.Period != loyalty.PeriodTotal {
			continue
		}
		if l.Reward == "" {
			r.KeepRedeems = true
		} else if !slices.Contains(r.KeepRewards, l.Reward) {
			r.KeepRewards = append(r.KeepRewards, l.Reward)
		}
	}
	for _, c := range p.EarnCaps {
		if c.Period == loyalty.PeriodTotal && c.Rule == loyalty.RulePurchase {
			r.KeepEarns = true
		}
	}
	return r
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// addStats changes the maintenance counters.
func (a *Agent) addStats(fn func(*MaintenanceStats)) {
	a.statsMu.Lock()
	defer a.statsMu.Unlock()
	fn(&a.stats)
}

// MaintenanceStats returns the maintenance counters.
func (a *Agent) MaintenanceStats() MaintenanceStats {
	a.statsMu.Lock()
	defer a.statsMu.Unlock()
	return a.stats
}

// touch records that the store saw member now, for eviction. A failure only makes the member's
// last-seen time older: it is logged, and the POS call goes on.
func (a *Agent) touch(ctx context.Context, member string) {
	err := a.Store.Update(ctx, func(tx Tx) error {
		at, err := a.keptAt(ctx, tx)
		if err != nil {
			return err
		}
		return tx.Touch(ctx, member, at)
	})
	if err != nil {
		a.Logger.Warn("could not record when the member was last seen", slog.String("member", member), slog.Any("err", err))
	}
}
