package hub

import (
	"cmp"
	"context"
	"encoding/csv"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// Reports (docs/REPORTS.md): figures of the program over a range of event time, chain-wide or at
// one store, read from the ledger in one read snapshot with a few set-based aggregates. Every
// figure is defined in docs/REPORTS.md; the comments here say how each is read.

// MaxReportRange is the longest range a report covers: a report reads every earn and redemption
// in its range, so the range bounds its cost.
const MaxReportRange = 366 * 24 * time.Hour

// ReportQuery is what a report covers: event times in [From, To), at Store ("" for the chain).
type ReportQuery struct {
	From  time.Time
	To    time.Time
	Store string
}

// Validate checks a report's range and store id.
func (q *ReportQuery) Validate() error {
	switch {
	case q.From.IsZero() || q.To.IsZero():
		return loyalty.Errorf(loyalty.EINVALID, "a report needs from and to (RFC 3339 times or YYYY-MM-DD dates)")
	case !q.To.After(q.From):
		return loyalty.Errorf(loyalty.EINVALID, "a report's to must be after its from")
	case q.To.Sub(q.From) > MaxReportRange:
		return loyalty.Errorf(loyalty.EINVALID, "a report covers at most 366 days; ask for several shorter ranges")
	case q.Store != "" && !loyalty.ValidText(q.Store, loyalty.MaxIDLength):
		return loyalty.Errorf(loyalty.EINVALID, "store id must be at most %d characters of UTF-8 text without NUL (U+0000)", loyalty.MaxIDLength)
	}
	return nil
}

// ParseReportTime reads a report bound: an RFC 3339 time, or a date (YYYY-MM-DD, midnight UTC),
// in UTC years 1970 to 9999. An offset can move a time written in year 9999 into year 10000
// once it is in UTC, and a report's answer, which carries its bounds, could not be written as
// JSON; before 1970 there is no loyalty activity to report (ParseDay, for exports, refuses times
// outside the same years).
func ParseReportTime(what, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, loyalty.Errorf(loyalty.EINVALID, "%s is required (an RFC 3339 time or a YYYY-MM-DD date)", what)
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339, s); err != nil {
			return time.Time{}, loyalty.Errorf(loyalty.EINVALID, "%s %q is neither an RFC 3339 time nor a YYYY-MM-DD date", what, loyalty.Truncate(s, 40))
		}
	}
	t = t.UTC()
	if y := t.Year(); y < 1970 || y > 9999 {
		return time.Time{}, loyalty.Errorf(loyalty.EINVALID, "%s %q is not in the years 1970 to 9999 (in UTC)", what, loyalty.Truncate(s, 40))
	}
	return t, nil
}

// ReportTx is what reports read from storage, each in one statement or two over indexed
// columns. A group key of "" is the whole chain (or the one store asked for); with byStore the
// rows are grouped by store instead.
type ReportTx interface {
	// ReportActivity sums the earns and redemptions with an event time in [q.From, q.To), at
	// q.Store if it is set: one Activity, or one per store with byStore.
	ReportActivity(ctx context.Context, q ReportQuery, byStore bool) ([]Activity, error)
	// ReportMembers counts the members (by home store with byStore; only those of q.Store if it is
	// set): all, those who enrolled in [q.From, q.To), and their balances now.
	ReportMembers(ctx context.Context, q ReportQuery, byStore bool) ([]MemberTotals, error)
	// ReportConflicts counts the conflicts recorded in [q.From, q.To) by kind (and store).
	ReportConflicts(ctx context.Context, q ReportQuery, byStore bool) ([]ConflictCount, error)
	// ReportMonths returns, per UTC calendar month (Year*12 + Month-1) of the range, how many
	// members earned or redeemed in it (at q.Store if set) and how many of those did in the next
	// month too.
	ReportMonths(ctx context.Context, q ReportQuery) ([]MonthActivity, error)
	// ReportCohorts returns, for the members who enrolled in the range (with q.Store as their home
	// store if set) by their month of enrolment, the cohort's size and how many of it earned or
	// redeemed anywhere in each month of the range.
	ReportCohorts(ctx context.Context, q ReportQuery) ([]CohortMonth, error)
	// SetStoreUnsynced keeps what a store last reported of its outbox (unsynced.go).
	SetStoreUnsynced(ctx context.Context, store string, u Unsynced) error
	// StoresUnsynced returns what each store last reported of its outbox, by store (stores that
	// never did are left out).
	StoresUnsynced(ctx context.Context) (map[string]Unsynced, error)

	// InsertSale counts a sale without a member (sales.go) unless its id, or its order at its
	// store, is counted already; it reports whether it inserted.
	InsertSale(ctx context.Context, s Sale) (bool, error)
	// SaleHash returns the content hash of the counted sale with delta id id, if there is one.
	SaleHash(ctx context.Context, id string) (hash string, found bool, err error)
	// ReportSales sums the sales without a member with an event time in [q.From, q.To) (at
	// q.Store if set) by currency, and by store with byStore.
	ReportSales(ctx context.Context, q ReportQuery, byStore bool) ([]SalesTotal, error)
}

