package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/loyalty-edge-sync/loyalty"
)

// budgetUses picks, for every budget a new earn or redemption d spends under program p, the
// lease it spends from and how much: what d consumes, counting each order once
// (loyalty.Budget.OrderConsumption, as the hub counts it). The store spends only quota the hub
// told it it may spend (Lease.Granted, lowered at once when the hub reclaims idle quota) and only
// until the lease's deadline, so budgets hold while stores are offline.
func (a *Agent) budgetUses(ctx context.Context, tx Tx, p *loyalty.Program, d *loyalty.Delta, leases []Lease) ([]LeaseUse, error) {
	var use []LeaseUse
	for _, b := range p.BudgetsFor(d) {
		x := b.Consumption(p, d, nil)
		if x <= 0 {
			continue
		}
		i := slices.IndexFunc(leases, func(l Lease) bool { return l.Budget == b.ID && l.Usable(a.Now()) })
		if i < 0 {
			return nil, quotaError{loyalty.Errorf(loyalty.EBUDGET,
				"this store holds no quota of budget %s right now (offline too long, or the budget is used up); try again when online", b.ID)}
		}
		charge, err := orderConsumption(ctx, tx, p, &b, d, leases[i].ID)
		if err != nil {
			return nil, err
		}
		spent, err := tx.LeaseSpent(ctx, leases[i].ID)
		if err != nil {
			return nil, err
		}
		// The lease must have room for the whole of x even when the order counted part of it
		// already: the hub checks each delta against the lease as if it were alone on its order
		// (docs/PROTOCOL.md, "What the hub verifies"), and would otherwise reject it.
		if spent+x > leases[i].Granted {
			more := ""
			if x > 1 {
				more = fmt.Sprintf(", and this needs %d", x)
			}
			return nil, quotaError{loyalty.Errorf(loyalty.EBUDGET,
				"this store's share of budget %s is used up (%d of %d%s); the hub refills it while the store is online", b.ID, spent, leases[i].Granted, more)}
		}
		// A use of 0 (the order counted already) still names the lease, as the hub requires.
		use = append(use, LeaseUse{Lease: leases[i].ID, Budget: b.ID, Amount: charge, Spared: x - charge, Rule: b.OrderRuleOf(p, d)})
	}
	return use, nil
}

// orderConsumption is what d uses of budget b, from lease, when the order's other redemptions at
// this store that still stand (neither reversed nor rejected by the hub) already spent some of
// that lease.
func orderConsumption(ctx context.Context, tx Tx, p *loyalty.Program, b *loyalty.Budget, d *loyalty.Delta, lease string) (int64, error) {
	x := b.Consumption(p, d, nil)
	if d.Kind != loyalty.KindRedeem || d.OrderID == "" || (b.Metric != loyalty.MetricOrderValue && b.Metric != loyalty.MetricDiscount) {
		return x, nil
	}
	_, us, err := siblingUses(ctx, tx, d, b.ID, lease)
	var counted int64
	for _, u := range us {
		counted += u.Order().Standing()
	}
	return b.OrderConsumption(p, d, counted), err
}

// siblingUses returns the uses of budget, from lease, by the other redemptions of d's order at
// this store that still stand and share it (loyalty.SharesOrder), by delta id, with those
// deltas' ids. An order counts once per lease, as at the hub.
func siblingUses(ctx context.Context, tx Tx, d *loyalty.Delta, budget, lease string) ([]string, []LeaseUse, error) {
	es, err := orderEntries(ctx, tx, d.OrderID)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(es, func(x, y loyalty.OrderEntry) int { return strings.Compare(x.ID, y.ID) })
	var ids []string
	var out []LeaseUse
	for _, e := range es {
		if !loyalty.SharesOrder(d, &e.Delta) || e.Reversed() {
			continue
		}
		us, err := tx.LeaseUses(ctx, e.ID)
		if err != nil {
			return nil, nil, err
		}
		for _, u := range us {
			if u.Budget == budget && u.Lease == lease {
				ids, out = append(ids, e.ID), append(out, u)
			}
		}
	}
	return ids, out, nil
}

// carryOver hands what the reversal of redemption orig frees of its use u (freed) to the other
// redemptions of its order at this store that still stand, share it (loyalty.SharesOrder) and
// spent the same lease, by delta id, as far as the order spared them (loyalty.CarryOver), exactly
// as the hub does; it returns what goes back to the lease.
func carryOver(ctx context.Context, tx Tx, orig loyalty.Delta, u LeaseUse, freed int64) (int64, error) {
	if orig.Kind != loyalty.KindRedeem || orig.OrderID == "" || freed <= 0 {
		return freed, nil
	}
	ids, us, err := siblingUses(ctx, tx, &orig, u.Budget, u.Lease)
	if err != nil {
		return 0, err
	}
	others := make([]loyalty.OrderCharge, len(us))
	for i := range us {
		others[i] = us[i].Order()
	}
	back, carried := loyalty.CarryOver(freed, others)
	for i, x := range carried {
		if x > 0 {
			us[i].Carried += x
			if err := tx.SetLeaseUse(ctx, ids[i], us[i]); err != nil {
				return 0, err
			}
		}
	}
	return back, nil
}

