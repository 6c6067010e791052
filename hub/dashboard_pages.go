package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// The dashboard's pages (dashboard.go): each reads through the hub methods of the JSON API.

var dashFuncs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
	},
	"pct": func(r Ratio) string {
		if r == nil {
			return "–"
		}
		return strconv.FormatFloat(*r*100, 'f', 1, 64) + "%"
	},
	"ms":   func(ms int64) string { return (time.Duration(ms) * time.Millisecond).Round(time.Second).String() },
	"path": url.PathEscape,
	"neg":  func(n int64) int64 { return -n },
}

// Overview.

type overviewData struct {
	Today, Month   SummaryReport
	StoresOnline   int
	Stores         int
	FlaggedCount   int
	Audit          []AuditEntry
	MonthFrom, Day time.Time
}

func (d *dashboard) overview(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	ctx, h := r.Context(), d.s.Hub
	from, to := today(h.Now())
	var o overviewData
	var err error
	o.Day, o.MonthFrom = from, from.AddDate(0, 0, -29)
	if o.Today, err = h.ReportSummary(ctx, ReportQuery{From: from, To: to}); err != nil {
		return "error", http.StatusInternalServerError, nil, web.Refusal(err)
	}
	if o.Month, err = h.ReportSummary(ctx, ReportQuery{From: o.MonthFrom, To: to}); err != nil {
		return "error", http.StatusInternalServerError, nil, web.Refusal(err)
	}
	stores, err := h.Stores(ctx)
	if err != nil {
		return "error", http.StatusInternalServerError, nil, web.Refusal(err)
	}
	o.Stores = len(stores)
	for _, s := range stores {
		if s.Health.Connected {
			o.StoresOnline++
		}
	}
	cs, err := h.Conflicts(ctx, 500)
	if err != nil {
		return "error", http.StatusInternalServerError, nil, web.Refusal(err)
	}
	for _, c := range cs {
		if c.Flagged {
			o.FlaggedCount++
		}
	}
	if o.Audit, err = h.Audit(ctx, 10); err != nil {
		return "error", http.StatusInternalServerError, nil, web.Refusal(err)
	}
	if !op.Admin {
		hideWebhookDetails(o.Audit)
	}
	return "overview", http.StatusOK, o, nil
}

// Reports, with charts.

type reportsData struct {
	From, To   string
	Summary    SummaryReport
	Stores     StoresReport
	Cohorts    CohortReport
	Bars       barChart
	Grid       cohortGrid
	FieldError string
}

// barChart is a horizontal bar chart of points issued and redeemed per store, laid out here so
// that the template only writes numbers into SVG attributes (no inline style: the CSP).
type barChart struct {
	Width, Height int
	Rows          []barRow
}

type barRow struct {
	Label                  string
	Issued, Redeemed       int64
	Y, TextY, RY, RTextY   int
	IssuedW, RedeemedW     int
	IssuedEnd, RedeemedEnd int
}

const (
	barLabelW = 130
	barMaxW   = 380
	barRowH   = 40
)

func newBarChart(rep StoresReport) barChart {
	var most int64 = 1
	for _, s := range rep.Stores {
		most = max(most, s.PointsIssued, s.PointsRedeemed)
	}
	c := barChart{Width: barLabelW + barMaxW + 90}
	for i, s := range rep.Stores {
		y := 10 + i*barRowH
		row := barRow{Label: s.Store, Issued: s.PointsIssued, Redeemed: s.PointsRedeemed, Y: y, TextY: y + 13, RY: y + 18, RTextY: y + 31,
			IssuedW: int(s.PointsIssued * barMaxW / most), RedeemedW: int(s.PointsRedeemed * barMaxW / most)}
		row.IssuedEnd, row.RedeemedEnd = barLabelW+row.IssuedW+4, barLabelW+row.RedeemedW+4
		c.Rows = append(c.Rows, row)
	}
	c.Height = 20 + len(c.Rows)*barRowH
	return c
}

