package loyalty

import (
	"slices"
	"time"
)

// Budget metrics: what a budget counts.
const (
	MetricRedemptions  = "redemptions"   // number of redemptions (a reversed one gives its unit back)
	MetricDiscount     = "discount"      // minor units of discount given by amount_off and gift_card rewards
	MetricOrderValue   = "order_value"   // minor units of the orders a reward was redeemed on
	MetricPointsIssued = "points_issued" // points earned
)

// Budget is a chain-wide limit. The hub enforces it exactly: online calls are refused when it is
// used up, and stores spend only the quota the hub leased to them, so even stores that are
// offline for hours cannot overspend it together.
type Budget struct {
	ID     string `json:"id"`
	Metric string `json:"metric"`
	Reward string `json:"reward,omitempty"` // limit one reward; empty: every reward (or every earn, for points_issued)
	Limit  int64  `json:"limit"`
	// LeaseTTL is how long a store may spend its lease of the budget without hearing from the
	// hub; left out, the hub's leases.ttl. It bounds how long an offline store goes on spending
	// the budget, and so how long a kill switch takes to reach it (docs/BUDGETS.md).
	LeaseTTL Duration `json:"lease_ttl,omitempty"`
	// ExpectedOutage is how long an outage a store's lease should carry it through at its
	// observed demand; left out, the hub's leases.expected_outage (docs/BUDGETS.md, "Lease size").
	ExpectedOutage Duration `json:"expected_outage,omitempty"`
}

// Bounds of a budget's lease_ttl and expected_outage: longer than a few heartbeats, so that a
// connected store renews its lease in time, and no longer than the hub's default
// claims.max_offline, past which it rejects a store's older sales anyway.
const (
	MinLeaseTTL = time.Minute
	MaxLeaseTTL = 720 * time.Hour
)

// Consumption returns how much of the budget d uses under program p: positive for a redemption
// or earn it covers, negative for the reverse of one, zero otherwise. orig is the reversed delta
// for a reverse, and is ignored otherwise.
func (b Budget) Consumption(p *Program, d, orig *Delta) int64 {
	sign := int64(1)
	if d.Kind == KindReverse {
		if orig == nil {
			return 0
		}
		sign, d = -1, orig
	}
	switch {
	case b.Metric == MetricPointsIssued && d.Kind == KindEarn:
		return sign * d.Points
	case d.Kind != KindRedeem || (b.Reward != "" && b.Reward != d.Reward) || d.Reward == "":
		return 0
	case d.Voucher != "":
		return 0 // a voucher counted when it was bought; using it counts nothing more
	}
	switch b.Metric {
	case MetricRedemptions:
		return sign
	case MetricOrderValue:
		return sign * d.Amount
	case MetricDiscount:
		r, err := p.Reward(d.Reward)
		switch {
		case err != nil:
			return 0
		case r.Kind == "gift_card", r.Kind == "amount_off" && d.Amount == 0:
			return sign * r.Value
		case r.Kind == "percent_off" && d.Amount == 0:
			// No order amount: a voucher's purchase (Program.CheckVoucher), which counts the
			// most it can give. A store's redemption must say its amount (CheckOrderAmount).
			return sign * r.MaxValue
		}
		return sign * r.Discount(d.Amount)
	}
	return 0
}

// OrderConsumption is Consumption for a redemption on an order that already carries other
// rewards, which used counted of the budget between them: an order is counted once. An
// order_value budget counts only what the order's amount adds to what the order already counted
// (nothing, for a second reward on the same order), and the discounts of one order count at most
// the order's amount in all. counted is the sum of the budget's charges for the order's other
// redemptions that still stand (not reversed) and share its order (SharesOrder); the store's
// agent and the hub both pass it, from their own records, so they count the same.
func (b Budget) OrderConsumption(p *Program, d *Delta, counted int64) int64 {
	return b.OrderCharge(p, d, b.Consumption(p, d, nil), counted)
}

