package e2e_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/faultnet"
)

// binary builds cmd/loyalty once per test run, with the build tags given.
func binary(t *testing.T, tags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "loyalty")
	cmd := exec.Command("go", "build", "-tags", strings.Join(tags, ","), "-o", bin, "../cmd/loyalty")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	givenMu.Lock()
	defer givenMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// The port is free again once closed, and the kernel may hand it out again at once: two
		// processes of one test were given the same one. No address is given twice.
		if !given[addr] {
			given[addr] = true
			return addr
		}
	}
}

var (
	givenMu sync.Mutex
	given   = map[string]bool{} // the addresses freePort has given in this test binary
)

// proc is a running loyalty process with its log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan error
}

func start(t *testing.T, bin, name string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log ---\n%s", name, tail(string(b), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// stop signals the process and waits for it; it returns the exit code (-1 if killed by a signal).
func (p *proc) stop(sig syscall.Signal) int {
	select {
	case err := <-p.done:
		p.done <- err
		return exitCode(err)
	default:
	}
	p.cmd.Process.Signal(sig)
	err := <-p.done
	p.done <- err
	return exitCode(err)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if err == nil {
		return 0
	} else if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -2
}

func (p *proc) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return exitCode(err)
	case <-time.After(limit):
		t.Fatalf("%s did not exit within %s", p.name, limit)
		return 0
	}
}

func eventually(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", limit, what, why)
		}
		<-time.After(50 * time.Millisecond) // paces the polling of the condition above; nothing waits for time itself
	}
}

// call sends JSON and decodes the JSON answer; it returns the HTTP status.
func call(t *testing.T, method, url, key string, body, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := httpClient(t).Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	return resp.StatusCode
}

// world is a hub and its store agents, all real processes.
type world struct {
	t        *testing.T
	bin, dir string
	key      string
	hubAddr  string
	hub      *proc
	agents   map[string]*proc
	addrs    map[string]string   // POS API address per store
	env      map[string][]string // environment per store
	tokens   map[string]string   // member QR tokens
	members  []string
	rng      *mrand.Rand
	order    int
	expected map[string]int64 // per member: sum of every receipt's points
	approved map[string]bool  // every delta id a receipt reported
	hubEnv   []string         // extra environment for the hub, and for admin commands
	database string           // the hub's database: a PostgreSQL URL, or "" for hub.db in dir
}

// databaseArg is the hub's --database.
func (w *world) databaseArg() string {
	if w.database != "" {
		return w.database
	}
	return filepath.Join(w.dir, "hub.db")
}

// admin runs a loyalty admin command on the hub's database and returns its exit code and output.
func (w *world) admin(name string, args ...string) (int, string) {
	w.t.Helper()
	p := start(w.t, w.bin, name, w.hubEnv, append(args, "--database", w.databaseArg())...)
	code := p.wait(w.t, 60*time.Second)
	b, _ := os.ReadFile(p.log)
	return code, string(b)
}

func (w *world) mustAdmin(name string, args ...string) {
	w.t.Helper()
	if code, out := w.admin(name, args...); code != 0 {
		w.t.Fatalf("loyalty %v exited %d:\n%s", args, code, tail(out, 2000))
	}
}

func (w *world) startHub() {
	cert, key, _ := w.tlsFiles()
	w.hub = start(w.t, w.bin, "hub", append([]string{
		"LOYALTY_ADMIN_API_KEY=" + w.key,
		"LOYALTY_SYNC_HEARTBEAT=1s",
		"LOYALTY_SYNC_POLL_INTERVAL=200ms",
		"LOYALTY_TLS_CERT_FILE=" + cert,
		"LOYALTY_TLS_KEY_FILE=" + key,
	}, w.hubEnv...), "hub", "--listen", w.hubAddr, "--database", w.databaseArg())
	eventually(w.t, 20*time.Second, "hub healthy", func() (bool, string) {
		return call(w.t, "GET", w.api()+"/healthz", "", nil, nil) == 200, "no answer"
	})
}

func (w *world) startAgent(id string, extra ...string) *proc {
	p := start(w.t, w.bin, "agent-"+id, append(w.env[id], extra...), "agent")
	w.agents[id] = p
	return p
}

func (w *world) waitAgentUp(id string) {
	eventually(w.t, 20*time.Second, id+" POS API up", func() (bool, string) {
		var st agent.Status
		return call(w.t, "GET", "http://"+w.addrs[id]+"/v1/status", "", nil, &st) == 200 && st.ProgramVersion > 0, "not ready"
	})
}

