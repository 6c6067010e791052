package hub_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

const akAdminKey = "bootstrap-admin-key-0123456789"

// akHub is a hub (openHub: stores s1, s2, members m1, m2) behind its HTTP API's handler.
type akHub struct {
	Hub *hub.Hub
	URL string
}

func openAKHub(t *testing.T) *akHub {
	t.Helper()
	h := openHub(t)
	sync := lsync.NewServer(h)
	sync.Logger = slog.New(slog.DiscardHandler)
	srv := &hub.Server{Hub: h, Sync: sync, AdminKey: akAdminKey, Logger: slog.New(slog.DiscardHandler)}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &akHub{Hub: h, URL: ts.URL}
}

// do sends a request with key as the bearer key ("" for none) and returns the status and body.
func (a *akHub) do(t *testing.T, key, method, path, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// mustDo requires the given status and decodes the answer into out (if not nil).
func (a *akHub) mustDo(t *testing.T, key, method, path, body string, status int, out any) {
	t.Helper()
	got, b := a.do(t, key, method, path, body)
	if got != status {
		t.Fatalf("%s %s: status %d %s, want %d", method, path, got, b, status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// newKey creates an API key through the API with the given bearer key and returns the answer.
func (a *akHub) newKey(t *testing.T, by, name string, scope hub.Scope) hub.NewAPIKey {
	t.Helper()
	var k hub.NewAPIKey
	a.mustDo(t, by, "POST", "/v1/api-keys", `{"name":"`+name+`","scope":"`+string(scope)+`"}`, http.StatusCreated, &k)
	if k.ID == "" || k.Key == "" || k.Name != name || k.Scope != scope || k.CreatedAt.IsZero() {
		t.Fatalf("created key %+v: want an id, a key, the name %q and the scope %s", k, name, scope)
	}
	return k
}

// assertForbidden checks a 403 EFORBIDDEN whose message names the scope needed and not the key.
func assertForbidden(t *testing.T, status int, body []byte, need hub.Scope, secret string) {
	t.Helper()
	jsonapitest.AssertError(t, status, body, http.StatusForbidden, loyalty.EFORBIDDEN)
	if !strings.Contains(string(body), "scope "+string(need)) {
		t.Errorf("403 %s does not name the scope needed (%s)", body, need)
	}
	if strings.Contains(string(body), secret) {
		t.Errorf("403 %s repeats the key", body)
	}
}

// TestAPIKeys_OnlineScope: an online key earns and redeems, but cannot publish a program, add a
// store, create a key or read the audit trail; nothing it was refused changed anything.
func TestAPIKeys_OnlineScope(t *testing.T) {
	a := openAKHub(t)
	ctx := context.Background()
	shop := a.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)

	var r loyalty.Receipt
	a.mustDo(t, shop.Key, "POST", "/v1/earn", `{"order_id":"WEB-1","member_id":"m1","amount":10000,"currency":"EUR"}`, http.StatusOK, &r)
	if r.Points != 100 || r.Balance != 100 {
		t.Fatalf("earn with the online key: %+v, want 100 points", r)
	}
	a.mustDo(t, shop.Key, "POST", "/v1/redeem", `{"order_id":"WEB-2","member_id":"m1","reward_id":"coffee"}`, http.StatusOK, &r)
	if r.Points != -50 || r.Balance != 50 {
		t.Fatalf("redeem with the online key: %+v, want -50 points and 50 left", r)
	}
	a.mustDo(t, shop.Key, "GET", "/v1/members/m1", "", http.StatusOK, nil)
	a.mustDo(t, shop.Key, "GET", "/v1/members/m1/qr", "", http.StatusOK, nil)
	a.mustDo(t, shop.Key, "GET", "/v1/rewards", "", http.StatusOK, nil)

	before, err := a.Hub.Program(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := loyalty.DefaultProgram()
	p.Earn.PointsPerUnit = 100
	pj, _ := json.Marshal(p)
	status, body := a.do(t, shop.Key, "PUT", "/v1/program", string(pj))
	assertForbidden(t, status, body, hub.ScopeAdmin, shop.Key)
	if after, err := a.Hub.Program(ctx); err != nil || after.Version != before.Version {
		t.Errorf("program version %d after a refused publish (%v), want %d", after.Version, err, before.Version)
	}

	status, body = a.do(t, shop.Key, "POST", "/v1/stores", `{"id":"evil"}`)
	assertForbidden(t, status, body, hub.ScopeAdmin, shop.Key)
	stores, err := a.Hub.Stores(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		if s.ID == "evil" {
			t.Errorf("the online key added store %q", s.ID)
		}
	}

	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/api-keys", `{"name":"mine","scope":"admin"}`},
		{"GET", "/v1/api-keys", ""},
		{"GET", "/v1/audit", ""},
		{"GET", "/v1/stores", ""},
		{"POST", "/v1/keys/rotate", ""},
		{"GET", "/v1/keys", ""},
	} {
		status, body := a.do(t, shop.Key, c.method, c.path, c.body)
		jsonapitest.AssertError(t, status, body, http.StatusForbidden, loyalty.EFORBIDDEN)
	}
	keys, err := a.Hub.APIKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Errorf("%d keys (%v) after the online key tried to make one, want 1", len(keys), err)
	}
}

// TestAPIKeys_ReportScope: a report key reads but changes nothing, and cannot print a QR code.
func TestAPIKeys_ReportScope(t *testing.T) {
	a := openAKHub(t)
	rep := a.newKey(t, akAdminKey, "finance dashboard", hub.ScopeReport)
	for _, path := range []string{"/v1/stores", "/v1/budgets", "/v1/conflicts", "/v1/rejections", "/v1/check",
		"/v1/expiring", "/v1/program", "/v1/rewards", "/v1/members/m1", "/v1/audit"} {
		a.mustDo(t, rep.Key, "GET", path, "", http.StatusOK, nil)
	}
	for _, c := range []struct {
		method, path, body string
		need               hub.Scope
	}{
		{"POST", "/v1/stores", `{"id":"s9"}`, hub.ScopeAdmin},
		{"POST", "/v1/members", `{"id":"m9"}`, hub.ScopeOnline},
		{"POST", "/v1/earn", `{"order_id":"R-1","member_id":"m1","amount":10000,"currency":"EUR"}`, hub.ScopeOnline},
		{"POST", "/v1/stores/s1/token", "", hub.ScopeAdmin},
		{"GET", "/v1/members/m1/qr", "", hub.ScopeOnline},
		{"GET", "/v1/api-keys", "", hub.ScopeAdmin},
	} {
		status, body := a.do(t, rep.Key, c.method, c.path, c.body)
		assertForbidden(t, status, body, c.need, rep.Key)
	}
	// No endpoint: 404 for any valid key, as before.
	status, body := a.do(t, rep.Key, "GET", "/v1/nothing", "")
	jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)
	status, body = a.do(t, rep.Key, "DELETE", "/v1/members/m1", "")
	jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)
	m, err := a.Hub.Member(context.Background(), "m1", 10)
	if err != nil || m.Balance != 0 || len(m.Ledger) != 0 {
		t.Errorf("m1 after the report key's refused earn: %+v, %v; want no ledger", m, err)
	}
	if _, err := a.Hub.Member(context.Background(), "m9", 0); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("member m9 after a refused create: %v, want ENOTFOUND", err)
	}
}

