package metrics_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/metrics"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

func openHub(t *testing.T) *hub.Hub {
	t.Helper()
	s, err := hubsqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h := hub.New(s)
	h.Logger, h.KEK = slog.New(slog.DiscardHandler), seal.NewRandom()
	if err := h.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h
}

func exposition(t *testing.T, m *metrics.Hub) string {
	t.Helper()
	rr := httptest.NewRecorder()
	m.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rr.Body)
	return string(b)
}

// Each hub has a registry of its own: two in one process neither collide nor count each
// other's events; the methods other parts of the hub call show in the exposition text.
func TestHub_RegistryPerHub(t *testing.T) {
	h1, h2 := openHub(t), openHub(t)
	m1 := metrics.NewHub(h1, lsync.NewServer(h1), slog.New(slog.DiscardHandler))
	m2 := metrics.NewHub(h2, nil, slog.New(slog.DiscardHandler))
	m1.WebhookDelivery("delivered")
	m1.WebhookDelivery("delivered")
	m1.WebhookFailure("timeout")
	m1.ImportRows("imported", 250)
	m1.Deltas(lsync.StatusApplied, 7)
	m1.Job("requalify", 1500*time.Millisecond)
	m1.Request("POST /v1/earn", 200, 3*time.Millisecond)
	text := exposition(t, m1)
	for _, want := range []string{
		`loyalty_hub_webhook_deliveries_total{outcome="delivered"} 2`,
		`loyalty_hub_webhook_deliveries_total{outcome="failed"} 0`,
		`loyalty_hub_webhook_failures_total{reason="timeout"} 1`,
		`loyalty_hub_import_rows_total{result="imported"} 250`,
		`loyalty_hub_deltas_total{result="applied"} 7`,
		`loyalty_hub_job_duration_seconds_bucket{job="requalify",le="5"} 1`,
		`loyalty_hub_http_request_duration_seconds_bucket{code="200",route="POST /v1/earn",le="0.005"} 1`,
		`loyalty_hub_sync_sessions 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the exposition text lacks %s", want)
		}
	}
	if other := exposition(t, m2); !strings.Contains(other, `loyalty_hub_deltas_total{result="applied"} 0`) || strings.Contains(other, "loyalty_hub_sync_sessions") {
		t.Errorf("the second hub's metrics count the first's, or a sync server it does not have:\n%s", other)
	}
}

// TestHub_WebhookEndpoints: the endpoints by state, read at each scrape: an endpoint an operator
// (or the hub) disabled shows at once.
func TestHub_WebhookEndpoints(t *testing.T) {
	h := openHub(t)
	m := metrics.NewHub(h, nil, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	var ids []string
	for _, u := range []string{"http://127.0.0.1:9/a", "http://127.0.0.1:9/b"} {
		url, events := u, []string{"*"}
		nw, err := h.CreateWebhook(ctx, hub.WebhookRequest{URL: &url, Events: &events})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, nw.Webhook.ID)
	}
	off := false
	if _, err := h.UpdateWebhook(ctx, ids[1], hub.WebhookRequest{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	text := exposition(t, m)
	for _, want := range []string{`loyalty_hub_webhook_endpoints{state="enabled"} 1`, `loyalty_hub_webhook_endpoints{state="disabled"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("the exposition text lacks %s", want)
		}
	}
}
