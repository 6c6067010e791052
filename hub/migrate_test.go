package hub_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

func cliCtx() context.Context { return hub.WithActor(context.Background(), hub.CLIActor) }

func wantCode(t *testing.T, err error, code, contains string) {
	t.Helper()
	if loyalty.ErrorCode(err) != code || !strings.Contains(loyalty.ErrorMessage(err), contains) {
		t.Fatalf("got %v, want %s containing %q", err, code, contains)
	}
}

func TestAdjust(t *testing.T) {
	h := openHub(t)
	ctx := cliCtx()
	before, _ := h.Member(ctx, "m1", 0)
	req := hub.AdjustRequest{AdjustID: "fix-1", MemberID: "m1", Points: 500, Reason: "goodwill after a late delivery"}
	a, err := h.Adjust(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance != 500 || a.KeyID != "cli" || a.DeltaID == "" || a.Points != 500 || a.Replayed {
		t.Fatalf("adjustment %+v", a)
	}
	// The member's version moved, so their home store pulls the new balance.
	v, _ := h.Member(ctx, "m1", 5)
	if v.Version <= before.Version {
		t.Fatalf("version %d, was %d", v.Version, before.Version)
	}
	pull, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: before.Version, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var pulled bool
	for _, m := range pull.Members {
		pulled = pulled || m.ID == "m1" && m.Balance == 500
	}
	if !pulled {
		t.Fatalf("store s1 did not pull m1's new balance: %+v", pull.Members)
	}
	// Ledgered with its reason and the key that made it.
	if e := v.Ledger[0]; e.Kind != loyalty.KindAdjust || e.Reason != req.Reason || e.Terminal != "cli" || e.Points != 500 {
		t.Fatalf("ledger entry %+v", e)
	}
	// The same request again returns the first result; another with the same key is ECONFLICT.
	again, err := h.Adjust(ctx, req)
	if err != nil || again.DeltaID != a.DeltaID || !again.Replayed || balance(t, h, "m1") != 500 {
		t.Fatalf("retry: %+v, %v, balance %d", again, err, balance(t, h, "m1"))
	}
	other := req
	other.Points = 501
	_, err = h.Adjust(ctx, other)
	wantCode(t, err, loyalty.ECONFLICT, "fix-1")
	// Never below zero.
	_, err = h.Adjust(ctx, hub.AdjustRequest{AdjustID: "fix-2", MemberID: "m1", Points: -501, Reason: "typo"})
	wantCode(t, err, loyalty.EINVALID, "their balance is 500 points")
	for _, bad := range []hub.AdjustRequest{
		{AdjustID: "x", MemberID: "m1", Points: 5},                                  // no reason
		{AdjustID: "x", MemberID: "m1", Reason: "r"},                                // no points
		{MemberID: "m1", Points: 5, Reason: "r"},                                    // no key
		{AdjustID: "x", MemberID: "m1", Points: loyalty.MaxPoints + 1, Reason: "r"}, // too many
	} {
		_, err := h.Adjust(ctx, bad)
		wantCode(t, err, loyalty.EINVALID, "")
	}
	_, err = h.Adjust(ctx, hub.AdjustRequest{AdjustID: "fix-3", MemberID: "nobody", Points: 5, Reason: "r"})
	wantCode(t, err, loyalty.ENOTFOUND, "nobody")
	audit, err := h.Audit(ctx, 10)
	if err != nil || audit[0].Action != hub.AuditAdjust || audit[0].KeyID != "cli" || !strings.Contains(audit[0].Detail, "goodwill") {
		t.Fatalf("audit %+v, %v", audit, err)
	}
	mustCheck(t, h)
}

func TestAdjust_ReverseOnce(t *testing.T) {
	h := openHub(t)
	ctx := cliCtx()
	a, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "a1", MemberID: "m1", Points: 300, Reason: "migration fix"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.ReverseAdjustment(ctx, "a1", "entered twice")
	if err != nil {
		t.Fatal(err)
	}
	if r.Points != -300 || r.Balance != 0 || r.Reverses != a.DeltaID || r.Replayed {
		t.Fatalf("reversal %+v", r)
	}
	again, err := h.ReverseAdjustment(ctx, "a1", "entered twice")
	if err != nil || again.DeltaID != r.DeltaID || !again.Replayed {
		t.Fatalf("second reversal: %+v, %v", again, err)
	}
	_, err = h.ReverseAdjustment(ctx, "a1", "another reason")
	wantCode(t, err, loyalty.ECONFLICT, "already reversed")
	if b := balance(t, h, "m1"); b != 0 {
		t.Fatalf("balance %d after one reversal, want 0", b)
	}
	_, err = h.ReverseAdjustment(ctx, "nope", "r")
	wantCode(t, err, loyalty.ENOTFOUND, "nope")
	// Points added and spent cannot be taken back below zero.
	if _, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "a2", MemberID: "m1", Points: 100, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "a3", MemberID: "m1", Points: -60, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.ReverseAdjustment(ctx, "a2", "r")
	wantCode(t, err, loyalty.EINVALID, "their balance is 40 points")
	mustCheck(t, h)
}

func TestAdjust_PointsBudget(t *testing.T) {
	h := openHub(t)
	ctx := cliCtx()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: 1000}}
	})
	if _, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "b1", MemberID: "m1", Points: 800, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	_, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "b2", MemberID: "m2", Points: 300, Reason: "r"})
	wantCode(t, err, loyalty.EBUDGET, "budget pts is used up")
	spent := func() int64 {
		bs, err := h.Budgets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return bs[0].Spent
	}
	if s := spent(); s != 800 {
		t.Fatalf("spent %d, want 800", s)
	}
	// A negative adjustment gives nothing back; reversing the positive one does.
	if _, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "b3", MemberID: "m1", Points: -100, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	if s := spent(); s != 800 {
		t.Fatalf("spent %d after a negative adjustment, want 800", s)
	}
	if _, err := h.ReverseAdjustment(ctx, "b3", "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ReverseAdjustment(ctx, "b1", "r"); err != nil {
		t.Fatal(err)
	}
	if s := spent(); s != 0 {
		t.Fatalf("spent %d after the reversal, want 0", s)
	}
	if _, err := h.Adjust(ctx, hub.AdjustRequest{AdjustID: "b2", MemberID: "m2", Points: 300, Reason: "r"}); err != nil {
		t.Fatalf("after the reversal there is room: %v", err)
	}
	mustCheck(t, h)
}