// TestAPIKeys_Revoke: a revoked key is refused with 401 at its very next request; other keys
// keep working; unknown keys are refused the same way and the answers never repeat the key.
func TestAPIKeys_Revoke(t *testing.T) {
	a := openAKHub(t)
	shop := a.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)
	other := a.newKey(t, akAdminKey, "member app", hub.ScopeOnline)
	a.mustDo(t, shop.Key, "GET", "/v1/program", "", http.StatusOK, nil)

	var revoked hub.APIKey
	a.mustDo(t, akAdminKey, "DELETE", "/v1/api-keys/"+shop.ID, "", http.StatusOK, &revoked)
	if revoked.ID != shop.ID || revoked.RevokedAt.IsZero() {
		t.Fatalf("revoke answered %+v, want the key with revoked_at", revoked)
	}
	status, body := a.do(t, shop.Key, "GET", "/v1/program", "")
	jsonapitest.AssertError(t, status, body, http.StatusUnauthorized, loyalty.EUNAUTHORIZED)
	if !strings.Contains(string(body), "revoked") || strings.Contains(string(body), shop.Key) {
		t.Errorf("revoked key's answer %s: want it to say revoked, without the key", body)
	}
	status, body = a.do(t, shop.Key, "POST", "/v1/earn", `{"order_id":"WEB-9","member_id":"m1","amount":100,"currency":"EUR"}`)
	jsonapitest.AssertError(t, status, body, http.StatusUnauthorized, loyalty.EUNAUTHORIZED)
	a.mustDo(t, other.Key, "GET", "/v1/program", "", http.StatusOK, nil)

	for _, key := range []string{"", "lk_" + strings.Repeat("A", 43), shop.Key[:len(shop.Key)-1], shop.Key + "x"} {
		status, body := a.do(t, key, "GET", "/v1/program", "")
		jsonapitest.AssertError(t, status, body, http.StatusUnauthorized, loyalty.EUNAUTHORIZED)
		if key != "" && strings.Contains(string(body), key) {
			t.Errorf("401 %s repeats the key", body)
		}
	}
	status, body = a.do(t, akAdminKey, "DELETE", "/v1/api-keys/ak-nope", "")
	jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)
	status, body = a.do(t, akAdminKey, "DELETE", "/v1/api-keys/config", "")
	jsonapitest.AssertError(t, status, body, http.StatusBadRequest, loyalty.EINVALID)
}

