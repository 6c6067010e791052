// Metrics: what the hub measures for monitoring. The hub calls a Metrics; the binary gives it
// the Prometheus one (internal/metrics) and serves it on its own listener (docs/OPERATIONS.md).

package hub

import (
	"context"
	"net/http"
	"time"

	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Metrics receives the hub's measurements. Its methods are called on hot paths: they must be
// cheap, safe for concurrent use and never block. Label values are bounded sets named in each
// method's comment: never a raw path, an id or anything a client chose.
type Metrics interface {
	// Request records an HTTP request served: its route as the API's pattern ("POST /v1/earn";
	// "unmatched" for none), its status code, and how long it took.
	Request(route string, status int, d time.Duration)
	// Deltas records the results of pushed deltas, by lsync result status (applied, duplicate,
	// rejected).
	Deltas(status string, n int)
	// Job records a run of a background job (a name of the binary's: requalify, expire_points,
	// birthdays, expire_leases, poll) and how long it took.
	Job(job string, d time.Duration)
	// WebhookDelivery records one webhook delivery attempt by outcome: "delivered", "retried"
	// (failed, to be tried again) or "failed" (given up).
	WebhookDelivery(outcome string)
	// WebhookFailure records why a delivery attempt failed: "timeout", "connect", "status" (an
	// answer other than 2xx) or "other".
	WebhookFailure(reason string)
	// ImportRows records n rows of a member import by result: "imported", "skipped" or "failed".
	ImportRows(result string, n int)
}

// NopMetrics measures nothing: a Hub's Metrics until one is set.
type NopMetrics struct{}

func (NopMetrics) Request(string, int, time.Duration) {}
func (NopMetrics) Deltas(string, int)                 {}
func (NopMetrics) Job(string, time.Duration)          {}
func (NopMetrics) WebhookDelivery(string)             {}
func (NopMetrics) WebhookFailure(string)              {}
func (NopMetrics) ImportRows(string, int)             {}

// metrics returns h.Metrics, or NopMetrics if none was set.
func (h *Hub) metrics() Metrics {
	if h.Metrics == nil {
		return NopMetrics{}
	}
	return h.Metrics
}

// countAck records a committed push's results.
func (h *Hub) countAck(ack *lsync.Ack) {
	var applied, dup, rejected int
	for _, r := range ack.Results {
		switch r.Status {
		case lsync.StatusApplied:
			applied++
		case lsync.StatusDuplicate:
			dup++
		case lsync.StatusRejected:
			rejected++
		}
	}
	m := h.metrics()
	for status, n := range map[string]int{lsync.StatusApplied: applied, lsync.StatusDuplicate: dup, lsync.StatusRejected: rejected} {
		if n > 0 {
			m.Deltas(status, n)
		}
	}
}

// LeaseOutstanding returns, per budget of the current program, the quota leased to stores and
// not yet spent or settled (granted minus used): one indexed read per budget, in a read
// transaction, which never waits for the writer.
func (h *Hub) LeaseOutstanding(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := h.Store.View(ctx, func(tx Tx) error {
		p, _, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		for _, b := range p.Budgets {
			n, err := tx.Outstanding(ctx, b.ID)
			if err != nil {
				return err
			}
			out[b.ID] = n
		}
		return nil
	})
	return out, err
}

// instrument serves mux (the open routes, with the keyed ones behind "/") and records each
// request's latency under its route pattern, never its path: a path's ids are unbounded, and
// every label value is a time series. The sync endpoint is left out: its request is a session
// that lasts for hours (the sync sessions gauge counts them), and its websocket needs the
// connection's own ResponseWriter.
func (s *Server) instrument(mux, keyed *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := s.Hub.metrics()
		if _, ok := m.(NopMetrics); ok || r.URL.Path == "/v1/sync" {
			mux.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := jsonapi.NewStatusRecorder(w)
		mux.ServeHTTP(sw, r)
		pattern := r.Pattern // set by mux as it routed r
		if pattern == "/" || pattern == "" {
			_, pattern = keyed.Handler(r)
		}
		if pattern == "/" || pattern == "" {
			pattern = "unmatched"
		}
		m.Request(pattern, sw.Status, time.Since(start))
	})
}
