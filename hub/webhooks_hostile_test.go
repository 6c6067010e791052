package hub_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// A failed attempt's error is the endpoint's status and the start of its answer, cut to 300
// bytes (webhooks_send.go, send: r.err = r.err[:300]), after strings.ToValidUTF8. The cut is at
// a byte, not a character: an endpoint that answers text with a multi-byte character across
// byte 300 makes the SQLite delivery log store invalid UTF-8 as the delivery's last_error, which
// Hub.WebhookDeliveries returns as is (the JSON API turns it into U+FFFD). The PostgreSQL
// backend happens to repair it on write (postgres/store.go), so this fails on SQLite only.
func TestHostile_WebhookLastErrorCutMidCharacter(t *testing.T) {
	h, _ := webhookHub(t)
	answer := strings.Repeat("a", 289) + strings.Repeat("é", 10) // "HTTP 500: " is 10 bytes: byte 300 splits an é
	nw := addWebhook(t, h, answering(t, http.StatusInternalServerError, answer), hub.EventMemberCreated)
	if _, err := h.CreateMember(cliCtx(), loyalty.Member{ID: "m-utf8", Email: "u@example.com"}); err != nil {
		t.Fatal(err)
	}
	s := hub.NewWebhookSender(h)
	n, err := s.DeliverDue(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("DeliverDue: %d, %v; want the one delivery attempted and its outcome recorded", n, err)
	}
	ds := deliveries(t, h, nw.Webhook.ID, "")
	if len(ds) != 1 || ds[0].Attempts != 1 {
		t.Fatalf("deliveries %+v: want one, attempted once", ds)
	}
	if !utf8.ValidString(ds[0].LastError) {
		t.Errorf("last_error %q is not valid UTF-8: it was cut in the middle of a character", ds[0].LastError[len(ds[0].LastError)-5:])
	}
}

// A receiver whose URL answers a redirect on the same host is followed (docs/API.md,
// "Redirects are followed only to the same scheme and host"). But Go's client turns a POST
// into a GET without a body on 301, 302 and 303: the event is never sent, and when the page
// redirected to answers the GET with 200 (a trailing-slash redirect answered 301, as Django's
// APPEND_SLASH and many proxies do, a login page…), the delivery is recorded as delivered. The
// event is lost: it is not retried, and the delivery log says it arrived.
func TestHostile_WebhookRedirectTurnsPostIntoGet(t *testing.T) {
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther} {
		h, _ := webhookHub(t)
		var posts, gets atomic.Int32
		rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/hooks":
				http.Redirect(w, r, "/hooks/", code)
			case r.Method == http.MethodPost:
				posts.Add(1)
				w.WriteHeader(http.StatusNoContent)
			default:
				gets.Add(1)
				w.Write([]byte("receiver is up")) // a status page: 200
			}
		}))
		t.Cleanup(rx.Close)
		nw := addWebhook(t, h, rx.URL+"/hooks", hub.EventMemberCreated)
		if _, err := h.CreateMember(cliCtx(), loyalty.Member{ID: "m-redirect"}); err != nil {
			t.Fatal(err)
		}
		if _, err := hub.NewWebhookSender(h).DeliverDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		ds := deliveries(t, h, nw.Webhook.ID, "")
		if len(ds) != 1 {
			t.Fatalf("deliveries %+v", ds)
		}
		if ds[0].State == hub.DeliveryDelivered && posts.Load() == 0 {
			t.Errorf("redirect %d: the delivery is recorded as delivered, but the receiver got no POST, only %d GET without the event: the event is lost",
				code, gets.Load())
		}
	}
}

