package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// hookReceiver is a webhook endpoint on 127.0.0.1 that verifies every signature, refuses the first
// failFirst attempts of each event (or every attempt, with failFirst < 0), and keeps what it
// accepted.
type hookReceiver struct {
	t         *testing.T
	URL       string
	now       func() time.Time
	failFirst int

	mu       sync.Mutex
	secret   string
	attempts map[string]int             // per event id
	accepted map[string][]hub.EventBody // per event id, every accepted copy
	bad      []string                   // what failed verification
}

func newReceiver(t *testing.T, now func() time.Time, failFirst int) *hookReceiver {
	r := &hookReceiver{t: t, now: now, failFirst: failFirst, attempts: map[string]int{}, accepted: map[string][]hub.EventBody{}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL + "/hooks"
	return r
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := hub.VerifyWebhook(r.secret, req.Header.Get(hub.WebhookSignatureHeader), body, r.now(), hub.WebhookTolerance); err != nil {
		r.bad = append(r.bad, err.Error())
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev hub.EventBody
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != req.Header.Get("Loyalty-Event-Id") || ev.Type != req.Header.Get("Loyalty-Event-Type") {
		r.bad = append(r.bad, fmt.Sprintf("body %s does not match its headers (%v)", body, err))
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.attempts[ev.ID]++
	if r.failFirst < 0 || r.attempts[ev.ID] <= r.failFirst {
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	r.accepted[ev.ID] = append(r.accepted[ev.ID], ev)
	w.WriteHeader(http.StatusNoContent)
}

func (r *hookReceiver) setSecret(s string) { r.mu.Lock(); r.secret = s; r.mu.Unlock() }

func (r *hookReceiver) types() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, evs := range r.accepted {
		out[evs[0].Type]++
	}
	return out
}

// webhookHub is openHub on a clock the test moves.
func webhookHub(t *testing.T) (*hub.Hub, *testClock) {
	t.Helper()
	h := openHub(t)
	clk := &testClock{t: t0}
	h.Now = clk.Now
	return h, clk
}

func addWebhook(t *testing.T, h *hub.Hub, url string, events ...string) hub.NewWebhook {
	t.Helper()
	nw, err := h.CreateWebhook(context.Background(), hub.WebhookRequest{URL: &url, Events: &events})
	if err != nil {
		t.Fatal(err)
	}
	return nw
}

// addWebhookB registers an endpoint of every event type that nothing listens at.
func addWebhookB(tb testing.TB, h *hub.Hub) {
	tb.Helper()
	url, events := "http://127.0.0.1:9/hooks", []string{"*"}
	if _, err := h.CreateWebhook(context.Background(), hub.WebhookRequest{URL: &url, Events: &events}); err != nil {
		tb.Fatal(err)
	}
}

func deliveries(t *testing.T, h *hub.Hub, id, state string) []hub.WebhookDelivery {
	t.Helper()
	ds, err := h.WebhookDeliveries(context.Background(), id, state, hub.MaxWebhookDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// drainHooks runs the sender's rounds, moving the clock by step after each, until nothing is pending
// for endpoint id or rounds run out.
func drainHooks(t *testing.T, h *hub.Hub, s *hub.WebhookSender, clk *testClock, id string, step time.Duration, rounds int) {
	t.Helper()
	for range rounds {
		if _, err := s.DeliverDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(deliveries(t, h, id, hub.DeliveryPending)) == 0 {
			return
		}
		clk.Add(step)
	}
	t.Fatalf("after %d rounds, deliveries still pending: %+v", rounds, deliveries(t, h, id, hub.DeliveryPending))
}

// TestWebhooks_EveryEventDeliveredSignedAfterFailures: events of the online channel, a store's
// push and the admin API go to an endpoint that refuses each one's first two attempts; every one
// arrives, signed, with its id, after three attempts; a store's retried push adds no event; the
// delivery log says so.
func TestWebhooks_EveryEventDeliveredSignedAfterFailures(t *testing.T) {
	h, clk := webhookHub(t)
	ctx := context.Background()
	rcv := newReceiver(t, time.Now, 2)
	nw := addWebhook(t, h, rcv.URL, "*")
	rcv.setSecret(nw.Secret)

	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m3", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	fund(t, h, "m1", 500)
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "R1", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "V1", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	d := earn("s1", "m2", 1000)
	pushOK(t, h, "s1", d)
	pushOK(t, h, "s1", d) // the store retries: a duplicate, no new event
	// A redemption the online channel refuses leaves no event: it rolled back with its cause.
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "R2", MemberID: "m3", RewardID: "coffee"}); loyalty.ErrorCode(err) == "" {
		t.Fatal("m3 redeemed a coffee with no points")
	}

	queued := deliveries(t, h, nw.Webhook.ID, "")
	s := hub.NewWebhookSender(h)
	s.BackoffMin, s.BackoffMax = time.Second, 4*time.Second
	drainHooks(t, h, s, clk, nw.Webhook.ID, 5*time.Second, 20)

	if len(rcv.bad) > 0 {
		t.Fatalf("refused deliveries: %q", rcv.bad)
	}
	want := map[string]int{hub.EventMemberCreated: 1, hub.EventPointsEarned: 2, hub.EventPointsRedeemed: 2, hub.EventVoucherIssued: 1}
	if got := rcv.types(); !equalCounts(got, want) {
		t.Fatalf("accepted events by type %v, want %v", got, want)
	}
	for _, q := range queued {
		if n := len(rcv.accepted[q.Event]); n != 1 {
			t.Errorf("event %s (%s) accepted %d times, want once", q.Event, q.Type, n)
		}
	}
	for _, dl := range deliveries(t, h, nw.Webhook.ID, "") {
		if dl.State != hub.DeliveryDelivered || dl.Attempts != 3 || dl.LastStatus != http.StatusNoContent || dl.DeliveredAt.IsZero() {
			t.Errorf("delivery %+v, want delivered at the third attempt", dl)
		}
	}
	if len(queued) != 6 {
		t.Fatalf("%d deliveries queued, want 6", len(queued))
	}
	// The earn's event carries the member's balance after it, and its delta.
	for _, evs := range rcv.accepted {
		var data hub.PointsEvent
		if evs[0].Type == hub.EventPointsEarned && json.Unmarshal(evs[0].Data, &data) == nil && data.Delta == d.ID {
			if data.Member != "m2" || data.Points != 10 || data.Balance != 10 || data.Store != "s1" {
				t.Fatalf("points.earned %+v, want m2 +10 to balance 10 at s1", data)
			}
		}
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestWebhooks_OnlySubscribedEventsAreStored: an endpoint of points.earned only gets those;
// with no endpoint at all, nothing is stored, so a later endpoint's replay finds nothing older.
func TestWebhooks_OnlySubscribedEventsAreStored(t *testing.T) {
	h, _ := webhookHub(t)
	ctx := context.Background()
	fund(t, h, "m1", 100) // no endpoint yet: not stored
	rcv := newReceiver(t, time.Now, 0)
	nw := addWebhook(t, h, rcv.URL, hub.EventPointsEarned)
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m3"}); err != nil {
		t.Fatal(err)
	}
	fund(t, h, "m1", 200)
	ds := deliveries(t, h, nw.Webhook.ID, "")
	if len(ds) != 1 || ds[0].Type != hub.EventPointsEarned {
		t.Fatalf("deliveries %+v, want one points.earned", ds)
	}
	n, err := h.ReplayWebhook(ctx, nw.Webhook.ID, hub.ReplayRequest{Since: t0.Add(-time.Hour)})
	if err != nil || n != 1 {
		t.Fatalf("replay since before the first sale queued %d (%v), want 1: the first sale had no subscriber", n, err)
	}
}

// TestWebhooks_RetriedForADayThenFailedAndDisabled: an endpoint that always fails is retried
// with growing waits until RetryFor has passed since the delivery was queued, and not before;
// then the delivery is failed. An endpoint with a low DisableAfter is disabled, the other
// endpoint hears endpoint.disabled, the disabled one is sent nothing more until it is enabled
// again, and then its waiting delivery goes out.
func TestWebhooks_RetriedForADayThenFailedAndDisabled(t *testing.T) {
	h, clk := webhookHub(t)
	ctx := context.Background()
	down := newReceiver(t, time.Now, -1)
	nwDown := addWebhook(t, h, down.URL, hub.EventPointsEarned)
	down.setSecret(nwDown.Secret)
	s := hub.NewWebhookSender(h)
	s.DisableAfter = 1000
	fund(t, h, "m1", 100)
	start := clk.Now()
	var waits []time.Duration
	for {
		if _, err := s.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		ds := deliveries(t, h, nwDown.Webhook.ID, "")
		if len(ds) != 1 {
			t.Fatalf("deliveries %+v, want 1", ds)
		}
		dl := ds[0]
		if dl.State == hub.DeliveryFailed {
			if clk.Now().Sub(start) < 24*time.Hour {
				t.Fatalf("given up after %s, before 24h", clk.Now().Sub(start))
			}
			break
		}
		if dl.State != hub.DeliveryPending {
			t.Fatalf("delivery %+v", dl)
		}
		if w := dl.NextAt.Sub(clk.Now()); len(waits) == 0 || waits[len(waits)-1] != w {
			waits = append(waits, w)
		}
		clk.t = dl.NextAt // to its next attempt
		if clk.Now().Sub(start) > 26*time.Hour {
			t.Fatalf("still retried after %s: %+v", clk.Now().Sub(start), dl)
		}
	}
	if down.attempts[deliveries(t, h, nwDown.Webhook.ID, "")[0].Event] < 20 {
		t.Fatalf("only %v attempts in a day", down.attempts)
	}
	for i := 1; i < 5 && i < len(waits); i++ {
		if waits[i] < waits[i-1]/2 {
			t.Fatalf("waits %v do not grow", waits)
		}
	}
	if last := waits[len(waits)-1]; last > time.Hour {
		t.Fatalf("a wait of %s, over the 1h cap", last)
	}

	// Disabling, once the failures in a row reach DisableAfter and have gone on long enough to
	// give an event up (its 24 hours): a second endpoint hears of it.
	up := newReceiver(t, time.Now, 0)
	nwUp := addWebhook(t, h, up.URL, hub.EventEndpointDisabled)
	up.setSecret(nwUp.Secret)
	s.DisableAfter = 3
	fund(t, h, "m1", 200)
	for round := range 14 {
		if _, err := s.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		if e, err := h.Webhook(ctx, nwDown.Webhook.ID); err != nil || round < 11 && !e.Enabled() {
			t.Fatalf("round %d, %s after the event: endpoint %+v (%v), disabled before an event was given up",
				round, time.Duration(round)*2*time.Hour, e, err)
		}
		clk.Add(2 * time.Hour)
	}
	e, err := h.Webhook(ctx, nwDown.Webhook.ID)
	if err != nil || e.Enabled() {
		t.Fatalf("endpoint %+v (%v), want disabled after 3 failures and an event given up", e, err)
	}
	if got := up.types(); got[hub.EventEndpointDisabled] != 1 {
		t.Fatalf("the other endpoint got %v, want one endpoint.disabled", got)
	}
	before := len(down.attempts)
	tries := 0
	for _, n := range down.attempts {
		tries += n
	}
	clk.Add(3 * time.Hour)
	if _, err := s.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	after := 0
	for _, n := range down.attempts {
		after += n
	}
	if after != tries || len(down.attempts) != before {
		t.Fatalf("a disabled endpoint was sent %d more attempts", after-tries)
	}
	// An event while it is disabled waits for it (the one that disabled it was given up).
	fund(t, h, "m1", 300)
	// Enabled again (and now answering), it gets its waiting delivery.
	down.mu.Lock()
	down.failFirst = 0
	down.mu.Unlock()
	on := true
	if _, err := h.UpdateWebhook(ctx, nwDown.Webhook.ID, hub.WebhookRequest{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	drainHooks(t, h, s, clk, nwDown.Webhook.ID, time.Hour, 5)
	if got := down.types(); got[hub.EventPointsEarned] != 1 {
		t.Fatalf("after enabling, the endpoint accepted %v, want the waiting points.earned", got)
	}
}

// TestWebhooks_ClaimLeaseAcrossProcesses: two hub processes' senders on one database never
// claim the same delivery at once; one that claims and dies before recording loses nothing: the
// other sends the delivery once the claim's lease has passed.
func TestWebhooks_ClaimLeaseAcrossProcesses(t *testing.T) {
	h1, clk := webhookHub(t)
	ctx := context.Background()
	h2 := hub.New(h1.Store)
	h2.KEK, h2.Logger, h2.Now = h1.KEK, h1.Logger, clk.Now
	rcv := newReceiver(t, time.Now, 0)
	nw := addWebhook(t, h1, rcv.URL, hub.EventPointsEarned)
	rcv.setSecret(nw.Secret)
	for i := range 5 {
		fund(t, h1, "m1", int64(100+i))
	}
	// h1 claims everything, then dies. The claim lasts as long as the deliveries claimed need
	// (here a minute each), not as long as a full batch would.
	var claimed []hub.WebhookAttempt
	var asked []int
	if err := h1.Store.Update(hub.Bookkeeping(ctx), func(tx hub.Tx) error {
		var err error
		asked = nil
		claimed, err = tx.ClaimWebhookDeliveries(ctx, clk.Now(), "", func(n int) time.Duration {
			asked = append(asked, n)
			return time.Duration(n) * time.Minute
		}, 100)
		return err
	}); err != nil || len(claimed) != 5 || !slices.Equal(asked, []int{5}) {
		t.Fatalf("claimed %d (%v), the lease asked for %v; want 5, and the lease of 5", len(claimed), err, asked)
	}
	for _, a := range claimed {
		if !a.ClaimedUntil.Equal(clk.Now().Add(5 * time.Minute).Truncate(time.Millisecond)) {
			t.Errorf("claimed until %v, want five minutes from %v", a.ClaimedUntil, clk.Now())
		}
	}
	s2 := hub.NewWebhookSender(h2)
	if n, err := s2.DeliverDue(ctx); err != nil || n != 0 {
		t.Fatalf("the second process claimed %d (%v) while the first one's lease lives", n, err)
	}
	clk.Add(5*time.Minute + time.Millisecond)
	if n, err := s2.DeliverDue(ctx); err != nil || n != 5 {
		t.Fatalf("after the lease, the second process claimed %d (%v), want 5", n, err)
	}
	// The first one's late outcome is not written over the second's.
	late := make([]hub.WebhookOutcome, len(claimed))
	for i, a := range claimed {
		late[i] = hub.WebhookOutcome{Endpoint: a.Endpoint, Event: a.Event, ClaimedUntil: a.ClaimedUntil, State: hub.DeliveryFailed, Attempts: 9, At: clk.Now()}
	}
	var wrote int
	if err := h1.Store.Update(hub.Bookkeeping(ctx), func(tx hub.Tx) error {
		var err error
		wrote, err = tx.RecordWebhookOutcomes(ctx, late)
		return err
	}); err != nil || wrote != 0 {
		t.Fatalf("a stale claim's outcomes wrote %d rows (%v), want 0", wrote, err)
	}
	if got := rcv.types(); got[hub.EventPointsEarned] != 5 {
		t.Fatalf("accepted %v, want 5 points.earned", got)
	}
	for _, dl := range deliveries(t, h1, nw.Webhook.ID, "") {
		if dl.State != hub.DeliveryDelivered || dl.Attempts != 1 {
			t.Fatalf("delivery %+v, want delivered at its first recorded attempt", dl)
		}
	}
	// Concurrent rounds of both processes: every event accepted once.
	for i := range 40 {
		fund(t, h1, "m2", int64(200+i))
	}
	s1 := hub.NewWebhookSender(h1)
	s1.Batch, s2.Batch = 7, 7
	var wg sync.WaitGroup
	for _, s := range []*hub.WebhookSender{s1, s2} {
		wg.Go(func() {
			for range 10 {
				if _, err := s.DeliverDue(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.accepted) != 45 {
		t.Fatalf("%d events accepted, want 45", len(rcv.accepted))
	}
	for id, n := range rcv.attempts {
		if n != 1 {
			t.Fatalf("event %s sent %d times by two processes", id, n)
		}
	}
}

// TestWebhooks_ClaimOutlastsTheRound: a round sends its deliveries Concurrency at a time, each
// up to the timeout, so its claim must last the whole round. The receiver here answers each
// request as late as the timeout allows (it moves the hubs' clock on by the timeout); while the
// first process is at its eighth delivery of forty, a second one finds none to claim. Each event
// is sent once, and the endpoint counts each failed attempt once.
func TestWebhooks_ClaimOutlastsTheRound(t *testing.T) {
	h1, clk := webhookHub(t)
	ctx := context.Background()
	h2 := hub.New(h1.Store)
	h2.KEK, h2.Logger, h2.Now = h1.KEK, h1.Logger, clk.Now
	s1, s2 := hub.NewWebhookSender(h1), hub.NewWebhookSender(h2)
	s1.Concurrency, s2.Concurrency = 1, 1
	var mu sync.Mutex
	sent := map[string]int{}
	second := -1
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clk.Add(s1.Timeout)
		mu.Lock()
		sent[r.Header.Get("Loyalty-Event-Id")]++
		n := len(sent)
		mu.Unlock()
		if n == 8 {
			var err error
			if second, err = s2.DeliverDue(ctx); err != nil {
				t.Error(err)
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer rcv.Close()
	nw := addWebhook(t, h1, rcv.URL, hub.EventPointsEarned)
	for i := range 40 {
		fund(t, h1, "m1", int64(100+i))
	}
	if n, err := s1.DeliverDue(ctx); err != nil || n != 40 {
		t.Fatalf("the first process claimed %d (%v), want 40", n, err)
	}
	if second != 0 {
		t.Errorf("the second process claimed %d deliveries while the first one's round went on, want 0", second)
	}
	mu.Lock()
	for id, n := range sent {
		if n != 1 {
			t.Errorf("event %s sent %d times", id, n)
		}
	}
	mu.Unlock()
	ws, err := h1.Webhooks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.ID == nw.Webhook.ID && w.Failures != 40 {
			t.Errorf("the endpoint counts %d failures, want one for each of the 40 attempts", w.Failures)
		}
	}
}

// TestWebhooks_ReplayRotateRemoveAudited: replay by id and by time queues deliveries again; a
// rotated secret signs the next ones; the secret is never stored in clear; every admin change is
// in the audit trail.
func TestWebhooks_ReplayRotateRemoveAudited(t *testing.T) {
	h, clk := webhookHub(t)
	ctx := context.Background()
	rcv := newReceiver(t, time.Now, 0)
	nw := addWebhook(t, h, rcv.URL, hub.EventPointsEarned, hub.EventMemberCreated)
	rcv.setSecret(nw.Secret)
	fund(t, h, "m1", 100)
	clk.Add(time.Hour)
	fund(t, h, "m1", 200)
	s := hub.NewWebhookSender(h)
	drainHooks(t, h, s, clk, nw.Webhook.ID, time.Second, 3)
	ds := deliveries(t, h, nw.Webhook.ID, hub.DeliveryDelivered)
	if len(ds) != 2 {
		t.Fatalf("delivered %+v, want 2", ds)
	}
	if n, err := h.ReplayWebhook(ctx, nw.Webhook.ID, hub.ReplayRequest{Event: ds[1].Event}); err != nil || n != 1 {
		t.Fatalf("replay one: %d, %v", n, err)
	}
	if _, err := h.ReplayWebhook(ctx, nw.Webhook.ID, hub.ReplayRequest{Event: "evt_nope"}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Fatalf("replay of no event: %v, want ENOTFOUND", err)
	}
	if _, err := h.ReplayWebhook(ctx, nw.Webhook.ID, hub.ReplayRequest{}); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Fatalf("replay of nothing: %v, want EINVALID", err)
	}
	rot, err := h.RotateWebhookSecret(ctx, nw.Webhook.ID)
	if err != nil || rot.Secret == nw.Secret {
		t.Fatalf("rotate: %v", err)
	}
	rcv.setSecret(rot.Secret)
	drainHooks(t, h, s, clk, nw.Webhook.ID, time.Second, 3)
	if n := len(rcv.accepted[ds[1].Event]); n != 2 {
		t.Fatalf("the replayed event was accepted %d times, want 2 (signed with the new secret)", n)
	}
	if n, err := h.ReplayWebhook(ctx, nw.Webhook.ID, hub.ReplayRequest{Since: t0.Add(30 * time.Minute)}); err != nil || n != 1 {
		t.Fatalf("replay since: %d, %v; want the later sale's event", n, err)
	}
	if b := storedBytes(t, whereOf(t, h.Store)); bytes.Contains(b, []byte(rot.Secret)) || bytes.Contains(b, []byte(nw.Secret)) {
		t.Fatal("a webhook secret is stored in clear")
	}
	url := rcv.URL + "/v2"
	if _, err := h.UpdateWebhook(ctx, nw.Webhook.ID, hub.WebhookRequest{URL: &url}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DeleteWebhook(ctx, nw.Webhook.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Webhook(ctx, nw.Webhook.ID); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Fatalf("removed endpoint: %v", err)
	}
	audit, err := h.Audit(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range audit {
		if strings.HasPrefix(e.Action, "webhook.") {
			actions = append(actions, e.Action)
			if strings.Contains(e.Detail, "whsec_") {
				t.Fatalf("audit detail holds a secret: %q", e.Detail)
			}
			// Report keys read the audit trail; a receiver's path often holds its secret.
			if strings.Contains(e.Detail, "/v2") {
				t.Fatalf("audit detail holds the receiver URL's path: %q", e.Detail)
			}
		}
	}
	want := []string{hub.AuditWebhookRemove, hub.AuditWebhookChange, hub.AuditWebhookReplay, hub.AuditWebhookRotate, hub.AuditWebhookReplay, hub.AuditWebhookAdd}
	if !slices.Equal(actions, want) {
		t.Fatalf("audit actions %v, want %v", actions, want)
	}
}

// TestWebhooks_ReplayByTimeInPages: a replay by time queues its events a page per write
// transaction. The pages end on a millisecond, so events made in the same millisecond as a page's
// last are in that page, never lost or queued twice; events before since, or of types the
// endpoint does not take, are not queued; the audit trail says the replay began, at its first
// page, and its total, at its last.
func TestWebhooks_ReplayByTimeInPages(t *testing.T) {
	h, clk := webhookHub(t)
	ctx := context.Background()
	nw := addWebhook(t, h, "http://127.0.0.1:9/hooks", hub.EventPointsEarned)
	addWebhookB(t, h)    // stores member.created too, which nw does not take
	fund(t, h, "m1", 50) // before since
	clk.Add(time.Minute)
	since := clk.Now()
	fund(t, h, "m1", 100) // three in one millisecond, at since
	fund(t, h, "m1", 200)
	fund(t, h, "m2", 300)
	clk.Add(time.Millisecond)
	fund(t, h, "m2", 400)
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m9"}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	fund(t, h, "m1", 500)
	until := clk.Now()

	// The storage's pages, two events at a time: the first page takes the whole millisecond.
	type page struct {
		queued int
		next   time.Time
	}
	var pages []page
	for from := since; !from.IsZero(); {
		var p page
		if err := h.Store.Update(ctx, func(tx hub.Tx) error {
			var err error
			p.queued, p.next, err = tx.ReplayWebhookSince(ctx, nw.Webhook.ID, from, until, until, 2)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		pages, from = append(pages, p), p.next
	}
	ms := time.Millisecond
	want := []page{{3, since.Add(ms)}, {1, since.Add(2 * ms)}, {1, time.Time{}}}
	if !slices.EqualFunc(pages, want, func(a, b page) bool { return a.queued == b.queued && a.next.Equal(b.next) }) {
		t.Fatalf("pages %+v, want %+v", pages, want)
	}

	h.WebhookEvents.ReplayBatch = 2
	n, err := h.ReplayWebhook(ctx, nw.Webhook.ID, hub.ReplayRequest{Since: since})
	if err != nil || n != 5 {
		t.Fatalf("replay since in pages of 2 queued %d (%v), want the 5 points.earned since", n, err)
	}
	if ds := deliveries(t, h, nw.Webhook.ID, hub.DeliveryPending); len(ds) != 6 {
		t.Fatalf("%d deliveries pending, want all 6 (the first never sent)", len(ds))
	}
	audit, err := h.Audit(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var replays []string
	for _, e := range audit {
		if e.Action == hub.AuditWebhookReplay {
			replays = append(replays, e.Detail)
		}
	}
	// Newest first: the total when it was done, and, as it took more than one page, that it began.
	if len(replays) != 2 || !strings.HasSuffix(replays[0], ": 5 queued") || !strings.HasSuffix(replays[1], ": being queued, a page at a time") {
		t.Fatalf("audit entries of the replay %q, want the total after that it began", replays)
	}
	// A replay in one page has one entry.
	h.WebhookEvents.ReplayBatch = 0
	if n, err := h.ReplayWebhook(ctx, nw.Webhook.ID, hub.ReplayRequest{Since: since}); err != nil || n != 5 {
		t.Fatalf("replay in one page queued %d (%v), want 5", n, err)
	}
	if es, err := h.AuditPage(ctx, hub.AuditQuery{Limit: 3, Action: hub.AuditWebhookReplay}); err != nil || len(es) != 3 ||
		!strings.HasSuffix(es[0].Detail, ": 5 queued") || !strings.HasSuffix(es[1].Detail, ": 5 queued") {
		t.Fatalf("after a replay in one page: %+v, %v", es, err)
	}
}

// TestWebhooks_RefusedInput: URLs that are not http(s), unknown event types, and long text.
func TestWebhooks_RefusedInput(t *testing.T) {
	h, _ := webhookHub(t)
	ctx := context.Background()
	for _, tc := range []struct{ url, event string }{
		{"ftp://example.com/x", hub.EventPointsEarned},
		{"file:///etc/passwd", hub.EventPointsEarned},
		{"http://user:pw@example.com/", hub.EventPointsEarned},
		{"/relative", hub.EventPointsEarned},
		{"https://example.com/" + strings.Repeat("a", 3000), hub.EventPointsEarned},
		{"https://example.com/", "points.stolen"},
		{"https://example.com/", ""},
	} {
		url, evs := tc.url, []string{tc.event}
		if _, err := h.CreateWebhook(ctx, hub.WebhookRequest{URL: &url, Events: &evs}); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("url %.40q events %q: %v, want EINVALID", tc.url, tc.event, err)
		}
	}
	if _, err := h.UpdateWebhook(ctx, "wh_nope", hub.WebhookRequest{}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("update of no endpoint: %v", err)
	}
	if _, err := h.WebhookDeliveries(ctx, "wh_nope", "", 10); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("deliveries of no endpoint: %v", err)
	}
}

// TestWebhooks_JobsStoresAndBudgets: expiry reminders once per lot however often the job runs,
// expiry and tier changes from the jobs, a store announced offline only after the grace period
// and online when it is back, a budget's threshold and exhaustion once each, and conflicts.
func TestWebhooks_JobsStoresAndBudgets(t *testing.T) {
	h, clk := webhookHub(t)
	ctx := context.Background()
	rcv := newReceiver(t, time.Now, 0)
	nw := addWebhook(t, h, rcv.URL, "*")
	rcv.setSecret(nw.Secret)
	withProgram(t, h, func(p *loyalty.Program) {
		p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30, RemindDays: 7}
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 5}}
	})
	fund(t, h, "m1", 1000)
	for i := range 5 {
		if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("B%d", i), MemberID: "m1", RewardID: "coffee"}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(24 * 24 * time.Hour) // day 24: the lot expires on day 30, within remind_days
	for range 3 {
		if n, err := h.RemindExpiring(ctx); err != nil || n != 1 {
			t.Fatalf("reminders found %d (%v), want 1", n, err)
		}
	}
	clk.Add(7 * 24 * time.Hour)
	if n, err := h.ExpirePoints(ctx); err != nil || n != 1 {
		t.Fatalf("expired %d (%v)", n, err)
	}
	// An offline store's overdraft: a conflict.
	od := redeem("s2", "m2", "coffee", 50)
	od.OccurredAt = clk.Now()
	pushOK(t, h, "s2", od)

	// s1 was seen, then its session ended: offline after the grace period only.
	seen := clk.Now()
	setConnected(t, h, "s1", false, seen)
	clk.Add(4 * time.Minute)
	if n, err := h.AnnounceStores(ctx); err != nil || n != 0 {
		t.Fatalf("announced %d (%v) within the grace period", n, err)
	}
	clk.Add(2 * time.Minute)
	for want := range []int{1, 0} {
		if n, err := h.AnnounceStores(ctx); err != nil || n != 1-want {
			t.Fatalf("announced %d (%v), want %d", n, err, 1-want)
		}
	}
	setConnected(t, h, "s1", true, clk.Now())
	if n, err := h.AnnounceStores(ctx); err != nil || n != 1 {
		t.Fatalf("announced %d (%v), want s1 online", n, err)
	}

	s := hub.NewWebhookSender(h)
	drainHooks(t, h, s, clk, nw.Webhook.ID, time.Second, 5)
	got := rcv.types()
	for typ, n := range map[string]int{hub.EventPointsExpiring: 1, hub.EventPointsExpired: 1, hub.EventBudgetThreshold: 1,
		hub.EventBudgetExhausted: 1, hub.EventStoreOffline: 1, hub.EventStoreOnline: 1, hub.EventConflictRecorded: 1, hub.EventVoucherUsed: 0} {
		if got[typ] != n {
			t.Errorf("%s: %d events, want %d (all: %v)", typ, got[typ], n, got)
		}
	}
	// The conflict's event names it by the id GET /v1/conflicts shows.
	cs, err := h.Conflicts(ctx, 10)
	if err != nil || len(cs) != 1 {
		t.Fatalf("conflicts %+v (%v), want the overdraft", cs, err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, evs := range rcv.accepted {
		if evs[0].Type != hub.EventConflictRecorded {
			continue
		}
		var c hub.Conflict
		if err := json.Unmarshal(evs[0].Data, &c); err != nil || c.ID != cs[0].ID || c.ID == 0 {
			t.Errorf("conflict.recorded names conflict %d (%v), GET /v1/conflicts %d", c.ID, err, cs[0].ID)
		}
	}
}

// setConnected writes a store's health as its session's claim or end does.
func setConnected(t *testing.T, h *hub.Hub, store string, connected bool, seen time.Time) {
	t.Helper()
	if err := h.Store.Update(hub.Bookkeeping(context.Background()), func(tx hub.Tx) error {
		return tx.SetStoreHealth(context.Background(), store, hub.Health{Connected: connected, LastSeen: seen})
	}); err != nil {
		t.Fatal(err)
	}
}

// FuzzVerifyWebhook: any header and body either verify or are refused with EUNAUTHORIZED,
// never a panic; what SignWebhook signs verifies, and a changed body does not.
func FuzzVerifyWebhook(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add("t=1800000000,v1=00", []byte(`{"id":"evt_1"}`))
	f.Add(hub.SignWebhook("whsec_x", now, []byte("{}")), []byte("{}"))
	f.Add("t=-9223372036854775808,v1=", []byte(""))
	f.Add(",,,=,t==,v1", []byte("x"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := hub.VerifyWebhook("whsec_x", header, body, now, hub.WebhookTolerance)
		if err != nil && loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED {
			t.Fatalf("%q: %v", header, err)
		}
		sig := hub.SignWebhook("whsec_x", now, body)
		if err := hub.VerifyWebhook("whsec_x", sig, body, now.Add(time.Minute), hub.WebhookTolerance); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if err := hub.VerifyWebhook("whsec_x", sig, append(body, '!'), now, hub.WebhookTolerance); err == nil {
			t.Fatal("a changed body verified")
		}
		if err := hub.VerifyWebhook("whsec_x", sig, body, now.Add(6*time.Minute), hub.WebhookTolerance); err == nil {
			t.Fatal("a stale signature verified")
		}
	})
}

// TestWebhooks_RekeyReseals: a new key-encryption key reseals the endpoints' secrets; the
// sender signs with them as before.
func TestWebhooks_RekeyReseals(t *testing.T) {
	h, clk := webhookHub(t)
	rcv := newReceiver(t, time.Now, 0)
	nw := addWebhook(t, h, rcv.URL, hub.EventPointsEarned)
	rcv.setSecret(nw.Secret)
	if _, err := h.Rekey(context.Background(), seal.NewRandom()); err != nil {
		t.Fatal(err)
	}
	fund(t, h, "m1", 100)
	drainHooks(t, h, hub.NewWebhookSender(h), clk, nw.Webhook.ID, time.Second, 2)
	if got := rcv.types(); got[hub.EventPointsEarned] != 1 || len(rcv.bad) > 0 {
		t.Fatalf("after a rekey, accepted %v, refused %q", got, rcv.bad)
	}
}

// TestWebhooks_AdjustmentsAndImports: a manual adjustment, its reversal and every imported row
// are points.adjusted events, and the members an import creates are member.created events, each
// once: re-running the import adds none.
func TestWebhooks_AdjustmentsAndImports(t *testing.T) {
	h, _ := webhookHub(t)
	ctx := cliCtx()
	rcv := newReceiver(t, time.Now, 0)
	nw := addWebhook(t, h, rcv.URL, hub.EventPointsAdjusted, hub.EventMemberCreated)
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "ann", Email: "ann@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "CS-1", MemberID: "ann", Points: 50, Reason: "goodwill"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ReverseAdjustment(ctx, "CS-1", "wrong member"); err != nil {
		t.Fatal(err)
	}
	file := "email,points\nann@example.com,10\nbob@example.com,20\ncleo@example.com,30\nnot-an-email,5\n"
	o := hub.ImportOptions{ImportID: "legacy", Reason: "migration"}
	importCSV(t, h, file, o)
	importCSV(t, h, file, o) // nothing twice
	count := map[string]int{}
	for _, d := range deliveries(t, h, nw.Webhook.ID, "") {
		count[d.Type]++
	}
	// member.created: ann, bob, cleo. points.adjusted: the adjustment, its reversal, three rows.
	if want := map[string]int{hub.EventMemberCreated: 3, hub.EventPointsAdjusted: 5}; !maps.Equal(count, want) {
		t.Errorf("events %v, want %v", count, want)
	}
}

// TestWebhooks_EraseTakesPersonalDataOutOfEvents: a member.created event waiting in the outbox
// holds the member's email and name; after the erasure neither the outbox nor a replay holds
// them, and the event keeps its id.
func TestWebhooks_EraseTakesPersonalDataOutOfEvents(t *testing.T) {
	h, _ := webhookHub(t)
	ctx := cliCtx()
	rcv := newReceiver(t, time.Now, 0)
	nw := addWebhook(t, h, rcv.URL, hub.EventMemberCreated)
	const email, name = "zoe.erased@example.com", "Zoe Q. Erasedperson"
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "zoe", Email: email, Name: name}); err != nil {
		t.Fatal(err)
	}
	if left := personalLeft(t, h, email, name); len(left) == 0 {
		t.Fatal("the search finds nothing before the erasure: it would prove nothing after it")
	}
	if _, err := h.EraseMember(ctx, "zoe"); err != nil {
		t.Fatal(err)
	}
	if left := personalLeft(t, h, email, name); len(left) > 0 {
		t.Errorf("after the erasure the hub still holds the member's data in %v", left)
	}
	ds := deliveries(t, h, nw.Webhook.ID, "")
	if len(ds) != 1 || ds[0].Type != hub.EventMemberCreated {
		t.Fatalf("deliveries %+v, want the one member.created, still waiting", ds)
	}
}

// TestWebhooks_CloseRecordsWhatWasAnswered: a sender stopped mid-round records the attempts that
// got an answer (a graceful restart sends none of them again) and leaves the one it cut short
// pending, not counted as the endpoint's failure, and no longer claimed: the next sender (the hub
// restarted) sends it at once, not after the claim's lease.
func TestWebhooks_CloseRecordsWhatWasAnswered(t *testing.T) {
	h, clk := webhookHub(t)
	inSecond, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if calls.Add(1) != 2 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		close(inSecond)
		select { // held until the sender gives up on it, or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	nw := addWebhook(t, h, srv.URL, hub.EventPointsEarned)
	fund(t, h, "m1", 100)
	clk.Add(time.Second)
	fund(t, h, "m1", 200)
	s := hub.NewWebhookSender(h)
	s.Concurrency = 1 // in order: the first is answered before the second is sent
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.DeliverDue(ctx); done <- err }()
	<-inSecond
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("a round stopped mid-way returned %v, want context.Canceled", err)
	}
	ds := deliveries(t, h, nw.Webhook.ID, "")
	states := map[string]int{}
	for _, d := range ds {
		states[d.State]++
		if d.State == hub.DeliveryPending && d.Attempts != 0 {
			t.Errorf("the delivery cut short counts %d attempts, want 0", d.Attempts)
		}
	}
	if states[hub.DeliveryDelivered] != 1 || states[hub.DeliveryPending] != 1 {
		t.Errorf("deliveries %+v: want the answered one delivered and the other pending", ds)
	}
	ep, err := h.Webhook(context.Background(), nw.Webhook.ID)
	if err != nil || ep.Failures != 0 {
		t.Errorf("endpoint %+v (%v): a stopped sender's cut attempt is no failure of the endpoint", ep, err)
	}
	if n, err := hub.NewWebhookSender(h).DeliverDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("the next sender, at once, claimed %d (%v); want the delivery cut short", n, err)
	}
	for _, d := range deliveries(t, h, nw.Webhook.ID, "") {
		if d.State != hub.DeliveryDelivered || d.Attempts != 1 {
			t.Errorf("delivery %+v: want each delivered at its one attempt", d)
		}
	}
}

// TestWebhooks_RemindersInPages: the expiry reminders are read and queued a page at a time (a
// page ends after its scan of due members), each member's lots once, and once only however often
// the job runs: 13 members, 2 lots each for some, read 3 due members a page.
func TestWebhooks_RemindersInPages(t *testing.T) {
	h, clk := webhookHub(t)
	ctx := context.Background()
	addWebhook(t, h, "https://example.com/hook", string(hub.EventPointsExpiring))
	withProgram(t, h, func(p *loyalty.Program) {
		p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 30, RemindDays: 7}
	})
	want := 0
	for i := range 13 {
		m := fmt.Sprintf("r%02d", i)
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: m}); err != nil {
			t.Fatal(err)
		}
		fund(t, h, m, 100)
		want++
		if i%4 == 0 {
			clk.Add(time.Minute)
			fund(t, h, m, 50) // a second lot, a minute younger
			want++
		}
	}
	h.SetExpiringScan(3)
	clk.Add(25 * 24 * time.Hour)
	for range 2 {
		if n, err := h.RemindExpiring(ctx); err != nil || n != want {
			t.Fatalf("reminders found %d (%v), want %d", n, err, want)
		}
	}
	var events int
	if err := openRaw(t, whereOf(t, h.Store)).QueryRow(`SELECT count(*) FROM webhook_events WHERE type = 'points.expiring'`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events != want {
		t.Fatalf("%d points.expiring events queued, want %d: one per member and lot", events, want)
	}
}

// TestWebhooks_PruneKeepsWhatComesAgain: the hourly prune removes, batch by batch, the deliveries
// and events older than the retention, but keeps the events the hub makes again under the same id
// while their cause lasts: a budget's threshold (once per budget and limit), and a reminder of
// points that have not expired yet. Pruned, they were made and delivered again: receivers heard
// of the same threshold twice.
func TestWebhooks_PruneKeepsWhatComesAgain(t *testing.T) {
	h, clk := webhookHub(t)
	ctx := context.Background()
	rcv := newReceiver(t, time.Now, 0)
	nw := addWebhook(t, h, rcv.URL, "*")
	rcv.setSecret(nw.Secret)
	withProgram(t, h, func(p *loyalty.Program) {
		p.Expiry = &loyalty.Expiry{Mode: loyalty.ExpiryLot, AfterDays: 60, RemindDays: 40}
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 5}}
	})
	fund(t, h, "m1", 1000)
	for i := range 4 { // 4 of 5: the threshold
		if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("B%d", i), MemberID: "m1", RewardID: "coffee"}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(25 * 24 * time.Hour) // the lot expires on day 60: within remind_days
	if n, err := h.RemindExpiring(ctx); err != nil || n != 1 {
		t.Fatalf("reminders found %d (%v), want 1", n, err)
	}
	s := hub.NewWebhookSender(h)
	s.PruneBatch = 2
	drainHooks(t, h, s, clk, nw.Webhook.ID, time.Second, 5)
	db := openRaw(t, whereOf(t, h.Store))
	count := func(q string) int {
		t.Helper()
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	events, delivered := count(`SELECT count(*) FROM webhook_events`), count(`SELECT count(*) FROM webhook_deliveries`)
	if events < 7 || delivered != events {
		t.Fatalf("%d events, %d deliveries before the prune; want the same number, at least 7", events, delivered)
	}

	clk.Add(31 * 24 * time.Hour) // day 56: everything is past the 30 days' retention
	n, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != events-2 || count(`SELECT count(*) FROM webhook_events`) != 2 || count(`SELECT count(*) FROM webhook_deliveries`) != 0 {
		t.Errorf("pruned %d events, %d left (want %d and 2: the threshold and the reminder), %d deliveries left (want 0)",
			n, count(`SELECT count(*) FROM webhook_events`), events-2, count(`SELECT count(*) FROM webhook_deliveries`))
	}
	// The threshold is passed again, and the reminder is due again: neither is sent again.
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "B4", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	if n, err := h.RemindExpiring(ctx); err != nil || n != 1 {
		t.Fatalf("reminders found %d (%v), want 1", n, err)
	}
	drainHooks(t, h, s, clk, nw.Webhook.ID, time.Second, 5)
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for id, evs := range rcv.accepted {
		if len(evs) != 1 {
			t.Errorf("event %s (%s) delivered %d times", id, evs[0].Type, len(evs))
		}
	}
	got := map[string]int{}
	for _, evs := range rcv.accepted {
		got[evs[0].Type]++
	}
	if got[hub.EventBudgetThreshold] != 1 || got[hub.EventBudgetExhausted] != 1 || got[hub.EventPointsExpiring] != 1 {
		t.Errorf("events by type %v: want one threshold, one exhausted, one reminder", got)
	}
	// Once the points have expired, the reminder goes too; the budget's events stay.
	clk.Add(5 * 24 * time.Hour)
	clk.Add(31 * 24 * time.Hour)
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(`SELECT count(*) FROM webhook_events WHERE type <> 'budget.threshold' AND type <> 'budget.exhausted'`); n != 0 {
		t.Errorf("%d events other than the budget's left a retention after the points expired", n)
	}
}

// TestWebhooks_SlowEndpointHoldsUpOnlyItself: each endpoint's deliveries go in rounds of their
// own. An endpoint that takes its time to answer held up every other endpoint's deliveries: a
// round claimed the oldest due deliveries of all endpoints and waited for the slowest answer.
func TestWebhooks_SlowEndpointHoldsUpOnlyItself(t *testing.T) {
	h, _ := webhookHub(t)
	arrived, release := make(chan struct{}, 16), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	got := make(chan string, 16)
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Loyalty-Event-Id")
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(fast.Close)
	addWebhook(t, h, slow.URL+"/hooks", "*")
	addWebhook(t, h, fast.URL+"/hooks", "*")

	s := hub.NewWebhookSender(h)
	s.Interval, s.Timeout = time.Millisecond, time.Hour // the slow answer outlasts the test
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer close(release)
	fund(t, h, "m1", 100) // one event, to both endpoints
	receive(t, arrived, "the first event at the slow endpoint")
	first := receive(t, got, "the first event at the fast endpoint")
	fund(t, h, "m1", 200) // another, while the slow endpoint still has the first
	if second := receive(t, got, "the second event at the fast endpoint, while the slow one answers the first"); second == first {
		t.Errorf("the fast endpoint got event %s twice", first)
	}
}

// TestWebhooks_AdjustmentReachesABudget: a manual adjustment charged to a points_issued budget
// sends budget.threshold and budget.exhausted as any spending does. An adjustment that took the
// budget to its limit sent neither, and nothing after it could be charged to send them.
func TestWebhooks_AdjustmentReachesABudget(t *testing.T) {
	h, _ := webhookHub(t)
	ctx := cliCtx()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "points", Metric: loyalty.MetricPointsIssued, Limit: 1_000}}
	})
	rcv := newReceiver(t, time.Now, 0)
	nw := addWebhook(t, h, rcv.URL, hub.EventBudgetThreshold, hub.EventBudgetExhausted)
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "ann", Email: "ann@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "CS-1", MemberID: "ann", Points: 1_000, Reason: "migration fix"}); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, d := range deliveries(t, h, nw.Webhook.ID, "") {
		count[d.Type]++
	}
	if want := map[string]int{hub.EventBudgetThreshold: 1, hub.EventBudgetExhausted: 1}; !maps.Equal(count, want) {
		t.Errorf("events %v, want %v", count, want)
	}
}