// TestAPIKeys_StoredHashed: the key is in no byte of the database, its SHA-256 is, and the
// listing shows neither.
func TestAPIKeys_StoredHashed(t *testing.T) {
	a := openAKHub(t)
	k := a.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)
	a.mustDo(t, k.Key, "GET", "/v1/program", "", http.StatusOK, nil) // it works, so the hub can recognise it
	sum := sha256.Sum256([]byte(k.Key))
	hash := hex.EncodeToString(sum[:])

	raw := storedBytes(t, whereOf(t, a.Hub.Store))
	if len(raw) == 0 {
		t.Fatal("read no database bytes")
	}
	if bytes.Contains(raw, []byte(k.Key)) {
		t.Errorf("the API key is stored in clear in the database")
	}
	if !bytes.Contains(raw, []byte(hash)) {
		t.Errorf("the database does not hold the key's SHA-256 (%s); the check above proves nothing", hash)
	}

	status, body := a.do(t, akAdminKey, "GET", "/v1/api-keys", "")
	if status != http.StatusOK || !strings.Contains(string(body), k.ID) {
		t.Fatalf("GET /v1/api-keys: %d %s, want the key listed", status, body)
	}
	if strings.Contains(string(body), k.Key) || strings.Contains(string(body), hash) {
		t.Errorf("GET /v1/api-keys shows the key or its hash: %s", body)
	}
}

