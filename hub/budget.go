package hub

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// account records what an applied delta spends of each budget, against the lease the store
// names, and the conflicts it causes. An offline event physically happened, so it is applied even
// when it breaks a limit: the break is recorded and flagged instead.
//
// A delta is charged to the budgets of the rule version it was made under (docs/BUDGETS.md,
// "What a budget counts"): a store that made it under a version without a budget could not have
// had a lease of it, so that budget does not count it. Per-period limits and caps count the
// events of the period the delta's event time falls in (loyalty.PeriodBounds), so a late delta is
// judged in the period it happened in.
func (a *applier) account(ctx context.Context, store string, d loyalty.Delta) error {
	if d.Kind == loyalty.KindReverse {
		return a.refund(ctx, d)
	}
	if d.Kind != loyalty.KindEarn && d.Kind != loyalty.KindRedeem {
		return nil // tier, expire and adjust deltas count toward no budget, limit or cap
	}
	p, err := a.current(ctx)
	if err != nil {
		return err
	}
	rules, err := a.program(ctx, d.RuleVersion)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		rules = p // check found no rule version to hold the delta to (a voucher use): the current one
	} else if err != nil {
		return err
	}
	flag := func(kind string, amount int64, detail string, args ...any) error {
		return a.recordConflict(ctx, Conflict{Kind: kind, Member: d.Member, Store: store, Deltas: []string{d.ID},
			Amount: amount, Detail: fmt.Sprintf(detail, args...), At: a.Now(), Flagged: true})
	}
	// The hub's own deltas are charged to budgets directly, without a lease: the online channel
	// checked the limit before (allow), and the hub pays a referral bonus only when its budgets
	// have room for it (referral).
	direct := store == loyalty.OnlineStore || store == loyalty.HubStore
	for _, b := range rules.BudgetsFor(&d) {
		x, err := a.consumption(ctx, store, rules, &b, &d)
		if err != nil {
			return err
		}
		spared := b.Consumption(rules, &d, nil) - max(x, 0) // what its order, counted already, spared it
		if x <= 0 {
			if spared > 0 {
				// Charged nothing, but the order's count may come to it when the redemption that
				// counted it is reversed (loyalty.CarryOver): recorded with its lease.
				charge := Charge{Delta: d.ID, Budget: b.ID, Spared: spared}
				if !direct {
					if charge.Lease, err = a.leaseOf(ctx, store, b.ID, d.Leases[b.ID]); err != nil {
						return err
					}
				}
				if err := a.tx.InsertCharge(ctx, charge); err != nil {
					return err
				}
			}
			continue
		}
		if err := a.tx.AddBudgetSpent(ctx, b.ID, x); err != nil {
			return err
		}
		charge := Charge{Delta: d.ID, Budget: b.ID, Amount: x, Spared: spared}
		if id := d.Leases[b.ID]; id != "" && !direct {
			l, err := a.tx.Lease(ctx, id)
			if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
				// checkLeases let it through: a lease lost with a restore, adopted now.
				restore, rerr := a.inRestoreWindow(ctx, d.EventTime(), &b)
				if rerr != nil {
					return rerr
				}
				if ok, rerr := a.adoptable(ctx, store, rules, &b, x); rerr != nil {
					return rerr
				} else if restore && ok {
					if l, err = a.adopt(ctx, store, id, rules, &b); err != nil {
						return err
					}
					if err := flag(ConflictRestore, x, "budget %s spent from a lease granted before the hub was restored from a backup and lost with it", b.ID); err != nil {
						return err
					}
				}
			}
			if loyalty.ErrorCode(err) == loyalty.ENOTFOUND || err == nil && (l.Store != store || l.Budget != b.ID) {
				// checkLeases rejects this: never expected.
				if err := flag(ConflictUnleased, x, "budget %s spent from lease %s, which is not this store's lease for it", b.ID, id); err != nil {
					return err
				}
			} else if err != nil {
				return err
			} else {
				l.Consumed += x
				if err := a.putLease(ctx, l, LeaseEvent{}); err != nil {
					return err
				}
				charge.Lease = id
				if err := a.recordDemand(ctx, store, b.ID, d.EventTime(), x); err != nil {
					return err
				}
				if l.Consumed > l.Granted { // only in the window after a restore (checkLeases)
					if err := flag(ConflictRestore, min(x, l.Consumed-l.Granted), "budget %s: a lease spent %d of %d; refills granted before the hub was restored from a backup were lost with it",
						b.ID, l.Consumed, l.Granted); err != nil {
						return err
					}
				}
			}
		} else if !direct {
			// checkLeases rejects a store's spend of a budget of its rule version without a lease:
			// never expected.
			if err := flag(ConflictUnleased, x, "budget %s spent without a lease", b.ID); err != nil {
				return err
			}
		}
		if err := a.tx.InsertCharge(ctx, charge); err != nil {
			return err
		}
		limit := b.Limit // the limit in force, if the budget is still in the program
		if cur := budgetByID(p, b.ID); cur != nil {
			limit = cur.Limit
		}
		spent, out, err := a.usage(ctx, b.ID)
		if err != nil {
			return err
		}
		a.emitBudget(b.ID, spent, limit)
		if spent+out > limit {
			if err := flag(ConflictOverBudget, spent+out-limit, "budget %s: spent %d + leased %d > limit %d", b.ID, spent, out, limit); err != nil {
				return err
			}
		}
	}
	if d.Kind == loyalty.KindEarn && !direct {
		for _, c := range p.EarnCaps {
			if c.Rule != loyalty.RulePurchase {
				continue
			}
			from, to := loyalty.PeriodBounds(c.Period, d.EventTime())
			n, err := a.tx.MemberEarned(ctx, d.Member, "", from, to)
			if err != nil {
				return err
			}
			if n > c.MaxPoints {
				if err := flag(ConflictEarnCap, min(n-c.MaxPoints, d.Points), "%d points earned from %s per %s, cap %d", n, c.Rule, c.Period, c.MaxPoints); err != nil {
					return err
				}
			}
		}
	}
	if d.Kind != loyalty.KindRedeem || direct {
		return nil
	}
	if d.Voucher == "" { // a voucher paid for is honoured after the kill switch
		if detail, err := a.switchedOff(ctx, rules, &d); err != nil {
			return err
		} else if detail != "" {
			if err := flag(ConflictDisabled, 1, "%s", detail); err != nil {
				return err
			}
		}
	}
	for _, l := range p.MemberLimits {
		if d.Voucher != "" || l.Reward != "" && l.Reward != d.Reward {
			continue
		}
		from, to := loyalty.PeriodBounds(l.Period, d.EventTime())
		n, err := a.tx.MemberRedemptions(ctx, d.Member, l.Reward, from, to)
		if err != nil {
			return err
		}
		if n > l.Max {
			if err := flag(ConflictMemberLimit, n-l.Max, "%d redemptions of %s per %s, limit %d", n, orAny(l.Reward), l.Period, l.Max); err != nil {
				return err
			}
		}
	}
	return nil
}

