package e2e_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
)

// hookSink is a webhook receiver on 127.0.0.1: it verifies every delivery's signature, refuses
// the first failFirst attempts of each event with a 503, and keeps every event it accepted.
type hookSink struct {
	t         *testing.T
	url       string
	failFirst int

	mu       sync.Mutex
	secret   string
	attempts map[string]int
	accepted map[string]hub.EventBody // by event id
	copies   int                      // accepted deliveries, duplicates included
	bad      []string
}

func newHookSink(t *testing.T, failFirst int) *hookSink {
	t.Helper()
	s := &hookSink{t: t, failFirst: failFirst, attempts: map[string]int{}, accepted: map[string]hub.EventBody{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.url = "http://" + ln.Addr().String() + "/loyalty"
	return s
}

func (s *hookSink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	// What docs/API.md tells a receiver to do: check the signature and its age, then the id.
	if err := hub.VerifyWebhook(s.secret, r.Header.Get("Loyalty-Signature"), body, time.Now(), 5*time.Minute); err != nil {
		s.bad = append(s.bad, fmt.Sprintf("%v: %s", err, body))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev hub.EventBody
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || ev.ID != r.Header.Get("Loyalty-Event-Id") {
		s.bad = append(s.bad, fmt.Sprintf("body %s, header id %q: %v", body, r.Header.Get("Loyalty-Event-Id"), err))
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	s.attempts[ev.ID]++
	if s.attempts[ev.ID] <= s.failFirst {
		http.Error(w, "try again later", http.StatusServiceUnavailable)
		return
	}
	s.accepted[ev.ID] = ev
	s.copies++
	w.WriteHeader(http.StatusOK)
}

// snapshot returns the accepted events and the refused signatures.
func (s *hookSink) snapshot() (map[string]hub.EventBody, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]hub.EventBody, len(s.accepted))
	for k, v := range s.accepted {
		out[k] = v
	}
	return out, append([]string(nil), s.bad...)
}

// TestWebhooksThroughHubRestarts: a receiver that refuses every event's first two attempts gets
// every event of a run exactly as the hub's delivery log lists them, each signed, while the hub
// process is killed (SIGKILL, mid-delivery as likely as not) and stopped (SIGTERM) and started
// again: member sign-ups, online and in-store earns and redemptions (every delta a receipt
// approved appears in an event), and the store going offline and coming back.
func TestWebhooksThroughHubRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	w, _ := newWorld(t, []string{"LOYALTY_WEBHOOKS_INTERVAL=100ms", "LOYALTY_WEBHOOKS_BACKOFF_MIN=200ms",
		"LOYALTY_WEBHOOKS_BACKOFF_MAX=1s", "LOYALTY_WEBHOOKS_OFFLINE_AFTER=1s", "LOYALTY_WEBHOOKS_TIMEOUT=2s"}, "a")
	api := w.api()
	sink := newHookSink(t, 2)
	var created hub.NewWebhook
	if s := call(t, "POST", api+"/v1/webhooks", w.key, map[string]any{"url": sink.url, "events": []string{"*"}}, &created); s != 201 {
		t.Fatalf("add webhook: HTTP %d", s)
	}
	sink.mu.Lock()
	sink.secret = created.Secret
	sink.mu.Unlock()

	for i := range 4 {
		w.member(fmt.Sprintf("m%d", i), 500)
	}
	w.startAgent("a")
	w.waitAgentUp("a")
	for range 6 {
		w.sale("a")
	}
	w.redeem("a")

	// The hub crashes while deliveries are due, comes back, and more happens.
	w.hub.stop(syscall.SIGKILL)
	restarted := time.Now()
	w.startHub()
	for i := 4; i < 6; i++ {
		w.member(fmt.Sprintf("m%d", i), 300)
	}
	for range 4 {
		w.sale("a")
	}
	// The store syncs with the restarted hub before it goes away: the killed process held its
	// session, which stays live until its deadline (hub.SessionTTL, 30s) unless the store comes
	// back, and only a session of the new process ends the moment the store stops.
	eventually(t, 30*time.Second, "store a synced with the restarted hub", func() (bool, string) {
		st := w.status("a")
		return st.Online && st.ConnectedAt.After(restarted) && st.Outbox == 0, fmt.Sprintf("%+v", st.Status)
	})
	// The store goes away for longer than webhooks.offline_after, and comes back.
	if code := w.agents["a"].stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("agent exited %d", code)
	}
	waitEvent(t, sink, hub.EventStoreOffline)
	w.startAgent("a")
	w.waitAgentUp("a")
	waitEvent(t, sink, hub.EventStoreOnline)
	w.redeem("a")
	w.sale("a")

	// A clean restart while the last deliveries wait for their retries.
	if code := w.hub.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("hub exited %d on SIGTERM, want 0", code)
	}
	w.startHub()
	eventually(t, 30*time.Second, "the agent's outbox drained", func() (bool, string) {
		st := w.status("a")
		return st.Online && st.Outbox == 0, fmt.Sprintf("online=%v outbox=%d", st.Online, st.Outbox)
	})

	// Every event of the run, as the hub's delivery log lists them, is accepted.
	var log []hub.WebhookDelivery
	eventually(t, 60*time.Second, "every delivery delivered", func() (bool, string) {
		log = nil
		if s := call(t, "GET", api+"/v1/webhooks/"+created.Webhook.ID+"/deliveries?limit=1000", w.key, nil, &log); s != 200 {
			return false, fmt.Sprintf("HTTP %d", s)
		}
		got, _ := sink.snapshot()
		for _, d := range log {
			if d.State != hub.DeliveryDelivered {
				return false, fmt.Sprintf("%s %s is %s after %d attempts (%s)", d.Type, d.Event, d.State, d.Attempts, d.LastError)
			}
			if _, ok := got[d.Event]; !ok {
				return false, fmt.Sprintf("%s %s marked delivered, not accepted", d.Type, d.Event)
			}
		}
		return len(log) > 0, "no delivery"
	})
	got, bad := sink.snapshot()
	if len(bad) > 0 {
		t.Fatalf("deliveries failed verification: %q", bad)
	}
	if len(got) != len(log) {
		t.Fatalf("accepted %d events, the delivery log lists %d", len(got), len(log))
	}
	// The receiver accepted each event after refusing it twice. The log counts the attempts whose
	// outcome the hub recorded: one cut short by a SIGKILL is not, so it may count fewer than the
	// receiver saw, never more (the receiver is always up: every attempt reaches it).
	sink.mu.Lock()
	for _, d := range log {
		if seen := sink.attempts[d.Event]; seen < 3 || d.Attempts < 1 || d.Attempts > seen {
			t.Errorf("%s %s: the log counts %d attempts, the receiver saw %d; it refuses the first two", d.Type, d.Event, d.Attempts, seen)
		}
	}
	sink.mu.Unlock()
	// Every delta a receipt approved is in a points event; every member's sign-up is there.
	inEvents := map[string]bool{}
	counts := map[string]int{}
	for _, ev := range got {
		counts[ev.Type]++
		var data struct {
			Delta  string `json:"delta_id"`
			Member string `json:"member_id"`
		}
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatalf("%s: %v", ev.Type, err)
		}
		inEvents[data.Delta] = true
		if ev.Type == hub.EventMemberCreated {
			inEvents["member:"+data.Member] = true
		}
	}
	var missing []string
	for id := range w.approved {
		if !inEvents[id] {
			missing = append(missing, id)
		}
	}
	for _, m := range w.members {
		if !inEvents["member:"+m] {
			missing = append(missing, "member.created of "+m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("approved but in no event: %s (events by type: %v)", strings.Join(missing, ", "), counts)
	}
	for _, typ := range []string{hub.EventMemberCreated, hub.EventPointsEarned, hub.EventPointsRedeemed, hub.EventStoreOffline, hub.EventStoreOnline} {
		if counts[typ] == 0 {
			t.Errorf("no %s event (events by type: %v)", typ, counts)
		}
	}
	t.Logf("events by type: %v; %d accepted copies of %d events", counts, sink.copies, len(got))
	var audit []hub.AuditEntry
	call(t, "GET", api+"/v1/audit", w.key, nil, &audit)
	if len(audit) == 0 || !containsAction(audit, hub.AuditWebhookAdd) {
		t.Fatalf("no webhook.add in the audit trail: %+v", audit)
	}
}

func containsAction(es []hub.AuditEntry, action string) bool {
	for _, e := range es {
		if e.Action == action {
			return true
		}
	}
	return false
}

// waitEvent waits until the sink accepted an event of type typ.
func waitEvent(t *testing.T, sink *hookSink, typ string) {
	t.Helper()
	eventually(t, 30*time.Second, typ, func() (bool, string) {
		got, _ := sink.snapshot()
		for _, ev := range got {
			if ev.Type == typ {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events, none %s", len(got), typ)
	})
}

// TestWebhooksMultiHubPostgres: two hub processes on one PostgreSQL database send one
// endpoint's deliveries. While both run, every attempt is made by one of them: a receiver that
// refuses each event's first attempt sees each event exactly twice. One hub killed (SIGKILL)
// right after events were made loses none: the other sends them, and so does the killed one
// once it is started again, within its claims' lease.
func TestWebhooksMultiHubPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	database := postgresDatabase(t)
	addrA, addrB := freePort(t), freePort(t)
	w := &world{t: t, bin: binary(t), dir: t.TempDir(), key: rand.Text(), hubAddr: addrA, agents: map[string]*proc{},
		addrs: map[string]string{}, env: map[string][]string{}, tokens: map[string]string{}, rng: mrand.New(mrand.NewPCG(3, 5)),
		expected: map[string]int64{}, approved: map[string]bool{}}
	kek := seal.Generate()
	cert, key, _ := w.tlsFiles()
	startHub := func(name, addr string) *proc {
		p := start(t, w.bin, name, []string{"LOYALTY_ADMIN_API_KEY=" + w.key, "LOYALTY_KEYS_KEK=" + kek,
			"LOYALTY_TLS_CERT_FILE=" + cert, "LOYALTY_TLS_KEY_FILE=" + key,
			"LOYALTY_WEBHOOKS_INTERVAL=50ms", "LOYALTY_WEBHOOKS_BACKOFF_MIN=100ms", "LOYALTY_WEBHOOKS_BACKOFF_MAX=300ms",
			"LOYALTY_WEBHOOKS_TIMEOUT=1s", "LOYALTY_WEBHOOKS_BATCH=5"}, "hub", "--listen", addr, "--database", database)
		eventually(t, 30*time.Second, name+" healthy", func() (bool, string) {
			return call(t, "GET", "https://"+addr+"/healthz", "", nil, nil) == 200, "no answer"
		})
		return p
	}
	hubA := startHub("hub-a", addrA)
	startHub("hub-b", addrB)
	apiA, apiB := "https://"+addrA, "https://"+addrB
	sink := newHookSink(t, 1)
	var created hub.NewWebhook
	if s := call(t, "POST", apiA+"/v1/webhooks", w.key, map[string]any{"url": sink.url, "events": []string{hub.EventPointsEarned}}, &created); s != 201 {
		t.Fatalf("add webhook: HTTP %d", s)
	}
	sink.mu.Lock()
	sink.secret = created.Secret
	sink.mu.Unlock()
	for i := range 3 {
		w.member(fmt.Sprintf("m%d", i), 0)
	}
	order := 0
	earn := func(api string) {
		t.Helper()
		order++
		if s := call(t, "POST", api+"/v1/earn", w.key, map[string]any{"order_id": fmt.Sprintf("web-%d", order),
			"member_id": fmt.Sprintf("m%d", order%3), "amount": 1000 + order, "currency": "EUR"}, nil); s != 200 {
			t.Fatalf("earn through %s: HTTP %d", api, s)
		}
	}
	allDelivered := func(want int) []hub.WebhookDelivery {
		t.Helper()
		var log []hub.WebhookDelivery
		eventually(t, 90*time.Second, "every delivery delivered", func() (bool, string) {
			log = nil
			if s := call(t, "GET", apiB+"/v1/webhooks/"+created.Webhook.ID+"/deliveries?limit=1000", w.key, nil, &log); s != 200 {
				return false, fmt.Sprintf("HTTP %d", s)
			}
			got, _ := sink.snapshot()
			for _, d := range log {
				if _, ok := got[d.Event]; d.State != hub.DeliveryDelivered || !ok {
					return false, fmt.Sprintf("%s: %s after %d attempts, accepted %v", d.Event, d.State, d.Attempts, ok)
				}
			}
			return len(log) == want, fmt.Sprintf("%d deliveries, want %d", len(log), want)
		})
		return log
	}
	for range 15 {
		earn(apiA)
		earn(apiB)
	}
	log := allDelivered(30)
	sink.mu.Lock()
	for _, d := range log {
		if n := sink.attempts[d.Event]; n != 2 {
			t.Errorf("event %s reached the receiver %d times, want 2 (one refused, one accepted): two hubs sent an attempt", d.Event, n)
		}
	}
	sink.mu.Unlock()

	// a dies with events due; b sends them, and a, started again, goes on with b.
	for range 10 {
		earn(apiA)
	}
	hubA.stop(syscall.SIGKILL)
	for range 5 {
		earn(apiB)
	}
	startHub("hub-a", addrA)
	for range 5 {
		earn(apiA)
	}
	allDelivered(50)
	got, bad := sink.snapshot()
	if len(bad) > 0 {
		t.Fatalf("deliveries failed verification: %q", bad)
	}
	if len(got) != 50 {
		t.Fatalf("accepted %d events, want 50", len(got))
	}
}