// TestAPIKeys_Audit: each admin change is recorded with the key that made it: a second admin key
// made through the bootstrap key, then used, is named in the audit rows of its changes.
func TestAPIKeys_Audit(t *testing.T) {
	a := openAKHub(t)
	ops := a.newKey(t, akAdminKey, "ops laptop", hub.ScopeAdmin)
	if ops.CreatedBy != "config" {
		t.Errorf("created_by %q, want config (the bootstrap key)", ops.CreatedBy)
	}
	p := loyalty.DefaultProgram()
	p.Earn.PointsPerUnit = 2
	pj, _ := json.Marshal(p)
	a.mustDo(t, ops.Key, "PUT", "/v1/program", string(pj), http.StatusOK, nil)
	a.mustDo(t, ops.Key, "POST", "/v1/stores", `{"id":"s3","name":"Harbour Road","timezone":"Europe/Berlin"}`, http.StatusCreated, nil)
	a.mustDo(t, ops.Key, "PUT", "/v1/stores/s3/timezone", `{"timezone":"Europe/Lisbon"}`, http.StatusOK, nil)
	var tok struct{ Token string }
	a.mustDo(t, ops.Key, "POST", "/v1/stores/s3/token", "", http.StatusOK, &tok)
	a.mustDo(t, ops.Key, "POST", "/v1/members", `{"id":"m7","email":"ann@example.com","home_store":"s3"}`, http.StatusCreated, nil)
	var kid struct{ Kid string }
	a.mustDo(t, ops.Key, "POST", "/v1/keys/rotate", "", http.StatusOK, &kid)
	a.mustDo(t, ops.Key, "POST", "/v1/stores/s3/writeoff", "", http.StatusOK, nil)
	shop := a.newKey(t, ops.Key, "web shop", hub.ScopeOnline)
	a.mustDo(t, ops.Key, "DELETE", "/v1/api-keys/"+shop.ID, "", http.StatusOK, nil)
	// Not admin changes: not audited.
	a.mustDo(t, shop.Key, "GET", "/v1/program", "", http.StatusUnauthorized, nil)
	a.mustDo(t, ops.Key, "POST", "/v1/earn", `{"order_id":"W-1","member_id":"m1","amount":100,"currency":"EUR"}`, http.StatusOK, nil)
	// Refused changes: not audited.
	a.mustDo(t, ops.Key, "POST", "/v1/stores", `{"id":"s3"}`, http.StatusConflict, nil)

	rep := a.newKey(t, akAdminKey, "auditor", hub.ScopeReport)
	var got []hub.AuditEntry
	a.mustDo(t, rep.Key, "GET", "/v1/audit?limit=1000", "", http.StatusOK, &got)
	want := []struct{ keyID, action, target string }{
		{"config", hub.AuditAPIKeyAdd, rep.ID},
		{ops.ID, hub.AuditAPIKeyRevoke, shop.ID},
		{ops.ID, hub.AuditAPIKeyAdd, shop.ID},
		{ops.ID, hub.AuditStoreWriteOff, "s3"},
		{ops.ID, hub.AuditSigningKeyRotate, kid.Kid},
		{ops.ID, hub.AuditMemberAdd, "m7"},
		{ops.ID, hub.AuditStoreToken, "s3"},
		{ops.ID, hub.AuditStoreTimeZone, "s3"},
		{ops.ID, hub.AuditStoreAdd, "s3"},
		{ops.ID, hub.AuditProgramPublish, "program"},
		{"config", hub.AuditAPIKeyAdd, ops.ID},
	}
	// openHub's stores and members came before, from Go code with no key ("internal").
	if len(got) < len(want) {
		t.Fatalf("audit has %d entries, want at least %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		e := got[i]
		if e.KeyID != w.keyID || e.Action != w.action || e.Target != w.target {
			t.Errorf("audit[%d] = %s %s %s, want %s %s %s", i, e.KeyID, e.Action, e.Target, w.keyID, w.action, w.target)
		}
		if e.KeyID == ops.ID && e.KeyName != "ops laptop" {
			t.Errorf("audit[%d] names key %q, want \"ops laptop\"", i, e.KeyName)
		}
		if i > 0 && e.Seq >= got[i-1].Seq {
			t.Errorf("audit is not newest first: seq %d after %d", e.Seq, got[i-1].Seq)
		}
	}
	for _, e := range got[len(want):] {
		if e.KeyID != "internal" {
			t.Errorf("unexpected audit entry %+v", e)
		}
	}
	raw, _ := json.Marshal(got)
	for _, secret := range []string{ops.Key, shop.Key, rep.Key, akAdminKey, tok.Token, "ann@example.com"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the audit trail holds a secret or personal data: %q", secret)
		}
	}

	var two []hub.AuditEntry
	a.mustDo(t, akAdminKey, "GET", "/v1/audit?limit=2", "", http.StatusOK, &two)
	if len(two) != 2 || two[0].Seq != got[0].Seq {
		t.Errorf("limit=2 gave %+v, want the 2 newest", two)
	}
	status, body := a.do(t, akAdminKey, "GET", "/v1/audit?limit=0", "")
	jsonapitest.AssertError(t, status, body, http.StatusBadRequest, loyalty.EINVALID)
}

// TestAPIKeys_Invalid: a key needs a name and a known scope.
func TestAPIKeys_Invalid(t *testing.T) {
	a := openAKHub(t)
	for _, body := range []string{`{"name":"x","scope":"root"}`, `{"name":"","scope":"online"}`, `{"name":"x"}`,
		`{"name":" padded ","scope":"online"}`, `{"name":"` + strings.Repeat("n", 65) + `","scope":"online"}`} {
		status, b := a.do(t, akAdminKey, "POST", "/v1/api-keys", body)
		jsonapitest.AssertError(t, status, b, http.StatusBadRequest, loyalty.EINVALID)
	}
	if ks, err := a.Hub.APIKeys(context.Background()); err != nil || len(ks) != 0 {
		t.Errorf("%d keys after invalid requests (%v), want 0", len(ks), err)
	}
}

