// Webhooks: loyalty events sent to the operator's HTTP endpoints (docs/API.md, "Webhooks").
//
// An event is written to a durable outbox (Tx.InsertWebhookEvents) in the same transaction as
// its cause: a sale's points.earned commits with the sale, or not at all. The outbox fans it out
// to one delivery per endpoint whose filter takes it, in the same statement; an event no endpoint
// subscribes to is not stored (the check is SQL in that transaction, so no hub process can act
// on a stale list of endpoints). The sender (webhooks_send.go) sends due deliveries, signed, and
// retries failures with exponential backoff.
//
// An event's id is derived from its cause (the delta, the member, the budget and its limit, the
// expiring lot…), not drawn at random: a cause met twice (a job's second run, two hub processes
// reminding of the same lot) is one event, stored once (ON CONFLICT DO NOTHING), and a retried
// transaction writes the same ids again.

package hub

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
)

// Webhook event types.
const (
	EventMemberCreated     = "member.created"
	EventPointsEarned      = "points.earned"
	EventPointsRedeemed    = "points.redeemed"
	EventPointsAdjusted    = "points.adjusted" // an operator's manual adjustment (an adjust delta)
	EventTierChanged       = "tier.changed"
	EventPointsExpiring    = "points.expiring" // a reminder: points expire within the program's remind_days
	EventPointsExpired     = "points.expired"
	EventExpiryReversed    = "points.expiry_reversed" // an expiry gave back points it should not have taken
	EventVoucherIssued     = "voucher.issued"
	EventVoucherUsed       = "voucher.used"
	EventConflictRecorded  = "conflict.recorded"
	EventBudgetThreshold   = "budget.threshold" // a budget's spending reached WebhookConfig.BudgetThreshold of its limit
	EventBudgetExhausted   = "budget.exhausted" // a budget's spending reached its limit
	EventStoreOffline      = "store.offline"
	EventStoreOnline       = "store.online"
	EventEndpointDisabled  = "endpoint.disabled" // the hub disabled an endpoint after repeated failures
	webhookEveryEventTypes = "*"
)

// WebhookEventTypes lists the event types an endpoint may subscribe to ("*" takes them all).
var WebhookEventTypes = []string{EventMemberCreated, EventPointsEarned, EventPointsRedeemed, EventPointsAdjusted,
	EventTierChanged, EventPointsExpiring, EventPointsExpired, EventExpiryReversed, EventVoucherIssued, EventVoucherUsed, EventConflictRecorded,
	EventBudgetThreshold, EventBudgetExhausted, EventStoreOffline, EventStoreOnline, EventEndpointDisabled}

// WebhookConfig is how the hub emits and sends webhooks.
type WebhookConfig struct {
	// BudgetThreshold is the share of a budget's limit whose spending emits budget.threshold
	// (once per budget and limit). Zero: 0.8.
	BudgetThreshold float64
	// OfflineAfter is how long a store's sync session may stay ended before the store is
	// announced offline (store.offline); a store back within it is announced nothing. Zero: 5m.
	OfflineAfter time.Duration
	// ReplayBatch is about how many events a replay by time (ReplayWebhook with Since) queues
	// in one write transaction, so that it never holds the writer for long. Zero: 1000.
	ReplayBatch int
}

func (c WebhookConfig) threshold() float64 {
	if c.BudgetThreshold <= 0 || c.BudgetThreshold > 1 {
		return 0.8
	}
	return c.BudgetThreshold
}

func (c WebhookConfig) offlineAfter() time.Duration {
	if c.OfflineAfter <= 0 {
		return 5 * time.Minute
	}
	return c.OfflineAfter
}

// WebhookEndpoint is an operator's HTTP endpoint that receives events of the types it names.
type WebhookEndpoint struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Events      []string `json:"events"` // event types, or ["*"] for every type
	Description string   `json:"description,omitempty"`
	// Sealed is the signing secret, sealed under the hub's KEK (never in an answer).
	Sealed    []byte    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	// DisabledAt is when the endpoint was disabled, by an operator or after Failures
	// consecutive failed attempts (zero: enabled). A disabled endpoint is sent nothing; its
	// deliveries wait, and go out once it is enabled again.
	DisabledAt time.Time `json:"disabled_at,omitzero"`
	// DisabledReason says why ("" while enabled).
	DisabledReason string `json:"disabled_reason,omitempty"`
	// Failures counts the endpoint's failed attempts since its last success.
	Failures int `json:"failures"`
}

