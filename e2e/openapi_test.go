package e2e_test

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	valerrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// docs/openapi.yaml describes both HTTP APIs. These tests check that it is a valid OpenAPI 3.1
// document, that it lists exactly the routes the hub and the agent register (hub.Routes,
// agent.Routes) with the scopes the hub enforces, and that a real hub and agent answer every
// documented operation with a documented status and a body that validates against the document.

const openAPIPath = "../docs/openapi.yaml"

// apiDoc is docs/openapi.yaml, parsed.
type apiDoc struct {
	raw   []byte
	model *v3.Document
	ops   []docOp
}

// docOp is one documented operation.
type docOp struct {
	method, path string   // "POST", "/v1/stores/{id}/token"
	servers      []string // "agent", "hub": the servers that serve it (its tags)
	op           *v3.Operation
}

// pattern is the operation as a ServeMux pattern, the form hub.Routes and agent.Routes use.
func (o docOp) pattern() string { return o.method + " " + o.path }

func loadAPIDoc(t *testing.T) *apiDoc {
	t.Helper()
	raw, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("%s does not build as an OpenAPI 3 model: %v", openAPIPath, err)
	}
	d := &apiDoc{raw: raw, model: &m.Model}
	for path, item := range m.Model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			d.ops = append(d.ops, docOp{method: strings.ToUpper(method), path: path, servers: op.Tags, op: op})
		}
	}
	return d
}

// newValidator returns a validator of requests and responses against the document, checking
// formats (date-time) too.
func (d *apiDoc) newValidator(t *testing.T) validator.Validator {
	t.Helper()
	doc, err := libopenapi.NewDocument(d.raw)
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	return v
}

func validationReport(errs []*valerrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  %s: %s", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n    %s (at %s, schema %s)", f.Reason, f.FieldPath, f.KeywordLocation)
		}
	}
	return b.String()
}

// errorCodes returns the x-error-codes of a response: the error codes its body may carry.
func errorCodes(r *v3.Response) []string {
	var codes []string
	if r != nil && r.Extensions != nil {
		if n, ok := r.Extensions.Get("x-error-codes"); ok && n != nil {
			n.Decode(&codes)
		}
	}
	return codes
}

// roles returns the roles an operation's security names for a security scheme (for hubApiKey,
// the scopes that may call it), and whether it names the scheme at all.
func roles(op *v3.Operation, scheme string) ([]string, bool) {
	for _, req := range op.Security {
		if r, ok := req.Requirements.Get(scheme); ok {
			return r, true
		}
	}
	return nil, false
}

// TestOpenAPIDocumentIsValid: docs/openapi.yaml is an OpenAPI 3.1 document that validates against
// the specification's schema, and every operation says where it is served, who may call it and
// which error codes each error answer carries.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	d := loadAPIDoc(t)
	if !strings.HasPrefix(d.model.Version, "3.1.") {
		t.Errorf("openapi: %q, want 3.1.x", d.model.Version)
	}
	v := d.newValidator(t)
	if ok, errs := v.ValidateDocument(); !ok {
		t.Fatalf("%s does not validate against the OpenAPI 3.1 schema:%s", openAPIPath, validationReport(errs))
	}

	// The validation is real: the same document with a response that lacks its required
	// description fails it.
	broken := bytes.Replace(d.raw, []byte("          description: The hub is up.\n"), nil, 1)
	if bytes.Equal(broken, d.raw) {
		t.Fatal("the /healthz response description to remove for the negative check is not in the document")
	}
	bdoc, err := libopenapi.NewDocument(broken)
	if err != nil {
		t.Fatal(err)
	}
	bv, errs := validator.NewValidator(bdoc)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if ok, _ := bv.ValidateDocument(); ok {
		t.Error("a document whose response has no description passed ValidateDocument: the meta-schema check is not working")
	}

	servers := map[string]bool{}
	for _, s := range d.model.Servers {
		servers[strings.Fields(s.Description)[0]] = true
	}
	if !servers["agent"] || !servers["hub"] || len(servers) != 2 {
		t.Errorf("top-level servers %v, want exactly agent and hub", slices.Sorted(maps.Keys(servers)))
	}
	ids := map[string]string{}
	for _, o := range d.ops {
		name := o.pattern()
		if len(o.servers) == 0 || slices.ContainsFunc(o.servers, func(s string) bool { return s != "agent" && s != "hub" }) {
			t.Errorf("%s: tags %v, want agent and/or hub", name, o.servers)
		}
		// The path's servers are the operation's tags.
		item := d.model.Paths.PathItems.GetOrZero(o.path)
		var at []string
		for _, s := range item.Servers {
			at = append(at, strings.Fields(s.Description)[0])
		}
		if !slices.Equal(slices.Sorted(slices.Values(at)), slices.Sorted(slices.Values(o.servers))) {
			t.Errorf("%s: the path's servers are %v, its tags %v", name, at, o.servers)
		}
		if o.op.OperationId == "" {
			t.Errorf("%s has no operationId", name)
		} else if other, dup := ids[o.op.OperationId]; dup {
			t.Errorf("%s and %s share operationId %s", name, other, o.op.OperationId)
		}
		ids[o.op.OperationId] = name
		if o.op.Security == nil {
			t.Errorf("%s does not say its security (use [] for an open route)", name)
		}
		if o.op.Responses == nil || o.op.Responses.Default != nil {
			t.Errorf("%s: every answer must be listed by status, without default", name)
			continue
		}
		for code, r := range o.op.Responses.Codes.FromOldest() {
			if code >= "400" {
				if len(errorCodes(r)) == 0 {
					t.Errorf("%s %s: an error answer without x-error-codes", name, code)
				}
				if r.Content == nil || r.Content.GetOrZero("application/json") == nil {
					t.Errorf("%s %s: an error answer without an application/json body", name, code)
				}
			}
		}
	}
}

