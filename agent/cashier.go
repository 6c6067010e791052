// The cashier's till page: server-rendered pages on the POS listener (docs/PAGES.md, "The
// cashier's till page"). They call the same Agent methods as the POS JSON API (Scan, Earn,
// Redeem, Reverse, Sale, Status); this file only reads forms, bounds them and shows answers.

package agent

import (
	"cmp"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base32"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

//go:embed pages
var pageFiles embed.FS

const (
	tillCookie   = "loyalty_till"
	tillTTL      = 12 * time.Hour // a shift
	tillSubject  = "cashier"
	tillTerminal = "till-page" // the terminal the page's deltas carry, so reports can tell them apart
	maxTillForm  = 32 << 10    // bytes of a form body: a QR token and a few lines fit many times
	tillLines    = 4           // line rows of the sale form
)

// till serves the cashier's pages of one Server.
type till struct {
	s       *Server
	a       *Agent
	sess    *web.Sessions
	noToken bool // the agent has no POS token: sign-in is a button (loopback only, CheckExposure)
	signin  *template.Template
	page    *template.Template
}

// throttled reports whether sign-ins from the address of r are refused for now (wrongTokens:
// too many wrong tokens from it, or from every address together); failed records a wrong token
// from it.
func (t *till) throttled(r *http.Request, now time.Time, failed bool) bool {
	fromAddr, fromAll := t.s.wrongSignIn.throttled(r, now, failed)
	return fromAddr || fromAll
}

// newTill builds the pages for s. The session key is derived from the POS token, so sessions
// outlive a restart and end when the token changes; without a token it is random per process.
func (s *Server) newTill() *till {
	var key []byte
	if s.POSToken != "" {
		key = web.Key([]byte(s.POSToken), "cashier sessions")
	} else {
		key = make([]byte, 32)
		rand.Read(key)
	}
	signer, err := web.NewSigner(key)
	if err != nil {
		panic(err) // a 32-byte key is always accepted
	}
	funcs := template.FuncMap{"signed": signedPoints}
	return &till{
		s: s, a: s.Agent, noToken: s.POSToken == "",
		sess:   &web.Sessions{Signer: signer, Cookie: tillCookie, TTL: tillTTL},
		signin: web.Parse(pageFiles, funcs, "pages/signin.html", "pages/parts.html"),
		page:   web.Parse(pageFiles, funcs, "pages/till.html", "pages/parts.html"),
	}
}

func (s *Server) now() time.Time {
	if s.Agent != nil && s.Agent.Now != nil {
		return s.Agent.Now()
	}
	return time.Now()
}

// pageRoutes registers the till pages on mux and returns their patterns: requests they match
// are served without the POS API's Bearer check (the pages have their own sign-in), still behind
// the Host check.
func (s *Server) pageRoutes(mux *http.ServeMux) map[string]bool {
	t := s.newTill()
	pages := map[string]bool{}
	add := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, web.Headers(h))
		pages[pattern] = true
	}
	add("GET /static/", web.Static().ServeHTTP)
	add("GET /cashier.js", t.script)
	add("GET /{$}", t.index)
	add("POST /signin", t.doSignIn)
	add("POST /signout", t.doSignOut)
	add("GET /till/status", t.status)
	add("POST /scan", t.post(t.scan))
	add("POST /earn", t.post(t.earn))
	add("POST /redeem", t.post(t.redeem))
	add("POST /refund", t.post(t.refund))
	add("POST /sale", t.post(t.sale))
	return pages
}