func importCSV(t *testing.T, h *hub.Hub, body string, o hub.ImportOptions) hub.ImportReport {
	t.Helper()
	rep, err := h.Import(cliCtx(), strings.NewReader(body), o)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if rep.Rows != rep.Imported+rep.Skipped+rep.Bad {
		t.Fatalf("%d rows, but %d imported + %d skipped + %d bad", rep.Rows, rep.Imported, rep.Skipped, rep.Bad)
	}
	return rep
}

// memberBy returns the member with email.
func memberBy(t *testing.T, h *hub.Hub, email string) loyalty.Member {
	t.Helper()
	page, err := h.SearchMembers(context.Background(), hub.MemberFilter{Email: email}, "", 10)
	if err != nil || len(page.Members) != 1 {
		t.Fatalf("member %s: %+v, %v", email, page, err)
	}
	return page.Members[0]
}

func TestImport_BadRowsRerunAndSet(t *testing.T) {
	h := openHub(t)
	file := "Email,Points,Name,Loyalty Tier\n" + // line 1; Loyalty Tier is not read
		"ann@example.com,120,Ann,gold\n" + // 2
		"a@b.c,52,620,Al,x\n" + // 3: a column too many
		"\"bob@example.com\",\"52,620\",Bob,x\n" + // 4: thousands separator
		"not-an-email,5,X,x\n" + // 5
		"ANN@example.com,7,Ann again,x\n" + // 6: Ann twice
		"cy@example.com,-3,Cy,x\n" + // 7: would be below zero
		"dee@example.com,1.000,Dee,x\n" + // 8: dotted thousands
		"eve@example.com,0,Eve,x\n" + // 9
		"fay@example.com,3.5,Fay,x\n" // 10
	o := hub.ImportOptions{ImportID: "smile-2026", Reason: "migrated from the old program"}
	rep := importCSV(t, h, file, o)
	if rep.Rows != 9 || rep.Imported != 2 || rep.Created != 2 || rep.Bad != 7 || rep.Points != 120 {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.IgnoredColumns) != 1 || rep.IgnoredColumns[0] != "loyalty tier" {
		t.Fatalf("ignored columns %v", rep.IgnoredColumns)
	}
	want := map[int]string{3: "5 columns, the header 4: a value with a comma must be in double quotes", 4: "write 52620, without one", 5: "not an email address", 6: "on line 2 already",
		7: "below zero", 8: "write 1000, without one", 10: "not a whole number"}
	for i, e := range rep.Errors {
		if i > 0 && rep.Errors[i-1].Line >= e.Line {
			t.Errorf("errors out of line order: %d before %d", rep.Errors[i-1].Line, e.Line)
		}
		if !strings.Contains(e.Reason, want[e.Line]) || want[e.Line] == "" {
			t.Errorf("line %d: %q, want %q", e.Line, e.Reason, want[e.Line])
		}
		if code := map[bool]string{true: loyalty.EDUPLICATE, false: loyalty.EINVALID}[e.Line == 6]; e.Code != code {
			t.Errorf("line %d: %s, want %s", e.Line, e.Code, code)
		}
		delete(want, e.Line)
	}
	if len(want) > 0 {
		t.Errorf("not reported: %v", want)
	}
	ann := memberBy(t, h, "ann@example.com")
	if ann.Balance != 120 || ann.Name != "Ann" {
		t.Fatalf("ann %+v", ann)
	}
	if v, _ := h.Member(context.Background(), ann.ID, 1); v.Ledger[0].Reason != o.Reason || v.Ledger[0].OrderID != o.ImportID {
		t.Fatalf("ann's adjustment %+v", v.Ledger[0])
	}
	// The same import again changes nothing.
	rep = importCSV(t, h, file, o)
	if rep.Imported != 0 || rep.Skipped != 2 || rep.Created != 0 {
		t.Fatalf("re-run: %+v", rep)
	}
	if b := memberBy(t, h, "ann@example.com").Balance; b != 120 {
		t.Fatalf("ann has %d after a re-run, want 120", b)
	}
	// Mode set, under a new import id: the balances become the file's; a dry run first changes nothing.
	set := "email,points\nann@example.com,50\neve@example.com,9\n"
	dry := importCSV(t, h, set, hub.ImportOptions{ImportID: "fix", Mode: hub.ImportSet, Reason: "r", DryRun: true})
	if dry.Imported != 2 || dry.Points != -70+9 || !dry.DryRun {
		t.Fatalf("dry run %+v", dry)
	}
	if b := memberBy(t, h, "ann@example.com").Balance; b != 120 {
		t.Fatalf("a dry run changed ann's balance to %d", b)
	}
	importCSV(t, h, set, hub.ImportOptions{ImportID: "fix", Mode: hub.ImportSet, Reason: "r"})
	if a, e := memberBy(t, h, "ann@example.com").Balance, memberBy(t, h, "eve@example.com").Balance; a != 50 || e != 9 {
		t.Fatalf("after set: ann %d, eve %d", a, e)
	}
	mustCheck(t, h)
	audit, _ := h.Audit(context.Background(), 10)
	if audit[0].Action != hub.AuditImport || audit[0].Target != "fix" || audit[0].KeyID != "cli" {
		t.Fatalf("audit %+v", audit[0])
	}
}

