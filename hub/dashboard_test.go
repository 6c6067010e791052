package hub_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// dashHub is a hub (openHub: stores s1, s2, members m1, m2) behind its HTTP handler, with an
// admin and a report API key.
type dashHub struct {
	Hub           *hub.Hub
	URL           string
	Admin, Report hub.NewAPIKey
}

func openDashHub(t *testing.T) *dashHub {
	t.Helper()
	h := openHub(t)
	h.Now = time.Now // the browser's cookie jar keeps a session until its expiry on the real clock
	sync := lsync.NewServer(h)
	sync.Logger = slog.New(slog.DiscardHandler)
	srv := &hub.Server{Hub: h, Sync: sync, AdminKey: akAdminKey, Logger: slog.New(slog.DiscardHandler)}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	ctx := hub.WithActor(context.Background(), hub.CLIActor)
	admin, err := h.CreateAPIKey(ctx, "ops admin", hub.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	report, err := h.CreateAPIKey(ctx, "finance", hub.ScopeReport)
	if err != nil {
		t.Fatal(err)
	}
	return &dashHub{Hub: h, URL: ts.URL, Admin: admin, Report: report}
}

// dashBrowser is a browser without JavaScript: a cookie jar, and redirects not followed.
type dashBrowser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (d *dashHub) browser(t *testing.T) *dashBrowser {
	jar, _ := cookiejar.New(nil)
	return &dashBrowser{t: t, base: d.URL, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type dashAnswer struct {
	Status   int
	Body     string
	Location string
}

func (b *dashBrowser) do(req *http.Request) dashAnswer {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return dashAnswer{Status: resp.StatusCode, Body: string(body), Location: resp.Header.Get("Location")}
}

func (b *dashBrowser) get(path string) dashAnswer {
	b.t.Helper()
	req, err := http.NewRequest("GET", b.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// post sends a form as the page's own (Sec-Fetch-Site: same-origin), with header overrides.
func (b *dashBrowser) post(path string, form url.Values, headers ...string) dashAnswer {
	b.t.Helper()
	req, err := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.do(req)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the page at path.
func (b *dashBrowser) csrf(path string) string {
	b.t.Helper()
	a := b.get(path)
	m := csrfRe.FindStringSubmatch(a.Body)
	if m == nil {
		b.t.Fatalf("GET %s (%d): no CSRF token in the page", path, a.Status)
	}
	return m[1]
}

// signIn signs in with key and requires the overview to show.
func (b *dashBrowser) signIn(key string) {
	b.t.Helper()
	a := b.post("/signin", url.Values{"key": {key}})
	if a.Status != http.StatusSeeOther || a.Location != "/" {
		b.t.Fatalf("sign in: %d %q %s", a.Status, a.Location, a.Body)
	}
	if a := b.get("/"); a.Status != http.StatusOK || !strings.Contains(a.Body, "<h1>Overview</h1>") {
		b.t.Fatalf("overview after sign-in: %d %s", a.Status, a.Body)
	}
}

func TestDashboard_SignIn(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	if a := b.get("/"); a.Status != http.StatusSeeOther || a.Location != "/signin" {
		t.Fatalf("GET / signed out: %d %q", a.Status, a.Location)
	}
	if a := b.get("/signin"); a.Status != http.StatusOK || !strings.Contains(a.Body, `<label for="key">`) {
		t.Fatalf("sign-in page: %d %s", a.Status, a.Body)
	}
	online, err := d.Hub.CreateAPIKey(hub.WithActor(context.Background(), hub.CLIActor), "web shop", hub.ScopeOnline)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, key, want string }{
		{"empty", "", "Type or paste"},
		{"wrong", "lk_" + strings.Repeat("A", 43), "not valid"},
		{"almost the bootstrap key", akAdminKey + "x", "not valid"},
		{"huge", strings.Repeat("k", 5000), ""},
		{"online scope", online.Key, "scope online"},
	} {
		a := b.post("/signin", url.Values{"key": {tt.key}})
		if a.Status < 400 || !strings.Contains(a.Body, tt.want) || strings.Contains(a.Body, tt.key[:min(len(tt.key), 20)]+"\"") && tt.key != "" {
			t.Errorf("%s key: %d, want a refusal saying %q: %s", tt.name, a.Status, tt.want, a.Body)
		}
		if a := b.get("/"); a.Status != http.StatusSeeOther {
			t.Errorf("after a refused %s key, GET / is %d", tt.name, a.Status)
		}
	}
	// Another site cannot sign a browser in.
	if a := b.post("/signin", url.Values{"key": {d.Admin.Key}}, "Sec-Fetch-Site", "cross-site"); a.Status != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d", a.Status)
	}
	u, _ := url.Parse(d.URL)
	for _, key := range []string{d.Admin.Key, d.Report.Key, akAdminKey} {
		b, other := d.browser(t), d.browser(t)
		b.signIn(key)
		other.signIn(key)
		copied := b.c.Jar.Cookies(u) // someone read the cookie off the browser
		// Signing out ends the session, and a copy of its cookie is refused.
		if a := b.post("/signout", url.Values{"csrf": {b.csrf("/")}}); a.Status != http.StatusSeeOther || a.Location != "/signin" {
			t.Errorf("sign out: %d %q", a.Status, a.Location)
		}
		if a := b.get("/"); a.Status != http.StatusSeeOther {
			t.Errorf("GET / after signing out: %d", a.Status)
		}
		b.c.Jar.SetCookies(u, copied)
		if a := b.get("/"); a.Status != http.StatusSeeOther || a.Location != "/signin" {
			t.Errorf("GET / with a copy of the signed-out session's cookie: %d %q", a.Status, a.Location)
		}
		// The key's other sign-in goes on.
		if a := other.get("/"); a.Status != http.StatusOK {
			t.Errorf("another browser signed in with the same key, after the first signed out: %d", a.Status)
		}
	}
	// A forged cookie is no session.
	jar, _ := cookiejar.New(nil)
	jar.SetCookies(u, []*http.Cookie{{Name: "loyalty_dashboard", Value: "x.config." + strings.Repeat("A", 40)}})
	b.c.Jar = jar
	if a := b.get("/"); a.Status != http.StatusSeeOther {
		t.Errorf("GET / with a forged cookie: %d", a.Status)
	}
}

// A sign-in lasts DashboardSessionTTL on the hub's clock.
func TestDashboard_SessionExpires(t *testing.T) {
	d := openDashHub(t)
	var later atomic.Int64
	d.Hub.Now = func() time.Time { return time.Now().Add(time.Duration(later.Load())) }
	b := d.browser(t)
	b.signIn(d.Report.Key)
	later.Store(int64(hub.DashboardSessionTTL - time.Minute))
	if a := b.get("/dash/stores"); a.Status != http.StatusOK {
		t.Errorf("a minute before the session ends: %d", a.Status)
	}
	later.Store(int64(hub.DashboardSessionTTL + time.Minute))
	if a := b.get("/dash/stores"); a.Status != http.StatusSeeOther || a.Location != "/signin" {
		t.Errorf("a minute after the session ended: %d %q", a.Status, a.Location)
	}
}

func TestDashboard_RevokedKeysSessionEnds(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	token := b.csrf("/dash/members/m1")
	if _, err := d.Hub.RevokeAPIKey(hub.WithActor(context.Background(), hub.CLIActor), d.Admin.ID); err != nil {
		t.Fatal(err)
	}
	if a := b.get("/dash/members/m1"); a.Status != http.StatusSeeOther || a.Location != "/signin" {
		t.Errorf("a page after the key was revoked: %d %q", a.Status, a.Location)
	}
	a := b.post("/dash/members/m1/adjust", url.Values{"csrf": {token}, "points": {"5"}, "reason": {"x"}, "adjust_id": {"dash-1"}})
	if a.Status != http.StatusUnauthorized {
		t.Errorf("a change after the key was revoked: %d", a.Status)
	}
	if got := balance(t, d.Hub, "m1"); got != 0 {
		t.Errorf("balance %d after a revoked key's adjustment", got)
	}
	if a := b.post("/signin", url.Values{"key": {d.Admin.Key}}); a.Status != http.StatusUnauthorized {
		t.Errorf("sign-in with the revoked key: %d", a.Status)
	}
}

// A session of the bootstrap key ends when admin_api_key changes: a hub process with another
// admin_api_key (the same KEK, so the same session key) does not take it.
func TestDashboard_BootstrapKeyChanged(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	b.signIn(akAdminKey)
	srv := &hub.Server{Hub: d.Hub, Sync: lsync.NewServer(d.Hub), AdminKey: "another-bootstrap-key-987654", Logger: slog.New(slog.DiscardHandler)}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	b.base = ts.URL // 127.0.0.1 on another port: the browser sends the same cookie
	if a := b.get("/"); a.Status != http.StatusSeeOther || a.Location != "/signin" {
		t.Errorf("the old bootstrap key's session at a hub with a new one: %d %q", a.Status, a.Location)
	}
	b.signIn("another-bootstrap-key-987654")
	b.base = d.URL
	if a := b.get("/"); a.Status != http.StatusSeeOther {
		t.Errorf("the new bootstrap key's session at the hub with the old one: %d", a.Status)
	}
}

func TestDashboard_ReportKeyChangesNothing(t *testing.T) {
	d := openDashHub(t)
	ctx := hub.WithActor(context.Background(), hub.CLIActor)
	wh, err := d.Hub.CreateWebhook(ctx, hub.WebhookRequest{URL: ptr("https://hooks.example.com/in?secret=s3cr3t"), Events: &[]string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	b := d.browser(t)
	b.signIn(d.Report.Key)
	token := b.csrf("/") // the sign-out form's: a report key's session has a token too
	for _, path := range []string{"/", "/dash/reports", "/dash/stores", "/dash/conflicts", "/dash/budgets", "/dash/program",
		"/dash/members", "/dash/members?q=m", "/dash/members/m1", "/dash/imports"} {
		a := b.get(path)
		if a.Status != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, a.Status, a.Body)
			continue
		}
		if n := strings.Count(a.Body, `name="csrf"`); n != 1 { // the sign-out button only
			t.Errorf("GET %s shows a report key %d forms", path, n)
		}
		for _, secret := range []string{"s3cr3t", "hooks.example.com", "qr.png"} {
			if strings.Contains(a.Body, secret) {
				t.Errorf("GET %s shows a report key %q", path, secret)
			}
		}
	}
	if a := b.get("/dash/members/m1/qr.png"); a.Status != http.StatusForbidden {
		t.Errorf("QR code for a report key: %d", a.Status)
	}
	for _, path := range []string{"/dash/webhooks", "/dash/webhooks/" + wh.Webhook.ID} { // admin-only, as at the API
		if a := b.get(path); a.Status != http.StatusForbidden || strings.Contains(a.Body, "hooks.example.com") {
			t.Errorf("GET %s with a report key: %d", path, a.Status)
		}
	}
	before, _ := d.Hub.Program(context.Background())
	for path, form := range map[string]url.Values{
		"/dash/members/m1/adjust":            {"points": {"100"}, "reason": {"gift"}, "adjust_id": {"dash-x"}},
		"/dash/members/m1/erase":             {"confirm": {"m1"}},
		"/dash/switch":                       {"kind": {"reward"}, "id": {"coffee"}, "on": {"false"}},
		"/dash/program":                      {"program": {mustJSON(before)}, "base": {fmt.Sprint(before.Version)}},
		"/dash/conflicts/1/resolve":          {},
		"/dash/members/m1/card-link":         {"days": {"30"}},
		"/dash/members/m1/card-links/revoke": {},
	} {
		form.Set("csrf", token)
		if a := b.post(path, form); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "may only read") {
			t.Errorf("POST %s with a report key: %d %s", path, a.Status, a.Body)
		}
	}
	if a := b.postFile("/dash/imports", token, "member_id,points\nm1,100\n"); a.Status != http.StatusForbidden {
		t.Errorf("import with a report key: %d", a.Status)
	}
	after, _ := d.Hub.Program(context.Background())
	if got := balance(t, d.Hub, "m1"); got != 0 || after.Version != before.Version {
		t.Errorf("a report key changed something: balance %d, program version %d -> %d", got, before.Version, after.Version)
	}
	v, _ := d.Hub.Member(context.Background(), "m1", 0)
	if v.Erased {
		t.Error("a report key erased a member")
	}
}

func ptr[T any](v T) *T { return &v }

// postFile sends the import form with a CSV file, as import imp-1.
func (b *dashBrowser) postFile(path, token, csv string) dashAnswer {
	b.t.Helper()
	return b.postFileID(path, token, "imp-1", csv)
}

func TestDashboard_CSRF(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	token := b.csrf("/dash/members/m1")
	other := d.browser(t)
	other.signIn(d.Admin.Key)
	otherToken := other.csrf("/")
	form := func(tok string) url.Values {
		return url.Values{"csrf": {tok}, "points": {"5"}, "reason": {"x"}, "adjust_id": {"dash-csrf"}}
	}
	for _, tt := range []struct {
		name    string
		form    url.Values
		headers []string
	}{
		{"no token", form(""), nil},
		{"wrong token", form(token + "x"), nil},
		{"another session's token", form(otherToken), nil},
		{"from another site", form(token), []string{"Sec-Fetch-Site", "cross-site"}},
		{"another origin", form(token), []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}},
	} {
		if a := b.post("/dash/members/m1/adjust", tt.form, tt.headers...); a.Status != http.StatusForbidden {
			t.Errorf("%s: %d", tt.name, a.Status)
		}
	}
	if a := b.postFile("/dash/imports", "", "member_id,points\nm1,100\n"); a.Status != http.StatusForbidden {
		t.Errorf("import without a token: %d", a.Status)
	}
	if got := balance(t, d.Hub, "m1"); got != 0 {
		t.Errorf("balance %d after refused forms", got)
	}
	if a := b.post("/dash/members/m1/adjust", form(token)); a.Status != http.StatusSeeOther {
		t.Errorf("the page's own form: %d %s", a.Status, a.Body)
	}
	// The same form sent twice (a double click, a reload) adjusts once.
	if a := b.post("/dash/members/m1/adjust", form(token)); a.Status != http.StatusSeeOther {
		t.Errorf("the form again: %d %s", a.Status, a.Body)
	}
	if got := balance(t, d.Hub, "m1"); got != 5 {
		t.Errorf("balance %d, want 5", got)
	}
}

// TestDashboard_SignInAndOutFromAnotherSite: a sign-in or a sign-out posted from another site is
// refused, also where the browser sends no Sec-Fetch-Site (plain HTTP to a name other than
// localhost) and the Origin is "null" (a sandboxed frame, a page without referrers): another
// site signed a browser in with the attacker's report key, or signed an operator out. The pages
// send their own Origin (Referrer-Policy: same-origin).
func TestDashboard_SignInAndOutFromAnotherSite(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "", "Origin", "null"},
		{"Sec-Fetch-Site", "", "Origin", "https://evil.example"},
		{"Sec-Fetch-Site", "cross-site"},
	} {
		if a := b.post("/signin", url.Values{"key": {d.Report.Key}}, h...); a.Status != http.StatusForbidden {
			t.Errorf("a sign-in with headers %q: %d %q, want 403", h, a.Status, a.Location)
		}
		// A browser withholds the SameSite=Strict cookie from another site's POST: the sign-out
		// comes without a session, and its answer must not delete the operator's cookie.
		req, err := http.NewRequest("POST", d.URL+"/signout", strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(h); i += 2 {
			req.Header.Set(h[i], h[i+1])
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Errorf("a sign-out with headers %q: %d, cookies %v; want 403 and none", h, resp.StatusCode, resp.Cookies())
		}
	}
	if a := b.get("/dash/members/m1"); a.Status != http.StatusOK || !strings.Contains(a.Body, `action="/dash/members/m1/adjust"`) {
		t.Errorf("after the other site's posts the operator is not signed in as admin: %d", a.Status)
	}
}

// Every change made on the dashboard is in the audit trail with the operator's key id.
func TestDashboard_ChangesAudited(t *testing.T) {
	d := openDashHub(t)
	h := d.Hub
	pushOK(t, h, "s1", scanned(t, h, earn("s1", "m2", 6000)))
	pushOK(t, h, "s1", redeem("s1", "m2", "coffee", 50))
	pushOK(t, h, "s2", redeem("s2", "m2", "coffee", 50)) // an overdraft: a conflict
	cs, err := h.Conflicts(context.Background(), 10)
	if err != nil || len(cs) != 1 || !cs[0].Flagged {
		t.Fatalf("conflicts %+v %v", cs, err)
	}
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	token := b.csrf("/")
	see := func(a dashAnswer, want, page, text string) {
		t.Helper()
		if a.Status != http.StatusSeeOther || a.Location != want {
			t.Fatalf("%d %q %s, want a redirect to %s", a.Status, a.Location, a.Body, want)
		}
		if p := b.get(want); !strings.Contains(p.Body, text) {
			t.Errorf("%s does not say %q: %s", page, text, p.Body)
		}
	}
	see(b.post("/dash/members/m1/adjust", url.Values{"csrf": {token}, "points": {"250"}, "reason": {"goodwill <b>"}, "adjust_id": {"dash-a1"}}),
		"/dash/members/m1?done=adjusted", "member", `id="balance">250<`)
	see(b.post("/dash/switch", url.Values{"csrf": {token}, "kind": {"reward"}, "id": {"coffee"}, "on": {"false"}}),
		"/dash/budgets?done=off", "budgets", "Switched off")
	p := b.get("/dash/program").Body
	if _, row, _ := strings.Cut(p, `id="reward-coffee">`); !strings.Contains(strings.Split(row, "</tr>")[0], "switched off") {
		t.Errorf("the program page does not say coffee is off: %s", p)
	}
	see(b.post(fmt.Sprintf("/dash/conflicts/%d/resolve", cs[0].ID), url.Values{"csrf": {token}}), "/dash/conflicts?done=resolved", "conflicts", "To review (0)")
	if a := b.post(fmt.Sprintf("/dash/conflicts/%d/resolve", cs[0].ID), url.Values{"csrf": {token}}); a.Status != http.StatusConflict || !strings.Contains(a.Body, "resolved before") {
		t.Errorf("resolving twice: %d %s", a.Status, a.Body)
	}
	prog, _ := h.Program(context.Background())
	prog.Rewards[0].Name = "Free coffee, large"
	see(b.post("/dash/program", url.Values{"csrf": {token}, "program": {mustJSON(prog)}, "base": {fmt.Sprint(prog.Version)}}),
		"/dash/program?done=published", "program", "Free coffee, large")
	a := b.postFile("/dash/imports", token, "member_id,points\nm9,100\nm1,x\n")
	if a.Status != http.StatusOK || !strings.Contains(a.Body, `id="imported">1<`) || !strings.Contains(a.Body, "Refused rows") ||
		!strings.Contains(a.Body, "2 rows read (") || !strings.Contains(a.Body, "</html>") {
		t.Errorf("import: %d %s", a.Status, a.Body)
	}
	see(b.post("/dash/members/m2/erase", url.Values{"csrf": {token}, "confirm": {"m2"}}), "/dash/members/m2?done=erased", "member", "Personal data erased")

	entries, err := h.Audit(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{hub.AuditAdjust: false, hub.AuditProgramPublish: false, hub.AuditConflictResolve: false,
		hub.AuditImport: false, hub.AuditMemberErase: false}
	for _, e := range entries {
		if _, ok := want[e.Action]; ok {
			if e.KeyID != d.Admin.ID {
				t.Errorf("audit %s by %q, want the operator's key %s", e.Action, e.KeyID, d.Admin.ID)
			}
			want[e.Action] = true
		}
	}
	for action, seen := range want {
		if !seen {
			t.Errorf("no audit entry %s", action)
		}
	}
	if c, _ := h.Conflicts(context.Background(), 10); c[0].Flagged {
		t.Error("the conflict is still flagged")
	}
}

func TestDashboard_HostileInputs(t *testing.T) {
	d := openDashHub(t)
	h := d.Hub
	if _, err := h.CreateMember(context.Background(), loyalty.Member{ID: "m-evil", Name: `<script>alert(1)</script>`, Email: "e@example.com"}); err != nil {
		t.Fatal(err)
	}
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	token := b.csrf("/")
	for _, path := range []string{"/dash/members?q=%3Cscript%3E", "/dash/members?q=script&list=1", "/dash/members/m-evil"} {
		a := b.get(path)
		if a.Status != http.StatusOK || strings.Contains(a.Body, "<script>") {
			t.Errorf("GET %s: %d, unescaped: %v", path, a.Status, strings.Contains(a.Body, "<script>"))
		}
	}
	if a := b.get("/dash/members?q=" + strings.Repeat("x", 300)); a.Status != http.StatusBadRequest {
		t.Errorf("a 300-character search: %d", a.Status)
	}
	// Two letters of a name find it, as three do (through the names' index).
	for _, q := range []string{"sc", "scr"} {
		if a := b.get("/dash/members?q=" + q); a.Status != http.StatusOK || !strings.Contains(a.Body, "/dash/members/m-evil") || strings.Contains(a.Body, "No search made") {
			t.Errorf("a search by %q: %d %s", q, a.Status, a.Body)
		}
	}
	for _, path := range []string{"/dash/members/nobody", "/dash/members/..%2F..%2Fetc", "/dash/webhooks/nope", "/dash/members/nobody/qr.png"} {
		a := b.get(path)
		if a.Status != http.StatusNotFound || strings.Contains(strings.ToLower(a.Body), "sql") {
			t.Errorf("GET %s: %d %s", path, a.Status, a.Body)
		}
	}
	if a := b.get("/dash/reports?from=2026-01-01&to=2025-01-01"); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, `id="range-error"`) {
		t.Errorf("a backwards report range: %d", a.Status)
	}
	for _, tt := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"points": {"1e99"}, "reason": {"x"}}, `id="points-error"`},
		{url.Values{"points": {"99999999999999999999"}, "reason": {"x"}}, `id="points-error"`},
		{url.Values{"points": {"0"}, "reason": {"x"}}, `id="points-error"`},
		{url.Values{"points": {"5"}, "reason": {""}}, `id="reason-error"`},
		{url.Values{"points": {"5"}, "reason": {strings.Repeat("r", 201)}}, `id="reason-error"`},
		{url.Values{"points": {"5"}, "reason": {"a\x00b"}}, `id="reason-error"`},
	} {
		tt.form.Set("csrf", token)
		if a := b.post("/dash/members/m1/adjust", tt.form); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, tt.want) {
			t.Errorf("adjust %v: %d, want %s", tt.form, a.Status, tt.want)
		}
	}
	if a := b.post("/dash/members/m1/erase", url.Values{"csrf": {token}, "confirm": {"m2"}}); a.Status != http.StatusBadRequest || !strings.Contains(a.Body, `id="confirm-error"`) {
		t.Errorf("erase with the wrong confirmation: %d", a.Status)
	}
	p, _ := h.Program(context.Background())
	base := fmt.Sprint(p.Version)
	for _, tt := range []struct {
		text, base, want string
		status           int
	}{
		{"{\n  \"currency\": \"EUR\",\n  oops\n}", base, "Line 3", http.StatusBadRequest},
		{`{"currency":"EUR","earn":{"unit_minor":0}}`, base, "earn.unit_minor must be", http.StatusBadRequest},
		{`{"currency":"EUR","nonsense":1}`, base, "does not know", http.StatusBadRequest},
		{`{"currency":"EUR"} {}`, base, "more after", http.StatusBadRequest},
		{mustJSON(p), "0", "The program changed", http.StatusConflict},
		{strings.Repeat(" ", 300<<10) + "{}", base, "longer than 256 KiB", http.StatusBadRequest},
	} {
		a := b.post("/dash/program", url.Values{"csrf": {token}, "program": {tt.text}, "base": {tt.base}})
		if a.Status != tt.status || !strings.Contains(a.Body, tt.want) {
			t.Errorf("program %.40q: %d, want %d with %q", tt.text, a.Status, tt.status, tt.want)
		}
		if tt.want != "" && !strings.Contains(a.Body, `id="program-error"`) {
			t.Errorf("program %.40q: the message is not next to the field", tt.text)
		}
	}
	if after, _ := h.Program(context.Background()); after.Version != p.Version {
		t.Errorf("a refused program was published: version %d", after.Version)
	}
	for _, form := range []url.Values{{"kind": {"reward"}, "id": {"nope"}}, {"kind": {"store"}, "id": {"coffee"}}} {
		form.Set("csrf", token)
		if a := b.post("/dash/switch", form); a.Status != http.StatusNotFound {
			t.Errorf("switch %v: %d", form, a.Status)
		}
	}
	if a := b.post("/dash/conflicts/abc/resolve", url.Values{"csrf": {token}}); a.Status != http.StatusNotFound {
		t.Errorf("resolve conflict abc: %d", a.Status)
	}
	// Every page is served with the security headers.
	req, _ := http.NewRequest("GET", d.URL+"/signin", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", resp.Header)
	}
}