// docs/API.md: "Redirects are followed only to the same scheme and host, at most three." The
// client's CheckRedirect refuses when len(via) >= 3, which is the third redirect: only two are
// followed, and a receiver behind three same-host redirects fails every attempt.
func TestHostile_WebhookThreeRedirectsFollowed(t *testing.T) {
	h, _ := webhookHub(t)
	var got atomic.Int32
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/a":
			http.Redirect(w, r, "/b", http.StatusPermanentRedirect) // 308 keeps the POST and its body
		case "/b":
			http.Redirect(w, r, "/c", http.StatusPermanentRedirect)
		case "/c":
			http.Redirect(w, r, "/d", http.StatusPermanentRedirect)
		case "/d":
			got.Add(1)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(rx.Close)
	nw := addWebhook(t, h, rx.URL+"/a", hub.EventMemberCreated)
	if _, err := h.CreateMember(cliCtx(), loyalty.Member{ID: "m-3xr"}); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.NewWebhookSender(h).DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	ds := deliveries(t, h, nw.Webhook.ID, "")
	if len(ds) != 1 || ds[0].State != hub.DeliveryDelivered || got.Load() != 1 {
		t.Errorf("deliveries %+v, %d received: want the event delivered through three same-host redirects", ds, got.Load())
	}
}

// checkWebhookURL means to take "an absolute http(s) URL with a host". It checks only that
// url.Parse's Host is not empty: "http://:8080/hooks" has a port and no host (Go dials it on
// the hub's own machine), and "http://crm.example.com:99999/hooks" has a port no connection can
// use. Both are registered, and every delivery to them fails until the endpoint is disabled.
func TestHostile_WebhookURLWithoutHostOrWithBadPort(t *testing.T) {
	h, _ := webhookHub(t)
	events := []string{hub.EventMemberCreated}
	for _, u := range []string{"http://:8080/hooks", "https://crm.example.com:99999/hooks", "http://crm.example.com:0/hooks"} {
		_, err := h.CreateWebhook(context.Background(), hub.WebhookRequest{URL: &u, Events: &events})
		if loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("url %s: %v; want EINVALID", u, err)
		}
	}
}

// docs/API.md: description is "at most 200 characters". webhookDescription counts bytes
// (len(s) > 200): a description of 150 "é" (300 bytes) is refused, as are 70 Japanese
// characters (210 bytes), with the message "at most 200 characters".
func TestHostile_WebhookDescriptionCountsBytes(t *testing.T) {
	h, _ := webhookHub(t)
	events := []string{hub.EventMemberCreated}
	u := "https://crm.example.com/hooks"
	for _, d := range []string{strings.Repeat("é", 150), strings.Repeat("日", 70)} {
		if _, err := h.CreateWebhook(context.Background(), hub.WebhookRequest{URL: &u, Events: &events, Description: &d}); err != nil {
			t.Errorf("a description of %d characters: %v", utf8.RuneCountInString(d), err)
		}
	}
}

// A receiver answers a failure with terminal escape sequences, line breaks and tabs: the hub
// keeps its answer as last_error with each of them replaced, so that `loyalty webhook
// deliveries` cannot clear an operator's screen, write their clipboard, or fake a row.
func TestHostile_WebhookLastErrorControlCharacters(t *testing.T) {
	h, _ := webhookHub(t)
	answer := "\x1b[2J\x1b[H\x1b]52;c;ZXZpbA==\aok\nevt_fake\tpoints.earned\tdelivered\t1"
	nw := addWebhook(t, h, answering(t, http.StatusServiceUnavailable, answer), hub.EventMemberCreated)
	if _, err := h.CreateMember(cliCtx(), loyalty.Member{ID: "m-esc", Email: "e@example.com"}); err != nil {
		t.Fatal(err)
	}
	if n, err := hub.NewWebhookSender(h).DeliverDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("DeliverDue: %d, %v", n, err)
	}
	ds := deliveries(t, h, nw.Webhook.ID, "")
	if len(ds) != 1 {
		t.Fatalf("deliveries %+v", ds)
	}
	got := ds[0].LastError
	if strings.ContainsFunc(got, unicode.IsControl) || !strings.Contains(got, "HTTP 503: ?[2J?[H?]52;c;ZXZpbA==?ok?evt_fake?points.earned") {
		t.Errorf("last_error %q: want the answer with every control character replaced by ?", got)
	}
}

// answering starts a receiver that answers every request with status and body, and returns its
// URL.
func answering(t *testing.T, status int, body string) string {
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(rx.Close)
	return rx.URL + "/hooks"
}