// Enabled reports whether the endpoint is sent events.
func (e WebhookEndpoint) Enabled() bool { return e.DisabledAt.IsZero() }

// Takes reports whether the endpoint subscribes to events of type typ.
func (e WebhookEndpoint) Takes(typ string) bool {
	return slices.Contains(e.Events, webhookEveryEventTypes) || slices.Contains(e.Events, typ)
}

// WebhookEvent is an event in the outbox: its id, type, when it happened and the JSON body sent
// to endpoints, exactly as signed.
type WebhookEvent struct {
	ID        string
	Type      string
	CreatedAt time.Time
	Body      []byte
	// Skip is an endpoint that must not get the event (the endpoint an endpoint.disabled event
	// is about).
	Skip string
}

// Webhook delivery states.
const (
	DeliveryPending   = "pending"   // waiting for its next attempt
	DeliveryDelivered = "delivered" // the endpoint answered 2xx
	DeliveryFailed    = "failed"    // every attempt failed for WebhookSender.RetryFor: given up
)

// WebhookDelivery is one event's delivery to one endpoint, as the delivery log shows it.
type WebhookDelivery struct {
	Endpoint    string    `json:"webhook_id"`
	Event       string    `json:"event_id"`
	Type        string    `json:"type"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"` // queued (or queued again by a replay)
	NextAt      time.Time `json:"next_attempt_at,omitzero"`
	LastAt      time.Time `json:"last_attempt_at,omitzero"`
	LastStatus  int       `json:"last_status,omitempty"` // the endpoint's HTTP status (0: no answer)
	LastError   string    `json:"last_error,omitempty"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

// WebhookAttempt is a claimed delivery, with what sending it needs (Tx.ClaimWebhookDeliveries).
type WebhookAttempt struct {
	WebhookDelivery
	URL    string
	Sealed []byte // the endpoint's sealed secret
	Body   []byte
	// ClaimedUntil is the claim's lease: after it, another hub process may send it again.
	ClaimedUntil time.Time
}

// WebhookOutcome is what an attempt came to (Tx.RecordWebhookOutcomes): the delivery's new
// state, attempts, next attempt and last result, written only if the claim is still owner's.
type WebhookOutcome struct {
	Endpoint, Event string
	ClaimedUntil    time.Time // the claim this outcome is for
	State           string
	Attempts        int
	NextAt          time.Time
	At              time.Time
	Status          int
	Error           string
}

// StoreTransition is a store announced offline or online again (Tx.WebhookStoreTransitions).
type StoreTransition struct {
	Store    string
	Offline  bool
	LastSeen time.Time
}

// WebhookTx is the storage of webhooks: endpoints, the event outbox and the delivery log.
type WebhookTx interface {
	// InsertWebhookEndpoint returns EDUPLICATE if the id is taken.
	InsertWebhookEndpoint(ctx context.Context, e WebhookEndpoint) error
	// WebhookEndpoint returns an endpoint (ENOTFOUND).
	WebhookEndpoint(ctx context.Context, id string) (WebhookEndpoint, error)
	// WebhookEndpoints returns every endpoint, oldest first.
	WebhookEndpoints(ctx context.Context) ([]WebhookEndpoint, error)
	// UpdateWebhookEndpoint writes every field of an endpoint but its id and creation (ENOTFOUND).
	UpdateWebhookEndpoint(ctx context.Context, e WebhookEndpoint) error
	// DeleteWebhookEndpoint removes an endpoint and its deliveries (ENOTFOUND).
	DeleteWebhookEndpoint(ctx context.Context, id string) error
	// WebhookTypes returns the event types some endpoint takes ("*": every type), once each.
	WebhookTypes(ctx context.Context) ([]string, error)
	// InsertWebhookEvents stores the events that some endpoint takes and whose id is new, and
	// queues a pending delivery, due at once, for each endpoint that takes one (but its Skip); it
	// returns how many deliveries it queued. A few statements for the whole slice.
	InsertWebhookEvents(ctx context.Context, evs []WebhookEvent) (int, error)
	// WebhookEventBody returns the stored body of event id (ENOTFOUND if it was not stored).
	WebhookEventBody(ctx context.Context, id string) ([]byte, error)
	// SetWebhookEventBody replaces the stored body of event id, clears the last error of its
	// deliveries (a receiver's answer may quote the body) and ends their claims (an attempt under
	// way records nothing: its delivery goes again, with the new body): an erasure takes a
	// member's personal data out of the events that carry it. The old bytes are not left in the
	// file.
	SetWebhookEventBody(ctx context.Context, id string, body []byte) error
	// DueWebhookEndpoints returns the enabled endpoints that have a delivery due at now.
	DueWebhookEndpoints(ctx context.Context, now time.Time) ([]string, error)
	// ClaimWebhookDeliveries claims up to limit pending deliveries of endpoint ("": of every
	// enabled endpoint) that are due at now and not claimed by another process (a claim lives
	// until its ClaimedUntil), until now+lease(n), n the number it claims, and returns them,
	// oldest first.
	ClaimWebhookDeliveries(ctx context.Context, now time.Time, endpoint string, lease func(claimed int) time.Duration, limit int) ([]WebhookAttempt, error)
	// RecordWebhookOutcomes writes outcomes to deliveries whose claim is still the one the
	// outcome is for, and returns how many it wrote.
	RecordWebhookOutcomes(ctx context.Context, outs []WebhookOutcome) (int, error)
	// WebhookDeliveries returns up to limit of an endpoint's deliveries, newest first, of state
	// state ("": any).
	WebhookDeliveries(ctx context.Context, endpoint, state string, limit int) ([]WebhookDelivery, error)
	// ReplayWebhookEvent queues again, due at now, the delivery to an endpoint of the stored
	// event event if the endpoint takes its type; it returns how many it queued (0 or 1).
	ReplayWebhookEvent(ctx context.Context, endpoint, event string, now time.Time) (int, error)
	// ReplayWebhookSince queues again, due at now, the deliveries to an endpoint of the stored
	// events created from from to until (both included) whose types it takes, oldest first, in
	// one page: the events up to the created_at of the limit-th event from from, with every
	// other event of that millisecond. It returns how many it queued and where the next page
	// starts, zero when this page reached until.
	ReplayWebhookSince(ctx context.Context, endpoint string, from, until, now time.Time, limit int) (queued int, next time.Time, err error)
	// WebhookStoreTransitions finds the stores to announce: those disconnected since before
	// offlineBefore and not announced offline yet, and those connected again after they were
	// announced offline; it records each as announced and returns them.
	WebhookStoreTransitions(ctx context.Context, offlineBefore time.Time) ([]StoreTransition, error)
	// PruneWebhookDeliveries removes up to limit of the deliveries queued before before that wait
	// for no attempt, oldest first, and returns how many it removed.
	PruneWebhookDeliveries(ctx context.Context, before time.Time, limit int) (int, error)
	// GiveUpDisabledDeliveries marks failed, with the reason as their last error, up to limit of
	// the deliveries still pending for endpoints disabled before before that were queued before
	// before, and returns how many.
	GiveUpDisabledDeliveries(ctx context.Context, before time.Time, reason string, limit int) (int, error)
	// PruneWebhookEvents removes up to limit of the events of type typ made from after (included)
	// to before (excluded) that no delivery waits for, oldest first. It returns how many it
	// removed and when the last of them was made (after when none).
	PruneWebhookEvents(ctx context.Context, typ string, after, before time.Time, limit int) (int, time.Time, error)
}

// webhookEventID derives an event's id from its type and the key of its cause.
func webhookEventID(typ string, key ...string) string {
	h := sha256.New()
	h.Write([]byte(typ))
	for _, k := range key {
		h.Write([]byte{0})
		h.Write([]byte(k))
	}
	return "evt_" + hex.EncodeToString(h.Sum(nil))[:32]
}

// EventBody is the JSON body of every delivery: the event's id (the same as the
// Loyalty-Event-Id header, for receivers to deduplicate), its type, when it happened on the hub's
// clock, and its data, whose fields depend on the type (docs/API.md, "Webhook events").
type EventBody struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// newWebhookEvent makes an event of type typ about data, with the id of its cause's key.
func newWebhookEvent(typ string, at time.Time, data any, key ...string) WebhookEvent {
	id := webhookEventID(typ, key...)
	at = at.UTC().Truncate(time.Millisecond)
	body, err := json.Marshal(struct {
		ID        string    `json:"id"`
		Type      string    `json:"type"`
		CreatedAt time.Time `json:"created_at"`
		Data      any       `json:"data"`
	}{id, typ, at, data})
	if err != nil { // data are the hub's own structs of strings, numbers and times
		panic(fmt.Sprintf("webhook event %s: %v", typ, err))
	}
	return WebhookEvent{ID: id, Type: typ, CreatedAt: at, Body: body}
}

// pendingEvent is an event of the applier's transaction, its body not made yet: only events of
// a type some endpoint takes are (flushEvents).
type pendingEvent struct {
	typ  string
	at   time.Time
	data any
	key  []string
}

// emit keeps an event for the applier's transaction; flushEvents writes them.
func (a *applier) emit(typ string, data any, key ...string) {
	a.events = append(a.events, pendingEvent{typ, a.Now(), data, key})
}

// flushEvents writes the events kept so far to the outbox, in one call, after one read of the
// event types endpoints take: without an endpoint, a batch's events cost that read and nothing
// else.
func (a *applier) flushEvents(ctx context.Context) error {
	if len(a.events) == 0 {
		return nil
	}
	pending := a.events
	a.events = nil
	types, err := a.tx.WebhookTypes(ctx)
	if err != nil || len(types) == 0 {
		return err
	}
	all := slices.Contains(types, webhookEveryEventTypes)
	var evs []WebhookEvent
	for _, p := range pending {
		if all || slices.Contains(types, p.typ) {
			evs = append(evs, newWebhookEvent(p.typ, p.at, p.data, p.key...))
		}
	}
	if len(evs) == 0 {
		return nil
	}
	return emitEvents(ctx, a.tx, evs)
}

// emitEvents writes events to the outbox of tx, the transaction of their cause, once each.
func emitEvents(ctx context.Context, tx Tx, evs []WebhookEvent) error {
	seen := make(map[string]bool, len(evs))
	out := evs[:0:0]
	for _, e := range evs {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	_, err := tx.InsertWebhookEvents(ctx, out)
	return err
}

// PointsEvent is the data of points.earned, points.redeemed, points.adjusted and points.expired.
type PointsEvent struct {
	Member     string    `json:"member_id"`
	Delta      string    `json:"delta_id"`
	Store      string    `json:"store"`
	Order      string    `json:"order_id,omitempty"`
	Points     int64     `json:"points"`  // signed: negative for a redemption or an expiry
	Balance    int64     `json:"balance"` // the member's balance after it
	Reward     string    `json:"reward_id,omitempty"`
	Rule       string    `json:"rule,omitempty"`
	OccurredAt time.Time `json:"occurred_at"`
}

// emitDelta emits what an applied delta tells endpoints, with the member's balance after it.
func (a *applier) emitDelta(store string, d loyalty.Delta, balance int64) {
	pe := PointsEvent{Member: d.Member, Delta: d.ID, Store: store, Order: d.OrderID, Points: d.Points, Balance: balance,
		Reward: d.Reward, Rule: d.Rule, OccurredAt: d.EventTime().UTC()}
	switch {
	case d.Kind == loyalty.KindEarn:
		a.emit(EventPointsEarned, pe, d.ID)
	case d.Kind == loyalty.KindRedeem && d.Voucher != "":
		a.emit(EventVoucherUsed, map[string]any{"voucher_id": d.Voucher, "member_id": d.Member, "delta_id": d.ID, "store": store,
			"order_id": d.OrderID, "occurred_at": pe.OccurredAt}, d.ID)
	case d.Kind == loyalty.KindRedeem:
		a.emit(EventPointsRedeemed, pe, d.ID)
	case d.Kind == loyalty.KindAdjust:
		a.emit(EventPointsAdjusted, pe, d.ID)
	}
}

// recordConflict records a conflict and emits conflict.recorded.
func (a *applier) recordConflict(ctx context.Context, c Conflict) error {
	id, err := a.tx.InsertConflict(ctx, c)
	if err != nil {
		return err
	}
	c.ID = id // as GET /v1/conflicts and the exports show it
	a.emit(EventConflictRecorded, c, c.Kind, c.Store, c.Member, strings.Join(c.Deltas, ","), c.Detail)
	return nil
}

// emitBudget emits budget.threshold and budget.exhausted when a budget's spending reaches them,
// once per budget and limit (a raised limit can be reached again).
func (a *applier) emitBudget(b string, spent, limit int64) {
	if limit <= 0 {
		return
	}
	data := map[string]any{"budget_id": b, "spent": spent, "limit": limit}
	lim := strconv.FormatInt(limit, 10)
	if float64(spent) >= a.WebhookEvents.threshold()*float64(limit) {
		data["threshold"] = a.WebhookEvents.threshold()
		a.emit(EventBudgetThreshold, data, b, lim)
	}
	if spent >= limit {
		a.emit(EventBudgetExhausted, map[string]any{"budget_id": b, "spent": spent, "limit": limit}, b, lim)
	}
}

// Signing.

// WebhookSignatureHeader is the header that carries a delivery's signature:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>".
const WebhookSignatureHeader = "Loyalty-Signature"

// WebhookTolerance is how old a signature's timestamp a receiver should accept at most.
const WebhookTolerance = 5 * time.Minute

// SignWebhook returns the signature header's value for body sent at t with secret.
func SignWebhook(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + webhookMAC(secret, ts, body)
}

func webhookMAC(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyWebhook checks a signature header's value for body with secret: one of its v1
// signatures matches, and its timestamp is within tolerance of now. It returns EUNAUTHORIZED.
func VerifyWebhook(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		switch {
		case !ok:
		case k == "t":
			ts = v
		case k == "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "the signature header is not t=<unix seconds>,v1=<hex>")
	}
	if d := now.Unix() - sec; d > int64(tolerance/time.Second) || d < -int64(tolerance/time.Second) {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "the signature's timestamp is more than %s away from now", tolerance)
	}
	want := webhookMAC(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return loyalty.Errorf(loyalty.EUNAUTHORIZED, "no signature matches the body")
}

// Endpoints (admin).

// NewWebhook is a created endpoint with its signing secret, shown only in this answer.
type NewWebhook struct {
	Webhook WebhookEndpoint `json:"webhook"`
	Secret  string          `json:"secret"`
}

// WebhookRequest is what an operator gives of an endpoint; PATCH changes the fields given.
type WebhookRequest struct {
	URL         *string   `json:"url"`
	Events      *[]string `json:"events"`
	Description *string   `json:"description"`
	Enabled     *bool     `json:"enabled"`
}

// maxWebhookURL bounds an endpoint's URL.
const maxWebhookURL = 2000

// checkWebhookURL refuses what is not an absolute http(s) URL with a host. Private and loopback
// addresses are allowed: an operator registers endpoints, and a receiver beside the hub is
// common.
func checkWebhookURL(raw string) error {
	if raw == "" || len(raw) > maxWebhookURL {
		return loyalty.Errorf(loyalty.EINVALID, "url is required, at most %d characters", maxWebhookURL)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return loyalty.Errorf(loyalty.EINVALID, "url must be an absolute http:// or https:// URL without credentials, such as https://crm.example.com/loyalty")
	}
	// "http://:8080/x" has a port and no host: Go would dial the hub's own machine.
	if u.Hostname() == "" {
		return loyalty.Errorf(loyalty.EINVALID, "url has no host name before its port; give the receiver's host, such as https://crm.example.com:8443/loyalty")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return loyalty.Errorf(loyalty.EINVALID, "url's port %s is not a port number from 1 to 65535; give the receiver's port, or none for 80 (http) or 443 (https)", loyalty.Truncate(p, 10))
		}
	}
	return nil
}

// checkWebhookEvents refuses an empty list and unknown types, and returns the list sorted, once
// each.
func checkWebhookEvents(evs []string) ([]string, error) {
	if len(evs) == 0 || len(evs) > len(WebhookEventTypes)+1 {
		return nil, loyalty.Errorf(loyalty.EINVALID, "events must list event types (or \"*\" for all): %s", strings.Join(WebhookEventTypes, ", "))
	}
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		if e != webhookEveryEventTypes && !slices.Contains(WebhookEventTypes, e) {
			return nil, loyalty.Errorf(loyalty.EINVALID, "no event type %q; the types are %s, or \"*\"", loyalty.Truncate(e, 40), strings.Join(WebhookEventTypes, ", "))
		}
		out = append(out, e)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// newWebhookSecret draws an endpoint's signing secret.
func newWebhookSecret() string { return "whsec_" + rand.Text() + rand.Text() }

// sealWebhookSecret seals an endpoint's secret under the hub's KEK, bound to the endpoint's id.
func (h *Hub) sealWebhookSecret(id, secret string) ([]byte, error) {
	if h.KEK == nil {
		return nil, loyalty.Errorf(loyalty.EINVALID, "the hub needs its key-encryption key to seal webhook secrets: set keys.kek_file (or keys.kek)")
	}
	return h.KEK.Seal([]byte(secret), "webhook:"+id), nil
}

// openWebhookSecret opens an endpoint's sealed secret.
func (h *Hub) openWebhookSecret(id string, sealed []byte) (string, error) {
	if h.KEK == nil {
		return "", fmt.Errorf("the hub has no key-encryption key to open webhook secrets with: set keys.kek_file (or keys.kek)")
	}
	b, err := h.KEK.Open(sealed, "webhook:"+id)
	if err != nil {
		return "", fmt.Errorf("webhook %s: its secret does not open with this key-encryption key: %w", id, err)
	}
	return string(b), nil
}

// CreateWebhook registers an endpoint and returns it with its secret (shown once).
func (h *Hub) CreateWebhook(ctx context.Context, req WebhookRequest) (NewWebhook, error) {
	var e WebhookEndpoint
	if req.URL == nil || req.Events == nil {
		return NewWebhook{}, loyalty.Errorf(loyalty.EINVALID, "url and events are required")
	}
	if err := checkWebhookURL(*req.URL); err != nil {
		return NewWebhook{}, err
	}
	evs, err := checkWebhookEvents(*req.Events)
	if err != nil {
		return NewWebhook{}, err
	}
	e.ID, e.URL, e.Events = "wh_"+strings.ToLower(rand.Text()[:16]), *req.URL, evs
	if req.Description != nil {
		if e.Description, err = webhookDescription(*req.Description); err != nil {
			return NewWebhook{}, err
		}
	}
	e.CreatedAt = h.Now().UTC().Truncate(time.Millisecond)
	if req.Enabled != nil && !*req.Enabled {
		e.DisabledAt, e.DisabledReason = e.CreatedAt, "disabled by an operator"
	}
	secret := newWebhookSecret()
	if e.Sealed, err = h.sealWebhookSecret(e.ID, secret); err != nil {
		return NewWebhook{}, err
	}
	err = h.Store.Update(ctx, func(tx Tx) error {
		if err := tx.InsertWebhookEndpoint(ctx, e); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditWebhookAdd, e.ID, auditURL(e.URL)+" "+strings.Join(e.Events, ","))
	})
	if err != nil {
		return NewWebhook{}, err
	}
	return NewWebhook{Webhook: e, Secret: secret}, nil
}

func webhookDescription(s string) (string, error) {
	// Characters, not bytes (docs/API.md); no NUL, which PostgreSQL cannot store in text.
	if !utf8Valid(s) || utf8.RuneCountInString(s) > 200 {
		return "", loyalty.Errorf(loyalty.EINVALID, "description is at most 200 characters of text")
	}
	return s, nil
}

func utf8Valid(s string) bool { return storableKey(s) || s == "" }

// Webhooks lists the endpoints, oldest first.
func (h *Hub) Webhooks(ctx context.Context) ([]WebhookEndpoint, error) {
	out := []WebhookEndpoint{}
	err := h.Store.View(ctx, func(tx Tx) error {
		es, err := tx.WebhookEndpoints(ctx)
		out = append(out, es...)
		return err
	})
	return out, err
}

// Webhook returns one endpoint.
func (h *Hub) Webhook(ctx context.Context, id string) (WebhookEndpoint, error) {
	var e WebhookEndpoint
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		e, err = tx.WebhookEndpoint(ctx, id)
		return err
	})
	return e, err
}

// UpdateWebhook changes the fields req gives of an endpoint. Enabling it again clears its
// failures: its waiting deliveries go out at their next attempt.
func (h *Hub) UpdateWebhook(ctx context.Context, id string, req WebhookRequest) (WebhookEndpoint, error) {
	var e WebhookEndpoint
	if req.URL != nil {
		if err := checkWebhookURL(*req.URL); err != nil {
			return e, err
		}
	}
	var evs []string
	if req.Events != nil {
		var err error
		if evs, err = checkWebhookEvents(*req.Events); err != nil {
			return e, err
		}
	}
	if req.Description != nil {
		if _, err := webhookDescription(*req.Description); err != nil {
			return e, err
		}
	}
	now := h.Now().UTC().Truncate(time.Millisecond)
	err := h.Store.Update(ctx, func(tx Tx) error {
		var err error
		if e, err = tx.WebhookEndpoint(ctx, id); err != nil {
			return err
		}
		var changed []string
		if req.URL != nil {
			e.URL = *req.URL
			changed = append(changed, "url "+auditURL(e.URL))
		}
		if req.Events != nil {
			e.Events = evs
			changed = append(changed, "events "+strings.Join(evs, ","))
		}
		if req.Description != nil {
			e.Description = *req.Description
			changed = append(changed, "description")
		}
		if req.Enabled != nil {
			switch {
			case *req.Enabled && !e.Enabled():
				e.DisabledAt, e.DisabledReason, e.Failures = time.Time{}, "", 0
				changed = append(changed, "enabled")
			case !*req.Enabled && e.Enabled():
				e.DisabledAt, e.DisabledReason = now, "disabled by an operator"
				changed = append(changed, "disabled")
			}
		}
		if err := tx.UpdateWebhookEndpoint(ctx, e); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditWebhookChange, id, cmp.Or(strings.Join(changed, "; "), "nothing changed"))
	})
	return e, err
}

// DeleteWebhook removes an endpoint and its delivery log; it returns the endpoint as it was.
func (h *Hub) DeleteWebhook(ctx context.Context, id string) (WebhookEndpoint, error) {
	var e WebhookEndpoint
	err := h.Store.Update(ctx, func(tx Tx) error {
		var err error
		if e, err = tx.WebhookEndpoint(ctx, id); err != nil {
			return err
		}
		if err := tx.DeleteWebhookEndpoint(ctx, id); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditWebhookRemove, id, auditURL(e.URL))
	})
	return e, err
}

// RotateWebhookSecret replaces an endpoint's secret at once and returns the new one (shown once).
func (h *Hub) RotateWebhookSecret(ctx context.Context, id string) (NewWebhook, error) {
	secret := newWebhookSecret()
	sealed, err := h.sealWebhookSecret(id, secret)
	if err != nil {
		return NewWebhook{}, err
	}
	var e WebhookEndpoint
	err = h.Store.Update(ctx, func(tx Tx) error {
		var err error
		if e, err = tx.WebhookEndpoint(ctx, id); err != nil {
			return err
		}
		e.Sealed = sealed
		if err := tx.UpdateWebhookEndpoint(ctx, e); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditWebhookRotate, id, "")
	})
	if err != nil {
		return NewWebhook{}, err
	}
	return NewWebhook{Webhook: e, Secret: secret}, nil
}

// MaxWebhookDeliveries is the most deliveries one call lists.
const MaxWebhookDeliveries = 1000

// DeliveryStateCond is the condition on the state of the deliveries d of a delivery log: "" for
// any, else the state written out, which WebhookDeliveries checked is one of the three: a
// parameter would keep the planner from the index of failed deliveries, a condition on it.
func DeliveryStateCond(state string) string {
	switch state {
	case DeliveryPending, DeliveryDelivered, DeliveryFailed:
		return " AND d.state = '" + state + "'"
	}
	return ""
}

// WebhookDeliveries lists up to limit of an endpoint's deliveries, newest first, of one state
// ("": all).
func (h *Hub) WebhookDeliveries(ctx context.Context, id, state string, limit int) ([]WebhookDelivery, error) {
	if limit < 1 || limit > MaxWebhookDeliveries {
		return nil, loyalty.Errorf(loyalty.EINVALID, "limit must be a whole number from 1 to %d", MaxWebhookDeliveries)
	}
	if state != "" && state != DeliveryPending && state != DeliveryDelivered && state != DeliveryFailed {
		return nil, loyalty.Errorf(loyalty.EINVALID, "state must be pending, delivered or failed")
	}
	out := []WebhookDelivery{}
	err := h.Store.View(ctx, func(tx Tx) error {
		if _, err := tx.WebhookEndpoint(ctx, id); err != nil {
			return err
		}
		ds, err := tx.WebhookDeliveries(ctx, id, state, limit)
		out = append(out, ds...)
		return err
	})
	return out, err
}

// ReplayRequest names what to send an endpoint again: one event, or every event since a time.
type ReplayRequest struct {
	Event string    `json:"event_id,omitempty"`
	Since time.Time `json:"since,omitzero"`
}

// ReplayWebhook queues again, due at once, the delivery of one stored event or of every stored
// event since a time that the endpoint takes (delivered, failed or pending alike), and returns
// how many deliveries it queued. Each is retried as a new delivery.
func (h *Hub) ReplayWebhook(ctx context.Context, id string, req ReplayRequest) (int, error) {
	if (req.Event == "") == req.Since.IsZero() {
		return 0, loyalty.Errorf(loyalty.EINVALID, "give either event_id or since (an RFC 3339 time)")
	}
	if req.Event != "" && (!storableKey(req.Event) || len(req.Event) > 100) {
		return 0, loyalty.Errorf(loyalty.ENOTFOUND, "no event %q for this webhook", loyalty.Truncate(req.Event, 40))
	}
	now := h.Now().UTC().Truncate(time.Millisecond)
	if req.Event != "" {
		var n int
		err := h.Store.Update(ctx, func(tx Tx) error {
			e, err := tx.WebhookEndpoint(ctx, id)
			if err != nil {
				return err
			}
			if n, err = tx.ReplayWebhookEvent(ctx, e.ID, req.Event, now); err != nil {
				return err
			}
			if n == 0 {
				return loyalty.Errorf(loyalty.ENOTFOUND, "no event %q of a type this webhook takes is stored (the hub keeps events for webhooks.retention)", req.Event)
			}
			return h.audit(ctx, tx, AuditWebhookReplay, id, "event "+req.Event+": 1 queued")
		})
		return n, err
	}
	// By time, a page of events per transaction: a replay of a month of events must not hold
	// the writer while it queues them all. The last page's transaction writes the audit entry
	// with the total; when there are more pages than one, the first writes one too, so that what
	// is queued is in the trail even if a later page fails. A caller gone does not stop it half
	// way.
	ctx = context.WithoutCancel(ctx)
	start := req.Since.UTC()
	since := start.Format(time.RFC3339)
	total := 0
	for from := start; !from.IsZero(); {
		var n int
		var next time.Time
		first := from.Equal(start)
		err := h.Store.Update(ctx, func(tx Tx) error {
			e, err := tx.WebhookEndpoint(ctx, id)
			if err != nil {
				return err
			}
			if n, next, err = tx.ReplayWebhookSince(ctx, e.ID, from, now, now, cmp.Or(h.WebhookEvents.ReplayBatch, 1000)); err != nil {
				return err
			}
			if !next.IsZero() {
				if first {
					return h.audit(ctx, tx, AuditWebhookReplay, id, fmt.Sprintf("events since %s: being queued, a page at a time", since))
				}
				return nil
			}
			return h.audit(ctx, tx, AuditWebhookReplay, id, fmt.Sprintf("events since %s: %d queued", since, total+n))
		})
		if err != nil {
			if total > 0 {
				err = fmt.Errorf("%w (%d deliveries were queued again before this; replaying again queues them once more)", err, total)
			}
			return total, err
		}
		total, from = total+n, next
	}
	return total, nil
}

// ErasedDeliveryError replaces the last error of a delivery of an event whose personal data was
// erased (Tx.SetWebhookEventBody): the receiver's answer may have quoted it.
const ErasedDeliveryError = "(cleared: the member's personal data was erased)"

// eraseFromEvents takes a member's personal data out of the events that carry it (member.created,
// in the transaction of the erasure): a delivery still waiting, or a replay, sends the erased
// copy. The event keeps its id, type and time; its receivers are told nothing personal again.
func eraseFromEvents(ctx context.Context, tx Tx, member string) error {
	id := webhookEventID(EventMemberCreated, member)
	body, err := tx.WebhookEventBody(ctx, id)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return nil // no endpoint took it
	} else if err != nil {
		return err
	}
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		return fmt.Errorf("webhook event %s: %w", id, err)
	}
	if data, ok := ev["data"].(map[string]any); ok {
		for _, personal := range []string{"email", "name", "country"} {
			if _, ok := data[personal]; ok {
				data[personal] = ""
			}
		}
	}
	if body, err = json.Marshal(ev); err != nil {
		return err
	}
	return tx.SetWebhookEventBody(ctx, id, body)
}

// memberCreated is the data of member.created.
func memberCreated(m loyalty.Member) map[string]any {
	return map[string]any{"member_id": m.ID, "email": m.Email, "name": m.Name, "home_store": m.HomeStore, "country": m.Country,
		"referred_by": m.ReferredBy, "created_at": m.CreatedAt}
}

// resealWebhookSecrets seals every endpoint's secret under the KEK next (Rekey).
func (h *Hub) resealWebhookSecrets(ctx context.Context, tx Tx, next *seal.Box) error {
	es, err := tx.WebhookEndpoints(ctx)
	if err != nil {
		return err
	}
	for _, e := range es {
		secret, err := h.openWebhookSecret(e.ID, e.Sealed)
		if err != nil {
			return loyalty.Errorf(loyalty.EINVALID, "%v", err)
		}
		e.Sealed = next.Seal([]byte(secret), "webhook:"+e.ID)
		if err := tx.UpdateWebhookEndpoint(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// auditURL is how a webhook URL is written into the audit trail, which report keys read: its
// scheme and host only. A receiver's path or query often holds its secret.
func auditURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(a URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}