func TestResolveConflict(t *testing.T) {
	h := openHub(t)
	pushOK(t, h, "s1", earn("s1", "m1", 6000))
	pushOK(t, h, "s1", redeem("s1", "m1", "coffee", 50))
	hold(t, h, "s2", "m1")
	pushOK(t, h, "s2", redeem("s2", "m1", "coffee", 50))
	ctx := hub.WithActor(context.Background(), hub.Actor{KeyID: "ak-op", KeyName: "op", Scope: hub.ScopeAdmin})
	cs, _ := h.Conflicts(ctx, 10)
	if len(cs) != 1 {
		t.Fatalf("conflicts %+v", cs)
	}
	if err := h.ResolveConflict(ctx, cs[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := h.ResolveConflict(ctx, cs[0].ID); loyalty.ErrorCode(err) != loyalty.EDUPLICATE {
		t.Errorf("resolved twice: %v", err)
	}
	if err := h.ResolveConflict(ctx, cs[0].ID+100); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("an unknown conflict: %v", err)
	}
	cs, _ = h.Conflicts(ctx, 10)
	if cs[0].Flagged || cs[0].Amount != 40 {
		t.Errorf("after resolving: %+v", cs[0])
	}
	es, _ := h.Audit(ctx, 10)
	if es[0].Action != hub.AuditConflictResolve || es[0].KeyID != "ak-op" || es[0].Target != fmt.Sprint(cs[0].ID) {
		t.Errorf("audit %+v", es[0])
	}
}

// TestDashboard_CardLink: an operator makes a member card link on the member page, which shows
// it whole; it opens the member's card, and ending the member's links closes it.
func TestDashboard_CardLink(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	token := b.csrf("/dash/members/m1")
	for _, days := range []string{"0", "400", "x", ""} {
		if a := b.post("/dash/members/m1/card-link", url.Values{"csrf": {token}, "days": {days}}); a.Status != http.StatusBadRequest {
			t.Errorf("a link for %q days: %d", days, a.Status)
		}
	}
	a := b.post("/dash/members/m1/card-link", url.Values{"csrf": {token}, "days": {"7"}})
	_, rest, ok := strings.Cut(a.Body, `id="card-link" value="`)
	if a.Status != http.StatusOK || !ok {
		t.Fatalf("make a link: %d %s", a.Status, a.Body)
	}
	link, _, _ := strings.Cut(rest, `"`)
	path, found := strings.CutPrefix(link, d.URL)
	if !found || !strings.HasPrefix(path, "/m/") {
		t.Fatalf("the link %q is not a card link of this hub (%s)", link, d.URL)
	}
	anon := d.browser(t) // the member: no session
	if a := anon.get(path); a.Status != http.StatusOK || !strings.Contains(a.Body, "Your loyalty card") {
		t.Fatalf("the member opens the link: %d %s", a.Status, a.Body)
	}
	if a := b.post("/dash/members/m1/card-links/revoke", url.Values{"csrf": {token}}); a.Status != http.StatusSeeOther {
		t.Fatalf("end the links: %d %s", a.Status, a.Body)
	}
	if a := anon.get(path); a.Status != http.StatusNotFound {
		t.Errorf("a link after its member's links were ended: %d", a.Status)
	}
}

// TestDashboard_ImportFormBounded: the import form's fields before its file are bounded, and a
// key that may only read is refused before its upload is read: a report key's thousands of
// fields used to be held in memory until the file's part, up to the size of an import.
func TestDashboard_ImportFormBounded(t *testing.T) {
	d := openDashHub(t)
	fields := func(b *dashBrowser, token string, n int) dashAnswer {
		t.Helper()
		var body strings.Builder
		mw := multipart.NewWriter(&body)
		mw.WriteField("csrf", token)
		for i := range n {
			mw.WriteField(fmt.Sprintf("f%d", i), strings.Repeat("x", 1000))
		}
		mw.WriteField("import_id", "imp-bounded")
		mw.WriteField("mode", "add")
		mw.WriteField("reason", "migration")
		fw, _ := mw.CreateFormFile("file", "members.csv")
		io.WriteString(fw, "member_id,points\nm1,100\n")
		mw.Close()
		req, err := http.NewRequest("POST", b.base+"/dash/imports", strings.NewReader(body.String()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		return b.do(req)
	}
	report := d.browser(t)
	report.signIn(d.Report.Key)
	// No CSRF token either: the key's scope is judged first, before any field is read.
	if a := fields(report, "", 2000); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "may only read") {
		t.Errorf("a report key's 2,000 fields: %d %s", a.Status, a.Body)
	}
	admin := d.browser(t)
	admin.signIn(d.Admin.Key)
	token := admin.csrf("/dash/imports")
	if a := fields(admin, token, 20); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "out of date") {
		t.Errorf("20 unknown fields before the file: %d %s", a.Status, a.Body)
	}
	if got := balance(t, d.Hub, "m1"); got != 0 {
		t.Fatalf("balance %d after refused imports", got)
	}
	if a := fields(admin, token, 5); a.Status != http.StatusOK || balance(t, d.Hub, "m1") != 100 {
		t.Errorf("5 extra fields before the file: %d, balance %d, want the file imported", a.Status, balance(t, d.Hub, "m1"))
	}
}