// pagesOr serves a request that matches a page route with mux, and any other with api.
func pagesOr(mux *http.ServeMux, pages map[string]bool, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, p := mux.Handler(r); pages[p] {
			mux.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

func (t *till) script(w http.ResponseWriter, r *http.Request) {
	b, _ := pageFiles.ReadFile("pages/cashier.js")
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(b)
}

// --- views ---------------------------------------------------------------------------------

// view is what till.html renders: the scan field always, a member's card after a scan, a
// receipt after an action, and the forms with their fresh order ids.
type view struct {
	CSRF     string
	Store    string
	NoToken  bool
	Banner   banner
	Flash    *web.Flash
	Receipt  *receipt
	Member   *memberCard
	QR       string // the scanned member code, carried by the card's forms
	Currency string
	// AmountExample is an amount as the till reads it in the program's currency ("12.99",
	// "1,299" for yen): the amount field's placeholder.
	AmountExample string
	Currencies    []string
	Categories    []string
	Lines         []lineForm
	// Fresh idempotency keys, made when the form is rendered: a double submit or a re-post
	// sends the same one, and the agent answers it once.
	EarnOrder, RedeemOrder, VoucherOrder, SaleOrder, RefundID string
	// Values typed into a form that was refused, shown again with the field in error.
	Form   map[string]string
	Errors map[string]string
	Open   string // the section to show open after a refusal: "sale", "refund", "voucher"
	// Nonce is the scan form's: the card shown for it carries order ids derived from it and the
	// code scanned (formIDs), so the same scan sent again (Back, then Reload) shows the same ids.
	Nonce  string
	status int // the HTTP status of a refusal
	sess   web.Session
}

type lineForm struct {
	N                          int
	SKU, Category, Qty, Amount string
}

type banner struct {
	Offline    bool
	Connecting bool
	Text       string
}

type memberCard struct {
	Name     string
	Known    bool
	Balance  int64
	Pending  int64
	Offline  bool
	Tier     string
	NextTier string
	NextAt   string // what reaching it takes, in words
	Step     int    // the tier's place on the ladder, 1-based
	Steps    int
	Percent  int // of the ladder, for the bar
	Rewards  []rewardRow
	Punches  []punchRow
}

type rewardRow struct {
	ID, Name, What string
	Cost           int64
	MinOrder       string // the smallest order it takes ("50.00 EUR"), if any
}

type punchRow struct {
	Name, Reward string
	Have, Buy    int64
	Percent      int
}

type receipt struct {
	Title        string
	OrderID      string
	Points       int64
	ShowPoints   bool
	Balance      int64
	ShowBalance  bool
	Reward       string
	RewardWhat   string
	PunchRewards []string
	Breakdown    string
	Amount       string
	Offline      bool
	CheckedBy    string
	Refundable   bool // say to keep the order number
	Replayed     bool // the answer to a form sent again: nothing new was recorded
}

// newView starts a page for a signed-in cashier, with fresh order ids.
func (t *till) newView(r *http.Request, sess web.Session) *view {
	v := &view{CSRF: t.sess.CSRF(sess), Store: t.a.StoreID, NoToken: t.noToken,
		EarnOrder: newOrderID(), RedeemOrder: newOrderID(), VoucherOrder: newOrderID(), SaleOrder: newOrderID(), RefundID: newOrderID(),
		Nonce: newOrderID()[2:], Form: map[string]string{}, Errors: map[string]string{}, sess: sess}
	p, err := t.program(r)
	v.AmountExample = web.MoneyIn(1299, 2)
	if err == nil {
		v.Currency = p.Currency
		v.AmountExample = web.MoneyOf(1299, p.Currency)
		v.Currencies = append([]string{p.Currency}, p.EarnCurrencies()...)
		v.Currencies = uniq(v.Currencies)
		for _, c := range p.CategoryRates {
			if c.Category != "" {
				v.Categories = append(v.Categories, c.Category)
			}
		}
		for _, c := range p.PunchCards {
			if c.Category != "" {
				v.Categories = append(v.Categories, c.Category)
			}
		}
		v.Categories = uniq(v.Categories)
	}
	for i := range tillLines {
		v.Lines = append(v.Lines, lineForm{N: i + 1})
	}
	return v
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// formIDs gives v the order ids of the card shown for a scan form's nonce and code: the same
// for the same scan sent again (a browser's Back and Reload re-sends the scan, and must not
// make a sale rung up twice two sales), different for another code or another sign-in.
func (t *till) formIDs(v *view, nonce, code string) {
	if len(nonce) != 12 || strings.Trim(nonce, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
		return // not a nonce this page made: the fresh ids stay
	}
	t.deriveIDs(v, "till order", nonce, code)
}

// tillOrderFields are the forms' hidden order ids, one to a form.
var tillOrderFields = []string{"earn_order", "redeem_order", "voucher_order", "sale_order", "refund_id"}

// nextIDs gives v, the page that answers an action's form, order ids derived from the form's
// own: the same form sent again (Back and "send again", Reload), answered from what was
// recorded the first time, shows the card with the same ids as the first time, so that a sale
// rung up on that card again is the same sale, not a second one. A form without an order id
// keeps the fresh ones.
func (t *till) nextIDs(r *http.Request, v *view) {
	seed := []string{r.URL.Path}
	for _, name := range tillOrderFields {
		if s := r.PostFormValue(name); s != "" && loyalty.ValidateOrderID(s) == nil {
			seed = append(seed, name+"="+s)
		}
	}
	if len(seed) > 1 {
		t.deriveIDs(v, append([]string{"till next"}, seed...)...)
	}
}

// deriveIDs sets v's order ids from the session and parts, one for each form.
func (t *till) deriveIDs(v *view, parts ...string) {
	id := func(purpose string) string {
		return "T-" + base32.StdEncoding.EncodeToString(t.sess.Derive(v.sess, append(parts, purpose)...))[:12]
	}
	v.EarnOrder, v.RedeemOrder, v.VoucherOrder, v.SaleOrder, v.RefundID = id("earn"), id("redeem"), id("voucher"), id("sale"), id("refund")
}

// tillOrderNumber reads an order number typed from a till's receipt: the till's own ids (T- and
// 12 base32 characters) are upper case, so one typed in lower case is taken as the receipt's.
// Other order ids (a POS's) are taken as typed: their case may matter.
func tillOrderNumber(s string) string {
	if len(s) == 14 && (s[0] == 't' || s[0] == 'T') && s[1] == '-' {
		up := strings.ToUpper(s)
		if strings.Trim(up[2:], "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == "" {
			return up
		}
	}
	return s
}

// newOrderID returns a fresh order id for a form: short enough to read out for a refund, random
// enough (60 bits) never to meet another.
func newOrderID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "T-" + base32.StdEncoding.EncodeToString(b)[:12]
}

func (t *till) program(r *http.Request) (loyalty.Program, error) {
	var p loyalty.Program
	err := t.a.Store.View(r.Context(), func(tx Tx) error {
		var err error
		p, err = tx.Program(r.Context())
		return err
	})
	return p, err
}

// banner reads Agent.Status: offline, how many sales wait for head office, and since when the
// store has not heard from it.
func (t *till) banner(r *http.Request) banner {
	st, err := t.a.Status(r.Context())
	if err != nil {
		t.log().Error("till page: status", slog.Any("err", err))
		return banner{Offline: true, Text: "This till cannot read its own records. Call support."}
	}
	if st.Online {
		return banner{}
	}
	var off time.Duration
	var loc *time.Location
	t.a.Store.View(r.Context(), func(tx Tx) error {
		var err error
		if off, err = tx.OfflineFor(r.Context()); err != nil {
			return err
		}
		loc, err = t.a.location(r.Context(), tx)
		return err
	})
	if loc == nil {
		loc = time.UTC
	}
	waiting := "Nothing is waiting to be sent."
	switch {
	case st.Outbox == 1:
		waiting = "1 change is waiting to be sent."
	case st.Outbox > 1:
		waiting = web.Group(st.Outbox) + " changes are waiting to be sent."
	}
	if st.Sessions == 0 && st.LastError == "" {
		return banner{Connecting: true, Text: "Connecting to head office… Sales and rewards work meanwhile. " + waiting}
	}
	since := "It has not reached head office yet."
	if off < 10*365*24*time.Hour {
		at := t.s.now().Add(-off).In(loc)
		since = "Last in touch with head office at " + at.Format("15:04") + " (" + ago(off) + " ago)."
		if t.s.now().In(loc).YearDay() != at.YearDay() {
			since = "Last in touch with head office on " + at.Format("Mon 2 Jan 15:04") + " (" + ago(off) + " ago)."
		}
	}
	return banner{Offline: true, Text: "OFFLINE: this store cannot reach head office. " + since +
		" Sales and rewards still work and are kept here; " + waiting + " They are sent when the line is back."}
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "less than a minute"
	case d < 2*time.Minute:
		return "1 minute"
	case d < time.Hour:
		return web.Group(int64(d/time.Minute)) + " minutes"
	case d < 2*time.Hour:
		return "1 hour"
	case d < 48*time.Hour:
		return web.Group(int64(d/time.Hour)) + " hours"
	}
	return web.Group(int64(d/(24*time.Hour))) + " days"
}

func (t *till) log() *slog.Logger { return t.s.logger() }

// render shows the till page, with the banner as the store is now (after the page's action).
func (t *till) render(w http.ResponseWriter, r *http.Request, status int, v *view) {
	v.Banner = t.banner(r)
	web.Render(w, t.log(), t.page, status, "layout", v)
}

type signinView struct {
	NoToken bool
	Store   string
	Flash   *web.Flash
}

func (t *till) renderSignIn(w http.ResponseWriter, status int, f *web.Flash) {
	web.Render(w, t.log(), t.signin, status, "layout", signinView{NoToken: t.noToken, Store: t.a.StoreID, Flash: f})
}

// --- handlers ------------------------------------------------------------------------------

func (t *till) index(w http.ResponseWriter, r *http.Request) {
	sess, ok := t.sess.Get(r)
	if !ok {
		t.renderSignIn(w, http.StatusOK, nil)
		return
	}
	t.render(w, r, http.StatusOK, t.newView(r, sess))
}

// sameSite reports whether a browser says the request comes from this page (Sec-Fetch-Site,
// Origin), for the sign-in form, which has no session to bind a CSRF token to yet.
func sameSite(r *http.Request) bool { return !web.CrossSite(r) }

func (t *till) doSignIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTillForm)
	if err := r.ParseForm(); err != nil || !sameSite(r) {
		t.renderSignIn(w, http.StatusForbidden, &web.Flash{Title: "Not signed in.", Error: "The sign-in did not come from this page.", Hint: "Open the till page and sign in there."})
		return
	}
	if !t.noToken {
		if t.throttled(r, time.Now(), false) {
			w.Header().Set("Retry-After", "60")
			t.renderSignIn(w, http.StatusTooManyRequests, &web.Flash{Title: "Not signed in.", Error: "Too many wrong tokens were typed here in the last minute.",
				Hint: "Wait a minute, then type the token again. If nobody here typed them, tell a manager."})
			return
		}
		got := r.PostFormValue("token")
		if len(got) > 1024 || subtle.ConstantTimeCompare([]byte(got), []byte(t.s.POSToken)) != 1 {
			t.throttled(r, time.Now(), true)
			t.log().Warn("till page: a sign-in with a wrong POS token", slog.String("remote", r.RemoteAddr))
			t.renderSignIn(w, http.StatusUnauthorized, &web.Flash{Title: "Not signed in.", Error: "That is not this till's token.",
				Hint: "Type the POS token again (it is in the agent's configuration, pos_token), or ask a manager."})
			return
		}
	}
	t.sess.SignIn(w, r, tillSubject)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (t *till) doSignOut(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTillForm)
	if !sameSite(r) { // without a cookie (SameSite), another site's sign-out would delete it
		t.renderSignIn(w, http.StatusForbidden, &web.Flash{Title: "Not signed out.", Error: "The sign-out did not come from this page."})
		return
	}
	sess, ok := t.sess.Get(r)
	if ok && (r.ParseForm() != nil || !t.sess.CheckCSRF(r, sess)) {
		t.refuseForm(w, r, sess)
		return
	}
	t.sess.SignOut(w)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// status answers the page's script, which keeps the offline banner current without a reload.
