// Applying deltas: the checks every delta passes (identity, claims, recomputation), conflicts,
// balances, and the member state a batch stamps once.

package hub

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// applier applies deltas within one transaction and tracks the balances they change, so a batch
// stamps each member once with a new version.
type applier struct {
	*Hub
	tx         Tx
	balances   map[string]int64 // members read in this transaction, with their running balance
	order      []string         // members whose balance changed, in the order they first changed
	changed    map[string]bool
	reported   []string                    // members of duplicates, whose balance the ack reports as it is
	members    map[string]loyalty.Member   // as read at the start of the transaction
	punches    map[string]map[string]int64 // running punch card counts
	programs   map[int64]*loyalty.Program  // rule versions are immutable once published
	subscribed map[[2]string]bool
	stores     map[string]StoreInfo
	cur        *loyalty.Program // the newest program, for budgets and limits
	epochInfo  *EpochInfo       // read once per transaction: it changes only with a restore
}

func (h *Hub) newApplier(tx Tx) *applier {
	return &applier{Hub: h, tx: tx, balances: make(map[string]int64), changed: make(map[string]bool), programs: make(map[int64]*loyalty.Program),
		members: make(map[string]loyalty.Member), punches: make(map[string]map[string]int64),
		subscribed: make(map[[2]string]bool), stores: make(map[string]StoreInfo)}
}

// program returns rule version v, read once per transaction.
func (a *applier) program(ctx context.Context, v int64) (*loyalty.Program, error) {
	if p, ok := a.programs[v]; ok {
		return p, nil
	}
	p, err := a.tx.ProgramVersion(ctx, v)
	if err != nil {
		return nil, err
	}
	a.programs[v] = &p
	return &p, nil
}

// apply applies one delta pushed by store. Rule violations become a rejected Result, recorded
// for review; only storage failures return an error.
func (a *applier) apply(ctx context.Context, store string, d loyalty.Delta) (lsync.Result, error) {
	d.Normalize()
	hash := d.Hash()
	// Who may push this delta is settled before deduplication: a store that re-pushes another
	// store's delta id learns nothing about it, not even that it exists.
	if err := a.identity(store, &d); err != nil {
		return a.reject(ctx, store, d, err)
	}
	if e, err := a.tx.Delta(ctx, d.ID); err == nil {
		if e.Hash == hash {
			a.report(d.Member)
			return lsync.Result{DeltaID: d.ID, Status: lsync.StatusDuplicate, Seq: e.Seq}, nil
		}
		a.Logger.Warn("delta id reused for different content", slog.String("store", store), slog.String("delta", d.ID))
		return a.reject(ctx, store, d, loyalty.Errorf(loyalty.EDUPLICATE,
			"delta id %s was already used for a different change; this one was not applied", d.ID))
	} else if loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		return lsync.Result{}, err
	}
	if err := a.check(ctx, store, &d); loyalty.ErrorCode(err) == loyalty.EINTERNAL {
		return lsync.Result{}, err
	} else if err != nil {
		return a.reject(ctx, store, d, err)
	}
	bal, err := a.balance(ctx, d.Member)
	if err != nil {
		return lsync.Result{}, err
	}
	seq, inserted, err := a.tx.InsertDelta(ctx, d, hash, a.Now())
	if err != nil {
		return lsync.Result{}, err
	} else if !inserted {
		return lsync.Result{DeltaID: d.ID, Status: lsync.StatusDuplicate, Seq: seq}, nil
	}
	bal += d.Points
	a.balances[d.Member] = bal
	if len(d.Punches) > 0 {
		ps := a.punches[d.Member]
		for card, n := range d.Punches {
			ps[card] += n
		}
	}
	if !a.changed[d.Member] {
		a.changed[d.Member] = true
		a.order = append(a.order, d.Member) // stamped with a new version in finish
	}
	if key := [2]string{store, d.Member}; store != loyalty.OnlineStore && !a.subscribed[key] {
		if err := a.tx.Subscribe(ctx, store, d.Member); err != nil {
			return lsync.Result{}, err
		}
		a.subscribed[key] = true
	}
	if err := a.conflicts(ctx, store, d, bal); err != nil {
		return lsync.Result{}, err
	}
	if err := a.account(ctx, store, d); err != nil {
		return lsync.Result{}, err
	}
	if err := a.referral(ctx, d); err != nil {
		return lsync.Result{}, err
	}
	return lsync.Result{DeltaID: d.ID, Status: lsync.StatusApplied, Seq: seq}, nil
}