// TestOpenAPIMatchesRouteTables: the document lists exactly the routes the hub and the agent
// serve, both ways, with the hub's open routes open and each keyed route open to exactly the
// scopes the hub allows.
func TestOpenAPIMatchesRouteTables(t *testing.T) {
	d := loadAPIDoc(t)
	open, keyed := hub.Routes()
	served := map[string][]string{"hub": append(slices.Clone(open), keyed...), "agent": agent.Routes()}
	for server, routes := range served {
		if len(routes) == 0 {
			t.Fatalf("%s.Routes() is empty", server)
		}
		documented := map[string]bool{}
		for _, o := range d.ops {
			if slices.Contains(o.servers, server) {
				documented[o.pattern()] = true
			}
		}
		for _, r := range routes {
			if !documented[r] {
				t.Errorf("the %s serves %q, which %s does not document (tag %q)", server, r, openAPIPath, server)
			}
			delete(documented, r)
		}
		for r := range documented {
			t.Errorf("%s documents %q at the %s, which it does not serve", openAPIPath, r, server)
		}
	}

	for _, o := range d.ops {
		scopes, hasKey := roles(o.op, "hubApiKey")
		_, hasPOS := roles(o.op, "posToken")
		anonymous := slices.ContainsFunc(o.op.Security, func(r *base.SecurityRequirement) bool { return r.ContainsEmptyRequirement })
		if slices.Contains(o.servers, "agent") && (!hasPOS || !anonymous) {
			t.Errorf("%s is served by the agent: its security must offer posToken and none (a POS token is optional)", o.pattern())
		}
		if !slices.Contains(o.servers, "hub") {
			if hasKey {
				t.Errorf("%s is not served by the hub but names hubApiKey", o.pattern())
			}
			continue
		}
		if slices.Contains(open, o.pattern()) {
			if len(o.op.Security) != 0 {
				t.Errorf("%s is open at the hub (no API key); its security must be []", o.pattern())
			}
			continue
		}
		if !hasKey {
			t.Errorf("%s needs the hub's API key; its security does not name hubApiKey", o.pattern())
			continue
		}
		var want []string
		for _, sc := range hub.Scopes {
			if sc.Allows(o.pattern()) {
				want = append(want, string(sc))
			}
		}
		if !slices.Equal(slices.Sorted(slices.Values(scopes)), slices.Sorted(slices.Values(want))) {
			t.Errorf("%s: documented for scopes %v, the hub allows %v", o.pattern(), scopes, want)
		}
	}
}

// --- against real processes -----------------------------------------------------------------

// apiCheck sends requests to the running hub and agent and checks each answer against the
// document: a documented status, a body valid against the documented schema, an error code the
// answer documents, and never a route the server does not have.
type apiCheck struct {
	t       *testing.T
	d       *apiDoc
	v       validator.Validator
	base    map[string]string // server name -> base URL
	ok      map[string]bool   // "server METHOD /path": answered with a documented success
	checked int
}

