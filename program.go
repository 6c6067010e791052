package loyalty

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Program is one version of the loyalty program's rules: how points are earned and what they buy.
// Every delta records the Version it was computed under. Agents receive new versions through the
// sync protocol and evaluate them with this same code.
type Program struct {
	Version      int64         `json:"version"`
	Currency     string        `json:"currency"`
	Earn         EarnRule      `json:"earn"`
	Rewards      []Reward      `json:"rewards"`
	Budgets      []Budget      `json:"budgets,omitempty"`
	MemberLimits []MemberLimit `json:"member_limits,omitempty"`
	EarnCaps     []EarnCap     `json:"earn_caps,omitempty"`
	// OfflineValidity bounds how long a store that has not heard from the hub (no completed pull)
	// goes on redeeming rewards: after it, the store refuses them until it hears from the hub
	// again, so a kill switch reaches an offline store within it, budget or not. Zero (left out):
	// DefaultOfflineValidity. A reward's own OfflineValidity overrides it.
	OfflineValidity Duration `json:"offline_validity,omitempty"`

	CategoryRates []CategoryRate `json:"category_rates,omitempty"`
	Tiers         *TierRules     `json:"tiers,omitempty"`
	Campaigns     []Campaign     `json:"campaigns,omitempty"`
	PunchCards    []PunchCard    `json:"punch_cards,omitempty"`
	Actions       []ActionRule   `json:"actions,omitempty"`
	Expiry        *Expiry        `json:"expiry,omitempty"`
	Referral      *Referral      `json:"referral,omitempty"`
	// PointValue is what points are worth, for the points liability in reports (pointvalue.go).
	PointValue *PointValue `json:"point_value,omitempty"`
	// OnlineTimeZone is the IANA time zone in which the online channel's sales (the web shop,
	// the member app) are read for campaign days and hours, as a store's are in the store's
	// zone; "" is UTC. A program rather than a hub setting: every hub process reads it alike.
	OnlineTimeZone string `json:"online_timezone,omitempty"`
}

// OnlineLocation returns the online channel's time zone (OnlineTimeZone) and its name; UTC when
// none is set, or when the name is unknown (Validate refuses such a program).
func (p *Program) OnlineLocation() (*time.Location, string) {
	if p.OnlineTimeZone == "" {
		return time.UTC, "UTC"
	}
	loc, err := time.LoadLocation(p.OnlineTimeZone)
	if err != nil {
		return time.UTC, "UTC"
	}
	return loc, p.OnlineTimeZone
}

// EarnRule awards PointsPerUnit points for every whole currency unit spent. A currency unit is
// UnitMinor minor units (100 cents for EUR or USD, 1 for JPY).
//
// Rounding: points are rounded down, so 12.99 EUR at 1 point per EUR earns 12 points. Partial
// units are not carried over to the next sale.
type EarnRule struct {
	PointsPerUnit int64 `json:"points_per_unit"`
	UnitMinor     int64 `json:"unit_minor"`
	// Currencies are the other currencies the program earns in, each at its own rate; a sale in
	// a currency that is neither the program's nor listed here earns nothing and is refused.
	Currencies []CurrencyRate `json:"currencies,omitempty"`
}

// CurrencyRate is the earn rate of a sale in a currency other than the program's: PointsPerUnit
// points for every whole unit of UnitMinor minor units of Currency, rounded down like the main
// rate. Everything else money-related in the program (category rates, campaign minimums, reward
// values, money budgets) stays in the program's currency. ComputeEarn reads a sale in this
// currency against category rates and campaign minimums at the ratio of this rate to the main
// one (Program.ProgramAmount), so the chain states its exchange rate once, in points.
// Redemptions carry no currency: their order amounts are in the program's currency.
type CurrencyRate struct {
	Currency      string `json:"currency"`
	PointsPerUnit int64  `json:"points_per_unit"`
	UnitMinor     int64  `json:"unit_minor"`
}

// MaxCurrencies bounds earn.currencies: more than every ISO 4217 code in use.
const MaxCurrencies = 200

