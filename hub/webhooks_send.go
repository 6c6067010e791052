// The webhook sender: a background component that sends due deliveries, signed, and retries
// failures with exponential backoff (webhooks.go has the events and the outbox).
//
// Exactly one sender per attempt across several hub processes on one database. A round claims
// one endpoint's due deliveries in a write transaction (Tx.ClaimWebhookDeliveries), which sets a
// lease on each (claimed_until): no other process claims them until it passes. Each endpoint has
// rounds of its own, so that a slow one holds up only its own deliveries. The round sends them outside
// any transaction, then records their outcomes in another, only where the claim is still its own
// (Tx.RecordWebhookOutcomes). A process that dies mid-round loses nothing: its claims expire and
// another process sends those deliveries again. So a delivery may arrive more than once (after
// such a crash, or when an endpoint answers after the lease): receivers deduplicate by the
// event id. The claim and the outcome are bookkeeping transactions (Bookkeeping): no change
// version, nothing agents pull.

package hub

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
)

// WebhookSender sends the hub's webhook deliveries. Set the exported fields before Open.
type WebhookSender struct {
	Hub *Hub
	// Client sends the requests; nil: one with Timeout and no redirect to another host.
	Client *http.Client
	// Timeout bounds one attempt, from connecting to the answer's end. Zero: 10s.
	Timeout time.Duration
	// Interval is how often the sender looks for due deliveries. Zero: 1s.
	Interval time.Duration
	// Batch is how many deliveries a round claims at most. Zero: 100.
	Batch int
	// Concurrency is how many requests a round sends at once. Zero: 4.
	Concurrency int
	// BackoffMin and BackoffMax bound the wait before the next attempt: BackoffMin after the
	// first failure, doubling, capped at BackoffMax, each drawn between half and all of it
	// (jitter). Zero: 10s and 1h.
	BackoffMin, BackoffMax time.Duration
	// RetryFor is how long a delivery is retried before it is given up (failed). Zero: 24h.
	RetryFor time.Duration
	// DisableAfter is how many consecutive failed attempts disable an endpoint. Zero: 100.
	DisableAfter int
	// Retention is how long delivered and failed deliveries, and their events, are kept (Prune).
	// Zero: 720h.
	Retention time.Duration
	// PruneBatch is how many rows one of Prune's transactions removes at most. Zero: 1000.
	PruneBatch int
	// OnDelivery, if set, is told every attempt's outcome, after it is recorded (for metrics).
	OnDelivery func(DeliveryReport)

	cancel     context.CancelFunc
	wg         sync.WaitGroup
	once       sync.Once
	clientOnce sync.Once // sets Client, if nil, once among the endpoints' rounds
}

// DeliveryReport is one attempt's outcome, for metrics.
type DeliveryReport struct {
	Endpoint string
	Event    string
	Type     string
	State    string // the delivery's state after the attempt
	Status   int    // the HTTP status (0: no answer)
	Duration time.Duration
	Disabled bool // the attempt disabled the endpoint
}

// maxResponse is how much of an endpoint's answer is read, for the delivery log.
const maxResponse = 1 << 10

// NewWebhookSender returns a sender for h with default settings.
func NewWebhookSender(h *Hub) *WebhookSender {
	return &WebhookSender{Hub: h, Timeout: 10 * time.Second, Interval: time.Second, Batch: 100, Concurrency: 4,
		BackoffMin: 10 * time.Second, BackoffMax: time.Hour, RetryFor: 24 * time.Hour, DisableAfter: 100, Retention: 720 * time.Hour}
}

// Open starts the sender's goroutine. Close stops it.
func (s *WebhookSender) Open() error {
	if s.Hub == nil {
		return errors.New("webhook sender: no hub")
	}
	if s.Client == nil {
		s.Client = webhookClient(s.timeout())
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.run(ctx) })
	return nil
}

// Close stops the sender and waits for its round to end. It is safe to call more than once.
func (s *WebhookSender) Close() error {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
	})
	return nil
}

// maxWebhookRedirects is how many redirects one attempt follows (docs/API.md, "Webhooks").
const maxWebhookRedirects = 3