// identity checks a delta's shape and that store may push it at all. It returns EINVALID or
// EUNAUTHORIZED.
func (a *applier) identity(store string, d *loyalty.Delta) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Store != store {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "store %s cannot push changes as another store", store)
	}
	if (d.Kind == loyalty.KindAdjust || d.Kind == loyalty.KindTier || d.Kind == loyalty.KindExpire) && store != loyalty.HubStore {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "only the hub makes %s deltas; store %s pushed one", d.Kind, store)
	}
	if d.Kind == loyalty.KindEarn && d.Rule != "" && store != loyalty.OnlineStore && store != loyalty.HubStore {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "stores award points for sales; action %q goes through the hub's API", d.Rule)
	}
	return nil
}

// check validates a delta against the hub's state. It returns EINVALID, ENOTFOUND,
// EUNAUTHORIZED, EBUDGET or ECONFLICT for deltas that must not be applied.
func (a *applier) check(ctx context.Context, store string, d *loyalty.Delta) error {
	bal, err := a.balance(ctx, d.Member)
	if err != nil {
		return err
	}
	if d.Points > 0 && bal > loyalty.MaxBalance-d.Points {
		return loyalty.Errorf(loyalty.EINVALID, "this change would take the member's balance over %d points", int64(loyalty.MaxBalance))
	}
	if len(d.Punches) > 0 && d.Kind != loyalty.KindEarn && d.Kind != loyalty.KindReverse {
		return loyalty.Errorf(loyalty.EINVALID, "only a sale or its refund changes punch cards")
	}
	var claims *verified
	if store != loyalty.OnlineStore && store != loyalty.HubStore {
		if claims, err = a.checkClaims(ctx, store, d); err != nil {
			return err
		}
	}
	switch d.Kind {
	case loyalty.KindEarn:
		p, err := a.program(ctx, d.RuleVersion)
		if err != nil {
			return err
		}
		if d.Rule == loyalty.RuleReferral {
			if store != loyalty.HubStore || p.Referral == nil || (d.Points != p.Referral.Give && d.Points != p.Referral.Get) {
				return loyalty.Errorf(loyalty.EUNAUTHORIZED, "only the hub awards referral bonuses, as the program sets them")
			}
			return nil
		}
		if d.Rule != "" {
			act, err := p.Action(d.Rule)
			if err != nil {
				return err
			}
			if d.Points > act.Points {
				return loyalty.Errorf(loyalty.EINVALID, "action %s gives %d points, not %d", act.ID, act.Points, d.Points)
			}
			return nil
		}
		loc := time.UTC
		if claims != nil {
			loc = claims.loc
		}
		res, err := recompute(p, d, loc)
		if err != nil {
			return err
		}
		if !maps.Equal(res.Punches, d.Punches) {
			return loyalty.Errorf(loyalty.EINVALID, "the order's lines punch %v, the delta says %v", res.Punches, d.Punches)
		}
		want := res.Points
		// Under an earn cap a store may award less: it caps with what it can see of the member.
		if p.HasEarnCap(loyalty.RulePurchase) && d.Points <= want {
			return nil
		}
		if want != d.Points {
			return loyalty.Errorf(loyalty.EINVALID, "this sale of %d minor units of %s earns %d points under rule version %d, not %d",
				d.Amount, d.Currency, want, d.RuleVersion, d.Points)
		}
	case loyalty.KindRedeem:
		if d.Voucher != "" {
			v, err := a.tx.Voucher(ctx, d.Voucher)
			if err != nil {
				return err
			}
			switch {
			case v.Member != d.Member:
				return loyalty.Errorf(loyalty.EINVALID, "voucher %s belongs to another member", v.ID)
			case d.Reward != "" && d.Reward != v.Reward:
				return loyalty.Errorf(loyalty.EINVALID, "voucher %s is for %s, not %s", v.ID, v.Reward, d.Reward)
			case store != loyalty.OnlineStore && d.EventTime().After(v.ExpiresAt.Add(a.Claims.MaxFuture)):
				return loyalty.Errorf(loyalty.EINVALID, "voucher %s had expired when it was used", v.ID)
			}
			if d.Points != 0 {
				return loyalty.Errorf(loyalty.EINVALID, "a voucher was paid for when issued; its use costs 0 points, not %d", -d.Points)
			}
			return nil
		}
		p, err := a.program(ctx, d.RuleVersion)
		if err != nil {
			return err
		}
		r, err := p.Reward(d.Reward)
		if err != nil {
			return err
		}
		if d.Points != -r.PointsCost {
			return loyalty.Errorf(loyalty.EINVALID, "reward %s costs %d points under rule version %d, not %d",
				r.ID, r.PointsCost, d.RuleVersion, -d.Points)
		}
		if err := p.CheckOrderAmount(r.ID, d.Amount); err != nil {
			return err
		}
		if r.MinOrder > 0 && d.Amount < r.MinOrder {
			return loyalty.Errorf(loyalty.EINVALID, "%s needs an order of at least %d minor units", r.Name, r.MinOrder)
		}
	case loyalty.KindReverse:
		orig, err := a.tx.Delta(ctx, d.Reverses)
		if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			return loyalty.Errorf(loyalty.ENOTFOUND, "this refund reverses a change the hub never applied")
		} else if err != nil {
			return err
		}
		switch {
		case orig.Store != store:
			return loyalty.Errorf(loyalty.EUNAUTHORIZED, "a store reverses only its own changes; refunds of other stores and channels go through the hub")
		case orig.Member != d.Member:
			return loyalty.Errorf(loyalty.EINVALID, "this refund reverses a change of another member")
		case orig.Kind != loyalty.KindEarn && orig.Kind != loyalty.KindRedeem:
			return loyalty.Errorf(loyalty.EINVALID, "only earn and redeem deltas can be reversed, not %s", orig.Kind)
		}
		e, err := a.entry(ctx, orig.Delta)
		if err != nil {
			return err
		}
		// The same order core that made the refund at the store judges it: a full reversal
		// undoes exactly what is left, a partial one takes exactly its share.
		return loyalty.CheckRefund(e, *d)
	}
	return nil
}