// TestAPIKeys_CLIActor: a change made with the CLI's actor in the context (as every admin
// command's withHub sets it) is audited as key id "cli".
func TestAPIKeys_CLIActor(t *testing.T) {
	h := openHub(t)
	ctx := hub.WithActor(context.Background(), hub.CLIActor)
	if _, err := h.SetProgram(ctx, loyalty.DefaultProgram()); err != nil {
		t.Fatal(err)
	}
	es, err := h.Audit(context.Background(), 1)
	if err != nil || len(es) != 1 || es[0].KeyID != "cli" || es[0].Action != hub.AuditProgramPublish {
		t.Errorf("audit after a CLI publish: %+v, %v; want key id cli", es, err)
	}
}

// A webhook's audit detail names its URL's host, which only admins see: a report key reads the
// audit trail through the API without it, as on the dashboard.
func TestAPIKeys_ReportKeyAuditHidesWebhookURLs(t *testing.T) {
	a := openAKHub(t)
	report := a.newKey(t, akAdminKey, "dashboards", hub.ScopeReport)
	a.mustDo(t, akAdminKey, "POST", "/v1/webhooks", `{"url":"https://crm.internal.example/hook","events":["member.created"]}`, http.StatusCreated, nil)
	details := func(key string) map[string]string {
		t.Helper()
		var es []hub.AuditEntry
		a.mustDo(t, key, "GET", "/v1/audit", "", http.StatusOK, &es)
		out := map[string]string{}
		for _, e := range es {
			out[e.Action] = e.Detail
		}
		return out
	}
	if d := details(akAdminKey)[hub.AuditWebhookAdd]; !strings.Contains(d, "crm.internal.example") {
		t.Fatalf("the admin's audit of the webhook: %q, want its host", d)
	}
	got := details(report.Key)
	if d, ok := got[hub.AuditWebhookAdd]; !ok || d != "" {
		t.Errorf("a report key's audit of the webhook: %q (listed %v), want it listed without its detail", d, ok)
	}
	if got[hub.AuditAPIKeyAdd] == "" {
		t.Errorf("a report key's audit hides the detail of other entries too: %v", got)
	}
}

// TestOnlineRetrySaysReplayed: the online channel and the adjustments answer a retry with the
// first answer and the header Idempotent-Replayed: true; the first answer has none.
func TestOnlineRetrySaysReplayed(t *testing.T) {
	a := openAKHub(t)
	withProgram(t, a.Hub, func(p *loyalty.Program) { p.Actions = []loyalty.ActionRule{{ID: "review", Points: 20}} })
	replays(t, a, "/v1/earn", `{"order_id":"web-rp","member_id":"m1","amount":12500,"currency":"EUR"}`)
	replays(t, a, "/v1/vouchers", `{"order_id":"web-rp-v","member_id":"m1","reward_id":"coffee"}`)
	replays(t, a, "/v1/actions", `{"order_id":"web-rp-a","member_id":"m1","action":"review"}`)
	replays(t, a, "/v1/adjustments", `{"adjust_id":"CS-rp","member_id":"m1","points":5,"reason":"goodwill"}`)
	replays(t, a, "/v1/adjustments/CS-rp/reverse", `{"reason":"wrong member"}`)
	replays(t, a, "/v1/reverse", `{"order_id":"web-rp"}`)
}

