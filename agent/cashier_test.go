package agent_test

// The cashier's till page (cashier.go) over HTTP, against a real agent: a SQLite replica and the
// POS listener on 127.0.0.1 (MustOpenPOSAgent, badinput_test.go). What a browser would send, and
// what an attacker would.

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/qr"
	"github.com/loyalty-edge-sync/loyalty/qr/qrtest"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

const tillToken = "till-test-token-0123456789abcdef"

// codeValue matches the value of a form field that holds a random code: the hidden fields (the
// CSRF token, the nonce, the scanned member code, order ids) and the voucher field, which shows
// the scanned voucher code back. Fields that show typed amounts or order numbers do not match.
var codeValue = regexp.MustCompile(`(<input type="hidden" name="[^"]*" |<input [^>]*name="voucher" [^>]*)value="[^"]*"`)

// tillBrowser is a cookie-keeping HTTP client on the till pages, as a browser would be.
type tillBrowser struct {
	base string
	c    *http.Client
	last string // the body of the last page
}

func newTillBrowser(tb testing.TB, base string) *tillBrowser {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	return &tillBrowser{base: base, c: &http.Client{Jar: jar, Timeout: biTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request with headers and returns the status and the body.
func (b *tillBrowser) do(tb testing.TB, method, path string, form url.Values, hdr map[string]string) (int, string) {
	tb.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := b.c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	b.last = string(raw)
	return resp.StatusCode, b.last
}

func (b *tillBrowser) get(tb testing.TB) (int, string) {
	tb.Helper()
	return b.do(tb, "GET", "/", nil, nil)
}

// post sends a form of the page, as the page's own: same-origin, with the CSRF token of the
// last page unless the form has one.
func (b *tillBrowser) post(tb testing.TB, path string, form url.Values) (int, string) {
	tb.Helper()
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", hidden(tb, b.last, "csrf"))
	}
	return b.do(tb, "POST", path, form, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": b.base})
}

// signIn signs in with token and requires the till page.
func (b *tillBrowser) signIn(tb testing.TB, token string) {
	tb.Helper()
	status, _ := b.do(tb, "POST", "/signin", url.Values{"token": {token}}, map[string]string{"Sec-Fetch-Site": "same-origin"})
	if status != http.StatusSeeOther {
		tb.Fatalf("sign in: %d %s", status, b.last)
	}
	if status, page := b.get(tb); status != 200 || !strings.Contains(page, `id="qr"`) {
		tb.Fatalf("after signing in: %d, no scan field:\n%s", status, page)
	}
}

// scan sends a code through the scan field and requires the member's card.
func (b *tillBrowser) scan(tb testing.TB, code string) string {
	tb.Helper()
	status, page := b.post(tb, "/scan", url.Values{"qr": {code}})
	if status != 200 || !strings.Contains(page, `id="member"`) {
		tb.Fatalf("scan: %d, no member card:\n%s", status, page)
	}
	return page
}

var hiddenRE = regexp.MustCompile(`name="([a-z_]+)" value="([^"]*)"`)

// hidden returns the value of the first form field name on page.
func hidden(tb testing.TB, page, name string) string {
	tb.Helper()
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		if m[1] == name {
			return html.UnescapeString(m[2])
		}
	}
	tb.Fatalf("no field %s on the page:\n%s", name, page)
	return ""
}

var balanceRE = regexp.MustCompile(`id="(?:receipt-)?balance">([0-9,-]+)<`)

// balance returns the member balance the page shows (the receipt's first, then the card's).
func balance(tb testing.TB, page string) string {
	tb.Helper()
	m := balanceRE.FindStringSubmatch(page)
	if m == nil {
		tb.Fatalf("no balance on the page:\n%s", page)
	}
	return m[1]
}

func TestTillSignIn(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	base := ta.HTTP.URL()
	before := ta.state(t)
	b := newTillBrowser(t, base)

	// Signed out: the sign-in page, and no action is done.
	if status, page := b.get(t); status != 200 || !strings.Contains(page, `name="token"`) || strings.Contains(page, `id="qr"`) {
		t.Fatalf("GET / signed out: %d\n%s", status, page)
	}
	for _, path := range []string{"/scan", "/earn", "/redeem", "/refund", "/sale"} {
		status, page := b.do(t, "POST", path, url.Values{"qr": {ta.memberQR(t, "alice")}, "amount": {"10"}, "earn_order": {"x-1"},
			"reward": {"coffee"}, "order": {"o-earn"}, "sale_amount": {"5"}, "sale_order": {"x-2"}}, nil)
		if status != http.StatusUnauthorized || !strings.Contains(page, "Sign in again") {
			t.Errorf("POST %s signed out: %d, want 401 and the sign-in page", path, status)
		}
	}
	if status, _ := b.do(t, "GET", "/till/status", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("GET /till/status signed out: %d, want 401", status)
	}
	// A wrong token, an empty one, a huge one.
	for _, tok := range []string{"wrong", "", tillToken + "x", strings.Repeat("t", 10000)} {
		status, page := b.do(t, "POST", "/signin", url.Values{"token": {tok}}, map[string]string{"Sec-Fetch-Site": "same-origin"})
		if status != http.StatusUnauthorized || !strings.Contains(page, "not this till") {
			t.Errorf("sign in with %.20q: %d, want 401", tok, status)
		}
	}
	if status, page := b.get(t); status != 200 || strings.Contains(page, `id="qr"`) {
		t.Fatalf("a wrong token signed in: %d", status)
	}
	assertPOSState(t, ta.state(t), before)

	// The right token signs in; the session cookie is HttpOnly and SameSite=Strict.
	status, _ := b.do(t, "POST", "/signin", url.Values{"token": {tillToken}}, map[string]string{"Sec-Fetch-Site": "same-origin"})
	if status != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", status, b.last)
	}
	u, _ := url.Parse(base)
	cookies := b.c.Jar.Cookies(u)
	if len(cookies) != 1 {
		t.Fatalf("cookies after sign-in: %v", cookies)
	}
	if status, page := b.get(t); status != 200 || !strings.Contains(page, `id="qr"`) || !strings.Contains(page, "data-autofocus") {
		t.Fatalf("after signing in: %d\n%s", status, page)
	}

	// The session neither opens the POS JSON API (still the Bearer token) nor the pages to
	// another host name (DNS rebinding).
	if status, _ := b.do(t, "GET", "/v1/status", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("GET /v1/status with a till session and no Bearer token: %d, want 401", status)
	}
	for _, path := range []string{"/", "/static/app.css", "/cashier.js"} {
		if status, _ := b.do(t, "GET", path, nil, map[string]string{"Host": "evil.example"}); status != http.StatusForbidden {
			t.Errorf("GET %s for Host evil.example: %d, want 403", path, status)
		}
	}
	for _, path := range []string{"/static/app.css", "/cashier.js"} {
		if status, _ := b.do(t, "GET", path, nil, nil); status != 200 {
			t.Errorf("GET %s: %d", path, status)
		}
	}

	// A restart with the same token keeps the session; another token ends it.
	for _, tc := range []struct {
		token string
		in    bool
	}{{tillToken, true}, {tillToken + "-new", false}} {
		srv := agent.NewServer(ta.Agent, "127.0.0.1:0")
		srv.Logger, srv.POSToken = biLogger, tc.token
		if err := srv.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		req, _ := http.NewRequest("GET", srv.URL()+"/", nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		_, page := posRoundTrip(t, req)
		if got := strings.Contains(string(page), `id="qr"`); got != tc.in {
			t.Errorf("a server with token %q: signed in %v, want %v", tc.token, got, tc.in)
		}
	}

	// Sign out needs the page's CSRF token, then ends the session.
	if status, _ := b.do(t, "POST", "/signout", url.Values{}, map[string]string{"Sec-Fetch-Site": "same-origin"}); status != http.StatusForbidden {
		t.Errorf("sign out without the CSRF token: %d, want 403", status)
	}
	b.get(t)
	if status, _ := b.post(t, "/signout", url.Values{}); status != http.StatusSeeOther {
		t.Errorf("sign out: %d", status)
	}
	if _, page := b.get(t); strings.Contains(page, `id="qr"`) {
		t.Error("still signed in after signing out")
	}
}

func TestTillCSRF(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "alice"))
	before := ta.state(t)
	earn := func() url.Values {
		return url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {hidden(t, page, "earn_order")}, "amount": {"10.00"}, "csrf": {hidden(t, page, "csrf")}}
	}
	for _, tc := range []struct {
		name string
		edit func(url.Values)
		hdr  map[string]string
	}{
		{"no token", func(f url.Values) { f.Del("csrf") }, nil},
		{"wrong token", func(f url.Values) { f.Set("csrf", "x"+f.Get("csrf")) }, nil},
		{"another session's token", func(f url.Values) {
			o := newTillBrowser(t, ta.HTTP.URL())
			o.signIn(t, tillToken)
			f.Set("csrf", hidden(t, o.last, "csrf"))
		}, nil},
		{"cross-site", nil, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site", nil, map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"other origin", nil, map[string]string{"Origin": "http://evil.example"}},
	} {
		f := earn()
		if tc.edit != nil {
			tc.edit(f)
		}
		status, body := b.do(t, "POST", "/earn", f, tc.hdr)
		if status != http.StatusForbidden || !strings.Contains(body, "did not come from this till page") {
			t.Errorf("%s: %d, want 403", tc.name, status)
		}
	}
	// A sign-in from another site is refused too (no session to bind a token to yet), and so is a
	// sign-out, which comes without the SameSite cookie: its answer would delete the cookie.
	// Origin "null" is another site: plain HTTP to the till's name sends no Sec-Fetch-Site.
	for _, hdr := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}} {
		o := newTillBrowser(t, ta.HTTP.URL())
		if status, _ := o.do(t, "POST", "/signin", url.Values{"token": {tillToken}}, hdr); status != http.StatusForbidden {
			t.Errorf("sign-in with %v: %d, want 403", hdr, status)
		}
		req, err := http.NewRequest("POST", ta.HTTP.URL()+"/signout", strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Errorf("sign-out with %v: %d, cookies %v; want 403 and none", hdr, resp.StatusCode, resp.Cookies())
		}
	}
	assertPOSState(t, ta.state(t), before)
	// The page's own form goes through.
	if status, _ := b.do(t, "POST", "/earn", earn(), map[string]string{"Sec-Fetch-Site": "same-origin"}); status != 200 {
		t.Errorf("the page's own earn: %d\n%s", status, b.last)
	}
	if got := ta.state(t).Stats.Outbox; got != before.Stats.Outbox+1 {
		t.Errorf("outbox %d after the page's earn, want %d", got, before.Stats.Outbox+1)
	}
}

