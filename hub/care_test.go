package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Personal data of the member the care tests look after: distinctive, so that a search of the
// whole database for it finds nothing else.
const (
	careEmail = "ada.lovelace.7731@example.org"
	careName  = "Ada Qzxlovelace"
	careNote  = "prefers-qzx-oat-milk"
)

// pulled returns the copy of member that store's next full pull carries.
func pulled(t *testing.T, h *hub.Hub, store, member string) loyalty.Member {
	t.Helper()
	ch, err := h.Pull(context.Background(), store, lsync.Pull{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ch.Members {
		if m.ID == member {
			return m
		}
	}
	t.Fatalf("the pull of %s carries no member %s", store, member)
	return loyalty.Member{}
}

func TestCare_UpdateMember(t *testing.T) {
	a := openAKHub(t)
	var v hub.MemberView
	a.mustDo(t, akAdminKey, "PATCH", "/v1/members/m1", `{"email":" Ada@Example.ORG ","name":"Ada","country":"GB","birthday":"12-10",
		"attributes":{"shoe.size":"38","newsletter":"yes"}}`, http.StatusOK, &v)
	if v.Email != "ada@example.org" || v.Name != "Ada" || v.Country != "GB" || v.Birthday != "12-10" || len(v.Attributes) != 2 || v.Attributes["shoe.size"] != "38" {
		t.Fatalf("after the update: %+v", v)
	}
	before := v.Version
	if m := pulled(t, a.Hub, "s1", "m1"); m.Name != "Ada" || m.Email != "ada@example.org" || m.Birthday != "" {
		t.Errorf("store s1 pulled %+v: want the name and email, never the birthday", m)
	}
	// Only what stays at the hub: no new version for the stores.
	v = hub.MemberView{} // answers leave out empty fields
	a.mustDo(t, akAdminKey, "PATCH", "/v1/members/m1", `{"birthday":null,"attributes":{"newsletter":null,"vip":"gold"}}`, http.StatusOK, &v)
	if v.Version != before || v.Birthday != "" || v.Attributes["newsletter"] != "" || v.Attributes["vip"] != "gold" || v.Attributes["shoe.size"] != "38" {
		t.Fatalf("after a birthday and attributes update: %+v, version %d before", v, before)
	}
	// A name the stores hold: a new version. "" clears; absent fields stay.
	v = hub.MemberView{}
	a.mustDo(t, akAdminKey, "PATCH", "/v1/members/m1", `{"name":"","attributes":null}`, http.StatusOK, &v)
	if v.Version <= before || v.Name != "" || v.Email != "ada@example.org" || v.Attributes != nil {
		t.Fatalf("after clearing the name and attributes: %+v", v)
	}
	// An update that changes nothing changes nothing, not even the trail.
	a.mustDo(t, akAdminKey, "PATCH", "/v1/members/m1", `{"email":"ADA@example.org"}`, http.StatusOK, nil)

	for _, c := range []struct{ body, code string }{
		{`{"email":"x@y.z"}`, ""}, // m2 takes an email; m1's own email is refused to m2 below
		{`{"email":"not-an-email"}`, loyalty.EINVALID},
		{`{"country":"Britain"}`, loyalty.EINVALID},
		{`{"birthday":"1990-02-30"}`, loyalty.EINVALID},
		{`{"name":"a\u0007b"}`, loyalty.EINVALID},
		{`{"name":"` + strings.Repeat("n", hub.MaxNameLength+1) + `"}`, loyalty.EINVALID},
		{`{"attributes":{"Bad Key":"x"}}`, loyalty.EINVALID},
		{`{"attributes":{"k":"` + strings.Repeat("v", hub.MaxAttributeValue+1) + `"}}`, loyalty.EINVALID},
		{`{"attributes":{"k":7}}`, loyalty.EINVALID},
		{`{"balance":1000}`, loyalty.EINVALID},
		{`{"email":"ada@example.org"}`, loyalty.EDUPLICATE},
	} {
		status, body := a.do(t, akAdminKey, "PATCH", "/v1/members/m2", c.body)
		if c.code == "" {
			if status != http.StatusOK {
				t.Errorf("PATCH %s: %d %s", c.body, status, body)
			}
			continue
		}
		jsonapitest.AssertError(t, status, body, errorStatus(c.code), c.code)
	}
	// A new member's fields are held to the same rules (POST /v1/members serves the web shop's
	// sign-up form, whose member types them): nothing is created.
	for _, body := range []string{
		`{"id":"evil1","name":"\u001b]0;owned\u0007\u001b[2JRefund approved"}`,
		`{"id":"evil2","name":"` + strings.Repeat("n", hub.MaxNameLength+1) + `"}`,
		`{"id":"evil3","email":"x y\r\nbcc: a@b"}`,
		`{"id":"evil4","country":"1!"}`,
	} {
		status, resp := a.do(t, akAdminKey, "POST", "/v1/members", body)
		jsonapitest.AssertError(t, status, resp, http.StatusBadRequest, loyalty.EINVALID)
	}
	for _, id := range []string{"evil1", "evil2", "evil3", "evil4"} {
		status, resp := a.do(t, akAdminKey, "GET", "/v1/members/"+id, "")
		jsonapitest.AssertError(t, status, resp, http.StatusNotFound, loyalty.ENOTFOUND)
	}
	many := map[string]string{}
	for i := range hub.MaxAttributes + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	b, _ := json.Marshal(map[string]any{"attributes": many})
	status, body := a.do(t, akAdminKey, "PATCH", "/v1/members/m2", string(b))
	jsonapitest.AssertError(t, status, body, http.StatusBadRequest, loyalty.EINVALID)
	status, body = a.do(t, akAdminKey, "PATCH", "/v1/members/nobody", `{"name":"x"}`)
	jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)

	// The online channel may update (the member app); a report key may not.
	online := a.newKey(t, akAdminKey, "app", hub.ScopeOnline)
	report := a.newKey(t, akAdminKey, "bi", hub.ScopeReport)
	a.mustDo(t, online.Key, "PATCH", "/v1/members/m2", `{"name":"Bob"}`, http.StatusOK, nil)
	status, body = a.do(t, report.Key, "PATCH", "/v1/members/m2", `{"name":"Eve"}`)
	assertForbidden(t, status, body, hub.ScopeOnline, report.Key)
	// The online channel sets a birthday once, and never the operator's attributes: a birthday
	// moved to today would pay the birthday action again.
	a.mustDo(t, online.Key, "PATCH", "/v1/members/m2", `{"birthday":"05-17"}`, http.StatusOK, nil)
	for _, patch := range []string{`{"birthday":"12-01"}`, `{"birthday":null}`, `{"attributes":{"vip":"yes"}}`} {
		status, body = a.do(t, online.Key, "PATCH", "/v1/members/m2", patch)
		jsonapitest.AssertError(t, status, body, http.StatusForbidden, loyalty.EFORBIDDEN)
	}
	a.mustDo(t, akAdminKey, "PATCH", "/v1/members/m2", `{"birthday":"12-01","attributes":{"vip":"yes"}}`, http.StatusOK, nil)

	// The trail: who changed which fields, never the values.
	var trail []hub.AuditEntry
	a.mustDo(t, akAdminKey, "GET", "/v1/audit?limit=1000", "", http.StatusOK, &trail)
	var m1, byApp int
	for _, e := range trail {
		if e.Action != hub.AuditMemberUpdate {
			continue
		}
		if strings.Contains(e.Detail, "ada") || strings.Contains(e.Detail, "Bob") || strings.Contains(e.Detail, "gold") {
			t.Errorf("audit entry %+v holds a value", e)
		}
		if e.Target == "m1" {
			m1++
		}
		if e.KeyID == online.ID && e.Detail == "changed name" {
			byApp++
		}
	}
	if m1 != 3 || byApp != 1 {
		t.Errorf("member.update entries: %d for m1 (want 3: the no-op is not one), %d by the app's key (want 1)\n%+v", m1, byApp, trail)
	}
}

// errorStatus is the HTTP status of an error code, as the API answers it.
func errorStatus(code string) int {
	switch code {
	case loyalty.EDUPLICATE:
		return http.StatusConflict
	case loyalty.ENOTFOUND:
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

// personalLeft returns the places where the hub's database still holds one of needles: every
// row of every table, read back as text.
func personalLeft(t *testing.T, h *hub.Hub, needles ...string) []string {
	t.Helper()
	db := openRaw(t, whereOf(t, h.Store))
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if db.postgres {
		q = `SELECT quote_ident(table_name) FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	}
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("found only the tables %v", tables)
	}
	var found []string
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM ` + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				text := fmt.Sprint(v)
				if b, ok := v.([]byte); ok {
					text = string(b)
				}
				for _, n := range needles {
					if strings.Contains(strings.ToLower(text), strings.ToLower(n)) {
						found = append(found, fmt.Sprintf("%s.%s: %.200s", table, cols[i], text))
					}
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return found
}

func TestCare_EraseLeavesNothingPersonal(t *testing.T) {
	a := openAKHub(t)
	h, ctx := a.Hub, context.Background()
	a.mustDo(t, akAdminKey, "PATCH", "/v1/members/m1", `{"email":"`+careEmail+`","name":"`+careName+`","country":"NZ","birthday":"1990-07-14",
		"attributes":{"note":"`+careNote+`"}}`, http.StatusOK, nil)
	// Deltas that carry the member's country, as a store saw it, and one the hub rejects.
	e1, e2 := earn("s1", "m1", 5000), earn("s1", "m1", 2500)
	e1.Country, e2.Country = "NZ", "NZ"
	bad := redeem("s1", "m1", "no-such-reward", 10)
	bad.Country = "NZ"
	ack := pushOK(t, h, "s1", e1, e2, bad)
	if ack.Results[2].Status != lsync.StatusRejected {
		t.Fatalf("the redemption of an unknown reward was %+v, want rejected", ack.Results[2])
	}
	if m := pulled(t, h, "s1", "m1"); m.Name != careName {
		t.Fatalf("store s1 holds %+v before the erasure", m)
	}
	var token struct{ Token string }
	a.mustDo(t, akAdminKey, "GET", "/v1/members/m1/qr", "", http.StatusOK, &token)
	if left := personalLeft(t, h, careEmail, careName, careNote); len(left) == 0 {
		t.Fatal("the search finds nothing before the erasure: it would prove nothing after it")
	}
	bal := balance(t, h, "m1")

	report := a.newKey(t, akAdminKey, "bi", hub.ScopeReport)
	status, body := a.do(t, report.Key, "POST", "/v1/members/m1/erase", "")
	assertForbidden(t, status, body, hub.ScopeAdmin, report.Key)
	var v hub.MemberView
	a.mustDo(t, akAdminKey, "POST", "/v1/members/m1/erase", "", http.StatusOK, &v)
	if v.Email != "" || v.Name != "" || v.Country != "" || v.Birthday != "" || v.Attributes != nil || v.ErasedAt.IsZero() || !v.Erased {
		t.Fatalf("the erased member: %+v", v)
	}
	if left := personalLeft(t, h, careEmail, careName, careNote); len(left) > 0 {
		t.Errorf("personal data left after the erasure:\n%s", strings.Join(left, "\n"))
	}
	// Nor in the file's free space (SQLite's secure_delete), nor in the WAL's pages of before the
	// erasure: the hub checkpointed and emptied it.
	if !onPostgres() {
		raw := storedBytes(t, whereOf(t, h.Store))
		for _, s := range []string{careEmail, careName, careNote} {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("the database file or its WAL still holds %q", s)
			}
		}
	}
	// The ledger, balance and checks stand; the deltas no longer carry the country.
	if got := balance(t, h, "m1"); got != bal {
		t.Errorf("balance %d after the erasure, want %d", got, bal)
	}
	mustCheck(t, h)
	full, err := h.Member(ctx, "m1", 100)
	if err != nil || len(full.Ledger) < 2 {
		t.Fatalf("ledger after the erasure: %+v, %v", full.Ledger, err)
	}
	for _, e := range full.Ledger {
		if e.Country != "" {
			t.Errorf("delta %s still carries the country %q", e.ID, e.Country)
		}
	}
	rej, _ := h.Rejections(ctx, 10)
	for _, r := range rej {
		if r.Delta.Member == "m1" && r.Delta.Country != "" {
			t.Errorf("rejected delta %s still carries the country", r.Delta.ID)
		}
	}
	// A replay of an applied delta is still a duplicate, not a new or altered one.
	if ack := pushOK(t, h, "s1", e1); ack.Results[0].Status != lsync.StatusDuplicate {
		t.Errorf("a replay after the erasure: %+v, want duplicate", ack.Results[0])
	}
	// Stores drop the personal fields at their next pull, and learn the member was erased.
	if m := pulled(t, h, "s1", "m1"); m.Name != "" || m.Email != "" || m.Country != "" || !m.Erased || m.Balance != bal {
		t.Errorf("store s1 pulled %+v after the erasure", m)
	}
	// The member's codes stop working: none is issued, and an old one is refused.
	status, body = a.do(t, akAdminKey, "GET", "/v1/members/m1/qr", "")
	jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)
	status, body = a.do(t, akAdminKey, "POST", "/v1/earn", `{"order_id":"o-after","qr":"`+token.Token+`","amount":1000,"currency":"EUR"}`)
	jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)
	// Once only; and nothing personal can be set again.
	status, body = a.do(t, akAdminKey, "POST", "/v1/members/m1/erase", "")
	jsonapitest.AssertError(t, status, body, http.StatusConflict, loyalty.EDUPLICATE)
	status, body = a.do(t, akAdminKey, "PATCH", "/v1/members/m1", `{"name":"`+careName+`"}`)
	jsonapitest.AssertError(t, status, body, http.StatusBadRequest, loyalty.EINVALID)
	status, body = a.do(t, akAdminKey, "POST", "/v1/members/nobody/erase", "")
	jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)
	// The trail says who erased, once.
	trail, _ := h.Audit(ctx, 100)
	var erasures []hub.AuditEntry
	for _, e := range trail {
		if e.Action == hub.AuditMemberErase {
			erasures = append(erasures, e)
		}
	}
	if len(erasures) != 1 || erasures[0].KeyID != hub.ConfigActor.KeyID || erasures[0].Target != "m1" {
		t.Errorf("member.erase entries: %+v", erasures)
	}
}

func TestCare_Export(t *testing.T) {
	defer hub.SetExportPage(3)() // several pages from a short ledger
	a := openAKHub(t)
	h, ctx := a.Hub, context.Background()
	a.mustDo(t, akAdminKey, "PATCH", "/v1/members/m1", `{"email":"`+careEmail+`","birthday":"07-14","attributes":{"note":"`+careNote+`"}}`, http.StatusOK, nil)
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m3", ReferredBy: "m1"}); err != nil {
		t.Fatal(err)
	}
	var ds []loyalty.Delta
	for i := range 7 {
		ds = append(ds, earn("s1", "m1", int64(1000+i)))
	}
	ds = append(ds, earn("s1", "m2", 999)) // another member's: not in m1's export
	pushOK(t, h, "s1", ds...)

	resp, err := http.DefaultClient.Do(mustRequest(t, "GET", a.URL+"/v1/members/m1/export", akAdminKey))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("export: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), buf.Bytes())
	}
	var out struct {
		hub.MemberExport
		Ledger []hub.LedgerEntry `json:"ledger"`
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("export is not one JSON document: %v", err)
	}
	if out.Member.ID != "m1" || out.Member.Email != careEmail || out.Member.Birthday != "07-14" || out.Attributes["note"] != careNote {
		t.Errorf("exported member %+v, attributes %v", out.Member, out.Attributes)
	}
	if len(out.Referred) != 1 || out.Referred[0] != "m3" {
		t.Errorf("referred %v, want [m3]", out.Referred)
	}
	if len(out.Ledger) != 7 {
		t.Fatalf("exported %d ledger entries, want m1's 7", len(out.Ledger))
	}
	for i, e := range out.Ledger {
		if e.Member != "m1" || e.Amount != int64(1000+i) || i > 0 && e.Seq <= out.Ledger[i-1].Seq {
			t.Errorf("ledger entry %d: %+v (want m1's, oldest first)", i, e)
		}
	}
	var update bool
	for _, e := range out.Audit {
		update = update || e.Action == hub.AuditMemberUpdate && e.Target == "m1"
	}
	if !update || out.Vouchers == nil || out.Conflicts == nil || out.Rejections == nil {
		t.Errorf("export's records: %+v", out.MemberRecords)
	}
	status, body := a.do(t, akAdminKey, "GET", "/v1/members/nobody/export", "")
	jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)
	online := a.newKey(t, akAdminKey, "app", hub.ScopeOnline)
	status, body = a.do(t, online.Key, "GET", "/v1/members/m1/export", "")
	assertForbidden(t, status, body, hub.ScopeAdmin, online.Key)
}