// exactlyOnce checks guarantees 1 (exactly-once effect) and 2 (nothing lost) through the hub API
// at api: every approved delta is in the hub's ledger exactly once, the ledger holds nothing else,
// and each balance is the sum of the receipts the cashiers saw. The stores' agents must have
// acknowledged a duplicate delivery: the faults injected on the way made some. It returns how many
// deltas the ledger holds, and how many duplicates the agents were told of.
func (w *world) exactlyOnce(t *testing.T, api string, stores []string) (deltas int, dups int64) {
	t.Helper()
	ledger := map[string]bool{}
	for _, m := range w.members {
		var v hub.MemberView
		if s := call(t, "GET", api+"/v1/members/"+m+"?ledger=1000", w.key, nil, &v); s != 200 {
			t.Fatalf("member %s: HTTP %d", m, s)
		}
		for _, e := range v.Ledger {
			if ledger[e.ID] {
				t.Errorf("delta %s is in the ledger twice", e.ID)
			}
			ledger[e.ID] = true
			if !w.approved[e.ID] {
				t.Errorf("the ledger has delta %s that no receipt reported", e.ID)
			}
		}
		if v.Balance != w.expected[m] {
			t.Errorf("%s: hub balance %d, receipts add up to %d", m, v.Balance, w.expected[m])
		}
	}
	for id := range w.approved {
		if !ledger[id] {
			t.Errorf("approved delta %s is missing from the hub's ledger", id)
		}
	}
	for _, id := range stores {
		dups += w.status(id).Duplicates
	}
	if dups == 0 {
		t.Error("no duplicate deliveries were acknowledged; the fault injection did not happen")
	}
	return len(ledger), dups
}

func (w *world) status(id string) agent.Status {
	var st agent.Status
	call(w.t, "GET", "http://"+w.addrs[id]+"/v1/status", "", nil, &st)
	return st
}

func (w *world) record(r loyalty.Receipt) {
	w.expected[r.Member] += r.Points
	for _, id := range r.Deltas {
		w.approved[id] = true
	}
}

// pos sends a POS call twice, as a POS does after a timeout, and checks the retry got the
// first answer. A refusal is not remembered (docs/API.md, "Idempotency"): its retry is a new
// attempt, which may be decided otherwise (a hub that did not answer the first one in time
// under load may answer the second), and its answer is the call's.
func (w *world) pos(store, path string, body any) (loyalty.Receipt, int) {
	w.t.Helper()
	var first, second loyalty.Receipt
	s1 := call(w.t, "POST", "http://"+w.addrs[store]+path, "", body, &first)
	s2 := call(w.t, "POST", "http://"+w.addrs[store]+path, "", body, &second)
	if s1 != 200 {
		if s2 == 200 {
			w.record(second)
		}
		return second, s2
	}
	b1, _ := json.Marshal(first)
	b2, _ := json.Marshal(second)
	if s1 != s2 || !bytes.Equal(b1, b2) {
		w.t.Fatalf("%s %s: retry answered %d %+v, first %d %+v", store, path, s2, second, s1, first)
	}
	if s1 == 200 {
		w.record(first)
	}
	return first, s1
}

func (w *world) sale(store string) loyalty.Receipt {
	w.t.Helper()
	w.order++
	m := w.members[w.rng.IntN(len(w.members))]
	r, status := w.pos(store, "/v1/earn", loyalty.EarnRequest{OrderID: fmt.Sprintf("%s-%d", store, w.order), QR: w.tokens[m],
		Amount: loyalty.Money(100 + w.rng.Int64N(20000)), Currency: "EUR"})
	if status != 200 {
		w.t.Fatalf("sale at %s: HTTP %d", store, status)
	}
	return r
}

func (w *world) redeem(store string) {
	w.t.Helper()
	w.order++
	m := w.members[w.rng.IntN(len(w.members))]
	_, status := w.pos(store, "/v1/redeem", loyalty.RedeemRequest{OrderID: fmt.Sprintf("%s-%d", store, w.order), QR: w.tokens[m], RewardID: "coffee"})
	if status != 200 && status != http.StatusUnprocessableEntity {
		w.t.Fatalf("redeem at %s: HTTP %d", store, status)
	}
}

func (w *world) refund(store string, r loyalty.Receipt) {
	w.t.Helper()
	if _, status := w.pos(store, "/v1/reverse", loyalty.ReverseRequest{OrderID: r.OrderID}); status != 200 {
		w.t.Fatalf("reverse %s at %s: HTTP %d", r.OrderID, store, status)
	}
}

