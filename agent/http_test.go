package agent_test

// The POS API against web pages: any page open in a browser on the store's PC can send requests
// to it. These tests use a real agent (SQLite replica, POS API on 127.0.0.1:0, helpers from
// badinput_test.go) and check that such requests are refused and record nothing.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
)

// secDo sends one request with the given headers ("Host" sets the Host header) and returns the
// status and the body.
func secDo(tb testing.TB, base, method, path, body string, hdr map[string]string) (int, []byte) {
	tb.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		tb.Fatalf("new request: %v", err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	return posRoundTrip(tb, req)
}

const jsonCT = "application/json"

// secOutbox reads the outbox size the way a POS would: GET /v1/status.
func secOutbox(tb testing.TB, base string) int64 {
	tb.Helper()
	status, b := secDo(tb, base, "GET", "/v1/status", "", nil)
	var st agent.Status
	if status != http.StatusOK || json.Unmarshal(b, &st) != nil {
		tb.Fatalf("GET /v1/status: %d %s", status, b)
	}
	return st.Outbox
}

func secMessage(tb testing.TB, body []byte) string {
	tb.Helper()
	var eb struct{ Error loyalty.Error }
	json.Unmarshal(body, &eb)
	return eb.Error.Message
}

func TestPOSContentType(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	base := ta.HTTP.URL()
	before := ta.state(t)
	earn := `{"order_id":"ct-1","member_id":"alice","amount":1250,"currency":"EUR"}`
	for _, tt := range []struct{ name, path, ct string }{
		// What a cross-site HTML form or a "simple" fetch can send without a CORS preflight.
		{"text/plain", "/v1/earn", "text/plain"},
		{"text/plain with charset", "/v1/earn", "text/plain;charset=UTF-8"},
		{"form", "/v1/earn", "application/x-www-form-urlencoded"},
		{"multipart form", "/v1/redeem", "multipart/form-data; boundary=----x"},
		{"missing", "/v1/earn", ""},
		{"missing, reverse", "/v1/reverse", ""},
		{"not utf-8", "/v1/earn", "application/json; charset=iso-8859-1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := earn
			switch tt.path {
			case "/v1/redeem":
				body = `{"order_id":"ct-1","member_id":"alice","reward_id":"coffee"}`
			case "/v1/reverse":
				body = `{"order_id":"ct-1"}`
			}
			hdr := map[string]string{"Origin": "http://evil.example"}
			if tt.ct != "" {
				hdr["Content-Type"] = tt.ct
			}
			status, b := secDo(t, base, "POST", tt.path, body, hdr)
			jsonapitest.AssertError(t, status, b, http.StatusUnsupportedMediaType, loyalty.EINVALID)
			if msg := secMessage(t, b); !strings.Contains(msg, "send Content-Type: application/json") {
				t.Errorf("message %q does not tell the POS developer what to send", msg)
			}
			assertPOSState(t, ta.state(t), before)
			if got := secOutbox(t, base); got != before.Stats.Outbox {
				t.Errorf("GET /v1/status outbox %d, want %d", got, before.Stats.Outbox)
			}
		})
	}
	// JSON with parameters, in any case, is accepted.
	for i, ct := range []string{"application/json; charset=utf-8", "Application/JSON"} {
		status, b := secDo(t, base, "POST", "/v1/earn", strings.Replace(earn, "ct-1", "ct-ok-"+string(rune('a'+i)), 1), map[string]string{"Content-Type": ct})
		if status != http.StatusOK {
			t.Fatalf("Content-Type %s: %d %s, want 200", ct, status, b)
		}
		if got, want := secOutbox(t, base), before.Stats.Outbox+int64(i)+1; got != want {
			t.Errorf("after an earn with Content-Type %s: outbox %d, want %d", ct, got, want)
		}
	}
}

