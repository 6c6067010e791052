// Package agent is the store daemon of loyalty edge sync: it answers the point of sale (scan a
// member QR, earn, redeem, reverse) from a local replica, online or offline, and writes every
// change as a ledger delta to a transactional outbox that the sync client delivers to the hub.
//
// Guarantees kept here: a delta is durable in the same transaction as its local effect before
// the POS gets an answer; a POS retry with the same order id gets the first answer; an offline
// redemption never takes the balance this store can see (last synced balance plus its own pending
// deltas) below zero.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	gosync "sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Syncer is the agent's view of its sync client (lsync.Client).
type Syncer interface {
	// Kick says the outbox has new deltas.
	Kick()
	// Subscribe fetches a member from the hub into the replica. EUNAVAILABLE when offline.
	Subscribe(ctx context.Context, member string) (*loyalty.Member, error)
	// Status reports the connection state.
	Status() lsync.Status
	// Refresh pulls from the hub now and waits for the answer (new leases, program). EUNAVAILABLE
	// when offline.
	Refresh(ctx context.Context) error
}

// Agent answers the point of sale from the local replica.
type Agent struct {
	Store   Store
	StoreID string
	Sync    Syncer
	Logger  *slog.Logger
	Now     func() time.Time
	// LookupTimeout bounds how long a scan of a member unknown to the replica waits for the hub.
	LookupTimeout time.Duration
	// Location is the store's time zone, in which campaign days and hours are read, until the
	// hub has sent the store's registered zone: from then on the hub's zone is used (the hub
	// reads campaigns in it too when it checks the store's earns).
	Location *time.Location
	// Retention says what maintenance (Maintain, RunMaintenance) evicts and prunes; the zero
	// value keeps everything.
	Retention Retention

	maint   gosync.Mutex // one Maintain at a time
	statsMu gosync.Mutex
	stats   MaintenanceStats
}

// location returns the store's time zone: the one the hub last sent, or Location before that.
func (a *Agent) location(ctx context.Context, tx Tx) (*time.Location, error) {
	tz, err := tx.TimeZone(ctx)
	if err != nil {
		return nil, err
	}
	if tz != "" {
		return time.LoadLocation(tz) // cached by the time package
	}
	if a.Location == nil {
		return time.UTC, nil
	}
	return a.Location, nil
}

// New returns an Agent for store id on s.
func New(id string, s Store, sync Syncer) *Agent {
	return &Agent{Store: s, StoreID: id, Sync: sync, Logger: slog.Default(), Now: time.Now, LookupTimeout: 500 * time.Millisecond}
}

// ScanRequest is the body of POST /v1/scan.
type ScanRequest struct {
	QR string `json:"qr"`
}

// ScanResult is what the cashier sees after scanning a member QR.
type ScanResult struct {
	Member     loyalty.Member   `json:"member"`
	Known      bool             `json:"known"`   // false: the member is new to this store and the hub was not reachable
	Balance    int64            `json:"balance"` // synced balance plus this store's pending deltas
	Pending    int64            `json:"pending"` // points of this store's deltas not yet confirmed by the hub
	Offline    bool             `json:"offline"`
	Affordable []loyalty.Reward `json:"affordable_rewards"`
}

// Scan verifies a member QR offline and returns the member, balance and affordable rewards.
func (a *Agent) Scan(ctx context.Context, req ScanRequest) (ScanResult, error) {
	c, v, err := a.authentic(ctx, req.QR)
	if err == nil {
		err = v.Current(c)
	}
	if err != nil {
		return ScanResult{}, err
	}
	if c.Type != qr.TypeMember {
		return ScanResult{}, loyalty.Errorf(loyalty.EINVALID, "this is a voucher; use it with a redeem call")
	}
	a.lookup(ctx, c.Member, "", req.QR) // online: the hub's balance and punch cards (a refusal changes nothing shown)
	var res ScanResult
	err = a.Store.View(ctx, func(tx Tx) error {
		// Erased as the replica holds the member now: the look-up may just have brought the
		// erased copy of a member this store never held.
		if err := refuseErased(ctx, tx, c.Member); err != nil { // care.go
			return err
		}
		m, known, bal, pending, err := a.balance(ctx, tx, c.Member)
		if err != nil {
			return err
		}
		p, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		res = ScanResult{Member: m, Known: known, Balance: bal, Pending: pending, Offline: !a.Sync.Status().Online, Affordable: []loyalty.Reward{}}
		off, err := tx.OfflineFor(ctx)
		if err != nil {
			return err
		}
		for _, r := range p.Rewards {
			if r.PointsCost <= bal && !r.Disabled && off < p.OfflineValidityOf(r) {
				res.Affordable = append(res.Affordable, r)
			}
		}
		return nil
	})
	if err == nil && res.Known {
		a.touch(ctx, c.Member) // seen here: not evicted for a while
	}
	return res, err
}