// switchedOff says why a store's redemption of a reward broke the kill switch, or "" if it did
// not. It judges by the program's history, not by the program the hub has now: the redemption is
// a conflict if it was made under a rule version that had the reward switched off (an agent
// refuses that: a faulty one), or if, at its event time, a newer version than the store's was in
// force (the newest published by then) and had the reward switched off: the store had not heard
// yet. A redemption made before the reward was switched off, or after it was switched back on,
// is not a conflict, whenever it arrives.
func (a *applier) switchedOff(ctx context.Context, rules *loyalty.Program, d *loyalty.Delta) (string, error) {
	if r, err := rules.Reward(d.Reward); err == nil && r.Disabled {
		return fmt.Sprintf("reward %s is switched off in rule version %d, under which the store redeemed it", r.ID, rules.Version), nil
	}
	v, err := a.tx.ProgramVersionAt(ctx, d.EventTime())
	if err != nil || v <= rules.Version {
		return "", err // the store's version, or an older one, was in force: the reward was on
	}
	p, err := a.program(ctx, v)
	if err != nil {
		return "", err
	}
	if r, err := p.Reward(d.Reward); err != nil || !r.Disabled {
		return "", nil
	}
	// It was switched off by the first version of the run of versions that have it off.
	first := v
	for first-1 > rules.Version {
		prev, err := a.program(ctx, first-1)
		if err != nil {
			return "", err
		}
		if r, err := prev.Reward(d.Reward); err != nil || !r.Disabled {
			break
		}
		first--
	}
	_, at, err := a.tx.ProgramPublished(ctx, first)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("reward %s was switched off at %s (rule version %d) and redeemed at %s under version %d; the store had not heard yet",
		d.Reward, at.UTC().Format(time.RFC3339), first, d.EventTime().UTC().Format(time.RFC3339), rules.Version), nil
}