// TestTillEarnOnce: a double submit, or the back button and a re-post, of one sale form earns
// once and shows the first receipt; the form's order id sent with another amount is refused.
// TestTillBackAndSendAgain: the card under a receipt carries order ids derived from the form
// that made the receipt, so that going Back to it and sending it again shows the card with the
// same ids, and the next sale rung up on it again is the same sale: before, the card came back
// with new ids and the second sale earned twice.
func TestTillBackAndSendAgain(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "alice"))
	first := url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {hidden(t, page, "earn_order")}, "amount": {"10.00"}, "csrf": {hidden(t, page, "csrf")}}
	_, receipt := b.post(t, "/earn", first)
	next := map[string]string{}
	for _, name := range []string{"earn_order", "redeem_order", "voucher_order", "sale_order", "refund_id"} {
		next[name] = hidden(t, receipt, name)
		if next[name] == first.Get("earn_order") {
			t.Errorf("the receipt's card has the sale's own id as %s", name)
		}
	}
	second := url.Values{"qr": {hidden(t, receipt, "qr")}, "earn_order": {next["earn_order"]}, "amount": {"5.00"}}
	if status, got := b.post(t, "/earn", second); status != 200 || balance(t, got) != "315" {
		t.Fatalf("the second sale: %d, balance %s", status, balance(t, got))
	}
	// Back to the first receipt, sent again: answered as before, with the same card.
	status, again := b.post(t, "/earn", first)
	if status != 200 || balance(t, again) != "310" { // the receipt's balance, as the first time
		t.Fatalf("the first sale sent again: %d, balance %s", status, balance(t, again))
	}
	for name, want := range next {
		if got := hidden(t, again, name); got != want {
			t.Errorf("the card sent again has %s %s, the first time %s: a sale rung up on it would be a new one", name, got, want)
		}
	}
	second.Set("earn_order", hidden(t, again, "earn_order"))
	second.Del("csrf")
	if status, got := b.post(t, "/earn", second); status != 200 || balance(t, got) != "315" {
		t.Errorf("the second sale rung up again from the card sent again: %d, balance %s, want 315 (not earned twice)", status, balance(t, got))
	}
	if st := ta.state(t); st.Stats.Outbox != 2 {
		t.Errorf("outbox %d, want 2 sales", st.Stats.Outbox)
	}
	// Another member's sale on another form gets other ids.
	page = b.scan(t, ta.memberQR(t, "alice"))
	if hidden(t, page, "earn_order") == next["earn_order"] {
		t.Error("a new scan's card has the ids of the receipt's")
	}
}