func TestPOSHostHeader(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	base := ta.HTTP.URL()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	before := ta.state(t)
	earn := `{"order_id":"h-1","member_id":"alice","amount":1250,"currency":"EUR"}`

	refused := []string{
		"evil.example",
		"evil.example:" + port,
		"localhost.evil.example:" + port,
		"127.0.0.1.nip.io:" + port, // a name that resolves to loopback is still a name a page controls
		"storepc.lan",              // not in this agent's list
		"192.0.2.7:" + port,        // an address that is not this agent's
	}
	for _, host := range refused {
		t.Run("refused "+host, func(t *testing.T) {
			// A rebound page can neither write nor read.
			status, b := secDo(t, base, "POST", "/v1/earn", earn, map[string]string{"Host": host, "Content-Type": jsonCT})
			jsonapitest.AssertError(t, status, b, http.StatusForbidden, loyalty.EUNAUTHORIZED)
			if msg := secMessage(t, b); !strings.Contains(msg, "pos_allowed_hosts") {
				t.Errorf("message %q does not name pos_allowed_hosts", msg)
			}
			status, b = secDo(t, base, "GET", "/v1/status", "", map[string]string{"Host": host})
			jsonapitest.AssertError(t, status, b, http.StatusForbidden, loyalty.EUNAUTHORIZED)
			assertPOSState(t, ta.state(t), before)
		})
	}
	for _, host := range []string{"localhost:" + port, "LocalHost", "localhost.:" + port, "127.0.0.1:" + port, "[::1]:" + port, "127.0.0.2"} {
		t.Run("accepted "+host, func(t *testing.T) {
			if status, b := secDo(t, base, "GET", "/v1/status", "", map[string]string{"Host": host}); status != http.StatusOK {
				t.Errorf("GET /v1/status with Host %s: %d %s, want 200", host, status, b)
			}
		})
	}
	status, b := secDo(t, base, "POST", "/v1/earn", earn, map[string]string{"Host": "localhost:" + port, "Content-Type": jsonCT})
	if status != http.StatusOK || secOutbox(t, base) != before.Stats.Outbox+1 {
		t.Errorf("earn with Host localhost: %d %s, want 200 and one more delta", status, b)
	}

	t.Run("pos_allowed_hosts", func(t *testing.T) {
		s := agent.NewServer(ta.Agent, "127.0.0.1:0")
		s.Logger, s.AllowedHosts = biLogger, []string{"StorePC.lan", "10.20.30.40", " till-server:8081 ", "[fd00::7]"}
		if err := s.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		for _, host := range []string{"storepc.lan", "STOREPC.LAN:" + port, "10.20.30.40:" + port, "till-server", "[fd00::7]:" + port, "localhost"} {
			if status, b := secDo(t, s.URL(), "GET", "/v1/status", "", map[string]string{"Host": host}); status != http.StatusOK {
				t.Errorf("Host %s, in the list: %d %s, want 200", host, status, b)
			}
		}
		for _, host := range []string{"storepc.lan.evil.example", "other.lan", "10.20.30.41"} {
			status, b := secDo(t, s.URL(), "GET", "/v1/status", "", map[string]string{"Host": host})
			jsonapitest.AssertError(t, status, b, http.StatusForbidden, loyalty.EUNAUTHORIZED)
		}
	})

	t.Run("checked before the token", func(t *testing.T) {
		s := agent.NewServer(ta.Agent, "127.0.0.1:0")
		s.Logger, s.POSToken = biLogger, "pos-secret"
		if err := s.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		status, b := secDo(t, s.URL(), "GET", "/v1/status", "", map[string]string{"Host": "evil.example", "Authorization": "Bearer pos-secret"})
		jsonapitest.AssertError(t, status, b, http.StatusForbidden, loyalty.EUNAUTHORIZED)
		status, b = secDo(t, s.URL(), "GET", "/v1/status", "", map[string]string{"Authorization": "Bearer pos-secret"})
		if status != http.StatusOK {
			t.Errorf("right host and token: %d %s", status, b)
		}
	})
}

// localIP returns a non-loopback address of this machine, if it has one.
func localIP(t *testing.T) (netip.Addr, bool) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, ifa := range ifas {
		if n, ok := ifa.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok && !a.Unmap().IsLoopback() && a.Unmap().Is4() {
				return a.Unmap(), true
			}
		}
	}
	return netip.Addr{}, false
}

