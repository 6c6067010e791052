package hub_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// reportSeed returns the seed of a randomised report test: LOYALTY_REPORT_SEED if set (to replay
// a failure), else a new one. The test logs it.
func reportSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv("LOYALTY_REPORT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("LOYALTY_REPORT_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay: LOYALTY_REPORT_SEED=%d go test ./hub -run %s)", seed, seed, t.Name())
	return seed
}

// history is a generated ledger: what the test made and pushed, kept to compute every report
// figure itself.
type history struct {
	members map[string]histMember
	deltas  []loyalty.Delta // applied, in order
	at      map[string]time.Time
	sales   []loyalty.Delta // sales without a member, counted
}

type histMember struct {
	id, home string
	created  time.Time
}

// genHistory builds a chain of three stores and a random history of six months on h: members
// enrolling over the months, sales in two currencies, redemptions (some overdrawing, which are
// conflicts), full reversals and partial refunds. h's clock follows the events.
func genHistory(t *testing.T, h *hub.Hub, clock *time.Time, rng *rand.Rand, start time.Time) *history {
	t.Helper()
	ctx := context.Background()
	stores := []string{"s1", "s2", "s3"}
	for _, s := range stores {
		if _, _, err := h.CreateStore(ctx, s, "Store "+s); err != nil {
			t.Fatal(err)
		}
	}
	p := loyalty.DefaultProgram()
	p.Earn.Currencies = []loyalty.CurrencyRate{{Currency: "CHF", PointsPerUnit: 2, UnitMinor: 100}}
	p.PointValue = &loyalty.PointValue{Minor: 1, Points: 2}
	p.Actions = []loyalty.ActionRule{{ID: "review", Points: 25}}
	if _, err := h.SetProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	pulled := func() {
		for _, s := range stores {
			if _, err := h.Pull(ctx, s, lsync.Pull{Limit: 1000}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pulled()
	p, err := h.Program(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hs := &history{members: map[string]histMember{}, at: map[string]time.Time{}}
	var ids []string
	var sales []loyalty.Delta // earns not yet reversed in full
	reversals := map[string][]loyalty.Delta{}
	balances := map[string]int64{}
	apply := func(d loyalty.Delta) {
		t.Helper()
		*clock = d.OccurredAt.Add(time.Second)
		ack, err := h.Push(ctx, d.Store, []loyalty.Delta{d})
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		if r := ack.Results[0]; r.Status != lsync.StatusApplied {
			t.Fatalf("%s %s: got %s %s (%s), want applied", d.Kind, d.ID, r.Status, r.Code, r.Message)
		}
		hs.deltas = append(hs.deltas, d)
		hs.at[d.ID] = *clock
		balances[d.Member] += d.Points
	}
	at := start
	end := start.AddDate(0, 6, 0)
	for at.Before(end) {
		at = at.Add(time.Duration(rng.IntN(20)+1) * time.Hour)
		store := stores[rng.IntN(len(stores))]
		switch x := rng.IntN(100); {
		case x < 12 || len(ids) < 3: // a member enrols
			*clock = at
			id := fmt.Sprintf("m%d", len(ids)+1)
			if _, err := h.CreateMember(ctx, loyalty.Member{ID: id, HomeStore: store}); err != nil {
				t.Fatal(err)
			}
			hs.members[id] = histMember{id: id, home: store, created: at}
			ids = append(ids, id)
			pulled()
		case x < 16: // an action online (a review): points issued, but no purchase and no activity
			*clock = at
			m := ids[rng.IntN(len(ids))]
			r, err := h.Action(ctx, loyalty.ActionRequest{OrderID: "R-" + strconv.Itoa(len(hs.deltas)), MemberID: m, Action: "review"})
			if err != nil {
				t.Fatal(err)
			}
			hs.deltas = append(hs.deltas, loyalty.Delta{ID: r.Deltas[0], Store: loyalty.OnlineStore, Member: m, Kind: loyalty.KindEarn,
				Rule: "review", Points: r.Points, OccurredAt: at})
			balances[m] += r.Points
		case x < 30: // a sale without a member; its retry, and another sale for its order, count nothing
			d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: store, Kind: loyalty.KindSale, Amount: int64(rng.IntN(20000) + 1),
				Currency: []string{"EUR", "CHF", "USD"}[rng.IntN(3)], OccurredAt: at, OrderID: "N-" + strconv.Itoa(len(hs.sales))}
			*clock = at.Add(time.Second)
			want := []string{lsync.StatusApplied, lsync.StatusDuplicate, lsync.StatusRejected}
			again := d
			again.ID = loyalty.NewDeltaID()
			ack, err := h.Push(ctx, store, []loyalty.Delta{d, d, again})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range ack.Results {
				if r.Status != want[i] {
					t.Fatalf("sale without a member, delivery %d: %s %s (%s), want %s", i, r.Status, r.Code, r.Message, want[i])
				}
			}
			hs.sales = append(hs.sales, d)
			if rng.IntN(5) == 0 { // the member's card is scanned after all: the order becomes a member's purchase
				m := ids[rng.IntN(len(ids))]
				apply(loyalty.Delta{ID: loyalty.NewDeltaID(), Store: store, Member: m, Kind: loyalty.KindEarn, Amount: d.Amount,
					Currency: "EUR", Points: d.Amount / 100, RuleVersion: p.Version, OccurredAt: at.Add(time.Minute), OrderID: d.OrderID})
				at = at.Add(time.Minute)
			}
		case x < 70: // a sale
			m := ids[rng.IntN(len(ids))]
			amount := int64(rng.IntN(20000) + 50)
			d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: store, Member: m, Kind: loyalty.KindEarn, Amount: amount,
				Currency: "EUR", Points: amount / 100, RuleVersion: p.Version, OccurredAt: at, OrderID: "O-" + strconv.Itoa(len(hs.deltas))}
			if rng.IntN(4) == 0 {
				d.Currency, d.Points = "CHF", amount*2/100
			}
			apply(d)
			sales = append(sales, d)
		case x < 85: // a redemption, sometimes more than the balance (offline: a conflict)
			m := ids[rng.IntN(len(ids))]
			r := p.Rewards[rng.IntN(len(p.Rewards))]
			if balances[m] < r.PointsCost && rng.IntN(3) != 0 {
				continue
			}
			*clock = at
			hold(t, h, store, m) // the till scanned the member's code
			apply(loyalty.Delta{ID: loyalty.NewDeltaID(), Store: store, Member: m, Kind: loyalty.KindRedeem, Points: -r.PointsCost,
				Reward: r.ID, RuleVersion: p.Version, OccurredAt: at})
		case x < 92 && len(sales) > 0: // a sale reversed in full (what partial refunds left of it)
			i := rng.IntN(len(sales))
			s := sales[i]
			sales = slices.Delete(sales, i, i+1)
			r := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: s.Store, Member: s.Member, OrderID: s.OrderID, OccurredAt: at}
			r.Undo(loyalty.OrderEntry{Delta: s, Reversals: reversals[s.ID]})
			apply(r)
		case len(sales) > 0: // a partial refund; now and then of all that is left
			i := rng.IntN(len(sales))
			s := sales[i]
			left := s.Amount
			for _, r := range reversals[s.ID] {
				left -= r.Amount
			}
			amount := left
			if left >= 2 && rng.IntN(4) != 0 {
				amount = 1 + rng.Int64N(left-1)
			}
			r := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: s.Store, Member: s.Member, OrderID: s.OrderID, OccurredAt: at}
			if err := r.RefundPart(loyalty.OrderEntry{Delta: s, Reversals: reversals[s.ID]}, loyalty.Refund{Amount: amount}, p.PunchCardsOf()); err != nil {
				t.Fatal(err)
			}
			apply(r)
			reversals[s.ID] = append(reversals[s.ID], r)
			if amount == left { // refunded in full, in parts: nothing left to refund
				sales = slices.Delete(sales, i, i+1)
			}
		}
	}
	*clock = end.Add(time.Hour)
	return hs
}