// TestEndToEnd runs a hub and three agents as processes and checks the README's guarantees 1–3
// after offline sales, agents killed mid-sync, a hub restart, and every delta delivered twice.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("E2E_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (replay the same shoppers with E2E_SEED=%d)", seed, seed)
	w := &world{t: t, bin: binary(t), dir: t.TempDir(), key: rand.Text(), hubAddr: freePort(t),
		agents: map[string]*proc{}, addrs: map[string]string{}, env: map[string][]string{}, tokens: map[string]string{},
		rng: mrand.New(mrand.NewPCG(seed, seed)), expected: map[string]int64{}, approved: map[string]bool{}}
	w.startHub()
	api := w.api()

	// Links we can cut, for the offline store and for the store we crash mid-sync.
	links := map[string]*faultnet.Link{}
	stores := []string{"a", "b", "c"}
	for _, id := range stores {
		var created struct {
			Token string `json:"token"`
		}
		if s := call(t, "POST", api+"/v1/stores", w.key, map[string]string{"id": id}, &created); s != 201 {
			t.Fatalf("create store %s: HTTP %d", id, s)
		}
		hubAddr := w.hubAddr
		if id != "a" {
			l, err := faultnet.NewLink(w.hubAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			links[id] = l
			hubAddr = l.Addr()
		}
		w.addrs[id] = freePort(t)
		w.env[id] = append(w.agentEnv(id, created.Token, hubAddr),
			"LOYALTY_SYNC_MIN_BACKOFF=50ms", "LOYALTY_SYNC_MAX_BACKOFF=500ms",
			"LOYALTY_FAULTS_DUPLICATE_PUSH=true", // every delta is delivered at least twice
		)
	}
	for i := range 9 {
		m := loyalty.Member{ID: fmt.Sprintf("m%d", i)}
		body := map[string]string{"id": m.ID, "name": fmt.Sprintf("Member %d", i), "home_store": stores[i%3]}
		if s := call(t, "POST", api+"/v1/members", w.key, body, nil); s != 201 {
			t.Fatalf("create member: HTTP %d", s)
		}
		var q struct {
			Token string `json:"token"`
		}
		call(t, "GET", api+"/v1/members/"+m.ID+"/qr", w.key, nil, &q)
		w.tokens[m.ID] = q.Token
		w.members = append(w.members, m.ID)
	}
	for _, id := range stores {
		w.startAgent(id)
	}
	for _, id := range stores {
		w.waitAgentUp(id)
	}

	// Online: sales, redemptions and a refund at every store, and a web order at the hub.
	for range 10 {
		for _, id := range stores {
			w.sale(id)
		}
	}
	for _, id := range stores {
		w.redeem(id)
		w.refund(id, w.sale(id))
	}
	var web loyalty.Receipt
	if s := call(t, "POST", api+"/v1/earn", w.key, loyalty.EarnRequest{OrderID: "web-1", MemberID: "m0", Amount: 2500, Currency: "EUR"}, &web); s != 200 {
		t.Fatalf("online earn: HTTP %d", s)
	}
	w.record(web)

	// Store c goes offline and keeps selling.
	links["c"].Cut()
	eventually(t, 10*time.Second, "c offline", func() (bool, string) { return !w.status("c").Online, "still online" })
	offline := 0
	for range 15 {
		if w.sale("c").Offline {
			offline++
		}
	}
	w.redeem("c")
	if offline != 15 {
		t.Errorf("c approved %d of 15 sales as offline, want 15", offline)
	}

	// Store b: cut off, sells, then restarts with a crash fault: after healing, it dies right
	// after the hub applies its first batch and before it records the ack.
	links["b"].Cut()
	eventually(t, 10*time.Second, "b offline", func() (bool, string) { return !w.status("b").Online, "still online" })
	for range 8 {
		w.sale("b")
	}
	if code := w.agents["b"].stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("b exited %d on SIGTERM, want 0", code)
	}
	crashing := w.startAgent("b", "LOYALTY_FAULTS_CRASH_AFTER_ACKS=1")
	w.waitAgentUp("b")
	links["b"].Heal()
	if code := crashing.wait(t, 20*time.Second); code != 3 {
		t.Fatalf("b exited %d, want 3 (the crash fault)", code)
	}
	w.startAgent("b")
	w.waitAgentUp("b")

	// Store a: killed with SIGKILL right after a burst of sales, most likely mid-sync.
	for range 10 {
		w.sale("a")
	}
	w.agents["a"].stop(syscall.SIGKILL)
	w.startAgent("a")
	w.waitAgentUp("a")

	// The hub restarts while c is still offline.
	if code := w.hub.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("hub exited %d on SIGTERM, want 0", code)
	}
	w.startHub()
	for range 5 {
		w.sale("a")
		w.sale("b")
	}
	links["c"].Heal()

	// Everyone syncs.
	eventually(t, 30*time.Second, "every outbox drained", func() (bool, string) {
		for _, id := range stores {
			if st := w.status(id); !st.Online || st.Outbox > 0 || st.Rejected > 0 {
				return false, fmt.Sprintf("%s: online=%v outbox=%d rejected=%d", id, st.Online, st.Outbox, st.Rejected)
			}
		}
		return true, ""
	})

	deltas, dups := w.exactlyOnce(t, api, stores)

	// Guarantee 3 (convergence): the hub's balances equal its ledger, and every agent's view of
	// every member equals the hub's.
	var check hub.CheckReport
	call(t, "GET", api+"/v1/check", w.key, nil, &check)
	if len(check.Mismatches) > 0 || check.Members != len(w.members) {
		t.Errorf("hub check: %+v", check)
	}
	for _, m := range w.members {
		for _, id := range stores {
			var s agent.ScanResult
			eventually(t, 10*time.Second, m+" at "+id, func() (bool, string) {
				call(t, "POST", "http://"+w.addrs[id]+"/v1/scan", "", agent.ScanRequest{QR: w.tokens[m]}, &s)
				return s.Balance == w.expected[m] && s.Pending == 0, fmt.Sprintf("agent says %d (pending %d), hub %d", s.Balance, s.Pending, w.expected[m])
			})
		}
	}
	t.Logf("%d deltas approved, %d in the ledger, %d redeliveries ignored", len(w.approved), deltas, dups)
}