// OrderCharge is OrderConsumption for a redemption whose Consumption, alone on its order, was x.
func (b Budget) OrderCharge(p *Program, d *Delta, x, counted int64) int64 {
	return b.OrderRuleOf(p, d).Charge(x, d.Amount, counted)
}

// OrderRule is how a redemption's charge to a budget depends on what its order's other
// redemptions counted already (OrderConsumption). A store records it with the charge, so that it
// can count the charge again when the order changes (the hub rejected one of its redemptions)
// without the program the redemption was made under.
type OrderRule string

const (
	OrderAlone    OrderRule = ""            // the order changes nothing: counted in full
	OrderValue    OrderRule = "order_value" // counts what its order amount adds
	OrderDiscount OrderRule = "discount"    // the order's discounts count at most its amount
)

// OrderRuleOf is the OrderRule of redemption d's charge to budget b under program p.
func (b Budget) OrderRuleOf(p *Program, d *Delta) OrderRule {
	if d.Kind != KindRedeem {
		return OrderAlone
	}
	switch b.Metric {
	case MetricOrderValue:
		return OrderValue
	case MetricDiscount:
		if r, err := p.Reward(d.Reward); err == nil && d.Amount > 0 && (r.Kind == "amount_off" || r.Kind == "percent_off") {
			return OrderDiscount
		}
	}
	return OrderAlone
}

// Charge is what a redemption worth x alone, on an order of orderAmount whose other redemptions
// counted counted already, is charged under the rule.
func (r OrderRule) Charge(x, orderAmount, counted int64) int64 {
	if x <= 0 || counted <= 0 {
		return x
	}
	switch r {
	case OrderValue:
		return max(x-counted, 0)
	case OrderDiscount:
		return min(x, max(orderAmount-counted, 0))
	}
	return x
}

// OrderCharge is what one redemption was charged of a budget, as the store's agent (its lease
// use) and the hub (its budget charge) both record it: Amount when it was made; Spared what the
// order, having counted already, spared it (Consumption − OrderConsumption); Carried what it
// took over since from the order's redemptions that were reversed (CarryOver).
type OrderCharge struct {
	Amount, Spared, Carried int64
}

// Standing is what the charge counts toward its order while its redemption stands: what a
// reversal of it frees, and what the order's later redemptions find counted.
func (c OrderCharge) Standing() int64 { return c.Amount + c.Carried }

// CarryOver splits what the reversal of a redemption frees of a budget (its Standing charge)
// between the order's other redemptions that still stand and the budget. The others take over,
// in the order given, as much as the order spared each of them, so that the order goes on
// counting what they alone would have: a coffee reversed off an order that also had 5.00 off
// leaves the order's value counted, by the 5.00 off. The rest goes back to the budget. It returns
// what goes back, and what each of the others takes over (added to its Carried). The store's
// agent and the hub both split every reversal with it, over the same others (SharesOrder, the
// same lease, by delta id), so their counts of the lease agree.
func CarryOver(freed int64, others []OrderCharge) (back int64, carried []int64) {
	carried = make([]int64, len(others))
	for i, o := range others {
		take := min(max(o.Spared-o.Carried, 0), max(freed, 0))
		carried[i], freed = take, freed-take
	}
	return max(freed, 0), carried
}

// SharesOrder reports whether redemption e's charges count toward the order of redemption d
// (OrderConsumption's counted): another redemption of the same member under the same order id.
// An order id is only the store's word for it: two members' redemptions under one id are two
// orders to a budget, so that an order id used again for other members spends no less of it.
// The store's agent and the hub both ask it of the order's entries they hold.
func SharesOrder(d, e *Delta) bool {
	return e.ID != d.ID && e.Kind == KindRedeem && d.Kind == KindRedeem && e.Member == d.Member
}