// expected computes a summary's figures from the history alone (docs/REPORTS.md's definitions).
type expected struct {
	total, enrolled, active      int64
	purchases, buyers, repeaters int64
	issued, redeemed             int64
	liability, overdrawn         int64
	byCurrency                   map[string]hub.CurrencySales
	nonMember                    map[string]hub.SalesTotal
	monthActive, monthRetained   map[int64]int64
	cohortSize                   map[int64]int64
	cohortActive                 map[[2]int64]int64
}

func monthOf(t time.Time) int64 { t = t.UTC(); return int64(t.Year())*12 + int64(t.Month()) - 1 }

func (hs *history) expect(from, to time.Time, store string) expected {
	e := expected{byCurrency: map[string]hub.CurrencySales{}, nonMember: map[string]hub.SalesTotal{}, monthActive: map[int64]int64{}, monthRetained: map[int64]int64{},
		cohortSize: map[int64]int64{}, cohortActive: map[[2]int64]int64{}}
	in := func(x time.Time) bool { return !x.Before(from) && x.Before(to) }
	earned := map[[2]string]bool{} // store and order of every member's purchase
	for _, d := range hs.deltas {
		if d.Kind == loyalty.KindEarn {
			earned[[2]string{d.Store, d.OrderID}] = true
		}
	}
	for _, d := range hs.sales {
		if in(d.EventTime()) && (store == "" || d.Store == store) && !earned[[2]string{d.Store, d.OrderID}] {
			n := e.nonMember[d.Currency]
			n.Currency, n.Count, n.Amount = d.Currency, n.Count+1, n.Amount+d.Amount
			e.nonMember[d.Currency] = n
		}
	}
	full := map[string]bool{}
	refunded := map[string]int64{}
	balance := map[string]int64{}
	for _, d := range hs.deltas {
		balance[d.Member] += d.Points
		if d.Kind == loyalty.KindReverse {
			if d.Amount == 0 {
				full[d.Reverses] = true
			} else {
				refunded[d.Reverses] += d.Amount
			}
		}
	}
	for _, m := range hs.members {
		if store != "" && m.home != store {
			continue
		}
		if m.created.Before(to) {
			e.total++
		}
		if in(m.created) {
			e.enrolled++
			e.cohortSize[monthOf(m.created)]++
		}
		if b := balance[m.id]; b > 0 {
			e.liability += b
		} else {
			e.overdrawn -= b
		}
	}
	active := map[string]bool{}
	buys := map[string]int64{}
	buyersIn := map[string]map[string]bool{}
	months := map[int64]map[string]bool{}
	anyMonths := map[[2]int64]map[string]bool{} // cohort activity is anywhere in the chain
	for _, d := range hs.deltas {
		if (d.Kind != loyalty.KindEarn && d.Kind != loyalty.KindRedeem) || !in(d.EventTime()) {
			continue
		}
		mon := monthOf(d.EventTime())
		if d.Rule != "" { // an action: its points count as issued, nothing else
			if store == "" || d.Store == store {
				e.issued += d.Points
			}
			continue
		}
		if m := hs.members[d.Member]; in(m.created) && (store == "" || m.home == store) {
			k := [2]int64{monthOf(m.created), mon}
			if anyMonths[k] == nil {
				anyMonths[k] = map[string]bool{}
			}
			anyMonths[k][d.Member] = true
		}
		if store != "" && d.Store != store {
			continue
		}
		active[d.Member] = true
		if months[mon] == nil {
			months[mon] = map[string]bool{}
		}
		months[mon][d.Member] = true
		if d.Kind == loyalty.KindRedeem {
			e.redeemed -= d.Points
			continue
		}
		e.issued += d.Points
		if full[d.ID] || d.Amount-refunded[d.ID] <= 0 { // reversed in full, at once or in parts
			continue
		}
		e.purchases++
		buys[d.Member]++
		c := e.byCurrency[d.Currency]
		c.Currency = d.Currency
		c.Purchases++
		c.Amount += d.Amount - refunded[d.ID]
		if buyersIn[d.Currency] == nil {
			buyersIn[d.Currency] = map[string]bool{}
		}
		buyersIn[d.Currency][d.Member] = true
		c.Buyers = int64(len(buyersIn[d.Currency]))
		e.byCurrency[d.Currency] = c
	}
	e.active = int64(len(active))
	for _, n := range buys {
		e.buyers++
		if n >= 2 {
			e.repeaters++
		}
	}
	for mon, ms := range months {
		e.monthActive[mon] = int64(len(ms))
		for m := range ms {
			if months[mon+1][m] {
				e.monthRetained[mon]++
			}
		}
	}
	for k, ms := range anyMonths {
		e.cohortActive[k] = int64(len(ms))
	}
	return e
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func ratioIs(t *testing.T, what string, got hub.Ratio, num, den float64) {
	t.Helper()
	switch {
	case den == 0 && got != nil:
		t.Errorf("%s = %v, want null (nothing to divide by)", what, *got)
	case den != 0 && got == nil:
		t.Errorf("%s = null, want %v", what, num/den)
	case den != 0 && !near(*got, num/den):
		t.Errorf("%s = %v, want %v", what, *got, num/den)
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// The reports of a random history match the figures the test computes from the deltas it made,
// chain-wide and per store, over a range whose edges fall inside months.
func TestReports_MatchTheLedger(t *testing.T) {
	rng := rand.New(rand.NewPCG(reportSeed(t), 1))
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := start
	h := hub.New(newStore(t))
	h.KEK = seal.NewRandom()
	h.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h.Now = func() time.Time { return clock }
	if err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	hs := genHistory(t, h, &clock, rng, start)
	t.Logf("%d members, %d deltas", len(hs.members), len(hs.deltas))

	from := start.AddDate(0, 1, rng.IntN(20))
	to := start.AddDate(0, 4+rng.IntN(2), rng.IntN(20))
	for _, store := range []string{"", "s1", "s2"} {
		t.Run("store="+store, func(t *testing.T) {
			q := hub.ReportQuery{From: from, To: to, Store: store}
			e := hs.expect(from, to, store)
			r, err := h.ReportSummary(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "members.total", r.Members.Total, e.total)
			eq(t, "members.enrolled", r.Members.Enrolled, e.enrolled)
			eq(t, "members.active", r.Members.Active, e.active)
			eq(t, "purchases.count", r.Purchases.Count, e.purchases)
			eq(t, "purchases.buyers", r.Purchases.Buyers, e.buyers)
			eq(t, "purchases.repeat_buyers", r.Purchases.RepeatBuyers, e.repeaters)
			ratioIs(t, "repeat_purchase_rate", r.Purchases.RepeatPurchaseRate, float64(e.repeaters), float64(e.buyers))
			ratioIs(t, "frequency", r.Purchases.Frequency, float64(e.purchases), float64(e.buyers))
			eq(t, "points.issued", r.Points.Issued, e.issued)
			eq(t, "points.redeemed", r.Points.Redeemed, e.redeemed)
			ratioIs(t, "redemption_rate", r.Points.RedemptionRate, float64(e.redeemed), float64(e.issued))
			eq(t, "liability.points", r.Liability.Points, e.liability)
			eq(t, "liability.overdrawn", r.Liability.Overdrawn, e.overdrawn)
			if r.Liability.Value == nil || *r.Liability.Value != e.liability/2 {
				t.Errorf("liability.value = %v, want %d (a point is worth half a cent)", r.Liability.Value, e.liability/2)
			}

			// Month-to-month churn, and the lifespan and CLV computed from it.
			last := monthOf(to.Add(-time.Millisecond))
			var risk, churned int64
			var months []string
			for mon := monthOf(from); mon < last; mon++ {
				if e.monthActive[mon] == 0 {
					continue
				}
				months = append(months, time.Date(int(mon/12), time.Month(mon%12+1), 1, 0, 0, 0, 0, time.UTC).Format("2006-01"))
				risk += e.monthActive[mon]
				churned += e.monthActive[mon] - e.monthRetained[mon]
			}
			var gotMonths []string
			for _, m := range r.Retention.Months {
				gotMonths = append(gotMonths, m.Month)
				mon := monthOf(mustMonth(t, m.Month))
				eq(t, m.Month+" active", m.Active, e.monthActive[mon])
				eq(t, m.Month+" retained", m.Retained, e.monthRetained[mon])
			}
			if !slices.Equal(gotMonths, months) {
				t.Errorf("retention months %v, want %v", gotMonths, months)
			}
			ratioIs(t, "monthly_churn", r.Retention.MonthlyChurn, float64(churned), float64(risk))
			var lifespan float64
			if churned > 0 {
				lifespan = float64(risk) / (12 * float64(churned))
				ratioIs(t, "lifespan_years", r.Retention.LifespanYears, 1, 12*float64(churned)/float64(risk))
			} else if r.Retention.LifespanYears != nil {
				t.Errorf("lifespan_years = %v without churn, want null", *r.Retention.LifespanYears)
			}

			var currencies []string
			for _, c := range r.Purchases.ByCurrency {
				currencies = append(currencies, c.Currency)
				w := e.byCurrency[c.Currency]
				eq(t, c.Currency+" purchases", c.Purchases, w.Purchases)
				eq(t, c.Currency+" amount", c.Amount, w.Amount)
				eq(t, c.Currency+" buyers", c.Buyers, w.Buyers)
				ratioIs(t, c.Currency+" aov", c.AOV, float64(w.Amount), float64(w.Purchases))
				if churned > 0 {
					years := to.Sub(from).Hours() / 24 / 365.25
					ratioIs(t, c.Currency+" clv", c.CLV, float64(w.Amount)/float64(w.Buyers)/years*lifespan, 1)
				}
			}
			if len(currencies) != len(e.byCurrency) {
				t.Errorf("currencies %v, want those of %v", currencies, e.byCurrency)
			}

			checkAdoption(t, r.Adoption, e)

			// Conflicts by kind, from the hub's list of conflicts.
			all, err := h.Conflicts(ctx, 100000)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{}
			for _, c := range all {
				if !c.At.Before(from) && c.At.Before(to) && (store == "" || c.Store == store) {
					want[c.Kind]++
				}
			}
			got := map[string]int64{}
			for _, c := range r.Conflicts {
				got[c.Kind] = c.Count
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("conflicts %v, want %v", got, want)
			}

			// Cohorts: members who enrolled in the range, by month, active anywhere in each month.
			co, err := h.ReportCohorts(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(co.Cohorts) != len(e.cohortSize) {
				t.Errorf("%d cohorts, want %d", len(co.Cohorts), len(e.cohortSize))
			}
			for _, c := range co.Cohorts {
				m := monthOf(mustMonth(t, c.Month))
				eq(t, "cohort "+c.Month+" size", c.Size, e.cohortSize[m])
				if n := int64(len(c.Retention)); n != last-m+1 {
					t.Errorf("cohort %s: %d months, want %d", c.Month, n, last-m+1)
				}
				for _, p := range c.Retention {
					eq(t, fmt.Sprintf("cohort %s k=%d active", c.Month, p.K), p.Active, e.cohortActive[[2]int64{m, m + p.K}])
				}
			}
		})
	}

	// Per store: every store's figures at once match each store's own summary's.
	sr, err := h.ReportStores(ctx, hub.ReportQuery{From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.Stores) != 3 {
		t.Fatalf("%d stores in the report, want 3", len(sr.Stores))
	}
	for _, s := range sr.Stores {
		e := hs.expect(from, to, s.Store)
		eq(t, s.Store+" active", s.Active, e.active)
		eq(t, s.Store+" purchases", s.Purchases, e.purchases)
		eq(t, s.Store+" points issued", s.PointsIssued, e.issued)
		eq(t, s.Store+" points redeemed", s.PointsRedeemed, e.redeemed)
		eq(t, s.Store+" home members", s.HomeMembers, e.total)
		eq(t, s.Store+" liability", s.Liability.Points, e.liability)
		for _, c := range s.Sales {
			eq(t, s.Store+" "+c.Currency+" amount", c.Amount, e.byCurrency[c.Currency].Amount)
		}
		checkAdoption(t, s.Adoption, e)
	}
}

func mustMonth(t *testing.T, s string) time.Time {
	t.Helper()
	m, err := time.Parse("2006-01", s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A report refuses a range that is empty, reversed, longer than MaxReportRange, or at an
// unknown store, with codes an operator can act on.
func TestReports_Refusals(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	for _, c := range []struct {
		q    hub.ReportQuery
		code string
	}{
		{hub.ReportQuery{}, loyalty.EINVALID},
		{hub.ReportQuery{From: t0, To: t0}, loyalty.EINVALID},
		{hub.ReportQuery{From: t0, To: t0.Add(-time.Hour)}, loyalty.EINVALID},
		{hub.ReportQuery{From: t0, To: t0.Add(hub.MaxReportRange + time.Millisecond)}, loyalty.EINVALID},
		{hub.ReportQuery{From: t0, To: t0.Add(time.Hour), Store: "nowhere"}, loyalty.ENOTFOUND},
	} {
		if _, err := h.ReportSummary(ctx, c.q); loyalty.ErrorCode(err) != c.code {
			t.Errorf("summary %+v: %v, want %s", c.q, err, c.code)
		}
		if _, err := h.ReportCohorts(ctx, c.q); loyalty.ErrorCode(err) != c.code {
			t.Errorf("cohorts %+v: %v, want %s", c.q, err, c.code)
		}
		if _, err := h.ReportStores(ctx, c.q); loyalty.ErrorCode(err) != c.code {
			t.Errorf("stores %+v: %v, want %s", c.q, err, c.code)
		}
	}
	if _, err := h.ReportSummary(ctx, hub.ReportQuery{From: t0, To: t0.Add(hub.MaxReportRange)}); err != nil {
		t.Errorf("a range of exactly MaxReportRange: %v", err)
	}
}

// checkAdoption compares a report's adoption figures with the expected purchases and sales.
func checkAdoption(t *testing.T, got []hub.Adoption, e expected) {
	t.Helper()
	currencies := map[string]bool{}
	for c := range e.byCurrency {
		currencies[c] = true
	}
	for c := range e.nonMember {
		currencies[c] = true
	}
	if len(got) != len(currencies) {
		t.Errorf("adoption in %d currencies, want %d", len(got), len(currencies))
	}
	for _, a := range got {
		m, n := e.byCurrency[a.Currency], e.nonMember[a.Currency]
		eq(t, a.Currency+" member purchases", a.MemberPurchases, m.Purchases)
		eq(t, a.Currency+" non-member sales", a.NonMemberSales, n.Count)
		eq(t, a.Currency+" non-member amount", a.NonMemberAmount, n.Amount)
		ratioIs(t, a.Currency+" adoption_rate", a.AdoptionRate, float64(m.Purchases), float64(m.Purchases+n.Count))
		ratioIs(t, a.Currency+" loyalty_sales_share", a.LoyaltySalesShare, float64(m.Amount), float64(m.Amount+n.Amount))
	}
}

// TestSale_RetriedAfterItsAgeIsADuplicate: a sale the hub counted, pushed again after its ack was
// lost and after it has passed the age the hub counts sales to, is a duplicate, not rejected:
// the store must not mark as rejected a sale the hub counted.
func TestSale_RetriedAfterItsAgeIsADuplicate(t *testing.T) {
	clock := t0
	h := openHub(t)
	h.Now = func() time.Time { return clock }
	d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Kind: loyalty.KindSale, Amount: 1250, Currency: "EUR", OccurredAt: t0, OrderID: "N-1"}
	if r := pushOK(t, h, "s1", d).Results[0]; r.Status != lsync.StatusApplied {
		t.Fatalf("the sale: %+v", r)
	}
	clock = t0.AddDate(2, 0, 0)
	if r := pushOK(t, h, "s1", d).Results[0]; r.Status != lsync.StatusDuplicate {
		t.Errorf("the same sale two years on: %+v, want a duplicate", r)
	}
	old := d
	old.ID, old.OrderID = loyalty.NewDeltaID(), "N-2"
	if r := pushOK(t, h, "s1", old).Results[0]; r.Status != lsync.StatusRejected {
		t.Errorf("a new sale two years old: %+v, want rejected", r)
	}
}
