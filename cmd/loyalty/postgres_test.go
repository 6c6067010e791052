package main

// The command line on a hub whose database is on PostgreSQL. The tests that need a server run
// only when LOYALTY_TEST_POSTGRES names one they may create databases on:
//
//	LOYALTY_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' go test ./cmd/loyalty/ -run Postgres
//
// The others (the database setting's forms, refusals, redaction) need none.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubpostgres "github.com/loyalty-edge-sync/loyalty/hub/postgres"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
)

const postgresEnv = "LOYALTY_TEST_POSTGRES"

// testPostgres is LOYALTY_TEST_POSTGRES, read once and then removed from the environment
// (TestMain): the commands under test warn about every LOYALTY_* variable that is no setting.
var testPostgres string

func TestMain(m *testing.M) {
	testPostgres = os.Getenv(postgresEnv)
	os.Unsetenv(postgresEnv)
	os.Exit(m.Run())
}

// postgresServer returns the URL of the PostgreSQL server the tests may create databases on, or
// skips tb, saying how to run it.
func postgresServer(tb testing.TB) string {
	tb.Helper()
	// TestMain read and removed the variable, before go test's cache watches what tests read:
	// reading it here tells the cache that these results depend on it.
	os.Getenv(postgresEnv)
	server := testPostgres
	if server == "" {
		tb.Skipf("needs a PostgreSQL server: %s='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' go test ./cmd/loyalty/ -run Postgres", postgresEnv)
	}
	if !isPostgresURL(server) {
		tb.Fatalf("%s must be a postgres:// URL, got %q", postgresEnv, server)
	}
	return server
}

// withPoolSetting returns the URL database with a pool setting added, which hub/postgres takes
// and every other connection the command line opens must not send to the server.
func withPoolSetting(tb testing.TB, database string) string {
	tb.Helper()
	u, err := url.Parse(database)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "3")
	u.RawQuery = q.Encode()
	return u.String()
}

// newPostgresDatabase creates an empty database on the test server, dropped when tb ends, and
// returns its URL.
func newPostgresDatabase(tb testing.TB) string {
	tb.Helper()
	where, drop, err := createBenchDatabase(context.Background(), postgresServer(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := drop(); err != nil {
			tb.Errorf("drop the test database: %v", err)
		}
	})
	return where
}

// postgresDatabaseExists reports whether the test server has a database called name.
func postgresDatabaseExists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, postgresServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