// Reward is an item of the reward catalogue.
type Reward struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PointsCost int64  `json:"points_cost"`
	Kind       string `json:"kind"`            // one of RewardKinds: what the POS applies
	Value      int64  `json:"value,omitempty"` // minor units for amount_off and gift_card; percent for percent_off
	// Offline is the offline redemption policy: allow (default), deny, or limit to OfflineMax
	// redemptions per member per day at a store while it cannot reach the hub.
	Offline    string `json:"offline,omitempty"`
	OfflineMax int64  `json:"offline_max,omitempty"`
	// OfflineValidity, if set, replaces the program's offline_validity for this reward.
	OfflineValidity Duration `json:"offline_validity,omitempty"`
	// Disabled is the kill switch: no store or channel may redeem the reward. Connected stores
	// stop within a second; offline stores when their budget lease ends or, budget or not, when
	// they have not heard from the hub for the offline validity.
	Disabled bool `json:"disabled,omitempty"`
	// MaxValue caps a percent_off reward's discount, in minor units (0: no cap).
	MaxValue int64 `json:"max_value,omitempty"`
	// MinOrder is the smallest order (order_amount, minor units) the reward may be used on.
	MinOrder int64 `json:"min_order,omitempty"`
	// Tiers, if set, restricts the reward to members of these tiers.
	Tiers []string `json:"tiers,omitempty"`
	// Stackable rewards may be combined with other stackable rewards on one order; a reward that
	// is not stackable is the only one on its order.
	Stackable bool `json:"stackable,omitempty"`
}

// Stacks checks that a reward may join the rewards already redeemed on an order. It returns
// EINVALID naming the conflict.
func (p *Program) Stacks(reward string, already []string) error {
	if len(already) == 0 {
		return nil
	}
	r, _ := p.Reward(reward)
	for _, id := range already {
		o, _ := p.Reward(id)
		if !r.Stackable || !o.Stackable {
			return Errorf(EINVALID, "%q cannot be combined with %q on one order; use another order or make both stackable", reward, id)
		}
	}
	return nil
}

// Discount returns the minor units a reward takes off an order of orderAmount: its value for
// amount_off, the percentage (capped by MaxValue) for percent_off, nothing for the others.
func (r Reward) Discount(orderAmount int64) int64 {
	switch r.Kind {
	case "amount_off":
		return min(r.Value, orderAmount)
	case "percent_off":
		d := orderAmount * r.Value / 100
		if r.MaxValue > 0 {
			d = min(d, r.MaxValue)
		}
		return d
	}
	return 0
}

// Redeemable checks that a member of tier may use the reward on an order of orderAmount (0: the
// POS did not say). It returns EINVALID with a message for the cashier.
func (r Reward) Redeemable(tier string, orderAmount int64) error {
	if err := r.ForTier(tier); err != nil {
		return err
	}
	return r.FitsOrder(orderAmount)
}

// ForTier checks that a member of tier may have the reward. It returns EINVALID.
func (r Reward) ForTier(tier string) error {
	if len(r.Tiers) > 0 && !slices.Contains(r.Tiers, tier) {
		return Errorf(EINVALID, "%s is for %v members only", r.Name, r.Tiers)
	}
	return nil
}

// FitsOrder checks the reward's min_order against an order of orderAmount (0: the POS did not
// say): where the reward is used, be it a redemption or a voucher's use. It returns EINVALID.
func (r Reward) FitsOrder(orderAmount int64) error {
	if r.MinOrder > 0 && orderAmount < r.MinOrder {
		return Errorf(EINVALID, "%s needs an order of at least %d minor units (send order_amount)", r.Name, r.MinOrder)
	}
	return nil
}

// CheckOrderAmount checks that a redemption of reward says the order's amount where its budgets
// depend on it: a percent_off reward's discount is a share of the order, and an order_value
// budget counts the order. Leaving the amount out would otherwise spend nothing of them. It
// returns EINVALID.
func (p *Program) CheckOrderAmount(reward string, orderAmount int64) error {
	if orderAmount > 0 {
		return nil
	}
	r, err := p.Reward(reward)
	if err != nil {
		return nil // the caller reports the unknown reward
	}
	if r.Kind == "percent_off" {
		return Errorf(EINVALID, "%s is a share of the order: send order_amount, the order total in minor units", r.Name)
	}
	for _, b := range p.Budgets {
		if b.Metric == MetricOrderValue && (b.Reward == "" || b.Reward == reward) {
			return Errorf(EINVALID, "%s counts toward a budget of order value: send order_amount, the order total in minor units", r.Name)
		}
	}
	return nil
}