// Activity is the ledger's activity of a range (ReportTx.ReportActivity).
type Activity struct {
	Store          string
	Active         int64 // distinct members with an earn or a redemption
	Buyers         int64 // distinct members with a purchase
	RepeatBuyers   int64 // distinct members with two purchases or more
	Purchases      int64
	PointsIssued   int64 // points of earns
	PointsRedeemed int64 // points of redemptions, as a positive number
	Sales          []CurrencySales
}

// CurrencySales is the purchases of a range in one currency.
type CurrencySales struct {
	Currency  string `json:"currency"`
	Purchases int64  `json:"purchases"`
	Amount    int64  `json:"amount"` // net of partial refunds, in minor units of Currency
	Buyers    int64  `json:"buyers"`
}

// MemberTotals is what ReportTx.ReportMembers counts.
type MemberTotals struct {
	Store     string // the home store, with byStore
	Total     int64  // enrolled before the range's end
	Enrolled  int64  // enrolled in the range
	Positive  int64  // the sum of positive balances now: outstanding points
	Overdrawn int64  // the sum of negative balances now, as a positive number
}

// ConflictCount is the conflicts of one kind in a range.
type ConflictCount struct {
	Store  string `json:"-"`
	Kind   string `json:"kind"`
	Count  int64  `json:"count"`
	Amount int64  `json:"amount"`
}

// MonthActivity is the members active in one month and in the next (ReportTx.ReportMonths).
type MonthActivity struct {
	Month    int64 // Year*12 + Month-1, UTC
	Active   int64
	Retained int64 // of Active, those active in the next month too
}

// CohortMonth is one cell of the cohort table (ReportTx.ReportCohorts): of the members who
// enrolled in month Cohort (Size of them), Active earned or redeemed in month Month. A row with
// Month 0 and Active 0 gives a cohort's size when none of it was active.
type CohortMonth struct {
	Cohort int64
	Size   int64
	Month  int64
	Active int64
}

// monthStart returns the first instant of month index m (Year*12 + Month-1), UTC.
func monthStart(m int64) time.Time {
	return time.Date(int(m/12), time.Month(m%12+1), 1, 0, 0, 0, 0, time.UTC)
}

// monthIndex returns the month index of t, UTC.
func monthIndex(t time.Time) int64 {
	t = t.UTC()
	return int64(t.Year())*12 + int64(t.Month()) - 1
}

// Ratio is a figure that is a quotient: null in JSON when its denominator is zero.
type Ratio = *float64

func ratio(num, den float64) Ratio {
	if den == 0 {
		return nil
	}
	r := num / den
	return &r
}

// SummaryReport is GET /v1/reports/summary and `loyalty report summary`.
type SummaryReport struct {
	From      time.Time       `json:"from"`
	To        time.Time       `json:"to"`
	Store     string          `json:"store,omitempty"`
	Members   MembersFigures  `json:"members"`
	Purchases PurchaseFigs    `json:"purchases"`
	Points    PointsFigures   `json:"points"`
	Retention RetentionFigs   `json:"retention"`
	Liability Liability       `json:"liability"`
	Budgets   []BudgetUse     `json:"budgets"`
	Conflicts []ConflictCount `json:"conflicts"`
	Unsynced  UnsyncedTotal   `json:"unsynced"`
	// Adoption compares members' purchases with the sales without a member the POS reported
	// (POST /v1/sales), per currency.
	Adoption []Adoption `json:"adoption"`
}