func TestImport_Refusals(t *testing.T) {
	h := openHub(t)
	for _, tt := range []struct {
		body string
		o    hub.ImportOptions
		want string
	}{
		{"", hub.ImportOptions{ImportID: "i", Reason: "r"}, "empty"},
		{"name,points\nx,1\n", hub.ImportOptions{ImportID: "i", Reason: "r"}, "email or a member_id"},
		{"email,name\nx@y.z,1\n", hub.ImportOptions{ImportID: "i", Reason: "r"}, "points or a total_spent"},
		{"email,points\n", hub.ImportOptions{Reason: "r"}, "import id is required"},
		{"email,points\n", hub.ImportOptions{ImportID: "i"}, "reason is required"},
		{"email,points\n", hub.ImportOptions{ImportID: "i", Reason: "r", Mode: "replace"}, "mode must be add"},
		{"email,total_spent\n", hub.ImportOptions{ImportID: "i", Reason: "r"}, "points-per-unit"},
		{"email,total_spent\n", hub.ImportOptions{ImportID: "i", Reason: "r", PointsPerUnit: "1e3"}, "points-per-unit"},
		{"email,points\n", hub.ImportOptions{ImportID: "i", Reason: "r", PointsPerUnit: "2"}, "has none"},
		{"email,points,EMAIL\n", hub.ImportOptions{ImportID: "i", Reason: "r"}, "twice"},
	} {
		_, err := h.Import(cliCtx(), strings.NewReader(tt.body), tt.o)
		wantCode(t, err, loyalty.EINVALID, tt.want)
	}
}

