package loyalty

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Line is one line of an order: what the POS sold. Lines are optional; without them an order is
// one line of its amount with no category.
type Line struct {
	SKU      string `json:"sku,omitempty"`
	Category string `json:"category,omitempty"`
	Qty      int64  `json:"qty"`
	Amount   int64  `json:"amount"` // minor units for the whole line
}

// CategoryRate earns a different number of points per currency unit on one product (SKU) or
// one category. A product's rate wins over its category's.
type CategoryRate struct {
	Category      string `json:"category,omitempty"`
	SKU           string `json:"sku,omitempty"`
	PointsPerUnit int64  `json:"points_per_unit"`
}

// Tier is a VIP level, entered when the qualifying total reaches Threshold.
type Tier struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Threshold  int64  `json:"threshold"`  // minor units spent, or points earned, in the window
	Multiplier int64  `json:"multiplier"` // earn multiplier in thousandths: 1000 = 1x, 1500 = 1.5x
}

// Tier bases and windows.
const (
	BasisSpend        = "spend"
	BasisPoints       = "points"
	WindowLifetime    = "lifetime"
	WindowCalendar    = "calendar_year"
	WindowRolling12M  = "rolling_12m"
	multiplierOne     = 1000
	maxMultiplier     = 10 * multiplierOne
	maxCampaignLength = 366 * 24 * time.Hour
)

// TierRules places members in tiers by what they spent or earned over a window. A member's tier
// is recomputed when their total changes and when the window moves on: a member whose rolling or
// calendar-year total falls below their tier's threshold is downgraded (requalification).
type TierRules struct {
	Basis  string `json:"basis"`
	Window string `json:"window"`
	Tiers  []Tier `json:"tiers"` // ascending thresholds; the first is the entry tier (threshold 0)
}

// HasTier reports whether the program has a tier of this id.
func (p *Program) HasTier(id string) bool {
	return p.Tiers != nil && slices.ContainsFunc(p.Tiers.Tiers, func(t Tier) bool { return t.ID == id })
}

// TierFor returns the tier a qualifying total earns, or the zero Tier if there are no tiers.
func (r *TierRules) TierFor(total int64) Tier {
	var t Tier
	for _, tier := range r.Tiers {
		if total >= tier.Threshold {
			t = tier
		}
	}
	return t
}

// WindowStart returns the start of the qualifying window containing t.
func (r *TierRules) WindowStart(t time.Time) time.Time {
	start, _ := r.WindowBounds(t)
	return start
}

// WindowBounds returns the qualifying window containing t as [start, end), like PeriodBounds:
// a calendar year from 1 January (UTC) to the next 1 January; for rolling_12m, the 12 months up
// to and including t (event times have millisecond precision, so end is t's millisecond plus
// one); for lifetime, the zero time for both (no start and no end).
func (r *TierRules) WindowBounds(t time.Time) (start, end time.Time) {
	t = t.UTC()
	switch r.Window {
	case WindowCalendar:
		first := time.Date(t.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
		return first, first.AddDate(1, 0, 0)
	case WindowRolling12M:
		return t.AddDate(-1, 0, 0), t.Truncate(time.Millisecond).Add(time.Millisecond)
	}
	return time.Time{}, time.Time{}
}

// Segment selects members by tier and attributes. Empty lists match everyone.
type Segment struct {
	Tiers     []string `json:"tiers,omitempty"`
	Countries []string `json:"countries,omitempty"`
}

func (s Segment) matches(m *Member) bool {
	return (len(s.Tiers) == 0 || slices.Contains(s.Tiers, m.Tier)) &&
		// In any case: a member's country is stored in upper case, and the hub reads "de" as DE.
		(len(s.Countries) == 0 || m.Country != "" && slices.ContainsFunc(s.Countries, func(c string) bool { return strings.EqualFold(c, m.Country) }))
}

// Campaign is a bonus over a time window, on given days and hours in the store's time zone,
// for a segment of members.
type Campaign struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Start      time.Time `json:"start"`                // inclusive
	End        time.Time `json:"end"`                  // exclusive
	Days       []string  `json:"days,omitempty"`       // mon..sun in the store's time zone; empty: every day
	From       string    `json:"from,omitempty"`       // HH:MM local time, inclusive; empty: all day
	To         string    `json:"to,omitempty"`         // HH:MM local time, exclusive
	Multiplier int64     `json:"multiplier,omitempty"` // thousandths, applied to base points: 2000 = double points
	Bonus      int64     `json:"bonus,omitempty"`      // fixed points per qualifying order
	MinAmount  int64     `json:"min_amount,omitempty"` // order minimum for the campaign, minor units
	Segment    Segment   `json:"segment,omitzero"`
	Disabled   bool      `json:"disabled,omitempty"`
}

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// activeAt reports whether the campaign runs at instant t seen in location loc.
func (c *Campaign) activeAt(t time.Time, loc *time.Location) bool {
	if c.Disabled || t.Before(c.Start) || !t.Before(c.End) {
		return false
	}
	local := t.In(loc)
	if len(c.Days) > 0 && !slices.Contains(c.Days, weekdays[local.Weekday()]) {
		return false
	}
	if c.From == "" {
		return true
	}
	hm := local.Format("15:04")
	if c.From <= c.To {
		return hm >= c.From && hm < c.To
	}
	return hm >= c.From || hm < c.To // a window over midnight, such as 22:00-02:00
}