// balance returns what this store knows of a member: as the hub has confirmed them (the synced
// copy and this store's acknowledged deltas it does not include yet, or a bare member new to the
// store), whether it was known, and balance = confirmed + pending (not acknowledged yet).
func (a *Agent) balance(ctx context.Context, tx Tx, id string) (m loyalty.Member, known bool, balance, pending int64, err error) {
	m, err = tx.Member(ctx, id)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		m, err = loyalty.Member{ID: id}, nil
	} else if err == nil {
		known = true
	}
	if err != nil {
		return m, false, 0, 0, err
	}
	if pending, err = tx.PendingPoints(ctx, id); err != nil {
		return m, false, 0, 0, err
	}
	return m, known, m.Balance + pending, pending, nil
}

// authentic checks a QR token's signature with the keys this store last synced. Whether it is
// still current (not expired) is checked separately, and only for a new request.
func (a *Agent) authentic(ctx context.Context, token string) (qr.Claims, *qr.Verifier, error) {
	if token == "" {
		return qr.Claims{}, nil, loyalty.Errorf(loyalty.EINVALID, "qr is required: the text of the scanned code")
	}
	var keys []qr.PublicKey
	err := a.Store.View(ctx, func(tx Tx) error {
		var err error
		keys, err = tx.Keys(ctx)
		return err
	})
	if err != nil {
		return qr.Claims{}, nil, err
	}
	if len(keys) == 0 {
		return qr.Claims{}, nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "this store has never synced with the hub, so it cannot check QR codes yet")
	}
	v := &qr.Verifier{Keys: keys, Now: a.Now}
	c, err := v.Authentic(token)
	return c, v, err
}

// identity is the member of a POS call: named by a signed code or by an id in the replica.
type identity struct {
	member    string
	token     string // the scanned code, when named by one
	claims    qr.Claims
	v         *qr.Verifier // nil when named by id
	inReplica bool         // named by id, and found in the replica
}

// current checks that the code is still valid, and that a member's code does not name a member
// erased at the hub, as the replica holds them in tx: a lookup at the hub for this call may just
// have brought the erased copy in. It runs only for a new request, so that a retry of a call
// approved just before the code expired, or before the store heard of the erasure, gets its first
// answer.
func (i identity) current(ctx context.Context, tx Tx) error {
	if i.v == nil {
		return nil
	}
	if err := i.v.Current(i.claims); err != nil {
		return err
	}
	if i.claims.Type != qr.TypeMember {
		return nil
	}
	return refuseErased(ctx, tx, i.claims.Member) // care.go
}

// identify resolves the member of a POS call: a QR token with a valid signature, or an id in
// the replica.
func (a *Agent) identify(ctx context.Context, token, id, want string) (identity, error) {
	if token != "" {
		c, v, err := a.authentic(ctx, token)
		if err != nil {
			return identity{}, err
		}
		if c.Type != want && want == qr.TypeMember {
			return identity{}, loyalty.Errorf(loyalty.EINVALID, "this is a voucher, not a member code; send it as \"voucher\"")
		} else if c.Type != want {
			return identity{}, loyalty.Errorf(loyalty.EINVALID, "this is a member code, not a voucher")
		}
		return identity{member: c.Member, token: token, claims: c, v: v}, nil
	}
	if id == "" {
		return identity{}, loyalty.Errorf(loyalty.EINVALID, "qr (the scanned member code) or member_id is required")
	}
	err := a.Store.View(ctx, func(tx Tx) error {
		_, err := tx.Member(ctx, id)
		return err
	})
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return identity{}, loyalty.Errorf(loyalty.ENOTFOUND, "member %s is not known at this store; scan the member's QR code instead", id)
	}
	return identity{member: id, inReplica: err == nil}, err
}