// req is one call. params fill the path's {placeholders}.
type req struct {
	server, method, path string
	params               map[string]string
	query                string
	key                  string // Authorization: Bearer key
	body                 any    // marshalled to JSON; []byte is sent as it is
	contentType          string // of the body; application/json if empty
	header               http.Header
	host                 string // a Host header other than the URL's
	base                 string // the server's base URL, if not c.base[server]
	want                 int    // the status expected; 0: any documented one
}

func (c *apiCheck) find(method, path string) *docOp {
	for i := range c.d.ops {
		if c.d.ops[i].method == method && c.d.ops[i].path == path {
			return &c.d.ops[i]
		}
	}
	return nil
}

// do sends r and checks the answer; it returns the status and the body.
func (c *apiCheck) do(r req) (int, []byte) {
	t := c.t
	t.Helper()
	o := c.find(r.method, r.path)
	if o == nil {
		t.Fatalf("the test calls %s %s, which the document does not have", r.method, r.path)
	}
	name := r.server + " " + r.method + " " + r.path
	if !slices.Contains(o.servers, r.server) {
		t.Fatalf("the test calls %s, which the document does not list for the %s", name, r.server)
	}
	path := r.path
	for k, v := range r.params {
		path = strings.ReplaceAll(path, "{"+k+"}", url.PathEscape(v))
	}
	u := cmp.Or(r.base, c.base[r.server]) + path
	if r.query != "" {
		u += "?" + r.query
	}
	var body []byte
	switch b := r.body.(type) {
	case nil:
	case []byte:
		body = b
	default:
		body, _ = json.Marshal(b)
	}
	newReq := func() *http.Request {
		hr, err := http.NewRequest(r.method, u, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body == nil {
			hr.Body, hr.ContentLength = http.NoBody, 0
		} else {
			hr.Header.Set("Content-Type", cmp.Or(r.contentType, "application/json"))
		}
		for k, vs := range r.header {
			hr.Header[k] = vs
		}
		if r.key != "" {
			hr.Header.Set("Authorization", "Bearer "+r.key)
		}
		if r.host != "" {
			hr.Host = r.host
		}
		return hr
	}
	resp, err := httpClient(t).Do(newReq())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", name, err)
	}
	c.checked++
	status := resp.StatusCode
	code := fmt.Sprint(status)
	documented := o.op.Responses.Codes.GetOrZero(code)
	switch {
	case documented == nil:
		t.Errorf("%s answered %d, which the document does not list for it: %s", name, status, raw)
	case r.want != 0 && status != r.want:
		t.Errorf("%s answered %d, want %d: %s", name, status, r.want, raw)
	}
	if status >= 400 {
		var e struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(raw, &e)
		if status == http.StatusNotFound && strings.HasPrefix(e.Error.Message, "no such endpoint") {
			t.Errorf("%s: the %s has no such route: %s", name, r.server, raw)
		}
		if documented != nil && !slices.Contains(errorCodes(documented), e.Error.Code) {
			t.Errorf("%s answered %d with code %q; the document lists %v for it", name, status, e.Error.Code, errorCodes(documented))
		}
	}
	// The body against the documented schema (libopenapi-validator also rejects an undocumented
	// status or content type).
	vresp := &http.Response{StatusCode: status, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(raw)), Request: newReq()}
	if ok, errs := c.v.ValidateHttpResponse(newReq(), vresp); !ok {
		t.Errorf("%s: the %d answer does not match the document:%s\nbody: %s", name, status, validationReport(errs), tail(string(raw), 2000))
	}
	if status < 300 {
		// A call meant to succeed is a valid request by the document too.
		if ok, errs := c.v.ValidateHttpRequest(newReq()); !ok {
			t.Errorf("%s: the request, which the %s accepted, does not match the document:%s", name, r.server, validationReport(errs))
		}
		c.ok[r.server+" "+r.method+" "+r.path] = true
	}
	return status, raw
}

// json calls r, which must succeed with r.want (or 200), and decodes its body into out.
func (c *apiCheck) json(r req, out any) {
	c.t.Helper()
	if r.want == 0 {
		r.want = http.StatusOK
	}
	status, raw := c.do(r)
	if status != r.want {
		c.t.FailNow()
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", r.method, r.path, err, raw)
		}
	}
}

