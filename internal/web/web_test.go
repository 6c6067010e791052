package web_test

import (
	"embed"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
	"github.com/loyalty-edge-sync/loyalty/internal/webtest"
)

//go:embed testdata/page.html
var pages embed.FS

func signer(t *testing.T) *web.Signer {
	s, err := web.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSigner(t *testing.T) {
	s := signer(t)
	now := time.Unix(1_800_000_000, 0)
	v := s.Sign("session", "abc def", now.Add(time.Hour))
	if got, _, err := s.Verify("session", v, now); err != nil || got != "abc def" {
		t.Fatalf("Verify = %q, %v", got, err)
	}
	if _, _, err := s.Verify("card", v, now); err == nil {
		t.Error("a value signed for one purpose was accepted for another")
	}
	if _, _, err := s.Verify("session", v, now.Add(time.Hour)); err == nil {
		t.Error("an expired value was accepted")
	}
	other, _ := web.NewSigner([]byte(strings.Repeat("x", 32)))
	if _, _, err := other.Verify("session", v, now); err == nil {
		t.Error("a value signed with another key was accepted")
	}
	// Change one character of each part: none passes.
	for i := range v {
		b := []byte(v)
		b[i] ^= 1
		if _, _, err := s.Verify("session", string(b), now); err == nil {
			t.Fatalf("a value changed at %d was accepted: %q", i, b)
		}
	}
	if _, _, err := s.Verify("session", strings.Repeat("a", 5000), now); err == nil {
		t.Error("a huge value was accepted")
	}
	if _, err := web.NewSigner([]byte("short")); err == nil {
		t.Error("a short key was accepted")
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		n           int64
		group, cash string
	}{
		{0, "0", "0.00"}, {5, "5", "0.05"}, {-5, "-5", "-0.05"}, {1234567, "1,234,567", "12,345.67"},
		{-9223372036854775808, "-9,223,372,036,854,775,808", "-92,233,720,368,547,758.08"},
	} {
		if g := web.Group(c.n); g != c.group {
			t.Errorf("Group(%d) = %q, want %q", c.n, g, c.group)
		}
		if m := web.Money(c.n); m != c.cash {
			t.Errorf("Money(%d) = %q, want %q", c.n, m, c.cash)
		}
	}
}

func TestMoneyIn(t *testing.T) {
	for _, c := range []struct {
		n      int64
		digits int
		want   string
	}{
		{2500, 0, "2,500"}, {-2500, 0, "-2,500"}, {1250, 3, "1.250"}, {5, 3, "0.005"}, {1234567, 3, "1,234.567"},
		{12345, 4, "1.2345"}, {99, 2, "0.99"}, {7, 9, "0.0007"}, {7, -1, "7"},
		{-9223372036854775808, 0, "-9,223,372,036,854,775,808"}, {-9223372036854775808, 4, "-922,337,203,685,477.5808"},
	} {
		if got := web.MoneyIn(c.n, c.digits); got != c.want {
			t.Errorf("MoneyIn(%d, %d) = %q, want %q", c.n, c.digits, got, c.want)
		}
	}
}

func TestRefusalSpeaksToPeople(t *testing.T) {
	f := web.Refusal(loyalty.Errorf(loyalty.EINSUFFICIENT, "the member has 10 points; this reward needs 50"))
	if f.Title != "Not enough points." || !strings.Contains(f.Error, "needs 50") || f.Hint == "" {
		t.Errorf("EINSUFFICIENT: %+v", f)
	}
	f = web.Refusal(errors.New("pq: relation members_x does not exist"))
	if strings.Contains(f.Error, "members_x") {
		t.Errorf("an internal error leaked to the page: %+v", f)
	}
}

// counter is a page with a form behind a session: the shape of every page of the project.
type counter struct {
	mu    sync.Mutex
	count int64
	sess  *web.Sessions
}

func (c *counter) handler() http.Handler {
	tmpl := web.Parse(pages, nil, "testdata/page.html")
	mux := http.NewServeMux()
	mux.Handle("GET /static/", web.Static())
	mux.HandleFunc("GET /signin", func(w http.ResponseWriter, r *http.Request) {
		c.sess.SignIn(w, r, "tester")
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.sess.Get(r)
		if !ok {
			http.Error(w, "sign in", http.StatusUnauthorized)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		web.Render(w, nil, tmpl, http.StatusOK, "layout", map[string]any{"Count": c.count, "CSRF": c.sess.CSRF(s), "Flash": (*web.Flash)(nil)})
	})
	mux.HandleFunc("POST /add", func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.sess.Get(r)
		if !ok || !c.sess.CheckCSRF(r, s) {
			http.Error(w, "refused", http.StatusForbidden)
			return
		}
		n, _ := strconv.ParseInt(r.PostFormValue("n"), 10, 64)
		c.mu.Lock()
		c.count += n
		c.mu.Unlock()
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	return web.Headers(mux)
}

func TestSessionAndCSRF(t *testing.T) {
	c := &counter{sess: &web.Sessions{Signer: signer(t), Cookie: "s", TTL: time.Hour}}
	srv := httptest.NewServer(c.handler())
	defer srv.Close()
	// Without the CSRF field, or from another site, a signed-in browser's POST is refused.
	rec := httptest.NewRecorder()
	c.sess.SignIn(rec, nil, "tester")
	cookie := rec.Result().Cookies()[0]
	post := func(form url.Values, site string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/add", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(cookie)
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(url.Values{"n": {"1"}}, ""); got != http.StatusForbidden {
		t.Errorf("POST without a CSRF token: %d", got)
	}
	sess, _ := c.sess.Get(&http.Request{Header: http.Header{"Cookie": {cookie.String()}}})
	if got := post(url.Values{"n": {"1"}, "csrf": {c.sess.CSRF(sess)}}, "cross-site"); got != http.StatusForbidden {
		t.Errorf("POST from another site: %d", got)
	}
	if got := post(url.Values{"n": {"1"}, "csrf": {"x" + c.sess.CSRF(sess)}}, ""); got != http.StatusForbidden {
		t.Errorf("POST with a wrong token: %d", got)
	}
	if got := post(url.Values{"n": {"2"}, "csrf": {c.sess.CSRF(sess)}}, "same-origin"); got != http.StatusSeeOther {
		t.Errorf("the page's own POST: %d", got)
	}
	if c.count != 2 {
		t.Errorf("count %d, want 2", c.count)
	}
}

// TestInABrowser signs in, sends the form with JavaScript on and off, and screenshots the page.
func TestInABrowser(t *testing.T) {
	c := &counter{sess: &web.Sessions{Signer: signer(t), Cookie: "s", TTL: time.Hour}}
	srv := httptest.NewServer(c.handler())
	defer srv.Close()
	ctx := webtest.Browser(t)
	for _, noScript := range []bool{false, true} {
		tab := webtest.Incognito(t, ctx, noScript)
		webtest.Navigate(t, tab, srv.URL+"/signin")
		before := webtest.Text(t, tab, "#count")
		webtest.Fill(t, tab, "#n", "1000")
		webtest.Submit(t, tab, "#add")
		n, _ := strconv.ParseInt(strings.ReplaceAll(before, ",", ""), 10, 64)
		webtest.WaitText(t, tab, "#count", web.Group(n+1000))
		if png := webtest.Screenshots(t, tab, "webtest"); len(png) < 1000 {
			t.Errorf("screenshot of %d bytes", len(png))
		}
	}
}

// TestCrossSite: what a browser says of where a request comes from. Sec-Fetch-Site decides where
// the browser sends it; elsewhere Origin "null" is another site (a sandboxed frame, a page that
// sends no referrer): the pages' own forms send their origin, since their referrer policy is
// same-origin.
func TestCrossSite(t *testing.T) {
	for _, tt := range []struct {
		site, origin string
		cross        bool
	}{
		{"", "", false}, // no sign either way: an API client, an old browser
		{"same-origin", "", false},
		{"none", "", false}, // typed into the address bar
		{"", "http://till.example:8081", false},
		{"same-origin", "http://till.example:8081", false},
		{"same-site", "", true},
		{"cross-site", "", true},
		{"", "null", true},
		{"same-origin", "null", false},                    // a tab opened before the pages sent their origin
		{"same-origin", "https://loyalty.example", false}, // behind a proxy that rewrites Host
		{"cross-site", "http://till.example:8081", true},
		{"", "http://evil.example", true},
		{"", "http://till.example:8082", true},
		{"", "http://[::1", true},
	} {
		r := httptest.NewRequest("POST", "http://till.example:8081/signout", nil)
		if tt.site != "" {
			r.Header.Set("Sec-Fetch-Site", tt.site)
		}
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if got := web.CrossSite(r); got != tt.cross {
			t.Errorf("Sec-Fetch-Site %q, Origin %q: cross-site %v, want %v", tt.site, tt.origin, got, tt.cross)
		}
	}
	// The pages' own forms send their Origin: no referrer policy may make it "null".
	rec := httptest.NewRecorder()
	web.Headers(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if got := rec.Header().Get("Referrer-Policy"); got != "same-origin" {
		t.Errorf("Referrer-Policy %q, want same-origin", got)
	}
}