// cohortGrid is the cohort report as a grid of squares whose opacity is the share still active.
type cohortGrid struct {
	Width, Height int
	Ks            []cohortK
	Rows          []cohortRow
}

type cohortK struct {
	X int
	K int64
}

type cohortRow struct {
	Label string
	Size  int64
	Y     int
	Cells []cohortCell
}

type cohortCell struct {
	X, TextX, TextY int
	Opacity, Text   string
	Dark            bool
}

func newCohortGrid(rep CohortReport) cohortGrid {
	const left, cell, top = 110, 44, 24
	g := cohortGrid{}
	var ks int64
	for i, c := range rep.Cohorts {
		row := cohortRow{Label: fmt.Sprintf("%s (%d)", c.Month, c.Size), Size: c.Size, Y: top + i*cell}
		for _, p := range c.Retention {
			ks = max(ks, p.K+1)
			x := left + int(p.K)*cell
			rate := 0.0
			if p.Rate != nil {
				rate = *p.Rate
			}
			row.Cells = append(row.Cells, cohortCell{X: x, TextX: x + cell/2 - 1, TextY: row.Y + cell/2 + 4,
				Opacity: strconv.FormatFloat(0.08+0.92*rate, 'f', 2, 64), Text: strconv.FormatFloat(rate*100, 'f', 0, 64) + "%", Dark: rate > 0.5})
		}
		g.Rows = append(g.Rows, row)
	}
	for k := range ks {
		g.Ks = append(g.Ks, cohortK{X: left + int(k)*cell + cell/2 - 1, K: k})
	}
	// At least as wide as the bar chart, so that a young program's one cohort is not drawn huge.
	g.Width, g.Height = max(left+int(ks)*cell+10, barLabelW+barMaxW+90), top+len(rep.Cohorts)*cell+10
	return g
}

func (d *dashboard) reports(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	ctx, h := r.Context(), d.s.Hub
	start, end := today(h.Now())
	data := reportsData{From: start.AddDate(0, 0, -89).Format(time.DateOnly), To: end.Format(time.DateOnly)}
	q := ReportQuery{}
	var err error
	if v := r.URL.Query().Get("from"); v != "" && len(v) < 40 {
		data.From = v
	}
	if v := r.URL.Query().Get("to"); v != "" && len(v) < 40 {
		data.To = v
	}
	if q.From, err = ParseReportTime("from", data.From); err == nil {
		if q.To, err = ParseReportTime("to", data.To); err == nil {
			err = q.Validate()
		}
	}
	if err == nil {
		data.Summary, err = h.ReportSummary(ctx, q)
	}
	if err == nil {
		data.Stores, err = h.ReportStores(ctx, q)
	}
	if err == nil {
		data.Cohorts, err = h.ReportCohorts(ctx, q)
	}
	if err != nil {
		if loyalty.ErrorCode(err) == loyalty.EINVALID {
			data.FieldError = loyalty.ErrorMessage(err)
			return "reports", http.StatusBadRequest, data, nil
		}
		return "reports", http.StatusInternalServerError, data, web.Refusal(err)
	}
	data.Bars, data.Grid = newBarChart(data.Stores), newCohortGrid(data.Cohorts)
	return "reports", http.StatusOK, data, nil
}

// Stores: sync health, backlog, clock skew.

func (d *dashboard) stores(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	from, to := today(d.s.Hub.Now())
	rep, err := d.s.Hub.ReportStores(r.Context(), ReportQuery{From: from, To: to})
	if err != nil {
		return "stores", http.StatusInternalServerError, StoresReport{}, web.Refusal(err)
	}
	return "stores", http.StatusOK, rep, nil
}

// Conflicts.

type conflictsData struct {
	Flagged, Resolved []Conflict
}

