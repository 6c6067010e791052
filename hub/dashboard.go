package hub

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
)

// The operator's dashboard (docs/PAGES.md, "The operator's dashboard (hub)"): server-rendered
// pages at / on the hub's HTTP listener, signed in with an operator key (an API key of scope
// admin or report, or the bootstrap admin_api_key). Every page calls the hub methods the JSON API
// calls, with the key's Actor in the context, so every change is in the audit trail.

//go:embed pages/dashboard
var dashFiles embed.FS

// DashboardSessionTTL is how long a dashboard sign-in lasts.
const DashboardSessionTTL = 8 * time.Hour

// Bounds of what the dashboard's forms take.
const (
	maxDashKey     = 256       // an operator key as typed
	maxDashField   = 254       // a search, an id, a reason
	maxDashProgram = 256 << 10 // the program's JSON
	maxDashForm    = 512 << 10 // a whole urlencoded form
)

// dashboard is the dashboard's state: built once in dashboardRoutes, no fields on Server.
type dashboard struct {
	s     *Server
	sess  *web.Sessions
	pages map[string]*template.Template
	err   error // why the dashboard cannot run (no KEK to sign sessions with)
	// config is the session subject of the bootstrap key: "config." and a MAC of admin_api_key,
	// so that a new admin_api_key ends the sessions of the old one ("" when there is none).
	config string
}

// operator is who is signed in on a request.
type operator struct {
	Actor Actor
	Sess  web.Session
	CSRF  string
	Admin bool // scope admin: may change; report keys only read
}

// view is what every page template gets.
type view struct {
	Op    *operator
	Nav   string // the current section, for aria-current
	Flash *web.Flash
	Data  any
}

var dashPages = []string{"signin", "overview", "reports", "stores", "conflicts", "budgets", "program",
	"members", "member", "imports", "webhooks", "webhook", "error"}

// dashboardRoutes registers the operator's dashboard.
func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	d := &dashboard{s: s, pages: map[string]*template.Template{}}
	for _, p := range dashPages {
		d.pages[p] = web.Parse(dashFiles, dashFuncs, "pages/dashboard/common.html", "pages/dashboard/"+p+".html")
	}
	if s.Hub == nil {
		return
	}
	key, err := s.Hub.WebKey("sessions")
	var signer *web.Signer
	if err == nil {
		signer, err = web.NewSigner(key)
	}
	if err != nil {
		d.err = err
	} else {
		if s.AdminKey != "" {
			m := hmac.New(sha256.New, key)
			m.Write([]byte("dashboard admin_api_key\x00" + s.AdminKey))
			d.config = ConfigActor.KeyID + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
		}
		d.sess = &web.Sessions{Signer: signer, Cookie: "loyalty_dashboard", TTL: DashboardSessionTTL,
			Secure: s.TLSCertFile != "" && s.TLSKeyFile != "", Now: func() time.Time { return s.Hub.Now() }}
	}
	handle := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, web.Headers(d.ready(h))) }
	mux.HandleFunc("GET /dash/dashboard.css", serveDashCSS)
	handle("GET /signin", d.signinPage)
	handle("POST /signin", d.signin)
	handle("POST /signout", d.signout)
	handle("GET /{$}", d.read("overview", d.overview))
	handle("GET /dash/reports", d.read("reports", d.reports))
	handle("GET /dash/stores", d.read("stores", d.stores))
	handle("GET /dash/conflicts", d.read("conflicts", d.conflicts))
	handle("POST /dash/conflicts/{id}/resolve", d.change(d.resolveConflict))
	handle("GET /dash/budgets", d.read("budgets", d.budgets))
	handle("POST /dash/switch", d.change(d.killSwitch))
	handle("GET /dash/program", d.read("program", d.program))
	handle("POST /dash/program", d.change(d.publishProgram))
	handle("GET /dash/members", d.read("members", d.members))
	handle("GET /dash/members/{id}", d.read("members", d.member))
	handle("GET /dash/members/{id}/qr.png", d.read("members", d.memberQR))
	handle("POST /dash/members/{id}/adjust", d.change(d.adjust))
	handle("POST /dash/members/{id}/erase", d.change(d.erase))
	handle("POST /dash/members/{id}/card-link", d.change(d.cardLink))
	handle("POST /dash/members/{id}/card-links/revoke", d.change(d.revokeCardLinks))
	handle("GET /dash/imports", d.read("imports", d.imports))
	handle("POST /dash/imports", d.importCSV) // multipart: checks its own session and CSRF
	handle("GET /dash/webhooks", d.read("webhooks", d.webhooks))
	handle("GET /dash/webhooks/{id}", d.read("webhooks", d.webhook))
}

// serveDashCSS serves the dashboard's style sheet (beside the shared /static/app.css).
func serveDashCSS(w http.ResponseWriter, r *http.Request) {
	css, _ := dashFiles.ReadFile("pages/dashboard/dashboard.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(css)
}

// ready answers 503 while the dashboard cannot sign sessions.
func (d *dashboard) ready(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.sess == nil {
			if d.err != nil {
				d.s.Logger.Error("the dashboard is off", slog.Any("err", d.err))
			}
			http.Error(w, "the dashboard needs the hub's key-encryption key (keys.kek_file) to sign sessions", http.StatusServiceUnavailable)
			return
		}
		next(w, r)
	}
}