// Adoption is members' share of a range's sales in one currency: of the orders (adoption rate)
// and of the amount (loyalty-influenced sales).
type Adoption struct {
	Currency          string `json:"currency"`
	MemberPurchases   int64  `json:"member_purchases"`
	MemberAmount      int64  `json:"member_amount"`
	NonMemberSales    int64  `json:"non_member_sales"`
	NonMemberAmount   int64  `json:"non_member_amount"`
	AdoptionRate      Ratio  `json:"adoption_rate"`       // MemberPurchases / (MemberPurchases + NonMemberSales)
	LoyaltySalesShare Ratio  `json:"loyalty_sales_share"` // MemberAmount / (MemberAmount + NonMemberAmount)
}

// adoption sets members' purchases beside the sales without a member, currency by currency.
func adoption(members []CurrencySales, others []SalesTotal) []Adoption {
	by := map[string]*Adoption{}
	get := func(c string) *Adoption {
		if by[c] == nil {
			by[c] = &Adoption{Currency: c}
		}
		return by[c]
	}
	for _, m := range members {
		a := get(m.Currency)
		a.MemberPurchases, a.MemberAmount = m.Purchases, m.Amount
	}
	for _, o := range others {
		a := get(o.Currency)
		a.NonMemberSales, a.NonMemberAmount = o.Count, o.Amount
	}
	out := make([]Adoption, 0, len(by))
	for _, a := range by {
		a.AdoptionRate = ratio(float64(a.MemberPurchases), float64(a.MemberPurchases)+float64(a.NonMemberSales))
		a.LoyaltySalesShare = ratio(float64(a.MemberAmount), float64(a.MemberAmount)+float64(a.NonMemberAmount))
		out = append(out, *a)
	}
	slices.SortFunc(out, func(x, y Adoption) int { return cmp.Compare(x.Currency, y.Currency) })
	return out
}

// UnsyncedTotal adds up what the stores (or the one store) last reported their outboxes hold:
// what they spent offline that the hub has not seen yet, as reported by the stores.
type UnsyncedTotal struct {
	ReportedBy     string           `json:"reported_by"` // "stores"
	Stores         int64            `json:"stores"`      // stores whose last report counts
	Deltas         int64            `json:"deltas"`
	PointsEarned   int64            `json:"points_earned"`
	PointsRedeemed int64            `json:"points_redeemed"`
	Budgets        map[string]int64 `json:"budgets"`
	OldestAt       time.Time        `json:"oldest_at,omitzero"`
	BacklogAgeMS   int64            `json:"backlog_age_ms"`
}

// unsyncedTotal adds up the stores' last reports (store: only that store's), the fresher of what
// this process holds in memory and what is stored.
func (h *Hub) unsyncedTotal(stored map[string]Unsynced, store string, now time.Time) UnsyncedTotal {
	t := UnsyncedTotal{ReportedBy: "stores", Budgets: map[string]int64{}}
	all := maps.Clone(stored)
	if all == nil {
		all = map[string]Unsynced{}
	}
	for id, hl := range h.liveHealth() {
		if u := hl.Unsynced; u != nil {
			if s, ok := all[id]; !ok || u.ReportedAt.After(s.ReportedAt) {
				all[id] = *u
			}
		}
	}
	for id, u := range all {
		if store != "" && id != store || u.Deltas == 0 {
			continue
		}
		t.Stores++
		t.Deltas = loyalty.AddSaturating(t.Deltas, u.Deltas)
		t.PointsEarned = loyalty.AddSaturating(t.PointsEarned, u.PointsEarned)
		t.PointsRedeemed = loyalty.AddSaturating(t.PointsRedeemed, u.PointsRedeemed)
		for b, x := range u.Budgets {
			t.Budgets[b] = loyalty.AddSaturating(t.Budgets[b], x)
		}
		if !u.OldestAt.IsZero() && (t.OldestAt.IsZero() || u.OldestAt.Before(t.OldestAt)) {
			t.OldestAt = u.OldestAt
		}
	}
	if !t.OldestAt.IsZero() {
		t.BacklogAgeMS = max(now.Sub(t.OldestAt), 0).Milliseconds()
	}
	return t
}

// MembersFigures counts members (docs/REPORTS.md, "Members").
type MembersFigures struct {
	Total    int64 `json:"total"`
	Enrolled int64 `json:"enrolled"`
	Active   int64 `json:"active"`
}

