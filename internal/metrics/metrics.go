// Package metrics is the Prometheus adapter (github.com/prometheus/client_golang): it
// implements hub.Metrics and agent.Metrics on a registry of its own per process, reads the
// gauges that live in the database at each scrape, and serves the exposition text. Every
// metric is listed in docs/OPERATIONS.md.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// scrapeTimeout bounds the database reads of one scrape.
const scrapeTimeout = 5 * time.Second

// latencyBuckets are the request latency histograms' buckets, in seconds: from a cached scan
// (a millisecond) to a slow admin call.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// jobBuckets are the job duration histogram's buckets, in seconds.
var jobBuckets = []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900}

// Hub is the hub's metrics on a registry of its own.
type Hub struct {
	reg             *prometheus.Registry
	requests        *prometheus.HistogramVec
	deltas          *prometheus.CounterVec
	jobs            *prometheus.HistogramVec
	webhooks        *prometheus.CounterVec
	webhookFailures *prometheus.CounterVec
	importRows      *prometheus.CounterVec
	logger          *slog.Logger
}

var _ hub.Metrics = (*Hub)(nil)

// NewHub returns the metrics of a hub process: h's, and the live sync sessions of s (nil: none
// counted). Set h.Metrics to it.
func NewHub(h *hub.Hub, s *lsync.Server, logger *slog.Logger) *Hub {
	m := &Hub{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "loyalty_hub_http_request_duration_seconds",
			Help: "Latency of the hub's HTTP API requests, by route pattern and status code (the sync endpoint is left out).", Buckets: latencyBuckets},
			[]string{"route", "code"}),
		deltas: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_hub_deltas_total",
			Help: "Deltas pushed by stores, by result: applied, duplicate (applied earlier) or rejected."}, []string{"result"}),
		jobs: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "loyalty_hub_job_duration_seconds",
			Help: "Duration of the hub's background job runs, by job.", Buckets: jobBuckets}, []string{"job"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_hub_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by outcome: delivered, retried or failed (given up)."}, []string{"outcome"}),
		webhookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_hub_webhook_failures_total",
			Help: "Failed webhook delivery attempts, by reason: timeout, connect, status or other."}, []string{"reason"}),
		importRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loyalty_hub_import_rows_total",
			Help: "Rows of member imports, by result: imported, skipped or failed."}, []string{"result"}),
	}
	// Every documented label value shows, at 0 until it happens, so that a dashboard's rate()
	// sees the first one.
	for vec, values := range map[*prometheus.CounterVec][]string{
		m.deltas:          {lsync.StatusApplied, lsync.StatusDuplicate, lsync.StatusRejected},
		m.webhooks:        {"delivered", "retried", "failed"},
		m.webhookFailures: {"timeout", "connect", "status", "other"},
		m.importRows:      {"imported", "skipped", "failed"},
	} {
		for _, v := range values {
			vec.WithLabelValues(v)
		}
	}
	m.reg.MustRegister(m.requests, m.deltas, m.jobs, m.webhooks, m.webhookFailures, m.importRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if s != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "loyalty_hub_sync_sessions",
			Help: "Stores' sync sessions live on this hub process."}, func() float64 { return float64(s.Sessions()) }))
	}
	m.reg.MustRegister(&labelGauge{
		desc: prometheus.NewDesc("loyalty_hub_lease_quota_outstanding", "Quota leased to stores and not yet spent or settled (granted minus used), by budget.",
			[]string{"budget"}, nil),
		read: h.LeaseOutstanding,
	}, &labelGauge{
		desc: prometheus.NewDesc("loyalty_hub_webhook_endpoints", "Webhook endpoints, by state: enabled, or disabled (by an operator, or by the hub "+
			"after failures that gave an event up); a disabled endpoint's events wait for it.", []string{"state"}, nil),
		read: func(ctx context.Context) (map[string]int64, error) {
			es, err := h.Webhooks(ctx)
			n := map[string]int64{"enabled": 0, "disabled": 0}
			for _, e := range es {
				if e.Enabled() {
					n["enabled"]++
				} else {
					n["disabled"]++
				}
			}
			return n, err
		},
	})
	m.logger = logger
	return m
}

// Handler serves the exposition text of the registry.
func (m *Hub) Handler() http.Handler { return handler(m.reg, m.logger) }

// Request implements hub.Metrics.
func (m *Hub) Request(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Observe(d.Seconds())
}