// Offline redemption policies of a reward.
const (
	OfflineAllow = "allow" // a store may redeem it offline (within its budget leases)
	OfflineDeny  = "deny"  // only while the store can reach the hub
	OfflineLimit = "limit" // offline, at most OfflineMax redemptions per member per day at a store
)

// Periods of per-member limits.
const (
	PeriodDay   = "day"
	PeriodWeek  = "week"
	PeriodMonth = "month"
	PeriodTotal = "total"
)

// MemberLimit caps how often one member may redeem a reward (or any reward) in a period.
type MemberLimit struct {
	Reward string `json:"reward,omitempty"` // empty: every reward
	Period string `json:"period"`
	Max    int64  `json:"max"`
}

// RulePurchase is the earn rule of points for a sale (EarnRule). Later action rules (signup,
// review, social follow) have their own ids.
const RulePurchase = "purchase"

// EarnCap caps the points one member earns from one earn rule in a period: "at most 100 points
// for social actions per month".
type EarnCap struct {
	Rule      string `json:"rule"`
	Period    string `json:"period"`
	MaxPoints int64  `json:"max_points"`
}

// CapEarn reduces points so that a member who already earned earned points from rule in each cap's
// period stays within every cap. earned maps a period to what was earned in it.
func (p *Program) CapEarn(rule string, points int64, earned func(period string) int64) int64 {
	for _, c := range p.EarnCaps {
		if c.Rule == rule {
			points = min(points, max(c.MaxPoints-earned(c.Period), 0))
		}
	}
	return points
}

// HasEarnCap reports whether any cap applies to rule.
func (p *Program) HasEarnCap(rule string) bool {
	for _, c := range p.EarnCaps {
		if c.Rule == rule {
			return true
		}
	}
	return false
}

// PeriodBounds returns the period containing t, in UTC, as [start, end): a day from midnight to
// the next midnight, a week from Monday midnight to the next Monday midnight, a month from the
// first of the month to the first of the next. For PeriodTotal both are the zero time: it has no
// start and no end. It is the one definition of a period that every per-period rule uses, at the
// hub and at the stores: member limits, earn caps and actions' max_times count the events with an
// event time in [start, end) of the period of the event being judged, so an event that arrives
// late is judged in the period it happened in, not against what happened after it.
func PeriodBounds(period string, t time.Time) (start, end time.Time) {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	switch period {
	case PeriodDay:
		return day, day.AddDate(0, 0, 1)
	case PeriodWeek:
		monday := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
		return monday, monday.AddDate(0, 0, 7)
	case PeriodMonth:
		first := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return first, first.AddDate(0, 1, 0)
	}
	return time.Time{}, time.Time{}
}

// PeriodStart returns the start of the period containing t (see PeriodBounds): midnight, Monday
// midnight, the first of the month, or the zero time for PeriodTotal.
func PeriodStart(period string, t time.Time) time.Time {
	start, _ := PeriodBounds(period, t)
	return start
}

// BudgetsFor returns the budgets a delta can consume.
func (p *Program) BudgetsFor(d *Delta) []Budget {
	var out []Budget
	for _, b := range p.Budgets {
		if b.Metric == MetricPointsIssued && (d.Kind == KindEarn || d.Kind == KindReverse) {
			out = append(out, b)
		} else if b.Metric != MetricPointsIssued && (d.Kind == KindRedeem || d.Kind == KindReverse) && (b.Reward == "" || b.Reward == d.Reward || d.Kind == KindReverse) {
			out = append(out, b)
		}
	}
	return out
}

