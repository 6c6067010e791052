// Metrics: what the agent measures for monitoring. The POS API calls a Metrics; the binary gives
// it the Prometheus one (internal/metrics), which also reads OutboxState and LeaseOutstanding at
// each scrape.

package agent

import (
	"context"
	"net/http"
	"time"

	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
)

// Metrics receives the agent's measurements. Request is called on every POS call: it must be
// cheap, safe for concurrent use and never block.
type Metrics interface {
	// Request records a POS API call: its route as the API's pattern ("POST /v1/earn";
	// "unmatched" for none), its status code, and how long it took.
	Request(route string, status int, d time.Duration)
}

// OutboxState returns how many deltas wait for the hub, and how long the oldest of them has
// waited (zero when none waits), by the agent's clock.
func (a *Agent) OutboxState(ctx context.Context) (n int64, age time.Duration, err error) {
	var oldest time.Time
	err = a.Store.View(ctx, func(tx Tx) error {
		var err error
		n, oldest, err = tx.Outbox(ctx)
		return err
	})
	if err != nil || oldest.IsZero() {
		return n, 0, err
	}
	return n, max(a.Now().Sub(oldest), 0), nil
}

// LeaseOutstanding returns, per budget, the quota of the store's usable leases that it has not
// spent yet: what it may still spend offline.
func (a *Agent) LeaseOutstanding(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := a.Store.View(ctx, func(tx Tx) error {
		ls, err := tx.Leases(ctx)
		if err != nil {
			return err
		}
		now := a.Now()
		for _, l := range ls {
			if _, ok := out[l.Budget]; !ok {
				out[l.Budget] = 0
			}
			if !l.Usable(now) {
				continue
			}
			spent, err := tx.LeaseSpent(ctx, l.ID)
			if err != nil {
				return err
			}
			out[l.Budget] += max(l.Granted-spent, 0)
		}
		return nil
	})
	return out, err
}

// instrument serves next and records each call's latency under its route pattern, never its
// path (see hub.Server's instrument): the pattern is the one routes would serve r with.
func (s *Server) instrument(routes *http.ServeMux, next http.Handler) http.Handler {
	if s.Metrics == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := jsonapi.NewStatusRecorder(w)
		next.ServeHTTP(sw, r)
		_, pattern := routes.Handler(r)
		if pattern == "/" || pattern == "" {
			pattern = "unmatched"
		}
		s.Metrics.Request(pattern, sw.Status, time.Since(start))
	})
}