// TestPOSHostAllInterfaces: listening on all interfaces, the machine's own addresses are
// accepted as Host; listening on one address, only that one (and loopback).
func TestPOSHostAllInterfaces(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	ip, ok := localIP(t)
	if !ok {
		t.Skip("this machine has no non-loopback IPv4 address")
	}
	all := agent.NewServer(ta.Agent, "0.0.0.0:0")
	all.Logger, all.POSToken = biLogger, "pos-secret"
	if err := all.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { all.Close() })
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(all.URL(), "http://"))
	base := "http://127.0.0.1:" + port
	auth := "Bearer pos-secret"
	for _, host := range []string{ip.String(), ip.String() + ":" + port, "localhost"} {
		if status, b := secDo(t, base, "GET", "/v1/status", "", map[string]string{"Host": host, "Authorization": auth}); status != http.StatusOK {
			t.Errorf("listening on 0.0.0.0, Host %s (this machine): %d %s, want 200", host, status, b)
		}
	}
	for _, host := range []string{"192.0.2.7", "0.0.0.0", "evil.example"} {
		status, b := secDo(t, base, "GET", "/v1/status", "", map[string]string{"Host": host, "Authorization": auth})
		jsonapitest.AssertError(t, status, b, http.StatusForbidden, loyalty.EUNAUTHORIZED)
	}
	// On 127.0.0.1 only, the machine's LAN address is not a name of this server.
	status, b := secDo(t, ta.HTTP.URL(), "GET", "/v1/status", "", map[string]string{"Host": ip.String()})
	jsonapitest.AssertError(t, status, b, http.StatusForbidden, loyalty.EUNAUTHORIZED)
}

func TestCheckExposure(t *testing.T) {
	for _, tt := range []struct {
		addr, token string
		insecure    bool
		ok          bool
	}{
		{"0.0.0.0:8080", "", false, false},
		{"0.0.0.0:8080", "pos-secret", false, true},
		{"0.0.0.0:8080", "", true, true},
		{":8080", "", false, false},
		{"[::]:8080", "", false, false},
		{"192.168.1.5:8081", "", false, false},
		{"192.168.1.5:8081", "pos-secret", false, true},
		{"storepc.lan:8081", "", false, false},
		{"localhost.evil.example:8081", "", false, false},
		{"127.0.0.1:8081", "", false, true},
		{"127.0.0.1:0", "", false, true},
		{"127.1.2.3:8081", "", false, true},
		{"[::1]:8081", "", false, true},
		{"localhost:8081", "", false, true},
		{"LocalHost:8081", "", false, true},
		{"127.0.0.1", "pos-secret", true, false}, // not host:port
	} {
		err := agent.CheckExposure(tt.addr, tt.token, tt.insecure)
		if (err == nil) != tt.ok {
			t.Errorf("CheckExposure(%q, token %q, insecure %v) = %v, want ok %v", tt.addr, tt.token, tt.insecure, err, tt.ok)
		}
	}
	err := agent.CheckExposure("0.0.0.0:8081", "", false)
	for _, fix := range []string{"listen", "LOYALTY_LISTEN", "--listen", "pos_token", "LOYALTY_POS_TOKEN", "--pos-token",
		"pos_insecure_lan", "LOYALTY_POS_INSECURE_LAN", "--pos-insecure-lan"} {
		if err == nil || !strings.Contains(err.Error(), fix) {
			t.Errorf("error %v does not name %s", err, fix)
		}
	}
}

// TestPOSServerRefusesExposure: Server.Open itself refuses, so a program embedding the agent
// cannot skip the check; the override opens with a warning.
func TestPOSServerRefusesExposure(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	s := agent.NewServer(ta.Agent, "0.0.0.0:0")
	s.Logger = biLogger
	if err := s.Open(); err == nil || !strings.Contains(err.Error(), "pos_token") {
		s.Close()
		t.Fatalf("Open on 0.0.0.0 without a token: %v, want a refusal naming pos_token", err)
	}
	var logs bytes.Buffer
	s.Logger, s.InsecureLAN = slog.New(slog.NewTextHandler(&logs, nil)), true
	if err := s.Open(); err != nil {
		t.Fatalf("Open with InsecureLAN: %v", err)
	}
	s.Close()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "WITHOUT a POS token") {
		t.Errorf("no warning logged with InsecureLAN: %q", logs.String())
	}
	logs.Reset()
	s = agent.NewServer(ta.Agent, "127.0.0.1:0")
	s.Logger, s.InsecureLAN = slog.New(slog.NewTextHandler(&logs, nil)), true
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if logs.Len() != 0 {
		t.Errorf("InsecureLAN on loopback logged %q; nothing is exposed, so nothing to warn about", logs.String())
	}
}