func (d *dashboard) conflicts(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	cs, err := d.s.Hub.Conflicts(r.Context(), 500)
	var data conflictsData
	for _, c := range cs {
		if c.Flagged {
			data.Flagged = append(data.Flagged, c)
		} else {
			data.Resolved = append(data.Resolved, c)
		}
	}
	if err != nil {
		return "conflicts", http.StatusInternalServerError, data, web.Refusal(err)
	}
	return "conflicts", http.StatusOK, data, nil
}

func (d *dashboard) resolveConflict(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		err = loyalty.Errorf(loyalty.ENOTFOUND, "no such conflict")
	} else {
		err = d.s.Hub.ResolveConflict(r.Context(), id)
	}
	if err != nil {
		d.fail(w, r, op, err)
		return "", 0, nil, nil
	}
	return redirect(w, r, "/dash/conflicts", "resolved")
}

// Budgets, leases and the kill switches.

type budgetsData struct {
	Budgets   []BudgetStatus
	Program   loyalty.Program
	Campaigns []loyalty.Campaign
}

func (d *dashboard) budgets(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	ctx := r.Context()
	var data budgetsData
	p, err := d.s.Hub.Program(ctx)
	if err == nil {
		data.Program = p
		data.Budgets, err = d.s.Hub.Budgets(ctx)
	}
	if err != nil {
		return "budgets", http.StatusInternalServerError, data, web.Refusal(err)
	}
	return "budgets", http.StatusOK, data, nil
}

// switchOf returns the disabled flag of the reward or campaign id in p, or nil.
func switchOf(p *loyalty.Program, kind, id string) *bool {
	switch kind {
	case "reward":
		for i := range p.Rewards {
			if p.Rewards[i].ID == id {
				return &p.Rewards[i].Disabled
			}
		}
	case "campaign":
		for i := range p.Campaigns {
			if p.Campaigns[i].ID == id {
				return &p.Campaigns[i].Disabled
			}
		}
	}
	return nil
}

// killSwitch switches one reward or campaign off or on: a new program version with its
// disabled flag changed, published with SetProgram as PUT /v1/program would (audited there).
func (d *dashboard) killSwitch(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	ctx := r.Context()
	kind, id, on := r.PostFormValue("kind"), r.PostFormValue("id"), r.PostFormValue("on") == "true"
	back := "/dash/budgets"
	if r.PostFormValue("from") == "program" {
		back = "/dash/program"
	}
	// Read, flip, publish if nobody published meanwhile; else read again: two operators
	// switching two rewards at once both get their switch.
	for attempt := 0; ; attempt++ {
		p, err := d.s.Hub.Program(ctx)
		if err != nil {
			d.fail(w, r, op, err)
			return "", 0, nil, nil
		}
		flag := switchOf(&p, kind, id)
		if flag == nil {
			d.fail(w, r, op, loyalty.Errorf(loyalty.ENOTFOUND, "the program has no such %s; it may have changed since the page was shown", map[bool]string{true: kind, false: "reward or campaign"}[kind == "reward" || kind == "campaign"]))
			return "", 0, nil, nil
		}
		if *flag == !on {
			return redirect(w, r, back, "same")
		}
		*flag = !on
		_, err = d.s.Hub.SetProgramIf(ctx, p, p.Version)
		if loyalty.ErrorCode(err) == loyalty.ECONFLICT && attempt < 5 {
			continue
		}
		if err != nil {
			d.fail(w, r, op, err)
			return "", 0, nil, nil
		}
		break
	}
	return redirect(w, r, back, map[bool]string{true: "on", false: "off"}[on])
}

// The program: view, and edit as JSON.

type programData struct {
	Program    loyalty.Program
	Text       string
	Base       int64
	FieldError string
}

func programText(p loyalty.Program) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.Encode(p)
	return b.String()
}

func (d *dashboard) program(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	p, err := d.s.Hub.Program(r.Context())
	if err != nil {
		return "program", http.StatusInternalServerError, programData{}, web.Refusal(err)
	}
	return "program", http.StatusOK, programData{Program: p, Text: programText(p), Base: p.Version}, nil
}