// refund gives back what the delta a reversal undoes was charged: exactly the recorded charges,
// to the budgets and the lease they were counted against, whatever the program says now and
// whatever lease the reversal names. A lease already settled keeps its figures: its unspent
// quota went back when it settled, and the budget's spending still drops by the charge.
func (a *applier) refund(ctx context.Context, d loyalty.Delta) error {
	charges, err := a.tx.Charges(ctx, d.Reverses)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		charges, err = a.legacyCharges(ctx, d.Reverses)
	}
	if err != nil {
		return err
	}
	orig, err := a.tx.Delta(ctx, d.Reverses)
	if err != nil {
		return err
	}
	e, err := a.entry(ctx, orig.Delta)
	if err != nil {
		return err
	}
	e.Reversals = slices.DeleteFunc(e.Reversals, func(r loyalty.Delta) bool { return r.ID == d.ID })
	for _, c := range charges {
		// A partial refund of a sale gives back its share of what the sale was charged (the
		// order core's RefundShare, as for its points); a full reversal the rest.
		c.Amount = loyalty.RefundShare(e, d, c.Order().Standing())
		// Of a redemption's, the order's other redemptions take over what the order spared them.
		if c.Amount, err = a.carryOver(ctx, orig.Delta, c); err != nil {
			return err
		}
		// Never below zero: what a budget never counted cannot be given back.
		spent, err := a.tx.BudgetSpent(ctx, c.Budget)
		if err != nil {
			return err
		}
		if err := a.tx.AddBudgetSpent(ctx, c.Budget, -min(c.Amount, max(spent, 0))); err != nil {
			return err
		}
		if c.Lease == "" {
			continue
		}
		l, err := a.tx.Lease(ctx, c.Lease)
		if err != nil {
			return err
		}
		if l.State != LeaseSettled {
			l.Consumed = max(l.Consumed-c.Amount, 0)
			if err := a.putLease(ctx, l, LeaseEvent{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// carryOver hands what the reversal of redemption orig frees of charge c (c.Amount) to the
// other redemptions of its order that still stand, share it (loyalty.SharesOrder) and were
// counted against the same lease, by delta id, as far as the order spared them
// (loyalty.CarryOver), as the store's agent does; it returns what goes back to the budget.
func (a *applier) carryOver(ctx context.Context, orig loyalty.Delta, c Charge) (int64, error) {
	if orig.Kind != loyalty.KindRedeem || orig.OrderID == "" || c.Amount <= 0 {
		return c.Amount, nil
	}
	cs, err := a.siblingCharges(ctx, orig.Store, &orig, c.Budget, c.Lease)
	if err != nil {
		return 0, err
	}
	others := make([]loyalty.OrderCharge, len(cs))
	for i, o := range cs {
		others[i] = o.Order()
	}
	back, carried := loyalty.CarryOver(c.Amount, others)
	for i, x := range carried {
		if x > 0 {
			if err := a.tx.CarryCharge(ctx, cs[i].Delta, c.Budget, x); err != nil {
				return 0, err
			}
		}
	}
	return back, nil
}

// leaseOf is the lease id a store named for a budget, if it is that store's lease of it, and ""
// otherwise.
func (a *applier) leaseOf(ctx context.Context, store, budget, id string) (string, error) {
	if id == "" {
		return "", nil
	}
	l, err := a.tx.Lease(ctx, id)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND || err == nil && (l.Store != store || l.Budget != budget) {
		return "", nil
	}
	return id, err
}

// legacyCharges works out what a delta applied before the hub recorded charges was charged: as
// the program the hub had when it received the delta counts it, from the leases it names.
func (a *applier) legacyCharges(ctx context.Context, id string) ([]Charge, error) {
	e, err := a.tx.Delta(ctx, id)
	if err != nil {
		return nil, err
	}
	cur, err := a.current(ctx)
	if err != nil {
		return nil, err
	}
	p := cur
	for v := cur.Version; v > 1; v-- {
		_, at, err := a.tx.ProgramPublished(ctx, v)
		if err != nil {
			return nil, err
		}
		if !at.After(e.ReceivedAt) { // published before the delta arrived (or before the hub recorded when)
			break
		}
		if p, err = a.program(ctx, v-1); err != nil {
			return nil, err
		}
	}
	var cs []Charge
	for _, b := range p.BudgetsFor(&e.Delta) {
		x := b.Consumption(p, &e.Delta, nil)
		if x <= 0 {
			continue
		}
		c := Charge{Delta: id, Budget: b.ID, Amount: x}
		if lease := e.Leases[b.ID]; lease != "" {
			l, err := a.tx.Lease(ctx, lease)
			if err == nil && l.Store == e.Store && l.Budget == b.ID {
				c.Lease = l.ID
			} else if err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
				return nil, err
			}
		}
		cs = append(cs, c)
	}
	return cs, nil
}

func orAny(reward string) string {
	if reward == "" {
		return "any reward"
	}
	return reward
}

// allow checks an online earn or redemption against the kill switch, per-member limits and
// budgets, before it is applied. It returns EBUDGET.
func (a *applier) allow(ctx context.Context, d loyalty.Delta) error {
	p, err := a.current(ctx)
	if err != nil {
		return err
	}
	if r, err := p.Reward(d.Reward); err == nil && r.Disabled && d.Kind == loyalty.KindRedeem && d.Voucher == "" {
		return loyalty.Errorf(loyalty.EBUDGET, "reward %s is switched off", r.Name) // a paid voucher is still honoured
	}
	for _, l := range p.MemberLimits {
		if d.Kind != loyalty.KindRedeem || d.Voucher != "" || l.Reward != "" && l.Reward != d.Reward {
			continue
		}
		from, to := loyalty.PeriodBounds(l.Period, d.EventTime())
		n, err := a.tx.MemberRedemptions(ctx, d.Member, l.Reward, from, to)
		if err != nil {
			return err
		}
		if n+1 > l.Max {
			return loyalty.Errorf(loyalty.EBUDGET, "member %s has redeemed %s %d time(s) %s; the limit is %d",
				d.Member, orAny(l.Reward), n, loyalty.PeriodName(l.Period), l.Max)
		}
	}
	for _, b := range p.BudgetsFor(&d) {
		x, err := a.consumption(ctx, loyalty.OnlineStore, p, &b, &d)
		if err != nil {
			return err
		}
		if x <= 0 {
			continue
		}
		spent, out, err := a.usage(ctx, b.ID)
		if err != nil {
			return err
		}
		if spent+out+x > b.Limit {
			return a.usedUp(ctx, &b, spent, out, 0)
		}
	}
	return nil
}

// usedUp is the refusal of an online call (or a referral bonus) that does not fit budget b. Quota
// held unspent by stores that are connected comes back at their next syncs when they do not
// need it (adjust), so the message says when to try again.
func (a *applier) usedUp(ctx context.Context, b *loyalty.Budget, spent, out, more int64) error {
	msg := fmt.Sprintf("budget %s is used up: %d of %d spent, %d held by stores", b.ID, spent, b.Limit, out)
	if more > 0 {
		msg += fmt.Sprintf("; %d more do not fit", more)
	}
	if idle, err := a.heldOnline(ctx, b.ID); err != nil {
		return err
	} else if idle > 0 {
		msg += fmt.Sprintf("; %d of it is held by stores that are online, which hand back what they do not need within a minute: try again then", idle)
	}
	return loyalty.Errorf(loyalty.EBUDGET, "%s", msg)
}

// heldOnline is the quota of a budget that connected stores hold unspent.
func (a *applier) heldOnline(ctx context.Context, budget string) (int64, error) {
	ls, err := a.tx.BudgetLeases(ctx, budget)
	if err != nil {
		return 0, err
	}
	// Which of the stores not connected here are connected to another hub process: one read
	// for all of them, not one per lease, under the writer, at every refusal.
	var elsewhere []string
	for _, l := range ls {
		if l.State == LeaseActive && a.session(l.Store).IsZero() {
			elsewhere = append(elsewhere, l.Store)
		}
	}
	live, err := a.tx.LiveSessions(ctx, elsewhere)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range ls {
		if l.State == LeaseActive && (!a.session(l.Store).IsZero() || live[l.Store]) {
			n += max(l.Told()-l.Consumed, 0)
		}
	}
	return n, nil
}

// consumption is what d uses of budget b, counting each order once (loyalty.Budget.
// OrderConsumption): a redemption on an order whose other standing redemptions at the same
// store (OnlineStore for the online channel) already counted toward an order_value or discount
// budget uses only what its order adds.
func (a *applier) consumption(ctx context.Context, store string, p *loyalty.Program, b *loyalty.Budget, d *loyalty.Delta) (int64, error) {
	x := b.Consumption(p, d, nil)
	if x <= 0 || d.Kind != loyalty.KindRedeem || d.OrderID == "" || (b.Metric != loyalty.MetricOrderValue && b.Metric != loyalty.MetricDiscount) {
		return x, nil
	}
	counted, err := a.orderCounted(ctx, store, d, b.ID, d.Leases[b.ID])
	if err != nil {
		return 0, err
	}
	return b.OrderConsumption(p, d, counted), nil
}

// orderCounted sums what the other redemptions of d's order at store that still stand, share it
// (loyalty.SharesOrder) and were counted against lease ("" for none: the online channel), count
// of budget.
func (a *applier) orderCounted(ctx context.Context, store string, d *loyalty.Delta, budget, lease string) (int64, error) {
	cs, err := a.siblingCharges(ctx, store, d, budget, lease)
	var n int64
	for _, c := range cs {
		n += c.Order().Standing()
	}
	return n, err
}

// siblingCharges returns the charges to budget, counted against lease, of the other redemptions
// of d's order at store that still stand and share it (loyalty.SharesOrder), by delta id. An
// order counts once per lease: a reward on an order whose others were counted against a lease
// since ended is counted against its own lease in full, so that every count a reversal hands on
// stays on the lease it was charged to.
//
// A voucher's purchase shares no order: it is charged the most the voucher can give, before the
// order the voucher will be used on exists (Program.CheckVoucher), so it neither spares a
// redemption under its order id nor takes over what one frees.
func (a *applier) siblingCharges(ctx context.Context, store string, d *loyalty.Delta, budget, lease string) ([]Charge, error) {
	if bought, err := a.buysVoucher(ctx, store, d.ID); err != nil || bought {
		return nil, err
	}
	es, err := a.tx.OrderDeltas(ctx, store, d.OrderID)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(es, func(x, y LedgerEntry) int { return strings.Compare(x.ID, y.ID) })
	var out []Charge
	for _, e := range es {
		if !loyalty.SharesOrder(d, &e.Delta) {
			continue
		}
		if bought, err := a.buysVoucher(ctx, store, e.ID); err != nil {
			return nil, err
		} else if bought {
			continue
		}
		if by, err := a.tx.ReversalOf(ctx, e.ID); err != nil {
			return nil, err
		} else if by != "" {
			continue
		}
		cs, err := a.tx.Charges(ctx, e.ID)
		if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			cs, err = a.legacyCharges(ctx, e.ID) // nothing spared or carried
		}
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if c.Budget == budget && c.Lease == lease {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// buysVoucher reports whether delta id of store is a voucher's purchase: only the online channel
// sells them.
func (a *applier) buysVoucher(ctx context.Context, store, id string) (bool, error) {
	if store != loyalty.OnlineStore {
		return false, nil
	}
	_, err := a.tx.VoucherPaidBy(ctx, id)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return false, nil
	}
	return err == nil, err
}

// recordDemand records what a store's lease of a budget was charged, for sizing its next
// leases, at the delta's event time, but never after the hub's clock (a store clock ahead).
func (a *applier) recordDemand(ctx context.Context, store, budget string, at time.Time, x int64) error {
	if now := a.Now(); at.After(now) {
		at = now
	}
	return a.tx.AddDemand(ctx, store, budget, at, x)
}

// fits checks that the budgets of program p have room for all of ds together (spent + leased +
// what they would use ≤ limit), as allow checks one online call. It returns EBUDGET naming the
// first budget that has not.
func (a *applier) fits(ctx context.Context, p *loyalty.Program, ds ...loyalty.Delta) error {
	need := map[string]int64{}
	for i := range ds {
		for _, b := range p.BudgetsFor(&ds[i]) {
			x, err := a.consumption(ctx, ds[i].Store, p, &b, &ds[i])
			if err != nil {
				return err
			}
			need[b.ID] += max(x, 0)
		}
	}
	for _, b := range p.Budgets {
		x := need[b.ID]
		if x <= 0 {
			continue
		}
		spent, out, err := a.usage(ctx, b.ID)
		if err != nil {
			return err
		}
		if spent+out+x > b.Limit {
			return a.usedUp(ctx, &b, spent, out, x)
		}
	}
	return nil
}

// usage returns what a budget has spent and what is leased out and unspent.
func (a *applier) usage(ctx context.Context, budget string) (spent, outstanding int64, err error) {
	if spent, err = a.tx.BudgetSpent(ctx, budget); err != nil {
		return 0, 0, err
	}
	outstanding, err = a.tx.Outstanding(ctx, budget)
	return spent, a.counted(outstanding), err
}

// counted is what of a budget's outstanding quota (leased out, unspent) the hub counts against
// its limit: all of it, unless the simulator's fault Faults.IgnoreOutstanding is on.
func (a *applier) counted(outstanding int64) int64 {
	if a.Faults.IgnoreOutstanding {
		return 0
	}
	return outstanding
}

// current returns the newest program, read once per transaction.
func (a *applier) current(ctx context.Context) (*loyalty.Program, error) {
	if a.cur == nil {
		p, _, err := a.tx.Program(ctx)
		if err != nil {
			return nil, err
		}
		a.cur = &p
	}
	return a.cur, nil
}

func budgetByID(p *loyalty.Program, id string) *loyalty.Budget {
	for i := range p.Budgets {
		if p.Budgets[i].ID == id {
			return &p.Budgets[i]
		}
	}
	return nil
}

// disabled reports whether a budget's reward is switched off: its leases are revoked.
func disabled(p *loyalty.Program, b *loyalty.Budget) bool {
	if b.Reward == "" {
		return false
	}
	r, err := p.Reward(b.Reward)
	return err != nil || r.Disabled
}

// WriteOff settles the ended leases of a store that will not come back (a closed store, a lost
// device): their unspent quota returns to the budgets. It returns what went back, per budget. Whatever the store spent offline and never
// delivered is then unaccounted for; that is the operator's call. Audited, in the same transaction.
func (h *Hub) WriteOff(ctx context.Context, store string) (map[string]int64, error) {
	var returned map[string]int64
	err := h.update(ctx, func(tx Tx) error {
		returned = map[string]int64{} // what this attempt returned: a retried transaction starts over
		if _, err := tx.StoreInfo(ctx, store); err != nil {
			return err
		}
		ls, err := tx.Leases(ctx, store)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if l.State != LeaseEnded {
				return loyalty.Errorf(loyalty.ECONFLICT, "store %s still holds an active lease of budget %s until %s; write off after it expires",
					store, l.Budget, l.ExpiresAt.UTC().Format(time.RFC3339))
			}
			returned[l.Budget] += l.Outstanding()
			l.State = LeaseSettled
			if err := tx.PutLease(ctx, l, LeaseEvent{Lease: l.ID, Store: store, Budget: l.Budget, Kind: "writeoff", Amount: l.Outstanding(), At: h.Now()}); err != nil {
				return err
			}
		}
		return h.audit(ctx, tx, AuditStoreWriteOff, store, WriteOffDetail(returned))
	})
	return returned, err
}

// BudgetStatus is a budget with what it has spent and what stores hold.
type BudgetStatus struct {
	loyalty.Budget
	Spent       int64 `json:"spent"`
	Outstanding int64 `json:"outstanding"` // leased to stores, not yet spent or settled
	Available   int64 `json:"available"`   // limit - spent - outstanding
	// Reclaiming is the part of Outstanding the hub is taking back from connected stores that do
	// not need it: it becomes available once each store has shown it heard.
	Reclaiming int64   `json:"reclaiming"`
	Leases     []Lease `json:"leases"`
}

// Budgets reports every budget of the current program.
func (h *Hub) Budgets(ctx context.Context) ([]BudgetStatus, error) {
	out := []BudgetStatus{} // an empty list is [], never null, in the API and the CLI
	err := h.Store.View(ctx, func(tx Tx) error {
		p, _, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		for _, b := range p.Budgets {
			s := BudgetStatus{Budget: b, Leases: []Lease{}}
			if s.Spent, err = tx.BudgetSpent(ctx, b.ID); err != nil {
				return err
			}
			if s.Outstanding, err = tx.Outstanding(ctx, b.ID); err != nil {
				return err
			}
			ls, err := tx.BudgetLeases(ctx, b.ID)
			if err != nil {
				return err
			}
			s.Leases = append(s.Leases, ls...)
			for _, l := range ls {
				if l.State != LeaseSettled {
					s.Reclaiming += l.Reclaiming
				}
			}
			s.Available = b.Limit - s.Spent - s.Outstanding
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// capEarn applies the program's earn caps for rule to an online earn, exactly.
func (a *applier) capEarn(ctx context.Context, p *loyalty.Program, member, rule string, points int64) (int64, error) {
	var err error
	capped := p.CapEarn(rule, points, func(period string) int64 {
		from, to := loyalty.PeriodBounds(period, a.Now()) // the online award's event time is now
		n, e := a.tx.MemberEarned(ctx, member, ruleColumn(rule), from, to)
		if e != nil {
			err = e
		}
		return n
	})
	return capped, err
}

// ruleColumn is how a rule is stored on deltas: "" for purchases.
func ruleColumn(rule string) string {
	if rule == loyalty.RulePurchase {
		return ""
	}
	return rule
}
