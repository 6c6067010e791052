package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

func benchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure earn latency and hub ingest beside raw SQLite baselines on this machine",
		Long: `bench measures, in one run on this machine:
  - the agent's POST /v1/earn latency (p50/p99) over loopback HTTP, against a bare SQLite
    single-row commit with the same pragmas (WAL, synchronous FULL);
  - the hub's ingest rate of pushed deltas (dedup, validation, balance update, one transaction per
    batch) against a bare batched INSERT ... ON CONFLICT DO NOTHING into SQLite;
  - the same ingest end to end: an agent draining a full outbox to the hub over a websocket.
Figures are reported, never asserted.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			earns, _ := cmd.Flags().GetInt("earns")
			deltas, _ := cmd.Flags().GetInt("deltas")
			asJSON, _ := cmd.Flags().GetBool("json")
			r, err := runBench(cmd.Context(), earns, deltas)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(r)
			}
			fmt.Print(r.human())
			return nil
		},
	}
	cmd.Flags().Int("earns", 2000, "earn calls to time")
	cmd.Flags().Int("deltas", 50000, "deltas to ingest")
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}

// BenchResult holds the figures of one bench run.
type BenchResult struct {
	Earns             int     `json:"earns"`
	EarnP50US         float64 `json:"earn_p50_us"`
	EarnP99US         float64 `json:"earn_p99_us"`
	BareCommitP50US   float64 `json:"bare_commit_p50_us"`
	BareCommitP99US   float64 `json:"bare_commit_p99_us"`
	Deltas            int     `json:"deltas"`
	HubIngestPerSec   float64 `json:"hub_ingest_deltas_per_s"`
	BareInsertPerSec  float64 `json:"bare_batched_insert_rows_per_s"`
	WireIngestPerSec  float64 `json:"websocket_ingest_deltas_per_s"`
	BatchSize         int     `json:"batch_size"`
	GoMaxProcsMachine string  `json:"machine"`
}

func (r BenchResult) human() string {
	return fmt.Sprintf(`Earn call (POS API, loopback HTTP, agent online)   p50 %7.0f µs   p99 %7.0f µs   (%d calls)
  baseline: bare SQLite WAL+FULL 1-row commit      p50 %7.0f µs   p99 %7.0f µs
Hub ingest (Hub.Push, batches of %d)              %9.0f deltas/s  (%d deltas)
  baseline: bare batched INSERT ON CONFLICT         %9.0f rows/s