// once runs a POS operation exactly once per (op, order id), in one transaction with the deltas
// it writes. A retry with the same body returns the first answer; a different body with the same
// order id is ECONFLICT. Refusals are not remembered, so a refused call can be retried. Callers
// pass the request with its QR token replaced by the member id it names, so a retry with a
// freshly refreshed code is still the same request.
func (a *Agent) once(ctx context.Context, op, orderID string, req any, fn func(Tx, bool) (loyalty.Receipt, error)) (loyalty.Receipt, error) {
	return a.onceFor(ctx, op, orderID, "", req, fn)
}

// onceFor is once for one part of an order (a reward, a voucher, a partial refund): the key is
// the order id and the part (loyalty.PartKey).
func (a *Agent) onceFor(ctx context.Context, op, orderID, part string, req any, fn func(Tx, bool) (loyalty.Receipt, error)) (loyalty.Receipt, error) {
	if err := loyalty.ValidateOrderID(orderID); err != nil {
		return loyalty.Receipt{}, err
	}
	out, err := a.onceTx(ctx, op, orderID, part, req, fn)
	if errors.Is(err, errNeedQuota) && a.Sync.Status().Online {
		// Online with too little quota: ask the hub for a refill and try once more.
		rctx, cancel := context.WithTimeout(ctx, a.LookupTimeout)
		rerr := a.Sync.Refresh(rctx)
		cancel()
		if rerr == nil {
			out, err = a.onceTx(ctx, op, orderID, part, req, fn)
		}
	}
	return out, err
}

func (a *Agent) onceTx(ctx context.Context, op, orderID, part string, req any, fn func(Tx, bool) (loyalty.Receipt, error)) (loyalty.Receipt, error) {
	key := loyalty.PartKey(orderID, part)
	hash := loyalty.RequestHash(req)
	offline := !a.Sync.Status().Online
	var out loyalty.Receipt
	var fresh bool
	err := a.Store.Update(ctx, func(tx Tx) error {
		prev, resp, found, err := tx.PosResult(ctx, op, key)
		if err == nil && !found && part != "" { // kept by an earlier version under its key
			prev, resp, found, err = tx.LegacyPosResult(ctx, op, loyalty.LegacyPartKey(orderID, part))
		}
		if err != nil {
			return err
		}
		if found {
			if prev != hash {
				return loyalty.IdempotencyConflict(op, orderID, part)
			}
			if len(resp) == 0 { // the answer was dropped after pos.results_retention; the order is remembered
				return loyalty.Errorf(loyalty.ECONFLICT, "this %s of order %s was already done at this store, and its answer is no longer kept "+
					"(pos.results_retention), so it is not done again; see the order's receipt, or ask head office for the member's account", op, orderID)
			}
			if err := json.Unmarshal(resp, &out); err != nil {
				return err
			}
			out.Replayed = true
			return nil
		}
		if out, err = fn(tx, offline); err != nil {
			return err
		}
		out.OrderID, out.Offline = orderID, offline
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		fresh = true
		at, err := a.keptAt(ctx, tx)
		if err != nil {
			return err
		}
		return tx.SavePosResult(ctx, op, key, hash, b, at)
	})
	if err == nil && fresh {
		a.Sync.Kick()
	}
	return out, err
}

func (a *Agent) newDelta(ctx context.Context, tx Tx, member string, kind loyalty.Kind, orderID, terminal string) (loyalty.Delta, error) {
	offset, err := a.clockOffset(ctx, tx)
	d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: a.StoreID, Terminal: terminal, Member: member, Kind: kind,
		OrderID: orderID, OccurredAt: a.Now(), ClockOffsetMS: offset}
	d.Normalize()
	return d, err
}

// clockOffset returns the hub clock minus this device's clock: as measured in this process's
// sessions, and kept in the replica so that an agent restarted while offline still dates its
// deltas on the hub's clock (the hub refuses dates far from it).
func (a *Agent) clockOffset(ctx context.Context, tx Tx) (int64, error) {
	kept, err := tx.ClockOffset(ctx)
	if err != nil {
		return 0, err
	}
	if now := a.offsetNow(kept); now != kept {
		return now, tx.SetClockOffset(ctx, now)
	}
	return kept, nil
}