// TestPOSInvalidUTF8OrderID: encoding/json used to turn invalid bytes into U+FFFD, so that
// the order ids "X-\xff\xfe" and "X-\xfe\xff" were one idempotency key and the second sale got
// the first one's receipt. Both are refused now, and distinct ids stay distinct.
func TestPOSInvalidUTF8OrderID(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	base := ta.HTTP.URL()
	before := ta.state(t)
	body := func(order string, amount int) string {
		return `{"order_id":"` + order + `","member_id":"alice","amount":` + string(rune('0'+amount)) + `000,"currency":"EUR"}`
	}
	for _, order := range []string{"X-\xff\xfe", "X-\xfe\xff", `X-\ud800`, `X-\udc00`} {
		status, b := secDo(t, base, "POST", "/v1/earn", body(order, 1), map[string]string{"Content-Type": jsonCT})
		jsonapitest.AssertError(t, status, b, http.StatusBadRequest, loyalty.EINVALID)
		if msg := secMessage(t, b); !strings.Contains(msg, "UTF-8") {
			t.Errorf("order id %q: message %q does not mention UTF-8", order, msg)
		}
		assertPOSState(t, ta.state(t), before)
	}
	// Two sales whose ids differ only in non-ASCII text are two sales, each with its receipt.
	var r1, r2 loyalty.Receipt
	mustPOSJSON(t, base, body("X-é", 1), &r1)
	mustPOSJSON(t, base, body("X-ü", 2), &r2)
	if r1.OrderID != "X-é" || r2.OrderID != "X-ü" || r1.Points == r2.Points || len(r1.Deltas) != 1 || len(r2.Deltas) != 1 || r1.Deltas[0] == r2.Deltas[0] {
		t.Errorf("two sales got receipts %+v and %+v; want one each, for their own amount", r1, r2)
	}
	if got, want := secOutbox(t, base), before.Stats.Outbox+2; got != want {
		t.Errorf("outbox %d, want %d", got, want)
	}
}

func mustPOSJSON(tb testing.TB, base, body string, out any) {
	tb.Helper()
	status, b := secDo(tb, base, "POST", "/v1/earn", body, map[string]string{"Content-Type": jsonCT})
	if status != http.StatusOK {
		tb.Fatalf("POST /v1/earn %s: %d %s, want 200", body, status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		tb.Fatalf("decode %s: %v", b, err)
	}
}

// TestPOSTokenGuessing: wrong POS tokens in the API's Authorization header count as the till
// page's sign-ins do. After maxWrongTokens of them in a minute, the address is refused, its
// right token too (or guessing would go on); another address, the POS's own, is not.
func TestPOSTokenGuessing(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	s := agent.NewServer(ta.Agent, "127.0.0.1:0")
	s.Logger, s.POSToken = biLogger, "pos-token-0123456789"
	h := s.Handler()
	call := func(remote, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "http://127.0.0.1/v1/status", nil)
		r.RemoteAddr = remote
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for range 20 { // requests without a token guess nothing
		r := httptest.NewRequest("GET", "http://127.0.0.1/favicon.ico", nil)
		r.RemoteAddr = "10.0.0.66:3999"
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	for i := range 10 {
		w := call("10.0.0.66:4000", fmt.Sprint("guess-", i))
		jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), http.StatusUnauthorized, loyalty.EUNAUTHORIZED)
	}
	w := call("10.0.0.66:4001", "pos-token-0123456789")
	jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), http.StatusTooManyRequests, loyalty.EUNAUTHORIZED)
	if w.Header().Get("Retry-After") == "" {
		t.Error("the refusal does not say when to try again")
	}
	if w := call("127.0.0.1:5000", "pos-token-0123456789"); w.Code != http.StatusOK {
		t.Errorf("the POS's own call from another address: %d %s", w.Code, w.Body)
	}
	// A cashier's typos at the till's sign-in, on the POS's machine, do not close the API to it.
	for range 12 {
		r := httptest.NewRequest("POST", "http://127.0.0.1/signin", strings.NewReader("token=typo"))
		r.RemoteAddr = "127.0.0.1:6000"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "http://127.0.0.1")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusTooManyRequests {
			t.Fatalf("a sign-in with a wrong token: %d %s", w.Code, w.Body)
		}
	}
	if w := call("127.0.0.1:5001", "pos-token-0123456789"); w.Code != http.StatusOK {
		t.Errorf("the POS's call after a cashier's typos at the same address: %d %s", w.Code, w.Body)
	}
}