// PurchaseFigs are the members' purchases (docs/REPORTS.md, "Purchases").
type PurchaseFigs struct {
	Count              int64          `json:"count"`
	Buyers             int64          `json:"buyers"`
	RepeatBuyers       int64          `json:"repeat_buyers"`
	RepeatPurchaseRate Ratio          `json:"repeat_purchase_rate"`
	Frequency          Ratio          `json:"frequency"`
	ByCurrency         []CurrencyFigs `json:"by_currency"`
}

// CurrencyFigs are the purchases in one currency, never added to another's.
type CurrencyFigs struct {
	CurrencySales
	AOV Ratio `json:"aov"` // Amount / Purchases, minor units
	// CLV is the customer lifetime value in minor units: Amount / Buyers, per year of the range,
	// times the expected lifespan in years (RetentionFigs.LifespanYears); null without churn.
	CLV Ratio `json:"clv"`
}

// PointsFigures are the points issued and redeemed in the range.
type PointsFigures struct {
	Issued         int64 `json:"issued"`
	Redeemed       int64 `json:"redeemed"`
	RedemptionRate Ratio `json:"redemption_rate"`
}

// RetentionFigs are the month-to-month retention and churn of active members.
type RetentionFigs struct {
	Months        []MonthRetention `json:"months"`
	MonthlyChurn  Ratio            `json:"monthly_churn"`  // churned / at risk, over every month with a next month in range
	LifespanYears Ratio            `json:"lifespan_years"` // 1 / (12 × monthly churn)
}

// MonthRetention is one month's active members and how many of them were active the next month.
type MonthRetention struct {
	Month     string `json:"month"` // YYYY-MM, UTC
	Active    int64  `json:"active"`
	Retained  int64  `json:"retained"`
	Churned   int64  `json:"churned"`
	ChurnRate Ratio  `json:"churn_rate"`
}

// Liability is the points members hold now, and what they are worth.
type Liability struct {
	Points    int64  `json:"points"`
	Overdrawn int64  `json:"overdrawn_points"`
	Value     *int64 `json:"value"` // minor units of Currency; null when the program states no point_value
	Currency  string `json:"currency"`
}

// BudgetUse is a budget's use now.
type BudgetUse struct {
	ID          string `json:"id"`
	Metric      string `json:"metric"`
	Limit       int64  `json:"limit"`
	Spent       int64  `json:"spent"`
	Outstanding int64  `json:"leased"`
	Used        Ratio  `json:"used"` // Spent / Limit
}

// reportFigures is what the summary and the stores reports both read of a query's range: for the
// whole chain, or store by store.
type reportFigures struct {
	program  loyalty.Program // the zero program before one was published
	act      []Activity
	mem      []MemberTotals
	conf     []ConflictCount
	sales    []SalesTotal
	unsynced map[string]Unsynced
}

// read reads f of q in tx, per store if byStore.
func (f *reportFigures) read(ctx context.Context, tx Tx, q ReportQuery, byStore bool) error {
	var err error
	if f.program, _, err = tx.Program(ctx); err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		return err
	}
	if f.act, err = tx.ReportActivity(ctx, q, byStore); err != nil {
		return err
	}
	if f.mem, err = tx.ReportMembers(ctx, q, byStore); err != nil {
		return err
	}
	if f.conf, err = tx.ReportConflicts(ctx, q, byStore); err != nil {
		return err
	}
	if f.sales, err = tx.ReportSales(ctx, q, byStore); err != nil {
		return err
	}
	f.unsynced, err = tx.StoresUnsynced(ctx)
	return err
}

// ReportSummary returns the summary report of q.
func (h *Hub) ReportSummary(ctx context.Context, q ReportQuery) (SummaryReport, error) {
	if err := q.Validate(); err != nil {
		return SummaryReport{}, err
	}
	var (
		f       reportFigures
		months  []MonthActivity
		budgets []BudgetUse
	)
	err := h.Store.View(ctx, func(tx Tx) error {
		if q.Store != "" {
			if _, err := tx.StoreInfo(ctx, q.Store); err != nil {
				return err
			}
		}
		err := f.read(ctx, tx, q, false)
		if err != nil {
			return err
		}
		if months, err = tx.ReportMonths(ctx, q); err != nil {
			return err
		}
		budgets, err = budgetUse(ctx, tx, &f.program)
		return err
	})
	if err != nil {
		return SummaryReport{}, err
	}
	r := SummaryReport{From: q.From.UTC(), To: q.To.UTC(), Store: q.Store, Budgets: budgets, Conflicts: f.conf}
	if r.Conflicts == nil {
		r.Conflicts = []ConflictCount{}
	}
	var a Activity
	if len(f.act) > 0 {
		a = f.act[0]
	}
	var m MemberTotals
	if len(f.mem) > 0 {
		m = f.mem[0]
	}
	r.Members = MembersFigures{Total: m.Total, Enrolled: m.Enrolled, Active: a.Active}
	r.Retention = retention(q, months)
	r.Purchases = purchases(q, a, r.Retention.LifespanYears)
	r.Points = PointsFigures{Issued: a.PointsIssued, Redeemed: a.PointsRedeemed,
		RedemptionRate: ratio(float64(a.PointsRedeemed), float64(a.PointsIssued))}
	r.Liability = liability(&f.program, m)
	r.Unsynced = h.unsyncedTotal(f.unsynced, q.Store, h.Now())
	r.Adoption = adoption(a.Sales, f.sales)
	return r, nil
}