// PunchCard gives a free reward after buying Buy qualifying units (by SKU or category).
type PunchCard struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	SKU      string `json:"sku,omitempty"`
	Category string `json:"category,omitempty"`
	Buy      int64  `json:"buy"`
	Reward   string `json:"reward"` // the reward given free when the card is full
}

// Counts reports whether a line of an order counts on the card: its SKU is the card's, or its
// category is.
func (c PunchCard) Counts(l Line) bool {
	return c.SKU != "" && l.SKU == c.SKU || c.Category != "" && l.Category == c.Category
}

// Punches reports whether some line of an order punches one of the program's punch cards: it
// counts on the card, with units.
func (p *Program) Punches(lines []Line) bool {
	for _, c := range p.PunchCards {
		if slices.ContainsFunc(lines, func(l Line) bool { return l.Qty > 0 && c.Counts(l) }) {
			return true
		}
	}
	return false
}

// Fills returns how many times the card is filled by units more punches on a count of have:
// the multiples of Buy the count passes.
func (c PunchCard) Fills(have, units int64) int64 {
	have = max(have, 0)
	return (have+units)/c.Buy - have/c.Buy
}

// ActionRule awards points for something a member does outside a sale: signing up, a birthday,
// a product review, a social follow, a newsletter sign-up, or a custom event posted through the
// hub's API. Caps per member per period go in EarnCaps with the action's id as the rule.
type ActionRule struct {
	ID     string `json:"id"`
	Points int64  `json:"points"`
	// MaxTimes caps how often one member is awarded it per Period (0: no limit).
	MaxTimes int64  `json:"max_times,omitempty"`
	Period   string `json:"period,omitempty"`
}

// ActionBirthday is the id of the action rule the hub awards every member with a birthday on
// file, once a year, on their birthday (BirthdayDue).
const ActionBirthday = "birthday"

// ActionSignup is the id of the action rule the hub awards a member once, when they are created,
// with the order id SignupOrderID(member).
const ActionSignup = "signup"

// SignupOrderID is the order id of a member's sign-up award: one per member.
func SignupOrderID(member string) string { return "signup-" + member }

// BirthdayOrderID is the order id of a member's birthday award in a year: one a year.
func BirthdayOrderID(year int, member string) string {
	return ActionBirthday + "-" + strconv.Itoa(year) + "-" + member
}

// HubOrderID reports whether id has the form of the order ids the hub gives its own awards
// (SignupOrderID, BirthdayOrderID). No online caller may use one for an order of its own: it
// would take the award's key, or share its entries so that reversing the order took the award
// back too.
func HubOrderID(id string) bool {
	if strings.HasPrefix(id, "signup-") {
		return true
	}
	rest, ok := strings.CutPrefix(id, ActionBirthday+"-")
	year, _, dash := strings.Cut(rest, "-")
	return ok && dash && len(year) == 4 && strings.Trim(year, "0123456789") == "" // birthday-<year>-…
}

