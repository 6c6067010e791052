package hub_test

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// TestAudit_PagesAndFilters: GET /v1/audit pages back through the whole trail (before) and filters
// it by action, by a family of actions, and by key. Without pages, a web shop's key signing up a
// thousand members put every older admin change out of reach.
func TestAudit_PagesAndFilters(t *testing.T) {
	a := openAKHub(t)
	shop := a.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)
	report := a.newKey(t, akAdminKey, "finance", hub.ScopeReport)
	a.mustDo(t, akAdminKey, "DELETE", "/v1/api-keys/"+report.ID, "", http.StatusOK, nil)
	const signups = 25
	for i := range signups {
		a.mustDo(t, shop.Key, "POST", "/v1/members", fmt.Sprintf(`{"id":"w%d","email":"w%d@example.com"}`, i, i), http.StatusCreated, nil)
	}
	page := func(query string) []hub.AuditEntry {
		t.Helper()
		var es []hub.AuditEntry
		a.mustDo(t, akAdminKey, "GET", "/v1/audit?"+query, "", http.StatusOK, &es)
		return es
	}
	var all []hub.AuditEntry
	for before := int64(0); ; {
		q := url.Values{"limit": {"7"}}
		if before > 0 {
			q.Set("before", fmt.Sprint(before))
		}
		es := page(q.Encode())
		if len(es) == 0 {
			break
		}
		if len(es) > 7 {
			t.Fatalf("a page of %d entries, limit 7", len(es))
		}
		all = append(all, es...)
		before = es[len(es)-1].Seq
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq >= all[i-1].Seq {
			t.Fatalf("entry %d's seq %d after %d: pages overlap or are out of order", i, all[i].Seq, all[i-1].Seq)
		}
	}
	count := func(es []hub.AuditEntry, keep func(hub.AuditEntry) bool) int {
		n := 0
		for _, e := range es {
			if keep(e) {
				n++
			}
		}
		return n
	}
	if all[len(all)-1].Seq != 1 || count(all, func(e hub.AuditEntry) bool { return e.Action == hub.AuditAPIKeyAdd && e.Target == shop.ID }) != 1 ||
		count(all, func(e hub.AuditEntry) bool { return e.Action == "member.add" && e.KeyID == shop.ID }) != signups {
		t.Fatalf("the pages hold %d entries, the oldest %+v; want the whole trail: down to seq 1, the web shop key's, its %d sign-ups",
			len(all), all[len(all)-1], signups)
	}
	var revoked, added int64 // the report key's revocation, and the second newest key's addition
	var adds []int64
	for _, e := range all {
		switch e.Action {
		case hub.AuditAPIKeyRevoke:
			revoked = e.Seq
		case hub.AuditAPIKeyAdd:
			adds = append(adds, e.Seq)
		}
	}
	if revoked == 0 || len(adds) < 2 {
		t.Fatalf("the trail holds no revocation or fewer than two keys added: %+v", all)
	}
	added = adds[1] // all is newest first
	for _, tt := range []struct {
		query string
		keep  func(hub.AuditEntry) bool
	}{
		{"action=api_key.add", func(e hub.AuditEntry) bool { return e.Action == "api_key.add" }},
		{"action=api_key.*", func(e hub.AuditEntry) bool { return e.Action == "api_key.add" || e.Action == "api_key.revoke" }},
		{"key_id=" + shop.ID, func(e hub.AuditEntry) bool { return e.KeyID == shop.ID }},
		{"key_id=" + shop.ID + "&action=member.add&limit=1000", func(e hub.AuditEntry) bool { return e.KeyID == shop.ID && e.Action == "member.add" }},
		{"limit=1000&before=3000000000", func(hub.AuditEntry) bool { return true }}, // beyond 32 bits
		{"action=member.add&before=" + fmt.Sprint(all[signups/2].Seq), func(e hub.AuditEntry) bool {
			return e.Action == "member.add" && e.Seq < all[signups/2].Seq
		}},
		// A family's actions are read one by one and merged: the page is the newest of them all.
		{"action=api_key.*&limit=1", func(e hub.AuditEntry) bool { return e.Action == "api_key.revoke" }},
		{"action=api_key.*&limit=2&before=" + fmt.Sprint(revoked), func(e hub.AuditEntry) bool {
			return e.Action == "api_key.add" && e.Seq < revoked && e.Seq >= added
		}},
		{"action=api_key.*&key_id=config", func(e hub.AuditEntry) bool { return strings.HasPrefix(e.Action, "api_key.") && e.KeyID == "config" }},
	} {
		es := page(tt.query)
		if want := count(all, tt.keep); len(es) != want || count(es, tt.keep) != want || want == 0 {
			t.Errorf("%s: %d entries, %d of them as asked; want the %d of the trail", tt.query, len(es), count(es, tt.keep), want)
		}
	}
	for _, query := range []string{"before=0", "before=x", "before=-3", "action=member%20add", "action=*", "action=member.add.*", "limit=0",
		"action=member.addd", "action=members.add", "action=point.*"} { // no such action: refused, not an empty page
		if status, body := a.do(t, akAdminKey, "GET", "/v1/audit?"+query, ""); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400 EINVALID", query, status, body)
		}
	}
}