// budgetUse reads every budget of the program's use in tx, as Hub.Budgets does: what it spent and
// the quota its stores hold.
func budgetUse(ctx context.Context, tx Tx, p *loyalty.Program) ([]BudgetUse, error) {
	out := []BudgetUse{}
	for _, b := range p.Budgets {
		spent, err := tx.BudgetSpent(ctx, b.ID)
		if err != nil {
			return nil, err
		}
		leased, err := tx.Outstanding(ctx, b.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, BudgetUse{ID: b.ID, Metric: b.Metric, Limit: b.Limit, Spent: spent, Outstanding: leased,
			Used: ratio(float64(spent), float64(b.Limit))})
	}
	return out, nil
}

// purchases computes the purchase figures of a range's activity.
func purchases(q ReportQuery, a Activity, lifespan Ratio) PurchaseFigs {
	p := PurchaseFigs{Count: a.Purchases, Buyers: a.Buyers, RepeatBuyers: a.RepeatBuyers, ByCurrency: []CurrencyFigs{},
		RepeatPurchaseRate: ratio(float64(a.RepeatBuyers), float64(a.Buyers)),
		Frequency:          ratio(float64(a.Purchases), float64(a.Buyers))}
	years := q.To.Sub(q.From).Hours() / 24 / 365.25
	for _, s := range a.Sales {
		c := CurrencyFigs{CurrencySales: s, AOV: ratio(float64(s.Amount), float64(s.Purchases))}
		if lifespan != nil && s.Buyers > 0 {
			v := float64(s.Amount) / float64(s.Buyers) / years * *lifespan
			c.CLV = &v
		}
		p.ByCurrency = append(p.ByCurrency, c)
	}
	slices.SortFunc(p.ByCurrency, func(x, y CurrencyFigs) int { return cmp.Compare(x.Currency, y.Currency) })
	return p
}

// retention computes month-to-month churn: a month counts only if its next month starts before
// the range's end.
func retention(q ReportQuery, months []MonthActivity) RetentionFigs {
	r := RetentionFigs{Months: []MonthRetention{}}
	last := monthIndex(q.To.Add(-time.Millisecond))
	var risk, churned int64
	for _, m := range months {
		if m.Month >= last {
			continue
		}
		x := MonthRetention{Month: monthStart(m.Month).Format("2006-01"), Active: m.Active, Retained: m.Retained,
			Churned: m.Active - m.Retained, ChurnRate: ratio(float64(m.Active-m.Retained), float64(m.Active))}
		r.Months = append(r.Months, x)
		risk += m.Active
		churned += x.Churned
	}
	r.MonthlyChurn = ratio(float64(churned), float64(risk))
	if r.MonthlyChurn != nil && *r.MonthlyChurn > 0 {
		r.LifespanYears = ratio(1, 12**r.MonthlyChurn)
	}
	return r
}

// liability is the points members hold and their value at the program's point value.
func liability(p *loyalty.Program, m MemberTotals) Liability {
	l := Liability{Points: m.Positive, Overdrawn: m.Overdrawn, Currency: p.Currency}
	if v, ok := p.PointValue.Value(m.Positive); ok {
		l.Value = &v
	}
	return l
}

// CohortReport is GET /v1/reports/cohorts and `loyalty report cohorts`.
type CohortReport struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Store   string    `json:"store,omitempty"`
	Cohorts []Cohort  `json:"cohorts"`
}

