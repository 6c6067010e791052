package agent_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
)

// The gauges the metrics read at each scrape: the outbox's length and the age of its oldest
// delta, and what the store may still spend of its leases.
func TestMetrics_OutboxAndLeases(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	clock := offlineBudget(t, ta, 3, time.Hour, nil)
	if n, age, err := ta.OutboxState(ctx); err != nil || n != 0 || age != 0 {
		t.Fatalf("empty outbox: %d, %v, %v", n, age, err)
	}
	tok := ta.token(t, "m1")
	if _, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: "c1", QR: tok, RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	*clock = clock.Add(90 * time.Second)
	if _, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "e1", QR: tok, Amount: 1000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	*clock = clock.Add(30 * time.Second)
	n, age, err := ta.OutboxState(ctx)
	if err != nil || n != 2 || age != 120*time.Second {
		t.Errorf("outbox: %d deltas, oldest %v old (%v); want 2, the first one's 2m0s", n, age, err)
	}
	left, err := ta.LeaseOutstanding(ctx)
	if err != nil || len(left) != 1 || left["coffees"] != 2 {
		t.Errorf("lease outstanding: %v, %v; want coffees: 2 (3 granted, 1 spent)", left, err)
	}
	*clock = clock.Add(2 * time.Hour) // the lease is no longer usable: nothing left to spend
	if left, err := ta.LeaseOutstanding(ctx); err != nil || left["coffees"] != 0 {
		t.Errorf("lease outstanding after it expired: %v, %v; want coffees: 0", left, err)
	}
}

type recordedRequest struct {
	route  string
	status int
}

type requestRecorder struct {
	mu  sync.Mutex
	got []recordedRequest
}

func (r *requestRecorder) Request(route string, status int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, recordedRequest{route, status})
}

// POS calls are measured by route pattern, refusals and unknown paths too, never by raw path.
func TestMetrics_RequestsByPattern(t *testing.T) {
	ta := newTestAgent(t)
	rec := &requestRecorder{}
	srv := agent.NewServer(ta.Agent, "127.0.0.1:0")
	srv.Metrics = rec
	srv.POSToken = "pos-token-0123456789"
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for _, c := range []struct{ method, path, token string }{
		{"POST", "/v1/scan", srv.POSToken},
		{"GET", "/v1/status", ""},
		{"GET", "/v1/no/such/m1-secret", srv.POSToken},
	} {
		req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader(`{"qr":"`+ta.token(t, "m1")+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Host = "127.0.0.1"
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := []recordedRequest{{"POST /v1/scan", 200}, {"GET /v1/status", 401}, {"unmatched", 404}}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != len(want) {
		t.Fatalf("recorded %+v, want %+v", rec.got, want)
	}
	for i := range want {
		if rec.got[i] != want[i] {
			t.Errorf("request %d recorded as %+v, want %+v", i, rec.got[i], want[i])
		}
	}
}