func (t *till) status(w http.ResponseWriter, r *http.Request) {
	if _, ok := t.sess.Get(r); !ok {
		jsonapi.Error(w, r, t.log(), loyalty.Errorf(loyalty.EUNAUTHORIZED, "sign in on the till page"))
		return
	}
	b := t.banner(r)
	jsonapi.Write(w, http.StatusOK, map[string]any{"offline": b.Offline || b.Connecting, "connecting": b.Connecting, "text": b.Text})
}

// post wraps an action: a signed-in session, a bounded form, and the CSRF token.
func (t *till) post(fn func(http.ResponseWriter, *http.Request, *view)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxTillForm)
		sess, ok := t.sess.Get(r)
		if !ok {
			t.renderSignIn(w, http.StatusUnauthorized, &web.Flash{Title: "Not done: you are signed out.", Error: "The shift's sign-in has ended, or this till's token was changed.",
				Hint: "Sign in again, then repeat the sale."})
			return
		}
		if err := r.ParseForm(); err != nil {
			v := t.newView(r, sess)
			v.Flash = &web.Flash{Title: "Not done.", Error: "The form was too large.", Hint: "Shorten what you typed and try again."}
			t.render(w, r, http.StatusRequestEntityTooLarge, v)
			return
		}
		if !t.sess.CheckCSRF(r, sess) {
			t.refuseForm(w, r, sess)
			return
		}
		v := t.newView(r, sess)
		t.nextIDs(r, v)
		fn(w, r, v)
	}
}