// keptAt is the time to record for how long the replica keeps what is written now (a POS
// answer, a member's last sighting): the later of this device's clock and the hub's, so that a
// clock that was behind, and is set right later, does not make what was just written look old
// enough to prune. (Maintenance's own now, maintenanceNow, is the earlier of the clocks, so a
// clock that runs ahead prunes nothing early either.) Pruning deltas reads the later of their
// two times, created_at and event_at, for the same reason.
func (a *Agent) keptAt(ctx context.Context, tx Tx) (time.Time, error) {
	kept, err := tx.ClockOffset(ctx)
	return laterClock(a.Now(), a.offsetNow(kept)), err
}

// laterClock is the later of now, on this device's clock, and the hub's clock offsetMS from it.
func laterClock(now time.Time, offsetMS int64) time.Time {
	if offsetMS > 0 {
		return now.Add(time.Duration(offsetMS) * time.Millisecond)
	}
	return now
}

// offsetNow is the clock offset to use, in ms, given the one the replica kept: the one measured in
// this process's sessions, if any, else the kept one.
func (a *Agent) offsetNow(kept int64) int64 {
	if st := a.Sync.Status(); st.Sessions > 0 {
		return st.ClockOffsetMS
	}
	return kept // not measured since this agent started
}

// Earn awards points for a sale under the program this store last synced.
func (a *Agent) Earn(ctx context.Context, req loyalty.EarnRequest) (loyalty.Receipt, error) {
	if err := req.Validate(); err != nil {
		return loyalty.Receipt{}, err
	}
	who, err := a.identify(ctx, req.QR, req.MemberID, qr.TypeMember)
	if err != nil {
		return loyalty.Receipt{}, err
	}
	member := who.member
	var st *lsync.Standing
	if a.earnAsksHub(ctx, who, req) {
		st, _ = a.lookup(ctx, member, "", who.token) // online: the hub's punch cards and earn caps count; a sale needs no scope
	}
	req.QR, req.MemberID = "", member
	return a.once(ctx, "earn", req.OrderID, req, func(tx Tx, offline bool) (loyalty.Receipt, error) {
		if err := who.current(ctx, tx); err != nil {
			return loyalty.Receipt{}, err
		}
		p, err := tx.Program(ctx)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		d, err := a.newDelta(ctx, tx, member, loyalty.KindEarn, req.OrderID, req.Terminal)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		m, _, _, _, err := a.balance(ctx, tx, member)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		// The code, when scanned, goes with the sale: the hub's proof that the member was here,
		// which brings them into the store's scope if it does not count them as the store's
		// already (loyalty.Delta.Presence). The replica cannot tell: the hub may have lost its
		// scope row in a restore, or taken the member out in a race with an eviction.
		d.Presence = who.token
		pending, err := tx.PendingPunches(ctx, member)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		punches := map[string]int64{}
		for card, n := range m.Punches {
			punches[card] += n
		}
		for card, n := range pending {
			punches[card] += n
		}
		m.Punches = punches
		loc, err := a.location(ctx, tx)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		res, err := p.ComputeEarn(loyalty.EarnInput{Member: m, Amount: int64(req.Amount), Currency: req.Currency, Lines: req.Lines,
			At: d.EventTime(), Location: loc})
		if err != nil {
			return loyalty.Receipt{}, err
		}
		pts := res.Points
		// Earn caps: online, exactly (the hub's count at every store, plus what this store made
		// since); offline, with this store's own awards (the hub flags a breach made possible by
		// other stores' awards as an earn_cap conflict).
		var cerr error
		pts = p.CapEarn(loyalty.RulePurchase, pts, func(period string) int64 {
			n, err := a.earned(ctx, tx, st, member, period, d.EventTime())
			if err != nil {
				cerr = err
			}
			return n
		})
		if cerr != nil {
			return loyalty.Receipt{}, cerr
		}
		d.Points, d.Amount, d.Currency, d.RuleVersion = pts, int64(req.Amount), req.Currency, p.Version
		d.Lines, d.Tier, d.Country, d.TimeZone = req.Lines, m.Tier, m.Country, loc.String()
		d.Punches, d.PunchRewards = res.Punches, res.PunchRewards
		rc, err := a.write(ctx, tx, &p, offline, d)
		rc.Earn = &res
		rc.PunchRewards = p.PunchRewards(res.PunchRewards)
		rc.CheckedBy = checkedBy(st)
		return rc, err
	})
}