func TestTillEarnOnce(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "alice"))
	if !strings.Contains(page, "Alice") || balance(t, page) != "300" {
		t.Fatalf("alice's card: balance %s\n%s", balance(t, page), page)
	}
	for _, want := range []string{`value="coffee"`, `value="five-off"`, `value="tote"`} {
		if !strings.Contains(page, want) {
			t.Errorf("alice (300 points) is not offered %s", want)
		}
	}
	before := ta.state(t)
	form := url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {hidden(t, page, "earn_order")}, "amount": {"12.99"}, "csrf": {hidden(t, page, "csrf")}}
	var first string
	for i := range 3 {
		status, got := b.post(t, "/earn", form)
		if status != 200 || !strings.Contains(got, `id="receipt"`) {
			t.Fatalf("earn %d: %d\n%s", i, status, got)
		}
		if bal := balance(t, got); bal != "312" {
			t.Errorf("earn %d: receipt balance %s, want 312", i, bal)
		}
		rc := got[strings.Index(got, `id="receipt"`):]
		rc = html.UnescapeString(rc[:strings.Index(rc, "</section>")])
		// A form sent again says so above the receipt: nothing new was recorded.
		if again := strings.Contains(rc, `id="receipt-again"`); again != (i > 0) || again && !strings.Contains(rc, "Nothing new was recorded") {
			t.Errorf("post %d: the receipt says it was sent before: %v, want %v", i, again, i > 0)
		}
		if at := strings.Index(rc, `<p class="banner warn" id="receipt-again"`); at >= 0 {
			rc = rc[:at] + rc[at+strings.Index(rc[at:], "</p>")+len("</p>\n"):]
		}
		if i == 0 {
			first = rc
			if !strings.Contains(rc, "+12") || !strings.Contains(rc, form.Get("earn_order")) {
				t.Errorf("the receipt does not show +12 points and the order:\n%s", rc)
			}
			if hidden(t, got, "earn_order") == form.Get("earn_order") {
				t.Error("the next sale's form has the same order id")
			}
		} else if rc != first {
			t.Errorf("re-post %d: receipt\n%s\nwant the first\n%s", i, rc, first)
		}
	}
	if got := ta.state(t).Stats.Outbox; got != before.Stats.Outbox+1 {
		t.Errorf("outbox %d after three posts of one sale, want %d", got, before.Stats.Outbox+1)
	}
	// The same form with another amount: refused, nothing recorded.
	form.Set("amount", "99.00")
	status, got := b.post(t, "/earn", form)
	if status != http.StatusConflict || !strings.Contains(got, "already used for a different sale") {
		t.Errorf("the sale form re-used for another amount: %d\n%s", status, got)
	}
	if got := ta.state(t).Stats.Outbox; got != before.Stats.Outbox+1 {
		t.Errorf("outbox %d after a refused re-use, want %d", got, before.Stats.Outbox+1)
	}

	// Lines with categories: the total is their sum; lines that do not add up are refused.
	page = b.scan(t, ta.memberQR(t, "alice"))
	lines := url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {hidden(t, page, "earn_order")},
		"line_category_1": {"coffee"}, "line_qty_1": {"2"}, "line_amount_1": {"5.00"}, "line_sku_2": {"mug"}, "line_amount_2": {"7,50"}}
	lines.Set("amount", "13.00")
	if status, got := b.post(t, "/earn", lines); status != http.StatusBadRequest || !strings.Contains(got, "add up to 12.50") {
		t.Errorf("lines not adding up: %d\n%s", status, got)
	}
	lines.Set("amount", "")
	lines.Del("csrf")
	if status, got := b.post(t, "/earn", lines); status != 200 || balance(t, got) != "324" || !strings.Contains(got, "12.50 EUR") {
		t.Errorf("a sale by lines: %d, balance %s\n%s", status, balance(t, got), got)
	}
}