// webhookClient returns an HTTP client with a timeout that follows at most maxWebhookRedirects
// redirects, each to the same scheme and host and keeping the POST and its body (307 and 308).
// Go's client turns a POST into a GET without a body on 301, 302 and 303: the event would not
// be sent, yet a 2xx answer to that GET would count as delivered. Any other redirect is
// answered as the redirect it is: a failed attempt, retried.
func webhookClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		first := via[0]
		if len(via) > maxWebhookRedirects || req.Method != first.Method ||
			req.URL.Host != first.URL.Host || req.URL.Scheme != first.URL.Scheme {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

func (s *WebhookSender) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 10 * time.Second
}

// run sends due deliveries every Interval until ctx ends; every hour it prunes old ones and
// announces stores gone offline or back (the latter every round).
func (s *WebhookSender) run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var pruned time.Time
	// Each endpoint's deliveries go in rounds of their own, one endpoint's after another's
	// without waiting for it: a slow endpoint holds up only its own deliveries.
	busy := map[string]bool{}
	done := make(chan string, maxBusyEndpoints)
	// When each endpoint's rounds last started, by this loop's count: the endpoints waiting
	// longest go first, so that 16 busy endpoints cannot keep a seventeenth waiting for ever.
	started, starts := map[string]uint64{}, uint64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case ep := <-done:
			delete(busy, ep)
			continue
		case <-t.C:
		}
	drained:
		for {
			select {
			case ep := <-done:
				delete(busy, ep)
			default:
				break drained
			}
		}
		if now := s.Hub.Now(); now.Sub(pruned) >= time.Hour {
			pruned = now
			if _, err := s.Prune(ctx); err != nil && ctx.Err() == nil {
				s.Hub.Logger.Warn("webhooks: prune old deliveries", slog.Any("err", err))
			}
		}
		// Without an endpoint, a round is this one read: no write transaction.
		var types []string
		if err := s.Hub.Store.View(ctx, func(tx Tx) error {
			var err error
			types, err = tx.WebhookTypes(ctx)
			return err
		}); err != nil || len(types) == 0 {
			if err != nil && ctx.Err() == nil {
				s.Hub.Logger.Warn("webhooks: read the endpoints' event types", slog.Any("err", err))
			}
			continue
		}
		if _, err := s.Hub.AnnounceStores(ctx); err != nil && ctx.Err() == nil {
			s.Hub.Logger.Warn("webhooks: announce stores offline or online", slog.Any("err", err))
		}
		eps, err := s.dueEndpoints(ctx)
		if err != nil && ctx.Err() == nil {
			s.Hub.Logger.Warn("webhooks: find the endpoints with due deliveries", slog.Any("err", err))
		}
		slices.SortStableFunc(eps, func(a, b string) int { return cmp.Compare(started[a], started[b]) })
		for _, ep := range eps {
			if busy[ep] || len(busy) >= maxBusyEndpoints {
				continue
			}
			busy[ep] = true
			starts++
			started[ep] = starts
			s.wg.Go(func() {
				defer func() { done <- ep }()
				for {
					n, err := s.deliverTo(ctx, ep)
					if err != nil && ctx.Err() == nil {
						s.Hub.Logger.Warn("webhooks: send due deliveries", slog.String("endpoint", ep), slog.Any("err", err))
					}
					if err != nil || n < s.batch() {
						return
					}
				}
			})
		}
	}
}

// maxBusyEndpoints is how many endpoints a sender sends to at once, each Concurrency requests at
// a time; the others wait for one of them to be done.
const maxBusyEndpoints = 16

func (s *WebhookSender) batch() int {
	if s.Batch > 0 {
		return s.Batch
	}
	return 100
}

func (s *WebhookSender) concurrency() int {
	if s.Concurrency > 0 {
		return s.Concurrency
	}
	return 4
}

// lease is how long a claim of n deliveries keeps other processes off them: the whole round,
// whose attempts go Concurrency at a time, each within the timeout, and time to record their
// outcomes. (A claim shorter than the round let another process claim and send the round's last
// deliveries while this one was still at its first ones: each sent twice, and this process's
// outcomes, no longer its claim's, thrown away.) It is sized by the deliveries claimed, not the
// batch: a round cut short by a crash holds back only as long as its own attempts could take.
func (s *WebhookSender) lease(n int) time.Duration {
	waves := (n + s.concurrency() - 1) / s.concurrency()
	return time.Duration(waves)*s.timeout() + 30*time.Second
}