// write stores deltas, with what they spend of the store's budget leases, and answers with the
// balance after them.
func (a *Agent) write(ctx context.Context, tx Tx, p *loyalty.Program, offline bool, ds ...loyalty.Delta) (loyalty.Receipt, error) {
	r := loyalty.Receipt{Deltas: []string{}}
	if err := resplit(ctx, tx); err != nil { // what the hub rejected since counts no more
		return r, err
	}
	for _, d := range ds {
		use, err := a.spend(ctx, tx, p, &d, offline)
		if err != nil {
			return r, err
		}
		if err := d.Validate(); err != nil {
			return r, err
		}
		if err := tx.InsertDelta(ctx, d, a.Now(), use, offline); err != nil {
			return r, err
		}
		// Seen here: not evicted for a while. The delta carries the clock offset keptAt would
		// read again.
		if err := tx.Touch(ctx, d.Member, laterClock(a.Now(), d.ClockOffsetMS)); err != nil {
			return r, err
		}
		r.Member, r.Points = d.Member, r.Points+d.Points
		r.Deltas = append(r.Deltas, d.ID)
	}
	_, _, bal, _, err := a.balance(ctx, tx, r.Member)
	r.Balance = bal
	return r, err
}

// inPeriod counts what count finds in the period containing t, [start, end) of
// loyalty.PeriodBounds, as the hub does: a delta this store made at a later time (its clock was
// ahead then, and has been set back) belongs to a later period and does not count. count finds
// everything from a time on; what it finds from the period's end on is taken off.
func inPeriod(period string, t time.Time, count func(since time.Time) (int64, error)) (int64, error) {
	start, end := loyalty.PeriodBounds(period, t)
	n, err := count(start)
	if err != nil || end.IsZero() {
		return n, err
	}
	later, err := count(end)
	return n - later, err
}

// errNeedQuota marks an EBUDGET refusal that a lease refill from the hub could lift.
var errNeedQuota = errors.New("need quota")

type quotaError struct{ err *loyalty.Error }

func (e quotaError) Error() string   { return e.err.Error() }
func (e quotaError) Unwrap() []error { return []error{e.err, errNeedQuota} }

// spend checks that d may happen at this store now (kill switch, offline policy) and picks the
// leases it spends for each budget it touches. The store spends only quota the hub leased to it
// and only until the lease's TTL, so budgets hold while stores are offline.
func (a *Agent) spend(ctx context.Context, tx Tx, p *loyalty.Program, d *loyalty.Delta, offline bool) ([]LeaseUse, error) {
	var orig *loyalty.Delta
	if d.Kind == loyalty.KindReverse {
		ds, err := tx.OrderDeltas(ctx, d.OrderID)
		if err != nil {
			return nil, err
		}
		for i := range ds {
			if ds[i].ID == d.Reverses {
				orig = &ds[i]
			}
		}
	}
	if d.Kind == loyalty.KindRedeem && d.Voucher == "" { // a voucher was paid for; its reward may have left the catalogue
		r, err := p.Reward(d.Reward)
		if err != nil {
			return nil, err
		}
		if r.Disabled {
			return nil, loyalty.Errorf(loyalty.EBUDGET, "%s is switched off by the loyalty team", r.Name)
		}
		if offline && r.Offline == loyalty.OfflineDeny {
			return nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "%s can only be redeemed while the store is online", r.Name)
		}
		if err := a.offlineValid(ctx, tx, p, r); err != nil {
			return nil, err
		}
		if offline && r.Offline == loyalty.OfflineLimit {
			n, err := inPeriod(loyalty.PeriodDay, a.Now(), func(since time.Time) (int64, error) {
				return tx.OfflineRedemptions(ctx, d.Member, r.ID, since)
			})
			if err != nil {
				return nil, err
			}
			if n >= r.OfflineMax {
				return nil, loyalty.Errorf(loyalty.EBUDGET, "while offline a member may redeem %s %d time(s) a day at this store", r.Name, r.OfflineMax)
			}
		}
	}
	leases, err := tx.Leases(ctx)
	if err != nil {
		return nil, err
	}
	var use []LeaseUse
	if d.Kind == loyalty.KindReverse {
		// A reversal gives back what the original spent, to the leases it spent from that the
		// store still holds, as the hub does: whatever the program says by now. A partial refund
		// of a sale gives back its share, a full reversal what the parts left
		// (loyalty.RefundShare), exactly as the hub counts it: a store that counted more spent
		// than the hub held a lease the hub took for roomy and never refilled.
		if orig == nil {
			return nil, nil
		}
		spent, err := tx.LeaseUses(ctx, orig.ID)
		if err != nil {
			return nil, err
		}
		entry, err := orderEntry(ctx, tx, *orig)
		if err != nil {
			return nil, err
		}
		entry.Reversals = slices.DeleteFunc(entry.Reversals, func(r loyalty.Delta) bool { return r.ID == d.ID })
		for _, u := range spent {
			// Of a redemption's, the order's other redemptions take over what the order spared
			// them (carryOver), whether or not the store still holds the lease, as at the hub.
			back, err := carryOver(ctx, tx, *orig, u, loyalty.RefundShare(entry, *d, u.Order().Standing()))
			if err != nil {
				return nil, err
			}
			if back > 0 && slices.ContainsFunc(leases, func(l Lease) bool { return l.ID == u.Lease }) {
				use = append(use, LeaseUse{Lease: u.Lease, Budget: u.Budget, Amount: -back})
			}
		}
		if len(use) > 0 {
			d.Leases = map[string]string{}
			for _, u := range use {
				d.Leases[u.Budget] = u.Lease
			}
		}
		return use, nil
	}
	// Each order counted once, within the quota the hub told this store it may spend (budget.go).
	if use, err = a.budgetUses(ctx, tx, p, d, leases); err != nil {
		return nil, err
	}
	if len(use) > 0 {
		d.Leases = map[string]string{}
		for _, u := range use {
			d.Leases[u.Budget] = u.Lease
		}
	}
	return use, nil
}