// TestWebhooks_ABlipDoesNotDisable: a receiver that refuses one round of a hundred and more
// waiting events (a restart of a few seconds) stays enabled and gets every event after. Counting
// attempts alone disabled it in that one round, until an operator enabled it again.
func TestWebhooks_ABlipDoesNotDisable(t *testing.T) {
	h, clk := webhookHub(t)
	ctx := cliCtx()
	rcv := newReceiver(t, time.Now, 1) // each event's first attempt refused
	nw := addWebhook(t, h, rcv.URL, hub.EventMemberCreated)
	rcv.setSecret(nw.Secret)
	for i := range 120 {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("blip%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	s := hub.NewWebhookSender(h)
	if n, err := s.DeliverDue(context.Background()); err != nil || n != 100 {
		t.Fatalf("the first round: %d claimed, %v; want a full batch of 100, every attempt refused", n, err)
	}
	if e, err := h.Webhook(ctx, nw.Webhook.ID); err != nil || !e.Enabled() || e.Failures != 100 {
		t.Fatalf("after one refused round: %+v (%v); want enabled, 100 failures in a row", e, err)
	}
	drainHooks(t, h, s, clk, nw.Webhook.ID, time.Minute, 20)
	if got := rcv.types(); got[hub.EventMemberCreated] != 120 {
		t.Errorf("the receiver accepted %v, want the 120 member.created", got)
	}
	if e, _ := h.Webhook(ctx, nw.Webhook.ID); !e.Enabled() || e.Failures != 0 {
		t.Errorf("after the deliveries: %+v; want enabled, no failures in a row", e)
	}
}

// TestWebhooks_DisabledTooLongIsGivenUp: an endpoint disabled keeps its events queued, to go out
// once it is enabled again, but not past the retention: then the hourly prune gives them up and
// removes them with their events. Before, a receiver gone for good kept every event since in the
// database, and each prune read them all again.
func TestWebhooks_DisabledTooLongIsGivenUp(t *testing.T) {
	h, clk := webhookHub(t)
	ctx := hub.WithActor(context.Background(), hub.CLIActor)
	gone := addWebhook(t, h, "http://127.0.0.1:9/gone", string(hub.EventPointsEarned))
	paused := addWebhook(t, h, "http://127.0.0.1:9/paused", string(hub.EventPointsEarned))
	off := false
	if _, err := h.UpdateWebhook(ctx, gone.Webhook.ID, hub.WebhookRequest{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	fund(t, h, "m1", 100)
	fund(t, h, "m1", 200)
	clk.Add(20 * 24 * time.Hour)
	if _, err := h.UpdateWebhook(ctx, paused.Webhook.ID, hub.WebhookRequest{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	fund(t, h, "m1", 300)
	clk.Add(11 * 24 * time.Hour) // the first two events are 31 days old, the third 11
	s := hub.NewWebhookSender(h)
	s.PruneBatch = 1
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if d := deliveries(t, h, gone.Webhook.ID, ""); len(d) != 1 || d[0].State != hub.DeliveryPending {
		t.Errorf("the endpoint disabled for 31 days: %+v; want its 11-day-old delivery pending, the older ones gone", d)
	}
	// Disabled for 11 days only: everything waits for it, the deliveries queued 31 days ago
	// too, to be tried once more when it is enabled again.
	if d := deliveries(t, h, paused.Webhook.ID, hub.DeliveryPending); len(d) != 3 {
		t.Errorf("the endpoint disabled for 11 days: %+v; want its 3 deliveries pending", d)
	}
	var events int
	if err := openRaw(t, whereOf(t, h.Store)).QueryRow(`SELECT count(*) FROM webhook_events`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events != 3 {
		t.Errorf("%d events kept, want the 3 the paused endpoint waits for", events)
	}
	// Once it too has been disabled past the retention, what waits for it goes, and the events.
	clk.Add(20 * 24 * time.Hour)
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{gone.Webhook.ID, paused.Webhook.ID} {
		if d := deliveries(t, h, id, ""); len(d) != 0 {
			t.Errorf("endpoint %s, disabled for over 30 days: %+v left", id, d)
		}
	}
	if err := openRaw(t, whereOf(t, h.Store)).QueryRow(`SELECT count(*) FROM webhook_events`).Scan(&events); err != nil || events != 0 {
		t.Errorf("%d events kept (%v), want none", events, err)
	}
}
