package e2e_test

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/pgtest"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
)

// postgresDatabase creates an empty database on the server named by LOYALTY_TEST_POSTGRES, drops
// it when t ends, and returns its URL; without the variable it skips t, saying how to run it.
func postgresDatabase(t *testing.T) string {
	t.Helper()
	pgtest.Skip(t, "go test ./e2e/ -run Postgres")
	return pgtest.Database(t, "loyalty_e2e_", "")
}

// TestMultiHubPostgres: two hub processes on one PostgreSQL database, three store agents spread
// across them, each agent given both hubs (hub_url, comma-separated, its own hub first).
//
//   - A kill switch made through one hub reaches the agents connected to the other at once, by
//     the database's notification: the agents' heartbeat (30s) and the hubs' poll (1h) are too
//     slow to explain it.
//   - One hub is killed (SIGKILL) while its stores sell and push; their agents move to the other
//     hub at their next attempt and push what they had in flight there.
//   - The killed hub started again: a program change made through it reaches the agents, all on
//     the other hub now.
//   - The README's guarantees 1 to 4 hold: every approved delta is in the ledger once and nothing
//     else is (every push is sent twice besides), the balances match the receipts, the hub's
//     ledger and every agent, and the coffee budget's spending and leases never pass its limit.
//   - Each store has one live session, held by the surviving hub, and is shown connected.
func TestMultiHubPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	database := postgresDatabase(t)
	addrA, addrB := freePort(t), freePort(t)
	w := &world{t: t, bin: binary(t), dir: t.TempDir(), key: rand.Text(), hubAddr: addrA, agents: map[string]*proc{},
		addrs: map[string]string{}, env: map[string][]string{}, tokens: map[string]string{}, rng: mrand.New(mrand.NewPCG(7, 11)),
		expected: map[string]int64{}, approved: map[string]bool{}}
	kek := seal.Generate()
	cert, key, _ := w.tlsFiles()
	startHub := func(name, addr string) *proc {
		p := start(t, w.bin, name, []string{
			"LOYALTY_ADMIN_API_KEY=" + w.key,
			"LOYALTY_KEYS_KEK=" + kek,
			"LOYALTY_SYNC_HEARTBEAT=30s",    // agents pull at least this often anyway: far slower than what is checked
			"LOYALTY_SYNC_POLL_INTERVAL=1h", // the hubs' poll of the change version: never, in this test
			"LOYALTY_TLS_CERT_FILE=" + cert,
			"LOYALTY_TLS_KEY_FILE=" + key,
		}, "hub", "--listen", addr, "--database", database)
		eventually(t, 30*time.Second, name+" healthy", func() (bool, string) {
			return call(t, "GET", "https://"+addr+"/healthz", "", nil, nil) == 200, "no answer"
		})
		return p
	}
	hubA := startHub("hub-a", addrA) // creates the hub's tables, program and key; b finds them
	startHub("hub-b", addrB)
	apiA, apiB := "https://"+addrA, "https://"+addrB
	syncURL := func(addr string) string { return "wss://" + addr + "/v1/sync" }

	// A coffee campaign with a budget, through a; members through a, stores through b.
	const limit = 30
	p := loyalty.DefaultProgram()
	p.Budgets = []loyalty.Budget{{ID: "coffee-campaign", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: limit}}
	if s := call(t, "PUT", apiA+"/v1/program", w.key, p, nil); s != 200 {
		t.Fatalf("program through a: HTTP %d", s)
	}
	for i := range 9 {
		w.member(fmt.Sprintf("m%d", i), 2000)
	}
	stores := []string{"a", "b", "c"}
	home := map[string]string{"a": addrA, "b": addrB, "c": addrA} // the hub each agent dials first
	for _, id := range stores {
		var created struct {
			Token string `json:"token"`
		}
		if s := call(t, "POST", apiB+"/v1/stores", w.key, map[string]string{"id": id}, &created); s != 201 {
			t.Fatalf("create store %s through b: HTTP %d", id, s)
		}
		other := addrB
		if home[id] == addrB {
			other = addrA
		}
		w.addrs[id] = freePort(t)
		w.env[id] = append(w.agentEnv(id, created.Token, home[id]),
			"LOYALTY_HUB_URL="+syncURL(home[id])+","+syncURL(other), // the last value of a variable wins
			"LOYALTY_SYNC_MIN_BACKOFF=50ms", "LOYALTY_SYNC_MAX_BACKOFF=500ms",
			"LOYALTY_FAULTS_DUPLICATE_PUSH=true", // every delta is delivered at least twice
		)
	}
	for _, id := range stores {
		w.startAgent(id)
	}
	for _, id := range stores {
		w.waitAgentUp(id)
		if st := w.status(id); st.Hub != syncURL(home[id]) {
			t.Fatalf("agent %s syncs with %s, want its first hub %s", id, st.Hub, syncURL(home[id]))
		}
	}
	connectedAt := func(api string) {
		t.Helper()
		eventually(t, 10*time.Second, "every store shown connected by "+api, func() (bool, string) {
			var ss []hub.StoreInfo
			if s := call(t, "GET", api+"/v1/stores", w.key, nil, &ss); s != 200 {
				return false, fmt.Sprintf("HTTP %d", s)
			}
			for _, s := range ss {
				if !s.Health.Connected {
					return false, s.ID + " disconnected"
				}
			}
			return len(ss) == len(stores), fmt.Sprintf("%d stores", len(ss))
		})
	}
	connectedAt(apiB) // b shows a's stores connected: health is in the database
	owners := liveSessions(t, database)
	if len(owners) != 3 || owners["a"] != owners["c"] || owners["a"] == owners["b"] {
		t.Fatalf("live sessions by store: %v; want a and c held by one hub process, b by the other", owners)
	}

	// A kill switch through b reaches a and c, connected to a.
	programChange(t, w, apiB, func(p *loyalty.Program) { p.Rewards[2].Disabled = true }, "a", "c") // tote
	if _, s := w.redeemOnce("a", "m0", "tote"); s != http.StatusUnprocessableEntity {
		t.Errorf("store a redeemed the switched-off tote: HTTP %d", s)
	}

	// Sales and coffees everywhere.
	coffees := 0
	coffee := func(store string) {
		m := w.members[w.rng.IntN(len(w.members))]
		w.order++
		r, s := w.pos(store, "/v1/redeem", loyalty.RedeemRequest{OrderID: fmt.Sprintf("%s-%d", store, w.order), QR: w.tokens[m], RewardID: "coffee"})
		switch {
		case s == 200:
			coffees++
		case s != http.StatusUnprocessableEntity:
			t.Fatalf("coffee at %s: HTTP %d %+v", store, s, r)
		}
	}
	for range 5 {
		for _, id := range stores {
			w.sale(id)
		}
	}
	for _, id := range stores {
		coffee(id)
		coffee(id)
	}

	// Hub a is killed while a and c sell and push; they go on selling while they move to b.
	for i := range 20 {
		w.sale("a")
		w.sale("c")
		if i%5 == 2 {
			coffee("a")
			coffee("c")
		}
		if i == 6 {
			if code := hubA.stop(syscall.SIGKILL); code != -1 {
				t.Fatalf("hub a exited %d, want killed", code)
			}
			t.Log("hub a killed")
		}
	}
	for _, id := range []string{"a", "c"} {
		eventually(t, 20*time.Second, id+" moved to hub b", func() (bool, string) {
			st := w.status(id)
			return st.Online && st.Hub == syncURL(addrB), fmt.Sprintf("online %v through %s, last error %q", st.Online, st.Hub, st.LastError)
		})
	}
	for range 3 {
		for _, id := range stores {
			w.sale(id)
		}
	}

	// Hub a comes back (a new process); a program change through it reaches the agents, all on b.
	startHub("hub-a2", addrA)
	programChange(t, w, apiA, func(p *loyalty.Program) { p.Rewards[2].Disabled = false }, stores...)
	for _, id := range stores {
		if st := w.status(id); st.Hub != syncURL(addrB) {
			t.Errorf("agent %s syncs with %s, want hub b", id, st.Hub)
		}
	}

	eventually(t, 30*time.Second, "every outbox drained", func() (bool, string) {
		for _, id := range stores {
			if st := w.status(id); !st.Online || st.Outbox > 0 || st.Rejected > 0 {
				return false, fmt.Sprintf("%s: online=%v outbox=%d rejected=%d", id, st.Online, st.Outbox, st.Rejected)
			}
		}
		return true, ""
	})

	// Guarantees 1 (exactly-once effect) and 2 (nothing lost), through either hub.
	w.hubAddr = addrA
	_, dups := w.exactlyOnce(t, apiA, stores)

	// Guarantee 3 (convergence): the hub's balances equal its ledger; every agent shows them.
	w.hubAddr = addrB
	var check hub.CheckReport
	if s := call(t, "GET", apiB+"/v1/check", w.key, nil, &check); s != 200 || len(check.Mismatches) > 0 || check.Members != len(w.members) {
		t.Errorf("hub check: HTTP %d %+v", s, check)
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

	// Guarantee 4 (budgets never exceeded): every approved coffee counted once, spent plus
	// leased within the limit.
	bs := w.budgets()
	if len(bs) != 1 {
		t.Fatalf("budgets %+v, want the coffee campaign", bs)
	}
	if b := bs[0]; b.Spent != int64(coffees) || b.Spent+b.Outstanding > b.Limit || b.Limit != limit {
		t.Errorf("coffee budget: spent %d (receipts %d), outstanding %d, limit %d", b.Spent, coffees, b.Outstanding, b.Limit)
	}

	// One live session per store, all held by hub b; both hubs show every store connected.
	owners = liveSessions(t, database)
	if len(owners) != 3 || owners["a"] != owners["b"] || owners["b"] != owners["c"] {
		t.Errorf("live sessions by store after the failover: %v; want all three held by hub b", owners)
	}
	connectedAt(apiA)
	connectedAt(apiB)
	t.Logf("%d deltas approved, %d coffees of %d, %d redeliveries ignored", len(w.approved), coffees, limit, dups)
}