// operator returns who is signed in on r, checking the key again: a revoked key, a key whose
// scope is no operator's, or the bootstrap key once it is unset, ends the session at once.
func (d *dashboard) operator(r *http.Request) (*operator, error) {
	sess, ok := d.sess.Get(r)
	if !ok {
		return nil, nil
	}
	if ended, err := d.s.Hub.DashboardSessionEnded(r.Context(), sess.ID); err != nil || ended {
		return nil, err // signed out: a copy of the cookie is worth nothing
	}
	var a Actor
	if strings.HasPrefix(sess.Subject, ConfigActor.KeyID+".") {
		if d.config == "" || !hmac.Equal([]byte(sess.Subject), []byte(d.config)) {
			return nil, nil
		}
		a = ConfigActor
	} else {
		k, err := d.s.Hub.APIKeyByID(r.Context(), sess.Subject)
		switch {
		case loyalty.ErrorCode(err) == loyalty.ENOTFOUND:
			return nil, nil
		case err != nil:
			return nil, err
		case !k.RevokedAt.IsZero() || !operatorScope(k.Scope):
			return nil, nil
		}
		a = k.Actor()
	}
	return &operator{Actor: a, Sess: sess, CSRF: d.sess.CSRF(sess), Admin: a.Scope == ScopeAdmin}, nil
}

// operatorScope reports whether keys of scope sc may sign in: admin (changes) and report (reads).
func operatorScope(sc Scope) bool { return sc == ScopeAdmin || sc == ScopeReport }

type pageFunc func(w http.ResponseWriter, r *http.Request, op *operator) (name string, status int, data any, flash *web.Flash)

// read serves a page to any signed-in operator; without a session it sends the browser to the
// sign-in page.
func (d *dashboard) read(nav string, fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		op, err := d.operator(r)
		if err != nil {
			d.fail(w, r, nil, err)
			return
		}
		if op == nil {
			d.sess.SignOut(w)
			http.Redirect(w, r, "/signin", http.StatusSeeOther)
			return
		}
		ctx := WithActor(r.Context(), op.Actor)
		r = r.WithContext(ctx)
		name, status, data, flash := fn(w, r, op)
		if name == "" { // the function answered itself
			return
		}
		if flash == nil {
			flash = doneFlash(r.URL.Query().Get("done"))
		}
		d.render(w, status, name, &view{Op: op, Nav: nav, Flash: flash, Data: data})
	}
}

// changer returns the signed-in operator sending a change, or answers r itself (signed out, or
// the key could not be read) and returns nil; nothing names what was not done ("changed").
func (d *dashboard) changer(w http.ResponseWriter, r *http.Request, nothing string) *operator {
	op, err := d.operator(r)
	if err != nil {
		d.fail(w, r, nil, err)
		return nil
	}
	if op == nil {
		d.sess.SignOut(w)
		d.refuse(w, nil, http.StatusUnauthorized, "You are signed out.", "Sign in again; nothing was "+nothing+".")
	}
	return op
}

// change serves a form that changes something: an admin operator's, with the session's CSRF
// token, with the key's Actor in the context (the audit trail's who).
func (d *dashboard) change(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxDashForm)
		op := d.changer(w, r, "changed")
		if op == nil {
			return
		}
		if err := r.ParseForm(); err != nil || !d.sess.CheckCSRF(r, op.Sess) {
			d.refuse(w, op, http.StatusForbidden, "This form is out of date or came from another site.", "Open the page again and send the form from there; nothing was changed.")
			return
		}
		if !op.Admin {
			d.refuse(w, op, http.StatusForbidden, "Your key may only read.", "Ask for a key of scope admin to change anything; nothing was changed.")
			return
		}
		r = r.WithContext(WithActor(r.Context(), op.Actor))
		name, status, data, flash := fn(w, r, op)
		if name == "" {
			return
		}
		d.render(w, status, name, &view{Op: op, Nav: navOf(name), Flash: flash, Data: data})
	}
}

func navOf(page string) string {
	if page == "member" {
		return "members"
	}
	return page
}

func (d *dashboard) render(w http.ResponseWriter, status int, name string, v *view) {
	web.Render(w, d.s.Logger, d.pages[name], status, "layout", v)
}

// refuse shows the error page with a refusal in words.
func (d *dashboard) refuse(w http.ResponseWriter, op *operator, status int, msg, hint string) {
	d.render(w, status, "error", &view{Op: op, Flash: &web.Flash{Title: "Not done.", Error: msg, Hint: hint}})
}