// TestPostgresHubAndAdminCommands starts a hub (HubMain) on a new PostgreSQL database and works
// on the same database through the admin commands while it runs: each sees what the other wrote,
// and a store's agent syncs a member an admin command added.
func TestPostgresHubAndAdminCommands(t *testing.T) {
	ctx := context.Background()
	database := withPoolSetting(t, newPostgresDatabase(t))
	quiet := slog.New(slog.DiscardHandler)

	// Before init: the database exists on the server but holds no hub, so admin commands refuse
	// it rather than make a hub there; init needs the key-encryption key named.
	if _, _, err := run(t, "store", "list", "--database", database); !errors.Is(err, errNoDatabase) {
		t.Errorf("store list on an empty PostgreSQL database: %v, want %v", err, errNoDatabase)
	}
	if _, _, err := run(t, "init", "--database", database); loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "keys.kek_file") {
		t.Errorf("init on PostgreSQL without a key-encryption key: %v, want EINVALID naming keys.kek_file", err)
	}
	kek := seal.Generate()
	t.Setenv("LOYALTY_KEYS_KEK", kek)
	t.Setenv("LOYALTY_DATABASE", database) // the admin commands below take it from the environment
	mustRun(t, "init")
	if _, _, err := run(t, "init"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second init: %v, want already exists", err)
	}

	hc := DefaultHubConfig()
	hc.Listen, hc.Database, hc.AdminAPIKey, hc.Keys.KEK = "127.0.0.1:0", database, "admin-key-0123456789", kek
	hc.Sync.PollInterval = 20 * time.Millisecond
	hm := &HubMain{Config: hc, Logger: quiet}
	if err := hm.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	if _, ok := hm.Store.(*hubpostgres.Store); !ok {
		t.Fatalf("HubMain opened a %T for %s, want the PostgreSQL store", hm.Store, databaseName(database))
	}

	// An admin command's store is seen by the running hub, through its HTTP API.
	out, _ := mustRun(t, "store", "add", "--id", "s1", "--name", "Main Street")
	token := strings.TrimSpace(out)
	api := func(method, path, body string) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, hm.HTTP.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+hc.AdminAPIKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	var stores []hub.StoreInfo
	if err := json.Unmarshal(api("GET", "/v1/stores", ""), &stores); err != nil || len(stores) != 1 || stores[0].ID != "s1" || stores[0].Name != "Main Street" {
		t.Errorf("the hub's GET /v1/stores after loyalty store add: %+v (%v)", stores, err)
	}
	// And the hub's store is seen by the admin commands.
	api("POST", "/v1/stores", `{"id":"s2","name":"Station Road"}`)
	out, _ = mustRun(t, "store", "list", "--json")
	if err := json.Unmarshal([]byte(out), &stores); err != nil || len(stores) != 2 || stores[0].ID != "s1" || stores[1].ID != "s2" {
		t.Errorf("loyalty store list --json after POST /v1/stores: %s (%v)", out, err)
	}

	// A member added by an admin command reaches the store's agent: the hub's poll notices the
	// change in the database and tells the connected agent.
	ac := DefaultAgentConfig()
	ac.StoreID, ac.Token, ac.Listen, ac.Database = "s1", token, "127.0.0.1:0", filepath.Join(t.TempDir(), "agent.db")
	ac.HubURL = "ws://" + hm.HTTP.ListenAddr() + "/v1/sync"
	am := &AgentMain{Config: ac, Logger: quiet}
	if err := am.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer am.Close()
	if err := waitFor(ctx, time.Minute, func() (bool, string) {
		st, err := am.Agent.Status(ctx)
		return err == nil && st.Online, "the agent's first sync"
	}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "member", "add", "--id", "ann", "--name", "Ann", "--home-store", "s1")
	if err := waitFor(ctx, time.Minute, func() (bool, string) {
		st, err := am.Agent.Status(ctx)
		return err == nil && st.Members == 1, "the agent to receive the member loyalty member add made"
	}); err != nil {
		t.Fatal(err)
	}

	// Signing works with the key-encryption key from the environment; check sees the member.
	if out, _ := mustRun(t, "member", "qr", "--id", "ann"); len(strings.TrimSpace(out)) < 20 {
		t.Errorf("member qr printed %q, want a token", out)
	}
	out, _ = mustRun(t, "check", "--json")
	var check struct {
		Members    int      `json:"members"`
		Mismatches []string `json:"mismatches"`
	}
	if err := json.Unmarshal([]byte(out), &check); err != nil || check.Members != 1 || len(check.Mismatches) > 0 {
		t.Errorf("loyalty check: %s (%v)", out, err)
	}
	// Without the key, commands that do not sign still work (with a warning); signing fails.
	t.Setenv("LOYALTY_KEYS_KEK", "")
	mustRun(t, "store", "list")
	if _, _, err := run(t, "member", "qr", "--id", "ann"); err == nil {
		t.Error("member qr signed without a key-encryption key")
	}

	// backup and restore refuse PostgreSQL, pointing at its own tools; nothing is written.
	to := filepath.Join(t.TempDir(), "hub-backup.db")
	if _, _, err := run(t, "backup", "--to", to); loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "pg_dump") {
		t.Errorf("backup of a PostgreSQL hub: %v, want EINVALID naming pg_dump", err)
	}
	if _, err := os.Stat(to); err == nil {
		t.Errorf("a refused backup wrote %s", to)
	}
}