// Deltas implements hub.Metrics.
func (m *Hub) Deltas(status string, n int) { m.deltas.WithLabelValues(status).Add(float64(n)) }

// Job implements hub.Metrics.
func (m *Hub) Job(job string, d time.Duration) { m.jobs.WithLabelValues(job).Observe(d.Seconds()) }

// WebhookDelivery implements hub.Metrics.
func (m *Hub) WebhookDelivery(outcome string) { m.webhooks.WithLabelValues(outcome).Inc() }

// WebhookFailure implements hub.Metrics.
func (m *Hub) WebhookFailure(reason string) { m.webhookFailures.WithLabelValues(reason).Inc() }

// ImportRows implements hub.Metrics.
func (m *Hub) ImportRows(result string, n int) { m.importRows.WithLabelValues(result).Add(float64(n)) }

// Agent is a store agent's metrics on a registry of its own.
type Agent struct {
	reg      *prometheus.Registry
	requests *prometheus.HistogramVec
	logger   *slog.Logger
}

var _ agent.Metrics = (*Agent)(nil)

// NewAgent returns the metrics of agent a. Set its POS server's Metrics to it.
func NewAgent(a *agent.Agent, logger *slog.Logger) *Agent {
	m := &Agent{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "loyalty_agent_http_request_duration_seconds",
			Help: "Latency of the agent's POS API calls, by route pattern and status code.", Buckets: latencyBuckets},
			[]string{"route", "code"}),
	}
	status := func(f func(lsync.Status) float64) func() float64 {
		return func() float64 { return f(a.Sync.Status()) }
	}
	outbox := &outboxGauge{
		n:    prometheus.NewDesc("loyalty_agent_outbox_deltas", "Deltas made at this store that wait for the hub.", nil, nil),
		age:  prometheus.NewDesc("loyalty_agent_outbox_oldest_age_seconds", "How long the oldest delta waiting for the hub has waited (0: none waits).", nil, nil),
		read: a.OutboxState,
	}
	m.reg.MustRegister(m.requests, outbox,
		&labelGauge{
			desc: prometheus.NewDesc("loyalty_agent_lease_quota_outstanding", "Quota of this store's usable leases not spent yet, by budget.", []string{"budget"}, nil),
			read: a.LeaseOutstanding,
		},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "loyalty_agent_sync_connected", Help: "1 while a sync session with the hub is open, else 0."},
			status(func(s lsync.Status) float64 {
				if s.Online {
					return 1
				}
				return 0
			})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "loyalty_agent_sync_sessions_total", Help: "Sync sessions opened with the hub since the agent started."},
			status(func(s lsync.Status) float64 { return float64(s.Sessions) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "loyalty_agent_deltas_pushed_total", Help: "Deltas sent to the hub since the agent started (redeliveries included)."},
			status(func(s lsync.Status) float64 { return float64(s.DeltasPushed) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "loyalty_agent_deltas_confirmed_total", Help: "Deltas the hub acknowledged as applied or duplicate since the agent started."},
			status(func(s lsync.Status) float64 { return float64(s.DeltasConfirmed) })),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.logger = logger
	return m
}

// Handler serves the exposition text of the registry.
func (m *Agent) Handler() http.Handler { return handler(m.reg, m.logger) }

// Request implements agent.Metrics.
func (m *Agent) Request(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Observe(d.Seconds())
}

// handler serves reg's exposition text. A gauge whose read failed is left out of the answer
// and the failure logged; the other metrics are served.
func handler(reg *prometheus.Registry, logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError, ErrorLog: errorLog{logger}})
}

// errorLog is promhttp's error log on a slog.Logger.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Println(v ...any) {
	if e.l != nil {
		e.l.Warn("metrics: a scrape failed in part", slog.String("err", fmt.Sprint(v...)))
	}
}

// labelGauge reads a gauge per value of its one label (a budget, a state) at each scrape.
type labelGauge struct {
	desc *prometheus.Desc
	read func(context.Context) (map[string]int64, error)
}

func (g *labelGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *labelGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	byLabel, err := g.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.desc, err)
		return
	}
	for b, n := range byLabel {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(n), b)
	}
}

// outboxGauge reads the outbox's length and age at each scrape, in one read.
type outboxGauge struct {
	n, age *prometheus.Desc
	read   func(context.Context) (int64, time.Duration, error)
}

func (g *outboxGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.n; ch <- g.age }

func (g *outboxGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	n, age, err := g.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.n, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(g.n, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(g.age, prometheus.GaugeValue, age.Seconds())
}