// BirthdayGraceDays is how long after the start of a member's birthday the hub may still award
// it: the day itself, and the days after it on which a hub that was down catches up.
const BirthdayGraceDays = 7

// ValidateBirthday checks a member's birthday: "MM-DD", or "YYYY-MM-DD" from 1900 up to today (a
// date that exists: 02-30 does not, 1999-02-29 neither, 02-29 alone does). It returns EINVALID.
func ValidateBirthday(s string, today time.Time) error {
	bad := Errorf(EINVALID, "birthday %q is not a date: write MM-DD (such as 07-14) or YYYY-MM-DD (such as 1990-07-14)", Truncate(s, 40))
	switch len(s) {
	case len("01-02"):
		// 2000 is a leap year: 02-29 is a birthday, celebrated on 02-28 in other years.
		if _, err := time.Parse(time.DateOnly, "2000-"+s); err != nil {
			return bad
		}
	case len(time.DateOnly):
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return bad
		}
		if d.Year() < 1900 {
			return Errorf(EINVALID, "birthday %q: the year must be 1900 or later (or leave it out: MM-DD)", Truncate(s, 40))
		}
		if d.After(today) {
			return Errorf(EINVALID, "birthday %q is in the future", Truncate(s, 40))
		}
	default:
		return bad
	}
	return nil
}

// birthdayParts returns the year (0 if not given), month and day of a valid birthday.
func birthdayParts(s string) (year int, month time.Month, day int) {
	full := s
	if len(s) == len("01-02") {
		full = "2000-" + s // a leap year, in which 02-29 exists
	}
	d, err := time.Parse(time.DateOnly, full)
	if err != nil {
		return 0, 0, 0
	}
	if full == s {
		year = d.Year()
	}
	return year, d.Month(), d.Day()
}

// BirthdayIn returns the day a valid birthday is celebrated in year: its own, except that 29
// February is celebrated on 28 February in a year without it.
func BirthdayIn(birthday string, year int) (time.Month, int) {
	_, m, d := birthdayParts(birthday)
	if m == time.February && d == 29 && time.Date(year, time.March, 0, 0, 0, 0, 0, time.UTC).Day() != 29 {
		d = 28
	}
	return m, d
}

// BirthdayDue reports whether a member with birthday (valid, or "" for none), whose account was
// created at created, is due the birthday award at now, read in loc (the member's home store's
// time zone, or UTC), and for which year: from local midnight starting the birthday, for
// BirthdayGraceDays days (a hub that was down on the day catches up), once a year. A member who
// joined after their birthday ended gets it from the next year on; a birth year, when given, is
// not itself celebrated.
func BirthdayDue(birthday string, loc *time.Location, created, now time.Time) (year int, due bool) {
	if birthday == "" {
		return 0, false
	}
	born, _, _ := birthdayParts(birthday)
	local := now.In(loc)
	for _, y := range []int{local.Year(), local.Year() - 1} { // a birthday late in December, caught up in January
		m, d := BirthdayIn(birthday, y)
		start := time.Date(y, m, d, 0, 0, 0, 0, loc)
		if y > born && !now.Before(start) && now.Before(start.AddDate(0, 0, BirthdayGraceDays)) && created.Before(start.AddDate(0, 0, 1)) {
			return y, true
		}
	}
	return 0, false
}

// RuleReferral is the earn rule of referral bonuses.
const RuleReferral = "referral"

// Referral rewards both sides when a referred member makes a first qualifying purchase: the new
// member gets Give points, the referrer Get points ("give X, get X").
type Referral struct {
	Give      int64 `json:"give"`
	Get       int64 `json:"get"`
	MinAmount int64 `json:"min_amount,omitempty"` // smallest qualifying purchase, minor units of the program's currency
}

// Expiry makes points expire, with ledgered expire deltas that the hub writes. In mode
// inactivity, AfterDays days with no earn or redemption take the whole balance to zero. In mode
// lot, each earned lot expires AfterDays days after it was earned unless spent first, oldest
// first (Expiry.LotExpiry, expiry.go). Points within RemindDays of expiring are listed as
// expiring soon, for reminders.
type Expiry struct {
	Mode       string `json:"mode"` // ExpiryInactivity or ExpiryLot
	AfterDays  int    `json:"after_days"`
	RemindDays int    `json:"remind_days,omitempty"`
}