// TestPostgresBench runs `loyalty bench --backend postgres` at a tiny size: the hub on a
// database the bench creates on the server and drops at the end, beside bare PostgreSQL
// baselines measured in it, and the agents on SQLite beside their bare SQLite commit.
func TestPostgresBench(t *testing.T) {
	server := postgresServer(t)
	dir := t.TempDir()
	example, err := os.ReadFile(filepath.Join("..", "..", "configs", "program.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	program := filepath.Join(dir, "program.yaml")
	if err := os.WriteFile(program, append(example, "\nexpiry: {mode: lot, after_days: 365, remind_days: 30}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	const preload = 200
	stdout, stderr := mustRun(t, "bench", "--json", "--backend", "postgres", "--database", withPoolSetting(t, server), "--program", program,
		"--earns", "5", "--deltas", "200", "--preload", "200",
		"--storm-stores", "20", "--storm-backlog", "5", "--sweep-members", "200")
	var r map[string]any
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("bench --json printed no single JSON object: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	}
	number := func(key string) float64 {
		t.Helper()
		v, ok := r[key].(float64)
		if !ok {
			t.Errorf("the report has no number %q", key)
		}
		return v
	}
	for _, key := range []string{
		// The baselines: SQLite's commit for the agent, PostgreSQL's commit and upsert for the hub.
		"bare_commit_p50_us", "bare_commit_p99_us", "bare_commit_serial_per_s",
		"postgres_bare_commit_p50_us", "postgres_bare_commit_p99_us", "postgres_bare_commit_serial_per_s",
		"bare_batched_insert_rows_per_s", "bare_requalify_update_seconds",
		// And the figures beside them.
		"earn_p50_us", "hub_ingest_deltas_per_s", "websocket_ingest_deltas_per_s", "preload_deltas_per_s",
		"storm_deltas_per_s", "single_drain_deltas_per_s", "sweep_seconds", "sweep_members_expired",
	} {
		if v := number(key); v <= 0 {
			t.Errorf("%s = %v, want a measured, positive figure", key, v)
		}
	}
	if got := number("ledger_deltas_at_ingest"); got < preload {
		t.Errorf("ledger_deltas_at_ingest = %v, want at least the preload, %d", got, preload)
	}
	if r["backend"] != "postgres" {
		t.Errorf("backend = %v, want postgres", r["backend"])
	}
	name, _ := r["postgres_database"].(string)
	if !strings.HasPrefix(name, "loyalty_bench_") || r["postgres_database_kept"] == true {
		t.Errorf("postgres_database = %q, kept %v: want a loyalty_bench_ database, dropped", name, r["postgres_database_kept"])
	} else if postgresDatabaseExists(t, name) {
		t.Errorf("the bench left its database %s on the server", name)
	}
}

// TestConfig_DatabaseURL: the hub's database setting is a SQLite path or a PostgreSQL URL, from
// the flag, LOYALTY_DATABASE or the file; a URL needs the key-encryption key named, and its
// password is never shown.
func TestConfig_DatabaseURL(t *testing.T) {
	const pg = "postgres://loyalty:s3cr%40t-pw@db.example.com:5432/loyalty?sslmode=require"
	for _, c := range []struct {
		database string
		postgres bool
	}{
		{"hub.db", false}, {"/var/lib/loyalty/hub.db", false}, {pg, true},
		{"postgresql://loyalty@db.example.com/loyalty", true}, {"postgres://localhost", true},
	} {
		if got := isPostgresURL(c.database); got != c.postgres {
			t.Errorf("isPostgresURL(%q) = %v, want %v", c.database, got, c.postgres)
		}
	}

	t.Setenv("LOYALTY_ADMIN_API_KEY", "0123456789abcdef")
	load := func(args ...string) HubConfig {
		t.Helper()
		var h HubConfig
		if err := loadConfig(cmdWith(t, hubCommand, args...), DefaultHubConfig(), &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	t.Setenv("LOYALTY_DATABASE", "postgresql://loyalty@db.example.com/loyalty")
	if h := load(); h.Database != "postgresql://loyalty@db.example.com/loyalty" {
		t.Errorf("database from LOYALTY_DATABASE = %q", h.Database)
	}
	if h := load("--database", pg); h.Database != pg {
		t.Errorf("database from --database over LOYALTY_DATABASE = %q", h.Database)
	}
	file := filepath.Join(t.TempDir(), "hub.yaml")
	os.WriteFile(file, []byte("database: "+pg+"\nkeys:\n  kek_file: /etc/loyalty/hub.kek\n"), 0o600)
	t.Setenv("LOYALTY_DATABASE", "")
	h := load("--config", file)
	if h.Database != pg || h.kekFile() != "/etc/loyalty/hub.kek" {
		t.Errorf("database from the file = %q, kek file %q", h.Database, h.kekFile())
	}
	if err := h.Validate(); err != nil {
		t.Errorf("a PostgreSQL URL with keys.kek_file: %v", err)
	}

	// The key-encryption key: beside a SQLite file by default; named explicitly for PostgreSQL.
	h.Keys.KEKFile = ""
	if err := h.Validate(); loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "keys.kek_file") || !strings.Contains(err.Error(), "keys.kek ") {
		t.Errorf("a PostgreSQL URL without a key-encryption key: %v, want EINVALID naming keys.kek_file and keys.kek", err)
	}
	h.Keys.KEK = seal.Generate()
	if err := h.Validate(); err != nil {
		t.Errorf("a PostgreSQL URL with keys.kek: %v", err)
	}
	if s := (HubConfig{Database: "data/hub.db"}); s.kekFile() != "data/hub.kek" || s.checkKEK() != nil {
		t.Errorf("SQLite's default key file = %q (%v), want data/hub.kek", s.kekFile(), s.checkKEK())
	}

	// Other URLs, and PostgreSQL URLs pgx cannot read, are refused, not taken for file paths.
	// So is a connection string of keywords, which was taken for a SQLite file's name (a new empty
	// database, its password printed by --check-config and logged at start).
	for _, bad := range []string{"mysql://loyalty@db/loyalty", "sqlite://hub.db", "postgres://loyalty:s3cr%40t-pw@db.example.com:port/loyalty", "",
		"host=db user=loyalty password=s3cr-pw dbname=loyalty", "dbname=loyalty password = s3cr-pw"} {
		c := h
		c.Database = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "database") {
			t.Errorf("database %q: %v, want an error about database", bad, err)
		} else if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("database %q: the error shows the password: %v", bad, err)
		}
	}
	// The agent's replica is a file: a hub URL in the shared LOYALTY_DATABASE is refused there.
	a := DefaultAgentConfig()
	a.StoreID, a.Token, a.Database = "s1", "t", pg
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "SQLite") || strings.Contains(err.Error(), "s3cr") {
		t.Errorf("agent with a PostgreSQL database: %v", err)
	}

	// The password is masked in --check-config and in the name messages use, written or encoded.
	var b strings.Builder
	printConfig(&b, h)
	if !strings.Contains(b.String(), "database: postgres://loyalty:xxxxx@db.example.com:5432/loyalty?sslmode=require\n") {
		t.Errorf("--check-config does not show the database with its password masked:\n%s", b.String())
	}
	for _, database := range []string{pg, "postgres://loyalty@db/loyalty?password=s3cr-pw&sslmode=disable", "postgres://loyalty:s3cr/pw@db:notaport/loyalty"} {
		if name := databaseName(database); strings.Contains(name, "s3cr") || !strings.Contains(name, "xxxxx") {
			t.Errorf("databaseName(%q) = %q, want the password masked", database, name)
		}
	}
}

// TestPostgresRefusalsWithoutServer: backup and restore refuse a PostgreSQL database before
// connecting, and an error connecting never shows the URL's password. No server is needed: the
// URL points at a closed port.
func TestPostgresRefusalsWithoutServer(t *testing.T) {
	const database = "postgres://loyalty:s3cret-pw@127.0.0.1:1/loyalty?sslmode=disable&connect_timeout=5"
	dir := t.TempDir()
	to := filepath.Join(dir, "backup.db")
	for _, args := range [][]string{{"backup", "--to", to}, {"restore", "--from", to}} {
		_, _, err := run(t, append(args, "--database", database)...)
		if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "pg_dump") || !strings.Contains(err.Error(), "pg_restore") {
			t.Errorf("loyalty %s on PostgreSQL: %v, want EINVALID naming pg_dump and pg_restore", args[0], err)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("loyalty %s: the error shows the password: %v", args[0], err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused commands left files: %v", entries)
	}
	t.Setenv("LOYALTY_KEYS_KEK", seal.Generate())
	for _, args := range [][]string{{"store", "list"}, {"init"}} {
		_, stderr, err := run(t, append(args, "--database", database)...)
		if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(stderr, "s3cret") {
			t.Errorf("loyalty %s with an unreachable server: %v (stderr %q), want an error without the password", strings.Join(args, " "), err, stderr)
		}
	}
}

// TestBenchBackends: the bench runs the hub on sqlite or postgres; postgres needs the URL of a
// server, and a postgres:// --database without --backend means postgres.
func TestBenchBackends(t *testing.T) {
	_, _, err := run(t, "bench", "--backend", "postgres")
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "--database") || !strings.Contains(err.Error(), "postgres://") {
		t.Errorf("bench --backend postgres without a URL: %v, want EINVALID asking for --database postgres://…", err)
	}
	_, _, err = run(t, "bench", "--backend", "postgres", "--database", filepath.Join(t.TempDir(), "hub.db"))
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "postgres://") {
		t.Errorf("bench --backend postgres with a file: %v, want EINVALID asking for a URL", err)
	}
	_, _, err = run(t, "bench", "--backend", "sqlite", "--database", "postgres://u:s3cret@127.0.0.1:1/x")
	if loyalty.ErrorCode(err) != loyalty.EINVALID || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bench --backend sqlite with a URL: %v, want EINVALID without the password", err)
	}
	_, _, err = run(t, "bench", "--backend", "mysql")
	if err == nil || !strings.Contains(err.Error(), "sqlite") || !strings.Contains(err.Error(), "postgres") {
		t.Errorf("bench --backend mysql: %v, want an error naming sqlite and postgres", err)
	}
	_, _, err = run(t, "bench", "--keep-database")
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "postgres") {
		t.Errorf("bench --keep-database on sqlite: %v, want EINVALID", err)
	}
	for _, c := range []struct{ backend, database, want string }{
		{"", "", "sqlite"}, {"", "hub.db", "sqlite"}, {"", "postgres://h/db", "postgres"}, {"", "postgresql://h/db", "postgres"},
	} {
		o := benchOptions{Backend: c.backend, Database: c.database, Earns: 1, EarnClients: 1, Deltas: 1, StormStores: 1, StormBacklog: 1, SweepMembers: 1}
		if err := o.validate(); err != nil || o.Backend != c.want {
			t.Errorf("bench --database %q: backend %q (%v), want %s", c.database, o.Backend, err, c.want)
		}
	}
}