func TestImport_TotalSpentMembersAndBatches(t *testing.T) {
	h := openHub(t)
	// Default program: earn.unit_minor 100; at 2 points per unit, 12345 minor units earn 246.
	var b strings.Builder
	b.WriteString("member_id,email,total_spent,home_store,country,birthday\n")
	b.WriteString("m1,,12345,,,\n") // an existing member, by id
	for i := range 10 {
		fmt.Fprintf(&b, "new%d,new%d@example.com,%d,s1,DE,05-17\n", i, i, 100*(i+1))
	}
	b.WriteString("x1,x1@example.com,12.50,,,\n")      // not minor units
	b.WriteString("x2,x2@example.com,100,nowhere,,\n") // an unknown store
	b.WriteString("new3,,5,,,\n")                      // new3 twice, in another batch
	rep := importCSV(t, h, b.String(), hub.ImportOptions{ImportID: "spend", Reason: "r", PointsPerUnit: "2", BatchSize: 3})
	if rep.Imported != 11 || rep.Created != 10 || rep.Bad != 3 {
		t.Fatalf("report %+v", rep)
	}
	if got := balance(t, h, "m1"); got != 246 {
		t.Fatalf("m1 has %d, want 246", got)
	}
	v, err := h.Member(context.Background(), "new4", 0)
	if err != nil || v.Balance != 10 || v.HomeStore != "s1" || v.Country != "DE" || v.Birthday != "05-17" || v.Email != "new4@example.com" {
		t.Fatalf("new4 %+v, %v", v, err)
	}
	// In their home store's scope: its agent pulls them.
	pull, err := h.Pull(context.Background(), "s1", lsync.Pull{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range pull.Members {
		found = found || m.ID == "new4" && m.Balance == 10
	}
	if !found {
		t.Fatal("store s1 does not hold its imported member new4")
	}
	mustCheck(t, h)
}

func TestSearchMembers(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	for i, name := range []string{"Ann Lee", "ann_b", "Bob", "Annette"} {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("x%d", i), Email: fmt.Sprintf("U%d@Example.com", i), Name: name, HomeStore: "s2"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		f     hub.MemberFilter
		after string
		limit int
		want  string
	}{
		{hub.MemberFilter{Email: "u2@EXAMPLE.com"}, "", 10, "x2|"},
		{hub.MemberFilter{Name: "ann"}, "", 10, "x0,x1,x3|"},
		{hub.MemberFilter{Name: "n_b"}, "", 10, "x1|"}, // _ is no wildcard
		{hub.MemberFilter{HomeStore: "s2"}, "", 2, "m2,x0|x0"},
		{hub.MemberFilter{HomeStore: "s2"}, "x0", 2, "x1,x2|x2"},
		{hub.MemberFilter{HomeStore: "s2"}, "x2", 2, "x3|"},
		{hub.MemberFilter{CreatedSince: t0.Add(time.Millisecond)}, "", 10, "|"},
		{hub.MemberFilter{CreatedSince: t0}, "", 3, "m1,m2,x0|x0"},
	} {
		if got := searchIDs(t, h, tt.f, tt.after, tt.limit); got != tt.want {
			t.Errorf("%+v after %q: %s, want %s", tt.f, tt.after, got, tt.want)
		}
	}
	_, err := h.SearchMembers(ctx, hub.MemberFilter{}, "", 0)
	wantCode(t, err, loyalty.EINVALID, "limit")
}

func TestExport_PagedMembersLedgerConflictsBudgets(t *testing.T) {
	h := openHub(t)
	ctx := cliCtx()
	var b strings.Builder
	b.WriteString("email,points,name\n")
	for i := range 23 {
		fmt.Fprintf(&b, "p%02d@example.com,%d,\"=HYPERLINK(\"\"x\"\")\"\n", i, i+1)
	}
	importCSV(t, h, b.String(), hub.ImportOptions{ImportID: "e", Reason: "r"})
	var out bytes.Buffer
	var pages []int
	if err := h.Export(ctx, &out, hub.ExportMembers, hub.ExportOptions{PageSize: 10, OnPage: func(n int) { pages = append(pages, n) }}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pages) != "[10 10 5]" { // 25 members: m1, m2 and the 23 imported
		t.Fatalf("pages %v", pages)
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0][:4], ",") != "member_id,email,balance,tier" && strings.Join(recs[0][:4], ",") != "member_id,email,name,balance" {
		t.Fatalf("header %v", recs[0])
	}
	col := map[string]int{}
	for i, c := range recs[0] {
		col[c] = i
	}
	sum := 0
	for _, r := range recs[1:] {
		var n int
		fmt.Sscan(r[col["balance"]], &n)
		sum += n
		if strings.HasPrefix(r[col["email"]], "p") && r[col["name"]] != `'=HYPERLINK("x")` {
			t.Fatalf("a formula is written as %q", r[col["name"]])
		}
	}
	if len(recs) != 26 || sum != 23*24/2 {
		t.Fatalf("%d rows, balances sum to %d", len(recs), sum)
	}
	// JSON lines of the ledger: the 23 adjustments, in a date range that holds them.
	out.Reset()
	if err := h.Export(ctx, &out, hub.ExportLedger, hub.ExportOptions{Format: hub.FormatJSONL, From: t0, To: t0.Add(1e9), PageSize: 7}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 23 {
		t.Fatalf("%d ledger lines", len(lines))
	}
	var e struct {
		Kind   string `json:"kind"`
		Reason string `json:"reason"`
		Points int64  `json:"points"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e.Kind != "adjust" || e.Reason != "r" || e.Points != 1 {
		t.Fatalf("%s: %+v, %v", lines[0], e, err)
	}
	out.Reset()
	if err := h.Export(ctx, &out, hub.ExportLedger, hub.ExportOptions{Format: hub.FormatJSONL, From: t0.Add(1e9)}); err != nil || out.Len() != 0 {
		t.Fatalf("a range after every delta: %q, %v", out.String(), err)
	}
	for _, what := range []string{hub.ExportConflicts, hub.ExportBudgets} {
		out.Reset()
		if err := h.Export(ctx, &out, what, hub.ExportOptions{}); err != nil || !strings.HasPrefix(out.String(), map[string]string{hub.ExportConflicts: "id,kind", hub.ExportBudgets: "row,budget"}[what]) {
			t.Fatalf("%s: %q, %v", what, out.String(), err)
		}
	}
	for _, tt := range []struct {
		what string
		o    hub.ExportOptions
	}{{"mem", hub.ExportOptions{}}, {hub.ExportMembers, hub.ExportOptions{Format: "xml"}}, {hub.ExportMembers, hub.ExportOptions{From: t0}},
		{hub.ExportLedger, hub.ExportOptions{From: t0, To: t0}}} {
		wantCode(t, h.Export(ctx, &out, tt.what, tt.o), loyalty.EINVALID, "")
	}
}

// countingMetrics is a Metrics that counts requests.
type countingMetrics struct {
	hub.NopMetrics
	requests atomic.Int32
}

func (m *countingMetrics) Request(string, int, time.Duration) { m.requests.Add(1) }

// TestExport_FlushedBehindTheMetrics: with metrics on, whose wrapper stands between the export
// and the connection, an export's pages are still flushed as they are written.
func TestExport_FlushedBehindTheMetrics(t *testing.T) {
	h := openHub(t)
	m := &countingMetrics{}
	h.Metrics = m
	srv := &hub.Server{Hub: h, AdminKey: akAdminKey, Logger: slog.New(slog.DiscardHandler)}
	req := httptest.NewRequest("GET", "/v1/exports/members?format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+akAdminKey)
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), "member_id,") {
		t.Fatalf("export: HTTP %d %q", rec.Code, rec.Body.String())
	}
	if !rec.Flushed {
		t.Error("the export was not flushed through the metrics' wrapper: its pages wait in a buffer")
	}
	if m.requests.Load() != 1 {
		t.Errorf("the metrics saw %d requests, want 1: the wrapper was not in the way", m.requests.Load())
	}
}

// TestExport_SemicolonLocale: a spreadsheet set to a European locale splits a CSV line at ";"
// and takes no quotes inside a field as quotes; no piece of an exported line may then start as
// a formula, whatever a member's name or an order id holds.
func TestExport_SemicolonLocale(t *testing.T) {
	h := openHub(t)
	ctx := cliCtx()
	for i, name := range []string{`Ann;=HYPERLINK("x")`, "Bob; +1", "Cy;;@SUM(A1)", "Di;-2;ok", "plain; text", "=lead"} {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("sc%d", i), Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	// An order id may hold a line break: in a quoted cell, to such a spreadsheet a new row.
	for i, order := range []string{"x\n=cmd|' /C calc'!A0;", "y\r\n+1"} {
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: order, MemberID: fmt.Sprintf("sc%d", i), Amount: 1000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := h.Export(ctx, &out, hub.ExportMembers, hub.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.Export(ctx, &out, hub.ExportLedger, hub.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "plain; text") || !strings.Contains(out.String(), "'=lead") {
		t.Errorf("the export changed harmless text, or no longer guards a leading formula:\n%s", out.String())
	}
	for _, line := range strings.FieldsFunc(out.String(), func(r rune) bool { return r == '\n' || r == '\r' }) {
		for _, piece := range strings.Split(line, ";") {
			if p := strings.TrimLeft(piece, " "); p != "" && strings.ContainsRune("=+-@\t\r", rune(p[0])) {
				t.Errorf("a spreadsheet splitting at \";\" reads a formula %q in the line %q", piece, line)
			}
		}
	}
}

// A file that begins with a byte order mark imports as one without, its first column name quoted
// or not, as tools that quote every field write it (PowerShell's Export-Csv, CRM exports). The
// mark was left to the CSV reader, which took the quote after it for one in the middle of a field.
func TestImport_ByteOrderMarkBeforeAQuotedHeader(t *testing.T) {
	h := openHub(t)
	for i, file := range []string{
		"\ufeff\"email\",\"points\"\r\n\"bom1@example.com\",\"5\"\r\n",
		"\ufeffemail,points\nbom2@example.com,5\n",
		"\"email\",\"points\"\r\n\"bom3@example.com\",\"5\"\r\n",
	} {
		rep := importCSV(t, h, file, hub.ImportOptions{ImportID: fmt.Sprintf("bom%d", i), Reason: "migration"})
		if rep.Imported != 1 || rep.Bad != 0 || len(rep.IgnoredColumns) != 0 {
			t.Errorf("file %d: %+v", i+1, rep)
		}
	}
	// Shorter than the mark, or the mark alone: read, and refused for what they are.
	for _, file := range []string{"e", "\ufeff", "\xef\xbb"} {
		_, err := h.Import(cliCtx(), strings.NewReader(file), hub.ImportOptions{ImportID: "short", Reason: "migration"})
		if loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("%q: %v, want EINVALID", file, err)
		}
	}
}

// A bad name says what is wrong with it: a file saved in another encoding than UTF-8, a line
// break in a spreadsheet's cell, a tab, a name too long. All four said "at most 200 characters",
// of names of 15.
func TestImport_NamesSayWhatIsWrong(t *testing.T) {
	h := openHub(t)
	file := "email,points,name\n" +
		"n1@example.com,5,\"Multi\r\nLine Name\"\n" +
		"n2@example.com,5,J\xfcrgen M\xfcller\n" +
		"n3@example.com,5,\"Tab\there\"\n" +
		"n4@example.com,5," + strings.Repeat("x", hub.MaxNameLength+1) + "\n" +
		"n5@example.com,5,Jürgen Müller\n"
	rep := importCSV(t, h, file, hub.ImportOptions{ImportID: "names", Reason: "migration"})
	want := []string{"line break", "not UTF-8 text: a file from a spreadsheet must be saved as CSV UTF-8", "control character", "at most 200 characters"}
	if rep.Imported != 1 || len(rep.Errors) != len(want) {
		t.Fatalf("%+v", rep)
	}
	for i, e := range rep.Errors {
		if !strings.Contains(e.Reason, want[i]) {
			t.Errorf("line %d: %q, want it to say %q", e.Line, e.Reason, want[i])
		}
	}
}

// A file saved in a form the import does not read is refused with how to save it, not with its
// own bytes: UTF-16, a lone carriage return at the end of each line, semicolons between columns.
func TestImport_FileFormatsSayHowToSave(t *testing.T) {
	h := openHub(t)
	utf16 := func(s string) string { // little-endian, with its byte order mark, as Excel writes it
		b := []byte{0xff, 0xfe}
		for _, r := range s {
			b = append(b, byte(r), 0)
		}
		return string(b)
	}
	for _, tt := range []struct{ file, want string }{
		{utf16("email,points\r\nu@example.com,5\r\n"), "the file is in UTF-16, not UTF-8"},
		{"email,points\rcr1@example.com,10\rcr2@example.com,5\r", "end with a carriage return alone"},
		{"email;points\nsc@example.com;5\n", "separated by semicolons"},
		{"e\xe9mail,points\nx@example.com,5\n", "not UTF-8 text"},
	} {
		_, err := h.Import(cliCtx(), strings.NewReader(tt.file), hub.ImportOptions{ImportID: "formats", Reason: "migration"})
		if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), tt.want) || strings.ContainsRune(err.Error(), 0) || strings.Contains(err.Error(), "example.com") {
			t.Errorf("%q: %v, want EINVALID saying %q, without the file's content", tt.file, err, tt.want)
		}
	}
}

// A file of old Mac line endings longer than a row may be is one line to the CSV reader: it is
// refused for its line endings, not as a header row too long.
func TestImport_LongFileOfCarriageReturns(t *testing.T) {
	h := openHub(t)
	var b strings.Builder
	b.WriteString("email,points\r")
	for i := 0; b.Len() <= hub.MaxImportRowBytes; i++ {
		fmt.Fprintf(&b, "cr%07d@example.com,10\r", i)
	}
	_, err := h.Import(cliCtx(), strings.NewReader(b.String()), hub.ImportOptions{ImportID: "cr", Reason: "migration"})
	wantCode(t, err, loyalty.EINVALID, "end with a carriage return alone")
}