// offlineValid refuses a reward once the store has not heard from the hub for the reward's
// offline validity: a kill switch published meanwhile reaches the store within that time, budget
// or not (docs/BUDGETS.md, "Offline validity"). Online, a pull lifts it (errNeedQuota).
func (a *Agent) offlineValid(ctx context.Context, tx Tx, p *loyalty.Program, r loyalty.Reward) error {
	off, err := tx.OfflineFor(ctx)
	if err != nil {
		return err
	}
	if v := p.OfflineValidityOf(r); off >= v {
		return quotaError{loyalty.Errorf(loyalty.EBUDGET,
			"%s can't be redeemed while this store has been offline for more than %s; it will work again when the store is back online", r.Name, loyalty.Duration(v))}
	}
	return nil
}

// Redeem spends points on a reward, or uses a hub-issued voucher. Offline, the balance it checks
// is the last synced balance plus this store's pending deltas, and it never goes below zero.
func (a *Agent) Redeem(ctx context.Context, req loyalty.RedeemRequest) (loyalty.Receipt, error) {
	if req.Voucher != "" {
		return a.useVoucher(ctx, req)
	}
	if req.RewardID == "" {
		return loyalty.Receipt{}, loyalty.Errorf(loyalty.EINVALID, "reward_id or voucher is required")
	}
	who, err := a.identify(ctx, req.QR, req.MemberID, qr.TypeMember)
	if err != nil {
		return loyalty.Receipt{}, err
	}
	member := who.member
	st, refused := a.lookup(ctx, member, "", who.token) // online: the hub's balance and per-member limits count
	req.QR, req.MemberID = "", member
	// Each reward on an order is its own idempotent call: an order may carry stackable rewards.
	return a.onceFor(ctx, "redeem", req.OrderID, req.RewardID, req, func(tx Tx, offline bool) (loyalty.Receipt, error) {
		if err := who.current(ctx, tx); err != nil {
			return loyalty.Receipt{}, err
		}
		if refused != nil { // a new request only: a retry of one approved before gets its first answer
			return loyalty.Receipt{}, loyalty.Errorf(loyalty.EUNAUTHORIZED, "the hub does not count member %s as this store's, so it would refuse "+
				"this redemption of their points; scan the member's QR code, then try again", member)
		}
		p, err := tx.Program(ctx)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		r, err := p.Reward(req.RewardID)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		if err := a.stacks(ctx, tx, &p, req.OrderID, r.ID); err != nil {
			return loyalty.Receipt{}, err
		}
		m, _, bal, _, err := a.balance(ctx, tx, member)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		if bal < r.PointsCost {
			return loyalty.Receipt{}, loyalty.Errorf(loyalty.EINSUFFICIENT, "member has %d points; %s costs %d", bal, r.Name, r.PointsCost)
		}
		if err := r.Redeemable(m.Tier, int64(req.OrderAmount)); err != nil {
			return loyalty.Receipt{}, err
		}
		if err := p.CheckOrderAmount(r.ID, int64(req.OrderAmount)); err != nil {
			return loyalty.Receipt{}, err
		}
		d, err := a.newDelta(ctx, tx, member, loyalty.KindRedeem, req.OrderID, req.Terminal)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		if err := a.withinLimits(ctx, tx, &p, st, m, r, d.EventTime()); err != nil {
			return loyalty.Receipt{}, err
		}
		d.Points, d.Reward, d.RuleVersion = -r.PointsCost, r.ID, p.Version
		d.Amount = int64(req.OrderAmount)
		d.Presence = who.token // as with a sale (Earn)
		rc, err := a.write(ctx, tx, &p, offline, d)
		rc.Reward = &r
		rc.CheckedBy = checkedBy(st)
		return rc, err
	})
}