// TestOpenAPIRoutesAnswerAsDocumented runs a hub and two store agents (one of them with a POS
// token) and calls every documented operation at every server that serves it: first as a
// realistic call that must succeed, then with made-up ids and an empty body, a body not sent as
// JSON, one over the size limit, without a key, with each scope, and at the agents from a host
// they do not answer to and without the POS token. Every answer must be one the document lists
// for the operation, with a body that validates against it.
func TestOpenAPIRoutesAnswerAsDocumented(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	d := loadAPIDoc(t)
	w, _ := newWorld(t, nil, "s1", "pos")
	const posToken = "pos-token-0123456789"
	w.startAgent("s1")
	w.startAgent("pos", "LOYALTY_POS_TOKEN="+posToken)
	w.waitAgentUp("s1")
	eventually(t, 20*time.Second, "the agent with a POS token up", func() (bool, string) {
		var st agent.Status
		return call(t, "GET", "http://"+w.addrs["pos"]+"/v1/status", posToken, nil, &st) == 200 && st.ProgramVersion > 0, "not ready"
	})
	c := &apiCheck{t: t, d: d, v: d.newValidator(t), ok: map[string]bool{},
		base: map[string]string{"hub": w.api(), "agent": "http://" + w.addrs["s1"]}}
	admin := w.key
	H := func(method, path string) req { return req{server: "hub", method: method, path: path, key: admin} }
	A := func(method, path string) req { return req{server: "agent", method: method, path: path} }
	with := func(r req, f func(*req)) req { f(&r); return r }

	// The hub: health, program, stores.
	c.json(req{server: "hub", method: "GET", path: "/healthz"}, nil)
	c.json(H("GET", "/v1/budgets"), nil) // no budget yet: an empty list
	now := time.Now().UTC().Truncate(time.Second)
	program := map[string]any{
		"currency": "EUR",
		"earn":     map[string]any{"points_per_unit": 1, "unit_minor": 100},
		"rewards": []map[string]any{
			{"id": "coffee", "name": "Free coffee", "points_cost": 50, "kind": "free_product"},
			{"id": "five-off", "name": "5.00 EUR off", "points_cost": 100, "kind": "amount_off", "value": 500, "stackable": true},
			{"id": "twenty", "name": "20% off", "points_cost": 300, "kind": "percent_off", "value": 20, "max_value": 2000, "min_order": 1000},
			{"id": "cookie", "name": "Cookie", "points_cost": 20, "kind": "free_product", "offline": "limit", "offline_max": 1},
		},
		"budgets":        []map[string]any{{"id": "coffee-budget", "metric": "redemptions", "reward": "coffee", "limit": 100}},
		"member_limits":  []map[string]any{{"reward": "five-off", "period": "day", "max": 5}},
		"earn_caps":      []map[string]any{{"rule": "purchase", "period": "day", "max_points": 100000}},
		"category_rates": []map[string]any{{"category": "coffee", "points_per_unit": 3}},
		"tiers": map[string]any{"basis": "spend", "window": "rolling_12m", "tiers": []map[string]any{
			{"id": "member", "name": "Member", "threshold": 0, "multiplier": 1000},
			{"id": "silver", "name": "Silver", "threshold": 20000, "multiplier": 1500}}},
		"campaigns": []map[string]any{{"id": "de", "name": "1.5x in Germany", "start": now.Add(-time.Hour), "end": now.Add(24 * time.Hour),
			"multiplier": 1500, "segment": map[string]any{"countries": []string{"DE"}}}},
		"punch_cards": []map[string]any{{"id": "espresso", "name": "Espresso card", "sku": "espresso", "buy": 5, "reward": "coffee"}},
		"actions": []map[string]any{{"id": "signup", "points": 100, "max_times": 1, "period": "total"},
			{"id": "review", "points": 30, "max_times": 2, "period": "day"}},
		"expiry":   map[string]any{"mode": "inactivity", "after_days": 365, "remind_days": 30},
		"referral": map[string]any{"give": 50, "get": 100, "min_amount": 2000},
	}
	var published struct {
		Version int64 `json:"version"`
	}
	c.json(with(H("PUT", "/v1/program"), func(r *req) { r.body = program }), &published)
	c.json(H("GET", "/v1/program"), nil)
	c.json(H("GET", "/v1/rewards"), nil)
	c.json(with(H("POST", "/v1/stores"), func(r *req) {
		r.body, r.want = map[string]string{"id": "s2", "name": "Harbour Road", "timezone": "Europe/Berlin"}, http.StatusCreated
	}), nil)
	c.json(H("GET", "/v1/stores"), nil)
	s2 := map[string]string{"id": "s2"}
	c.json(with(H("PUT", "/v1/stores/{id}/timezone"), func(r *req) { r.params, r.body = s2, map[string]string{"timezone": "Europe/Lisbon"} }), nil)
	c.json(with(H("POST", "/v1/stores/{id}/token"), func(r *req) { r.params = s2 }), nil)
	c.json(with(H("POST", "/v1/stores/{id}/writeoff"), func(r *req) { r.params = s2 }), nil) // no lease: nothing returned

	// Members and the online channel.
	var ann struct {
		Balance int64  `json:"balance"`
		Tier    string `json:"tier"`
	}
	c.json(with(H("POST", "/v1/members"), func(r *req) {
		r.body, r.want = map[string]string{"id": "m1", "email": "Ann@Example.com", "name": "Ann", "home_store": "s1", "country": "DE"}, http.StatusCreated
	}), &ann)
	if ann.Balance != 100 || ann.Tier != "member" {
		t.Errorf("POST /v1/members answered balance %d, tier %q; the document says the member as stored after the sign-up points (100, member)", ann.Balance, ann.Tier)
	}
	c.json(with(H("POST", "/v1/members"), func(r *req) {
		r.body, r.want = map[string]string{"id": "m2", "name": "Bob", "referred_by": "m1"}, http.StatusCreated
	}), nil)
	m1 := map[string]string{"id": "m1"}
	var qr struct {
		Token string `json:"token"`
	}
	c.json(with(H("GET", "/v1/members/{id}/qr"), func(r *req) { r.params = m1 }), &qr)
	if _, png := c.do(with(H("GET", "/v1/members/{id}/qr.png"), func(r *req) { r.params, r.query, r.want = m1, "size=128", 200 })); !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("qr.png is not a PNG: %q", tail(string(png), 40))
	}
	c.json(with(H("POST", "/v1/earn"), func(r *req) {
		r.body = map[string]any{"order_id": "WEB-1", "member_id": "m1", "amount": 50000, "currency": "EUR",
			"lines": []map[string]any{{"sku": "beans", "category": "coffee", "qty": 2, "amount": 4000}, {"sku": "grinder", "qty": 1, "amount": 46000}}}
	}), nil)
	c.json(with(H("POST", "/v1/actions"), func(r *req) {
		r.body = map[string]string{"order_id": "REV-1", "member_id": "m1", "action": "review"}
	}), nil)
	c.json(with(H("POST", "/v1/redeem"), func(r *req) {
		r.body = map[string]any{"order_id": "WEB-2", "member_id": "m1", "reward_id": "five-off", "order_amount": 3000}
	}), nil)
	var bought struct {
		Voucher struct {
			Token string `json:"token"`
		} `json:"voucher"`
	}
	c.json(with(H("POST", "/v1/vouchers"), func(r *req) {
		r.body = map[string]string{"order_id": "APP-1", "qr": qr.Token, "reward_id": "coffee"}
	}), &bought)
	c.json(with(H("POST", "/v1/redeem"), func(r *req) { r.body = map[string]string{"order_id": "WEB-3", "voucher": bought.Voucher.Token} }), nil)
	c.json(with(H("POST", "/v1/reverse"), func(r *req) { r.body = map[string]string{"order_id": "WEB-2"} }), nil)

	// The agent, once it has the new program and a lease of coffee-budget.
	eventually(t, 20*time.Second, "the agent to sync the program and lease coffee-budget", func() (bool, string) {
		st := w.status("s1")
		return st.ProgramVersion == published.Version && len(st.Leases) > 0, fmt.Sprintf("program %d, %d leases", st.ProgramVersion, len(st.Leases))
	})
	c.json(with(A("POST", "/v1/scan"), func(r *req) { r.body = map[string]string{"qr": qr.Token} }), nil)
	c.json(with(A("POST", "/v1/earn"), func(r *req) {
		r.body = map[string]any{"order_id": "A-1", "terminal": "till-1", "qr": qr.Token, "amount": 1500, "currency": "EUR",
			"lines": []map[string]any{{"sku": "espresso", "category": "coffee", "qty": 5, "amount": 1500}}}
	}), nil)
	c.json(with(A("POST", "/v1/redeem"), func(r *req) { r.body = map[string]string{"order_id": "A-2", "member_id": "m1", "reward_id": "coffee"} }), nil)
	// The voucher was used online already: the agent, online, asks the hub and refuses it.
	c.json(with(A("POST", "/v1/redeem"), func(r *req) {
		r.body, r.want = map[string]string{"order_id": "A-3", "voucher": bought.Voucher.Token}, http.StatusConflict
	}), nil)
	c.json(with(A("POST", "/v1/reverse"), func(r *req) { r.body = map[string]string{"order_id": "A-1", "terminal": "till-1"} }), nil)
	c.json(with(A("POST", "/v1/sales"), func(r *req) { r.body = map[string]any{"order_id": "A-9", "amount": 1200, "currency": "EUR"} }), nil)
	c.json(A("GET", "/v1/status"), nil)
	c.json(A("GET", "/v1/rejected"), nil)

	// Review at the hub, once the store's deltas have arrived. A conflict to review: an online
	// refund that takes back points the member has spent meanwhile (an overdraft).
	c.json(with(H("POST", "/v1/members"), func(r *req) {
		r.body, r.want = map[string]string{"id": "m3", "name": "Cleo"}, http.StatusCreated // 100 sign-up points
	}), nil)
	c.json(with(H("POST", "/v1/earn"), func(r *req) {
		r.body = map[string]any{"order_id": "WEB-5", "member_id": "m3", "amount": 10000, "currency": "EUR"} // 100 more
	}), nil)
	for _, order := range []string{"WEB-6", "WEB-7"} {
		c.json(with(H("POST", "/v1/redeem"), func(r *req) {
			r.body = map[string]any{"order_id": order, "member_id": "m3", "reward_id": "five-off"}
		}), nil)
	}
	c.json(with(H("POST", "/v1/reverse"), func(r *req) { r.body = map[string]string{"order_id": "WEB-5"} }), nil)
	eventually(t, 20*time.Second, "the store's deltas at the hub", func() (bool, string) {
		st := w.status("s1")
		return st.Outbox == 0, fmt.Sprintf("outbox %d", st.Outbox)
	})
	var cs []hub.Conflict
	c.json(H("GET", "/v1/conflicts"), &cs)
	if len(cs) != 1 || cs[0].Kind != hub.ConflictOverdraft {
		t.Errorf("conflicts %+v, want the one overdraft of m3", cs)
	}
	c.json(with(H("GET", "/v1/members/{id}"), func(r *req) { r.params, r.query = m1, "ledger=50" }), nil)
	// Member care: an update, an export, an erasure.
	c.json(with(H("PATCH", "/v1/members/{id}"), func(r *req) {
		r.params, r.body = map[string]string{"id": "m2"}, map[string]any{"name": "Bob Stone", "birthday": nil, "attributes": map[string]any{"tag": "vip"}}
	}), nil)
	c.json(with(H("GET", "/v1/members/{id}/export"), func(r *req) { r.params = m1 }), nil)
	// Member card links (docs/PAGES.md).
	c.json(with(H("POST", "/v1/members/{id}/card-links"), func(r *req) {
		r.params, r.body, r.want = m1, map[string]any{"ttl_hours": 48}, http.StatusCreated
	}), nil)
	c.json(with(H("POST", "/v1/members/{id}/card-links/revoke"), func(r *req) { r.params = m1 }), nil)
	c.json(with(H("POST", "/v1/members/{id}/erase"), func(r *req) { r.params = map[string]string{"id": "m3"} }), nil)
	c.json(H("GET", "/v1/rejections"), nil)
	c.json(H("GET", "/v1/check"), nil)
	c.json(H("GET", "/v1/budgets"), nil)
	c.json(H("GET", "/v1/expiring"), nil)
	for _, report := range []string{"summary", "cohorts", "stores"} {
		rng := "from=" + now.Add(-24*time.Hour).Format(time.DateOnly) + "&to=" + now.Add(48*time.Hour).Format(time.DateOnly)
		c.json(with(H("GET", "/v1/reports/"+report), func(r *req) { r.query = rng }), nil)
	}
	c.json(H("POST", "/v1/keys/rotate"), nil)
	c.json(H("GET", "/v1/keys"), nil)

	// API keys and scopes.
	newKey := func(name, scope string) (id, key string) {
		var k struct{ ID, Key string }
		c.json(with(H("POST", "/v1/api-keys"), func(r *req) { r.body, r.want = map[string]string{"name": name, "scope": scope}, http.StatusCreated }), &k)
		return k.ID, k.Key
	}
	shopID, shop := newKey("web shop", "online")
	c.json(H("GET", "/v1/api-keys"), nil)
	c.json(with(H("POST", "/v1/earn"), func(r *req) {
		r.key, r.body = shop, map[string]any{"order_id": "WEB-4", "member_id": "m2", "amount": 2500, "currency": "EUR"}
	}), nil)
	c.json(with(H("DELETE", "/v1/api-keys/{id}"), func(r *req) { r.params = map[string]string{"id": shopID} }), nil)
	c.do(with(H("GET", "/v1/program"), func(r *req) { r.key, r.want = shop, http.StatusUnauthorized })) // revoked
	c.json(with(H("GET", "/v1/audit"), func(r *req) { r.query = "limit=50" }), nil)

	// Webhooks (an endpoint nobody listens at: nothing here waits for a delivery).
	var wh struct {
		Webhook struct{ ID string } `json:"webhook"`
	}
	c.json(with(H("POST", "/v1/webhooks"), func(r *req) {
		r.body, r.want = map[string]any{"url": "http://127.0.0.1:9/loyalty", "events": []string{"*"}, "description": "CRM"}, http.StatusCreated
	}), &wh)
	c.json(with(H("POST", "/v1/earn"), func(r *req) {
		r.body = map[string]any{"order_id": "WEB-8", "member_id": "m2", "amount": 1200, "currency": "EUR"} // an event for it
	}), nil)
	whID := map[string]string{"id": wh.Webhook.ID}
	c.json(H("GET", "/v1/webhooks"), nil)
	c.json(with(H("GET", "/v1/webhooks/{id}"), func(r *req) { r.params = whID }), nil)
	c.json(with(H("PATCH", "/v1/webhooks/{id}"), func(r *req) { r.params, r.body = whID, map[string]any{"enabled": false} }), nil)
	c.json(with(H("GET", "/v1/webhooks/{id}/deliveries"), func(r *req) { r.params, r.query = whID, "state=pending&limit=10" }), nil)
	c.json(with(H("POST", "/v1/webhooks/{id}/replay"), func(r *req) {
		r.params, r.body = whID, map[string]any{"since": now.Add(-time.Hour)}
	}), nil)
	c.json(with(H("POST", "/v1/webhooks/{id}/rotate-secret"), func(r *req) { r.params = whID }), nil)
	c.json(with(H("DELETE", "/v1/webhooks/{id}"), func(r *req) { r.params = whID }), nil)

	// Migration in and out (docs/API.md): an import, a search, an adjustment and its reversal, exports.
	c.json(with(H("POST", "/v1/imports"), func(r *req) {
		r.query, r.contentType = "import_id=legacy&reason=migration&mode=add", "text/csv"
		r.body = []byte("email,points,name\nzoe@example.com,1200,Zoe\nm1-not-an-email,5,X\n")
	}), nil)
	c.json(with(H("GET", "/v1/members"), func(r *req) { r.query = "email=zoe@example.com&limit=10" }), nil)
	c.json(with(H("POST", "/v1/adjustments"), func(r *req) {
		r.body = map[string]any{"adjust_id": "CS-1", "member_id": "m1", "points": 25, "reason": "goodwill"}
	}), nil)
	c.json(with(H("POST", "/v1/adjustments/{id}/reverse"), func(r *req) {
		r.params, r.body = map[string]string{"id": "CS-1"}, map[string]string{"reason": "wrong member"}
	}), nil)
	for _, q := range []string{"format=csv", "format=jsonl&from=2026-01-01"} {
		c.do(with(H("GET", "/v1/exports/{what}"), func(r *req) { r.params, r.query, r.want = map[string]string{"what": "ledger"}, q, 200 }))
	}

	// The agents' websocket: a real upgrade (the session then waits for the agent's hello).
	ca := testCA(t)
	ws, resp, err := (&websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, HandshakeTimeout: 10 * time.Second}).
		Dial("wss://"+w.hubAddr+"/v1/sync", nil)
	if err != nil {
		t.Fatalf("websocket upgrade at /v1/sync: %v", err)
	}
	ws.Close()
	if sync := c.find("GET", "/v1/sync"); sync.op.Responses.Codes.GetOrZero(fmt.Sprint(resp.StatusCode)) == nil {
		t.Errorf("the websocket upgrade answered %d, which the document does not list", resp.StatusCode)
	} else {
		c.ok["hub GET /v1/sync"] = true
	}

	// Every documented operation succeeded at every server that serves it.
	for _, o := range d.ops {
		for _, s := range o.servers {
			if !c.ok[s+" "+o.pattern()] {
				t.Errorf("%s %s was never called successfully: add it to this test", s, o.pattern())
			}
		}
	}

	// Every operation again with made-up ids and an empty body; with a body not declared as
	// JSON and one over the size limit; without a key, with each scope, and at the agent from a
	// host it does not answer to and without the POS token an agent requires: documented answers
	// only, and never "no such endpoint".
	c.do(with(H("GET", "/v1/sync"), func(r *req) { // a browser page
		r.header, r.want = http.Header{"Origin": {"https://shop.example"}, "Connection": {"Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}, http.StatusForbidden
	}))
	_, online := newKey("probe online", "online")
	_, report := newKey("probe report", "report")
	for _, o := range d.ops {
		params := map[string]string{}
		for _, p := range strings.Split(o.path, "/") {
			if strings.HasPrefix(p, "{") {
				params[strings.Trim(p, "{}")] = "no-such-id"
			}
		}
		var body any
		if o.op.RequestBody != nil {
			body = []byte("{}")
		}
		for _, s := range o.servers {
			r := req{server: s, method: o.method, path: o.path, params: params, body: body}
			scopes, keyed := roles(o.op, "hubApiKey")
			if s == "hub" && keyed {
				r.key = admin
			}
			if body != nil && o.op.RequestBody.Content.GetOrZero("application/json") != nil {
				c.do(with(r, func(r *req) { r.contentType, r.want = "text/plain", http.StatusUnsupportedMediaType }))
				c.do(with(r, func(r *req) { r.body, r.want = bytes.Repeat([]byte("x"), 70_000), http.StatusRequestEntityTooLarge }))
			}
			if s == "agent" {
				c.do(r)
				c.do(with(r, func(r *req) { r.host, r.want = "evil.example", http.StatusForbidden }))
				pos := "http://" + w.addrs["pos"]
				c.do(with(r, func(r *req) { r.base, r.want = pos, http.StatusUnauthorized }))
				c.do(with(r, func(r *req) { r.base, r.key = pos, posToken }))
				continue
			}
			if !keyed {
				c.do(r)
				continue
			}
			c.do(r)
			c.do(with(r, func(r *req) { r.key, r.want = "", http.StatusUnauthorized }))
			for scope, key := range map[string]string{"online": online, "report": report} {
				status, _ := c.do(with(r, func(r *req) { r.key = key }))
				if allowed := slices.Contains(scopes, scope); allowed == (status == http.StatusForbidden) {
					t.Errorf("%s with a %s key answered %d; documented for scopes %v", o.pattern(), scope, status, scopes)
				}
			}
		}
	}
	// What is not a documented operation is no route: 404 (never 405), at the hub only once the
	// key is valid. HEAD is the exception the document names: every GET answers it.
	for _, x := range []struct {
		method, url, key string
		want             int
	}{
		{"GET", w.api() + "/v1/earn", admin, http.StatusNotFound},
		{"DELETE", w.api() + "/v1/members/m1", admin, http.StatusNotFound},
		{"GET", w.api() + "/v1/nothing", report, http.StatusNotFound},
		{"GET", w.api() + "/v1/nothing", "", http.StatusUnauthorized},
		{"POST", w.api() + "/healthz", "", http.StatusUnauthorized},
		{"DELETE", "http://" + w.addrs["s1"] + "/v1/status", "", http.StatusNotFound},
		{"POST", "http://" + w.addrs["s1"] + "/v1/actions", "", http.StatusNotFound},
		{"HEAD", w.api() + "/v1/stores", report, http.StatusOK},
		{"HEAD", "http://" + w.addrs["s1"] + "/v1/status", "", http.StatusOK},
	} {
		if got := call(t, x.method, x.url, x.key, nil, nil); got != x.want {
			t.Errorf("%s %s: HTTP %d, want %d", x.method, x.url, got, x.want)
		}
	}
	t.Logf("%d answers checked against %s", c.checked, openAPIPath)
}