func validateBudgets(p *Program) error {
	seen := map[string]bool{}
	metrics := []string{MetricRedemptions, MetricDiscount, MetricOrderValue, MetricPointsIssued}
	for i, b := range p.Budgets {
		switch {
		case !validID(b.ID):
			return Errorf(EINVALID, "budgets[%d]: id must be 1 to %d characters", i, MaxIDLength)
		case seen[b.ID]:
			return Errorf(EINVALID, "budgets[%d]: id %q is used twice", i, b.ID)
		case !slices.Contains(metrics, b.Metric):
			return Errorf(EINVALID, "budget %q: metric %q is not one of %v", b.ID, b.Metric, metrics)
		case b.Limit < 0:
			return Errorf(EINVALID, "budget %q: limit cannot be negative", b.ID)
		case b.Metric == MetricPointsIssued && b.Reward != "":
			return Errorf(EINVALID, "budget %q: a points_issued budget counts earns, so it names no reward", b.ID)
		}
		if b.Reward != "" {
			if _, err := p.Reward(b.Reward); err != nil {
				return Errorf(EINVALID, "budget %q: no reward %q in the program", b.ID, b.Reward)
			}
		}
		for _, f := range []struct {
			name string
			d    Duration
		}{{"lease_ttl", b.LeaseTTL}, {"expected_outage", b.ExpectedOutage}} {
			if f.d != 0 && (time.Duration(f.d) < MinLeaseTTL || time.Duration(f.d) > MaxLeaseTTL) {
				return Errorf(EINVALID, "budget %q: %s must be %s to %s, or left out for the hub's default; got %s",
					b.ID, f.name, Duration(MinLeaseTTL), Duration(MaxLeaseTTL), f.d)
			}
		}
		seen[b.ID] = true
	}
	periods := []string{PeriodDay, PeriodWeek, PeriodMonth, PeriodTotal}
	for i, l := range p.MemberLimits {
		switch {
		case !slices.Contains(periods, l.Period):
			return Errorf(EINVALID, "member_limits[%d]: period %q is not one of %v", i, l.Period, periods)
		case l.Max < 0:
			return Errorf(EINVALID, "member_limits[%d]: max cannot be negative", i)
		}
		if l.Reward != "" {
			if _, err := p.Reward(l.Reward); err != nil {
				return Errorf(EINVALID, "member_limits[%d]: no reward %q in the program", i, l.Reward)
			}
		}
	}
	for i, c := range p.EarnCaps {
		switch {
		case !slices.Contains(p.earnRules(), c.Rule):
			return Errorf(EINVALID, "earn_caps[%d]: unknown earn rule %q (the rules are: %v)", i, c.Rule, p.earnRules())
		case !slices.Contains(periods, c.Period):
			return Errorf(EINVALID, "earn_caps[%d]: period %q is not one of %v", i, c.Period, periods)
		case c.MaxPoints < 0:
			return Errorf(EINVALID, "earn_caps[%d]: max_points cannot be negative", i)
		}
	}
	for _, r := range p.Rewards {
		switch r.Offline {
		case "", OfflineAllow, OfflineDeny:
		case OfflineLimit:
			if r.OfflineMax <= 0 {
				return Errorf(EINVALID, "reward %q: offline \"limit\" needs offline_max > 0 (redemptions per member per day)", r.ID)
			}
		default:
			return Errorf(EINVALID, "reward %q: offline must be allow, deny or limit, not %q", r.ID, r.Offline)
		}
	}
	return nil
}

// Unit is the most one redemption or earn can use of the budget, as far as the program tells:
// a lease smaller than that could never be spent.
func (b Budget) Unit(p *Program) int64 {
	switch b.Metric {
	case MetricRedemptions:
		return 1
	case MetricDiscount:
		var u int64
		for _, r := range p.Rewards {
			if b.Reward == "" || b.Reward == r.ID {
				switch r.Kind {
				case "amount_off", "gift_card":
					u = max(u, r.Value)
				case "percent_off":
					u = max(u, r.MaxValue)
				}
			}
		}
		return u
	}
	return 1
}

// PeriodName says a period in words: "today", "this week", "this month", "in total".
func PeriodName(period string) string {
	switch period {
	case PeriodDay:
		return "today"
	case PeriodWeek:
		return "this week"
	case PeriodMonth:
		return "this month"
	}
	return "in total"
}