func TestTillHostileInput(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	aliceQR := ta.memberQR(t, "alice")
	page := b.scan(t, aliceQR)
	csrf, order := hidden(t, page, "csrf"), hidden(t, page, "earn_order")
	before := ta.state(t)
	long := strings.Repeat("x", 10000)
	forged := qrtest.Sign(t, qrtest.Key(t), qr.Claims{Type: qr.TypeMember, Member: "alice", IssuedAt: time.Now().Unix()})
	voucher := ta.voucherQR(t, "v-1", "alice", "coffee")
	earn := func(kv ...string) url.Values {
		f := url.Values{"csrf": {csrf}, "qr": {aliceQR}, "earn_order": {order}, "amount": {"10.00"}}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	for _, tc := range []struct {
		name, path string
		form       url.Values
		status     int
		says       string
	}{
		{"huge amount", "/earn", earn("amount", "99999999999999999"), 400, "at most"},
		{"amount over the maximum", "/earn", earn("amount", "10000000001.00"), 400, "at most"},
		{"negative amount", "/earn", earn("amount", "-5"), 400, "like 12.99"},
		{"exponent", "/earn", earn("amount", "1e3"), 400, "like 12.99"},
		{"three decimals", "/earn", earn("amount", "1.999"), 400, "like 12.99"},
		{"zero", "/earn", earn("amount", "0"), 400, "more than 0.00"},
		{"10k-char amount", "/earn", earn("amount", long), 400, "like 12.99"},
		{"10k-char code", "/earn", earn("qr", long), 400, "far too long"},
		{"10k-char order id", "/earn", earn("earn_order", long), 400, ""},
		{"10k-char category", "/earn", earn("line_category_1", long, "line_amount_1", "10.00"), 400, "too long"},
		{"huge quantity", "/earn", earn("line_qty_1", "99999999", "line_amount_1", "10.00"), 400, "whole number"},
		{"unknown currency", "/earn", earn("currency", "XXX"), 400, "currencies listed"},
		{"forged code", "/earn", earn("qr", forged), 400, "not accepted"},
		{"forged scan", "/scan", url.Values{"csrf": {csrf}, "qr": {forged}}, 400, "not accepted"},
		{"voucher in the scan field", "/scan", url.Values{"csrf": {csrf}, "qr": {voucher}}, 400, "voucher"},
		{"expired code", "/scan", url.Values{"csrf": {csrf}, "qr": {ta.badMemberTokens(t)["expired"]}}, 400, "not accepted"},
		{"10k-char scan", "/scan", url.Values{"csrf": {csrf}, "qr": {long}}, 400, "far too long"},
		{"empty scan", "/scan", url.Values{"csrf": {csrf}, "qr": {""}}, 400, "Scan the member"},
		{"unknown reward", "/redeem", url.Values{"csrf": {csrf}, "qr": {aliceQR}, "redeem_order": {"r-1"}, "reward": {"yacht"}}, 404, "Not found"},
		{"10k-char reward", "/redeem", url.Values{"csrf": {csrf}, "qr": {aliceQR}, "redeem_order": {"r-1"}, "reward": {long}}, 400, "too long"},
		{"too few points", "/redeem", url.Values{"csrf": {csrf}, "qr": {ta.memberQR(t, "bob")}, "redeem_order": {"r-1"}, "reward": {"tote"}}, 422, "Not enough points"},
		{"forged voucher", "/redeem", url.Values{"csrf": {csrf}, "use": {"voucher"}, "voucher_order": {"r-2"}, "voucher": {aliceQR}}, 400, ""},
		{"10k-char voucher", "/redeem", url.Values{"csrf": {csrf}, "use": {"voucher"}, "voucher_order": {"r-2"}, "voucher": {long}}, 400, "voucher"},
		{"refund of another store's order", "/refund", url.Values{"csrf": {csrf}, "order": {"not-here"}}, 404, "no points or rewards on that order"},
		{"10k-char refund order", "/refund", url.Values{"csrf": {csrf}, "order": {long}}, 400, "too long"},
		{"negative refund", "/refund", url.Values{"csrf": {csrf}, "order": {"x"}, "refund_amount": {"-1"}}, 400, "like 12.99"},
		{"sale without an amount", "/sale", url.Values{"csrf": {csrf}, "sale_order": {"s-1"}}, 400, "needed"},
	} {
		status, body := b.post(t, tc.path, tc.form)
		if status != tc.status || !strings.Contains(body, tc.says) {
			t.Errorf("%s: %d, want %d saying %q\n%.3000s", tc.name, status, tc.status, tc.says, body)
		}
		if strings.Contains(body, long) {
			t.Errorf("%s: the 10k-char input is shown back whole", tc.name)
		}
		// Codes are left out of the search: the CSRF token, the nonce and the scanned codes are
		// random base64, which spells "SQL" now and then.
		shown := codeValue.ReplaceAllString(body, `${1}value=""`)
		for _, leak := range []string{"sqlite", "SQL", "panic", "lines[", "minor units", "order_id"} {
			if strings.Contains(shown, leak) {
				t.Errorf("%s: the page says %q", tc.name, leak)
			}
		}
	}
	// A form body over the limit is refused before it is read whole.
	if status, _ := b.post(t, "/earn", earn("line_sku_1", strings.Repeat("y", 64<<10))); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 64 KiB form: %d, want 413", status)
	}
	// Typed HTML comes back escaped, never as markup.
	status, body := b.post(t, "/earn", earn("line_category_1", `<script>alert(1)</script>`, "line_amount_1", "1.00", "amount", "2.00"))
	if status != 400 || strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;") {
		t.Errorf("typed HTML: %d, shown unescaped or not at all", status)
	}
	assertPOSState(t, ta.state(t), before)
}