func (a *Agent) useVoucher(ctx context.Context, req loyalty.RedeemRequest) (loyalty.Receipt, error) {
	who, err := a.identify(ctx, req.Voucher, "", qr.TypeVoucher)
	if err != nil {
		return loyalty.Receipt{}, err
	}
	c := who.claims
	req.Voucher = c.Voucher
	st, _ := a.lookup(ctx, c.Member, c.Voucher, who.token) // online: whether it was used at another store or online (a voucher needs no scope)
	return a.onceFor(ctx, "redeem", req.OrderID, c.Voucher, req, func(tx Tx, offline bool) (loyalty.Receipt, error) {
		if err := who.current(ctx, tx); err != nil {
			return loyalty.Receipt{}, err
		}
		if order, err := tx.VoucherUse(ctx, c.Voucher); err != nil {
			return loyalty.Receipt{}, err
		} else if order != "" {
			return loyalty.Receipt{}, loyalty.Errorf(loyalty.ECONFLICT, "voucher already used at this store (order %s)", order)
		}
		if err := voucherUsable(st); err != nil {
			return loyalty.Receipt{}, err
		}
		p, err := tx.Program(ctx)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		// min_order holds for the order the voucher is used on (its purchase had none).
		if r, err := p.Reward(c.Reward); err == nil {
			if err := r.FitsOrder(int64(req.OrderAmount)); err != nil {
				return loyalty.Receipt{}, err
			}
		}
		// A voucher's reward stacks as a redemption of it would, whichever was scanned first.
		if err := a.stacks(ctx, tx, &p, req.OrderID, c.Reward); err != nil {
			return loyalty.Receipt{}, err
		}
		d, err := a.newDelta(ctx, tx, c.Member, loyalty.KindRedeem, req.OrderID, req.Terminal)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		d.Voucher, d.Reward, d.RuleVersion = c.Voucher, c.Reward, p.Version
		d.Amount = int64(req.OrderAmount)
		rc, err := a.write(ctx, tx, &p, offline, d)
		if r, rerr := p.Reward(c.Reward); rerr == nil {
			rc.Reward = &r
		}
		rc.CheckedBy = checkedBy(st)
		return rc, err
	})
}

