package hub_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// A search by name goes through the names' trigram index, which follows every write of a name:
// a new member, an imported one, a changed name, an erased one. The texts an index query could
// read as its own syntax are plain text.
func TestSearchMembers_ByNameFollowsEveryWrite(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	for i, name := range []string{`Ann "Nan" Lee`, "Zoë Öztürk", "50% off_Ann", `back\slash NEAR(x)`, "Bob OR Ann*", "王芳"} {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("x%d", i), Name: name, HomeStore: "s2"}); err != nil {
			t.Fatal(err)
		}
	}
	importCSV(t, h, "email,points,name\nimp1@example.com,5,Annabel Imported\nimp2@example.com,5,\n", hub.ImportOptions{ImportID: "i1", Reason: "migration"})
	imported, err := h.SearchMembers(ctx, hub.MemberFilter{Email: "imp1@example.com"}, "", 10)
	if err != nil || len(imported.Members) != 1 {
		t.Fatalf("the imported member: %+v, %v", imported, err)
	}
	imp := imported.Members[0].ID

	search := func(name string, after string, limit int) string {
		t.Helper()
		p, err := h.SearchMembers(ctx, hub.MemberFilter{Name: name}, after, limit)
		if err != nil {
			t.Fatalf("search %q: %v", name, err)
		}
		var out []string
		for _, m := range p.Members {
			out = append(out, strings.Replace(m.ID, imp, "imp1", 1))
		}
		return strings.Join(out, ",") + "|" + strings.Replace(p.Next, imp, "imp1", 1)
	}
	check := func(name, want string) {
		t.Helper()
		if got := search(name, "", 10); got != want {
			t.Errorf("search %q: %s, want %s", name, got, want)
		}
	}
	check("ann", "imp1,x0,x2,x4|") // the imported member's id, generated, comes first
	check("nnabel imp", "imp1|")
	check(`"nan"`, "x0|")
	check(`n "n`, "x0|")
	check("Öztürk", "x1|")
	check("ZTü", "x1|")
	check("öZTÜRK", "x1|")    // every letter's case, on SQLite as on PostgreSQL
	check("50%", "x2|")       // % and _ are plain characters
	check("0_a", "|")         // _ is no wildcard
	check(`k\s`, "x3|")       // nor is the backslash an escape
	check("NEAR(x)", "x3|")   // index query syntax is plain text
	check("OR Ann*", "x4|")   // so are its operators and prefix star
	check("Ann AND Lee", "|") // and AND is a word like any other
	check("nobody at all", "|")
	if got := search("ann", "", 3); got != "imp1,x0,x2|x2" {
		t.Errorf("page 1: %s", got)
	}
	if got := search("ann", "x2", 3); got != "x4|" {
		t.Errorf("page 2: %s", got)
	}

	// A changed name is found by its new text only; an erased one by none.
	if _, err := h.UpdateMember(ctx, "x0", hub.MemberPatch{Name: hub.Text{Set: true, Value: "Quentin Blake"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.EraseMember(ctx, "x4"); err != nil {
		t.Fatal(err)
	}
	check("ann", "imp1,x2|")
	check("quentin", "x0|")
	check("Lee", "|")
	check("Bob", "|")

	// Texts too short for a trigram are looked for in every member's name: a name of two
	// characters (王芳) is found, as before the index.
	check("王芳", "x5|")
	check("芳", "x5|")
	check("an", "imp1,x2|")
	check("_A", "x2|")
	check("Ö", "x1|")

	if !onPostgres() {
		// The index agrees with the names it indexes (the plan is hub/sqlite's
		// TestNameSearchUsesTheIndex).
		db := openRaw(t, whereOf(t, h.Store))
		if _, err := db.Exec(`INSERT INTO member_names (member_names, rank) VALUES ('integrity-check', 1)`); err != nil {
			t.Errorf("the names' index disagrees with the members: %v", err)
		}
	}
}

// An erased name leaves nothing in the names' index, not even its trigrams in the file: the index
// deletes at once (FTS5's secure-delete), and the erasure's secure_delete overwrites the space.
func TestSearchMembers_ErasedNameLeavesNoTrigrams(t *testing.T) {
	skipOnPostgres(t, "the bytes of SQLite's file")
	h := openHub(t)
	ctx := context.Background()
	// Trigrams no other text in the database holds; the index stores each term in lower case.
	const name = "Qxjzv Wkqpy"
	trigrams := []string{"qxj", "xjz", "jzv", "wkq", "kqp", "qpy"}
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "e1", Name: name, HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("o%02d", i), Name: fmt.Sprintf("Other Member %d", i), HomeStore: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	present := func() []string {
		raw := storedBytes(t, whereOf(t, h.Store))
		var found []string
		for _, g := range trigrams {
			if bytes.Contains(raw, []byte(g)) {
				found = append(found, g)
			}
		}
		return found
	}
	if len(present()) == 0 {
		t.Fatal("no trigram of the name is in the file before the erasure: the test would prove nothing")
	}
	if _, err := h.EraseMember(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if left := present(); len(left) > 0 {
		t.Errorf("the file still holds the erased name's trigrams %v", left)
	}
	if p, err := h.SearchMembers(ctx, hub.MemberFilter{Name: "qxjzv"}, "", 10); err != nil || len(p.Members) != 0 {
		t.Errorf("the erased name is still found: %+v, %v", p, err)
	}
}

// TestSearchMembers_ByHomeStoreAndTierFollowEveryWrite: a search by home store or by tier reads
// an index of its own (on PostgreSQL a table kept by triggers), which follows every write: a new
// member, imported ones, a tier reached by a sale. Pages go on after the page before.
func TestSearchMembers_ByHomeStoreAndTierFollowEveryWrite(t *testing.T) {
	h, now := goldHub(t)
	ctx := context.Background()
	for _, m := range []loyalty.Member{{ID: "a1", HomeStore: "s1"}, {ID: "a2", HomeStore: "s2"}, {ID: "a3", HomeStore: "s1"}} {
		if _, err := h.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	importCSV(t, h, "member_id,points,home_store\nb1,5,s1\nb2,5,s2\n", hub.ImportOptions{ImportID: "groups", Reason: "migration"})
	*now = now.Add(time.Minute)
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "big", MemberID: "a3", Amount: 20_000, Currency: "EUR"}); err != nil {
		t.Fatal(err) // a3 reaches gold
	}
	for _, c := range []struct {
		f     hub.MemberFilter
		after string
		limit int
		want  string
	}{
		{hub.MemberFilter{HomeStore: "s1"}, "", 10, "a1,a3,b1,m1|"}, // m1 and m2: goldHub's
		{hub.MemberFilter{HomeStore: "s1"}, "", 2, "a1,a3|a3"},
		{hub.MemberFilter{HomeStore: "s1"}, "a3", 2, "b1,m1|"},
		{hub.MemberFilter{HomeStore: "s1"}, "m1", 2, "|"},
		{hub.MemberFilter{HomeStore: "s2"}, "", 10, "a2,b2,m2|"},
		{hub.MemberFilter{Tier: "gold"}, "", 10, "a3|"},
		{hub.MemberFilter{Tier: "gold", HomeStore: "s1"}, "a1", 10, "a3|"},
		{hub.MemberFilter{Tier: "gold", HomeStore: "s1"}, "a3", 10, "|"},
		{hub.MemberFilter{Tier: "gold", HomeStore: "s2"}, "", 10, "|"},
		{hub.MemberFilter{HomeStore: "nowhere"}, "", 10, "|"},
	} {
		if got := searchIDs(t, h, c.f, c.after, c.limit); got != c.want {
			t.Errorf("search %+v after %q, %d a page: %s; want %s", c.f, c.after, c.limit, got, c.want)
		}
	}
	// A tier review that moves members (those never placed go into the entry tier) moves them in
	// the search too: each tier's search finds the members who hold it, and only them.
	if got := searchIDs(t, h, hub.MemberFilter{Tier: "base"}, "", 10); got != "b1,b2|" {
		t.Fatalf("base before the review: %s; want only the imported members, placed by the import", got)
	}
	*now = now.AddDate(2, 0, 0)
	if _, err := h.Requalify(ctx); err != nil {
		t.Fatal(err)
	}
	byTier := map[string][]string{}
	for _, id := range []string{"a1", "a2", "a3", "b1", "b2", "m1", "m2"} {
		m, err := h.Member(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		byTier[m.Tier] = append(byTier[m.Tier], id)
	}
	if len(byTier["base"]) < 4 {
		t.Fatalf("members by tier after the review: %v; want most placed in base", byTier)
	}
	for tier, ids := range byTier {
		if got, want := searchIDs(t, h, hub.MemberFilter{Tier: tier}, "", 10), strings.Join(ids, ",")+"|"; got != want {
			t.Errorf("tier %q after the review: %s; want %s", tier, got, want)
		}
	}
}

// searchIDs is a page of h.SearchMembers as its members' ids and its next, "x0,x1|x1".
func searchIDs(t *testing.T, h *hub.Hub, f hub.MemberFilter, after string, limit int) string {
	t.Helper()
	p, err := h.SearchMembers(context.Background(), f, after, limit)
	if err != nil {
		t.Fatalf("search %+v: %v", f, err)
	}
	var out []string
	for _, m := range p.Members {
		out = append(out, m.ID)
	}
	return strings.Join(out, ",") + "|" + p.Next
}