func (t *till) refuseForm(w http.ResponseWriter, r *http.Request, sess web.Session) {
	t.log().Warn("till page: a form without this page's CSRF token, or from another site", slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr))
	v := t.newView(r, sess)
	v.Flash = &web.Flash{Title: "Not done.", Error: "That form did not come from this till page.", Hint: "Nothing was recorded. Use the till page's own forms."}
	t.render(w, r, http.StatusForbidden, v)
}

// field returns a form value, trimmed; longer than max runes (or not UTF-8) is an error.
func field(r *http.Request, name string, max int, v *view, label string) (string, bool) {
	s := strings.TrimSpace(r.PostFormValue(name))
	if !loyalty.ValidText(s, max) {
		v.Errors[name] = label + " is too long."
		return "", false
	}
	v.Form[name] = s
	return s, true
}

// scanned reads and checks the member code of a form: present and of a sane length.
func scanned(r *http.Request, v *view) (string, bool) {
	code := strings.TrimSpace(r.PostFormValue("qr"))
	switch {
	case code == "":
		v.Errors["qr"] = "Scan the member's card first."
	case len(code) > qr.MaxTokenLength || !loyalty.ValidText(code, qr.MaxTokenLength):
		v.Errors["qr"] = "That is not a member card's code: it is far too long."
	default:
		return code, true
	}
	v.Form["qr"] = ""
	return "", false
}

func (t *till) scan(w http.ResponseWriter, r *http.Request, v *view) {
	code, ok := scanned(r, v)
	if !ok {
		v.Flash = &web.Flash{Title: "Check the input.", Error: v.Errors["qr"], Hint: "Put the cursor in the scan field and scan the card, or type its code."}
		t.render(w, r, http.StatusBadRequest, v)
		return
	}
	t.formIDs(v, r.PostFormValue("nonce"), code)
	if !t.showMember(r, v, code) {
		t.render(w, r, v.status, v)
		return
	}
	t.render(w, r, http.StatusOK, v)
}

// showMember scans code with Agent.Scan and puts the member's card on v; on a refusal it puts
// the refusal on v and returns false.
func (t *till) showMember(r *http.Request, v *view, code string) bool {
	res, err := t.a.Scan(r.Context(), ScanRequest{QR: code})
	if err != nil {
		v.Flash, v.status = t.refusal(err), jsonapi.HTTPStatus(err)
		v.Form["qr"] = ""
		return false
	}
	v.QR = code
	p, _ := t.program(r)
	v.Member = memberCardOf(r, t, res, &p)
	return true
}

func memberCardOf(r *http.Request, t *till, res ScanResult, p *loyalty.Program) *memberCard {
	m := res.Member
	c := &memberCard{Name: m.Name, Known: res.Known, Balance: res.Balance, Pending: res.Pending, Offline: res.Offline}
	if p.Tiers != nil && len(p.Tiers.Tiers) > 0 {
		tiers := p.Tiers.Tiers
		at := 0
		for i, tr := range tiers {
			if tr.ID == m.Tier {
				at = i
			}
		}
		c.Tier, c.Step, c.Steps = tiers[at].Name, at+1, len(tiers)
		if len(tiers) > 1 {
			c.Percent = 100 * at / (len(tiers) - 1)
		}
		if at+1 < len(tiers) {
			next := tiers[at+1]
			c.NextTier = next.Name
			amount := web.Group(next.Threshold) + " points earned"
			if p.Tiers.Basis == loyalty.BasisSpend {
				amount = moneyIn(next.Threshold, p.Currency) + " spent"
			}
			window := map[string]string{loyalty.WindowCalendar: " in a calendar year", loyalty.WindowRolling12M: " in 12 months"}[p.Tiers.Window]
			c.NextAt = "from " + amount + window
		}
	}
	for _, rw := range res.Affordable {
		if len(rw.Tiers) > 0 && !slices.Contains(rw.Tiers, m.Tier) {
			continue // not for this member's tier (as this store knows it): it would be refused
		}
		row := rewardRow{ID: rw.ID, Name: rw.Name, Cost: rw.PointsCost, What: rewardWhat(rw, p.Currency)}
		if rw.MinOrder > 0 {
			row.MinOrder = moneyIn(rw.MinOrder, p.Currency)
		}
		c.Rewards = append(c.Rewards, row)
	}
	if len(p.PunchCards) > 0 {
		punches := map[string]int64{}
		for k, n := range m.Punches {
			punches[k] += n
		}
		t.a.Store.View(r.Context(), func(tx Tx) error { // this store's punches the hub has not confirmed yet
			pend, err := tx.PendingPunches(r.Context(), m.ID)
			for k, n := range pend {
				punches[k] += n
			}
			return err
		})
		for _, pc := range p.PunchCards {
			have := max(punches[pc.ID], 0) % pc.Buy
			reward := pc.Reward
			if rw, err := p.Reward(pc.Reward); err == nil {
				reward = rw.Name
			}
			c.Punches = append(c.Punches, punchRow{Name: pc.Name, Reward: reward, Have: have, Buy: pc.Buy, Percent: int(100 * have / pc.Buy)})
		}
	}
	return c
}

// rewardWhat says what the cashier gives for a reward.
func rewardWhat(r loyalty.Reward, currency string) string {
	switch r.Kind {
	case "amount_off":
		return moneyIn(r.Value, currency) + " off the order"
	case "percent_off":
		s := web.Group(r.Value) + "% off the order"
		if r.MaxValue > 0 {
			s += " (at most " + moneyIn(r.MaxValue, currency) + ")"
		}
		return s
	case "free_product":
		return "the product, free"
	case "free_shipping":
		return "free shipping"
	case "gift_card":
		return "a gift card of " + moneyIn(r.Value, currency)
	}
	return r.Kind
}