// Expiry modes.
const (
	ExpiryInactivity = "inactivity" // the whole balance, after a period without activity
	ExpiryLot        = "lot"        // each earned lot after a period, first in first out
	// MaxExpiryDays bounds after_days (ten years), so that dates computed from it stay far from
	// any overflow.
	MaxExpiryDays = 3660
)

// ExpiresAt returns when the points of a member last active at last expire.
func (e *Expiry) ExpiresAt(last time.Time) time.Time {
	return last.AddDate(0, 0, e.AfterDays)
}

// EarnInput is everything the earn computation depends on. The agent and the hub build it from
// the same fields of the delta, so both compute the same result.
type EarnInput struct {
	Member   Member         // tier, country and punch counts as the computing side knows them
	Amount   int64          // order total, minor units of Currency
	Currency string         // the program's, or one of earn.currencies
	Lines    []Line         // optional
	At       time.Time      // event time
	Location *time.Location // the store's time zone; nil: UTC
}

// EarnResult is the computed earn of one order.
type EarnResult struct {
	Base          int64            `json:"base"`           // from the rates, before multipliers
	TierBonus     int64            `json:"tier_bonus"`     // added by the tier multiplier
	CampaignBonus int64            `json:"campaign_bonus"` // added by campaigns (multiplier and fixed bonuses)
	Points        int64            `json:"points"`         // total, before earn caps
	Campaigns     []string         `json:"campaigns,omitempty"`
	Punches       map[string]int64 `json:"punches,omitempty"`       // units punched per card
	PunchRewards  []string         `json:"punch_rewards,omitempty"` // cards filled by this order: rewards to give now
}