func (d *dashboard) publishProgram(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	ctx := r.Context()
	cur, err := d.s.Hub.Program(ctx)
	if err != nil {
		d.fail(w, r, op, err)
		return "", 0, nil, nil
	}
	text := r.PostFormValue("program")
	data := programData{Program: cur, Text: text, Base: cur.Version}
	bad := func(msg string) (string, int, any, *web.Flash) {
		data.FieldError = msg
		return "program", http.StatusBadRequest, data, &web.Flash{Title: "Not published.", Error: "The program has a mistake: see the message next to it.", Hint: "Correct it and publish again; the program in force did not change."}
	}
	base, err := strconv.ParseInt(r.PostFormValue("base"), 10, 64)
	switch {
	case len(text) > maxDashProgram:
		return bad(fmt.Sprintf("The program is longer than %d KiB.", maxDashProgram>>10))
	case err != nil || base != cur.Version:
		data.FieldError = fmt.Sprintf("The program changed (it is version %d now) since you opened it. Your text is below; copy your change, reload the page and make it again.", cur.Version)
		return "program", http.StatusConflict, data, nil
	}
	var p loyalty.Program
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return bad(jsonMistake(text, err))
	}
	if dec.More() {
		return bad("There is more after the program's closing brace.")
	}
	if _, err := d.s.Hub.SetProgramIf(ctx, p, base); err != nil {
		if loyalty.ErrorCode(err) == loyalty.EINVALID {
			return bad(loyalty.ErrorMessage(err))
		}
		if loyalty.ErrorCode(err) == loyalty.ECONFLICT { // published by someone else just now
			data.FieldError = "The program changed since you opened it. Your text is below; copy your change, reload the page and make it again."
			return "program", http.StatusConflict, data, nil
		}
		d.fail(w, r, op, err)
		return "", 0, nil, nil
	}
	return redirect(w, r, "/dash/program", "published")
}

// jsonMistake says where the JSON of text is wrong, by line.
func jsonMistake(text string, err error) string {
	line := func(off int64) int { return 1 + strings.Count(text[:min(int(off), len(text))], "\n") }
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("Line %d: this is not valid JSON (%s).", line(syn.Offset), syn.Error())
	case errors.As(err, &typ):
		return fmt.Sprintf("Line %d: %s must be %s, not %s.", line(typ.Offset), typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return "The program has a field it does not know: " + strings.TrimPrefix(err.Error(), "json: unknown field ") + "."
	}
	return "This is not a program in JSON: " + err.Error()
}

// Members.

type membersData struct {
	Q       string
	Members []loyalty.Member
	Exact   bool
}

func (d *dashboard) members(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	ctx, h := r.Context(), d.s.Hub
	q, err := field(r, "q", maxDashField)
	data := membersData{Q: q}
	if err != nil {
		return "members", http.StatusBadRequest, data, web.Refusal(err)
	}
	seen := map[string]bool{}
	add := func(ms []loyalty.Member) {
		for _, m := range ms {
			if !seen[m.ID] {
				seen[m.ID] = true
				data.Members = append(data.Members, m)
			}
		}
	}
	switch {
	case q == "":
		pg, err := h.SearchMembers(ctx, MemberFilter{}, "", 50)
		if err != nil {
			return "members", http.StatusInternalServerError, data, web.Refusal(err)
		}
		add(pg.Members)
	default:
		if v, err := h.Member(ctx, q, 0); err == nil {
			add([]loyalty.Member{v.Member})
			data.Exact = true
		}
		f := MemberFilter{Name: q}
		if strings.Contains(q, "@") {
			f = MemberFilter{Email: q}
		}
		pg, err := h.SearchMembers(ctx, f, "", 50)
		if err != nil && loyalty.ErrorCode(err) != loyalty.EINVALID {
			return "members", http.StatusInternalServerError, data, web.Refusal(err)
		}
		add(pg.Members)
		if err != nil && !data.Exact { // an email that is none, say
			return "members", http.StatusOK, data, &web.Flash{Title: "No search made.", Error: loyalty.ErrorMessage(err),
				Hint: "Type a member id, a whole email address, or a part of the name."}
		}
	}
	if data.Exact && len(data.Members) == 1 && r.URL.Query().Get("list") == "" {
		http.Redirect(w, r, "/dash/members/"+url.PathEscape(data.Members[0].ID), http.StatusSeeOther)
		return "", 0, nil, nil
	}
	return "members", http.StatusOK, data, nil
}