// fail shows an error of the hub (web.Refusal: an internal error is logged, not shown).
func (d *dashboard) fail(w http.ResponseWriter, r *http.Request, op *operator, err error) {
	f := web.Refusal(err)
	code := loyalty.ErrorCode(err)
	status := http.StatusInternalServerError
	switch code {
	case loyalty.ENOTFOUND:
		status = http.StatusNotFound
	case loyalty.EINVALID:
		status = http.StatusBadRequest
	case loyalty.EUNAVAILABLE:
		status = http.StatusServiceUnavailable
	default:
		if code == "" || code == loyalty.EINTERNAL {
			d.s.Logger.Error("dashboard", slog.String("path", r.URL.Path), slog.Any("err", err))
		} else {
			status = http.StatusConflict
		}
	}
	d.render(w, status, "error", &view{Op: op, Flash: f})
}

// done messages: a change redirects to its page with ?done=<code>, and the page says what was
// done. Only these fixed texts are shown: nothing of the URL reaches the page.
var doneTexts = map[string]string{
	"adjusted":      "The points were adjusted; the ledger below shows the adjustment.",
	"erased":        "The member's personal data was erased.",
	"links-revoked": "Every card link of the member made so far no longer works.",
	"published":     "The program was published as a new version.",
	"off":           "Switched off: stores refuse it from their next sync.",
	"on":            "Switched on again.",
	"resolved":      "The conflict was marked resolved.",
	"same":          "It was already in that state: nothing changed.",
}

func doneFlash(code string) *web.Flash {
	if t, ok := doneTexts[code]; ok {
		return &web.Flash{Title: "Done.", Text: t}
	}
	return nil
}

// redirect sends the browser to a page of the dashboard (path is always ours: no open redirect).
func redirect(w http.ResponseWriter, r *http.Request, path, done string) (string, int, any, *web.Flash) {
	if done != "" {
		path += "?done=" + url.QueryEscape(done)
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
	return "", 0, nil, nil
}

// Sign-in and sign-out.

type signinData struct {
	Error string
}

func (d *dashboard) signinPage(w http.ResponseWriter, r *http.Request) {
	if op, err := d.operator(r); err == nil && op != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	d.render(w, http.StatusOK, "signin", &view{Data: signinData{}})
}

// crossSite reports whether the browser says r came from another site (the sign-in form has no
// session to bind a CSRF token to: this stops another site signing a browser in).
func crossSite(r *http.Request) bool { return web.CrossSite(r) }

func (d *dashboard) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	refuse := func(status int, msg string) {
		d.render(w, status, "signin", &view{Data: signinData{Error: msg}})
	}
	if err := r.ParseForm(); err != nil || crossSite(r) {
		refuse(http.StatusForbidden, "This sign-in came from another site, or was too long.")
		return
	}
	key := strings.TrimSpace(r.PostFormValue("key"))
	if key == "" || len(key) > maxDashKey {
		refuse(http.StatusUnauthorized, "Type or paste your operator key.")
		return
	}
	a, err := d.s.authenticateSecret(r.Context(), key)
	switch {
	case loyalty.ErrorCode(err) == loyalty.EUNAUTHORIZED:
		refuse(http.StatusUnauthorized, "That key is not valid (unknown, mistyped or revoked).")
		return
	case err != nil:
		d.fail(w, r, nil, err)
		return
	case !operatorScope(a.Scope):
		refuse(http.StatusForbidden, "That key has scope "+string(a.Scope)+": the dashboard takes keys of scope admin or report.")
		return
	}
	subject := a.KeyID
	if a == ConfigActor {
		subject = d.config
	}
	d.sess.SignIn(w, r, subject)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (d *dashboard) signout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if crossSite(r) { // without a cookie (SameSite), another site's sign-out would delete it
		d.refuse(w, nil, http.StatusForbidden, "This form is out of date or came from another site.", "Open the page again.")
		return
	}
	if sess, ok := d.sess.Get(r); ok {
		if err := r.ParseForm(); err != nil || !d.sess.CheckCSRF(r, sess) {
			d.refuse(w, nil, http.StatusForbidden, "This form is out of date or came from another site.", "Open the page again.")
			return
		}
		if err := d.s.Hub.EndDashboardSession(r.Context(), sess.ID, sess.Expires); err != nil {
			d.fail(w, r, nil, err)
			return
		}
	}
	d.sess.SignOut(w)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// Form helpers.

// field returns a query value (GET) or a form's value (POST) trimmed, refusing one too long or not UTF-8.
func field(r *http.Request, name string, max int) (string, error) {
	v := r.URL.Query().Get(name) // a search
	if r.Method == http.MethodPost {
		v = r.PostFormValue(name) // a form's field: never from the URL
	}
	v = strings.TrimSpace(v)
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > max || strings.ContainsFunc(v, func(c rune) bool { return c < 0x20 && c != '\t' }) {
		return "", loyalty.Errorf(loyalty.EINVALID, "%s must be text of at most %d characters", name, max)
	}
	return v, nil
}

// newFormID returns a random id a form carries, so that sending it twice does one thing.
func newFormID() string { return "dash-" + strings.ToLower(rand.Text()[:16]) }

// today returns the start of the hub's current UTC day, and of the next.
func today(now time.Time) (time.Time, time.Time) {
	d := now.UTC().Truncate(24 * time.Hour)
	return d, d.Add(24 * time.Hour)
}