// Cohort is the members who enrolled in one month, and how many were active in each month since.
type Cohort struct {
	Month     string          `json:"month"` // YYYY-MM, UTC
	Size      int64           `json:"size"`
	Retention []CohortPercent `json:"retention"`
}

// CohortPercent is the share of a cohort active K months after its month of enrolment.
type CohortPercent struct {
	K      int64 `json:"k"`
	Active int64 `json:"active"`
	Rate   Ratio `json:"rate"`
	Churn  Ratio `json:"churn"` // 1 - Rate
}

// ReportCohorts returns the cohort report of q.
func (h *Hub) ReportCohorts(ctx context.Context, q ReportQuery) (CohortReport, error) {
	if err := q.Validate(); err != nil {
		return CohortReport{}, err
	}
	var cells []CohortMonth
	err := h.Store.View(ctx, func(tx Tx) error {
		if q.Store != "" {
			if _, err := tx.StoreInfo(ctx, q.Store); err != nil {
				return err
			}
		}
		var err error
		cells, err = tx.ReportCohorts(ctx, q)
		return err
	})
	if err != nil {
		return CohortReport{}, err
	}
	r := CohortReport{From: q.From.UTC(), To: q.To.UTC(), Store: q.Store, Cohorts: []Cohort{}}
	last := monthIndex(q.To.Add(-time.Millisecond))
	byCohort := map[int64]map[int64]int64{}
	sizes := map[int64]int64{}
	for _, c := range cells {
		sizes[c.Cohort] = c.Size
		if byCohort[c.Cohort] == nil {
			byCohort[c.Cohort] = map[int64]int64{}
		}
		if c.Active > 0 {
			byCohort[c.Cohort][c.Month] = c.Active
		}
	}
	keys := make([]int64, 0, len(sizes))
	for k := range sizes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, m := range keys {
		c := Cohort{Month: monthStart(m).Format("2006-01"), Size: sizes[m], Retention: []CohortPercent{}}
		for month := m; month <= last; month++ {
			n := byCohort[m][month]
			p := CohortPercent{K: month - m, Active: n, Rate: ratio(float64(n), float64(c.Size))}
			if p.Rate != nil {
				churn := 1 - *p.Rate
				p.Churn = &churn
			}
			c.Retention = append(c.Retention, p)
		}
		r.Cohorts = append(r.Cohorts, c)
	}
	return r, nil
}

// StoresReport is GET /v1/reports/stores and `loyalty report stores`.
type StoresReport struct {
	From   time.Time     `json:"from"`
	To     time.Time     `json:"to"`
	Stores []StoreReport `json:"stores"`
}

// StoreReport is one store's figures of a range, and its sync health now.
type StoreReport struct {
	Store              string          `json:"store"`
	Name               string          `json:"name"`
	Health             Health          `json:"health"`
	Active             int64           `json:"active"`
	HomeMembers        int64           `json:"home_members"`
	Enrolled           int64           `json:"enrolled"`
	Purchases          int64           `json:"purchases"`
	Buyers             int64           `json:"buyers"`
	RepeatPurchaseRate Ratio           `json:"repeat_purchase_rate"`
	Sales              []CurrencySales `json:"sales"`
	PointsIssued       int64           `json:"points_issued"`
	PointsRedeemed     int64           `json:"points_redeemed"`
	RedemptionRate     Ratio           `json:"redemption_rate"`
	Liability          Liability       `json:"liability"` // of the members whose home store it is
	Conflicts          []ConflictCount `json:"conflicts"`
	// Unsynced is what the store last reported its outbox holds (nil: it never reported it), and
	// BacklogAgeMS the age of the oldest delta in it at the report's time, in milliseconds.
	Unsynced     *Unsynced  `json:"unsynced"`
	BacklogAgeMS int64      `json:"backlog_age_ms"`
	Adoption     []Adoption `json:"adoption"`
}