// money parses an amount typed by a cashier in major units of a currency with digits decimals
// (loyalty.CurrencyDigits: "12.99", "12,99", "12" for euros; "2,500" for yen) into minor units,
// bounded by loyalty.MaxAmount. Empty is (0, true).
func money(s string, digits int) (int64, bool) {
	s = strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	if s == "" {
		return 0, true
	}
	if len(s) > 24 {
		return 0, false
	}
	whole, frac, ok := splitAmount(s, digits)
	if !ok || whole == "" || len(whole)+digits > 15 || len(frac) > digits {
		return 0, false
	}
	var n int64
	for _, c := range whole + frac + strings.Repeat("0", digits-len(frac)) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if n > loyalty.MaxAmount {
		return 0, false
	}
	return n, true
}

// splitAmount splits an amount as people and the till's own receipts write it into its whole
// digits and its decimals, for a currency with digits decimals: "1234.5", "1234,50", "1,234.56"
// (as web.MoneyIn shows it), "1.234,56". With both a comma and a point, the last one is the
// decimal mark and the other separates thousands. With one of them, it separates thousands when
// it stands more than once ("1.000.000") or, in a currency without decimals, once with three
// digits after it ("2,500" yen); it is the decimal mark when it stands once with at most digits
// digits after it, but not three ("12,99"; "1.25" dinars). Else it is refused: "1,999" euros (a
// thousand, or a mistyped 1.99?) and "1.250" dinars (1.25, or 1,250?) are not guessed. Groups of
// thousands have three digits.
func splitAmount(s string, digits int) (whole, frac string, ok bool) {
	dec := -1
	comma, point := strings.LastIndexByte(s, ','), strings.LastIndexByte(s, '.')
	switch {
	case comma >= 0 && point >= 0:
		dec = max(comma, point)
	case comma >= 0 || point >= 0:
		i, mark := max(comma, point), s[max(comma, point)]
		switch once, after := strings.Count(s, string(mark)) == 1, len(s)-i-1; {
		case once && after == 3 && digits == 0: // "2,500" yen: thousands
		case once && after == 3:
			return "", "", false // "1.999": 1999, or 1.99 mistyped (or 1.999 dinars)? Not guessed.
		case once && after <= digits:
			dec = i
		case once:
			return "", "", false
		}
	}
	if dec >= 0 {
		whole, frac = s[:dec], s[dec+1:]
		if frac == "" {
			return "", "", false
		}
	} else {
		whole = s
	}
	groups := strings.FieldsFunc(whole, func(r rune) bool { return r == ',' || r == '.' })
	if len(groups) > 1 || strings.ContainsAny(whole, ",.") {
		// Thousands: one separator kind only, between groups of three after the first.
		if strings.ContainsRune(whole, ',') && strings.ContainsRune(whole, '.') || strings.Count(whole, ",")+strings.Count(whole, ".") != len(groups)-1 {
			return "", "", false
		}
		for i, g := range groups {
			if len(g) == 0 || len(g) > 3 || (i > 0 && len(g) != 3) {
				return "", "", false
			}
		}
		whole = strings.Join(groups, "")
	}
	return whole, frac, true
}