// TestAuditActions_ListsEveryAction: the actions a filter may name (hub.AuditActions) are every
// Audit… constant of the package, so that adding an action without listing it fails here rather
// than making its filter refused.
func TestAuditActions_ListsEveryAction(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var found []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, id := range spec.Names {
				if !strings.HasPrefix(id.Name, "Audit") || i >= len(spec.Values) {
					continue
				}
				if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					found = append(found, id.Name)
					if action, _ := strconv.Unquote(lit.Value); !slices.Contains(hub.AuditActions, action) {
						t.Errorf("%s (%s) is not in hub.AuditActions: a filter for it is refused", id.Name, action)
					}
				}
			}
			return true
		})
	}
	if len(found) < len(hub.AuditActions) {
		t.Fatalf("found %d Audit constants (%v), and hub.AuditActions lists %d", len(found), found, len(hub.AuditActions))
	}
}

// TestAudit_ProgramPublishSaysWhatChanged: a publication's entry names the rewards and campaigns
// switched off or on, added or removed, and the budgets whose limits changed: the trail shows
// which kill switch an operator pulled, not only that a version was published.
func TestAudit_ProgramPublishSaysWhatChanged(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 100}}
	})
	p, err := h.Program(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Rewards[0].Disabled = true
	p.Budgets[0].Limit = 150
	p.Campaigns = append(p.Campaigns, loyalty.Campaign{ID: "weekend", Name: "Weekend", Multiplier: 2000,
		Start: t0, End: t0.Add(48 * time.Hour)})
	if _, err := h.SetProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	es, err := h.AuditPage(ctx, hub.AuditQuery{Limit: 1, Action: hub.AuditProgramPublish})
	if err != nil || len(es) != 1 {
		t.Fatalf("entries %+v, %v", es, err)
	}
	for _, want := range []string{"rewards switched off: " + p.Rewards[0].ID, "campaigns added: weekend", "budgets: coffees limit 100 to 150"} {
		if !strings.Contains(es[0].Detail, want) {
			t.Errorf("the publication's audit detail %q does not say %q", es[0].Detail, want)
		}
	}
	p.Rewards[0].Disabled = false
	if _, err := h.SetProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	if es, err = h.AuditPage(ctx, hub.AuditQuery{Limit: 1, Action: hub.AuditProgramPublish}); err != nil || len(es) != 1 ||
		!strings.HasSuffix(es[0].Detail, "; rewards switched on: "+p.Rewards[0].ID) {
		t.Fatalf("switched back on: %+v, %v", es, err)
	}
}

// auditSpy records the audit queries a hub's reads send to its store.
type auditSpy struct {
	hub.Store
	queries *[]hub.AuditQuery
}

func (s auditSpy) View(ctx context.Context, fn func(hub.Tx) error) error {
	return s.Store.View(ctx, func(tx hub.Tx) error { return fn(auditSpyTx{tx, s.queries}) })
}

type auditSpyTx struct {
	hub.Tx
	queries *[]hub.AuditQuery
}

func (t auditSpyTx) Audit(ctx context.Context, q hub.AuditQuery) ([]hub.AuditEntry, error) {
	*t.queries = append(*t.queries, q)
	return t.Tx.Audit(ctx, q)
}

// TestAudit_FamilyReadActionByAction: a page of a family of actions asks the store for each of
// its actions (each along its index), never for the family, whose condition on a prefix no
// index serves: with a web shop's sign-ups in the trail, it read the whole trail.
func TestAudit_FamilyReadActionByAction(t *testing.T) {
	var queries []hub.AuditQuery
	h := hubOn(t, auditSpy{newStore(t), &queries})
	if _, err := h.AuditPage(context.Background(), hub.AuditQuery{Action: "webhook.*", KeyID: "cli", Before: 40, Limit: 5}); err != nil {
		t.Fatal(err)
	}
	var asked []string
	for _, q := range queries {
		if strings.HasSuffix(q.Action, "*") || !strings.HasPrefix(q.Action, "webhook.") || q.KeyID != "cli" || q.Before != 40 || q.Limit != 5 {
			t.Errorf("the store was asked %+v", q)
		}
		asked = append(asked, q.Action)
	}
	var want []string
	for _, a := range hub.AuditActions {
		if strings.HasPrefix(a, "webhook.") {
			want = append(want, a)
		}
	}
	if !slices.Equal(asked, want) {
		t.Errorf("actions asked %v, want each of the family's: %v", asked, want)
	}
}