// recompute computes a store's earn again from the delta's lines, the member's tier and
// country (verified by checkClaims), the store's registered time zone loc and the event time.
// An offline store's earn under the program version it had is accepted as long as that version
// gives the same.
func recompute(p *loyalty.Program, d *loyalty.Delta, loc *time.Location) (loyalty.EarnResult, error) {
	if d.Tier != "" && (p.Tiers == nil || !slices.ContainsFunc(p.Tiers.Tiers, func(t loyalty.Tier) bool { return t.ID == d.Tier })) {
		return loyalty.EarnResult{}, loyalty.Errorf(loyalty.EINVALID, "no tier %q in rule version %d", d.Tier, p.Version)
	}
	return p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: d.Tier, Country: d.Country}, Amount: d.Amount,
		Currency: d.Currency, Lines: d.Lines, At: d.EventTime(), Location: loc})
}

// conflicts records what an applied delta broke. Offline events physically happened, so they
// are applied; the conflict is flagged for review instead.
func (a *applier) conflicts(ctx context.Context, store string, d loyalty.Delta, balance int64) error {
	if d.Points < 0 && balance < 0 {
		c := Conflict{Kind: ConflictOverdraft, Member: d.Member, Store: store, Deltas: []string{d.ID},
			Amount: min(-balance, -d.Points), Detail: fmt.Sprintf("%s took the balance to %d", d.Kind, balance), At: a.Now(), Flagged: true}
		if err := a.tx.InsertConflict(ctx, c); err != nil {
			return err
		}
	}
	if d.Kind == loyalty.KindRedeem && d.Voucher != "" {
		if v, err := a.tx.Voucher(ctx, d.Voucher); err != nil {
			return err
		} else if !v.VoidedAt.IsZero() {
			c := Conflict{Kind: ConflictVoucherVoid, Member: d.Member, Store: store, Deltas: []string{d.ID, v.DeltaID},
				Amount: 1, Detail: fmt.Sprintf("voucher %s was used after its purchase was refunded", d.Voucher), At: a.Now(), Flagged: true}
			if err := a.tx.InsertConflict(ctx, c); err != nil {
				return err
			}
		}
		uses, err := a.tx.VoucherUses(ctx, d.Voucher)
		if err != nil {
			return err
		}
		if len(uses) > 1 {
			c := Conflict{Kind: ConflictVoucherReuse, Member: d.Member, Store: store, Deltas: uses,
				Amount: int64(len(uses) - 1), Detail: fmt.Sprintf("voucher %s used %d times", d.Voucher, len(uses)), At: a.Now(), Flagged: true}
			if err := a.tx.InsertConflict(ctx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *applier) reject(ctx context.Context, store string, d loyalty.Delta, err error) (lsync.Result, error) {
	e := loyalty.AsError(err)
	if ierr := a.tx.InsertRejection(ctx, Rejection{Delta: d, Store: store, Code: e.Code, Message: e.Message, At: a.Now()}); ierr != nil {
		return lsync.Result{}, ierr
	}
	return lsync.Result{DeltaID: d.ID, Status: lsync.StatusRejected, Code: e.Code, Message: e.Message}, nil
}

func (a *applier) balance(ctx context.Context, member string) (int64, error) {
	if b, ok := a.balances[member]; ok {
		return b, nil
	}
	m, err := a.tx.Member(ctx, member)
	if err != nil {
		return 0, err
	}
	a.balances[member] = m.Balance
	a.members[member] = m
	a.punches[member] = maps.Clone(m.Punches)
	if a.punches[member] == nil {
		a.punches[member] = map[string]int64{}
	}
	return m.Balance, nil
}

// report asks finish to include a member's balance in the ack although this batch did not change
// it: a duplicate's effect is in the balance, and the agent must see that balance when the delta
// leaves its outbox, or it would show the member short until its next pull.
func (a *applier) report(member string) {
	if !slices.Contains(a.reported, member) {
		a.reported = append(a.reported, member)
	}
}

// finish writes every changed balance with a new change version, and returns those and the
// balances of reported members.
func (a *applier) finish(ctx context.Context) ([]lsync.Balance, error) {
	out := make([]lsync.Balance, 0, len(a.order))
	for _, id := range a.reported {
		if a.changed[id] {
			continue
		}
		m, err := a.tx.Member(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, lsync.Balance{Member: id, Balance: m.Balance, Version: m.Version})
	}
	for _, m := range a.order {
		if err := a.memberState(ctx, m); err != nil {
			return nil, err
		}
		v, err := a.tx.NextVersion(ctx)
		if err != nil {
			return nil, err
		}
		if err := a.tx.SetBalance(ctx, m, a.balances[m], v); err != nil {
			return nil, err
		}
		out = append(out, lsync.Balance{Member: m, Balance: a.balances[m], Version: v})
	}
	return out, nil
}

// memberState writes a changed member's punch counts and tier. A tier change is a ledgered
// delta of kind tier, made by the hub.
func (a *applier) memberState(ctx context.Context, member string) error {
	p, err := a.current(ctx)
	if err != nil {
		return err
	}
	m := a.members[member]
	tier := m.Tier
	if p.Tiers != nil && len(p.Tiers.Tiers) > 0 {
		from, to := p.Tiers.WindowBounds(a.Now()) // the window the member's tier is for now
		q, err := a.tx.Qualifying(ctx, member, p.Tiers.Basis, from, to)
		if err != nil {
			return err
		}
		tier = p.Tiers.TierFor(q).ID
	}
	// Placing a member in the entry tier for the first time is not a change worth a ledger entry.
	entry := m.Tier == "" && p.Tiers != nil && len(p.Tiers.Tiers) > 0 && tier == p.Tiers.Tiers[0].ID
	if tier != m.Tier && !entry {
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: member, Kind: loyalty.KindTier,
			Tier: tier, RuleVersion: p.Version, OccurredAt: a.Now()}
		d.Normalize()
		if _, _, err := a.tx.InsertDelta(ctx, d, d.Hash(), a.Now()); err != nil {
			return err
		}
		a.TierChanges++
	}
	if tier != m.Tier || !maps.Equal(a.punches[member], m.Punches) {
		return a.tx.SetMemberState(ctx, member, tier, a.punches[member])
	}
	return nil
}
