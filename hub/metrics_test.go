package hub_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// metricsRecorder is a hub.Metrics that keeps what it is told.
type metricsRecorder struct {
	hub.NopMetrics
	mu       sync.Mutex
	requests []string // route and status
	deltas   map[string]int
}

func (m *metricsRecorder) Request(route string, status int, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, route+" "+http.StatusText(status))
}

func (m *metricsRecorder) Deltas(status string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deltas[status] += n
}

func TestMetrics_DeltasAndRoutes(t *testing.T) {
	h := openHub(t)
	rec := &metricsRecorder{deltas: map[string]int{}}
	h.Metrics = rec
	e := earn("s1", "m1", 1000)
	pushOK(t, h, "s1", e, earn("s1", "m1", 500), redeem("s1", "m1", "no-such-reward", 1))
	pushOK(t, h, "s1", e)
	want := map[string]int{lsync.StatusApplied: 2, lsync.StatusDuplicate: 1, lsync.StatusRejected: 1}
	for k, v := range want {
		if rec.deltas[k] != v {
			t.Errorf("deltas %s: %d, want %d (all: %v)", k, rec.deltas[k], v, rec.deltas)
		}
	}

	sync := lsync.NewServer(h)
	sync.Logger = slog.New(slog.DiscardHandler)
	srv := &hub.Server{Hub: h, Sync: sync, AdminKey: akAdminKey, Logger: slog.New(slog.DiscardHandler)}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for _, c := range []struct{ path, key string }{
		{"/healthz", ""},
		{"/v1/members/m1", akAdminKey},
		{"/v1/members/m2/qr", ""},               // refused: no key
		{"/v1/no/such/endpoint/m1", akAdminKey}, // no route
	} {
		req, _ := http.NewRequest("GET", ts.URL+c.path, nil)
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	wantRoutes := []string{"GET /healthz OK", "GET /v1/members/{id} OK", "GET /v1/members/{id}/qr Unauthorized", "unmatched Not Found"}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.requests) != len(wantRoutes) {
		t.Fatalf("requests recorded %q, want %q", rec.requests, wantRoutes)
	}
	for i := range wantRoutes {
		if rec.requests[i] != wantRoutes[i] {
			t.Errorf("request %d recorded as %q, want %q", i, rec.requests[i], wantRoutes[i])
		}
	}
}
