package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchJSON runs `loyalty bench --json` at a tiny size, with the example program and a points
// expiry rule so that every sweep reads the ledger, and checks the report a script reads: every
// figure is there, and a measured one is positive. Nothing here depends on how fast the machine
// is: the bench waits for each part to finish, and the figures are only checked for being there.
func TestBenchJSON(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile(filepath.Join("..", "..", "configs", "program.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	program := filepath.Join(dir, "program.yaml")
	if err := os.WriteFile(program, append(example, "\nexpiry: {mode: lot, after_days: 365, remind_days: 30}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "hub.db")
	const (
		earns, deltas, preload   = 5, 200, 200
		stores, backlog, members = 20, 5, 200
	)
	stdout, stderr := mustRun(t, "bench", "--json", "--database", db, "--program", program,
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
		"earn_p50_us", "earn_p99_us", "bare_commit_p50_us", "bare_commit_p99_us",
		"earn_concurrent_calls_per_s", "bare_commit_serial_per_s", "earn_serial_calls_per_s",
		"hub_ingest_deltas_per_s", "bare_batched_insert_rows_per_s", "websocket_ingest_deltas_per_s", "preload_deltas_per_s",
		"storm_deltas_per_s", "storm_seconds", "single_drain_deltas_per_s",
		"idle_conn_bytes", "bare_conn_bytes", "idle_conn_goroutines", "bare_conn_goroutines",
		"sweep_seconds", "requalify_seconds", "expire_seconds", "bare_requalify_update_seconds", "sweep_steady_seconds",
		// A year on, every member's sale has lapsed: each member with points loses them.
		"sweep_members_expired",
	} {
		if v := number(key); v <= 0 {
			t.Errorf("%s = %v, want a measured, positive figure", key, v)
		}
	}
	// birthday_seconds may round to nothing: no member may have a birthday near today.
	for key, want := range map[string]float64{
		"earns": earns, "deltas": deltas, "preload": preload, "earn_concurrent_clients": 16,
		"storm_stores": stores, "storm_backlog": backlog, "idle_conns": stores, "sweep_members": members, "program_version": 2,
	} {
		if v := number(key); v != want {
			t.Errorf("%s = %v, want %v", key, v, want)
		}
	}
	if number("birthday_seconds") < 0 || number("sweep_seconds") < number("requalify_seconds")+number("expire_seconds") {
		t.Errorf("the sweeps' parts do not add up: %v", r)
	}
	for _, p := range []string{"earn", "bare_commit"} {
		if number(p+"_p99_us") < number(p+"_p50_us") {
			t.Errorf("%s p99 %v below its p50 %v", p, r[p+"_p99_us"], r[p+"_p50_us"])
		}
	}
	// The ledger holds at least what the bench pushed before ingest was measured, and what the
	// hub applied: the preload, the bench's Hub.Push deltas and the agent's outbox, the single
	// store's drain and the storm.
	if got := number("ledger_deltas_at_ingest"); got < preload {
		t.Errorf("ledger_deltas_at_ingest = %v, want at least the preload, %d", got, preload)
	}
	sqldb, err := openHubSQL(db)
	if err != nil {
		t.Fatal(err)
	}
	n, err := countRows(context.Background(), sqldb, "deltas")
	// With members for both, the single drain and the storm go to different members: the storm
	// to the first stores × backlog, the drain to the next as many.
	if apart, _ := r["drain_members_apart"].(bool); !apart {
		t.Errorf("drain_members_apart = %v with %d members for %d storm deltas, want true", r["drain_members_apart"], members, stores*backlog)
	}
	var drainLow, drainHigh, stormHigh int
	qerr := sqldb.QueryRowContext(context.Background(), `SELECT
			(SELECT COUNT(*) FROM deltas WHERE store = 'drain' AND member < ?1),
			(SELECT COUNT(*) FROM deltas WHERE store = 'drain' AND member >= ?1),
			(SELECT COUNT(*) FROM deltas WHERE store LIKE 'storm-%' AND member >= ?1)`,
		memberID(stores*backlog)).Scan(&drainLow, &drainHigh, &stormHigh)
	if qerr != nil || drainLow != 0 || stormHigh != 0 || drainHigh != stores*backlog {
		t.Errorf("the drain's deltas: %d to the storm's members, %d to the next ones; the storm's: %d past its members (%v); want 0, %d, 0",
			drainLow, drainHigh, stormHigh, qerr, stores*backlog)
	}
	sqldb.Close()
	if want := int64(preload + 2*deltas + 2*stores*backlog); err != nil || n < want {
		t.Errorf("the kept database's ledger has %d deltas (%v), want at least %d", n, err, want)
	}
	// The database given is kept, consistent, and alone: the scratch folder beside it is gone.
	out, _ := mustRun(t, "check", "--json", "--database", db)
	var check struct {
		Members    int      `json:"members"`
		Points     int64    `json:"points"`
		Mismatches []string `json:"mismatches"`
	}
	if err := json.Unmarshal([]byte(out), &check); err != nil || check.Members != members || len(check.Mismatches) > 0 {
		t.Errorf("loyalty check on the bench's database: %s (%v)", out, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".loyalty-bench-") {
			t.Errorf("the bench left its scratch folder %s", e.Name())
		}
	}

	// A second run does not write over the database.
	if _, _, err := run(t, "bench", "--database", db, "--earns", "1"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("bench on an existing database: %v, want a refusal", err)
	}
}
