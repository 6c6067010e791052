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
		use = append(use, LeaseUse{Lease: leases[i].ID, Budget: b.ID, Amount: charge, Spared: x - charge})
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
			if err := tx.CarryLeaseUse(ctx, ids[i], u.Budget, x); err != nil {
				return 0, err
			}
		}
	}
	return back, nil
}