func TestTillRedeemRefundSale(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "alice"))
	redeem := url.Values{"qr": {hidden(t, page, "qr")}, "redeem_order": {hidden(t, page, "redeem_order")}, "use": {"reward"}, "reward": {"coffee"}}
	status, got := b.post(t, "/redeem", redeem)
	if status != 200 || balance(t, got) != "250" || !strings.Contains(got, "the product, free") || !strings.Contains(got, ">-50<") {
		t.Fatalf("redeem a coffee: %d\n%s", status, got)
	}
	order := redeem.Get("redeem_order")
	// A re-post does not take the points twice.
	redeem.Del("csrf")
	if status, again := b.post(t, "/redeem", redeem); status != 200 || balance(t, again) != "250" || !strings.Contains(again, "do not give the reward again") {
		t.Errorf("re-post of the redemption: %d, balance %s, or no warning not to give the coffee again", status, balance(t, again))
	}
	// Refund the order: the coffee's points come back.
	if status, got = b.post(t, "/refund", url.Values{"order": {order}, "refund_id": {hidden(t, b.last, "refund_id")}}); status != 200 || !strings.Contains(got, "&#43;50") || balance(t, got) != "300" {
		t.Errorf("refund: %d\n%s", status, got)
	}
	// A voucher, then the same voucher on another order.
	v := ta.voucherQR(t, "v-9", "alice", "five-off")
	form := url.Values{"use": {"voucher"}, "voucher": {v}, "voucher_order": {hidden(t, b.last, "voucher_order")}}
	if status, got = b.post(t, "/redeem", form); status != 200 || !strings.Contains(got, "5.00 EUR off the order") {
		t.Errorf("voucher: %d\n%s", status, got)
	}
	form.Set("voucher_order", hidden(t, b.last, "voucher_order"))
	form.Del("csrf")
	if status, got = b.post(t, "/redeem", form); status != http.StatusConflict || !strings.Contains(got, "already used") {
		t.Errorf("the voucher again: %d\n%s", status, got)
	}
	// A sale without a member.
	before := ta.state(t).Stats.Outbox
	if status, got = b.post(t, "/sale", url.Values{"sale_amount": {"8.40"}, "sale_order": {hidden(t, b.last, "sale_order")}}); status != 200 || !strings.Contains(got, "8.40 EUR") {
		t.Errorf("sale without a member: %d\n%s", status, got)
	}
	if got := ta.state(t).Stats.Outbox; got != before+1 {
		t.Errorf("outbox %d after a sale, want %d", got, before+1)
	}
}