// replays posts body to path twice as the admin and checks that only the second answer says it
// was replayed, with the first answer's body.
func replays(t *testing.T, a *akHub, path, body string) {
	t.Helper()
	var first string
	for i := range 2 {
		req, _ := http.NewRequest("POST", a.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+akAdminKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := resp.Header.Get("Idempotent-Replayed"), map[int]string{0: "", 1: "true"}[i]; resp.StatusCode != http.StatusOK || got != want {
			t.Errorf("%s, call %d: %d %s, Idempotent-Replayed %q, want %q", path, i+1, resp.StatusCode, b, got, want)
		}
		if i == 0 {
			first = string(b)
		} else if string(b) != first {
			t.Errorf("%s: the retry's body %s, want the first %s", path, b, first)
		}
	}
}

// TestAPIKeys_OnlineKeyReadsNoOperatorNotes: the web shop and the member app read a member's
// balance and ledger, not the operator's notes on the member, nor what an operator wrote on an
// adjustment and which key made it. An admin key (and a report key) reads them all.
func TestAPIKeys_OnlineKeyReadsNoOperatorNotes(t *testing.T) {
	a := openAKHub(t)
	shop := a.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)
	ops := a.newKey(t, akAdminKey, "care desk", hub.ScopeAdmin)
	a.mustDo(t, ops.Key, "PATCH", "/v1/members/m1", `{"attributes":{"fraud.suspect":"chargeback ring"}}`, http.StatusOK, nil)
	a.mustDo(t, ops.Key, "POST", "/v1/adjustments", `{"adjust_id":"adj-1","member_id":"m1","points":40,"reason":"goodwill, complaint by J. Doe"}`,
		http.StatusOK, nil)
	for _, tt := range []struct {
		key   string
		notes bool
	}{{shop.Key, false}, {ops.Key, true}} {
		for _, call := range [][2]string{{"GET", ""}, {"PATCH", `{"name":"Ann"}`}} {
			_, b := a.do(t, tt.key, call[0], "/v1/members/m1", call[1])
			var v hub.MemberView
			if err := json.Unmarshal(b, &v); err != nil || v.ID != "m1" {
				t.Fatalf("%s /v1/members/m1: %s (%v)", call[0], b, err)
			}
			if call[0] == "PATCH" { // answers with the member, not the ledger
				if (v.Attributes["fraud.suspect"] != "") != tt.notes {
					t.Errorf("PATCH /v1/members/m1: attributes %v", v.Attributes)
				}
				continue
			}
			for _, secret := range []string{"chargeback ring", "J. Doe", ops.ID} {
				if bytes.Contains(b, []byte(secret)) != tt.notes {
					t.Errorf("%s /v1/members/m1 with the %s key: holds %q is %v, want %v: %s", call[0],
						map[bool]string{false: "online", true: "admin"}[tt.notes], secret, !tt.notes, tt.notes, b)
				}
			}
			if v.Ledger[0].Kind != loyalty.KindAdjust || v.Ledger[0].Points != 40 {
				t.Errorf("the ledger's newest entry %+v, want the adjustment of 40", v.Ledger[0])
			}
		}
	}
}

// TestAPIKeys_OnlineChangesNameTheirKey: an online earn, redemption and reversal record the API
// key that made them, whatever terminal the caller names (a key cannot pass its changes off as
// another's); a store cannot set it; an online key does not read it.
func TestAPIKeys_OnlineChangesNameTheirKey(t *testing.T) {
	a := openAKHub(t)
	shop := a.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)
	app := a.newKey(t, akAdminKey, "member app", hub.ScopeOnline)
	a.mustDo(t, shop.Key, "POST", "/v1/earn", `{"order_id":"WEB-1","member_id":"m1","amount":10000,"currency":"EUR"}`, http.StatusOK, nil)
	a.mustDo(t, app.Key, "POST", "/v1/reverse", `{"order_id":"WEB-1","terminal":"`+shop.ID+`"}`, http.StatusOK, nil)
	var v hub.MemberView
	a.mustDo(t, akAdminKey, "GET", "/v1/members/m1", "", http.StatusOK, &v)
	by := map[loyalty.Kind]string{}
	for _, e := range v.Ledger {
		by[e.Kind] = e.Key
	}
	if by[loyalty.KindEarn] != shop.ID || by[loyalty.KindReverse] != app.ID {
		t.Errorf("the earn was made by %q and its reversal by %q; want the shop's key %s and the app's %s",
			by[loyalty.KindEarn], by[loyalty.KindReverse], shop.ID, app.ID)
	}
	_, b := a.do(t, shop.Key, "GET", "/v1/members/m1", "")
	if bytes.Contains(b, []byte(`"key_id"`)) || bytes.Contains(b, []byte(app.ID)) {
		t.Errorf("an online key reads which keys made the changes: %s", b)
	}
	d := earn("s1", "m1", 1000)
	d.Key = shop.ID
	if r := pushOK(t, a.Hub, "s1", d).Results[0]; r.Status != lsync.StatusRejected || r.Code != loyalty.EUNAUTHORIZED {
		t.Errorf("a store's delta naming an API key: %+v, want rejected EUNAUTHORIZED", r)
	}
}
