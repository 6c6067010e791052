package agent_test

// Adversarial tests of the guarantee "bad input gets a clear error and loses nothing", against a
// real agent (SQLite replica on a temp file, the POS API on 127.0.0.1:0). Every bad POS call must
// get its stable error code and HTTP status, and must leave the replica and the outbox exactly as
// they were: pending deltas stay pending, nothing new is queued for the hub.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	"github.com/loyalty-edge-sync/loyalty/qr"
	"github.com/loyalty-edge-sync/loyalty/qr/qrtest"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// biTimeout bounds every network wait and poll so a broken agent fails a test instead of hanging
// it. It is a safety net, not an assertion about speed.
const biTimeout = 10 * time.Second

var biLogger = slog.New(slog.DiscardHandler)

// offlineSyncer is a Syncer for a store that cannot reach the hub.
type offlineSyncer struct{ kicks atomic.Int64 }

func (s *offlineSyncer) Kick() { s.kicks.Add(1) }
func (s *offlineSyncer) Subscribe(context.Context, string) (*loyalty.Member, error) {
	return nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "the store is offline")
}
func (s *offlineSyncer) Status() lsync.Status { return lsync.Status{LastError: "offline"} }
func (s *offlineSyncer) Refresh(ctx context.Context) error {
	return loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
}

// manualClock is a clock that tests move by hand.
type manualClock struct{ ms atomic.Int64 }

func newManualClock(t time.Time) *manualClock {
	c := &manualClock{}
	c.ms.Store(t.UnixMilli())
	return c
}
func (c *manualClock) Now() time.Time          { return time.UnixMilli(c.ms.Load()).UTC() }
func (c *manualClock) Advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// posAgent is an offline agent whose replica was fed a program, keys and members through
// ApplyChanges, as the sync client would.
type posAgent struct {
	Store   *agentsqlite.Store
	Agent   *agent.Agent
	HTTP    *agent.Server
	Sync    *offlineSyncer
	Clock   *manualClock
	Key     qr.PrivateKey // the hub key whose public half the replica holds
	Retired qr.PrivateKey // a key the replica holds as retired
}