// DeliverDue runs one round for every endpoint with due deliveries, at once: each claims up to
// Batch of its endpoint's due deliveries, sends them, and records what came of them. It returns
// how many it claimed in all.
func (s *WebhookSender) DeliverDue(ctx context.Context) (int, error) {
	eps, err := s.dueEndpoints(ctx)
	if err != nil {
		return 0, err
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	total := 0
	for _, ep := range eps {
		wg.Go(func() {
			n, e := s.deliverTo(ctx, ep)
			mu.Lock()
			total, err = total+n, errors.Join(err, e)
			mu.Unlock()
		})
	}
	wg.Wait()
	return total, err
}

// dueEndpoints returns the enabled endpoints with deliveries due now.
func (s *WebhookSender) dueEndpoints(ctx context.Context) ([]string, error) {
	now := s.Hub.Now().UTC().Truncate(time.Millisecond)
	var eps []string
	err := s.Hub.Store.View(ctx, func(tx Tx) error {
		var err error
		eps, err = tx.DueWebhookEndpoints(ctx, now)
		return err
	})
	return eps, err
}

// deliverTo runs one round for endpoint: it claims up to Batch of its due deliveries, sends them,
// Concurrency at a time, and records what came of them. It returns how many it claimed.
func (s *WebhookSender) deliverTo(ctx context.Context, endpoint string) (int, error) {
	h := s.Hub
	s.clientOnce.Do(func() {
		if s.Client == nil {
			s.Client = webhookClient(s.timeout())
		}
	})
	now := h.Now().UTC().Truncate(time.Millisecond)
	var claimed []WebhookAttempt
	err := h.Store.Update(Bookkeeping(ctx), func(tx Tx) error {
		var err error
		claimed, err = tx.ClaimWebhookDeliveries(ctx, now, endpoint, s.lease, s.batch())
		return err
	})
	if err != nil || len(claimed) == 0 {
		return 0, err
	}
	results := make([]attemptResult, len(claimed))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(s.concurrency(), len(claimed)) {
		wg.Go(func() {
			for i := range work {
				results[i] = s.send(ctx, claimed[i])
			}
		})
	}
	for i := range claimed {
		work <- i
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		// The sender is closing (Close): the attempts that got an answer are recorded, so that a
		// graceful restart sends none of them again; the claims of those cut short are given up,
		// so that the next process (this hub restarted, or another) sends them again at once,
		// without counting them as the endpoint's failures, rather than after the claim's lease.
		var done []WebhookAttempt
		var got []attemptResult
		var cut []WebhookOutcome
		for i, r := range results {
			if r.status != 0 {
				done, got = append(done, claimed[i]), append(got, r)
			} else {
				cut = append(cut, unclaimed(claimed[i], now))
			}
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		var err error
		if len(done) > 0 {
			err = s.record(rctx, done, got)
		}
		if len(cut) > 0 {
			err = errors.Join(err, h.Store.Update(Bookkeeping(rctx), func(tx Tx) error {
				_, err := tx.RecordWebhookOutcomes(rctx, cut)
				return err
			}))
		}
		return len(claimed), errors.Join(err, ctx.Err())
	}
	return len(claimed), s.record(ctx, claimed, results)
}

// unclaimed is the outcome that gives up the claim of an attempt that was not made (or not
// answered): the delivery as it was before the claim, due at now. (A claim an erasure ended since
// is not this one: the outcome then writes nothing.)
func unclaimed(a WebhookAttempt, now time.Time) WebhookOutcome {
	return WebhookOutcome{Endpoint: a.Endpoint, Event: a.Event, ClaimedUntil: a.ClaimedUntil, State: DeliveryPending,
		Attempts: a.Attempts, NextAt: now, At: a.LastAt, Status: a.LastStatus, Error: a.LastError}
}

// attemptResult is what one request came to.
type attemptResult struct {
	at       time.Time
	status   int
	err      string // "" on success
	reason   string // why it failed, for metrics (Metrics.WebhookFailure): timeout, connect, status or other
	duration time.Duration
}

// send sends one delivery, signed.
func (s *WebhookSender) send(ctx context.Context, a WebhookAttempt) attemptResult {
	h := s.Hub
	at := h.Now()
	secret, err := h.openWebhookSecret(a.Endpoint, a.Sealed)
	if err != nil {
		return attemptResult{at: at, err: err.Error(), reason: "other"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, strings.NewReader(string(a.Body)))
	if err != nil {
		return attemptResult{at: at, err: "the endpoint's url cannot be requested: " + err.Error(), reason: "other"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "loyalty-hub-webhooks/1")
	req.Header.Set("Loyalty-Event-Id", a.Event)
	req.Header.Set("Loyalty-Event-Type", a.Type)
	// Signed on the machine's clock, which receivers compare it with; retries and their backoff
	// are on the hub's (Hub.Now), which tests move.
	req.Header.Set(WebhookSignatureHeader, SignWebhook(secret, time.Now(), a.Body))
	start := time.Now()
	resp, err := s.Client.Do(req)
	d := time.Since(start)
	if err != nil {
		reason := "connect"
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			reason = "timeout"
		}
		return attemptResult{at: at, err: err.Error(), reason: reason, duration: d}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused, within reason
	r := attemptResult{at: at, status: resp.StatusCode, duration: d}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		r.reason = "status"
		// Printable: the answer is the receiver's, and is shown on operators' terminals.
		r.err = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, loyalty.Printable(strings.TrimSpace(string(b))))
		if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
			r.err = fmt.Sprintf("HTTP %d: a redirect not followed (only 307 and 308, to the same scheme and host, at most %d; register the URL it leads to)",
				resp.StatusCode, maxWebhookRedirects)
		}
		r.err = cutUTF8(r.err, maxWebhookError)
	}
	return r
}

// maxWebhookError is how many bytes of a failed attempt's error the delivery log keeps.
const maxWebhookError = 300

// cutUTF8 returns valid UTF-8 s cut to at most n bytes, at a character boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// backoff returns the wait after a delivery's attempts-th failed attempt.
func (s *WebhookSender) backoff(attempts int) time.Duration {
	lo, hi := s.BackoffMin, s.BackoffMax
	if lo <= 0 {
		lo = 10 * time.Second
	}
	if hi < lo {
		hi = max(lo, time.Hour)
	}
	d := lo
	for i := 1; i < attempts && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// record writes the outcomes of a round in one bookkeeping transaction: the deliveries' new
// states, each endpoint's run of failures, and the endpoints that run disables, with an
// endpoint.disabled event for the others. This is the one place delivery outcomes are decided.
func (s *WebhookSender) record(ctx context.Context, claimed []WebhookAttempt, results []attemptResult) error {
	h := s.Hub
	retryFor := s.RetryFor
	if retryFor <= 0 {
		retryFor = 24 * time.Hour
	}
	disableAfter := s.DisableAfter
	if disableAfter <= 0 {
		disableAfter = 100
	}
	outs := make([]WebhookOutcome, len(claimed))
	for i, a := range claimed {
		r := results[i]
		o := WebhookOutcome{Endpoint: a.Endpoint, Event: a.Event, ClaimedUntil: a.ClaimedUntil, Attempts: a.Attempts + 1,
			At: r.at.UTC().Truncate(time.Millisecond), Status: r.status, Error: r.err}
		switch {
		case r.err == "":
			o.State = DeliveryDelivered
		case r.at.Sub(a.CreatedAt) >= retryFor:
			o.State = DeliveryFailed
		default:
			o.State, o.NextAt = DeliveryPending, o.At.Add(s.backoff(o.Attempts))
		}
		outs[i] = o
	}
	disabled := map[string]bool{}
	err := h.Store.Update(Bookkeeping(ctx), func(tx Tx) error {
		clear(disabled)
		if _, err := tx.RecordWebhookOutcomes(ctx, outs); err != nil {
			return err
		}
		// Each endpoint's run of failures, in the order the attempts were made.
		type run struct {
			reset    bool
			failures int
			gaveUp   bool // an event of the round was given up on: it failed for retryFor
		}
		runs := map[string]*run{}
		var order []string
		byTime := make([]int, len(outs))
		for i, o := range outs {
			byTime[i] = i
			if runs[o.Endpoint] == nil {
				runs[o.Endpoint] = &run{}
				order = append(order, o.Endpoint)
			}
		}
		slices.SortStableFunc(byTime, func(i, j int) int { return outs[i].At.Compare(outs[j].At) })
		for _, i := range byTime {
			r := runs[outs[i].Endpoint]
			if outs[i].Error == "" {
				r.reset, r.failures = true, 0
			} else {
				r.failures++
			}
			r.gaveUp = r.gaveUp || outs[i].State == DeliveryFailed
		}
		var evs []WebhookEvent
		for _, id := range order {
			r := runs[id]
			e, err := tx.WebhookEndpoint(ctx, id)
			if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
				continue // removed meanwhile
			} else if err != nil {
				return err
			}
			if r.reset {
				e.Failures = 0
			}
			e.Failures += r.failures
			// Disabled after disableAfter failures in a row, once they have gone on long enough
			// to give an event up (retryFor). A count alone disabled an endpoint in one round of
			// failed attempts, a blip of seconds with a hundred events waiting, until an operator
			// enabled it again.
			if e.Enabled() && e.Failures >= disableAfter && r.gaveUp {
				now := h.Now().UTC().Truncate(time.Millisecond)
				e.DisabledAt = now
				e.DisabledReason = fmt.Sprintf("%d consecutive failed attempts", e.Failures)
				disabled[id] = true
				ev := newWebhookEvent(EventEndpointDisabled, now, map[string]any{"webhook_id": e.ID,
					"failures": e.Failures, "disabled_at": now}, e.ID, now.Format(time.RFC3339Nano))
				ev.Skip = e.ID
				evs = append(evs, ev)
			}
			if err := tx.UpdateWebhookEndpoint(ctx, e); err != nil {
				return err
			}
		}
		if len(evs) > 0 {
			return emitEvents(ctx, tx, evs)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for id := range disabled {
		h.Logger.Warn("webhooks: endpoint disabled after repeated failures; enable it again with PATCH /v1/webhooks/{id} {\"enabled\": true}",
			slog.String("webhook", id))
	}
	m := h.metrics()
	for i, o := range outs {
		switch o.State {
		case DeliveryDelivered:
			m.WebhookDelivery("delivered")
		case DeliveryFailed:
			m.WebhookDelivery("failed")
		default:
			m.WebhookDelivery("retried")
		}
		if results[i].err != "" {
			m.WebhookFailure(cmp.Or(results[i].reason, "other"))
		}
	}
	if s.OnDelivery != nil {
		for i, o := range outs {
			s.OnDelivery(DeliveryReport{Endpoint: o.Endpoint, Event: o.Event, Type: claimed[i].Type, State: o.State, Status: o.Status,
				Duration: results[i].duration, Disabled: disabled[o.Endpoint]})
		}
	}
	return nil
}

// DisabledTooLong is the last error of a delivery given up because its endpoint stayed disabled
// for longer than the delivery log is kept.
const DisabledTooLong = "given up: the endpoint was disabled for longer than webhooks.retention"

// Prune removes the deliveries and events older than Retention that wait for no attempt, in
// batches of PruneBatch rows, each its own short transaction: a month of a busy chain's deliveries
// is millions of rows, and one transaction deleting them all would hold up the sessions'
// renewals (the bookkeeping it runs beside) until other hub processes took their stores for dead.
// Two kinds of events stay longer, because the hub makes them again, under the same id, while
// their cause lasts, and their receivers would be told twice: budget.threshold and
// budget.exhausted (once per budget and limit, for ever: a handful of rows), and points.expiring
// until the points it announced have expired (expiry.remind_days after it was made). Deliveries
// that wait for an endpoint disabled past the retention are given up first (DisabledTooLong). It
// returns how many events it removed.
func (s *WebhookSender) Prune(ctx context.Context) (int, error) {
	keep := s.Retention
	if keep <= 0 {
		keep = 720 * time.Hour
	}
	batch := cmp.Or(s.PruneBatch, 1000)
	now := s.Hub.Now()
	before := now.Add(-keep)
	// inBatches runs step, a transaction each, until it does less than a batch.
	inBatches := func(step func(tx Tx) (int, error)) error {
		for {
			var n int
			if err := s.Hub.Store.Update(Bookkeeping(ctx), func(tx Tx) error {
				var err error
				n, err = step(tx)
				return err
			}); err != nil || n < batch {
				return err
			}
		}
	}
	// What waits for an endpoint disabled for longer than the retention, queued as long ago, is
	// given up, so that a receiver gone for good does not keep every event since in the database.
	if err := inBatches(func(tx Tx) (int, error) { return tx.GiveUpDisabledDeliveries(ctx, before, DisabledTooLong, batch) }); err != nil {
		return 0, err
	}
	if err := inBatches(func(tx Tx) (int, error) { return tx.PruneWebhookDeliveries(ctx, before, batch) }); err != nil {
		return 0, err
	}
	p, err := s.Hub.Program(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, typ := range WebhookEventTypes {
		until := before
		switch typ {
		case EventBudgetThreshold, EventBudgetExhausted:
			continue
		case EventPointsExpiring:
			if p.Expiry != nil {
				if expired := now.AddDate(0, 0, -p.Expiry.RemindDays); expired.Before(until) {
					until = expired
				}
			}
		}
		for after := (time.Time{}); ; {
			var n int
			var last time.Time
			if err := s.Hub.Store.Update(Bookkeeping(ctx), func(tx Tx) error {
				var err error
				n, last, err = tx.PruneWebhookEvents(ctx, typ, after, until, batch)
				return err
			}); err != nil {
				return total, err
			}
			total, after = total+n, last
			if n < batch {
				break
			}
		}
	}
	return total, nil
}

// AnnounceStores emits store.offline for the stores whose sync session ended more than
// WebhookEvents.OfflineAfter ago (and did not come back), and store.online for those of them that are
// connected again. A store that reconnects within OfflineAfter is announced nothing. Which store
// is connected is what its session row says (sessions.go), whichever hub process holds it. It
// returns how many stores it announced.
func (h *Hub) AnnounceStores(ctx context.Context) (int, error) {
	now := h.Now().UTC().Truncate(time.Millisecond)
	var n int
	err := h.Store.Update(Bookkeeping(ctx), func(tx Tx) error {
		ts, err := tx.WebhookStoreTransitions(ctx, now.Add(-h.WebhookEvents.offlineAfter()))
		if err != nil || len(ts) == 0 {
			n = 0
			return err
		}
		n = len(ts)
		evs := make([]WebhookEvent, 0, len(ts))
		for _, t := range ts {
			data := map[string]any{"store": t.Store, "last_seen": t.LastSeen}
			if t.Offline {
				data["offline_after"] = h.WebhookEvents.offlineAfter().String()
				evs = append(evs, newWebhookEvent(EventStoreOffline, now, data, t.Store, t.LastSeen.Format(time.RFC3339Nano)))
			} else {
				evs = append(evs, newWebhookEvent(EventStoreOnline, now, data, t.Store, now.Format(time.RFC3339Nano)))
			}
		}
		return emitEvents(ctx, tx, evs)
	})
	return n, err
}

// RemindExpiring emits points.expiring for what expires within the program's remind_days
// (ExpiringSoonPage): one event per member and expiring lot (mode lot) or expiry time (mode
// inactivity), however often it runs, since an event's id is derived from them. It reads a page
// of members and queues its events, one write transaction a page, so that its memory does not
// grow with the chain. Without an endpoint that takes points.expiring it reads nothing. It
// returns how many reminders it found.
func (h *Hub) RemindExpiring(ctx context.Context) (int, error) {
	var subscribed bool
	err := h.Store.View(ctx, func(tx Tx) error {
		types, err := tx.WebhookTypes(ctx)
		subscribed = slices.Contains(types, EventPointsExpiring) || slices.Contains(types, webhookEveryEventTypes)
		return err
	})
	if err != nil || !subscribed {
		return 0, err
	}
	found := 0
	for after := ""; ; {
		page, err := h.ExpiringSoonPage(ctx, after, remindPage)
		if err != nil {
			return found, err
		}
		if len(page.Expiring) > 0 {
			now := h.Now()
			evs := make([]WebhookEvent, len(page.Expiring))
			for k, x := range page.Expiring {
				evs[k] = newWebhookEvent(EventPointsExpiring, now, x, x.Member, x.ExpiresAt.UTC().Format(time.RFC3339Nano))
			}
			if err := h.Store.Update(ctx, func(tx Tx) error { return emitEvents(ctx, tx, evs) }); err != nil {
				return found, err
			}
			found += len(evs)
		}
		if after = page.Next; after == "" {
			return found, nil
		}
	}
}

// remindPage is how many members' reminders RemindExpiring queues in one write transaction.
const remindPage = 500