// TestPostgresRestore: loyalty restore on a PostgreSQL database (restored with pg_restore, or a
// promoted standby) gives it a new epoch; it refuses while a hub serves on the database, and a
// hub does not start while a restore holds it. (e2e's TestRestoreDrillPostgres runs the whole
// drill, pg_dump and pg_restore included.)
func TestPostgresRestore(t *testing.T) {
	ctx := context.Background()
	database := newPostgresDatabase(t)
	kek := seal.Generate()
	t.Setenv("LOYALTY_KEYS_KEK", kek)
	mustRun(t, "init", "--database", database)
	epoch := func() int64 {
		t.Helper()
		s, err := hubpostgres.Open(ctx, database)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var e hub.EpochInfo
		if err := s.View(ctx, func(tx hub.Tx) (err error) { e, err = tx.Epoch(ctx); return err }); err != nil {
			t.Fatal(err)
		}
		return e.Epoch
	}
	before := epoch()

	hc := DefaultHubConfig()
	hc.Listen, hc.Database, hc.AdminAPIKey, hc.Keys.KEK = "127.0.0.1:0", database, "admin-key-0123456789", kek
	hm := &HubMain{Config: hc, Logger: slog.New(slog.DiscardHandler)}
	if err := hm.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "restore", "--database", database); err == nil || !strings.Contains(err.Error(), "stop every hub process on it first") {
		t.Errorf("restore while a hub serves: %v, want a refusal saying to stop the hubs", err)
	}
	if got := epoch(); got != before {
		t.Errorf("a refused restore changed the epoch: %d, was %d", got, before)
	}
	hm.Close()

	// A restore in progress (its lock, held here) keeps a hub from starting.
	s, err := hubpostgres.Open(ctx, database)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release, err := s.Hold(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	hm = &HubMain{Config: hc, Logger: slog.New(slog.DiscardHandler)}
	if err := hm.Open(ctx); err == nil || !strings.Contains(err.Error(), "being restored") {
		hm.Close()
		t.Errorf("a hub started while a restore held the database: %v", err)
	}
	if _, _, err := run(t, "restore", "--database", database); err == nil || !strings.Contains(err.Error(), "another loyalty restore") {
		t.Errorf("a second restore beside the first: %v, want a refusal naming a restore", err)
	}
	release()

	// The database it replaces must open, and be served by no hub, before anything changes: a
	// revocation made since the dump must not come back to life unnoticed.
	empty := newPostgresDatabase(t)
	if _, _, err := run(t, "restore", "--database", database, "--replaced", empty); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("restore with a --replaced that holds no hub: %v, want a refusal that changed nothing", err)
	}
	old := newPostgresDatabase(t)
	mustRun(t, "init", "--database", old)
	oc := hc
	oc.Database = old
	om := &HubMain{Config: oc, Logger: slog.New(slog.DiscardHandler)}
	if err := om.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "restore", "--database", database, "--replaced", old); err == nil || !strings.Contains(err.Error(), "stop every hub process on it first") {
		t.Errorf("restore while a hub serves on the replaced database: %v, want a refusal", err)
	}
	om.Close()
	if got := epoch(); got != before {
		t.Errorf("refused restores changed the epoch: %d, was %d", got, before)
	}

	_, out := mustRun(t, "restore", "--database", database)
	if !strings.Contains(out, "new epoch") || !strings.Contains(out, "nothing carried over") {
		t.Errorf("restore said %q, want the new epoch and that nothing was carried over", out)
	}
	if got := epoch(); got == before || got == 0 {
		t.Errorf("epoch after the restore: %d, was %d; want a new one", got, before)
	}
	if _, _, err := run(t, "restore", "--database", database, "--from", "hub.db"); loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "pg_restore") {
		t.Errorf("restore --from on PostgreSQL: %v, want EINVALID naming pg_restore", err)
	}
	hm = &HubMain{Config: hc, Logger: slog.New(slog.DiscardHandler)}
	if err := hm.Open(ctx); err != nil {
		t.Fatalf("the hub after the restore: %v", err)
	}
	hm.Close()

	// Restored again, replacing old: old is marked, and a hub no longer starts on it (its stores
	// would split their changes between the two databases).
	_, out = mustRun(t, "restore", "--database", database, "--replaced", old)
	if !strings.Contains(out, "marked replaced") {
		t.Errorf("restore --replaced said %q, want that the replaced database is marked", out)
	}
	om = &HubMain{Config: oc, Logger: slog.New(slog.DiscardHandler)}
	if err := om.Open(ctx); err == nil || !strings.Contains(err.Error(), "replaced by a restored database") {
		om.Close()
		t.Errorf("a hub on the replaced database: %v, want a refusal naming the restore", err)
	}
	hm = &HubMain{Config: hc, Logger: slog.New(slog.DiscardHandler)}
	if err := hm.Open(ctx); err != nil {
		t.Fatalf("the hub on the restored database: %v", err)
	}
	hm.Close()
}