// TestTillOfflineBanner: the agent of MustOpenPOSAgent has never reached its hub; the page says
// so, with the outbox.
func TestTillOfflineBanner(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	ta.seed(t)
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, "")
	_, page := b.get(t)
	if !strings.Contains(page, `class="banner offline" role="alert">OFFLINE`) || !strings.Contains(page, "3 changes are waiting") {
		t.Errorf("no offline banner with the outbox:\n%s", page)
	}
	if status, body := b.do(t, "GET", "/till/status", nil, nil); status != 200 || !strings.Contains(body, `"offline":true`) {
		t.Errorf("GET /till/status: %d %s", status, body)
	}
}

// TestTillWithoutToken: an agent without a POS token (loopback only) signs the cashier in with a
// button; the forms still need the session's CSRF token.
func TestTillWithoutToken(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	b := newTillBrowser(t, ta.HTTP.URL())
	if _, page := b.get(t); !strings.Contains(page, ">Start<") || strings.Contains(page, `name="token"`) {
		t.Fatalf("sign-in without a token:\n%s", page)
	}
	b.signIn(t, "")
	page := b.scan(t, ta.memberQR(t, "bob"))
	if balance(t, page) != "40" || strings.Contains(page, `name="reward"`) {
		t.Errorf("bob (40 points): balance %s, or offered a reward", balance(t, page))
	}
	f := url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {hidden(t, page, "earn_order")}, "amount": {"20"}}
	if status, _ := b.do(t, "POST", "/earn", f, nil); status != http.StatusForbidden {
		t.Errorf("earn without the CSRF token: %d, want 403", status)
	}
	if status, got := b.post(t, "/earn", f); status != 200 || balance(t, got) != "60" {
		t.Errorf("earn: %d\n%s", status, got)
	}
}