type memberData struct {
	Member      MemberView
	AdjustID    string
	Points      string
	Reason      string
	Confirm     string
	PointsError string
	ReasonError string
	EraseError  string
	CardLink    string    // a card link just made, whole, to copy and send to the member
	CardExpires time.Time // when it stops working
}

func (d *dashboard) memberView(r *http.Request, id string) (memberData, error) {
	v, err := d.s.Hub.Member(r.Context(), id, 50)
	return memberData{Member: v, AdjustID: newFormID()}, err
}

func (d *dashboard) member(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	data, err := d.memberView(r, r.PathValue("id"))
	if err != nil {
		d.fail(w, r, op, err)
		return "", 0, nil, nil
	}
	return "member", http.StatusOK, data, nil
}

// memberQR is the member's QR code: admin keys only (a token spends points), like
// GET /v1/members/{id}/qr.png, which report keys cannot call.
func (d *dashboard) memberQR(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	if !op.Admin {
		http.Error(w, "a report key sees no QR code", http.StatusForbidden)
		return "", 0, nil, nil
	}
	token, err := d.s.Hub.MemberToken(r.Context(), r.PathValue("id"))
	var png []byte
	if err == nil {
		png, err = qr.PNG(token, 384)
	}
	if err != nil {
		status := http.StatusInternalServerError
		if c := loyalty.ErrorCode(err); c != "" && c != loyalty.EINTERNAL {
			status = http.StatusNotFound
		}
		http.Error(w, web.Refusal(err).Error, status)
		return "", 0, nil, nil
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(png)
	return "", 0, nil, nil
}

func (d *dashboard) adjust(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	id := r.PathValue("id")
	data, err := d.memberView(r, id)
	if err != nil {
		d.fail(w, r, op, err)
		return "", 0, nil, nil
	}
	data.Points = strings.TrimSpace(r.PostFormValue("points"))
	data.Reason, err = field(r, "reason", 200)
	if err != nil {
		data.ReasonError = "The reason is at most 200 characters of text."
	} else if data.Reason == "" {
		data.ReasonError = "Say why: the reason goes into the ledger and the audit trail."
	}
	pts, perr := strconv.ParseInt(data.Points, 10, 64)
	if perr != nil || pts == 0 || pts > 1_000_000_000 || pts < -1_000_000_000 {
		data.PointsError = "A whole number of points, not 0: positive adds, negative takes away (at most 1,000,000,000 either way)."
	}
	adjustID := r.PostFormValue("adjust_id")
	if len(adjustID) > 64 || !strings.HasPrefix(adjustID, "dash-") {
		adjustID = newFormID()
	}
	if data.PointsError != "" || data.ReasonError != "" {
		data.AdjustID = adjustID
		return "member", http.StatusBadRequest, data, &web.Flash{Title: "Not adjusted.", Error: "Check the fields marked below."}
	}
	_, err = d.s.Hub.Adjust(r.Context(), AdjustRequest{AdjustID: adjustID, MemberID: id, Points: pts, Reason: data.Reason})
	if err != nil {
		data.AdjustID = newFormID()
		return "member", http.StatusConflict, data, web.Refusal(err)
	}
	return redirect(w, r, "/dash/members/"+url.PathEscape(id), "adjusted")
}

func (d *dashboard) erase(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	id := r.PathValue("id")
	data, err := d.memberView(r, id)
	if err != nil {
		d.fail(w, r, op, err)
		return "", 0, nil, nil
	}
	if confirm := r.PostFormValue("confirm"); confirm != id {
		data.Confirm = loyalty.Truncate(confirm, maxDashField)
		data.EraseError = "Type the member's id exactly to confirm the erasure."
		return "member", http.StatusBadRequest, data, &web.Flash{Title: "Not erased.", Error: "The confirmation did not match the member's id."}
	}
	if _, err := d.s.Hub.EraseMember(r.Context(), id); err != nil {
		return "member", http.StatusConflict, data, web.Refusal(err)
	}
	return redirect(w, r, "/dash/members/"+url.PathEscape(id), "erased")
}

// cardLink makes a member card link (as POST /v1/members/{id}/card-links does) and shows it
// whole, with this hub's address in front, for the operator to send to the member.
func (d *dashboard) cardLink(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	id := r.PathValue("id")
	data, err := d.memberView(r, id)
	if err != nil {
		d.fail(w, r, op, err)
		return "", 0, nil, nil
	}
	days, err := strconv.Atoi(r.PostFormValue("days"))
	if err != nil || days < 1 || days > 366 {
		return "member", http.StatusBadRequest, data, &web.Flash{Title: "No link made.", Error: "Choose for how many days the link works (1 to 366)."}
	}
	link, err := d.s.Hub.NewCardLink(r.Context(), id, time.Duration(days)*24*time.Hour)
	if err != nil {
		return "member", http.StatusConflict, data, web.Refusal(err)
	}
	// The address the operator reached the dashboard on, https if over TLS or behind a proxy
	// that terminates it: the link is the member's only key to their card.
	scheme := "http"
	if web.OverTLS(r) {
		scheme = "https"
	}
	data.CardLink, data.CardExpires = scheme+"://"+r.Host+link.URLPath, link.ExpiresAt
	return "member", http.StatusOK, data, &web.Flash{Title: "Card link made.", Text: "Copy it from the member card section below and send it to the member only."}
}

// revokeCardLinks ends every card link of the member made so far.
func (d *dashboard) revokeCardLinks(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	id := r.PathValue("id")
	if _, err := d.s.Hub.RevokeCardLinks(r.Context(), id); err != nil {
		data, verr := d.memberView(r, id)
		if verr != nil {
			d.fail(w, r, op, err)
			return "", 0, nil, nil
		}
		return "member", http.StatusConflict, data, web.Refusal(err)
	}
	return redirect(w, r, "/dash/members/"+url.PathEscape(id), "links-revoked")
}

// Webhooks and their delivery log. Report keys see neither the URLs (they often carry the
// receiver's secret) nor the last errors (which may quote them).

func (d *dashboard) webhooks(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	if !op.Admin { // as at the API: every webhook route is admin-only
		d.refuse(w, op, http.StatusForbidden, "Webhooks are for admin keys only.", "Sign in with an admin key to see them.")
		return "", 0, nil, nil
	}
	es, err := d.s.Hub.Webhooks(r.Context())
	if err != nil {
		return "webhooks", http.StatusInternalServerError, es, web.Refusal(err)
	}
	return "webhooks", http.StatusOK, es, nil
}

type webhookData struct {
	Endpoint   WebhookEndpoint
	Deliveries []WebhookDelivery
}

func (d *dashboard) webhook(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	if !op.Admin {
		d.refuse(w, op, http.StatusForbidden, "Webhooks are for admin keys only.", "Sign in with an admin key to see them.")
		return "", 0, nil, nil
	}
	e, err := d.s.Hub.Webhook(r.Context(), r.PathValue("id"))
	var ds []WebhookDelivery
	if err == nil {
		ds, err = d.s.Hub.WebhookDeliveries(r.Context(), e.ID, "", 100)
	}
	if err != nil {
		d.fail(w, r, op, err)
		return "", 0, nil, nil
	}
	return "webhook", http.StatusOK, webhookData{Endpoint: e, Deliveries: ds}, nil
}
