package hub_test

import (
	"context"
	"encoding/csv"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
)

// The report endpoints over HTTP: a report key reads them as JSON and CSV, an online key may not,
// and malformed queries are refused with EINVALID; the CSV holds the same figures as the JSON.
func TestReportsHTTP(t *testing.T) {
	a := openAKHub(t)
	pushOK(t, a.Hub, "s1", earn("s1", "m1", 2500), earn("s1", "m1", 1000), earn("s2", "m2", 700))
	rep := a.newKey(t, akAdminKey, "finance", hub.ScopeReport)
	online := a.newKey(t, akAdminKey, "shop", hub.ScopeOnline)
	q := "?from=2026-11-01&to=2026-12-01"

	var sum hub.SummaryReport
	a.mustDo(t, rep.Key, "GET", "/v1/reports/summary"+q, "", http.StatusOK, &sum)
	if sum.Purchases.Count != 2 || sum.Members.Active != 1 || sum.Points.Issued != 35 {
		t.Errorf("summary %+v: want s1's two purchases by m1 (s2's push as s1 was refused), 35 points", sum)
	}
	status, body := a.do(t, rep.Key, "GET", "/v1/reports/summary"+q+"&format=csv", "")
	if status != http.StatusOK {
		t.Fatalf("CSV: %d %s", status, body)
	}
	rows, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil {
		t.Fatalf("CSV %s: %v", body, err)
	}
	figures := map[string]string{}
	for _, r := range rows[1:] {
		figures[r[1]+"/"+r[2]] = r[3]
	}
	if figures["purchases/"] != "2" || figures["sales_amount/EUR"] != "3500" || figures["points_issued/"] != "35" || figures["aov/EUR"] != "1750" {
		t.Errorf("CSV figures %v: want 2 purchases, 3500 EUR, 35 points, AOV 1750", figures)
	}

	var co hub.CohortReport
	a.mustDo(t, rep.Key, "GET", "/v1/reports/cohorts"+q, "", http.StatusOK, &co)
	if len(co.Cohorts) != 1 || co.Cohorts[0].Size != 2 || co.Cohorts[0].Retention[0].Active != 1 {
		t.Errorf("cohorts %+v: want November's two members, one active", co)
	}
	var st hub.StoresReport
	a.mustDo(t, rep.Key, "GET", "/v1/reports/stores"+q, "", http.StatusOK, &st)
	if len(st.Stores) != 2 || st.Stores[0].Store != "s1" || st.Stores[0].Purchases != 2 || st.Stores[1].Purchases != 0 {
		t.Errorf("stores %+v", st)
	}
	a.mustDo(t, rep.Key, "GET", "/v1/reports/stores"+q+"&store=s2&format=csv", "", http.StatusOK, nil)

	for _, path := range []string{"/v1/reports/summary", "/v1/reports/cohorts", "/v1/reports/stores"} {
		status, body := a.do(t, online.Key, "GET", path+q, "")
		assertForbidden(t, status, body, hub.ScopeReport, online.Key)
		for _, bad := range []string{"", "?from=2026-11-01", "?from=yesterday&to=2026-12-01", q + "&format=xml",
			"?from=2026-12-01&to=2026-11-01", "?from=2020-01-01&to=2026-01-01", q + "&store=" + strings.Repeat("x", 200)} {
			status, body := a.do(t, rep.Key, "GET", path+bad, "")
			jsonapitest.AssertError(t, status, body, http.StatusBadRequest, loyalty.EINVALID)
		}
		status, body = a.do(t, rep.Key, "GET", path+q+"&store=nowhere", "")
		jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)
	}
	if _, err := a.Hub.ReportSummary(context.Background(), hub.ReportQuery{From: t0, To: t0.Add(1)}); err != nil {
		t.Errorf("a one-nanosecond range: %v", err)
	}
}

// The summary's budget use is each budget's spent and leased quota as GET /v1/budgets shows it,
// with used = spent / limit, read in the report's snapshot.
func TestReports_BudgetUse(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	p := loyalty.DefaultProgram()
	p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: "redemptions", Reward: "coffee", Limit: 40}, {ID: "points", Metric: "points_issued", Limit: 100000}}
	if _, err := h.SetProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "W-1", MemberID: "m1", Amount: 50000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"W-2", "W-3", "W-4"} {
		if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: o, MemberID: "m1", RewardID: "coffee"}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := h.Budgets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.ReportSummary(ctx, hub.ReportQuery{From: t0.Add(-time.Hour), To: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Budgets) != len(want) {
		t.Fatalf("budgets %+v, want %d", r.Budgets, len(want))
	}
	for i, b := range r.Budgets {
		w := want[i]
		if b.ID != w.ID || b.Spent != w.Spent || b.Outstanding != w.Outstanding || b.Limit != w.Limit || b.Used == nil ||
			*b.Used != float64(w.Spent)/float64(w.Limit) {
			t.Errorf("budget %+v, want %s spent %d leased %d of %d", b, w.ID, w.Spent, w.Outstanding, w.Limit)
		}
	}
	if r.Budgets[0].Spent != 3 || r.Budgets[1].Spent != 500 {
		t.Errorf("spent %d coffees and %d points, want 3 and 500", r.Budgets[0].Spent, r.Budgets[1].Spent)
	}
}