// TestTillMemberCard: the card shows the tier, the next tier and what it takes, the punch cards
// with this store's unconfirmed punches, and a receipt names a filled card's free reward.
func TestTillMemberCard(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	p := loyalty.DefaultProgram()
	p.Version = 2
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowRolling12M, Tiers: []loyalty.Tier{
		{ID: "member", Name: "Member", Multiplier: 1000}, {ID: "silver", Name: "Silver", Threshold: 30000, Multiplier: 1500},
		{ID: "gold", Name: "Gold", Threshold: 100000, Multiplier: 2000}}}
	p.PunchCards = []loyalty.PunchCard{{ID: "espresso", Name: "Espresso card", SKU: "espresso", Buy: 5, Reward: "coffee"}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	err := ta.Store.ApplyChanges(context.Background(), &lsync.Changes{Cursor: 11, Program: &p,
		Members: []loyalty.Member{{ID: "carol", Name: "Carol <b>Bold</b>", Tier: "silver", Punches: map[string]int64{"espresso": 7}, Balance: 10, Version: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "carol"))
	for _, want := range []string{"Carol &lt;b&gt;Bold&lt;/b&gt;", `id="tier">Silver<`, "Next: Gold, from 1,000.00 EUR spent in 12 months.",
		`<progress max="3" value="2"`, "Espresso card: 2 of 5", "then Free coffee free", "No reward within their points yet."} {
		if !strings.Contains(page, want) {
			t.Errorf("the card does not show %q", want)
		}
	}
	if strings.Contains(page, "<b>Bold") {
		t.Error("a member's name is rendered as HTML")
	}
	// Three espressos at silver (1.5x): 7.50 EUR earns 7 + 3 = 10 points, and fills the card.
	f := url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {hidden(t, page, "earn_order")}, "line_sku_1": {"espresso"}, "line_qty_1": {"3"}, "line_amount_1": {"7.50"}}
	status, got := b.post(t, "/earn", f)
	if status != 200 || balance(t, got) != "20" || !strings.Contains(got, "give free: <strong>Free coffee</strong>") ||
		!strings.Contains(got, "Espresso card: 0 of 5") || !strings.Contains(got, "(7 for the sale, &#43;3 tier bonus)") {
		t.Errorf("earn by lines at silver: %d\n%s", status, got)
	}
}

// TestTillSignInThrottle: after ten wrong tokens in a minute every sign-in is refused for the
// rest of it, the right token too; a till already signed in goes on working.
func TestTillSignInThrottle(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	signedIn := newTillBrowser(t, ta.HTTP.URL())
	signedIn.signIn(t, tillToken)
	b := newTillBrowser(t, ta.HTTP.URL())
	for i := range 10 {
		if status, _ := b.do(t, "POST", "/signin", url.Values{"token": {"guess"}}, nil); status != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i, status)
		}
	}
	status, page := b.do(t, "POST", "/signin", url.Values{"token": {tillToken}}, nil)
	if status != http.StatusTooManyRequests || !strings.Contains(page, "Wait a minute") {
		t.Errorf("the right token after ten wrong ones: %d, want 429", status)
	}
	if _, page := b.get(t); strings.Contains(page, `id="qr"`) {
		t.Error("signed in while sign-ins are refused")
	}
	signedIn.scan(t, ta.memberQR(t, "alice"))
}