// ComputeEarn computes the points and punches of an order under the program. It is the one place the
// rules are evaluated, by the agent offline and by the hub online and when it checks a store's
// delta. Combination rule: base points from the rates (each line rounded down); times the
// member's tier multiplier; times the single best campaign multiplier (campaign multipliers do
// not stack); plus every matching campaign's fixed bonus; the total is rounded down once.
//
// An order in another currency of earn.currencies earns at that currency's rate. Category rates
// are written per unit of the program's currency, so a line of such an order earns its category
// rate scaled by the ratio of the currency's rate to the main rate: floor(amount × category rate
// × currency points ÷ (main points × currency unit)), one exact division per line (a line
// without a category rate earns exactly the currency's rate). Campaigns' min_amount, in the
// program's currency, is compared with the order's ProgramAmount. Tier and campaign multipliers
// and bonuses apply as for any order.
func (p *Program) ComputeEarn(in EarnInput) (EarnResult, error) {
	var r EarnResult
	if in.Amount < 0 || in.Amount > MaxAmount {
		return r, Errorf(EINVALID, "amount must be 0 to %d minor units", int64(MaxAmount))
	}
	cur, err := p.EarnRate(in.Currency)
	if err != nil {
		return r, err
	}
	if cur.Currency != p.Currency && p.Earn.PointsPerUnit <= 0 {
		// Validate refuses such a program; an unvalidated one must not divide by zero.
		return r, Errorf(EINVALID, "this program has no main earn rate to read %s sales against", cur.Currency)
	}
	if len(in.Lines) > MaxLines {
		return r, Errorf(EINVALID, "an order has at most %d lines, this one has %d", MaxLines, len(in.Lines))
	}
	lines := in.Lines
	if len(lines) == 0 {
		lines = []Line{{Qty: 1, Amount: in.Amount}}
	}
	// Every line amount is at most MaxAmount and there are at most MaxLines lines, so neither the
	// sum nor a line's amount × rate (rates are at most 1000) can overflow; mulDiv checks anyway.
	var sum int64
	for i, l := range lines {
		switch {
		case l.Amount < 0 || l.Amount > MaxAmount:
			return r, Errorf(EINVALID, "lines[%d]: amount must be 0 to %d minor units", i, int64(MaxAmount))
		case l.Qty < 0 || l.Qty > MaxQty:
			return r, Errorf(EINVALID, "lines[%d]: qty must be 0 to %d", i, MaxQty)
		case !ValidText(l.SKU, MaxIDLength) || !ValidText(l.Category, MaxIDLength):
			return r, Errorf(EINVALID, "lines[%d]: sku and category must be UTF-8 text of at most %d characters, without NUL (U+0000)", i, MaxIDLength)
		}
		sum += l.Amount
		rate := p.Earn.PointsPerUnit
		for _, c := range p.CategoryRates {
			if c.SKU == "" && c.Category == l.Category && l.Category != "" {
				rate = c.PointsPerUnit
			}
		}
		for _, c := range p.CategoryRates {
			if c.SKU != "" && c.SKU == l.SKU {
				rate = c.PointsPerUnit
			}
		}
		base, ok := lineBase(p, cur, l.Amount, rate)
		if !ok || base > MaxPoints {
			return r, tooManyPoints(base)
		}
		r.Base += base
	}
	if sum != in.Amount {
		return r, Errorf(EINVALID, "the lines add up to %d, the amount is %d", sum, in.Amount)
	}
	tierMul := int64(multiplierOne)
	if p.Tiers != nil {
		for _, t := range p.Tiers.Tiers {
			if t.ID == in.Member.Tier && t.Multiplier > 0 {
				tierMul = t.Multiplier
			}
		}
	}
	loc := in.Location
	if loc == nil {
		loc = time.UTC
	}
	value := p.programAmount(in.Amount, cur) // what min_amount, in the program's currency, compares with
	campMul, bonus := int64(multiplierOne), int64(0)
	for i := range p.Campaigns {
		c := &p.Campaigns[i]
		if !c.activeAt(in.At, loc) || !c.Segment.matches(&in.Member) || value < c.MinAmount {
			continue
		}
		r.Campaigns = append(r.Campaigns, c.ID)
		if c.Multiplier > campMul {
			campMul = c.Multiplier
		}
		bonus = min(bonus+c.Bonus, MaxPoints+1) // each bonus is at most MaxPoints: no overflow
	}
	// base × tier × campaign, rounded down once, in exact arithmetic (the product can pass int64).
	withTier, ok1 := mulDiv(r.Base, tierMul, multiplierOne)
	total, ok2 := mulDiv(r.Base, tierMul*campMul, multiplierOne*multiplierOne)
	if !ok1 || !ok2 || total > MaxPoints || bonus > MaxPoints-total {
		return r, tooManyPoints(max(total, bonus))
	}
	total += bonus
	r.TierBonus = withTier - r.Base
	r.CampaignBonus = total - withTier
	r.Points = total
	for _, card := range p.PunchCards {
		var units int64
		for _, l := range lines {
			if card.Counts(l) {
				units += l.Qty
			}
		}
		if units == 0 {
			continue
		}
		if r.Punches == nil {
			r.Punches = map[string]int64{}
		}
		r.Punches[card.ID] = units
		n := card.Fills(in.Member.Punches[card.ID], units)
		if n > int64(MaxLines-len(r.PunchRewards)) {
			return r, Errorf(EINVALID, "this order would fill %d %q cards; one order fills at most %d", n, card.Name, MaxLines)
		}
		for ; n > 0; n-- {
			r.PunchRewards = append(r.PunchRewards, card.ID)
		}
	}
	return r, nil
}

// lineBase returns the base points of a line of amount minor units of cur's currency whose rate is
// rate points per unit of the program's currency, rounded down, and whether it fits in an int64.
// In the program's currency that is amount × rate ÷ unit; in another it is scaled by the ratio of
// the currency's rate to the main rate, in one exact division: rate × its points is at most 10^6
// and main points × its unit at most 10^7, so neither product overflows.
func lineBase(p *Program, cur CurrencyRate, amount, rate int64) (int64, bool) {
	if cur.Currency == p.Currency {
		return mulDiv(amount, rate, p.Earn.UnitMinor)
	}
	return mulDiv(amount, rate*cur.PointsPerUnit, p.Earn.PointsPerUnit*cur.UnitMinor)
}