func count(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 7 {
		return 0, s == ""
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n <= loyalty.MaxQty
}

// amountField reads a money field of currency into v; required says empty is an error.
func amountField(r *http.Request, name, label, currency string, required bool, v *view) (int64, bool) {
	raw := strings.TrimSpace(r.PostFormValue(name))
	if len(raw) > 40 {
		raw = raw[:40]
	}
	v.Form[name] = raw
	digits := loyalty.CurrencyDigits(currency)
	n, ok := money(raw, digits)
	switch {
	case !ok:
		v.Errors[name] = label + ": type an amount like " + web.MoneyIn(1299, digits) + ", at most " + web.MoneyIn(loyalty.MaxAmount, digits) + "."
	case required && n == 0:
		v.Errors[name] = label + " is needed, more than " + web.MoneyIn(0, digits) + "."
		ok = false
	}
	return n, ok
}

// moneyIn shows an amount in minor units of currency with its code: "12.99 EUR", "2,500 JPY".
func moneyIn(minor int64, currency string) string {
	return web.MoneyOf(minor, currency) + " " + currency
}

// currencyField reads the sale's currency: one the program earns in.
func currencyField(r *http.Request, v *view) (string, bool) {
	c := strings.TrimSpace(r.PostFormValue("currency"))
	if c == "" {
		c = v.Currency
	}
	for _, x := range v.Currencies {
		if x == c {
			v.Form["currency"] = c
			return c, true
		}
	}
	v.Errors["currency"] = "Choose one of the currencies listed."
	return "", false
}

// invalid shows the field errors of a refused form and the member's card again.
func (t *till) invalid(w http.ResponseWriter, r *http.Request, v *view, open string) {
	var msgs []string
	for _, k := range []string{"qr", "amount", "currency", "lines", "order_amount", "voucher", "order", "refund_amount", "sale_amount", "reward"} {
		if e := v.Errors[k]; e != "" {
			msgs = append(msgs, e)
		}
	}
	for i := range tillLines {
		for _, k := range []string{"sku", "category", "qty", "amount"} {
			if e := v.Errors[lineKey(k, i+1)]; e != "" {
				msgs = append(msgs, e)
			}
		}
	}
	v.Flash = &web.Flash{Title: "Check the input.", Error: strings.Join(msgs, " "), Hint: "Nothing was recorded. Correct the field and send it again."}
	t.keepOrders(r, v)
	v.Open = open
	if code := v.Form["qr"]; code != "" && v.Member == nil {
		flash := v.Flash
		t.showMember(r, v, code)
		v.Flash = flash
	}
	t.render(w, r, http.StatusBadRequest, v)
}

// keepOrders keeps the order ids of a refused form: nothing was recorded under them, and a
// corrected form sent again is still the same sale.
func (t *till) keepOrders(r *http.Request, v *view) {
	for name, dst := range map[string]*string{"earn_order": &v.EarnOrder, "redeem_order": &v.RedeemOrder,
		"voucher_order": &v.VoucherOrder, "sale_order": &v.SaleOrder, "refund_id": &v.RefundID} {
		if s := r.PostFormValue(name); s != "" && loyalty.ValidateOrderID(s) == nil {
			*dst = s
		}
	}
}

// orderField reads a form's hidden order id, made when the form was rendered.
func orderField(r *http.Request, name string, v *view) (string, bool) {
	id := r.PostFormValue(name)
	if loyalty.ValidateOrderID(id) != nil {
		v.Errors["order"] = "This form is damaged or out of date: nothing was recorded. Reload the page and try again."
		return "", false
	}
	return id, true
}

func lineKey(k string, n int) string { return "line_" + k + "_" + string(rune('0'+n)) }

func (t *till) earn(w http.ResponseWriter, r *http.Request, v *view) {
	code, okQR := scanned(r, v)
	v.Form["qr"] = code
	order, okOrder := orderField(r, "earn_order", v)
	cur, okCur := currencyField(r, v)
	amount, ok := amountField(r, "amount", "Total", cmp.Or(cur, v.Currency), false, v)
	ok = ok && okCur && okQR && okOrder
	var lines []loyalty.Line
	var sum int64
	for i := range tillLines {
		n := i + 1
		sku, ok1 := field(r, lineKey("sku", n), loyalty.MaxIDLength, v, "Line "+string(rune('0'+n))+": the product code")
		cat, ok2 := field(r, lineKey("category", n), loyalty.MaxIDLength, v, "Line "+string(rune('0'+n))+": the category")
		qtyRaw, ok3 := field(r, lineKey("qty", n), 10, v, "Line "+string(rune('0'+n))+": the quantity")
		amtRaw := strings.TrimSpace(r.PostFormValue(lineKey("amount", n)))
		if !ok1 || !ok2 || !ok3 {
			ok = false
			continue
		}
		if sku == "" && cat == "" && qtyRaw == "" && amtRaw == "" {
			continue
		}
		qty, okq := count(qtyRaw)
		if !okq {
			v.Errors[lineKey("qty", n)] = "Line " + string(rune('0'+n)) + ": the quantity is a whole number up to " + web.Group(loyalty.MaxQty) + "."
			ok = false
		}
		if qtyRaw == "" {
			qty = 1
		}
		la, oka := amountField(r, lineKey("amount", n), "Line "+string(rune('0'+n))+": the amount", cmp.Or(cur, v.Currency), true, v)
		if !oka {
			ok = false
			continue
		}
		sum += la
		lines = append(lines, loyalty.Line{SKU: sku, Category: cat, Qty: qty, Amount: la})
	}
	if ok && len(lines) > 0 {
		if amount == 0 {
			amount = sum
			v.Form["amount"] = web.MoneyOf(sum, cur)
		} else if amount != sum {
			v.Errors["lines"] = "The lines add up to " + web.MoneyOf(sum, cur) + " but the total is " + web.MoneyOf(amount, cur) + ": correct one of them, or leave the total empty."
			ok = false
		}
	}
	if ok && amount == 0 {
		v.Errors["amount"] = "Total is needed, more than " + web.MoneyOf(0, cur) + " (or fill in the lines)."
		ok = false
	}
	if !ok {
		t.invalid(w, r, v, "")
		return
	}
	rc, err := t.a.Earn(r.Context(), loyalty.EarnRequest{OrderID: order, Terminal: tillTerminal, QR: code, Amount: loyalty.Money(amount), Currency: cur, Lines: lines})
	if err != nil {
		if loyalty.ErrorCode(err) == loyalty.EBUDGET { // a points budget: said as the till's own case (refusal)
			err = loyalty.Errorf(loyalty.EBUDGET, "%s%s", earnBudgetRefused, loyalty.ErrorMessage(err))
		}
		t.refused(w, r, v, err, "")
		return
	}
	v.Receipt = &receipt{Title: "Points earned", OrderID: rc.OrderID, Points: rc.Points, ShowPoints: true, Balance: rc.Balance, ShowBalance: true,
		Amount: moneyIn(amount, cur), Offline: rc.Offline, CheckedBy: rc.CheckedBy, Refundable: true, Replayed: rc.Replayed}
	if rc.Earn != nil && (rc.Earn.TierBonus != 0 || rc.Earn.CampaignBonus != 0) {
		v.Receipt.Breakdown = web.Group(rc.Earn.Base) + " for the sale"
		if rc.Earn.TierBonus != 0 {
			v.Receipt.Breakdown += ", " + signedPoints(rc.Earn.TierBonus) + " tier bonus"
		}
		if rc.Earn.CampaignBonus != 0 {
			v.Receipt.Breakdown += ", " + signedPoints(rc.Earn.CampaignBonus) + " campaign bonus"
		}
	}
	for _, pr := range rc.PunchRewards {
		v.Receipt.PunchRewards = append(v.Receipt.PunchRewards, pr.Name)
	}
	t.done(w, r, v, code)
}

// done shows a receipt, with the member's card as it is now (new balance, new order ids) when
// the member's code still scans.
func (t *till) done(w http.ResponseWriter, r *http.Request, v *view, code string) {
	v.Form = map[string]string{}
	if code != "" {
		res, err := t.a.Scan(r.Context(), ScanRequest{QR: code})
		if err == nil {
			p, _ := t.program(r)
			v.QR, v.Member = code, memberCardOf(r, t, res, &p)
		}
	}
	t.render(w, r, http.StatusOK, v)
}

func (t *till) redeem(w http.ResponseWriter, r *http.Request, v *view) {
	orderAmount, ok := amountField(r, "order_amount", "Order total", v.Currency, false, v)
	voucher := strings.TrimSpace(r.PostFormValue("voucher"))
	req := loyalty.RedeemRequest{Terminal: tillTerminal, OrderAmount: loyalty.Money(orderAmount)}
	var code string
	if r.PostFormValue("use") == "voucher" {
		var okOrder bool
		req.OrderID, okOrder = orderField(r, "voucher_order", v)
		ok = ok && okOrder
		if voucher == "" || len(voucher) > qr.MaxTokenLength || !loyalty.ValidText(voucher, qr.MaxTokenLength) {
			v.Errors["voucher"] = "Scan the voucher's code, or type it: a voucher code is at most " + web.Group(qr.MaxTokenLength) + " characters."
			voucher = ""
			ok = false
		}
		v.Form["voucher"] = voucher
		req.Voucher = voucher
		if c := strings.TrimSpace(r.PostFormValue("qr")); c != "" && len(c) <= qr.MaxTokenLength {
			code = c // the card of the member the voucher was used for, to show again
			v.Form["qr"] = c
		}
	} else {
		var okQR, okOrder, okReward bool
		code, okQR = scanned(r, v)
		v.Form["qr"] = code
		req.OrderID, okOrder = orderField(r, "redeem_order", v)
		req.QR = code
		req.RewardID, okReward = field(r, "reward", loyalty.MaxIDLength, v, "The reward's name")
		if okReward && req.RewardID == "" {
			v.Errors["reward"] = "Choose a reward."
			okReward = false
		}
		ok = ok && okQR && okOrder && okReward
	}
	if !ok {
		t.invalid(w, r, v, map[bool]string{true: "voucher"}[req.Voucher != "" || r.PostFormValue("use") == "voucher"])
		return
	}
	rc, err := t.a.Redeem(r.Context(), req)
	if err != nil {
		t.refused(w, r, v, err, map[bool]string{true: "voucher"}[req.Voucher != ""])
		return
	}
	v.Receipt = &receipt{Title: "Reward redeemed", OrderID: rc.OrderID, Points: rc.Points, ShowPoints: rc.Points != 0, Balance: rc.Balance, ShowBalance: true,
		Offline: rc.Offline, CheckedBy: rc.CheckedBy, Refundable: true, Replayed: rc.Replayed}
	if req.Voucher != "" {
		v.Receipt.Title = "Voucher used"
	}
	if rc.Reward != nil {
		p, _ := t.program(r)
		v.Receipt.Reward, v.Receipt.RewardWhat = rc.Reward.Name, rewardWhat(*rc.Reward, p.Currency)
	}
	t.done(w, r, v, code)
}

func (t *till) refund(w http.ResponseWriter, r *http.Request, v *view) {
	order, okOrder := field(r, "order", loyalty.MaxIDLength, v, "The order number")
	order = tillOrderNumber(order)
	cur := t.saleCurrency(r, order, v.Currency)
	amount, ok := amountField(r, "refund_amount", "Amount given back", cur, false, v)
	if ok && amount == 0 && v.Form["refund_amount"] != "" {
		// Only an empty field means the whole order: a typed 0 (a return with nothing given
		// back, a slip of the finger) undid every point and reward of the order, for good.
		v.Errors["refund_amount"] = "Amount given back: type what was given back, more than " + web.MoneyOf(0, cur) +
			"; or leave it empty to undo the whole order."
		ok = false
	}
	if okOrder && order == "" {
		v.Errors["order"] = "Type the order number from the receipt."
		okOrder = false
	}
	ok = ok && okOrder
	refundID := ""
	if amount > 0 {
		var okID bool
		refundID, okID = orderField(r, "refund_id", v)
		ok = ok && okID
	}
	if !ok {
		t.invalid(w, r, v, "refund")
		return
	}
	req := loyalty.ReverseRequest{OrderID: order, Terminal: tillTerminal}
	if amount > 0 {
		req.RefundID, req.Amount = refundID, loyalty.Money(amount)
	}
	rc, err := t.a.Reverse(r.Context(), req)
	if err != nil {
		t.refused(w, r, v, err, "refund")
		return
	}
	v.Receipt = &receipt{Title: "Order refunded", OrderID: order, Points: rc.Points, ShowPoints: true, Balance: rc.Balance, ShowBalance: rc.Member != "",
		Offline: rc.Offline, Replayed: rc.Replayed}
	if amount > 0 {
		v.Receipt.Title, v.Receipt.Amount = "Part of the order refunded", moneyIn(amount, cur)
	}
	t.done(w, r, v, "")
}

// saleCurrency returns the currency of order's sale at this store, in which a partial refund's
// amount is given back (and read); def when the store has no sale of that order.
func (t *till) saleCurrency(r *http.Request, order, def string) string {
	cur := def
	if order == "" {
		return cur
	}
	t.a.Store.View(r.Context(), func(tx Tx) error {
		ds, err := tx.OrderDeltas(r.Context(), order)
		for _, d := range ds {
			if (d.Kind == loyalty.KindEarn || d.Kind == loyalty.KindSale) && d.Currency != "" {
				cur = d.Currency
				break
			}
		}
		return err
	})
	return cur
}

func (t *till) sale(w http.ResponseWriter, r *http.Request, v *view) {
	cur, okCur := currencyField(r, v)
	amount, ok := amountField(r, "sale_amount", "Total", cmp.Or(cur, v.Currency), true, v)
	order, okOrder := orderField(r, "sale_order", v)
	if !ok || !okCur || !okOrder {
		t.invalid(w, r, v, "sale")
		return
	}
	rc, err := t.a.Sale(r.Context(), loyalty.SaleRequest{OrderID: order, Terminal: tillTerminal, Amount: loyalty.Money(amount), Currency: cur})
	if err != nil {
		t.refused(w, r, v, err, "sale")
		return
	}
	v.Receipt = &receipt{Title: "Sale recorded, without a member", OrderID: rc.OrderID, Amount: moneyIn(amount, cur), Offline: rc.Offline, Replayed: rc.Replayed}
	t.done(w, r, v, "")
}

// refused shows a refusal of the agent, with the member's card again when one was scanned.
func (t *till) refused(w http.ResponseWriter, r *http.Request, v *view, err error, open string) {
	f := t.refusal(err)
	if open == "voucher" && loyalty.ErrorCode(err) == loyalty.EINVALID && strings.Contains(loyalty.ErrorMessage(err), "needs an order of at least") {
		f.Hint = "Type the order total under the voucher code, then use the voucher again: it is still valid."
	}
	code := v.Form["qr"]
	t.keepOrders(r, v)
	v.Open = open
	if code != "" {
		t.showMember(r, v, code)
	}
	v.Flash = f
	t.render(w, r, jsonapi.HTTPStatus(err), v)
}

// earnBudgetRefused starts the message of an earn a points budget refused (refusal).
const earnBudgetRefused = "earn refused: "

// tillWordings are the refusals the till says in its own words: the first whose code matches and
// whose message holds says. An empty title, error or hint keeps web.Refusal's.
var tillWordings = []struct{ code, says, title, error, hint string }{
	{loyalty.EBUDGET, earnBudgetRefused, "", "No points can be given for this sale right now: this store's share of the chain's points budget is used up.",
		"Nothing was recorded. Ring the sale up as a sale without a member card, or try again once the store is online."},
	{loyalty.EBUDGET, "budget", "", "This store's share of the chain's budget for this reward is used up for now.", ""},
	{loyalty.EINVALID, " members only", "Not for this member.", "This reward is only for members of some tiers.", "Offer another reward."},
	{loyalty.EINVALID, "needs an order of at least", "", "This reward needs a larger order.",
		"Type the order total in the reward's field: the reward's line says the smallest order it takes."},
	{loyalty.EINVALID, "send order_amount", "", "This reward needs the order total.", "Type the order total in the reward's field, then choose the reward again."},
	{loyalty.EINVALID, "has only rewards at this store", "", "This order has only rewards, no sale with points: a part of it cannot be refunded.",
		"Leave the amount empty to undo the whole order: the member gets the rewards' points back."},
	{loyalty.EINVALID, "left of this sale", "", "That is more than is left of this sale to refund.",
		"Type at most what was paid and not refunded yet, or leave the amount empty to undo the whole order."},
	{loyalty.ECONFLICT, "a new sale needs a new order id", "", "This form was already used for a different sale.",
		"Nothing new was recorded. Scan the card again to start a new sale."},
	{loyalty.ECONFLICT, "already reversed by a different request", "", "This order was already refunded.", "The first refund stands; nothing was taken twice."},
	{loyalty.ECONFLICT, "was already made with a different amount", "", "This refund form was already used for a different amount.",
		"The first refund stands; nothing was taken twice. To refund more of the order, type its order number in the refund field again."},
	{loyalty.EINVALID, "this is a voucher", "This is a voucher, not a member card.", "A voucher is used on its own.", "Open \"Use a voucher\" below and scan it there."},
	{loyalty.EINVALID, "this is a member code", "This is a member card, not a voucher.", "A member card is scanned in the scan field.", "Scan it in the scan field at the top."},
	{loyalty.EUNAVAILABLE, "never synced", "", "", "This till has not reached head office yet. Check the network cable; cards work once it has."},
	{loyalty.EUNAVAILABLE, "", "", "", "Offer another reward; this one works again when the store is back online."},
	{loyalty.ENOTFOUND, "no loyalty activity", "", "This store has no points or rewards on that order.",
		"Check the order number on the receipt. Orders older than the store keeps are refunded by head office."},
	{loyalty.ENOTFOUND, "no sale with points", "", "This store has no points or rewards on that order.",
		"Check the order number on the receipt. Orders older than the store keeps are refunded by head office."},
}

// refusal is web.Refusal in a cashier's words for the till's own cases (tillWordings, and a
// code that was not accepted). The agent's messages speak to a POS developer (minor units,
// field names, budget ids); a cashier gets what to do.
func (t *till) refusal(err error) *web.Flash {
	f := web.Refusal(err)
	msg, code := loyalty.ErrorMessage(err), loyalty.ErrorCode(err)
	i := slices.IndexFunc(tillWordings, func(w struct{ code, says, title, error, hint string }) bool {
		return w.code == code && strings.Contains(msg, w.says)
	})
	switch {
	case i >= 0:
		w := tillWordings[i]
		f.Title, f.Error, f.Hint = cmp.Or(w.title, f.Title), cmp.Or(w.error, f.Error), cmp.Or(w.hint, f.Hint)
	case code == loyalty.EINVALID && (strings.Contains(msg, "QR code") || strings.Contains(msg, "loyalty QR")):
		f.Title, f.Error = "This card was not accepted.", "The code is damaged, or not a card of this chain."
		if strings.Contains(msg, "expired") || strings.Contains(msg, "retired") {
			f.Error = "The code has expired."
		}
		f.Hint = "Ask the member to open their card again and scan it once more; a photo or a copy of a card does not work."
	}
	if loyalty.ErrorCode(err) == loyalty.EINTERNAL || loyalty.ErrorCode(err) == "" {
		t.log().Error("till page: an action failed", slog.Any("err", err))
	}
	return f
}

// signedPoints shows points with their sign: +12, -50, 0.
func signedPoints(n int64) string {
	if n > 0 {
		return "+" + web.Group(n)
	}
	return web.Group(n)
}