// MustOpenPOSAgent starts an offline agent for store s1 with members alice (300 points) and bob
// (40 points) in its replica.
func MustOpenPOSAgent(tb testing.TB, posToken string) *posAgent {
	tb.Helper()
	ctx := context.Background()
	st, err := agentsqlite.Open(ctx, filepath.Join(tb.TempDir(), "agent.db"))
	if err != nil {
		tb.Fatalf("open replica: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	ta := &posAgent{Store: st, Sync: &offlineSyncer{}, Clock: newManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)),
		Key: qrtest.Key(tb), Retired: qrtest.Key(tb)}
	ta.Retired.NotAfter = ta.Clock.Now().Add(-24 * time.Hour)
	prog := loyalty.DefaultProgram()
	err = st.ApplyChanges(ctx, &lsync.Changes{Cursor: 10, Program: &prog,
		Keys: []qr.PublicKey{ta.Key.Public(), ta.Retired.Public()},
		Members: []loyalty.Member{
			{ID: "alice", Name: "Alice", Balance: 300, Version: 5},
			{ID: "bob", Name: "Bob", Balance: 40, Version: 6},
		}})
	if err != nil {
		tb.Fatalf("apply changes: %v", err)
	}
	ta.Agent = agent.New("s1", st, ta.Sync)
	ta.Agent.Logger, ta.Agent.Now = biLogger, ta.Clock.Now
	ta.HTTP = agent.NewServer(ta.Agent, "127.0.0.1:0")
	ta.HTTP.Logger, ta.HTTP.POSToken = biLogger, posToken
	if err := ta.HTTP.Open(); err != nil {
		tb.Fatalf("open pos api: %v", err)
	}
	tb.Cleanup(func() { ta.HTTP.Close() })
	return ta
}

// memberQR returns a member token valid for an hour on the agent's clock.
func (ta *posAgent) memberQR(tb testing.TB, member string) string {
	tb.Helper()
	now := ta.Clock.Now()
	return qrtest.Sign(tb, ta.Key, qr.Claims{Type: qr.TypeMember, Member: member, IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix()})
}

// voucherQR returns a voucher token valid for an hour on the agent's clock.
func (ta *posAgent) voucherQR(tb testing.TB, id, member, reward string) string {
	tb.Helper()
	now := ta.Clock.Now()
	return qrtest.Sign(tb, ta.Key, qr.Claims{Type: qr.TypeVoucher, Member: member, Voucher: id, Reward: reward,
		IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix()})
}

// badMemberTokens returns member tokens for alice that the agent must refuse, by name.
func (ta *posAgent) badMemberTokens(tb testing.TB) map[string]string {
	tb.Helper()
	good := ta.memberQR(tb, "alice")
	now := ta.Clock.Now()
	claims := qr.Claims{Type: qr.TypeMember, Member: "alice", IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix()}
	bad := qrtest.Refused(tb, ta.Key, good, "alice", now)
	bad["altered type"] = qrtest.Alter(tb, good, func(c *qr.Claims) { c.Type, c.Voucher = qr.TypeVoucher, "v1" })
	bad["expired"] = qrtest.Sign(tb, ta.Key, qr.Claims{Type: qr.TypeMember, Member: "alice",
		IssuedAt: now.Add(-48 * time.Hour).Unix(), Expires: now.Add(-time.Second).Unix()})
	bad["retired key"] = qrtest.Sign(tb, ta.Retired, claims)
	return bad
}

var biHTTPClient = &http.Client{Timeout: biTimeout}

// posDo sends one POS API call and returns the status and the raw body.
func posDo(tb testing.TB, base, method, path, body, auth string) (int, []byte) {
	tb.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		tb.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return posRoundTrip(tb, req)
}

// posRoundTrip sends a request to the POS API and returns the status and the raw body.
func posRoundTrip(tb testing.TB, req *http.Request) (int, []byte) {
	tb.Helper()
	resp, err := biHTTPClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, b
}

func (ta *posAgent) do(tb testing.TB, path, body string) (int, []byte) {
	tb.Helper()
	return posDo(tb, ta.HTTP.URL(), "POST", path, body, "")
}

// mustPOS calls the POS API, requires 200 and decodes the answer into out (if not nil).
func mustPOS(tb testing.TB, base, path, body string, out any) []byte {
	tb.Helper()
	status, b := posDo(tb, base, "POST", path, body, "")
	if status != http.StatusOK {
		tb.Fatalf("POST %s %s: got status %d %s, want 200", path, body, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatalf("POST %s: decode %s: %v", path, b, err)
		}
	}
	return b
}

func biJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// posState is what a bad POS call must not change.
type posState struct {
	Outbox   []lsync.Outgoing // pending deltas, in order, with their content
	Stats    agent.Stats
	Rejected []agent.RejectedDelta
	Members  map[string]loyalty.Member
	Pending  map[string]int64
	Kicks    int64
}

func (ta *posAgent) state(tb testing.TB) posState {
	tb.Helper()
	ctx := context.Background()
	var s posState
	var err error
	if s.Outbox, err = ta.Store.Pending(ctx, 0, 100000); err != nil {
		tb.Fatalf("pending: %v", err)
	}
	if s.Rejected, err = ta.Agent.Rejected(ctx, 100000); err != nil {
		tb.Fatalf("rejected: %v", err)
	}
	s.Members, s.Pending = make(map[string]loyalty.Member), make(map[string]int64)
	err = ta.Store.View(ctx, func(tx agent.Tx) error {
		var err error
		if s.Stats, err = tx.Stats(ctx); err != nil {
			return err
		}
		for _, id := range []string{"alice", "bob", "carol"} {
			if m, err := tx.Member(ctx, id); err == nil {
				s.Members[id] = m
			} else if loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
				return err
			}
			if s.Pending[id], err = tx.PendingPoints(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("view replica: %v", err)
	}
	s.Kicks = ta.Sync.kicks.Load()
	return s
}

func assertPOSState(tb testing.TB, got, want posState) {
	tb.Helper()
	if !reflect.DeepEqual(got.Outbox, want.Outbox) {
		tb.Errorf("outbox changed:\n got %+v\nwant %+v", got.Outbox, want.Outbox)
	}
	if got.Stats != want.Stats {
		tb.Errorf("stats changed: got %+v, want %+v", got.Stats, want.Stats)
	}
	if !reflect.DeepEqual(got.Rejected, want.Rejected) {
		tb.Errorf("rejected list changed: got %+v, want %+v", got.Rejected, want.Rejected)
	}
	if !reflect.DeepEqual(got.Members, want.Members) {
		tb.Errorf("replica members changed: got %+v, want %+v", got.Members, want.Members)
	}
	if !reflect.DeepEqual(got.Pending, want.Pending) {
		tb.Errorf("pending points changed: got %v, want %v", got.Pending, want.Pending)
	}
	if got.Kicks != want.Kicks {
		tb.Errorf("the sync client was kicked %d times, want %d: a refused call queued nothing to send", got.Kicks, want.Kicks)
	}
}

// seed makes offline sales for alice, all pending: an earn (+12), a tote (-250) and a voucher
// use (0), which leave her 62 points at this store though she synced with 300.
func (ta *posAgent) seed(tb testing.TB) (usedVoucher string) {
	tb.Helper()
	base := ta.HTTP.URL()
	mustPOS(tb, base, "/v1/earn", `{"order_id":"o-earn","qr":"`+ta.memberQR(tb, "alice")+`","amount":1250,"currency":"EUR"}`, nil)
	mustPOS(tb, base, "/v1/redeem", `{"order_id":"o-redeem","member_id":"alice","reward_id":"tote"}`, nil)
	usedVoucher = ta.voucherQR(tb, "v-used", "alice", "five-off")
	mustPOS(tb, base, "/v1/redeem", `{"order_id":"o-voucher","voucher":"`+usedVoucher+`"}`, nil)
	if got := ta.state(tb).Stats.Outbox; got != 3 {
		tb.Fatalf("seed: got %d deltas in the outbox, want 3", got)
	}
	return usedVoucher
}

func TestPOSBadInput(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	usedVoucher := ta.seed(t)
	before := ta.state(t)
	aliceQR := ta.memberQR(t, "alice")
	carolQR := ta.memberQR(t, "carol") // signed, but not in this store's replica
	voucher := ta.voucherQR(t, "v-fresh", "alice", "coffee")
	now := ta.Clock.Now()
	expiredVoucher := qrtest.Sign(t, ta.Key, qr.Claims{Type: qr.TypeVoucher, Member: "alice", Voucher: "v-old", Reward: "coffee",
		IssuedAt: now.Add(-48 * time.Hour).Unix(), Expires: now.Add(-time.Second).Unix()})
	forgedVoucher := qrtest.Sign(t, qrtest.Key(t), qr.Claims{Type: qr.TypeVoucher, Member: "alice", Voucher: "v-forged", Reward: "tote",
		IssuedAt: now.Unix()})

	earn := func(fields string) string {
		return `{"order_id":"o-bad","member_id":"alice","currency":"EUR",` + fields + `}`
	}
	big := `{"order_id":"o-big","member_id":"alice","amount":100,"currency":"EUR","terminal":"` + strings.Repeat("x", 100<<10) + `"}`
	type tc struct {
		name, path, body string
		status           int
		code             string
	}
	tests := []tc{
		// Malformed bodies.
		{"malformed json", "/v1/earn", `{"order_id":"o-bad","amount":`, 400, loyalty.EINVALID},
		{"empty body", "/v1/earn", ``, 400, loyalty.EINVALID},
		{"json array", "/v1/redeem", `[]`, 400, loyalty.EINVALID},
		{"trailing data", "/v1/earn", earn(`"amount":100`) + ` {}`, 400, loyalty.EINVALID},
		{"unknown field", "/v1/earn", earn(`"amount":100,"points":5000`), 400, loyalty.EINVALID},
		{"misspelled field", "/v1/redeem", `{"order_id":"o-bad","member_id":"alice","reward":"coffee"}`, 400, loyalty.EINVALID},
		{"wrong type", "/v1/earn", `{"order_id":12,"member_id":"alice","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"oversized body", "/v1/earn", big, 413, loyalty.ETOOLARGE},
		{"oversized scan", "/v1/scan", `{"qr":"` + strings.Repeat("A", 100<<10) + `"}`, 413, loyalty.ETOOLARGE},

		// Money.
		{"negative amount", "/v1/earn", earn(`"amount":-1250`), 400, loyalty.EINVALID},
		{"fractional amount", "/v1/earn", earn(`"amount":12.50`), 400, loyalty.EINVALID},
		{"string amount", "/v1/earn", earn(`"amount":"1250"`), 400, loyalty.EINVALID},
		{"exponent amount", "/v1/earn", earn(`"amount":1.25e3`), 400, loyalty.EINVALID},
		{"null amount", "/v1/earn", earn(`"amount":null`), 400, loyalty.EINVALID},
		{"missing amount", "/v1/earn", earn(`"terminal":"t1"`), 400, loyalty.EINVALID},
		{"amount over max", "/v1/earn", earn(`"amount":1000000000001`), 400, loyalty.EINVALID},
		{"amount overflows int64", "/v1/earn", earn(`"amount":99999999999999999999`), 400, loyalty.EINVALID},
		{"lines that wrap around in int64", "/v1/earn", earn(`"amount":2,"lines":[{"qty":1,"amount":9223372036854775807},{"qty":1,"amount":9223372036854775807},{"qty":1,"amount":4}]`), 400, loyalty.EINVALID},
		{"crafted category lines worth 500,000,000 points", "/v1/earn", earn(`"amount":1000,"lines":[{"category":"coffee","qty":1,"amount":6148914707903183872},{"sku":"decaf-250g","qty":1,"amount":9223372036854775807},{"sku":"decaf-250g","qty":1,"amount":3074457328951592937}]`), 400, loyalty.EINVALID},
		{"a line over the maximum amount", "/v1/earn", earn(`"amount":100,"lines":[{"qty":1,"amount":1000000000001},{"qty":1,"amount":-999999999901}]`), 400, loyalty.EINVALID},
		{"invalid UTF-8 order id", "/v1/earn", "{\"order_id\":\"X-\xff\xfe\",\"member_id\":\"alice\",\"currency\":\"EUR\",\"amount\":100}", 400, loyalty.EINVALID},
		// NUL cannot be stored at a hub on PostgreSQL: a sale holding one would be approved here and
		// never applied there.
		{"NUL in the order id", "/v1/earn", `{"order_id":"A-\u0000","member_id":"alice","currency":"EUR","amount":100}`, 400, loyalty.EINVALID},
		{"NUL in the terminal", "/v1/earn", earn(`"amount":100,"terminal":"till\u00001"`), 400, loyalty.EINVALID},
		{"NUL in a line's SKU", "/v1/earn", earn(`"amount":100,"lines":[{"sku":"a\u0000","qty":1,"amount":100}]`), 400, loyalty.EINVALID},
		{"NUL in a refund id", "/v1/reverse", `{"order_id":"o-bad","refund_id":"r\u0000"}`, 400, loyalty.EINVALID},
		{"wrong currency", "/v1/earn", `{"order_id":"o-bad","member_id":"alice","amount":100,"currency":"USD"}`, 400, loyalty.EINVALID},
		{"no currency", "/v1/earn", `{"order_id":"o-bad","member_id":"alice","amount":100}`, 400, loyalty.EINVALID},

		// Order ids and members.
		{"missing order_id", "/v1/earn", `{"member_id":"alice","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"order_id too long", "/v1/earn", `{"order_id":"` + strings.Repeat("o", loyalty.MaxIDLength+1) + `","member_id":"alice","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"missing order_id redeem", "/v1/redeem", `{"member_id":"alice","reward_id":"coffee"}`, 400, loyalty.EINVALID},
		{"no member", "/v1/earn", `{"order_id":"o-bad","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"member unknown to the store", "/v1/earn", `{"order_id":"o-bad","member_id":"ghost","amount":100,"currency":"EUR"}`, 404, loyalty.ENOTFOUND},
		{"member unknown to the store redeem", "/v1/redeem", `{"order_id":"o-bad","member_id":"ghost","reward_id":"coffee"}`, 404, loyalty.ENOTFOUND},
		{"scan without qr", "/v1/scan", `{}`, 400, loyalty.EINVALID},
		{"scan unknown field", "/v1/scan", `{"qr":"` + aliceQR + `","member_id":"bob"}`, 400, loyalty.EINVALID},

		// Rewards and points.
		{"unknown reward", "/v1/redeem", `{"order_id":"o-bad","member_id":"alice","reward_id":"yacht"}`, 404, loyalty.ENOTFOUND},
		{"no reward", "/v1/redeem", `{"order_id":"o-bad","member_id":"alice"}`, 400, loyalty.EINVALID},
		{"too few points", "/v1/redeem", `{"order_id":"o-bad","member_id":"bob","reward_id":"coffee"}`, 422, loyalty.EINSUFFICIENT},
		{"too few points with pending", "/v1/redeem", `{"order_id":"o-bad","qr":"` + aliceQR + `","reward_id":"five-off"}`, 422, loyalty.EINSUFFICIENT},
		{"new member has no points", "/v1/redeem", `{"order_id":"o-bad","qr":"` + carolQR + `","reward_id":"coffee"}`, 422, loyalty.EINSUFFICIENT},

		// Vouchers and token types.
		{"voucher used twice", "/v1/redeem", `{"order_id":"o-bad","voucher":"` + usedVoucher + `"}`, 409, loyalty.ECONFLICT},
		{"expired voucher", "/v1/redeem", `{"order_id":"o-bad","voucher":"` + expiredVoucher + `"}`, 400, loyalty.EINVALID},
		{"forged voucher", "/v1/redeem", `{"order_id":"o-bad","voucher":"` + forgedVoucher + `"}`, 400, loyalty.EINVALID},
		{"altered voucher reward", "/v1/redeem", `{"order_id":"o-bad","voucher":` + biJSON(qrtest.Alter(t, voucher, func(c *qr.Claims) { c.Reward = "tote" })) + `}`, 400, loyalty.EINVALID},
		{"member token as voucher", "/v1/redeem", `{"order_id":"o-bad","voucher":"` + aliceQR + `"}`, 400, loyalty.EINVALID},
		{"voucher token as member earn", "/v1/earn", `{"order_id":"o-bad","qr":"` + voucher + `","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"voucher token as member redeem", "/v1/redeem", `{"order_id":"o-bad","qr":"` + voucher + `","reward_id":"coffee"}`, 400, loyalty.EINVALID},
		{"voucher token scanned", "/v1/scan", `{"qr":"` + voucher + `"}`, 400, loyalty.EINVALID},

		// Reverse.
		{"reverse unknown order", "/v1/reverse", `{"order_id":"never-sold"}`, 404, loyalty.ENOTFOUND},
		{"reverse without order", "/v1/reverse", `{}`, 400, loyalty.EINVALID},
		{"reverse unknown field", "/v1/reverse", `{"order_id":"o-earn","member_id":"bob"}`, 400, loyalty.EINVALID},

		// Idempotency keys reused for a different request.
		{"earn order reused other amount", "/v1/earn", `{"order_id":"o-earn","qr":"` + aliceQR + `","amount":9999,"currency":"EUR"}`, 409, loyalty.ECONFLICT},
		{"earn order reused other member", "/v1/earn", `{"order_id":"o-earn","member_id":"bob","amount":1250,"currency":"EUR"}`, 409, loyalty.ECONFLICT},
		// A second reward on an order is a new redemption; rewards that are not stackable stand alone.
		{"second reward on an order, not stackable", "/v1/redeem", `{"order_id":"o-redeem","member_id":"alice","reward_id":"coffee"}`, 400, loyalty.EINVALID},
		{"a reward on a voucher's order, not stackable", "/v1/redeem", `{"order_id":"o-voucher","member_id":"alice","reward_id":"coffee"}`, 400, loyalty.EINVALID},
		{"a voucher on a reward's order, not stackable", "/v1/redeem", `{"order_id":"o-redeem","voucher":"` + voucher + `"}`, 400, loyalty.EINVALID},

		// Routes.
		{"unknown endpoint", "/v1/points", `{}`, 404, loyalty.ENOTFOUND},
	}
	for name, tok := range ta.badMemberTokens(t) {
		tests = append(tests,
			tc{"scan " + name, "/v1/scan", `{"qr":` + biJSON(tok) + `}`, 400, loyalty.EINVALID},
			tc{"earn " + name, "/v1/earn", `{"order_id":"o-bad","qr":` + biJSON(tok) + `,"amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
			tc{"redeem " + name, "/v1/redeem", `{"order_id":"o-bad","qr":` + biJSON(tok) + `,"reward_id":"coffee"}`, 400, loyalty.EINVALID},
			tc{"voucher " + name, "/v1/redeem", `{"order_id":"o-bad","voucher":` + biJSON(tok) + `}`, 400, loyalty.EINVALID},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := ta.do(t, tt.path, tt.body)
			jsonapitest.AssertError(t, status, body, tt.status, tt.code)
			assertPOSState(t, ta.state(t), before)
		})
	}
	t.Run("wrong method", func(t *testing.T) {
		status, body := posDo(t, ta.HTTP.URL(), "GET", "/v1/earn", "", "")
		jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)
		assertPOSState(t, ta.state(t), before)
	})

	// A refusal is not remembered: the order id o-bad, refused above, still works.
	mustPOS(t, ta.HTTP.URL(), "/v1/earn", earn(`"amount":100`), nil)
	if got, want := ta.state(t).Stats.Outbox, before.Stats.Outbox+1; got != want {
		t.Errorf("after a good earn under a once-refused order id: got %d deltas in the outbox, want %d", got, want)
	}
}

// TestPOSRetries: the same order id with the same body gets the same bytes back and queues
// nothing; with a different body it is ECONFLICT and queues nothing.
func TestPOSRetries(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	base := ta.HTTP.URL()
	aliceQR := ta.memberQR(t, "alice")
	voucher := ta.voucherQR(t, "v-r", "alice", "coffee")
	tests := []struct {
		name, path, first, same, different string
	}{
		{"earn", "/v1/earn",
			`{"order_id":"r-earn","qr":"` + aliceQR + `","amount":1250,"currency":"EUR"}`,
			"{ \"currency\": \"EUR\",\n \"amount\": 1250, \"qr\": \"" + aliceQR + "\", \"order_id\": \"r-earn\" }",
			`{"order_id":"r-earn","qr":"` + aliceQR + `","amount":1250,"currency":"EUR","terminal":"t2"}`},
		{"earn retried with a refreshed code", "/v1/earn",
			`{"order_id":"r-earn2","qr":"` + aliceQR + `","amount":500,"currency":"EUR"}`,
			`{"order_id":"r-earn2","qr":"` + resignMemberQR(t, ta, "alice") + `","amount":500,"currency":"EUR"}`,
			`{"order_id":"r-earn2","member_id":"bob","amount":500,"currency":"EUR"}`},
		{"redeem", "/v1/redeem",
			`{"order_id":"r-redeem","member_id":"alice","reward_id":"coffee"}`,
			`{"order_id":"r-redeem","member_id":"alice","reward_id":"coffee"}`,
			`{"order_id":"r-redeem","member_id":"bob","reward_id":"coffee"}`}, // same key (order, reward), other body
		{"voucher", "/v1/redeem",
			`{"order_id":"r-voucher","voucher":"` + voucher + `"}`,
			`{"order_id":"r-voucher","voucher":"` + voucher + `"}`,
			`{"order_id":"r-voucher","voucher":"` + voucher + `","terminal":"t2"}`},
		{"reverse", "/v1/reverse",
			`{"order_id":"r-earn"}`,
			`{"order_id":"r-earn"}`,
			`{"order_id":"r-earn","terminal":"t9"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := mustPOS(t, base, tt.path, tt.first, nil)
			before := ta.state(t)

			status, again := ta.do(t, tt.path, tt.same)
			if status != http.StatusOK {
				t.Fatalf("retry: got status %d %s, want 200", status, again)
			}
			if string(again) != string(first) {
				t.Errorf("retry: got body\n%s\nwant the first answer\n%s", again, first)
			}
			assertPOSState(t, ta.state(t), before)

			status, body := ta.do(t, tt.path, tt.different)
			jsonapitest.AssertError(t, status, body, http.StatusConflict, loyalty.ECONFLICT)
			assertPOSState(t, ta.state(t), before)
		})
	}
}

// resignMemberQR returns a fresh member token for member, signed a second later: the same
// member, different token text.
func resignMemberQR(tb testing.TB, ta *posAgent, member string) string {
	tb.Helper()
	now := ta.Clock.Now().Add(time.Second)
	return qrtest.Sign(tb, ta.Key, qr.Claims{Type: qr.TypeMember, Member: member, IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix()})
}

// TestPOSRetryAfterTokenExpiry: a POS retry of an approved call must get the first answer even if
// the scanned code expired in between; answering EINVALID tells the cashier that an approved,
// recorded sale failed.
func TestPOSRetryAfterTokenExpiry(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	now := ta.Clock.Now()
	member := qrtest.Sign(t, ta.Key, qr.Claims{Type: qr.TypeMember, Member: "alice", IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix()})
	voucher := qrtest.Sign(t, ta.Key, qr.Claims{Type: qr.TypeVoucher, Member: "alice", Voucher: "v-x", Reward: "coffee",
		IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix()})
	calls := []struct{ path, body string }{
		{"/v1/earn", `{"order_id":"x-earn","qr":"` + member + `","amount":1250,"currency":"EUR"}`},
		{"/v1/redeem", `{"order_id":"x-redeem","qr":"` + member + `","reward_id":"coffee"}`},
		{"/v1/redeem", `{"order_id":"x-voucher","voucher":"` + voucher + `"}`},
	}
	first := make([][]byte, len(calls))
	for i, c := range calls {
		first[i] = mustPOS(t, ta.HTTP.URL(), c.path, c.body, nil)
	}
	before := ta.state(t)
	ta.Clock.Advance(time.Hour)
	for i, c := range calls {
		status, body := ta.do(t, c.path, c.body)
		if status != http.StatusOK || string(body) != string(first[i]) {
			t.Errorf("retry of %s after the code expired: got %d %s, want 200 and the first answer %s", c.body[:24], status, body, first[i])
		}
	}
	assertPOSState(t, ta.state(t), before)
}

func TestPOSToken(t *testing.T) {
	ta := MustOpenPOSAgent(t, "pos-secret")
	before := ta.state(t)
	for _, auth := range []string{"", "Bearer wrong", "pos-secret", "Bearer pos-secret-2", "Basic pos-secret"} {
		t.Run(biJSON(auth), func(t *testing.T) {
			status, body := posDo(t, ta.HTTP.URL(), "POST", "/v1/earn", `{"order_id":"o-1","member_id":"alice","amount":100,"currency":"EUR"}`, auth)
			jsonapitest.AssertError(t, status, body, http.StatusUnauthorized, loyalty.EUNAUTHORIZED)
			assertPOSState(t, ta.state(t), before)
		})
	}
	status, body := posDo(t, ta.HTTP.URL(), "POST", "/v1/earn", `{"order_id":"o-1","member_id":"alice","amount":100,"currency":"EUR"}`, "Bearer pos-secret")
	if status != http.StatusOK {
		t.Errorf("with the right token: got %d %s, want 200", status, body)
	}
}

// TestPOSNeverSynced: a store that has never synced says so instead of guessing.
func TestPOSNeverSynced(t *testing.T) {
	ctx := context.Background()
	st, err := agentsqlite.Open(ctx, filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a := agent.New("s1", st, &offlineSyncer{})
	a.Logger = biLogger
	srv := agent.NewServer(a, "127.0.0.1:0")
	srv.Logger = biLogger
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	k := qrtest.Key(t)
	tok := qrtest.Sign(t, k, qr.Claims{Type: qr.TypeMember, Member: "alice", IssuedAt: time.Now().Unix()})
	status, body := posDo(t, srv.URL(), "POST", "/v1/scan", `{"qr":"`+tok+`"}`, "")
	jsonapitest.AssertError(t, status, body, http.StatusServiceUnavailable, loyalty.EUNAVAILABLE)
	status, body = posDo(t, srv.URL(), "POST", "/v1/earn", `{"order_id":"o-1","qr":"`+tok+`","amount":100,"currency":"EUR"}`, "")
	jsonapitest.AssertError(t, status, body, http.StatusServiceUnavailable, loyalty.EUNAVAILABLE)
	n, err := st.PendingCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("got %d deltas in the outbox, want 0", n)
	}
}

// --- against a real hub ---------------------------------------------------------------------

// biHub is a running hub wired the way cmd/loyalty's HubMain wires it.
type biHub struct {
	Store *hubsqlite.Store
	Hub   *hub.Hub
	HTTP  *hub.Server
}

func mustOpenBIHub(tb testing.TB) *biHub {
	tb.Helper()
	ctx := context.Background()
	st, err := hubsqlite.Open(ctx, filepath.Join(tb.TempDir(), "hub.db"))
	if err != nil {
		tb.Fatalf("open hub store: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	h := hub.New(st)
	h.KEK = seal.NewRandom()
	h.Logger = biLogger
	if err := h.Init(ctx); err != nil {
		tb.Fatalf("init hub: %v", err)
	}
	s := lsync.NewServer(h)
	s.Logger = biLogger
	h.OnChange = s.NotifyStores
	up := &ws.Upgrader{}
	srv := &hub.Server{Hub: h, Sync: s, Addr: "127.0.0.1:0", AdminKey: "admin", Logger: biLogger, Upgrade: up.Upgrade}
	if err := srv.Open(); err != nil {
		tb.Fatalf("open hub server: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return &biHub{Store: st, Hub: h, HTTP: srv}
}

// syncedPOSAgent is an agent whose sync client runs against a real hub.
type syncedPOSAgent struct {
	Store  *agentsqlite.Store
	Client *lsync.Client
	Agent  *agent.Agent
	HTTP   *agent.Server
}

func mustOpenSyncedPOSAgent(tb testing.TB, rh *biHub, store, token string) *syncedPOSAgent {
	tb.Helper()
	return mustOpenSyncedPOSAgentAt(tb, rh, store, token, nil)
}

// mustOpenSyncedPOSAgentAt is mustOpenSyncedPOSAgent with the replica and the agent on the clock
// now (nil: the machine's), from the start.
func mustOpenSyncedPOSAgentAt(tb testing.TB, rh *biHub, store, token string, now func() time.Time) *syncedPOSAgent {
	tb.Helper()
	ctx := context.Background()
	st, err := agentsqlite.Open(ctx, filepath.Join(tb.TempDir(), store+".db"))
	if err != nil {
		tb.Fatalf("open replica: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	if now != nil {
		st.Now = now
	}
	c := lsync.NewClient(rh.HTTP.SyncURL(), store, token, &ws.Dialer{}, st)
	c.Logger, c.MinBackoff, c.MaxBackoff = biLogger, 20*time.Millisecond, 200*time.Millisecond
	a := agent.New(store, st, c)
	a.Logger = biLogger
	if now != nil {
		a.Now = now
	}
	srv := agent.NewServer(a, "127.0.0.1:0")
	srv.Logger = biLogger
	if err := srv.Open(); err != nil {
		tb.Fatalf("open pos api: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(runCtx)
	}()
	tb.Cleanup(func() { cancel(); <-done })
	return &syncedPOSAgent{Store: st, Client: c, Agent: a, HTTP: srv}
}

// biWaitFor polls cond until it holds or biTimeout passes.
func biWaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(biTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up waiting for %s", what)
		}
		<-time.After(10 * time.Millisecond) // paces the polling of the condition above; nothing waits for time itself
	}
}

func (sa *syncedPOSAgent) stats(tb testing.TB) agent.Stats {
	tb.Helper()
	s, err := sa.Agent.Status(context.Background())
	if err != nil {
		tb.Fatalf("status: %v", err)
	}
	return s.Stats
}

// TestSyncedAgentBadInput runs bad POS calls against an agent that got its program and keys from
// a real hub, then checks that the good calls around them reach the hub exactly once, that the
// hub rejects nothing, and that the agent and the hub agree on the balance.
func TestSyncedAgentBadInput(t *testing.T) {
	ctx := context.Background()
	rh := mustOpenBIHub(t)
	_, token, err := rh.Hub.CreateStore(ctx, "s1", "Store 1")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"alice", "bob"} {
		if _, err := rh.Hub.CreateMember(ctx, loyalty.Member{ID: id, HomeStore: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rh.Hub.Earn(ctx, loyalty.EarnRequest{OrderID: "web-1", MemberID: "alice", Amount: 20000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	vr, err := rh.Hub.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "web-2", MemberID: "alice", RewardID: "coffee"})
	if err != nil {
		t.Fatal(err)
	}
	aliceQR, err := rh.Hub.MemberToken(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	hk, err := rh.Hub.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}

	sa := mustOpenSyncedPOSAgent(t, rh, "s1", token)
	biWaitFor(t, "the agent's first sync", func() bool {
		st := sa.stats(t)
		return st.ProgramVersion == 1 && st.Members == 2
	})
	base := sa.HTTP.URL()
	now := time.Now()
	expired := qrtest.Sign(t, hk, qr.Claims{Type: qr.TypeMember, Member: "alice", IssuedAt: now.Add(-time.Hour).Unix(), Expires: now.Add(-time.Minute).Unix()})
	forged := qrtest.Sign(t, qrtest.Key(t), qr.Claims{Type: qr.TypeMember, Member: "alice", IssuedAt: now.Unix()})

	// Good calls, then bad ones, then good ones again.
	first := mustPOS(t, base, "/v1/earn", `{"order_id":"pos-1","qr":"`+aliceQR+`","amount":1999,"currency":"EUR"}`, nil)
	tests := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"forged qr", "/v1/earn", `{"order_id":"pos-x","qr":"` + forged + `","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"altered qr", "/v1/earn", `{"order_id":"pos-x","qr":` + biJSON(qrtest.Alter(t, aliceQR, func(c *qr.Claims) { c.Member = "bob" })) + `,"amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"truncated qr", "/v1/scan", `{"qr":"` + aliceQR[:len(aliceQR)/2] + `"}`, 400, loyalty.EINVALID},
		{"expired qr", "/v1/scan", `{"qr":"` + expired + `"}`, 400, loyalty.EINVALID},
		{"voucher as member", "/v1/earn", `{"order_id":"pos-x","qr":"` + vr.Voucher.Token + `","amount":100,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"member as voucher", "/v1/redeem", `{"order_id":"pos-x","voucher":"` + aliceQR + `"}`, 400, loyalty.EINVALID},
		{"unknown reward", "/v1/redeem", `{"order_id":"pos-x","qr":"` + aliceQR + `","reward_id":"yacht"}`, 404, loyalty.ENOTFOUND},
		{"too few points", "/v1/redeem", `{"order_id":"pos-x","member_id":"bob","reward_id":"coffee"}`, 422, loyalty.EINSUFFICIENT},
		{"fractional money", "/v1/earn", `{"order_id":"pos-x","qr":"` + aliceQR + `","amount":19.99,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"negative money", "/v1/earn", `{"order_id":"pos-x","qr":"` + aliceQR + `","amount":-1999,"currency":"EUR"}`, 400, loyalty.EINVALID},
		{"order reused", "/v1/earn", `{"order_id":"pos-1","qr":"` + aliceQR + `","amount":2999,"currency":"EUR"}`, 409, loyalty.ECONFLICT},
		{"unknown field", "/v1/earn", `{"order_id":"pos-x","qr":"` + aliceQR + `","amount":100,"currency":"EUR","bonus":500}`, 400, loyalty.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := posDo(t, base, "POST", tt.path, tt.body, "")
			jsonapitest.AssertError(t, status, body, tt.status, tt.code)
		})
	}
	if again := mustPOS(t, base, "/v1/earn", `{"order_id":"pos-1","qr":"`+aliceQR+`","amount":1999,"currency":"EUR"}`, nil); string(again) != string(first) {
		t.Errorf("retry: got body\n%s\nwant the first answer\n%s", again, first)
	}
	mustPOS(t, base, "/v1/redeem", `{"order_id":"pos-2","qr":"`+aliceQR+`","reward_id":"coffee"}`, nil)
	mustPOS(t, base, "/v1/redeem", `{"order_id":"pos-3","voucher":"`+vr.Voucher.Token+`"}`, nil)

	// Everything good reaches the hub once; nothing bad does.
	wantBalance := int64(200 - 50 + 19 - 50)
	biWaitFor(t, "the outbox to drain and the balance to converge", func() bool {
		m, err := rh.Hub.Member(ctx, "alice", 0)
		return err == nil && m.Balance == wantBalance && sa.stats(t).Outbox == 0
	})
	mv, err := rh.Hub.Member(ctx, "alice", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var fromStore int
	for _, e := range mv.Ledger {
		if e.Store == "s1" {
			fromStore++
		}
	}
	if got, want := fromStore, 3; got != want {
		t.Errorf("got %d deltas from s1 in alice's hub ledger, want %d (earn, redeem, voucher use)", got, want)
	}
	rep, err := rh.Hub.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mismatches) != 0 {
		t.Errorf("hub check: got mismatches %q, want none", rep.Mismatches)
	}
	if rej, err := rh.Hub.Rejections(ctx, 100); err != nil || len(rej) != 0 {
		t.Errorf("hub rejections: got %+v (err %v), want none", rej, err)
	}
	if rej, err := sa.Agent.Rejected(ctx, 100); err != nil || len(rej) != 0 {
		t.Errorf("agent rejected list: got %+v (err %v), want none", rej, err)
	}
	var scan agent.ScanResult
	mustPOS(t, base, "/v1/scan", `{"qr":"`+aliceQR+`"}`, &scan)
	if scan.Balance != wantBalance || scan.Pending != 0 {
		t.Errorf("agent scan: got balance %d pending %d, want %d and 0", scan.Balance, scan.Pending, wantBalance)
	}
}

// TestSyncedAgentWrongToken: an agent with a wrong store token learns EUNAUTHORIZED from the hub,
// never goes online, and keeps its offline sales in the outbox.
func TestSyncedAgentWrongToken(t *testing.T) {
	ctx := context.Background()
	rh := mustOpenBIHub(t)
	if _, _, err := rh.Hub.CreateStore(ctx, "s1", ""); err != nil {
		t.Fatal(err)
	}
	sa := mustOpenSyncedPOSAgent(t, rh, "s1", "not-the-token")
	// Feed the replica by hand, as a store restored from a backup would have it.
	k := qrtest.Key(t)
	prog := loyalty.DefaultProgram()
	if err := sa.Store.ApplyChanges(ctx, &lsync.Changes{Program: &prog, Keys: []qr.PublicKey{k.Public()},
		Members: []loyalty.Member{{ID: "alice", Balance: 100, Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	mustPOS(t, sa.HTTP.URL(), "/v1/earn", `{"order_id":"o-1","member_id":"alice","amount":1000,"currency":"EUR"}`, nil)

	biWaitFor(t, "the sync client to report an error", func() bool { return sa.Client.Status().LastError != "" })
	st := sa.Client.Status()
	if !strings.Contains(st.LastError, loyalty.EUNAUTHORIZED) {
		t.Errorf("got last error %q, want it to say %s", st.LastError, loyalty.EUNAUTHORIZED)
	}
	if st.Online {
		t.Error("the agent is online with a wrong token")
	}
	if got, want := sa.stats(t).Outbox, int64(1); got != want {
		t.Errorf("got %d deltas in the outbox, want %d", got, want)
	}
	if rej, err := rh.Hub.Rejections(ctx, 100); err != nil || len(rej) != 0 {
		t.Errorf("hub rejections: got %+v (err %v), want none", rej, err)
	}
}

// TestPOSRetrySaysReplayed: the answer to a retry is the first answer, byte for byte, with the
// header Idempotent-Replayed: true, so that a POS that lost the first answer knows nothing new
// was done (and gives the reward once); the first answer has no such header.
func TestPOSRetrySaysReplayed(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	for path, body := range map[string]string{
		"/v1/redeem": `{"order_id":"rp-1","qr":"` + ta.memberQR(t, "alice") + `","reward_id":"coffee"}`,
		"/v1/sales":  `{"order_id":"rp-2","amount":1250,"currency":"EUR"}`,
	} {
		posReplays(t, ta, path, body)
	}
}

// posReplays posts body to path twice and checks that only the second answer says it was
// replayed, with the first answer's body.
func posReplays(t *testing.T, ta *posAgent, path, body string) {
	t.Helper()
	var first string
	for i := range 2 {
		resp, err := http.Post(ta.HTTP.URL()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := resp.Header.Get("Idempotent-Replayed"), map[int]string{0: "", 1: "true"}[i]; resp.StatusCode != http.StatusOK || got != want {
			t.Errorf("%s, call %d: %d, Idempotent-Replayed %q, want %q", path, i+1, resp.StatusCode, got, want)
		}
		if i == 0 {
			first = string(b)
		} else if string(b) != first {
			t.Errorf("%s: the retry's body %s, want the first %s", path, b, first)
		}
	}
}