// PunchCard returns the punch card with the given id.
func (p *Program) PunchCard(id string) (PunchCard, bool) {
	for _, c := range p.PunchCards {
		if c.ID == id {
			return c, true
		}
	}
	return PunchCard{}, false
}

// Action returns the action rule with the given id, or ENOTFOUND.
func (p *Program) Action(id string) (ActionRule, error) {
	for _, a := range p.Actions {
		if a.ID == id {
			return a, nil
		}
	}
	return ActionRule{}, Errorf(ENOTFOUND, "no action rule %q in the program", id)
}

// earnRules lists the ids EarnCaps may name: purchases and every action.
func (p *Program) earnRules() []string {
	out := []string{RulePurchase}
	for _, a := range p.Actions {
		out = append(out, a.ID)
	}
	return out
}

func validateRules(p *Program) error {
	for i, c := range p.CategoryRates {
		if (c.Category == "") == (c.SKU == "") || c.PointsPerUnit < 0 || c.PointsPerUnit > 1000 {
			return Errorf(EINVALID, "category_rates[%d]: a category or a sku (not both), and 0 to 1000 points per unit", i)
		}
	}
	if t := p.Tiers; t != nil {
		if t.Basis != BasisSpend && t.Basis != BasisPoints {
			return Errorf(EINVALID, "tiers.basis must be spend or points, not %q", t.Basis)
		}
		if !slices.Contains([]string{WindowLifetime, WindowCalendar, WindowRolling12M}, t.Window) {
			return Errorf(EINVALID, "tiers.window must be lifetime, calendar_year or rolling_12m, not %q", t.Window)
		}
		seen := map[string]bool{}
		for i, tier := range t.Tiers {
			switch {
			case tier.ID == "" || seen[tier.ID]:
				return Errorf(EINVALID, "tiers[%d]: ids must be present and unique", i)
			case i == 0 && tier.Threshold != 0:
				return Errorf(EINVALID, "tiers[0] is the entry tier: its threshold must be 0")
			case i > 0 && tier.Threshold <= t.Tiers[i-1].Threshold:
				return Errorf(EINVALID, "tier %q: thresholds must rise (%d after %d)", tier.ID, tier.Threshold, t.Tiers[i-1].Threshold)
			case tier.Multiplier < multiplierOne || tier.Multiplier > maxMultiplier:
				return Errorf(EINVALID, "tier %q: multiplier must be 1000 (1x) to %d", tier.ID, maxMultiplier)
			}
			seen[tier.ID] = true
		}
	}
	ids := map[string]bool{}
	for _, c := range p.Campaigns {
		switch {
		case c.ID == "" || ids[c.ID]:
			return Errorf(EINVALID, "campaign ids must be present and unique (%q)", c.ID)
		case !c.End.After(c.Start):
			return Errorf(EINVALID, "campaign %q: end must be after start", c.ID)
		case c.End.Sub(c.Start) > maxCampaignLength:
			return Errorf(EINVALID, "campaign %q: at most a year long", c.ID)
		case c.Multiplier != 0 && (c.Multiplier < multiplierOne || c.Multiplier > maxMultiplier):
			return Errorf(EINVALID, "campaign %q: multiplier must be 1000 (1x) to %d", c.ID, maxMultiplier)
		case c.Multiplier == 0 && c.Bonus <= 0:
			return Errorf(EINVALID, "campaign %q gives nothing: set a multiplier or a bonus", c.ID)
		case c.Bonus < 0 || c.Bonus > MaxPoints || c.MinAmount < 0:
			return Errorf(EINVALID, "campaign %q: bonus and min_amount cannot be negative", c.ID)
		case (c.From == "") != (c.To == ""):
			return Errorf(EINVALID, "campaign %q: give both from and to, or neither", c.ID)
		}
		if c.From != "" {
			for _, hm := range []string{c.From, c.To} {
				if _, err := time.Parse("15:04", hm); err != nil || len(hm) != 5 {
					return Errorf(EINVALID, "campaign %q: hours are HH:MM, not %q", c.ID, hm)
				}
			}
			if c.From == c.To {
				return Errorf(EINVALID, "campaign %q: from and to are the same time", c.ID)
			}
		}
		for _, d := range c.Days {
			if !slices.Contains(weekdays, d) {
				return Errorf(EINVALID, "campaign %q: days are %s, not %q", c.ID, strings.Join(weekdays, ","), d)
			}
		}
		for _, t := range c.Segment.Tiers {
			if p.Tiers == nil || !slices.ContainsFunc(p.Tiers.Tiers, func(x Tier) bool { return x.ID == t }) {
				return Errorf(EINVALID, "campaign %q: segment names tier %q, which does not exist", c.ID, t)
			}
		}
		ids[c.ID] = true
	}
	cards := map[string]bool{}
	for _, c := range p.PunchCards {
		switch {
		case c.ID == "" || cards[c.ID]:
			return Errorf(EINVALID, "punch card ids must be present and unique (%q)", c.ID)
		case (c.SKU == "") == (c.Category == ""):
			return Errorf(EINVALID, "punch card %q: give exactly one of sku and category", c.ID)
		case c.Buy < 1:
			return Errorf(EINVALID, "punch card %q: buy must be at least 1", c.ID)
		}
		if _, err := p.Reward(c.Reward); err != nil {
			return Errorf(EINVALID, "punch card %q: no reward %q in the program", c.ID, c.Reward)
		}
		cards[c.ID] = true
	}
	if r := p.Referral; r != nil && (r.Give < 0 || r.Get < 0 || r.Give+r.Get == 0 || r.Give > MaxPoints || r.Get > MaxPoints || r.MinAmount < 0) {
		return Errorf(EINVALID, "referral: give and get are points (not negative, not both 0), min_amount not negative")
	}
	if e := p.Expiry; e != nil {
		switch {
		case e.Mode != ExpiryInactivity && e.Mode != ExpiryLot:
			return Errorf(EINVALID, "expiry.mode must be inactivity (the whole balance after a period without activity) or lot (each earn after a period, oldest first), not %q", e.Mode)
		case e.AfterDays < 1 || e.AfterDays > MaxExpiryDays:
			return Errorf(EINVALID, "expiry.after_days must be 1 to %d", MaxExpiryDays)
		case e.RemindDays < 0 || e.RemindDays >= e.AfterDays:
			return Errorf(EINVALID, "expiry.remind_days must be 0 to after_days - 1")
		}
	}
	acts := map[string]bool{RulePurchase: true, RuleReferral: true}
	for _, a := range p.Actions {
		switch {
		case a.ID == "" || acts[a.ID]:
			return Errorf(EINVALID, "action ids must be present, unique and not %q (%q)", RulePurchase, a.ID)
		case a.Points <= 0 || a.Points > MaxPoints:
			return Errorf(EINVALID, "action %q: points must be positive", a.ID)
		case a.MaxTimes < 0 || a.MaxTimes > 0 && !slices.Contains([]string{PeriodDay, PeriodWeek, PeriodMonth, PeriodTotal}, a.Period):
			return Errorf(EINVALID, "action %q: max_times needs a period (day, week, month, total)", a.ID)
		}
		acts[a.ID] = true
	}
	return nil
}

// Describe is a one-line account of an earn for a receipt or a log.
func (r EarnResult) Describe() string {
	return fmt.Sprintf("%d base + %d tier + %d campaign = %d", r.Base, r.TierBonus, r.CampaignBonus, r.Points)
}

// mulDiv returns a*b/c rounded down, exactly, for non-negative a, b and positive c, and whether
// the result fits in an int64.
func mulDiv(a, b, c int64) (int64, bool) {
	if c <= 0 || a < 0 || b < 0 {
		return 0, false
	}
	if hi, lo := bits.Mul64(uint64(a), uint64(b)); hi == 0 {
		q := lo / uint64(c)
		return int64(q), q <= math.MaxInt64
	}
	x := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	x.Quo(x, big.NewInt(c))
	return x.Int64(), x.IsInt64()
}

// tooManyPoints is the refusal of an order that would earn more than one delta may carry.
func tooManyPoints(points int64) error {
	return Errorf(EINVALID, "this order would earn %d points or more, over the most one order may earn (%d); check the amount and the lines",
		points, int64(MaxPoints))
}
