package hub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
)

// POST /v1/members with a sign-up bonus that a used-up points budget refuses: the member is still
// created (201, balance 0), and the answer says the bonus was not given and why. With room in the
// budget, the answer says how many points the bonus gave.
func TestSignup_RefusedBonusIsReported(t *testing.T) {
	a := openAKHub(t)
	ctx := context.Background()
	withProgram(t, a.Hub, func(p *loyalty.Program) {
		p.Actions = []loyalty.ActionRule{{ID: "signup", Points: 100, MaxTimes: 1, Period: loyalty.PeriodTotal}}
		p.Budgets = []loyalty.Budget{{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: 150}}
	})
	type answer struct {
		ID      string          `json:"id"`
		Balance int64           `json:"balance"`
		Signup  json.RawMessage `json:"signup"`
	}
	var ann answer
	a.mustDo(t, akAdminKey, "POST", "/v1/members", `{"id":"ann"}`, http.StatusCreated, &ann)
	var given struct {
		Points  int64           `json:"points"`
		Refused json.RawMessage `json:"refused"`
	}
	if err := json.Unmarshal(ann.Signup, &given); err != nil || ann.Balance != 100 || given.Points != 100 || given.Refused != nil {
		t.Errorf("a sign-up within the budget: %+v (signup %s), want balance 100 and signup.points 100", ann, ann.Signup)
	}

	var bob answer
	a.mustDo(t, akAdminKey, "POST", "/v1/members", `{"id":"bob"}`, http.StatusCreated, &bob)
	var refused struct {
		Points  int64 `json:"points"`
		Refused *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"refused"`
	}
	if err := json.Unmarshal(bob.Signup, &refused); err != nil {
		t.Fatalf("a refused sign-up bonus: answer %+v has no signup object (%v)", bob, err)
	}
	if bob.ID != "bob" || bob.Balance != 0 || refused.Points != 0 || refused.Refused == nil ||
		refused.Refused.Code != loyalty.EBUDGET || !strings.Contains(refused.Refused.Message, "pts") {
		t.Errorf("a refused sign-up bonus: %+v, signup %s; want balance 0 and signup.refused EBUDGET naming the budget", bob, bob.Signup)
	}
	if v, err := a.Hub.Member(ctx, "bob", 10); err != nil || v.Balance != 0 || len(v.Ledger) != 0 {
		t.Errorf("bob as stored: %+v, %v; want a member with no points", v, err)
	}
	// The same through the Go API (the CLI's `loyalty member add`).
	m, err := a.Hub.CreateMember(ctx, loyalty.Member{ID: "cid"})
	if err != nil || m.Balance != 0 || m.Signup == nil || m.Signup.Refused == nil || m.Signup.Refused.Code != loyalty.EBUDGET {
		t.Errorf("CreateMember: %+v, %v", m, err)
	}
	// Without a signup action the answer has no signup object.
	withProgram(t, a.Hub, func(p *loyalty.Program) {})
	_, b := a.do(t, akAdminKey, "POST", "/v1/members", `{"id":"dee"}`)
	if strings.Contains(string(b), `"signup"`) {
		t.Errorf("no signup action, but the answer has a signup object: %s", b)
	}
}