func mustRequest(t *testing.T, method, url, key string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	return req
}

// A webhook receiver that answers an error quoting the body it got (as a validating receiver
// does) leaves the member's data in the delivery's last error; the erasure clears it, in every
// table of either backend, and in what GET /v1/webhooks/{id}/deliveries shows.
func TestCare_EraseClearsWebhookDeliveryErrors(t *testing.T) {
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
		w.Write(append([]byte("rejected payload: "), b...))
	}))
	defer rcv.Close()
	a := openAKHub(t)
	var wh hub.NewWebhook
	a.mustDo(t, akAdminKey, "POST", "/v1/webhooks", `{"url":"`+rcv.URL+`/x","events":["member.created"]}`, http.StatusCreated, &wh)
	a.mustDo(t, akAdminKey, "POST", "/v1/members", `{"id":"mx","email":"`+careEmail+`","name":"`+careName+`","country":"NZ"}`, http.StatusCreated, nil)
	if _, err := hub.NewWebhookSender(a.Hub).DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, body := a.do(t, akAdminKey, "GET", "/v1/webhooks/"+wh.Webhook.ID+"/deliveries", ""); !strings.Contains(string(body), careEmail) {
		t.Fatalf("the receiver's answer did not quote the member (the test tests nothing): %s", body)
	}
	a.mustDo(t, akAdminKey, "POST", "/v1/members/mx/erase", "", http.StatusOK, nil)
	if left := personalLeft(t, a.Hub, careEmail, careName); len(left) > 0 {
		t.Errorf("after the erasure the member's data is still in: %s", strings.Join(left, "; "))
	}
	if _, body := a.do(t, akAdminKey, "GET", "/v1/webhooks/"+wh.Webhook.ID+"/deliveries", ""); strings.Contains(string(body), careEmail) ||
		!strings.Contains(string(body), "erased") {
		t.Errorf("the deliveries after the erasure: %s", body)
	}

	// An attempt under way when a member is erased, whose answer quotes the old body, records
	// nothing: its claim ended with the erasure.
	a.mustDo(t, akAdminKey, "POST", "/v1/members", `{"id":"my","email":"`+careEmail+`","name":"`+careName+`"}`, http.StatusCreated, nil)
	var claimed []hub.WebhookAttempt
	if err := a.Hub.Store.Update(hub.Bookkeeping(context.Background()), func(tx hub.Tx) error {
		var err error
		claimed, err = tx.ClaimWebhookDeliveries(context.Background(), a.Hub.Now(), "", func(int) time.Duration { return time.Hour }, 100)
		return err
	}); err != nil || len(claimed) != 1 {
		t.Fatalf("claimed %d (%v), want my's member.created", len(claimed), err)
	}
	a.mustDo(t, akAdminKey, "POST", "/v1/members/my/erase", "", http.StatusOK, nil)
	c := claimed[0]
	late := []hub.WebhookOutcome{{Endpoint: c.Endpoint, Event: c.Event, ClaimedUntil: c.ClaimedUntil, Attempts: c.Attempts + 1,
		State: hub.DeliveryPending, At: a.Hub.Now(), NextAt: a.Hub.Now(), Status: 400, Error: "rejected payload: " + careEmail}}
	var wrote int
	if err := a.Hub.Store.Update(hub.Bookkeeping(context.Background()), func(tx hub.Tx) error {
		var err error
		wrote, err = tx.RecordWebhookOutcomes(context.Background(), late)
		return err
	}); err != nil || wrote != 0 {
		t.Errorf("the attempt under way at the erasure recorded %d outcomes (%v), want 0", wrote, err)
	}
	if left := personalLeft(t, a.Hub, careEmail, careName); len(left) > 0 {
		t.Errorf("after the second erasure the member's data is still in: %s", strings.Join(left, "; "))
	}
}

// A country in lower case is read in upper case, by the API as by an import ("de" was refused
// at POST /v1/members and PATCH, taken by the import); a name of a country is refused as given.
func TestCare_CountryInAnyCase(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "c1", Country: "de"}); err != nil {
		t.Fatal(err)
	}
	v, err := h.UpdateMember(ctx, "c1", hub.MemberPatch{Country: hub.Text{Set: true, Value: "fr"}})
	if err != nil || v.Country != "FR" {
		t.Fatalf("update to fr: %+v, %v", v.Country, err)
	}
	_, err = h.CreateMember(ctx, loyalty.Member{ID: "c2", Country: "Germany"})
	wantCode(t, err, loyalty.EINVALID, `got "Germany"`)
	rep := importCSV(t, h, "email,points,country\nc3@example.com,5,de\nc4@example.com,5,Germany\n", hub.ImportOptions{ImportID: "countries", Reason: "migration"})
	if rep.Imported != 1 || len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0].Reason, `got "Germany"`) {
		t.Errorf("import: %+v", rep)
	}
}