Hub ingest over websocket (agent outbox drain)      %9.0f deltas/s
Machine: %s
`, r.EarnP50US, r.EarnP99US, r.Earns, r.BareCommitP50US, r.BareCommitP99US, r.BatchSize, r.HubIngestPerSec, r.Deltas,
		r.BareInsertPerSec, r.WireIngestPerSec, r.GoMaxProcsMachine)
}

func percentile(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return float64(s[i].Nanoseconds()) / 1000
}

func runBench(ctx context.Context, earns, deltas int) (BenchResult, error) {
	r := BenchResult{Earns: earns, Deltas: deltas, BatchSize: 500, GoMaxProcsMachine: machine()}
	dir, err := os.MkdirTemp("", "loyalty-bench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Baseline 1: bare single-row commits.
	bare, err := sqlitedb.Open(ctx, filepath.Join(dir, "bare.db"), os.DirFS(dir))
	if err != nil {
		return r, err
	}
	defer bare.Close()
	if _, err := bare.W.ExecContext(ctx, `CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT NOT NULL)`); err != nil {
		return r, err
	}
	lat := make([]time.Duration, 0, earns)
	for i := range earns {
		t0 := time.Now()
		if _, err := bare.W.ExecContext(ctx, `INSERT INTO t (id, body) VALUES (?, ?)`, fmt.Sprint("c", i), "x"); err != nil {
			return r, err
		}
		lat = append(lat, time.Since(t0))
	}
	r.BareCommitP50US, r.BareCommitP99US = percentile(lat, .5), percentile(lat, .99)

	// Baseline 2: bare batched inserts with dedup.
	t0 := time.Now()
	for i := 0; i < deltas; i += r.BatchSize {
		err := bare.Update(ctx, func(tx *sqlitedb.Tx) error {
			for j := i; j < min(i+r.BatchSize, deltas); j++ {
				if _, err := tx.ExecContext(ctx, `INSERT INTO t (id, body) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`,
					fmt.Sprint("b", j), `{"kind":"earn","points":12}`); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return r, err
		}
	}
	r.BareInsertPerSec = float64(deltas) / time.Since(t0).Seconds()

	// The real system: a hub and one agent.
	hc := DefaultHubConfig()
	hc.Listen, hc.Database, hc.AdminAPIKey = "127.0.0.1:0", filepath.Join(dir, "hub.db"), rand.Text()
	hm := &HubMain{Config: hc, Logger: quiet}
	if err := hm.Open(ctx); err != nil {
		return r, err
	}
	defer hm.Close()
	h := hm.Hub
	_, token, err := h.CreateStore(ctx, "bench", "")
	if err != nil {
		return r, err
	}
	const members = 1000
	for i := range members {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("m%04d", i), HomeStore: "bench"}); err != nil {
			return r, err
		}
	}
	ac := DefaultAgentConfig()
	ac.StoreID, ac.Token, ac.Listen, ac.Database = "bench", token, "127.0.0.1:0", filepath.Join(dir, "agent.db")
	ac.HubURL = "ws://" + hm.HTTP.ListenAddr() + "/v1/sync"
	am := &AgentMain{Config: ac, Logger: quiet}
	if err := am.Open(ctx); err != nil {
		return r, err
	}
	defer am.Close()
	if err := waitFor(ctx, 20*time.Second, func() (bool, string) {
		st, err := am.Agent.Status(ctx)
		return err == nil && st.Online && st.Members == members, "agent sync"
	}); err != nil {
		return r, err
	}

	// Earn latency through the POS API.
	url := am.HTTP.URL() + "/v1/earn"
	client := &http.Client{}
	lat = lat[:0]
	for i := range earns {
		body, _ := json.Marshal(loyalty.EarnRequest{OrderID: fmt.Sprint("o", i), MemberID: fmt.Sprintf("m%04d", i%members), Amount: 1299, Currency: "EUR"})
		t0 := time.Now()
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return r, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if resp.StatusCode != http.StatusOK {
			return r, fmt.Errorf("earn: HTTP %d", resp.StatusCode)
		}
	}
	r.EarnP50US, r.EarnP99US = percentile(lat, .5), percentile(lat, .99)

	// Hub ingest, straight into Hub.Push.
	p, err := h.Program(ctx)
	if err != nil {
		return r, err
	}
	now := time.Now()
	mk := func(i int, store string) loyalty.Delta {
		amount := int64(100 + i%5000)
		pts, _ := p.EarnPoints(amount, "EUR")
		return loyalty.Delta{ID: loyalty.NewDeltaID(), Store: store, Member: fmt.Sprintf("m%04d", i%members), Kind: loyalty.KindEarn,
			Points: pts, Amount: amount, Currency: "EUR", OrderID: fmt.Sprint("i", i), RuleVersion: p.Version, OccurredAt: now}
	}
	batch := make([]loyalty.Delta, 0, r.BatchSize)
	t0 = time.Now()
	for i := range deltas {
		batch = append(batch, mk(i, "bench"))
		if len(batch) == r.BatchSize || i == deltas-1 {
			if _, err := h.Push(ctx, "bench", batch); err != nil {
				return r, err
			}
			batch = batch[:0]
		}
	}
	r.HubIngestPerSec = float64(deltas) / time.Since(t0).Seconds()

	// Ingest over the wire: fill a second agent's outbox offline, then time the drain.
	_, token2, err := h.CreateStore(ctx, "bench2", "")
	if err != nil {
		return r, err
	}
	// The store synced once before it went offline: the hub accepts only rule versions it sent it.
	for cursor, more := int64(0), true; more; {
		ch, err := h.Pull(ctx, "bench2", lsync.Pull{Cursor: cursor, Limit: 500})
		if err != nil {
			return r, err
		}
		cursor, more = ch.Cursor, ch.More
	}
	ac2 := ac
	ac2.StoreID, ac2.Token, ac2.Database = "bench2", token2, filepath.Join(dir, "agent2.db")
	ac2.HubURL = "ws://127.0.0.1:1/v1/sync" // unreachable while we fill the outbox
	a2 := &AgentMain{Config: ac2, Logger: quiet}
	if err := a2.Open(ctx); err != nil {
		return r, err
	}
	for i := 0; i < deltas; i += r.BatchSize {
		err := a2.Store.Update(ctx, func(tx agentTx) error {
			for j := i; j < min(i+r.BatchSize, deltas); j++ {
				if err := tx.InsertDelta(ctx, mk(j, "bench2"), now, nil, true); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return r, err
		}
	}
	a2.Close()
	ac2.HubURL = ac.HubURL
	a2 = &AgentMain{Config: ac2, Logger: quiet}
	t0 = time.Now()
	if err := a2.Open(ctx); err != nil {
		return r, err
	}
	defer a2.Close()
	if err := waitFor(ctx, 5*time.Minute, func() (bool, string) {
		n, err := a2.Store.PendingCount(ctx)
		return err == nil && n == 0, "outbox drain"
	}); err != nil {
		return r, err
	}
	r.WireIngestPerSec = float64(deltas) / time.Since(t0).Seconds()
	// Every delta of both ingests was applied: a rejected one leaves the outbox too.
	if rs, err := h.Rejections(ctx, 1); err != nil || len(rs) > 0 {
		return r, fmt.Errorf("the hub rejected bench deltas (%v): %+v", err, rs)
	}
	return r, nil
}