// ReportStores returns every store's figures of q's range (q.Store: that store's only).
func (h *Hub) ReportStores(ctx context.Context, q ReportQuery) (StoresReport, error) {
	if err := q.Validate(); err != nil {
		return StoresReport{}, err
	}
	var (
		stores []StoreInfo
		f      reportFigures
	)
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		if q.Store != "" {
			s, err := tx.StoreInfo(ctx, q.Store)
			if err != nil {
				return err
			}
			stores = []StoreInfo{s}
		} else if stores, err = tx.Stores(ctx); err != nil {
			return err
		}
		return f.read(ctx, tx, q, true)
	})
	if err != nil {
		return StoresReport{}, err
	}
	now := h.Now()
	live := h.liveHealth()
	r := StoresReport{From: q.From.UTC(), To: q.To.UTC(), Stores: []StoreReport{}}
	for _, s := range stores {
		sr := StoreReport{Store: s.ID, Name: s.Name, Health: s.Health, Sales: []CurrencySales{}, Conflicts: []ConflictCount{}}
		if hl, ok := live[s.ID]; ok {
			sr.Health = hl
		}
		for _, a := range f.act {
			if a.Store == s.ID {
				sr.Active, sr.Purchases, sr.Buyers = a.Active, a.Purchases, a.Buyers
				sr.RepeatPurchaseRate = ratio(float64(a.RepeatBuyers), float64(a.Buyers))
				sr.PointsIssued, sr.PointsRedeemed = a.PointsIssued, a.PointsRedeemed
				sr.RedemptionRate = ratio(float64(a.PointsRedeemed), float64(a.PointsIssued))
				sr.Sales = append(sr.Sales, a.Sales...)
			}
		}
		var m MemberTotals
		for _, x := range f.mem {
			if x.Store == s.ID {
				m = x
			}
		}
		sr.HomeMembers, sr.Enrolled, sr.Liability = m.Total, m.Enrolled, liability(&f.program, m)
		for _, c := range f.conf {
			if c.Store == s.ID {
				sr.Conflicts = append(sr.Conflicts, c)
			}
		}
		sr.Unsynced, sr.Health.Unsynced = sr.Health.Unsynced, nil
		if u, ok := f.unsynced[s.ID]; ok && (sr.Unsynced == nil || u.ReportedAt.After(sr.Unsynced.ReportedAt)) {
			sr.Unsynced = &u
		}
		sr.BacklogAgeMS = sr.Unsynced.BacklogAge(now).Milliseconds()
		var own []SalesTotal
		for _, x := range f.sales {
			if x.Store == s.ID {
				own = append(own, x)
			}
		}
		sr.Adoption = adoption(sr.Sales, own)
		r.Stores = append(r.Stores, sr)
	}
	return r, nil
}

// liveHealth returns the health this process holds in memory of the stores connected to it,
// fresher than what was last written (Seen).
func (h *Hub) liveHealth() map[string]Health {
	h.healthMu.Lock()
	defer h.healthMu.Unlock()
	out := make(map[string]Health, len(h.health))
	for k, v := range h.health {
		if v.Connected {
			out[k] = v
		}
	}
	return out
}

// CSV rendering: one figure a row (figure, currency, value), so that a spreadsheet reads every
// report the same way; a null ratio is an empty cell.

func fmtRatio(r Ratio) string {
	if r == nil || math.IsNaN(*r) || math.IsInf(*r, 0) {
		return ""
	}
	return strconv.FormatFloat(*r, 'f', -1, 64)
}

func fmtInt(v int64) string { return strconv.FormatInt(v, 10) }

