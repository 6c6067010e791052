package hub_test

// Adversarial tests of the guarantee "bad input gets a clear error and loses nothing", against a
// real hub (SQLite on a temp file, the HTTP API and the websocket sync endpoint on 127.0.0.1:0).
// Every bad call must get its stable error code and HTTP status, and must leave the ledger, the
// balances, the program and the review queues exactly as they were.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	"github.com/loyalty-edge-sync/loyalty/qr"
	"github.com/loyalty-edge-sync/loyalty/qr/qrtest"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

const biAdminKey = "test-admin-key"

// Test hubs have a small websocket read limit and batch limit so tests can exceed them cheaply.
const (
	biReadLimit = 64 << 10
	biMaxBatch  = 10
)

// biTimeout bounds every network wait so a broken hub fails a test instead of hanging it. It is
// a safety net, not an assertion about speed.
const biTimeout = 10 * time.Second

// biClock is the hub's clock in these tests: real time when the test started, moved by hand.
type biClock struct{ ms atomic.Int64 }

func (c *biClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()).UTC() }
func (c *biClock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// biTestHub is a running hub wired the way cmd/loyalty's HubMain wires it.
type biTestHub struct {
	Clock *biClock
	Store hub.Store
	Hub   *hub.Hub
	Sync  *lsync.Server
	HTTP  *hub.Server
}

// MustOpenBIHub starts a hub on a temp database and a free loopback port; it stops with the test.
func MustOpenBIHub(tb testing.TB) *biTestHub {
	tb.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	st := newStore(tb)
	clock := &biClock{}
	clock.ms.Store(time.Now().UnixMilli())
	h := hub.New(st)
	h.KEK = seal.NewRandom()
	h.Logger, h.Now = log, clock.Now
	if err := h.Init(ctx); err != nil {
		tb.Fatalf("init hub: %v", err)
	}
	s := lsync.NewServer(h)
	s.Logger = log
	s.MaxBatch, s.MaxMessageBytes = biMaxBatch, biReadLimit
	h.OnChange = s.NotifyStores
	up := &ws.Upgrader{Options: ws.Options{ReadLimit: biReadLimit}}
	srv := &hub.Server{Hub: h, Sync: s, Addr: "127.0.0.1:0", AdminKey: biAdminKey, Logger: log, Upgrade: up.Upgrade}
	if err := srv.Open(); err != nil {
		tb.Fatalf("open hub server: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return &biTestHub{Clock: clock, Store: st, Hub: h, Sync: s, HTTP: srv}
}

var biHTTPClient = &http.Client{Timeout: biTimeout}

// request sends one HTTP request and returns the status and the raw body.
func biHTTPDo(tb testing.TB, method, url, body, auth string) (int, []byte) {
	tb.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		tb.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := biHTTPClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// do calls the admin API with the admin key.
func (th *biTestHub) do(tb testing.TB, method, path, body string) (int, []byte) {
	tb.Helper()
	return biHTTPDo(tb, method, th.HTTP.URL()+path, body, "Bearer "+biAdminKey)
}

// mustDo calls the admin API, requires a 2xx answer and decodes it into out (if not nil).
func (th *biTestHub) mustDo(tb testing.TB, method, path, body string, out any) []byte {
	tb.Helper()
	status, b := th.do(tb, method, path, body)
	if status/100 != 2 {
		tb.Fatalf("%s %s %s: got status %d %s, want 2xx", method, path, body, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return b
}

// biHubState is what a bad call must not change.
type biHubState struct {
	Members    map[string]string // GET /v1/members/{id}?ledger=1000 without its change version: profile, balance, ledger
	Balances   map[string]int64
	Program    string // raw GET /v1/program
	Points     int64  // sum of all balances
	Rejections int
	Conflicts  int
}

// state reads the hub's state and requires Check to report no balance/ledger mismatch.
func (th *biTestHub) state(tb testing.TB, members ...string) biHubState {
	tb.Helper()
	ctx := context.Background()
	s := biHubState{Members: make(map[string]string), Balances: make(map[string]int64)}
	for _, m := range members {
		// The change version is a feed stamp, not data: a hub may re-stamp a member it looked at.
		var view map[string]any
		th.mustDo(tb, "GET", "/v1/members/"+m+"?ledger=1000", "", &view)
		delete(view, "version")
		s.Members[m] = biJSON(view)
		var b struct {
			Balance int64 `json:"balance"`
		}
		json.Unmarshal([]byte(s.Members[m]), &b)
		s.Balances[m] = b.Balance
	}
	s.Program = string(th.mustDo(tb, "GET", "/v1/program", "", nil))
	rep, err := th.Hub.Check(ctx)
	if err != nil {
		tb.Fatalf("check: %v", err)
	}
	if len(rep.Mismatches) != 0 {
		tb.Errorf("check: got mismatches %q, want none", rep.Mismatches)
	}
	s.Points = rep.Points
	rej, err := th.Hub.Rejections(ctx, 100000)
	if err != nil {
		tb.Fatalf("rejections: %v", err)
	}
	con, err := th.Hub.Conflicts(ctx, 100000)
	if err != nil {
		tb.Fatalf("conflicts: %v", err)
	}
	s.Rejections, s.Conflicts = len(rej), len(con)
	return s
}

// assertState checks that the hub's state is want.
func (th *biTestHub) assertState(tb testing.TB, want biHubState) {
	tb.Helper()
	ids := make([]string, 0, len(want.Members))
	for id := range want.Members {
		ids = append(ids, id)
	}
	got := th.state(tb, ids...)
	for _, id := range ids {
		if got.Members[id] != want.Members[id] {
			tb.Errorf("member %s changed:\n got %s\nwant %s", id, got.Members[id], want.Members[id])
		}
	}
	if got.Program != want.Program {
		tb.Errorf("program changed:\n got %s\nwant %s", got.Program, want.Program)
	}
	if got.Points != want.Points {
		tb.Errorf("got %d points in all balances, want %d", got.Points, want.Points)
	}
	if got.Rejections != want.Rejections {
		tb.Errorf("got %d recorded rejections, want %d", got.Rejections, want.Rejections)
	}
	if got.Conflicts != want.Conflicts {
		tb.Errorf("got %d recorded conflicts, want %d", got.Conflicts, want.Conflicts)
	}
}

// signingKey returns the hub's current private key, to mint tokens the hub would not (expired).
func (th *biTestHub) signingKey(tb testing.TB) qr.PrivateKey {
	tb.Helper()
	k, err := th.Hub.SigningKey(context.Background())
	if err != nil {
		tb.Fatalf("signing key: %v", err)
	}
	return k
}

func biJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// badFixture is a hub with two stores, three members, some online activity and tokens.
type badFixture struct {
	*biTestHub
	Tokens      map[string]string // store id -> current token
	OldToken    string            // s2's token before rotation
	Members     []string
	AliceQR     string
	Voucher     hub.Voucher // alice's unused coffee voucher
	UsedVoucher string      // alice's five-off voucher token, already used online
}

func newBadFixture(tb testing.TB) *badFixture {
	tb.Helper()
	fx := &badFixture{biTestHub: MustOpenBIHub(tb), Tokens: make(map[string]string), Members: []string{"alice", "bob", "carol"}}
	for _, id := range []string{"s1", "s2"} {
		var out struct {
			Token string `json:"token"`
		}
		fx.mustDo(tb, "POST", "/v1/stores", `{"id":"`+id+`"}`, &out)
		fx.Tokens[id] = out.Token
	}
	var rot struct {
		Token string `json:"token"`
	}
	fx.mustDo(tb, "POST", "/v1/stores/s2/token", "", &rot)
	fx.OldToken, fx.Tokens["s2"] = fx.Tokens["s2"], rot.Token
	fx.mustDo(tb, "POST", "/v1/members", `{"id":"alice","email":"alice@example.com","home_store":"s1"}`, nil)
	fx.mustDo(tb, "POST", "/v1/members", `{"id":"bob","home_store":"s1"}`, nil)
	fx.mustDo(tb, "POST", "/v1/members", `{"id":"carol","home_store":"s2"}`, nil)
	fx.mustDo(tb, "POST", "/v1/earn", `{"order_id":"seed-earn","member_id":"alice","amount":30000,"currency":"EUR"}`, nil)
	var vr hub.VoucherReceipt
	fx.mustDo(tb, "POST", "/v1/vouchers", `{"order_id":"seed-voucher","member_id":"alice","reward_id":"coffee"}`, &vr)
	fx.Voucher = vr.Voucher
	fx.mustDo(tb, "POST", "/v1/vouchers", `{"order_id":"seed-voucher-2","member_id":"alice","reward_id":"five-off"}`, &vr)
	fx.UsedVoucher = vr.Voucher.Token
	fx.mustDo(tb, "POST", "/v1/redeem", `{"order_id":"seed-use","voucher":"`+fx.UsedVoucher+`"}`, nil)
	var tok struct {
		Token string `json:"token"`
	}
	fx.mustDo(tb, "GET", "/v1/members/alice/qr", "", &tok)
	fx.AliceQR = tok.Token
	var m hub.MemberView
	fx.mustDo(tb, "GET", "/v1/members/alice", "", &m)
	if got, want := m.Balance, int64(300-50-100); got != want {
		tb.Fatalf("fixture: alice has %d points, want %d", got, want)
	}
	return fx
}

// badTokens returns member and voucher tokens that every channel must refuse, by name.
func (fx *badFixture) badTokens(tb testing.TB) map[string]string {
	tb.Helper()
	hk := fx.signingKey(tb)
	now := time.Now()
	bad := qrtest.Refused(tb, hk, fx.AliceQR, "alice", now)
	bad["expired"] = qrtest.Sign(tb, hk, qr.Claims{Type: qr.TypeMember, Member: "alice",
		IssuedAt: now.Add(-48 * time.Hour).Unix(), Expires: now.Add(-time.Hour).Unix()})
	bad["expired voucher"] = qrtest.Sign(tb, hk, qr.Claims{Type: qr.TypeVoucher, Member: "alice", Voucher: fx.Voucher.ID,
		Reward: "coffee", IssuedAt: now.Add(-48 * time.Hour).Unix(), Expires: now.Add(-time.Hour).Unix()})
	bad["ghost member"] = qrtest.Sign(tb, hk, qr.Claims{Type: qr.TypeMember, Member: "ghost", IssuedAt: now.Unix()})
	return bad
}

func TestOnlineBadInput(t *testing.T) {
	fx := newBadFixture(t)
	bad := fx.badTokens(t)
	before := fx.state(t, fx.Members...)

	earn := func(fields string) string {
		return `{"order_id":"o-bad","member_id":"alice","currency":"EUR",` + fields + `}`
	}
	big := `{"order_id":"o-big","member_id":"alice","amount":100,"currency":"EUR","terminal":"` + strings.Repeat("x", 100<<10) + `"}`
	type tc struct {
		name, method, path, body string
		status                   int
		code                     string
	}
	tests := []tc{
		// Malformed bodies.
		{"malformed json", "POST", "/v1/earn", `{"order_id":"o-bad","amount":`, 400, loyalty.EINVALID},
		{"empty body", "POST", "/v1/earn", ``, 400, loyalty.EINVALID},
		{"json array", "POST", "/v1/earn", `[1,2]`, 400, loyalty.EINVALID},
		{"trailing data", "POST", "/v1/earn", earn(`"amount":100`) + `{"order_id":"x"}`, 400, loyalty.EINVALID},
		{"unknown field", "POST", "/v1/earn", earn(`"amount":100,"points":1000000`), 400, loyalty.EINVALID},
		{"misspelled field", "POST", "/v1/earn", `{"order_id":"o-bad","memberid":"alice","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"wrong type member_id", "POST", "/v1/earn", `{"order_id":"o-bad","member_id":7,"amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"oversized body", "POST", "/v1/earn", big, 413, loyalty.ETOOLARGE},
		{"oversized voucher body", "POST", "/v1/vouchers", strings.Replace(big, `"amount":100,"currency":"EUR",`, `"reward_id":"coffee",`, 1), 413, loyalty.ETOOLARGE},

		// Money.
		{"negative amount", "POST", "/v1/earn", earn(`"amount":-100`), 400, loyalty.EINVALID},
		{"fractional amount", "POST", "/v1/earn", earn(`"amount":12.5`), 400, loyalty.EINVALID},
		{"string amount", "POST", "/v1/earn", earn(`"amount":"1250"`), 400, loyalty.EINVALID},
		{"exponent amount", "POST", "/v1/earn", earn(`"amount":1e3`), 400, loyalty.EINVALID},
		{"null amount", "POST", "/v1/earn", earn(`"amount":null`), 400, loyalty.EINVALID},
		{"missing amount", "POST", "/v1/earn", earn(`"terminal":"t1"`), 400, loyalty.EINVALID},
		{"lines that wrap around in int64", "POST", "/v1/earn", earn(`"amount":2,"lines":[{"qty":1,"amount":9223372036854775807},{"qty":1,"amount":9223372036854775807},{"qty":1,"amount":4}]`), 400, loyalty.EINVALID},
		{"crafted category lines worth 500,000,000 points", "POST", "/v1/earn", earn(`"amount":1000,"lines":[{"category":"coffee","qty":1,"amount":6148914707903183872},{"sku":"decaf-250g","qty":1,"amount":9223372036854775807},{"sku":"decaf-250g","qty":1,"amount":3074457328951592937}]`), 400, loyalty.EINVALID},
		{"a line over the maximum amount", "POST", "/v1/earn", earn(`"amount":100,"lines":[{"qty":1,"amount":1000000000001},{"qty":1,"amount":-999999999901}]`), 400, loyalty.EINVALID},
		{"invalid UTF-8 order id", "POST", "/v1/earn", "{\"order_id\":\"X-\xff\xfe\",\"member_id\":\"alice\",\"currency\":\"EUR\",\"amount\":100}", 400, loyalty.EINVALID},
		{"amount over max", "POST", "/v1/earn", earn(`"amount":1000000000001`), 400, loyalty.EINVALID},
		{"amount overflows int64", "POST", "/v1/earn", earn(`"amount":99999999999999999999`), 400, loyalty.EINVALID},
		{"negative zero fraction", "POST", "/v1/earn", earn(`"amount":-0.0`), 400, loyalty.EINVALID},
		{"wrong currency", "POST", "/v1/earn", `{"order_id":"o-bad","member_id":"alice","amount":100,"currency":"USD"}`, 400, loyalty.EINVALID},
		{"lower-case currency", "POST", "/v1/earn", `{"order_id":"o-bad","member_id":"alice","amount":100,"currency":"eur"}`, 400, loyalty.EINVALID},

		// Idempotency keys and members.
		{"missing order_id", "POST", "/v1/earn", `{"member_id":"alice","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"order_id too long", "POST", "/v1/earn", `{"order_id":"` + strings.Repeat("o", loyalty.MaxIDLength+1) + `","member_id":"alice","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"no member", "POST", "/v1/earn", `{"order_id":"o-bad","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"unknown member", "POST", "/v1/earn", `{"order_id":"o-bad","member_id":"ghost","amount":100,"currency":"EUR"}`, 404, loyalty.ENOTFOUND},
		{"unknown member redeem", "POST", "/v1/redeem", `{"order_id":"o-bad","member_id":"ghost","reward_id":"coffee"}`, 404, loyalty.ENOTFOUND},
		{"signed token of unknown member", "POST", "/v1/earn", `{"order_id":"o-bad","qr":"` + bad["ghost member"] + `","amount":100,"currency":"EUR"}`, 404, loyalty.ENOTFOUND},

		// Rewards and points.
		{"unknown reward", "POST", "/v1/redeem", `{"order_id":"o-bad","member_id":"alice","reward_id":"yacht"}`, 404, loyalty.ENOTFOUND},
		{"unknown reward voucher", "POST", "/v1/vouchers", `{"order_id":"o-bad","member_id":"alice","reward_id":"yacht"}`, 404, loyalty.ENOTFOUND},
		{"too few points", "POST", "/v1/redeem", `{"order_id":"o-bad","member_id":"alice","reward_id":"tote"}`, 422, loyalty.EINSUFFICIENT},
		{"zero points", "POST", "/v1/redeem", `{"order_id":"o-bad","member_id":"bob","reward_id":"coffee"}`, 422, loyalty.EINSUFFICIENT},
		{"too few points voucher", "POST", "/v1/vouchers", `{"order_id":"o-bad","member_id":"bob","reward_id":"coffee"}`, 422, loyalty.EINSUFFICIENT},

		// Vouchers.
		{"voucher used twice", "POST", "/v1/redeem", `{"order_id":"o-bad","voucher":"` + fx.UsedVoucher + `"}`, 409, loyalty.ECONFLICT},
		{"expired voucher", "POST", "/v1/redeem", `{"order_id":"o-bad","voucher":"` + bad["expired voucher"] + `"}`, 400, loyalty.EINVALID},
		{"member token as voucher", "POST", "/v1/redeem", `{"order_id":"o-bad","voucher":"` + fx.AliceQR + `"}`, 400, loyalty.EINVALID},
		{"voucher token as member earn", "POST", "/v1/earn", `{"order_id":"o-bad","qr":"` + fx.Voucher.Token + `","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"voucher token as member redeem", "POST", "/v1/redeem", `{"order_id":"o-bad","qr":"` + fx.Voucher.Token + `","reward_id":"coffee"}`, 400, loyalty.EINVALID},
		{"voucher token as member voucher issue", "POST", "/v1/vouchers", `{"order_id":"o-bad","qr":"` + fx.Voucher.Token + `","reward_id":"coffee"}`, 400, loyalty.EINVALID},

		// Reverse.
		{"redeem names no reward", "POST", "/v1/redeem", `{"order_id":"o-bad","member_id":"alice"}`, 400, loyalty.EINVALID},
		{"voucher names no reward", "POST", "/v1/vouchers", `{"order_id":"o-bad","member_id":"alice"}`, 400, loyalty.EINVALID},
		{"reverse unknown order", "POST", "/v1/reverse", `{"order_id":"never-sold"}`, 404, loyalty.ENOTFOUND},
		{"reverse without order", "POST", "/v1/reverse", `{}`, 400, loyalty.EINVALID},
		{"reverse unknown field", "POST", "/v1/reverse", `{"order_id":"seed-earn","points":5}`, 400, loyalty.EINVALID},

		// Admin.
		{"member bad id", "POST", "/v1/members", `{"id":"bad id!"}`, 400, loyalty.EINVALID},
		{"member duplicate id", "POST", "/v1/members", `{"id":"alice"}`, 409, loyalty.EDUPLICATE},
		{"member duplicate email", "POST", "/v1/members", `{"id":"alice2","email":"ALICE@example.com"}`, 409, loyalty.EDUPLICATE},
		{"member bad email", "POST", "/v1/members", `{"id":"dave","email":"not-an-email"}`, 400, loyalty.EINVALID},
		{"member unknown home store", "POST", "/v1/members", `{"id":"dave","home_store":"s9"}`, 400, loyalty.EINVALID},
		{"member unknown field", "POST", "/v1/members", `{"id":"dave","points":100}`, 400, loyalty.EINVALID},
		{"store reserved id", "POST", "/v1/stores", `{"id":"online"}`, 400, loyalty.EINVALID},
		{"store duplicate", "POST", "/v1/stores", `{"id":"s1"}`, 409, loyalty.EDUPLICATE},
		{"store bad id", "POST", "/v1/stores", `{"id":"../s1"}`, 400, loyalty.EINVALID},
		{"rotate unknown store", "POST", "/v1/stores/s9/token", ``, 404, loyalty.ENOTFOUND},
		{"program bad currency", "PUT", "/v1/program", `{"currency":"euro","earn":{"points_per_unit":1,"unit_minor":100},"rewards":[]}`, 400, loyalty.EINVALID},
		{"program zero unit", "PUT", "/v1/program", `{"currency":"EUR","earn":{"points_per_unit":1,"unit_minor":0},"rewards":[]}`, 400, loyalty.EINVALID},
		{"program free reward", "PUT", "/v1/program", `{"currency":"EUR","earn":{"points_per_unit":1,"unit_minor":100},"rewards":[{"id":"x","name":"X","points_cost":0}]}`, 400, loyalty.EINVALID},
		{"program duplicate reward", "PUT", "/v1/program", `{"currency":"EUR","earn":{"points_per_unit":1,"unit_minor":100},"rewards":[{"id":"x","name":"X","points_cost":1},{"id":"x","name":"Y","points_cost":2}]}`, 400, loyalty.EINVALID},
		{"program unknown field", "PUT", "/v1/program", `{"currency":"EUR","earn":{"points_per_unit":1,"unit_minor":100},"rewards":[],"tiers":[]}`, 400, loyalty.EINVALID},
		{"unknown member view", "GET", "/v1/members/ghost", ``, 404, loyalty.ENOTFOUND},
		{"unknown member qr", "GET", "/v1/members/ghost/qr", ``, 404, loyalty.ENOTFOUND},
		{"unknown endpoint", "POST", "/v1/points", `{}`, 404, loyalty.ENOTFOUND},
		{"wrong method", "GET", "/v1/earn", ``, 404, loyalty.ENOTFOUND},
	}
	for name, tok := range bad {
		if name == "ghost member" || name == "expired voucher" {
			continue
		}
		tests = append(tests,
			tc{"earn qr " + name, "POST", "/v1/earn", `{"order_id":"o-bad","qr":` + biJSON(tok) + `,"amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
			tc{"redeem qr " + name, "POST", "/v1/redeem", `{"order_id":"o-bad","qr":` + biJSON(tok) + `,"reward_id":"coffee"}`, 400, loyalty.EINVALID},
			tc{"voucher " + name, "POST", "/v1/redeem", `{"order_id":"o-bad","voucher":` + biJSON(tok) + `}`, 400, loyalty.EINVALID},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := fx.do(t, tt.method, tt.path, tt.body)
			jsonapitest.AssertError(t, status, body, tt.status, tt.code)
			fx.assertState(t, before)
		})
	}

	// A refusal is not remembered: the order id o-bad, refused above, still works.
	fx.mustDo(t, "POST", "/v1/earn", earn(`"amount":100`), nil)
	after := fx.state(t, fx.Members...)
	if got, want := after.Points, before.Points+1; got != want {
		t.Errorf("after a good earn under a once-refused order id: got %d points in all balances, want %d", got, want)
	}
}

func TestAdminAuth(t *testing.T) {
	th := MustOpenBIHub(t)
	tests := []struct {
		name, auth string
	}{
		{"no key", ""},
		{"wrong key", "Bearer nope"},
		{"key without bearer", biAdminKey},
		{"key with suffix", "Bearer " + biAdminKey + "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := biHTTPDo(t, "POST", th.HTTP.URL()+"/v1/stores", `{"id":"evil"}`, tt.auth)
			jsonapitest.AssertError(t, status, body, http.StatusUnauthorized, loyalty.EUNAUTHORIZED)
			stores, err := th.Hub.Stores(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(stores) != 0 {
				t.Errorf("got %d stores after a refused create, want 0", len(stores))
			}
		})
	}
}

// TestCreateMemberCannotMintPoints: a create-member body that sets a balance is refused, or the
// balance is ignored; either way no points appear.
func TestCreateMemberCannotMintPoints(t *testing.T) {
	th := MustOpenBIHub(t)
	status, body := th.do(t, "POST", "/v1/members", `{"id":"mallory","balance":1000000,"version":99999}`)
	if status/100 == 2 {
		var m loyalty.Member
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		if got, want := m.Balance, int64(0); got != want {
			t.Errorf("got created balance %d, want %d", got, want)
		}
	} else {
		jsonapitest.AssertError(t, status, body, http.StatusBadRequest, loyalty.EINVALID)
	}
	if got, want := th.state(t).Points, int64(0); got != want {
		t.Errorf("got %d points in all balances, want %d", got, want)
	}
}

// TestOnlineRetries: the same order id with the same body gets the same bytes back and changes
// nothing more; with a different body it is ECONFLICT and changes nothing.
func TestOnlineRetries(t *testing.T) {
	fx := newBadFixture(t)
	tests := []struct {
		name, path, first, same, different string
	}{
		{"earn", "/v1/earn",
			`{"order_id":"r-earn","member_id":"alice","amount":1250,"currency":"EUR"}`,
			"{ \"currency\": \"EUR\", \"amount\": 1250,\n \"member_id\": \"alice\", \"order_id\": \"r-earn\" }",
			`{"order_id":"r-earn","member_id":"alice","amount":1251,"currency":"EUR"}`},
		{"earn other member", "/v1/earn",
			`{"order_id":"r-earn2","member_id":"alice","amount":500,"currency":"EUR"}`,
			`{"order_id":"r-earn2","member_id":"alice","amount":500,"currency":"EUR"}`,
			`{"order_id":"r-earn2","member_id":"bob","amount":500,"currency":"EUR"}`},
		{"redeem", "/v1/redeem",
			`{"order_id":"r-redeem","member_id":"alice","reward_id":"coffee"}`,
			`{"order_id":"r-redeem","member_id":"alice","reward_id":"coffee"}`,
			`{"order_id":"r-redeem","member_id":"bob","reward_id":"coffee"}`}, // same key (order, reward), other body
		{"voucher", "/v1/vouchers",
			`{"order_id":"r-voucher","member_id":"alice","reward_id":"coffee"}`,
			`{"order_id":"r-voucher","member_id":"alice","reward_id":"coffee"}`,
			`{"order_id":"r-voucher","member_id":"alice","reward_id":"coffee","terminal":"t2"}`},
		{"reverse", "/v1/reverse",
			`{"order_id":"seed-earn"}`,
			`{"order_id":"seed-earn"}`,
			`{"order_id":"seed-earn","terminal":"t9"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := fx.mustDo(t, "POST", tt.path, tt.first, nil)
			before := fx.state(t, fx.Members...)

			status, again := fx.do(t, "POST", tt.path, tt.same)
			if status != http.StatusOK {
				t.Fatalf("retry: got status %d %s, want 200", status, again)
			}
			if string(again) != string(first) {
				t.Errorf("retry: got body\n%s\nwant the first answer\n%s", again, first)
			}
			fx.assertState(t, before)

			status, body := fx.do(t, "POST", tt.path, tt.different)
			jsonapitest.AssertError(t, status, body, http.StatusConflict, loyalty.ECONFLICT)
			fx.assertState(t, before)

			// The conflict did not replace the remembered answer.
			_, again = fx.do(t, "POST", tt.path, tt.same)
			if string(again) != string(first) {
				t.Errorf("retry after the conflict: got body\n%s\nwant the first answer\n%s", again, first)
			}
		})
	}
}

// TestOnlineRetryAfterTokenExpiry: a retry of an approved online call must get the first answer
// even if the code it carried expired in between.
func TestOnlineRetryAfterTokenExpiry(t *testing.T) {
	fx := newBadFixture(t)
	hk := fx.signingKey(t)
	now := fx.Clock.Now()
	member := qrtest.Sign(t, hk, qr.Claims{Type: qr.TypeMember, Member: "alice", IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix()})
	voucher := qrtest.Sign(t, hk, qr.Claims{Type: qr.TypeVoucher, Member: "alice", Voucher: fx.Voucher.ID, Reward: "coffee",
		IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix()})
	calls := []struct{ path, body string }{
		{"/v1/earn", `{"order_id":"x-earn","qr":"` + member + `","amount":1250,"currency":"EUR"}`},
		{"/v1/redeem", `{"order_id":"x-redeem","qr":"` + member + `","reward_id":"coffee"}`},
		{"/v1/redeem", `{"order_id":"x-voucher","voucher":"` + voucher + `"}`},
	}
	first := make([][]byte, len(calls))
	for i, c := range calls {
		first[i] = fx.mustDo(t, "POST", c.path, c.body, nil)
	}
	before := fx.state(t, fx.Members...)
	fx.Clock.Advance(time.Hour)
	for i, c := range calls {
		status, body := fx.do(t, "POST", c.path, c.body)
		if status != http.StatusOK || string(body) != string(first[i]) {
			t.Errorf("retry of %s after the code expired: got %d %s, want 200 and the first answer %s", c.body[:24], status, body, first[i])
		}
	}
	fx.assertState(t, before)
}

// --- websocket ------------------------------------------------------------------------------

// dial opens a raw websocket to the hub's sync endpoint.
func (th *biTestHub) dial(tb testing.TB) *websocket.Conn {
	tb.Helper()
	d := websocket.Dialer{HandshakeTimeout: biTimeout}
	c, resp, err := d.Dial(th.HTTP.SyncURL(), nil)
	if err != nil {
		tb.Fatalf("dial %s: %v", th.HTTP.SyncURL(), err)
	}
	resp.Body.Close()
	tb.Cleanup(func() { c.Close() })
	return c
}

func wsSendRaw(tb testing.TB, c *websocket.Conn, b []byte) {
	tb.Helper()
	c.SetWriteDeadline(time.Now().Add(biTimeout))
	if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
		tb.Fatalf("write: %v", err)
	}
}

func wsSend(tb testing.TB, c *websocket.Conn, m *lsync.Message) {
	tb.Helper()
	b, err := lsync.Encode(m)
	if err != nil {
		tb.Fatal(err)
	}
	wsSendRaw(tb, c, b)
}

// next returns the next message from the hub other than notify, or the read error.
func wsNext(tb testing.TB, c *websocket.Conn) (*lsync.Message, error) {
	tb.Helper()
	for {
		c.SetReadDeadline(time.Now().Add(biTimeout))
		_, b, err := c.ReadMessage()
		if err != nil {
			return nil, err
		}
		m, err := lsync.Decode(b)
		if err != nil {
			tb.Fatalf("hub sent an undecodable message %s: %v", b, err)
		}
		if m.Type != lsync.TypeNotify {
			return m, nil
		}
	}
}

func wsMustNext(tb testing.TB, c *websocket.Conn, wantType string) *lsync.Message {
	tb.Helper()
	m, err := wsNext(tb, c)
	if err != nil {
		tb.Fatalf("read: %v; want a %s message", err, wantType)
	}
	if m.Type != wantType {
		tb.Fatalf("got a %s message %+v, want %s", m.Type, m.Error, wantType)
	}
	return m
}

func wsHello(store, token string, versions ...int) *lsync.Message {
	if versions == nil {
		versions = lsync.Versions
	}
	return &lsync.Message{Type: lsync.TypeHello, ID: 1, Hello: &lsync.Hello{Versions: versions, Store: store, Token: token,
		SentAt: time.Now().UnixMilli()}}
}

// session dials and completes the handshake as store.
func (th *biTestHub) session(tb testing.TB, store, token string) *websocket.Conn {
	tb.Helper()
	c := th.dial(tb)
	wsSend(tb, c, wsHello(store, token))
	if w := wsMustNext(tb, c, lsync.TypeWelcome).Welcome; w.Store != store {
		tb.Fatalf("welcome for store %q, want %q", w.Store, store)
	}
	// Pull the change feed first, as an agent does: the hub accepts only rule versions it sent.
	wsSend(tb, c, &lsync.Message{Type: lsync.TypePull, ID: 2, Pull: &lsync.Pull{Limit: 500}})
	wsMustNext(tb, c, lsync.TypeChanges)
	return c
}

// expectRefusal requires an error message with wantCode, then the end of the session.
func wsExpectRefusal(tb testing.TB, c *websocket.Conn, wantCode string) {
	tb.Helper()
	m, err := wsNext(tb, c)
	if err != nil {
		tb.Errorf("the hub closed the connection (%v) without an error message; want a %s error", err, wantCode)
		return
	}
	if m.Type != lsync.TypeError {
		tb.Errorf("got a %s message, want an error with code %s", m.Type, wantCode)
		return
	}
	if got, want := m.Error.Code, wantCode; got != want {
		tb.Errorf("got error code %s (%q), want %s", got, m.Error.Message, want)
	}
	if m.Error.Message == "" {
		tb.Errorf("error %s has an empty message", m.Error.Code)
	}
	if m, err := wsNext(tb, c); err == nil {
		tb.Errorf("after the %s error the hub sent a %s message; want the session closed", wantCode, m.Type)
	}
}

// expectAlive checks that a session still answers: a ping gets its pong.
func wsExpectAlive(tb testing.TB, c *websocket.Conn) {
	tb.Helper()
	wsSend(tb, c, &lsync.Message{Type: lsync.TypePing, ID: 777, Ping: &lsync.Ping{SentAt: time.Now().UnixMilli()}})
	if got := wsMustNext(tb, c, lsync.TypePong); got.ID != 777 {
		tb.Errorf("got pong id %d, want 777", got.ID)
	}
}

var wsPushID uint64 = 100

// push sends one push and returns its ack.
func wsPush(tb testing.TB, c *websocket.Conn, deltas ...loyalty.Delta) *lsync.Ack {
	tb.Helper()
	wsPushID++
	id := wsPushID
	wsSend(tb, c, &lsync.Message{Type: lsync.TypePush, ID: id, Push: &lsync.Push{Deltas: deltas}})
	m := wsMustNext(tb, c, lsync.TypeAck)
	if m.ID != id {
		tb.Fatalf("got ack for request %d, want %d", m.ID, id)
	}
	if got, want := len(m.Ack.Results), len(deltas); got != want {
		tb.Fatalf("got %d results for %d deltas", got, want)
	}
	for i, r := range m.Ack.Results {
		if r.DeltaID != deltas[i].ID {
			tb.Errorf("result %d is for delta %q, want %q", i, r.DeltaID, deltas[i].ID)
		}
	}
	return m.Ack
}

func mustAllApplied(tb testing.TB, ack *lsync.Ack) {
	tb.Helper()
	for _, r := range ack.Results {
		if r.Status != lsync.StatusApplied {
			tb.Fatalf("delta %s: got status %s %s %s, want applied", r.DeltaID, r.Status, r.Code, r.Message)
		}
	}
}

// deltaTime dates the raw sync tests' deltas: now, as an honest store would (the hub refuses dates
// before a store's previous sync or far in the future).
var deltaTime = time.Now().UTC().Truncate(time.Millisecond)

func biEarn(id, store, member string, amount int64) loyalty.Delta {
	return loyalty.Delta{ID: id, Store: store, Terminal: "t1", Member: member, Kind: loyalty.KindEarn, Points: amount / 100,
		Amount: amount, Currency: "EUR", OrderID: "order-" + id, RuleVersion: 1, OccurredAt: deltaTime}
}

func biRedeem(id, store, member, reward string, points int64) loyalty.Delta {
	return loyalty.Delta{ID: id, Store: store, Member: member, Kind: loyalty.KindRedeem, Points: -points, Reward: reward,
		OrderID: "order-" + id, RuleVersion: 1, OccurredAt: deltaTime}
}

func biReverse(id, store, member, reverses string, points int64) loyalty.Delta {
	return loyalty.Delta{ID: id, Store: store, Member: member, Kind: loyalty.KindReverse, Points: points, Reverses: reverses,
		OrderID: "order-" + id, RuleVersion: 1, OccurredAt: deltaTime}
}

func TestSyncHandshakeRefusals(t *testing.T) {
	fx := newBadFixture(t)
	live := fx.session(t, "s1", fx.Tokens["s1"]) // a refused hello must not disturb the store's session
	before := fx.state(t, fx.Members...)
	tests := []struct {
		name string
		send func(t *testing.T, c *websocket.Conn)
		code string
	}{
		{"wrong token", func(t *testing.T, c *websocket.Conn) { wsSend(t, c, wsHello("s1", fx.Tokens["s2"])) }, loyalty.EUNAUTHORIZED},
		{"empty token", func(t *testing.T, c *websocket.Conn) { wsSend(t, c, wsHello("s1", "")) }, loyalty.EUNAUTHORIZED},
		{"token of rotated store", func(t *testing.T, c *websocket.Conn) { wsSend(t, c, wsHello("s2", fx.OldToken)) }, loyalty.EUNAUTHORIZED},
		{"unknown store", func(t *testing.T, c *websocket.Conn) { wsSend(t, c, wsHello("s9", fx.Tokens["s1"])) }, loyalty.EUNAUTHORIZED},
		{"online store", func(t *testing.T, c *websocket.Conn) { wsSend(t, c, wsHello("online", fx.Tokens["s1"])) }, loyalty.EUNAUTHORIZED},
		{"unknown version", func(t *testing.T, c *websocket.Conn) { wsSend(t, c, wsHello("s1", fx.Tokens["s1"], 99)) }, loyalty.EVERSION},
		{"no versions", func(t *testing.T, c *websocket.Conn) { wsSend(t, c, wsHello("s1", fx.Tokens["s1"], []int{}...)) }, loyalty.EVERSION},
		{"malformed json", func(t *testing.T, c *websocket.Conn) { wsSendRaw(t, c, []byte(`{"type":"hello","hello":{`)) }, loyalty.EINVALID},
		{"hello without body", func(t *testing.T, c *websocket.Conn) { wsSendRaw(t, c, []byte(`{"type":"hello"}`)) }, loyalty.EINVALID},
		{"unknown type", func(t *testing.T, c *websocket.Conn) { wsSendRaw(t, c, []byte(`{"type":"gimme"}`)) }, loyalty.EINVALID},
		{"push before hello", func(t *testing.T, c *websocket.Conn) {
			wsSend(t, c, &lsync.Message{Type: lsync.TypePush, ID: 1, Push: &lsync.Push{Deltas: []loyalty.Delta{biEarn("d-pre", "s1", "alice", 1000)}}})
		}, loyalty.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fx.dial(t)
			tt.send(t, c)
			wsExpectRefusal(t, c, tt.code)
			fx.assertState(t, before)
			wsExpectAlive(t, live)
			if got, want := fx.Sync.Sessions(), 1; got != want {
				t.Errorf("got %d sessions, want %d: a refused hello must not open one", got, want)
			}
		})
	}
}

// TestSyncRefusalDelivered repeats the most common refusal, a wrong token, many times: the agent
// must be told EUNAUTHORIZED every time, or it cannot tell a refusal from a network failure.
func TestSyncRefusalDelivered(t *testing.T) {
	fx := newBadFixture(t)
	lost := 0
	const n = 50
	for range n {
		c := fx.dial(t)
		wsSend(t, c, wsHello("s1", "wrong"))
		m, err := wsNext(t, c)
		if err != nil {
			lost++
			continue
		}
		if m.Type != lsync.TypeError || m.Error.Code != loyalty.EUNAUTHORIZED {
			t.Fatalf("got %s %+v, want an EUNAUTHORIZED error", m.Type, m.Error)
		}
		c.Close()
	}
	if lost > 0 {
		t.Errorf("%d of %d wrong-token hellos got no error message, only a closed connection; want EUNAUTHORIZED every time", lost, n)
	}
}

func TestSyncSessionErrors(t *testing.T) {
	fx := newBadFixture(t)
	before := fx.state(t, fx.Members...)
	var tooMany []loyalty.Delta
	for i := range biMaxBatch + 1 {
		tooMany = append(tooMany, biEarn(fmt.Sprintf("d-many-%d", i), "s1", "alice", 1000))
	}
	tests := []struct {
		name string
		msg  string
		code string
	}{
		{"malformed json", `{"type":"push","push":{"deltas":[`, loyalty.EINVALID},
		{"not json", `hello hub`, loyalty.EINVALID},
		{"second hello", biJSON(wsHello("s1", fx.Tokens["s1"])), loyalty.EINVALID},
		{"hello as other store", biJSON(wsHello("s2", fx.Tokens["s2"])), loyalty.EINVALID},
		{"ack from agent", `{"type":"ack","id":5,"ack":{"results":[]}}`, loyalty.EINVALID},
		{"changes from agent", `{"type":"changes","id":5,"changes":{"cursor":99999}}`, loyalty.EINVALID},
		{"push without body", `{"type":"push","id":5}`, loyalty.EINVALID},
		{"push wrong types", `{"type":"push","id":5,"push":{"deltas":[{"id":"d-x","store":"s1","member":"alice","kind":"earn","points":"10"}]}}`, loyalty.EINVALID},
		{"push bad time", `{"type":"push","id":5,"push":{"deltas":[{"id":"d-x","store":"s1","member":"alice","kind":"earn","points":10,"occurred_at":"yesterday"}]}}`, loyalty.EINVALID},
		{"unknown type", `{"type":"gimme","id":5}`, loyalty.EINVALID},
		{"too many deltas", biJSON(&lsync.Message{Type: lsync.TypePush, ID: 5, Push: &lsync.Push{Deltas: tooMany}}), loyalty.ETOOLARGE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fx.session(t, "s1", fx.Tokens["s1"])
			wsSendRaw(t, c, []byte(tt.msg))
			wsExpectRefusal(t, c, tt.code)
			fx.assertState(t, before)
		})
	}
}

func TestSyncOversizedMessage(t *testing.T) {
	fx := newBadFixture(t)
	c := fx.session(t, "s1", fx.Tokens["s1"])
	mustAllApplied(t, wsPush(t, c, biEarn("d-first", "s1", "alice", 1000)))
	before := fx.state(t, fx.Members...)

	// A push that is valid JSON but over the read limit: nothing of it may be applied.
	d := biEarn("d-huge", "s1", "alice", 1000)
	d.Terminal = strings.Repeat("x", biReadLimit)
	b, _ := lsync.Encode(&lsync.Message{Type: lsync.TypePush, ID: 9, Push: &lsync.Push{Deltas: []loyalty.Delta{d}}})
	c.SetWriteDeadline(time.Now().Add(biTimeout))
	c.WriteMessage(websocket.TextMessage, b) // may fail if the hub has already closed

	m, err := wsNext(t, c)
	var ce *websocket.CloseError
	switch {
	case err == nil && m.Type == lsync.TypeError:
		if got, want := m.Error.Code, loyalty.ETOOLARGE; got != want {
			t.Errorf("got error code %s, want %s", got, want)
		}
	case err == nil:
		t.Errorf("got a %s message after an oversized push, want ETOOLARGE or close code 1009", m.Type)
	case errors.As(err, &ce):
		t.Logf("oversized push: connection closed with code %d", ce.Code)
		if got, want := ce.Code, websocket.CloseMessageTooBig; got != want {
			t.Errorf("got close code %d (%q), want %d (message too big)", got, ce.Text, want)
		}
	default:
		t.Errorf("got %v after an oversized push, want ETOOLARGE or close code 1009", err)
	}
	fx.assertState(t, before)

	// The store reconnects and goes on; the delta it had applied stays applied once.
	c2 := fx.session(t, "s1", fx.Tokens["s1"])
	ack := wsPush(t, c2, biEarn("d-first", "s1", "alice", 1000), biEarn("d-after", "s1", "alice", 2000))
	if got, want := ack.Results[0].Status, lsync.StatusDuplicate; got != want {
		t.Errorf("redelivered d-first: got %s, want %s", got, want)
	}
	if got, want := ack.Results[1].Status, lsync.StatusApplied; got != want {
		t.Errorf("d-after: got %s %s, want %s", got, ack.Results[1].Message, want)
	}
	if got, want := fx.state(t, fx.Members...).Points, before.Points+20; got != want {
		t.Errorf("got %d points in all balances, want %d", got, want)
	}
}

func TestSyncPushRejects(t *testing.T) {
	fx := newBadFixture(t)
	c := fx.session(t, "s1", fx.Tokens["s1"])
	mustAllApplied(t, wsPush(t, c,
		biEarn("d-seed", "s1", "alice", 5000),
		biEarn("d-rev", "s1", "alice", 1000),
		biReverse("d-rev-r", "s1", "alice", "d-rev", -10),
		biEarn("d-bob", "s1", "bob", 3000),
	))
	before := fx.state(t, fx.Members...)

	mod := func(d loyalty.Delta, fn func(*loyalty.Delta)) loyalty.Delta { fn(&d); return d }
	e := biEarn("d-bad", "s1", "alice", 1000)
	tests := []struct {
		name  string
		delta loyalty.Delta
		code  string
	}{
		{"store is another store", mod(e, func(d *loyalty.Delta) { d.Store = "s2" }), loyalty.EUNAUTHORIZED},
		{"store is online", mod(e, func(d *loyalty.Delta) { d.Store = loyalty.OnlineStore }), loyalty.EUNAUTHORIZED},
		{"store unknown", mod(e, func(d *loyalty.Delta) { d.Store = "s9" }), loyalty.EUNAUTHORIZED},
		{"adjust from a store", mod(e, func(d *loyalty.Delta) { d.Kind, d.Amount, d.Currency = loyalty.KindAdjust, 0, "" }), loyalty.EUNAUTHORIZED},
		{"unknown member", mod(e, func(d *loyalty.Delta) { d.Member = "ghost" }), loyalty.ENOTFOUND},
		{"earn wrong points", mod(e, func(d *loyalty.Delta) { d.Points = 1000 }), loyalty.EINVALID},
		{"earn negative points", mod(e, func(d *loyalty.Delta) { d.Points = -10 }), loyalty.EINVALID},
		{"earn negative amount", mod(e, func(d *loyalty.Delta) { d.Amount = -1000 }), loyalty.EINVALID},
		{"earn unknown rule version", mod(e, func(d *loyalty.Delta) { d.RuleVersion = 42 }), loyalty.ENOTFOUND},
		{"earn wrong currency", mod(e, func(d *loyalty.Delta) { d.Currency = "USD" }), loyalty.EINVALID},
		{"points over max", mod(e, func(d *loyalty.Delta) { d.Points = loyalty.MaxPoints + 1 }), loyalty.EINVALID},
		{"unknown kind", mod(e, func(d *loyalty.Delta) { d.Kind = "gift" }), loyalty.EINVALID},
		{"no occurred_at", mod(e, func(d *loyalty.Delta) { d.OccurredAt = time.Time{} }), loyalty.EINVALID},
		{"no member", mod(e, func(d *loyalty.Delta) { d.Member = "" }), loyalty.EINVALID},
		{"id too long", mod(e, func(d *loyalty.Delta) { d.ID = strings.Repeat("d", loyalty.MaxIDLength+1) }), loyalty.EINVALID},
		// NUL: PostgreSQL cannot store it, so neither backend takes it.
		{"NUL in the order id", mod(e, func(d *loyalty.Delta) { d.OrderID = "A-\x00" }), loyalty.EINVALID},
		{"NUL in the terminal", mod(e, func(d *loyalty.Delta) { d.Terminal = "till\x001" }), loyalty.EINVALID},
		{"NUL in a punch card id", mod(e, func(d *loyalty.Delta) { d.PunchRewards = []string{"beans\x00"} }), loyalty.EINVALID},
		{"punch rewards of a card the sale did not punch", mod(e, func(d *loyalty.Delta) { d.PunchRewards = slices.Repeat([]string{"beans"}, 1000) }), loyalty.EINVALID},
		{"redeem unknown reward", biRedeem("d-bad", "s1", "alice", "yacht", 50), loyalty.ENOTFOUND},
		{"redeem wrong cost", biRedeem("d-bad", "s1", "alice", "coffee", 5), loyalty.EINVALID},
		{"redeem adds points", biRedeem("d-bad", "s1", "alice", "coffee", -50), loyalty.EINVALID},
		{"redeem names nothing", biRedeem("d-bad", "s1", "alice", "", 50), loyalty.EINVALID},
		{"voucher of another member", mod(biRedeem("d-bad", "s1", "bob", "coffee", 0), func(d *loyalty.Delta) { d.Voucher = fx.Voucher.ID }), loyalty.EINVALID},
		{"voucher with points", mod(biRedeem("d-bad", "s1", "alice", "coffee", 50), func(d *loyalty.Delta) { d.Voucher = fx.Voucher.ID }), loyalty.EINVALID},
		{"unknown voucher", mod(biRedeem("d-bad", "s1", "alice", "coffee", 0), func(d *loyalty.Delta) { d.Voucher = "vnope" }), loyalty.ENOTFOUND},
		{"reverse unknown delta", biReverse("d-bad", "s1", "alice", "d-nope", -10), loyalty.ENOTFOUND},
		{"reverse wrong points", biReverse("d-bad", "s1", "alice", "d-seed", -5), loyalty.EINVALID},
		{"reverse other member's delta", biReverse("d-bad", "s1", "bob", "d-seed", -50), loyalty.EINVALID},
		{"reverse a reverse", biReverse("d-bad", "s1", "alice", "d-rev-r", 10), loyalty.EINVALID},
		{"reverse twice", biReverse("d-bad", "s1", "alice", "d-rev", -10), loyalty.ECONFLICT},
		{"reverse names nothing", biReverse("d-bad", "s1", "alice", "", -10), loyalty.EINVALID},
		{"delta id reused, other points", biEarn("d-seed", "s1", "alice", 9900), loyalty.EDUPLICATE},
		{"delta id reused, other member", biEarn("d-seed", "s1", "bob", 5000), loyalty.EDUPLICATE},
		{"delta id reused, other time", mod(biEarn("d-seed", "s1", "alice", 5000), func(d *loyalty.Delta) { d.OccurredAt = d.OccurredAt.Add(time.Second) }), loyalty.EDUPLICATE},
		{"delta id reused, other kind", biRedeem("d-seed", "s1", "alice", "coffee", 50), loyalty.EDUPLICATE},
		// Claims the hub verifies instead of believing (docs/PROTOCOL.md, "What the hub verifies").
		{"forged tier", mod(e, func(d *loyalty.Delta) { d.Tier, d.Points = "gold", 30 }), loyalty.EINVALID},
		// A forged country that would pay a campaign: TestAuthority_CountryClaims.
		{"dated ten years ahead by its clock offset", mod(e, func(d *loyalty.Delta) { d.ClockOffsetMS = (3650 * 24 * time.Hour).Milliseconds() }), loyalty.EINVALID},
		{"dated an hour ahead", mod(e, func(d *loyalty.Delta) { d.OccurredAt = d.OccurredAt.Add(time.Hour) }), loyalty.EINVALID},
		{"dated a year back", mod(e, func(d *loyalty.Delta) { d.OccurredAt = d.OccurredAt.AddDate(-1, 0, 0) }), loyalty.EINVALID},
		{"lines that wrap around in int64", mod(e, func(d *loyalty.Delta) {
			d.Amount, d.Points = 2, 0
			d.Lines = []loyalty.Line{{Qty: 1, Amount: 9223372036854775807}, {Qty: 1, Amount: 9223372036854775807}, {Qty: 1, Amount: 4}}
		}), loyalty.EINVALID},
	}
	rejected := make(map[string]bool) // rejection records are kept per delta id
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.delta
			if d.ID == "d-bad" {
				d.ID = fmt.Sprintf("d-bad-%d", i)
			}
			rejected[d.ID] = true
			ack := wsPush(t, c, d)
			r := ack.Results[0]
			if r.Status != lsync.StatusRejected {
				t.Fatalf("got status %s, want rejected with %s", r.Status, tt.code)
			}
			if got, want := r.Code, tt.code; got != want {
				t.Errorf("got code %s (%q), want %s", got, r.Message, want)
			}
			if r.Message == "" {
				t.Errorf("rejection %s has an empty message", r.Code)
			}
			for _, b := range ack.Balances {
				if want, ok := before.Balances[b.Member]; !ok || b.Balance != want {
					t.Errorf("a rejected-only push acked balance %d for %s, want %d (unchanged)", b.Balance, b.Member, want)
				}
			}
			want := before
			want.Rejections = before.Rejections + len(rejected)
			fx.assertState(t, want)

			// Recorded for review with the store that pushed it.
			rej, err := fx.Hub.Rejections(context.Background(), 100000)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, x := range rej {
				if x.Delta.ID == d.ID {
					found = true
					if x.Code != tt.code || x.Store != "s1" {
						t.Errorf("rejection record: got code %s store %s, want %s s1", x.Code, x.Store, tt.code)
					}
				}
			}
			if !found {
				t.Errorf("rejected delta %s is not in the hub's rejections", d.ID)
			}
			wsExpectAlive(t, c)
		})
	}
}

// TestSyncDeltaReuse: a redelivery is a duplicate with the original's seq; other content under the
// same id is EDUPLICATE and leaves the original untouched, in separate pushes and in one batch.
func TestSyncDeltaReuse(t *testing.T) {
	fx := newBadFixture(t)
	c := fx.session(t, "s1", fx.Tokens["s1"])
	d := biEarn("d-1", "s1", "alice", 1000)
	ack := wsPush(t, c, d)
	mustAllApplied(t, ack)
	seq := ack.Results[0].Seq
	before := fx.state(t, fx.Members...)

	// Same delta, time in another zone and with sub-millisecond noise: the same content.
	same := d
	same.OccurredAt = d.OccurredAt.In(time.FixedZone("CET", 3600)).Add(300 * time.Microsecond)
	for _, x := range []loyalty.Delta{d, same} {
		r := wsPush(t, c, x).Results[0]
		if r.Status != lsync.StatusDuplicate || r.Seq != seq {
			t.Errorf("redelivery: got %s seq %d, want duplicate seq %d", r.Status, r.Seq, seq)
		}
	}
	fx.assertState(t, before)

	// In one batch: the first copy applies, the altered copy is refused, the exact copy is a duplicate.
	d2 := biEarn("d-2", "s1", "alice", 2000)
	d2alt := biEarn("d-2", "s1", "alice", 7000)
	ack = wsPush(t, c, d2, d2alt, d2)
	if got := []string{ack.Results[0].Status, ack.Results[1].Status, ack.Results[2].Status}; !reflect.DeepEqual(got,
		[]string{lsync.StatusApplied, lsync.StatusRejected, lsync.StatusDuplicate}) {
		t.Errorf("got statuses %v, want applied, rejected, duplicate", got)
	}
	if got, want := ack.Results[1].Code, loyalty.EDUPLICATE; got != want {
		t.Errorf("altered copy in one batch: got code %s, want %s", got, want)
	}
	var m hub.MemberView
	fx.mustDo(t, "GET", "/v1/members/alice?ledger=1000", "", &m)
	for _, e := range m.Ledger {
		if e.ID == "d-2" && e.Points != 20 {
			t.Errorf("ledger d-2: got %d points, want 20 (the first content)", e.Points)
		}
	}
	if got, want := fx.state(t, fx.Members...).Points, before.Points+20; got != want {
		t.Errorf("got %d points in all balances, want %d", got, want)
	}
}

// TestSyncMixedBatch: bad deltas in a batch do not stop the good ones, and the ack reports each.
func TestSyncMixedBatch(t *testing.T) {
	fx := newBadFixture(t)
	c := fx.session(t, "s1", fx.Tokens["s1"])
	before := fx.state(t, fx.Members...)
	ack := wsPush(t, c,
		biEarn("m-1", "s1", "bob", 1000),
		biEarn("m-2", "s2", "bob", 1000),
		biEarn("m-3", "s1", "ghost", 1000),
		biEarn("m-4", "s1", "bob", 2500),
	)
	want := []struct{ status, code string }{
		{lsync.StatusApplied, ""}, {lsync.StatusRejected, loyalty.EUNAUTHORIZED}, {lsync.StatusRejected, loyalty.ENOTFOUND}, {lsync.StatusApplied, ""},
	}
	for i, w := range want {
		if r := ack.Results[i]; r.Status != w.status || r.Code != w.code {
			t.Errorf("result %d: got %s %s, want %s %s", i, r.Status, r.Code, w.status, w.code)
		}
	}
	if len(ack.Balances) != 1 || ack.Balances[0].Member != "bob" || ack.Balances[0].Balance != 35 {
		t.Errorf("got balances %+v, want bob at 35", ack.Balances)
	}
	after := fx.state(t, fx.Members...)
	if got, want := after.Points, before.Points+35; got != want {
		t.Errorf("got %d points in all balances, want %d", got, want)
	}
	if got, want := after.Rejections, before.Rejections+2; got != want {
		t.Errorf("got %d rejections, want %d", got, want)
	}
}

// TestSyncRejectionRecordPerStore: the same bad delta id pushed by two stores with different
// content is recorded for review against the store that pushed it last, with its content.
func TestSyncRejectionRecordPerStore(t *testing.T) {
	fx := newBadFixture(t)
	c1 := fx.session(t, "s1", fx.Tokens["s1"])
	mustAllApplied(t, wsPush(t, c1, biEarn("d-x", "s1", "alice", 1000)))
	r := wsPush(t, c1, biEarn("d-x", "s1", "alice", 9000)).Results[0]
	if r.Code != loyalty.EDUPLICATE {
		t.Fatalf("s1 reuse: got %s %s, want EDUPLICATE", r.Status, r.Code)
	}
	c2 := fx.session(t, "s2", fx.Tokens["s2"])
	r = wsPush(t, c2, biEarn("d-x", "s2", "carol", 4000)).Results[0]
	if r.Code != loyalty.EDUPLICATE {
		t.Fatalf("s2 reuse: got %s %s, want EDUPLICATE", r.Status, r.Code)
	}
	rej, err := fx.Hub.Rejections(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var stores []string
	for _, x := range rej {
		if x.Delta.ID != "d-x" {
			continue
		}
		stores = append(stores, x.Store)
		if x.Store == "s2" && x.Delta.Member != "carol" {
			t.Errorf("s2's rejection records member %s, want carol", x.Delta.Member)
		}
	}
	found := false
	for _, s := range stores {
		found = found || s == "s2"
	}
	if !found {
		t.Errorf("rejections of d-x are recorded for stores %v; want s2's push recorded against s2", stores)
	}
}

// TestSyncSubscribeUnknownOrUnheldMember: a store that asks, without a scanned code, for a
// member it has no reason to hold gets the same refusal whether the member exists (carol, of s2)
// or not, so that it cannot list the members by guessing ids, and learns nothing of them.
func TestSyncSubscribeUnknownOrUnheldMember(t *testing.T) {
	fx := newBadFixture(t)
	before := fx.state(t, fx.Members...)
	c := fx.session(t, "s1", fx.Tokens["s1"])
	var messages []string
	for i, member := range []string{"ghost", "carol"} {
		id := uint64(42 + i)
		wsSend(t, c, &lsync.Message{Type: lsync.TypeSubscribe, ID: id, Subscribe: &lsync.Subscribe{Member: member}})
		m := wsMustNext(t, c, lsync.TypeError)
		if m.ID != id || m.Error.Code != loyalty.EUNAUTHORIZED {
			t.Errorf("%s: got error id %d code %s, want id %d code %s", member, m.ID, m.Error.Code, id, loyalty.EUNAUTHORIZED)
		}
		messages = append(messages, strings.ReplaceAll(m.Error.Message, member, "X"))
	}
	if messages[0] != messages[1] {
		t.Errorf("an unknown member and one of another store are refused differently: %q, %q", messages[0], messages[1])
	}
	wsExpectAlive(t, c) // a request error, not a session error
	fx.assertState(t, before)
}

func TestSyncUpgradeRefusals(t *testing.T) {
	th := MustOpenBIHub(t)
	t.Run("browser origin", func(t *testing.T) {
		d := websocket.Dialer{HandshakeTimeout: biTimeout}
		c, resp, err := d.Dial(th.HTTP.SyncURL(), http.Header{"Origin": {"https://evil.example"}})
		if err == nil {
			c.Close()
			t.Fatal("a websocket from a browser origin was accepted")
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("got response %v, want status 403", resp)
		}
	})
	t.Run("plain GET", func(t *testing.T) {
		status, body := biHTTPDo(t, "GET", th.HTTP.URL()+"/v1/sync", "", "")
		jsonapitest.AssertError(t, status, body, http.StatusBadRequest, loyalty.EINVALID)
	})
}

// TestReverseVoucherPurchase: refunding the order that bought a voucher must not leave the member
// with both the points and a usable voucher; refunding it after the voucher was used must not
// give the points back.
func TestReverseVoucherPurchase(t *testing.T) {
	fx := newBadFixture(t)
	var vr hub.VoucherReceipt
	fx.mustDo(t, "POST", "/v1/vouchers", `{"order_id":"buy-1","member_id":"alice","reward_id":"coffee"}`, &vr)
	before := fx.state(t, fx.Members...)

	status, body := fx.do(t, "POST", "/v1/reverse", `{"order_id":"buy-1"}`)
	if status != http.StatusOK {
		// Refusing to refund an issued voucher is also safe; then nothing may have changed.
		jsonapitest.AssertError(t, status, body, http.StatusConflict, loyalty.ECONFLICT)
		fx.assertState(t, before)
		return
	}
	refunded := fx.state(t, fx.Members...)
	if got, want := refunded.Points, before.Points+50; got != want {
		t.Errorf("after the refund: got %d points in all balances, want %d", got, want)
	}
	status, body = fx.do(t, "POST", "/v1/redeem", `{"order_id":"use-1","voucher":"`+vr.Voucher.Token+`"}`)
	jsonapitest.AssertError(t, status, body, http.StatusConflict, loyalty.ECONFLICT)
	fx.assertState(t, refunded)

	// A voucher already used: its purchase can no longer be refunded.
	fx.mustDo(t, "POST", "/v1/vouchers", `{"order_id":"buy-2","member_id":"alice","reward_id":"coffee"}`, &vr)
	fx.mustDo(t, "POST", "/v1/redeem", `{"order_id":"use-2","voucher":"`+vr.Voucher.Token+`"}`, nil)
	used := fx.state(t, fx.Members...)
	status, body = fx.do(t, "POST", "/v1/reverse", `{"order_id":"buy-2"}`)
	jsonapitest.AssertError(t, status, body, http.StatusConflict, loyalty.ECONFLICT)
	fx.assertState(t, used)
}

// TestSyncHelloIsReadSmall: before a session is authenticated, the hub reads at most
// lsync.MaxHelloBytes of its first message, refuses a store id that is no id before looking it up,
// and answers and logs a short refusal: a hello padded to the full message size was read whole
// and its store id quoted twice in the answer and the log, so anyone who could reach /v1/sync
// wrote twice what they sent into the hub's log. After the welcome the session's messages may be
// as large as the hub's own limit again.
func TestSyncHelloIsReadSmall(t *testing.T) {
	fx := newBadFixture(t)
	for _, tt := range []struct {
		name  string
		store string
		code  string
	}{
		{"a store id of 12 KiB", strings.Repeat("a", 12<<10), loyalty.EINVALID},
		{"a store id with a space", "s 1", loyalty.EINVALID},
	} {
		c := fx.dial(t)
		b := biJSON(wsHello(tt.store, fx.Tokens["s1"]))
		wsSendRaw(t, c, []byte(b))
		c.SetReadDeadline(time.Now().Add(biTimeout))
		_, answer, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("%s: no answer: %v", tt.name, err)
		}
		m, err := lsync.Decode(answer)
		if err != nil || m.Type != lsync.TypeError || m.Error.Code != tt.code || len(answer) > 512 {
			t.Errorf("%s: answered %d bytes (%.200s), %v; want a short %s refusal", tt.name, len(answer), answer, err, tt.code)
		}
		c.Close()
	}
	// A hello over the limit is not read: the connection is closed as a message too big.
	c := fx.dial(t)
	wsSendRaw(t, c, []byte(biJSON(wsHello(strings.Repeat("a", lsync.MaxHelloBytes), fx.Tokens["s1"]))))
	c.SetReadDeadline(time.Now().Add(biTimeout))
	var ce *websocket.CloseError
	if _, answer, err := c.ReadMessage(); !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("a hello of %d bytes: answered %.200s, %v; want the connection closed as a message too big", lsync.MaxHelloBytes, answer, err)
	}
	// After the welcome, a message larger than a hello is read (here a push of about 30 KiB,
	// whose delta is rejected for its terminal's length, as a message of its own).
	s := fx.session(t, "s1", fx.Tokens["s1"])
	d := biEarn("d-big", "s1", "alice", 1000)
	d.Terminal = strings.Repeat("x", 30<<10)
	if ack := wsPush(t, s, d); ack.Results[0].Status != lsync.StatusRejected {
		t.Errorf("a push of 30 KiB after the welcome: %+v; want it read and its delta rejected", ack.Results[0])
	}
}