// orderEntries reads an order's deltas at this store, each with whether it was reversed since.
func orderEntries(ctx context.Context, tx Tx, orderID string) ([]loyalty.OrderEntry, error) {
	ds, err := tx.OrderDeltas(ctx, orderID)
	if err != nil {
		return nil, err
	}
	out := make([]loyalty.OrderEntry, len(ds))
	for i, d := range ds {
		if out[i], err = orderEntry(ctx, tx, d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// orderEntry returns d with its reversals recorded at this store.
func orderEntry(ctx context.Context, tx Tx, d loyalty.Delta) (loyalty.OrderEntry, error) {
	rs, err := tx.Reversals(ctx, d.ID)
	return loyalty.OrderEntry{Delta: d, Reversals: rs}, err
}

// stacks checks the program's stacking rule against the rewards standing on an order at this store.
func (a *Agent) stacks(ctx context.Context, tx Tx, p *loyalty.Program, orderID, reward string) error {
	es, err := orderEntries(ctx, tx, orderID)
	if err != nil {
		return err
	}
	return p.Stacks(reward, loyalty.StandingRewards(es))
}

// Reverse undoes everything an order earned and redeemed at this store (a void or a full
// refund), or what is left of it after partial refunds; with a refund id, it refunds part of the
// order's sale instead (refundPart). Reversing an earn can take a balance below zero; the hub
// flags that for review.
func (a *Agent) Reverse(ctx context.Context, req loyalty.ReverseRequest) (loyalty.Receipt, error) {
	if err := req.Validate(); err != nil {
		return loyalty.Receipt{}, err
	}
	if req.RefundID != "" {
		return a.refundPart(ctx, req)
	}
	return a.once(ctx, "reverse", req.OrderID, req, func(tx Tx, offline bool) (loyalty.Receipt, error) {
		es, err := orderEntries(ctx, tx, req.OrderID)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		var rev []loyalty.Delta
		for _, e := range loyalty.ToReverse(es) {
			r, err := a.newDelta(ctx, tx, e.Member, loyalty.KindReverse, req.OrderID, req.Terminal)
			if err != nil {
				return loyalty.Receipt{}, err
			}
			r.Undo(e)
			rev = append(rev, r)
		}
		if len(rev) == 0 {
			return loyalty.Receipt{}, loyalty.Errorf(loyalty.ENOTFOUND, "order %s has no loyalty activity at this store to reverse "+
				"(the store keeps an order for outbox.retain_acked after its last change)", req.OrderID)
		}
		p, err := tx.Program(ctx)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		return a.write(ctx, tx, &p, offline, rev...)
	})
}

// refundPart takes back a partial refund's share of the order's sale at this store: points in
// proportion to the amount given back, and the punch-card units of the lines given back.
// Rewards redeemed on the order stand.
func (a *Agent) refundPart(ctx context.Context, req loyalty.ReverseRequest) (loyalty.Receipt, error) {
	return a.onceFor(ctx, "reverse", req.OrderID, req.RefundID, req, func(tx Tx, offline bool) (loyalty.Receipt, error) {
		es, err := orderEntries(ctx, tx, req.OrderID)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		i := slices.IndexFunc(es, func(e loyalty.OrderEntry) bool { return e.Kind == loyalty.KindEarn })
		if i < 0 && len(es) > 0 {
			return loyalty.Receipt{}, loyalty.Errorf(loyalty.EINVALID, "order %s has only rewards at this store, no sale with points: "+
				"a part of it cannot be refunded; refund it in full (without an amount) to give the rewards' points back", req.OrderID)
		} else if i < 0 {
			return loyalty.Receipt{}, loyalty.Errorf(loyalty.ENOTFOUND, "order %s has no sale with points at this store to refund "+
				"(the store keeps an order for outbox.retain_acked after its last change)", req.OrderID)
		}
		p, err := tx.Program(ctx)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		r, err := a.newDelta(ctx, tx, es[i].Member, loyalty.KindReverse, req.OrderID, req.Terminal)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		if err := r.RefundPart(es[i], loyalty.Refund{Amount: int64(req.Amount), Lines: req.Lines}, p.PunchCardsOf()); err != nil {
			return loyalty.Receipt{}, err
		}
		return a.write(ctx, tx, &p, offline, r)
	})
}

// Status is the body of GET /v1/status.
type Status struct {
	Store string `json:"store"`
	lsync.Status
	Stats
	MaintenanceStats
	Leases []Lease `json:"leases"` // budget quota this store may spend, and until when
}

// Status reports whether the store is online, its outbox, last sync and clock offset, and its
// leases as they are now: an active lease whose time at this store is up shows as expired.
func (a *Agent) Status(ctx context.Context) (Status, error) {
	s := Status{Store: a.StoreID, Status: a.Sync.Status(), MaintenanceStats: a.MaintenanceStats()}
	err := a.Store.View(ctx, func(tx Tx) error {
		var err error
		if s.Stats, err = tx.Stats(ctx); err != nil {
			return err
		}
		s.Leases, err = tx.Leases(ctx)
		if s.Leases == nil {
			s.Leases = []Lease{}
		}
		now := a.Now()
		for i, l := range s.Leases {
			if l.State == LeaseActive && !l.Usable(now) {
				s.Leases[i].State = LeaseExpired
			}
		}
		return err
	})
	return s, err
}

// Rejected lists deltas the hub refused, for review, without the member codes they carried to
// the hub (loyalty.Delta.Presence): a code names its member at any store, so it stays in the
// outbox.
func (a *Agent) Rejected(ctx context.Context, limit int) ([]RejectedDelta, error) {
	var out []RejectedDelta
	err := a.Store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Rejected(ctx, limit)
		return err
	})
	for i := range out {
		out[i].Delta.Presence = ""
	}
	return out, err
}