// WriteCSV writes the summary as CSV rows of store, figure, currency, value.
func (r SummaryReport) WriteCSV(w io.Writer) error {
	c := csv.NewWriter(w)
	c.Write([]string{"store", "figure", "currency", "value"})
	row := func(fig, cur, v string) { c.Write([]string{r.Store, fig, cur, v}) }
	row("members_total", "", fmtInt(r.Members.Total))
	row("members_enrolled", "", fmtInt(r.Members.Enrolled))
	row("members_active", "", fmtInt(r.Members.Active))
	row("purchases", "", fmtInt(r.Purchases.Count))
	row("buyers", "", fmtInt(r.Purchases.Buyers))
	row("repeat_buyers", "", fmtInt(r.Purchases.RepeatBuyers))
	row("repeat_purchase_rate", "", fmtRatio(r.Purchases.RepeatPurchaseRate))
	row("purchase_frequency", "", fmtRatio(r.Purchases.Frequency))
	for _, s := range r.Purchases.ByCurrency {
		row("purchases", s.Currency, fmtInt(s.Purchases))
		row("sales_amount", s.Currency, fmtInt(s.Amount))
		row("buyers", s.Currency, fmtInt(s.Buyers))
		row("aov", s.Currency, fmtRatio(s.AOV))
		row("clv", s.Currency, fmtRatio(s.CLV))
	}
	row("points_issued", "", fmtInt(r.Points.Issued))
	row("points_redeemed", "", fmtInt(r.Points.Redeemed))
	row("redemption_rate", "", fmtRatio(r.Points.RedemptionRate))
	row("monthly_churn", "", fmtRatio(r.Retention.MonthlyChurn))
	row("lifespan_years", "", fmtRatio(r.Retention.LifespanYears))
	row("liability_points", "", fmtInt(r.Liability.Points))
	row("overdrawn_points", "", fmtInt(r.Liability.Overdrawn))
	if r.Liability.Value != nil {
		row("liability_value", r.Liability.Currency, fmtInt(*r.Liability.Value))
	}
	for _, a := range r.Adoption {
		row("non_member_sales", a.Currency, fmtInt(a.NonMemberSales))
		row("non_member_amount", a.Currency, fmtInt(a.NonMemberAmount))
		row("adoption_rate", a.Currency, fmtRatio(a.AdoptionRate))
		row("loyalty_sales_share", a.Currency, fmtRatio(a.LoyaltySalesShare))
	}
	row("unsynced_stores", "", fmtInt(r.Unsynced.Stores))
	row("unsynced_deltas", "", fmtInt(r.Unsynced.Deltas))
	row("unsynced_points_earned", "", fmtInt(r.Unsynced.PointsEarned))
	row("unsynced_points_redeemed", "", fmtInt(r.Unsynced.PointsRedeemed))
	row("unsynced_backlog_age_ms", "", fmtInt(r.Unsynced.BacklogAgeMS))
	for _, b := range r.Budgets {
		row("budget_spent:"+b.ID, "", fmtInt(b.Spent))
		row("budget_used:"+b.ID, "", fmtRatio(b.Used))
	}
	for _, k := range r.Conflicts {
		row("conflicts:"+k.Kind, "", fmtInt(k.Count))
	}
	c.Flush()
	return c.Error()
}

// WriteCSV writes the cohort table as CSV: one row per cohort and month after enrolment.
func (r CohortReport) WriteCSV(w io.Writer) error {
	c := csv.NewWriter(w)
	c.Write([]string{"cohort", "size", "k", "active", "rate", "churn"})
	for _, co := range r.Cohorts {
		for _, p := range co.Retention {
			c.Write([]string{co.Month, fmtInt(co.Size), fmtInt(p.K), fmtInt(p.Active), fmtRatio(p.Rate), fmtRatio(p.Churn)})
		}
	}
	c.Flush()
	return c.Error()
}

// WriteCSV writes the stores report as CSV: one row per store and currency of sales (a store
// without sales has one row with an empty currency).
func (r StoresReport) WriteCSV(w io.Writer) error {
	c := csv.NewWriter(w)
	c.Write([]string{"store", "connected", "last_seen", "outbox", "active", "purchases", "currency", "sales_purchases", "sales_amount",
		"non_member_sales", "non_member_amount", "points_issued", "points_redeemed", "liability_points", "conflicts",
		"unsynced_deltas", "unsynced_points_earned", "unsynced_points_redeemed", "backlog_age_ms"})
	for _, s := range r.Stores {
		seen := ""
		if !s.Health.LastSeen.IsZero() {
			seen = s.Health.LastSeen.UTC().Format(time.RFC3339)
		}
		var conflicts int64
		for _, k := range s.Conflicts {
			conflicts += k.Count
		}
		var u Unsynced
		if s.Unsynced != nil {
			u = *s.Unsynced
		}
		rows := s.Adoption // one row per currency of sales, members' or not
		if len(rows) == 0 {
			rows = []Adoption{{}}
		}
		for _, x := range rows {
			c.Write([]string{s.Store, strconv.FormatBool(s.Health.Connected), seen, fmtInt(s.Health.Outbox), fmtInt(s.Active),
				fmtInt(s.Purchases), x.Currency, fmtInt(x.MemberPurchases), fmtInt(x.MemberAmount), fmtInt(x.NonMemberSales),
				fmtInt(x.NonMemberAmount), fmtInt(s.PointsIssued), fmtInt(s.PointsRedeemed), fmtInt(s.Liability.Points), fmtInt(conflicts),
				fmtInt(u.Deltas), fmtInt(u.PointsEarned), fmtInt(u.PointsRedeemed), fmtInt(s.BacklogAgeMS)})
		}
	}
	c.Flush()
	return c.Error()
}