// servingLock is a hub on a new PostgreSQL database that checks its serving lock's connection
// every 20ms, and what a test of that lock needs: a connection of its own to the same database
// (advisory locks are the database's), the backend holding the lock shared (0: none), and a way
// to end a backend, as a database restart or a proxy would.
type servingLock struct {
	hm        *HubMain
	db        *pgx.Conn
	holder    func() int32
	terminate func(pid int32)
}

func newServingLock(t *testing.T) servingLock {
	t.Helper()
	ctx := context.Background()
	database := newPostgresDatabase(t)
	kek := seal.Generate()
	t.Setenv("LOYALTY_KEYS_KEK", kek)
	mustRun(t, "init", "--database", database)
	hc := DefaultHubConfig()
	hc.Listen, hc.Database, hc.AdminAPIKey, hc.Keys.KEK = "127.0.0.1:0", database, "admin-key-0123456789", kek
	hm := &HubMain{Config: hc, Logger: slog.New(slog.DiscardHandler), lockCheck: 20 * time.Millisecond}
	if err := hm.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hm.Close() })
	db, err := pgx.Connect(ctx, database)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(ctx) }) // before the hub's Close: cleanups run last first
	return servingLock{hm: hm, db: db,
		// The key is "loyaltr" (hub/postgres servingLock), split as PostgreSQL shows a bigint
		// advisory lock.
		holder: func() int32 {
			t.Helper()
			var pid int32
			err := db.QueryRow(ctx, `SELECT COALESCE(max(pid), 0) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database
				WHERE datname = current_database()) AND classid = $1 AND objid = $2 AND objsubid = 1 AND mode = 'ShareLock' AND granted`,
				uint32(0x6c6f79), uint32(0x616c7472)).Scan(&pid)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		},
		terminate: func(pid int32) {
			t.Helper()
			if _, err := db.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// stopped waits for the hub to stop serving (HubMain.Failed) and returns why.
func (l servingLock) stopped(t *testing.T) error {
	t.Helper()
	select {
	case err := <-l.hm.Failed():
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the hub kept serving")
		return nil
	}
}

// TestPostgresServingLockRestored: a hub whose serving lock's connection breaks, and which finds
// the database's epoch changed when it takes the lock again (a restore came and went while it
// could not reach the database), stops serving, saying why.
func TestPostgresServingLockRestored(t *testing.T) {
	l := newServingLock(t)
	if _, err := l.db.Exec(context.Background(), `UPDATE counters SET value = value + 1 WHERE name = 'epoch'`); err != nil {
		t.Fatal(err)
	}
	pid := l.holder()
	if pid == 0 {
		t.Fatal("a serving hub holds no serving lock")
	}
	l.terminate(pid)
	if err := l.stopped(t); err == nil || !strings.Contains(err.Error(), "was restored") {
		t.Errorf("the hub stopped with %v, want an error saying the database was restored", err)
	}
}

// TestPostgresServingLockKept: a hub on PostgreSQL whose serving lock's connection breaks (its
// backend terminated, as a database restart or a proxy would) takes the lock again on a new
// connection and serves on; if a restore takes the lock while the hub's connection is broken, the
// hub stops (Failed), saying why, instead of serving a database being replaced.
func TestPostgresServingLockKept(t *testing.T) {
	ctx := context.Background()
	l := newServingLock(t)
	hm, db, holder, terminate := l.hm, l.db, l.holder, l.terminate
	hc := hm.Config
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			select {
			case err := <-hm.Failed():
				t.Fatalf("the hub stopped while waiting for %s: %v", what, err)
			case <-time.After(10 * time.Millisecond): // paces the polling; nothing waits for time itself
			}
		}
	}

	first := holder()
	if first == 0 {
		t.Fatal("a serving hub holds no serving lock")
	}
	terminate(first)
	waitFor("the hub to take its serving lock again", func() bool { p := holder(); return p != 0 && p != first })
	req, _ := http.NewRequest(http.MethodGet, hm.HTTP.URL()+"/v1/stores", nil)
	req.Header.Set("Authorization", "Bearer "+hc.AdminAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the hub after its lock's connection broke: GET /v1/stores %d, want 200", resp.StatusCode)
	}

	// A restore takes the lock exclusively while the hub's connection is broken: the hub may
	// take it back first, and its connection is broken again, until the restore has it.
	for took := false; !took; {
		pid := holder()
		if pid != 0 {
			terminate(pid)
		}
		waitFor("the lock to be free or taken back", func() bool {
			if err := db.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(0x6c6f79616c7472)).Scan(&took); err != nil {
				t.Fatal(err)
			}
			now := holder()
			return took || now != 0 && now != pid
		})
	}
	if err := l.stopped(t); err == nil || !strings.Contains(err.Error(), "is being restored") {
		t.Errorf("the hub stopped with %v, want an error saying the database is being restored", err)
	}
}

// TestDatabaseName_KeywordStringNotShown: a connection string of keywords is never shown in a
// message, whichever setting names it (--replaced of a restore quoted it, password and all).
func TestDatabaseName_KeywordStringNotShown(t *testing.T) {
	if name := databaseName("host=db user=loyalty password=s3cr-pw dbname=loyalty"); strings.Contains(name, "s3cr") {
		t.Errorf("databaseName of a keyword string = %q; want it not shown", name)
	}
}