// CheckVoucher checks that reward may be sold as a voucher under the program's budgets. A
// voucher counts toward its reward's budgets when it is bought, before the order it will be used
// on exists, so it counts the most it can give (Budget.Consumption of a redemption without an
// order amount): the value of an amount_off or gift_card reward, a percent_off reward's
// max_value. A percent_off reward without a max_value under a discount budget, and any reward
// under an order_value budget, depend on that order alone: they are not sold as vouchers, since
// the budget would count what a caller claims instead of what is given. It returns EINVALID.
func (p *Program) CheckVoucher(reward string) error {
	r, err := p.Reward(reward)
	if err != nil {
		return nil // the caller reports the unknown reward
	}
	for _, b := range p.Budgets {
		if b.Reward != "" && b.Reward != reward {
			continue
		}
		switch {
		case b.Metric == MetricOrderValue:
			return Errorf(EINVALID, "%s counts toward budget %s of order value, and a voucher's order is not known when it is bought: "+
				"it is not sold as a voucher (redeem it on the order instead)", r.Name, b.ID)
		case b.Metric == MetricDiscount && r.Kind == "percent_off" && r.MaxValue <= 0:
			return Errorf(EINVALID, "%s is a share of an order not known when a voucher is bought, and budget %s counts its discount: "+
				"it is sold as a voucher only with a max_value", r.Name, b.ID)
		}
	}
	return nil
}

// RewardKinds are the kinds of reward a POS knows how to apply.
var RewardKinds = []string{"amount_off", "percent_off", "free_product", "free_shipping", "gift_card"}

// DefaultProgram is the program a new hub starts with: 1 point per euro and three rewards.
func DefaultProgram() Program {
	return Program{
		Version:  1,
		Currency: "EUR",
		Earn:     EarnRule{PointsPerUnit: 1, UnitMinor: 100},
		Rewards: []Reward{
			{ID: "coffee", Name: "Free coffee", PointsCost: 50, Kind: "free_product"},
			{ID: "five-off", Name: "5.00 EUR off", PointsCost: 100, Kind: "amount_off", Value: 500},
			{ID: "tote", Name: "Tote bag", PointsCost: 250, Kind: "free_product"},
		},
	}
}

// Validate checks that the program is complete and consistent. It returns EINVALID.
func (p *Program) Validate() error {
	if err := ValidateCurrency(p.Currency); err != nil {
		return err
	}
	if p.Earn.UnitMinor <= 0 || p.Earn.UnitMinor > 10_000 {
		return Errorf(EINVALID, "earn.unit_minor must be 1 to 10000 (100 for cents)")
	}
	if p.Earn.PointsPerUnit < 0 || p.Earn.PointsPerUnit > 1000 {
		return Errorf(EINVALID, "earn.points_per_unit must be 0 to 1000")
	}
	if err := validateCurrencies(p); err != nil {
		return err
	}
	if err := p.PointValue.Validate(); err != nil {
		return err
	}
	if err := validOnlineTimeZone(p.OnlineTimeZone); err != nil {
		return err
	}
	seen := make(map[string]bool, len(p.Rewards))
	for i, r := range p.Rewards {
		switch {
		case !validID(r.ID):
			return Errorf(EINVALID, "rewards[%d]: id must be 1 to %d characters", i, MaxIDLength)
		case seen[r.ID]:
			return Errorf(EINVALID, "rewards[%d]: id %q is used twice", i, r.ID)
		case r.PointsCost <= 0 || r.PointsCost > MaxPoints:
			return Errorf(EINVALID, "reward %q: points_cost must be a positive whole number", r.ID)
		case r.Name == "":
			return Errorf(EINVALID, "reward %q: name is required", r.ID)
		case !slices.Contains(RewardKinds, r.Kind):
			return Errorf(EINVALID, "reward %q: kind %q is not one of %v", r.ID, r.Kind, RewardKinds)
		case (r.Kind == "amount_off" || r.Kind == "gift_card") && r.Value <= 0:
			return Errorf(EINVALID, "reward %q: a %s needs a value in minor units", r.ID, r.Kind)
		case r.Kind == "percent_off" && (r.Value < 1 || r.Value > 100):
			return Errorf(EINVALID, "reward %q: a percent_off value is 1 to 100", r.ID)
		case r.Value < 0 || r.MaxValue < 0 || r.MinOrder < 0:
			return Errorf(EINVALID, "reward %q: value, max_value and min_order cannot be negative", r.ID)
		case r.MaxValue > 0 && r.Kind != "percent_off":
			return Errorf(EINVALID, "reward %q: max_value caps percent_off rewards only", r.ID)
		}
		for _, t := range r.Tiers {
			if p.Tiers == nil || !slices.ContainsFunc(p.Tiers.Tiers, func(x Tier) bool { return x.ID == t }) {
				return Errorf(EINVALID, "reward %q: tier %q does not exist", r.ID, t)
			}
		}
		seen[r.ID] = true
	}
	if err := validOfflineValidity("offline_validity", p.OfflineValidity); err != nil {
		return err
	}
	for _, r := range p.Rewards {
		if err := validOfflineValidity(fmt.Sprintf("reward %q: offline_validity", r.ID), r.OfflineValidity); err != nil {
			return err
		}
	}
	if err := validateRules(p); err != nil {
		return err
	}
	return validateBudgets(p)
}

