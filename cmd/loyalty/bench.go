package main

// loyalty bench: what a chain cares about, each figure beside a raw baseline measured in the same
// run. This file has the command, the report and the order of the run; bench_sqlite.go the bare
// SQLite baselines, bench_postgres.go the bench's PostgreSQL database and bare PostgreSQL
// baselines, bench_load.go the hub's data (members in bulk, the preload, bench deltas) and its
// sweeps, bench_storm.go the simulated stores (reconnect storm, idle connections).

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

func benchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure earn latency, hub ingest, a reconnect storm, idle connections and sweeps beside raw baselines on this machine",
		Long: `bench measures, in one run on this machine, each figure beside a baseline from the same run:
  - the agent's POST /v1/earn latency (p50/p99), one POS client over loopback HTTP, against a bare
    SQLite single-row commit with the same pragmas (WAL, synchronous FULL); then the calls per
    second of --earn-clients POS clients at once at one agent, against serial bare commits;
  - the hub's ingest rate of pushed deltas (Hub.Push, batches of 500: dedup, validation, balance
    update, one transaction per batch) against a bare batched INSERT ... ON CONFLICT DO NOTHING;
    --preload deltas are in the ledger first, pushed through the same apply path in batches of
    1000 and spread over every member; then the same ingest end to end, an agent draining its
    SQLite outbox over a websocket;
  - a reconnect storm: --storm-stores stores, each with --storm-backlog deltas, connect at once
    to one hub over real websockets on 127.0.0.1 and drain their backlogs, against one store
    draining the same total. Every store comes back as one that had been syncing before its
    outage: current when its link went down, it pulls from the cursor it kept. The stores are
    the real sync client (sync.Client) over an outbox kept in memory, not a SQLite file each, so
    that the storm measures the hub and the wire rather than this machine's disk writing a
    thousand replicas. Each store is a client and a
    connection in this process: 1,000 stores use about 2,000 file descriptors, and their
    backlogs with the single drain's about 1 GB of memory at the defaults (500 deltas a store);
  - the hub's memory per idle connected agent, heap and goroutine stacks: the same stores, each
    having said hello and pulled, then idle; the hub's side only (the clients' own heap, freed
    when they close, is taken off; they run no goroutines), against the server side of a bare
    gorilla websocket served as gorilla's examples do, in the same run;
  - the hub's hourly sweeps (tier requalification, points expiry, birthday points) over every
    member, as they run a year on (or the program's expiry after_days and a day, if longer):
    every sale the bench made has then left the tier window and its points have expired, so
    the sweeps have every tier above the lowest to take back and every member's points to
    expire (and the birthdays of those days to award). They run on a second
    hub on the same database whose clock is ahead; what they write is dated then. Against a
    set-based baseline at the same time: one UPDATE that requalifies every member's tier from
    the ledger (rolled back, so the hub's sweep meets the same members; it writes no tier
    deltas). The same sweeps are also timed right after the sales, when nothing has lapsed.
The hub's storage is SQLite, or PostgreSQL with --backend postgres (or a postgres:// --database):
--database then names a PostgreSQL server, on which the bench creates a database of its own,
loyalty_bench_<random>, and drops it at the end (--keep-database keeps it). The hub's ingest is
then compared with a bare multi-row INSERT ... ON CONFLICT DO NOTHING into a scratch table of that
database, and a bare PostgreSQL 1-row commit is measured too. The agents are always on SQLite,
so the earn figures keep their bare SQLite commit baseline. On SQLite the hub's write-ahead log is
checkpointed before each part of the hub is timed, so that each part pays for copying the pages
it wrote itself, not those of the part before it (the WAL holds up to 64 MiB).
Members are created in bulk (--sweep-members in all; the first 1,000 belong to the agent's store),
each with a birthday spread over the year. Without --program the hub's default program is used,
which has no tiers, no expiry and no birthday action: pass --program configs/program.yaml (and
an expiry rule) for sweeps that read the ledger. A default run takes several minutes; the sizing
flags make a quick one. Figures are reported, never asserted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			var o benchOptions
			o.Backend, _ = f.GetString("backend")
			o.Database, _ = f.GetString("database")
			o.KeepDatabase, _ = f.GetBool("keep-database")
			o.Program, _ = f.GetString("program")
			o.Earns, _ = f.GetInt("earns")
			o.EarnClients, _ = f.GetInt("earn-clients")
			o.Deltas, _ = f.GetInt("deltas")
			o.Preload, _ = f.GetInt("preload")
			o.StormStores, _ = f.GetInt("storm-stores")
			o.StormBacklog, _ = f.GetInt("storm-backlog")
			o.SweepMembers, _ = f.GetInt("sweep-members")
			if path, _ := f.GetString("cpuprofile"); path != "" {
				stop, err := startCPUProfile(path)
				if err != nil {
					return err
				}
				defer stop()
			}
			r, err := runBench(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if wantJSON(cmd) {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), r.human())
			return err
		},
	}
	f := cmd.Flags()
	f.String("backend", "", "the hub's storage: sqlite or postgres (default: postgres when --database is a postgres:// URL, else sqlite)")
	f.String("database", "", "sqlite: a new file for the hub's database, kept after the run (default: a temporary folder, removed); "+
		"postgres: the URL of the server, where the bench creates a database of its own")
	f.Bool("keep-database", false, "postgres: keep the database the bench created (its name is in the report) instead of dropping it")
	f.String("program", "", "a program file (YAML or JSON, like configs/program.yaml) published at the hub first (default: the hub's default program)")
	f.Int("earns", 2000, "earn calls to time, from one POS client and again spread over --earn-clients")
	f.Int("earn-clients", 16, "POS clients calling one agent at once")
	f.Int("deltas", 50000, "deltas to ingest through Hub.Push, and again through an agent's outbox")
	f.Int("preload", 100000, "deltas in the ledger before ingest is measured, spread over every member")
	f.Int("storm-stores", 1000, "stores in the reconnect storm, and idle connections measured")
	f.Int("storm-backlog", 500, "deltas each storm store has waiting (500: about 20 minutes of a store's sales at a 2,000-a-second chain peak spread over 5,000 stores)")
	f.Int("sweep-members", 100000, "members at the hub, created in bulk, that the sweeps go over")
	f.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof reads it)")
	jsonFlag(cmd)
	return cmd
}

// benchOptions sizes a bench run (the command's flags).
type benchOptions struct {
	Backend      string // sqlite or postgres; "": postgres for a postgres:// Database, else sqlite
	Database     string // sqlite: the new file ("": a temporary folder); postgres: the server's URL
	KeepDatabase bool   // postgres: keep the database the bench created
	Program      string // "": the hub's default program
	Earns        int
	EarnClients  int
	Deltas       int
	Preload      int
	StormStores  int
	StormBacklog int
	SweepMembers int
}

// validate checks o, and sets Backend when it was left to --database.
func (o *benchOptions) validate() error {
	if o.Backend == "" {
		o.Backend = "sqlite"
		if isPostgresURL(o.Database) {
			o.Backend = "postgres"
		}
	}
	switch o.Backend {
	case "sqlite":
		if isPostgresURL(o.Database) {
			return loyalty.Errorf(loyalty.EINVALID, "--backend sqlite with a PostgreSQL --database (%s): give a file path, or use --backend postgres", databaseName(o.Database))
		}
		if o.KeepDatabase {
			return loyalty.Errorf(loyalty.EINVALID, "--keep-database is for --backend postgres; on sqlite, --database PATH keeps the hub's database")
		}
	case "postgres":
		if !isPostgresURL(o.Database) {
			return loyalty.Errorf(loyalty.EINVALID, "--backend postgres needs --database with the URL of a PostgreSQL server the bench may create a database on, "+
				"such as postgres://postgres@127.0.0.1:5432/postgres (got %q)", databaseName(o.Database))
		}
		if err := checkDatabaseForm(o.Database); err != nil {
			return loyalty.Errorf(loyalty.EINVALID, "--database: %v", err)
		}
	default:
		return loyalty.Errorf(loyalty.EINVALID, "--backend %q: the hub's storage is sqlite or postgres", o.Backend)
	}
	for _, s := range []struct {
		flag string
		n    int
	}{{"earns", o.Earns}, {"earn-clients", o.EarnClients}, {"deltas", o.Deltas}, {"storm-stores", o.StormStores},
		{"storm-backlog", o.StormBacklog}, {"sweep-members", o.SweepMembers}} {
		if s.n < 1 {
			return loyalty.Errorf(loyalty.EINVALID, "--%s must be at least 1", s.flag)
		}
	}
	if o.Preload < 0 {
		return loyalty.Errorf(loyalty.EINVALID, "--preload cannot be negative")
	}
	return nil
}

// BenchResult holds the figures of one bench run. Rates are per second, latencies in
// microseconds. The fields before Backend were the first report's; docs/PERFORMANCE.md cites them.
// The bare commit is always SQLite's, the agents' engine; the bare batched insert is the hub's
// backend's.
type BenchResult struct {
	Earns            int     `json:"earns"`
	EarnP50US        float64 `json:"earn_p50_us"`
	EarnP99US        float64 `json:"earn_p99_us"`
	BareCommitP50US  float64 `json:"bare_commit_p50_us"`
	BareCommitP99US  float64 `json:"bare_commit_p99_us"`
	Deltas           int     `json:"deltas"`
	HubIngestPerSec  float64 `json:"hub_ingest_deltas_per_s"`
	BareInsertPerSec float64 `json:"bare_batched_insert_rows_per_s"`
	WireIngestPerSec float64 `json:"websocket_ingest_deltas_per_s"`
	BatchSize        int     `json:"batch_size"`
	Machine          string  `json:"machine"`

	Backend        string `json:"backend"`
	Program        string `json:"program"` // the file given, or "default"
	ProgramVersion int64  `json:"program_version"`

	// On PostgreSQL (backend postgres): the database the bench created, dropped at the end unless
	// kept; and a bare 1-row commit into a scratch table of it, one after the other, beside the
	// bare SQLite commit above (the agents' engine). bare_batched_insert_rows_per_s is then a
	// bare multi-row upsert into that database.
	PostgresDatabase           string  `json:"postgres_database,omitempty"`
	PostgresDatabaseKept       bool    `json:"postgres_database_kept,omitempty"`
	PostgresCommitP50US        float64 `json:"postgres_bare_commit_p50_us,omitempty"`
	PostgresCommitP99US        float64 `json:"postgres_bare_commit_p99_us,omitempty"`
	PostgresCommitSerialPerSec float64 `json:"postgres_bare_commit_serial_per_s,omitempty"`

	// One POS client's calls per second, and several clients' at once.
	EarnSerialPerSec       float64 `json:"earn_serial_calls_per_s"`
	BareCommitSerialPerSec float64 `json:"bare_commit_serial_per_s"`
	EarnConcurrentClients  int     `json:"earn_concurrent_clients"`
	EarnConcurrentPerSec   float64 `json:"earn_concurrent_calls_per_s"`

	Preload        int     `json:"preload"`
	PreloadPerSec  float64 `json:"preload_deltas_per_s"`
	LedgerAtIngest int64   `json:"ledger_deltas_at_ingest"` // deltas in the ledger when Hub.Push ingest began

	StormStores       int     `json:"storm_stores"`
	StormBacklog      int     `json:"storm_backlog"` // deltas per store
	StormDeltasPerSec float64 `json:"storm_deltas_per_s"`
	StormSeconds      float64 `json:"storm_seconds"` // from the first dial to the last store's outbox empty
	SingleDrainPerSec float64 `json:"single_drain_deltas_per_s"`
	// Whether the single drain's deltas went to other members than the storm's (there were at
	// least twice storm_stores × storm_backlog members); if not, both went to the same ones.
	DrainMembersApart bool `json:"drain_members_apart"`

	IdleConns     int   `json:"idle_conns"`
	IdleConnBytes int64 `json:"idle_conn_bytes"` // the hub's side of one idle agent session
	BareConnBytes int64 `json:"bare_conn_bytes"` // the server side of one bare gorilla websocket
	// Goroutines per connection, in the same measurements.
	IdleConnGoroutines float64 `json:"idle_conn_goroutines"`
	BareConnGoroutines float64 `json:"bare_conn_goroutines"`

	SweepMembers int `json:"sweep_members"` // members at the hub when the sweeps ran
	// The hourly sweeps as they run SweepDaysAhead days after the bench's sales, when every
	// member's points and tier window have lapsed: SweepSeconds is the three sweeps' time, the
	// next three each one's, and the counts after them what they did.
	SweepDaysAhead   int     `json:"sweep_days_ahead"`
	SweepSeconds     float64 `json:"sweep_seconds"`
	RequalifySeconds float64 `json:"requalify_seconds"`
	ExpireSeconds    float64 `json:"expire_seconds"`
	BirthdaySeconds  float64 `json:"birthday_seconds"`
	TiersChanged     int     `json:"sweep_tiers_changed"`
	MembersExpired   int     `json:"sweep_members_expired"`
	BirthdaysAwarded int     `json:"sweep_birthdays_awarded"`
	// The set-based baseline of requalification at the same time: one UPDATE over the members
	// table recomputing every tier.
	BareRequalifySeconds float64 `json:"bare_requalify_update_seconds"`
	// The same sweeps run right after the bench's sales, when nothing has lapsed.
	SweepSteadySeconds float64 `json:"sweep_steady_seconds"`
}

// benchMembers is how many members belong to the agent's store: the earn calls and the Hub.Push
// ingest go to them, and the agent syncs them before it is timed.
const benchMembers = 1000

// runBench runs every part in order, saying what it does on progress. The parts share one hub,
// so each later part meets the ledger the earlier ones left.
func runBench(ctx context.Context, o benchOptions, progress io.Writer) (r BenchResult, err error) {
	if err := o.validate(); err != nil {
		return r, err
	}
	say := func(format string, args ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", args...) }
	r = BenchResult{Backend: o.Backend, Earns: o.Earns, Deltas: o.Deltas, BatchSize: 500, Machine: machine(),
		EarnConcurrentClients: o.EarnClients, Preload: o.Preload, StormStores: o.StormStores, StormBacklog: o.StormBacklog,
		IdleConns: o.StormStores, Program: cmp.Or(o.Program, "default")}

	var program *loyalty.Program
	if o.Program != "" {
		p, err := readProgram(o.Program)
		if err != nil {
			return r, err
		}
		program = &p
	}
	// The hub's database, and beside it (on the same file system, so the baselines write to the
	// same disk) a scratch folder for the baselines and the agents, removed at the end. On
	// PostgreSQL, a database of the bench's own on the server, and a temporary scratch folder.
	database := o.Database
	postgres := o.Backend == "postgres"
	var scratch string
	if postgres {
		var drop func() error
		if database, drop, err = createBenchDatabase(ctx, o.Database); err != nil {
			return r, err
		}
		r.PostgresDatabase, r.PostgresDatabaseKept = postgresDatabaseName(database), o.KeepDatabase
		if o.KeepDatabase {
			say("the hub's database is %s, kept after the run", databaseName(database))
		} else {
			say("the hub's database is %s, dropped at the end", databaseName(database))
			defer func() {
				if derr := drop(); derr != nil && err == nil {
					err = derr
				}
			}()
		}
		if scratch, err = os.MkdirTemp("", "loyalty-bench-"); err != nil {
			return r, err
		}
	} else if database == "" {
		if scratch, err = os.MkdirTemp("", "loyalty-bench-"); err != nil {
			return r, err
		}
		database = filepath.Join(scratch, "hub.db")
	} else {
		if err := sqlitedb.CheckFolder(database); err != nil {
			return r, err
		}
		if _, err := os.Stat(database); !errors.Is(err, fs.ErrNotExist) {
			return r, loyalty.Errorf(loyalty.EINVALID, "--database %s exists: the bench makes a new hub database; name a file that does not exist", database)
		}
		if scratch, err = os.MkdirTemp(filepath.Dir(database), ".loyalty-bench-"); err != nil {
			return r, err
		}
	}
	defer os.RemoveAll(scratch)
	quiet := slog.New(slog.DiscardHandler)

	say("bare SQLite baselines in %s", scratch)
	if err := bareBaselines(ctx, scratch, o, !postgres, &r); err != nil {
		return r, err
	}
	if postgres {
		say("bare PostgreSQL baselines in %s", databaseName(database))
		if err := barePostgresBaselines(ctx, database, o, &r); err != nil {
			return r, err
		}
	}

	hc := DefaultHubConfig()
	hc.Listen, hc.Database, hc.AdminAPIKey = "127.0.0.1:0", database, rand.Text()
	if postgres {
		// No file beside the database for the key-encryption key: one for this run only. A kept
		// database opens without it, for everything but signing.
		hc.Keys.KEK = seal.Generate()
	}
	// Room for every storm store at once, as an operator sizing a hub for the chain would set it.
	hc.HTTP.MaxSyncSessions = max(hc.HTTP.MaxSyncSessions, o.StormStores+100)
	hc.HTTP.MaxConnections = max(hc.HTTP.MaxConnections, hc.HTTP.MaxSyncSessions+1000)
	hm := &HubMain{Config: hc, Logger: quiet}
	if err := hm.Open(ctx); err != nil {
		return r, err
	}
	defer hm.Close()
	h := hm.Hub
	if program != nil {
		if _, err := h.SetProgram(ctx, *program); err != nil {
			return r, fmt.Errorf("--program %s: %w", o.Program, err)
		}
	}
	p, err := h.Program(ctx)
	if err != nil {
		return r, err
	}
	r.ProgramVersion = p.Version
	tokens := map[string]string{}
	for _, id := range []string{"bench", "bench2", "preload", "drain"} {
		if _, tokens[id], err = h.CreateStore(ctx, id, ""); err != nil {
			return r, err
		}
	}
	storm := make([]stormStore, o.StormStores)
	say("registering %d storm stores", o.StormStores)
	for i := range storm {
		storm[i].id = fmt.Sprintf("storm-%05d", i)
		if _, storm[i].token, err = h.CreateStore(ctx, storm[i].id, ""); err != nil {
			return r, err
		}
	}
	say("creating %d members in bulk", o.SweepMembers)
	if err := createMembers(ctx, hm.Store, &p, o.SweepMembers, "bench", min(benchMembers, o.SweepMembers)); err != nil {
		return r, err
	}
	if a, ok := hm.Store.(hub.Analyzer); ok { // as an import of as many members does
		if err := a.Analyze(ctx); err != nil {
			return r, err
		}
	}
	if o.Preload > 0 {
		say("preloading %d deltas through the hub's apply path", o.Preload)
		t0 := time.Now()
		if err := preload(ctx, h, &p, "preload", o.Preload, o.SweepMembers); err != nil {
			return r, err
		}
		r.PreloadPerSec = float64(o.Preload) / time.Since(t0).Seconds()
	}

	say("earn calls through an agent's POS API")
	if err := benchAgent(ctx, hm, &p, tokens, scratch, o, quiet, &r); err != nil {
		return r, err
	}

	say("the hub's memory per idle connected agent (%d agents), and per bare websocket", o.StormStores)
	if r.IdleConnBytes, r.IdleConnGoroutines, err = idleConnBytes(ctx, hc, storm, quiet); err != nil {
		return r, err
	}
	if r.BareConnBytes, r.BareConnGoroutines, err = bareConnBytes(ctx, o.StormStores); err != nil {
		return r, err
	}

	total := o.StormStores * o.StormBacklog
	say("one store draining %d deltas over a websocket", total)
	members := o.SweepMembers
	// The storm's deltas go to members 0 to total-1 and, where there are members enough, the
	// single drain's to the next total members, so that each part meets its members as the
	// preload left them. On the same members, every storm delta would also rewrite the scope row
	// the drain gave its member a moment before: work the drain never had to do.
	drainFrom := 0
	if members >= 2*total {
		drainFrom = total
	}
	r.DrainMembersApart = drainFrom > 0
	// Every store, the drain's and the storm's, comes back as a store that was syncing before
	// its outage: current with the hub when its link went down (syncedBefore), it pulls from its
	// own cursor, not from 0, and the program it already has is not sent again.
	drain := stormStore{id: "drain", token: tokens["drain"]}
	cursor, err := syncedBefore(ctx, h, drain.id)
	if err != nil {
		return r, err
	}
	now := time.Now()
	drain.outbox = newMemOutbox(total, func(i int) loyalty.Delta {
		return earnDelta(&p, drain.id, memberID((drainFrom+i)%members), int64(100+i%5000), fmt.Sprint("d", i), now)
	})
	drain.outbox.cursor = cursor
	if err := settle(ctx, hm); err != nil {
		return r, err
	}
	elapsed, err := drainStores(ctx, hm, []stormStore{drain}, quiet)
	if err != nil {
		return r, err
	}
	r.SingleDrainPerSec = float64(total) / elapsed.Seconds()

	say("reconnect storm: %d stores with %d deltas each", o.StormStores, o.StormBacklog)
	cursors := make([]int64, len(storm))
	for s := range storm {
		if cursors[s], err = syncedBefore(ctx, h, storm[s].id); err != nil {
			return r, err
		}
	}
	now = time.Now() // the storm's sales, made during the outage, after the stores' last sync
	for s := range storm {
		storm[s].outbox = newMemOutbox(o.StormBacklog, func(i int) loyalty.Delta {
			k := s*o.StormBacklog + i
			return earnDelta(&p, storm[s].id, memberID(k%members), int64(100+k%5000), fmt.Sprint("s", i), now)
		})
		storm[s].outbox.cursor = cursors[s]
	}
	if err := settle(ctx, hm); err != nil {
		return r, err
	}
	if elapsed, err = drainStores(ctx, hm, storm, quiet); err != nil {
		return r, err
	}
	r.StormSeconds = elapsed.Seconds()
	r.StormDeltasPerSec = float64(total) / elapsed.Seconds()

	say("the hub's sweeps over every member, and a set-based baseline")
	if err := benchSweeps(ctx, hm, &p, &r); err != nil {
		return r, err
	}

	// Every bench delta was applied: a rejected one would also have left its outbox, and made
	// the figures about rejections.
	if rs, err := h.Rejections(ctx, 1); err != nil || len(rs) > 0 {
		return r, fmt.Errorf("the hub rejected bench deltas (%v): %+v", err, rs)
	}
	return r, nil
}

// settle checkpoints the hub's SQLite WAL before a part the bench times (hub.Checkpointer):
// otherwise a part's first commits pay for copying the pages the part before it wrote, up to
// 64 MiB of them. PostgreSQL checkpoints in the background, on its own schedule. A checkpoint
// that readers kept from finishing is reported and the bench goes on: the part then pays for
// what was left, as a hub would.
func settle(ctx context.Context, hm *HubMain) error {
	s, ok := hm.Store.(hub.Checkpointer)
	if !ok {
		return nil
	}
	if err := s.Checkpoint(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	}
	return ctx.Err()
}

// benchAgent times earn calls at an agent of store bench (one POS client, then several), then
// the hub's ingest through Hub.Push, then the same ingest as a second agent's outbox drain. Both
// agents are closed when it returns, so the later parts meet a quiet hub.
func benchAgent(ctx context.Context, hm *HubMain, p *loyalty.Program, tokens map[string]string, dir string, o benchOptions,
	quiet *slog.Logger, r *BenchResult) error {
	h := hm.Hub
	ac := DefaultAgentConfig()
	ac.StoreID, ac.Token, ac.Listen, ac.Database = "bench", tokens["bench"], "127.0.0.1:0", filepath.Join(dir, "agent.db")
	ac.HubURL = "ws://" + hm.HTTP.ListenAddr() + "/v1/sync"
	am := &AgentMain{Config: ac, Logger: quiet}
	if err := am.Open(ctx); err != nil {
		return err
	}
	defer am.Close()
	members := min(benchMembers, o.SweepMembers)
	if err := waitFor(ctx, 5*time.Minute, func() (bool, string) {
		st, err := am.Agent.Status(ctx)
		return err == nil && st.Online && st.Members == int64(members), "the agent's first sync"
	}); err != nil {
		return err
	}

	// Earn latency through the POS API, one client.
	url := am.HTTP.URL() + "/v1/earn"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.EarnClients}}
	defer client.CloseIdleConnections()
	currency := cmp.Or(p.Currency, "EUR")
	earn := func(order string, i int) (time.Duration, error) {
		body, _ := json.Marshal(loyalty.EarnRequest{OrderID: order, MemberID: memberID(i % members), Amount: 1299, Currency: currency})
		t0 := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("earn: HTTP %d: %s", resp.StatusCode, answer)
		}
		return took, nil
	}
	lat := make([]time.Duration, 0, o.Earns)
	t0 := time.Now()
	for i := range o.Earns {
		took, err := earn(fmt.Sprint("o", i), i)
		if err != nil {
			return err
		}
		lat = append(lat, took)
	}
	r.EarnSerialPerSec = float64(o.Earns) / time.Since(t0).Seconds()
	r.EarnP50US, r.EarnP99US = percentile(lat, .5), percentile(lat, .99)

	// The same number of calls from several POS clients at once.
	calls := max(o.Earns, o.EarnClients)
	var wg sync.WaitGroup
	errs := make(chan error, o.EarnClients)
	t0 = time.Now()
	for c := range o.EarnClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < calls; i += o.EarnClients {
				if _, err := earn(fmt.Sprint("c", i), i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	r.EarnConcurrentPerSec = float64(calls) / time.Since(t0).Seconds()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}

	// Hub ingest, straight into Hub.Push, after the preload.
	db, err := openHubSQL(hm.Config.Database)
	if err != nil {
		return err
	}
	r.LedgerAtIngest, err = countRows(ctx, db, "deltas")
	db.Close()
	if err != nil {
		return err
	}
	now := time.Now()
	mk := func(store, prefix string) func(int) loyalty.Delta {
		return func(i int) loyalty.Delta {
			return earnDelta(p, store, memberID(i%members), int64(100+i%5000), fmt.Sprint(prefix, i), now)
		}
	}
	if err := settle(ctx, hm); err != nil {
		return err
	}
	t0 = time.Now()
	if err := pushAll(ctx, h, "bench", o.Deltas, r.BatchSize, mk("bench", "i")); err != nil {
		return err
	}
	r.HubIngestPerSec = float64(o.Deltas) / time.Since(t0).Seconds()

	// Ingest over the wire: fill a second agent's outbox offline, then time the drain.
	if err := pullOnce(ctx, h, "bench2"); err != nil { // the hub accepts only rule versions it sent the store
		return err
	}
	ac2 := ac
	ac2.StoreID, ac2.Token, ac2.Database = "bench2", tokens["bench2"], filepath.Join(dir, "agent2.db")
	ac2.HubURL = "ws://127.0.0.1:1/v1/sync" // unreachable while the outbox fills
	a2 := &AgentMain{Config: ac2, Logger: quiet}
	if err := a2.Open(ctx); err != nil {
		return err
	}
	make2 := mk("bench2", "w")
	for i := 0; i < o.Deltas; i += r.BatchSize {
		err := a2.Store.Update(ctx, func(tx agentTx) error {
			for j := i; j < min(i+r.BatchSize, o.Deltas); j++ {
				if err := tx.InsertDelta(ctx, make2(j), now, nil, true); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			a2.Close()
			return err
		}
	}
	a2.Close()
	ac2.HubURL = ac.HubURL
	a2 = &AgentMain{Config: ac2, Logger: quiet}
	if err := settle(ctx, hm); err != nil {
		return err
	}
	t0 = time.Now()
	if err := a2.Open(ctx); err != nil {
		return err
	}
	defer a2.Close()
	if err := waitFor(ctx, 10*time.Minute, func() (bool, string) {
		n, err := a2.Store.PendingCount(ctx)
		return err == nil && n == 0, "the agent's outbox drain"
	}); err != nil {
		return err
	}
	r.WireIngestPerSec = float64(o.Deltas) / time.Since(t0).Seconds()
	return nil
}

// startCPUProfile profiles this process's CPU into path until the returned function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func percentile(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return float64(s[i].Nanoseconds()) / 1000
}

// human is the report for people: each figure, its baseline from the same run, and how the two
// compare.
func (r BenchResult) human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "loyalty bench: %s backend, program %s (version %d), %s\n\n", r.Backend, r.Program, r.ProgramVersion, r.Machine)
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "WHAT\tFIGURE\tBASELINE IN THE SAME RUN\t\tRATIO")
	row := func(what, fig, base, baseFig, ratio string) {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", what, fig, base, baseFig, ratio)
	}
	us := func(v float64) string { return fmt.Sprintf("%.0f µs", v) }
	rate := func(v float64, unit string) string { return fmt.Sprintf("%.0f %s/s", v, unit) }
	commit, upsert := "bare 1-row commit", "bare batched INSERT ON CONFLICT"
	if r.Backend == "postgres" {
		commit, upsert = "bare SQLite 1-row commit", fmt.Sprintf("bare multi-row INSERT ON CONFLICT x%d", r.BatchSize)
	}
	row(fmt.Sprintf("earn call p50, 1 POS client (%d calls)", r.Earns), us(r.EarnP50US), commit+" p50", us(r.BareCommitP50US), slower(r.EarnP50US, r.BareCommitP50US))
	row("earn call p99", us(r.EarnP99US), commit+" p99", us(r.BareCommitP99US), slower(r.EarnP99US, r.BareCommitP99US))
	row("earn calls, 1 POS client", rate(r.EarnSerialPerSec, "calls"), "bare commits, serial", rate(r.BareCommitSerialPerSec, "commits"), fewer(r.EarnSerialPerSec, r.BareCommitSerialPerSec))
	row(fmt.Sprintf("earn calls, %d POS clients at once", r.EarnConcurrentClients), rate(r.EarnConcurrentPerSec, "calls"), "bare commits, serial", rate(r.BareCommitSerialPerSec, "commits"), fewer(r.EarnConcurrentPerSec, r.BareCommitSerialPerSec))
	if r.Backend == "postgres" {
		row("PostgreSQL bare 1-row commit p50", us(r.PostgresCommitP50US), "bare SQLite 1-row commit p50", us(r.BareCommitP50US), slower(r.PostgresCommitP50US, r.BareCommitP50US))
		row("PostgreSQL bare 1-row commit p99", us(r.PostgresCommitP99US), "bare SQLite 1-row commit p99", us(r.BareCommitP99US), slower(r.PostgresCommitP99US, r.BareCommitP99US))
		row("PostgreSQL bare commits, serial", rate(r.PostgresCommitSerialPerSec, "commits"), "bare SQLite commits, serial", rate(r.BareCommitSerialPerSec, "commits"), fewer(r.PostgresCommitSerialPerSec, r.BareCommitSerialPerSec))
	}
	row(fmt.Sprintf("hub ingest, Hub.Push x%d (%d deltas onto a ledger of %d)", r.BatchSize, r.Deltas, r.LedgerAtIngest), rate(r.HubIngestPerSec, "deltas"), upsert, rate(r.BareInsertPerSec, "rows"), fewer(r.HubIngestPerSec, r.BareInsertPerSec))
	row("hub ingest, agent outbox over a websocket", rate(r.WireIngestPerSec, "deltas"), upsert, rate(r.BareInsertPerSec, "rows"), fewer(r.WireIngestPerSec, r.BareInsertPerSec))
	if r.Preload > 0 {
		row(fmt.Sprintf("preload, Hub.Push x1000 (%d deltas)", r.Preload), rate(r.PreloadPerSec, "deltas"), upsert, rate(r.BareInsertPerSec, "rows"), fewer(r.PreloadPerSec, r.BareInsertPerSec))
	}
	row(fmt.Sprintf("reconnect storm, %d stores x %d deltas", r.StormStores, r.StormBacklog), rate(r.StormDeltasPerSec, "deltas"), "1 store draining as many", rate(r.SingleDrainPerSec, "deltas"), fewer(r.StormDeltasPerSec, r.SingleDrainPerSec))
	row(fmt.Sprintf("hub memory per idle agent (%d connected; goroutines each: %.2g)", r.IdleConns, r.IdleConnGoroutines), kib(r.IdleConnBytes),
		fmt.Sprintf("bare websocket, server side (goroutines each: %.2g)", r.BareConnGoroutines), kib(r.BareConnBytes), slower(float64(r.IdleConnBytes), float64(r.BareConnBytes)))
	row(fmt.Sprintf("tier requalification, %d members, %d days on", r.SweepMembers, r.SweepDaysAhead), secs(r.RequalifySeconds), "one set-based UPDATE", secs(r.BareRequalifySeconds), slower(r.RequalifySeconds, r.BareRequalifySeconds))
	row(fmt.Sprintf("hourly sweeps, %d days on (tiers, expiry, birthdays)", r.SweepDaysAhead), secs(r.SweepSeconds), "", "", "")
	row("hourly sweeps, now (nothing has lapsed)", secs(r.SweepSteadySeconds), "", "", "")
	w.Flush()
	fmt.Fprintf(&b, "\nSweeps %d days on: requalify %s (%d tiers changed), expire points %s (%d members lost points), birthdays %s (%d awarded).\n",
		r.SweepDaysAhead, secs(r.RequalifySeconds), r.TiersChanged, secs(r.ExpireSeconds), r.MembersExpired, secs(r.BirthdaySeconds), r.BirthdaysAwarded)
	fmt.Fprintf(&b, "The reconnect storm took %s from the first dial to the last outbox empty.\n", secs(r.StormSeconds))
	if r.PostgresDatabase != "" {
		kept := "dropped at the end"
		if r.PostgresDatabaseKept {
			kept = "kept"
		}
		fmt.Fprintf(&b, "The hub's PostgreSQL database was %s (%s).\n", r.PostgresDatabase, kept)
	}
	return b.String()
}

// slower compares a cost with its baseline's: 5.6x is 5.6 times the baseline's, 1/3.0 a third.
func slower(fig, base float64) string {
	if fig <= 0 || base <= 0 {
		return "-"
	}
	if fig < base {
		return fmt.Sprintf("1/%.1f", base/fig)
	}
	return fmt.Sprintf("%.1fx", fig/base)
}

// fewer compares a rate with its baseline's: 1/14.2 is a fourteenth of the baseline's rate.
func fewer(fig, base float64) string {
	if fig <= 0 || base <= 0 {
		return "-"
	}
	if fig >= base {
		return fmt.Sprintf("%.1fx", fig/base)
	}
	return fmt.Sprintf("1/%.1f", base/fig)
}

func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/1024) }

func secs(s float64) string {
	switch {
	case s >= 1:
		return fmt.Sprintf("%.1f s", s)
	case s >= 0.01:
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f ms", s*1000)
}