// resplit splits again the orders the hub rejected a delta of (Tx.OrdersToResplit), before the
// store spends its leases again: their deltas were counted with the rejected one, which the hub
// never counted, and the store's count of its leases would otherwise drift from the hub's.
func resplit(ctx context.Context, tx Tx) error {
	for {
		orders, err := tx.OrdersToResplit(ctx, 100)
		if err != nil || len(orders) == 0 {
			return err
		}
		for _, o := range orders {
			if err := resplitOrder(ctx, tx, o); err != nil {
				return err
			}
			if err := tx.OrderResplit(ctx, o); err != nil {
				return err
			}
		}
	}
}

// split is one delta of an order as resplitOrder counts it again.
type split struct {
	d        loyalty.Delta
	uses     []LeaseUse // as counted again
	reversed bool       // a redemption the replay has reached a reversal of
}

// resplitOrder counts again what the deltas of an order that the hub did not reject spend of
// their leases, in the order the store made them, as the hub counted them: each redemption
// counted with the order's redemptions standing before it (by the OrderRule and the worth alone
// it recorded when it was made), and each reversal of one carried over to the others standing
// then (CarryOver).
// Earns and their refunds do not depend on the rest of the order, and stay as they are.
func resplitOrder(ctx context.Context, tx Tx, order string) error {
	ds, err := tx.OrderDeltas(ctx, order)
	if err != nil {
		return err
	}
	leases, err := tx.Leases(ctx)
	if err != nil {
		return err
	}
	var made []*split
	var redemptions []*split
	for _, d := range ds {
		us, err := tx.LeaseUses(ctx, d.ID)
		if err != nil {
			return err
		}
		s := &split{d: d, uses: slices.Clone(us)}
		made = append(made, s)
		switch d.Kind {
		case loyalty.KindRedeem:
			for i := range s.uses {
				// From what it recorded, as it was made: its worth alone on the order and how the
				// order counted toward it (not today's program).
				u := &s.uses[i]
				x := u.Amount + u.Spared
				u.Carried = 0
				if u.Rule == loyalty.OrderAlone && u.Spared > 0 {
					// Spared, so not alone: made before uses recorded their rule (migration
					// 0012). Its rule is the program's, if the budget is still in it.
					if u.Rule, err = legacyRule(ctx, tx, &s.d, u.Budget); err != nil {
						return err
					} else if u.Rule == loyalty.OrderAlone {
						continue // as it was counted
					}
				}
				var counted int64
				for _, o := range standingSiblings(redemptions, &s.d, u.Budget, u.Lease) {
					counted += o.Order().Standing()
				}
				u.Amount = u.Rule.Charge(x, s.d.Amount, counted)
				u.Spared = x - u.Amount
			}
			redemptions = append(redemptions, s)
		case loyalty.KindReverse:
			i := slices.IndexFunc(redemptions, func(o *split) bool { return o.d.ID == d.Reverses })
			if i < 0 {
				continue // an earn's refund, or a reversal of a redemption gone from the store
			}
			orig := redemptions[i]
			orig.reversed = true
			for _, ou := range orig.uses {
				others := standingSiblings(redemptions, &orig.d, ou.Budget, ou.Lease)
				charges := make([]loyalty.OrderCharge, len(others))
				for j, o := range others {
					charges[j] = o.Order()
				}
				back, carried := loyalty.CarryOver(ou.Order().Standing(), charges)
				for j, x := range carried {
					others[j].Carried += x
				}
				if j := slices.IndexFunc(s.uses, func(u LeaseUse) bool { return u.Budget == ou.Budget }); j >= 0 {
					s.uses[j].Amount = -back
				} else if back > 0 && slices.ContainsFunc(leases, func(l Lease) bool { return l.ID == ou.Lease }) {
					s.uses = append(s.uses, LeaseUse{Lease: ou.Lease, Budget: ou.Budget, Amount: -back})
				}
			}
		}
	}
	for _, s := range made {
		before, err := tx.LeaseUses(ctx, s.d.ID)
		if err != nil {
			return err
		}
		for _, u := range s.uses {
			if !slices.Contains(before, u) {
				if err := tx.SetLeaseUse(ctx, s.d.ID, u); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// legacyRule is the OrderRule of redemption d's use of budget under the program the store has,
// for a use recorded before uses recorded theirs; OrderAlone if the budget is gone.
func legacyRule(ctx context.Context, tx Tx, d *loyalty.Delta, budget string) (loyalty.OrderRule, error) {
	p, err := tx.Program(ctx)
	if err != nil {
		return loyalty.OrderAlone, err
	}
	if i := slices.IndexFunc(p.Budgets, func(b loyalty.Budget) bool { return b.ID == budget }); i >= 0 {
		return p.Budgets[i].OrderRuleOf(&p, d), nil
	}
	return loyalty.OrderAlone, nil
}

// standingSiblings returns the uses of budget from lease by the redemptions of ss that still
// stand and share d's order (loyalty.SharesOrder), by delta id, as carryOver orders them.
func standingSiblings(ss []*split, d *loyalty.Delta, budget, lease string) []*LeaseUse {
	type use struct {
		delta string
		u     *LeaseUse
	}
	var found []use
	for _, o := range ss {
		if o.reversed || !loyalty.SharesOrder(d, &o.d) {
			continue
		}
		for i := range o.uses {
			if o.uses[i].Budget == budget && o.uses[i].Lease == lease {
				found = append(found, use{o.d.ID, &o.uses[i]})
			}
		}
	}
	slices.SortFunc(found, func(a, b use) int { return strings.Compare(a.delta, b.delta) })
	out := make([]*LeaseUse, len(found))
	for i, f := range found {
		out[i] = f.u
	}
	return out
}