// Bounds of an offline validity (docs/BUDGETS.md, "The kill switch offline"). The default lets
// a store ride out a day without its line; the shortest keeps a connected store (which hears from
// the hub at every heartbeat, seconds apart) clear of it; the longest is the hub's default
// claims.max_offline, beyond which it rejects a store's older sales anyway.
const (
	DefaultOfflineValidity = 24 * time.Hour
	MinOfflineValidity     = time.Minute
	MaxOfflineValidity     = 720 * time.Hour
)

func validOfflineValidity(what string, d Duration) error {
	if d != 0 && (time.Duration(d) < MinOfflineValidity || time.Duration(d) > MaxOfflineValidity) {
		return Errorf(EINVALID, "%s must be %s to %s, or left out for the default of %s; got %s", what,
			Duration(MinOfflineValidity), Duration(MaxOfflineValidity), Duration(DefaultOfflineValidity), d)
	}
	return nil
}

// OfflineValidityOf returns how long a store that has not heard from the hub may go on redeeming
// r: the reward's own offline_validity, else the program's, else DefaultOfflineValidity.
func (p *Program) OfflineValidityOf(r Reward) time.Duration {
	switch {
	case r.OfflineValidity > 0:
		return time.Duration(r.OfflineValidity)
	case p.OfflineValidity > 0:
		return time.Duration(p.OfflineValidity)
	}
	return DefaultOfflineValidity
}

// Duration is a length of time. In JSON (and YAML) it is text with a unit, as Go writes it:
// "24h", "90m", "1h30m"; a bare number is refused, so that 10 is never read as 10 nanoseconds.
type Duration time.Duration

// String writes d as Go does, without zero minutes and seconds: "24h", "1h30m", "1m30s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON implements json.Unmarshaler. It returns EINVALID.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return Errorf(EINVALID, "a duration is text with a unit, such as \"24h\" or \"90m\", not %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return Errorf(EINVALID, "%q is not a duration: write a number with a unit, such as \"24h\" or \"90m\"", s)
	}
	if v == 0 {
		return Errorf(EINVALID, "a duration of %q means nothing here: leave the field out for its default", s)
	}
	*d = Duration(v)
	return nil
}

// EarnPoints returns the points a sale of amount minor units of currency earns at the earn rate
// of its currency (no category rates, tiers or campaigns), rounded down. It returns EINVALID for
// a negative or oversized amount or a currency the program does not earn in.
func (p *Program) EarnPoints(amount int64, currency string) (int64, error) {
	if amount < 0 {
		return 0, Errorf(EINVALID, "amount cannot be negative; use /v1/reverse for a refund")
	} else if amount > MaxAmount {
		return 0, Errorf(EINVALID, "amount %d is larger than the maximum of %d minor units", amount, int64(MaxAmount))
	}
	r, err := p.EarnRate(currency)
	if err != nil {
		return 0, err
	}
	// amount <= 1e12 and PointsPerUnit <= 1000, so the product fits in an int64.
	return amount * r.PointsPerUnit / r.UnitMinor, nil
}

// EarnRate returns the earn rate of a sale in currency: the main rate for the program's own
// currency, the listed rate for one of earn.currencies. A currency the program does not earn in
// is EINVALID, with a message a cashier can act on.
func (p *Program) EarnRate(currency string) (CurrencyRate, error) {
	if err := ValidateCurrency(currency); err != nil {
		return CurrencyRate{}, err
	}
	if currency == p.Currency {
		return CurrencyRate{Currency: currency, PointsPerUnit: p.Earn.PointsPerUnit, UnitMinor: p.Earn.UnitMinor}, nil
	}
	for _, r := range p.Earn.Currencies {
		if r.Currency == currency {
			return r, nil
		}
	}
	return CurrencyRate{}, Errorf(EINVALID, "this program does not earn points in %s; it earns in %s", currency, strings.Join(p.EarnCurrencies(), ", "))
}

// EarnCurrencies lists the currencies the program earns in: its own first, then earn.currencies.
func (p *Program) EarnCurrencies() []string {
	out := []string{p.Currency}
	for _, r := range p.Earn.Currencies {
		out = append(out, r.Currency)
	}
	return out
}