// programChange changes the program through the hub at api and waits until each of stores has
// the new version; it fails if one takes longer than 5s (far less than the agents' 30s
// heartbeat, the only other way they would hear of it in TestMultiHubPostgres).
func programChange(t *testing.T, w *world, api string, change func(*loyalty.Program), stores ...string) {
	t.Helper()
	var p loyalty.Program
	if s := call(t, "GET", api+"/v1/program", w.key, nil, &p); s != 200 {
		t.Fatalf("program: HTTP %d", s)
	}
	before := map[string]int64{}
	for _, id := range stores {
		before[id] = w.status(id).ProgramVersion
	}
	change(&p)
	start := time.Now()
	if s := call(t, "PUT", api+"/v1/program", w.key, p, nil); s != 200 {
		t.Fatalf("program change through %s: HTTP %d", api, s)
	}
	for _, id := range stores {
		eventually(t, 5*time.Second, "store "+id+" has the new program", func() (bool, string) {
			st := w.status(id)
			return st.ProgramVersion > before[id], fmt.Sprintf("version %d (hub %s)", st.ProgramVersion, st.Hub)
		})
	}
	t.Logf("a program change through %s reached %v in %s", api, stores, time.Since(start).Round(time.Millisecond))
}

// liveSessions returns, per store, the hub process that holds its live session, as the database
// has it.
func liveSessions(t *testing.T, database string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, database)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT store, owner FROM sessions WHERE owner <> ''`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var store, owner string
		if err := rows.Scan(&store, &owner); err != nil {
			t.Fatal(err)
		}
		out[store] = owner
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