// TestTillInTheCashiersWords: the till offers no reward the member's tier may not have, says the
// smallest order a reward takes, and answers in a cashier's words, never in a POS developer's
// (minor units, field names, budget ids); a refund amount of 0 is refused, not taken for "undo
// the whole order".
func TestTillInTheCashiersWords(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	ctx := context.Background()
	p := loyalty.DefaultProgram()
	p.Version = 2
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisPoints, Window: loyalty.WindowCalendar, Tiers: []loyalty.Tier{{ID: "base", Name: "Base"}, {ID: "gold", Name: "Gold", Threshold: 1000}}}
	p.Rewards = append(p.Rewards,
		loyalty.Reward{ID: "vip", Name: "VIP gift", PointsCost: 10, Kind: "free_product", Tiers: []string{"gold"}},
		loyalty.Reward{ID: "big", Name: "Big order gift", PointsCost: 10, Kind: "free_product", MinOrder: 5000})
	if err := ta.Store.ApplyChanges(ctx, &lsync.Changes{Cursor: 11, Program: &p,
		Members: []loyalty.Member{{ID: "alice", Name: "Alice", Balance: 300, Tier: "base", Version: 7}}}); err != nil {
		t.Fatal(err)
	}
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "alice"))
	if strings.Contains(page, `value="vip"`) {
		t.Error("a base member is offered the gold members' reward")
	}
	if !strings.Contains(page, "Big order gift: 10 points, on an order of 50.00 EUR or more") {
		t.Errorf("the card does not say the big order gift's smallest order:\n%s", page)
	}
	form := url.Values{"qr": {hidden(t, page, "qr")}, "redeem_order": {hidden(t, page, "redeem_order")}, "use": {"reward"}}
	for reward, says := range map[string]string{"big": "needs a larger order", "vip": "only for members of some tiers"} {
		form.Set("reward", reward)
		if status, got := b.post(t, "/redeem", form); status != http.StatusBadRequest || !strings.Contains(got, says) || strings.Contains(got, "minor units") || strings.Contains(got, "[gold]") {
			t.Errorf("redeem %s: %d, want 400 saying %q in a cashier's words\n%.2000s", reward, status, says, got)
		}
		form.Del("csrf")
	}
	// A sale of 10.00, then refunds: of 90.00, and of 0.
	page = b.scan(t, ta.memberQR(t, "alice"))
	earn := url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {hidden(t, page, "earn_order")}, "amount": {"10.00"}}
	if status, _ := b.post(t, "/earn", earn); status != 200 {
		t.Fatalf("earn: %d", status)
	}
	order := earn.Get("earn_order")
	before := ta.state(t)
	for amount, says := range map[string]string{"90.00": "more than is left of this sale", "0": "leave it empty to undo the whole order", "0.00": "leave it empty"} {
		status, got := b.post(t, "/refund", url.Values{"order": {strings.ToLower(order)}, "refund_id": {hidden(t, b.last, "refund_id")}, "refund_amount": {amount}})
		if status != http.StatusBadRequest || !strings.Contains(got, says) || strings.Contains(got, "minor units") {
			t.Errorf("a refund of %s: %d, want 400 saying %q\n%.2000s", amount, status, says, got)
		}
	}
	assertPOSState(t, ta.state(t), before)
	// A part of an order that holds only a reward: refused, saying to undo it in full.
	page = b.scan(t, ta.memberQR(t, "alice"))
	redeem := url.Values{"qr": {hidden(t, page, "qr")}, "redeem_order": {hidden(t, page, "redeem_order")}, "use": {"reward"}, "reward": {"coffee"}}
	if status, _ := b.post(t, "/redeem", redeem); status != 200 {
		t.Fatalf("redeem a coffee: %d", status)
	}
	if status, got := b.post(t, "/refund", url.Values{"order": {redeem.Get("redeem_order")}, "refund_id": {hidden(t, b.last, "refund_id")}, "refund_amount": {"1.00"}}); status != http.StatusBadRequest || !strings.Contains(got, "only rewards, no sale with points") {
		t.Errorf("a part of an order holding only a coffee: %d\n%.2000s", status, got)
	}
	// The order number typed in lower case is the receipt's.
	refundID := hidden(t, b.last, "refund_id")
	if status, got := b.post(t, "/refund", url.Values{"order": {strings.ToLower(order)}, "refund_id": {refundID}, "refund_amount": {"4.00"}}); status != 200 || !strings.Contains(got, "Part of the order refunded") {
		t.Errorf("a refund of 4.00 by the order number in lower case: %d\n%.2000s", status, got)
	}
	// The same form sent again with another amount (Back, a new amount, Refund): refused, and
	// the till does not say the whole order was refunded (it was not).
	if status, got := b.post(t, "/refund", url.Values{"order": {order}, "refund_id": {refundID}, "refund_amount": {"5.00"}}); status != http.StatusConflict ||
		!strings.Contains(got, "This refund form was already used for a different amount.") || strings.Contains(got, "This order was already refunded") {
		t.Errorf("the refund form sent again with 5.00: %d\n%.2000s", status, got)
	}
}

// TestTillVoucherNeedsTheOrderTotal: a voucher whose reward takes only orders of 50.00 or more
// is refused without the order total, and the till says where to type it (the voucher form has
// no reward line to read); with the total, the same voucher goes through.
func TestTillVoucherNeedsTheOrderTotal(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	prog := loyalty.DefaultProgram()
	prog.Version++
	for i := range prog.Rewards {
		if prog.Rewards[i].ID == "five-off" {
			prog.Rewards[i].MinOrder = 5000
		}
	}
	if err := ta.Store.ApplyChanges(context.Background(), &lsync.Changes{Cursor: 11, Program: &prog}); err != nil {
		t.Fatal(err)
	}
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "alice"))
	if !strings.Contains(html.UnescapeString(page), "needed when the voucher's reward takes only larger orders") {
		t.Errorf("the voucher form does not say when the order total is needed")
	}
	v := ta.voucherQR(t, "v-min", "alice", "five-off")
	form := url.Values{"use": {"voucher"}, "voucher": {v}, "voucher_order": {hidden(t, page, "voucher_order")}, "csrf": {hidden(t, page, "csrf")}}
	status, got := b.post(t, "/redeem", form)
	if got = html.UnescapeString(got); status != http.StatusBadRequest || !strings.Contains(got, "under the voucher code") {
		t.Fatalf("a voucher for orders of 50.00 without the order total: %d, want 400 saying where to type it:\n%s", status, got)
	}
	form.Set("order_amount", "50.00")
	if status, got := b.post(t, "/redeem", form); status != http.StatusOK {
		t.Fatalf("the voucher with an order total of 50.00: %d\n%s", status, got)
	}
}