// ProgramAmount returns what amount minor units of currency count as in the program's currency,
// for the rules whose thresholds are written in it (campaigns' min_amount): the amount that
// earns the same base points at the main rate, floor(amount × rate's points × main unit ÷
// (rate's unit × main points)), in exact arithmetic. An amount in the program's currency is
// itself. A result past int64 (possible only at extreme rates) is math.MaxInt64: it passes any
// threshold, as the amount does. It returns EINVALID for a currency the program does not earn in.
func (p *Program) ProgramAmount(amount int64, currency string) (int64, error) {
	r, err := p.EarnRate(currency)
	if err != nil || currency == p.Currency {
		return amount, err
	}
	return p.programAmount(amount, r), nil
}

func (p *Program) programAmount(amount int64, r CurrencyRate) int64 {
	if r.Currency == p.Currency || amount <= 0 {
		return amount
	}
	// Each factor is bounded by validation (points <= 1000, units <= 10000): neither product
	// overflows, and mulDiv is exact past int64.
	v, ok := mulDiv(amount, r.PointsPerUnit*p.Earn.UnitMinor, r.UnitMinor*p.Earn.PointsPerUnit)
	if !ok {
		return math.MaxInt64
	}
	return v
}

// validateCurrencies checks earn.currencies: ISO codes, each once and not the program's own,
// bounded rates like the main one, and the rules that read other currencies against the main
// rate have one to read them against. It returns EINVALID.
func validateCurrencies(p *Program) error {
	cs := p.Earn.Currencies
	if len(cs) == 0 {
		return nil
	}
	if len(cs) > MaxCurrencies {
		return Errorf(EINVALID, "earn.currencies has %d entries; at most %d", len(cs), MaxCurrencies)
	}
	seen := map[string]bool{p.Currency: true}
	for i, r := range cs {
		if err := ValidateCurrency(r.Currency); err != nil {
			return Errorf(EINVALID, "earn.currencies[%d]: %s", i, ErrorMessage(err))
		}
		switch {
		case r.Currency == p.Currency:
			return Errorf(EINVALID, "earn.currencies[%d]: %s is the program's own currency; its rate is earn.points_per_unit and earn.unit_minor", i, r.Currency)
		case seen[r.Currency]:
			return Errorf(EINVALID, "earn.currencies[%d]: %s is listed twice", i, r.Currency)
		case r.UnitMinor <= 0 || r.UnitMinor > 10_000:
			return Errorf(EINVALID, "earn.currencies[%d]: unit_minor of %s must be 1 to 10000 (100 for cents)", i, r.Currency)
		case r.PointsPerUnit < 0 || r.PointsPerUnit > 1000:
			return Errorf(EINVALID, "earn.currencies[%d]: points_per_unit of %s must be 0 to 1000", i, r.Currency)
		}
		seen[r.Currency] = true
	}
	// Category rates and campaign minimums are in the program's currency and are carried over to
	// the others at the ratio of their rate to the main rate: without a main rate there is none.
	if p.Earn.PointsPerUnit == 0 {
		return Errorf(EINVALID, "earn.currencies needs earn.points_per_unit of at least 1: the other currencies' category rates and campaign minimums are read at the ratio of their rate to it")
	}
	// A spend tier adds up sale amounts, and amounts in different currencies do not add up.
	if p.Tiers != nil && p.Tiers.Basis == BasisSpend {
		return Errorf(EINVALID, "earn.currencies cannot be combined with tiers.basis spend: amounts in different currencies do not add up; use tiers.basis points")
	}
	return nil
}

// Reward returns the reward with the given id, or ENOTFOUND.
func (p *Program) Reward(id string) (Reward, error) {
	for _, r := range p.Rewards {
		if r.ID == id {
			return r, nil
		}
	}
	return Reward{}, Errorf(ENOTFOUND, "no reward %q in the catalogue (program version %d)", id, p.Version)
}

// String describes the earn rule for people.
func (r EarnRule) String() string {
	return fmt.Sprintf("%d point(s) per %d minor units, rounded down", r.PointsPerUnit, r.UnitMinor)
}

// validOnlineTimeZone refuses an online_timezone that is not an IANA zone name. "Local" is a
// name LoadLocation takes, but it means the hub machine's zone, which differs between machines.
func validOnlineTimeZone(tz string) error {
	if tz == "" {
		return nil
	}
	if _, err := time.LoadLocation(tz); err != nil || len(tz) > 64 || tz == "Local" {
		return Errorf(EINVALID, "online_timezone %q is not an IANA time zone name such as Europe/Paris (leave it out for UTC)", Truncate(tz, 64))
	}
	return nil
}
