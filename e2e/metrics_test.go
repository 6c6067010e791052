package e2e_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// scrape returns the exposition text of a /metrics endpoint as sample lines by series
// ("name{labels}" → value), and the raw text.
func scrape(t *testing.T, url string) (map[string]float64, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s: %d %s\n%s", url, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%s: a sample line that does not end in a number: %q", url, line)
		}
		out[line[:i]] = v
	}
	return out, string(b)
}

// sum adds the samples whose series starts with prefix and holds every one of labels.
func sum(samples map[string]float64, prefix string, labels ...string) (float64, bool) {
	var total float64
	found := false
	for series, v := range samples {
		if !strings.HasPrefix(series, prefix) {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if ok {
			total, found = total+v, true
		}
	}
	return total, found
}

// TestMetrics runs a hub and an agent as processes with metrics.listen set, makes sales, and
// checks the exposition text of both: every metric docs/OPERATIONS.md lists, with routes
// labelled by their pattern and never by their path.
func TestMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	hubMetrics, agentMetrics := freePort(t), freePort(t)
	w := &world{t: t, bin: binary(t), dir: t.TempDir(), key: "0123456789abcdef0123", hubAddr: freePort(t), agents: map[string]*proc{},
		addrs: map[string]string{"s1": freePort(t)}, env: map[string][]string{}, hubEnv: []string{"LOYALTY_METRICS_LISTEN=" + hubMetrics}}
	w.startHub()
	api := w.api()
	var program map[string]any
	call(t, "GET", api+"/v1/program", w.key, nil, &program)
	program["budgets"] = []map[string]any{{"id": "coffee-campaign", "metric": "redemptions", "reward": "coffee", "limit": 500}}
	delete(program, "version")
	if s := call(t, "PUT", api+"/v1/program", w.key, program, nil); s != 200 {
		t.Fatalf("publish a program with a budget: HTTP %d", s)
	}
	var created struct {
		Token string `json:"token"`
	}
	if s := call(t, "POST", api+"/v1/stores", w.key, map[string]string{"id": "s1"}, &created); s != 201 {
		t.Fatalf("create store: HTTP %d", s)
	}
	if s := call(t, "POST", api+"/v1/members", w.key, map[string]string{"id": "m1", "home_store": "s1"}, nil); s != 201 {
		t.Fatalf("create member: HTTP %d", s)
	}
	if s := call(t, "PATCH", api+"/v1/members/m1", w.key, map[string]string{"name": "Ann"}, nil); s != 200 {
		t.Fatalf("update member: HTTP %d", s)
	}
	var q struct {
		Token string `json:"token"`
	}
	call(t, "GET", api+"/v1/members/m1/qr", w.key, nil, &q)
	w.env["s1"] = append(w.agentEnv("s1", created.Token, w.hubAddr), "LOYALTY_METRICS_LISTEN="+agentMetrics)
	w.startAgent("s1")
	w.waitAgentUp("s1")
	eventually(t, 20*time.Second, "s1 holds a lease", func() (bool, string) {
		st := w.status("s1")
		return st.Online && len(st.Leases) > 0, fmt.Sprintf("%+v", st)
	})
	const sales = 5
	for i := range sales {
		if s := call(t, "POST", "http://"+w.addrs["s1"]+"/v1/earn", "", loyalty.EarnRequest{OrderID: fmt.Sprintf("o%d", i), QR: q.Token,
			Amount: 1000, Currency: "EUR"}, nil); s != 200 {
			t.Fatalf("sale %d: HTTP %d", i, s)
		}
	}
	eventually(t, 20*time.Second, "the sales reach the hub", func() (bool, string) {
		st := w.status("s1")
		return st.Outbox == 0, fmt.Sprintf("outbox %d", st.Outbox)
	})

	// The jobs run on their own tickers: wait until each has run once (a histogram shows a job
	// only after its first run).
	var hub map[string]float64
	var text string
	eventually(t, 20*time.Second, "the hub's jobs have each run once", func() (bool, string) {
		hub, text = scrape(t, "http://"+hubMetrics+"/metrics")
		_, poll := sum(hub, "loyalty_hub_job_duration_seconds_count", `job="poll"`)
		_, leases := sum(hub, "loyalty_hub_job_duration_seconds_count", `job="expire_leases"`)
		return poll && leases, fmt.Sprintf("poll run: %v, expire_leases run: %v", poll, leases)
	})
	if n, _ := sum(hub, "loyalty_hub_deltas_total", `result="applied"`); n < sales {
		t.Errorf("loyalty_hub_deltas_total{result=applied} = %v, want at least %d", n, sales)
	}
	for _, c := range []struct {
		prefix string
		labels []string
	}{
		{"loyalty_hub_http_request_duration_seconds_count", []string{`route="POST /v1/stores"`, `code="201"`}},
		{"loyalty_hub_http_request_duration_seconds_count", []string{`route="PATCH /v1/members/{id}"`, `code="200"`}},
		{"loyalty_hub_http_request_duration_seconds_bucket", []string{`route="GET /v1/members/{id}/qr"`, `le="+Inf"`}},
		{"loyalty_hub_deltas_total", []string{`result="duplicate"`}},
		{"loyalty_hub_deltas_total", []string{`result="rejected"`}},
		{"loyalty_hub_sync_sessions", nil},
		{"loyalty_hub_lease_quota_outstanding", []string{`budget="coffee-campaign"`}},
		{"loyalty_hub_job_duration_seconds_count", []string{`job="poll"`}},
		{"loyalty_hub_job_duration_seconds_count", []string{`job="expire_leases"`}},
		{"loyalty_hub_webhook_deliveries_total", []string{`outcome="delivered"`}},
		{"loyalty_hub_webhook_failures_total", []string{`reason="timeout"`}},
		{"loyalty_hub_import_rows_total", []string{`result="imported"`}},
	} {
		if _, ok := sum(hub, c.prefix, c.labels...); !ok {
			t.Errorf("the hub's metrics have no %s%v", c.prefix, c.labels)
		}
	}
	if n, _ := sum(hub, "loyalty_hub_sync_sessions"); n != 1 {
		t.Errorf("loyalty_hub_sync_sessions = %v, want 1", n)
	}
	if n, _ := sum(hub, "loyalty_hub_lease_quota_outstanding", `budget="coffee-campaign"`); n <= 0 {
		t.Errorf("loyalty_hub_lease_quota_outstanding{coffee-campaign} = %v, want the lease s1 holds", n)
	}
	if strings.Contains(text, "/v1/members/m1") {
		t.Error("a route label holds a raw path (a member id): unbounded label values")
	}

	ag, text := scrape(t, "http://"+agentMetrics+"/metrics")
	if n, _ := sum(ag, "loyalty_agent_http_request_duration_seconds_count", `route="POST /v1/earn"`, `code="200"`); n != sales {
		t.Errorf("agent earn requests counted %v, want %d", n, sales)
	}
	for series, want := range map[string]float64{"loyalty_agent_outbox_deltas": 0, "loyalty_agent_outbox_oldest_age_seconds": 0, "loyalty_agent_sync_connected": 1} {
		if n, ok := sum(ag, series); !ok || n != want {
			t.Errorf("%s = %v (present %v), want %v", series, n, ok, want)
		}
	}
	if n, _ := sum(ag, "loyalty_agent_lease_quota_outstanding", `budget="coffee-campaign"`); n <= 0 {
		t.Errorf("loyalty_agent_lease_quota_outstanding{coffee-campaign} = %v, want the lease's quota", n)
	}
	if n, _ := sum(ag, "loyalty_agent_deltas_confirmed_total"); n < sales {
		t.Errorf("loyalty_agent_deltas_confirmed_total = %v, want at least %d", n, sales)
	}
	if _, ok := sum(ag, "loyalty_agent_sync_sessions_total"); !ok || !strings.Contains(text, "go_goroutines") {
		t.Error("the agent's metrics lack the sessions counter or the Go runtime's")
	}
	// The API listener does not serve the metrics: they have their own.
	if s := call(t, "GET", api+"/metrics", "", nil, nil); s == 200 {
		t.Error("the hub's API listener serves /metrics without a key")
	}
}
