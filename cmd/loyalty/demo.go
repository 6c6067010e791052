package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/faultnet"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

func demoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a hub and two store agents through an outage, a crash mid-sync and a hub restart",
		Long: `demo tells the story of a bad day at a small chain, with the real software: head office (the
hub) and two stores, Main Street and Station Road (store agents), run in this process on a
temporary directory, with real SQLite files and real websockets on 127.0.0.1.

Customers shop at both stores and swap points for free coffees. Station Road loses its internet
line and keeps serving customers; Main Street's loyalty computer crashes while sending its sales;
head office's server restarts; Station Road comes back online. The demo then checks that no sale
was lost, none was counted twice, every store shows the same balances as head office and the
free-coffee budget was kept, says so in plain words, and exits non-zero if a guarantee broke.

--verbose adds the engineering detail under each step (deltas, outboxes, acks, redeliveries,
leases, timings, the seed) and keeps the hub's and agents' log file, whose path it prints.
--json prints one JSON object instead of the story. --seed N replays the same shoppers.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var o demoOptions
			o.JSON, _ = cmd.Flags().GetBool("json")
			o.Verbose, _ = cmd.Flags().GetBool("verbose")
			o.Seed, _ = cmd.Flags().GetUint64("seed")
			_, err := runDemo(cmd.Context(), o, os.Stdout)
			return err
		},
	}
	cmd.Flags().Bool("json", false, "print one JSON summary instead of the story")
	cmd.Flags().Bool("verbose", false, "also show the engineering detail (deltas, outbox, acks, redeliveries, timings, seed) and keep the hub's and agents' log")
	cmd.Flags().Uint64("seed", 0, "random seed for the simulated shoppers (0: random)")
	return cmd
}

// DemoSummary is what the demo prints with --json. The keys up to duration_ms are relied on by CI
// and tests: keep them; add new ones after.
type DemoSummary struct {
	Seed               uint64   `json:"seed"`
	Stores             int      `json:"stores"`
	Members            int      `json:"members"`
	DeltasCreated      int      `json:"deltas_created"`      // deltas approved to a cashier or the online channel
	DeltasApplied      int      `json:"deltas_applied"`      // entries in the hub's ledger
	DuplicatesIgnored  int64    `json:"duplicates_ignored"`  // redeliveries the hub acknowledged without applying again
	Lost               int      `json:"lost"`                // approved deltas missing from the hub's ledger
	BalancesMatch      bool     `json:"balances_match"`      // every agent's view = hub balance = ledger sum
	OfflineSales       int      `json:"offline_sales"`       // earns approved while the store was cut off
	OfflineRedemptions int      `json:"offline_redemptions"` // redemptions approved while cut off
	POSRetries         int      `json:"pos_retries"`         // POS calls sent twice; each got its first answer back
	RetriesMatched     bool     `json:"retries_matched"`
	AgentRestarts      int      `json:"agent_restarts"`
	HubRestarts        int      `json:"hub_restarts"`
	Conflicts          int      `json:"conflicts"`
	TierUpgrades       int      `json:"tier_upgrades"`         // tier changes the hub ledgered
	CampaignBonus      int64    `json:"campaign_bonus_points"` // points added by bonus campaigns at the tills
	PunchRewards       int      `json:"punch_rewards"`         // punch cards filled at the tills: free rewards given
	Mismatches         []string `json:"mismatches"`
	DurationMS         int64    `json:"duration_ms"`

	CountedTwice   int            `json:"counted_twice"`   // hub ledger entries beyond one per approved delta
	ReceiptsMatch  bool           `json:"receipts_match"`  // every hub balance = the sum of the member's receipts
	Redemptions    int            `json:"redemptions"`     // rewards redeemed for points (online and offline)
	BudgetLimit    int64          `json:"budget_limit"`    // the free-coffee budget: redemptions chain-wide
	BudgetSpent    int64          `json:"budget_spent"`    // what the hub counted against it
	BudgetPeak     int64          `json:"budget_peak"`     // highest spent + leased seen after any step
	BudgetRefusals int            `json:"budget_refusals"` // redemptions refused because the store's share was used up
	BudgetsKept    bool           `json:"budgets_kept"`
	Tiers          map[string]int `json:"tiers"`              // members per tier at the end
	LogFile        string         `json:"log_file,omitempty"` // the hub's and agents' log, kept with --verbose or on failure
}

// The demo's two stores: their ids in the system and the names the story uses.
const (
	mainStreet  = "north" // crashes mid-sync
	stationRoad = "south" // loses its internet line
)

var demoStoreNames = map[string]string{mainStreet: "Main Street", stationRoad: "Station Road"}

var demoCustomerNames = []string{"Ann", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kim", "Leo"}

// demoOptions are the demo command's flags.
type demoOptions struct {
	JSON    bool
	Verbose bool
	Seed    uint64 // 0: pick one at random
	TempDir string // where the demo's temporary directory goes; "": the system's

	dateError time.Duration // the agents' AgentMain.DateError (tests only)
}

// runDemo runs the demo and writes its story (or, with JSON, the summary) to w. It fails if the
// demo could not run, or, for the story, if a guarantee broke.
func runDemo(ctx context.Context, o demoOptions, w io.Writer) (DemoSummary, error) {
	seed := o.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	d := &demo{out: w, verbose: o.Verbose, keepLog: o.Verbose, tempDir: o.TempDir, rng: mrand.New(mrand.NewPCG(seed, seed)), seed: seed,
		dateError: o.dateError}
	if o.JSON {
		d.out, d.verbose = io.Discard, false
	}
	sum, err := d.run(ctx)
	if o.JSON {
		if err != nil {
			return sum, err
		}
		if err := writeJSON(w, sum); err != nil {
			return sum, err
		}
		if p := sum.problems(); len(p) > 0 {
			return sum, fmt.Errorf("a guarantee was broken: %s", strings.Join(p, "; "))
		}
		return sum, nil
	}
	if err != nil {
		d.say("\nThe demo could not finish: %v", err)
		if sum.LogFile != "" {
			d.say("The hub's and stores' log is in %s", sum.LogFile)
		}
		return sum, fmt.Errorf("the demo could not finish: %w", err)
	}
	fmt.Fprint(w, sum.story(o.Verbose))
	if p := sum.problems(); len(p) > 0 {
		return sum, fmt.Errorf("a guarantee was broken: %s", strings.Join(p, "; "))
	}
	return sum, nil
}

// problems lists, in plain words, every guarantee the run broke.
func (s DemoSummary) problems() []string {
	var p []string
	if s.Lost > 0 {
		p = append(p, fmt.Sprintf("%d of the %d sales, free coffees and online orders approved today never reached head office", s.Lost, s.DeltasCreated))
	}
	if s.CountedTwice > 0 {
		p = append(p, fmt.Sprintf("head office counted %d of them more than once", s.CountedTwice))
	}
	if !s.ReceiptsMatch {
		p = append(p, "some customers' balances at head office are not the sum of their receipts")
	}
	if !s.RetriesMatched {
		p = append(p, "a till that sent the same request twice got a different answer the second time")
	}
	if !s.BalancesMatch {
		p = append(p, fmt.Sprintf("%d balances differ between the stores and head office", len(s.Mismatches)))
	}
	if !s.BudgetsKept {
		p = append(p, fmt.Sprintf("the free-coffee budget of %d was overspent (%d used, %d at the worst moment)", s.BudgetLimit, s.BudgetSpent, s.BudgetPeak))
	}
	return p
}

// story is the closing summary in plain words; verbose adds the engineering detail.
func (s DemoSummary) story(verbose bool) string {
	var b strings.Builder
	line := func(ok bool, format string, args ...any) {
		mark := "OK  "
		if !ok {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s  %s\n", mark, fmt.Sprintf(format, args...))
	}
	b.WriteString("\nEnd of the day\n")
	fmt.Fprintf(&b, "  Customer levels tonight: %d Silver, %d Gold, %d Member.\n", s.Tiers["silver"], s.Tiers["gold"], s.Tiers["member"])
	fmt.Fprintf(&b, "  Double points week gave %d bonus points; full espresso cards gave %d free coffees.\n", s.CampaignBonus, s.PunchRewards)
	if s.Conflicts > 0 {
		fmt.Fprintf(&b, "  %d transactions were flagged for head office to review.\n", s.Conflicts)
	}
	b.WriteString("\nWhat the demo proved\n")
	if s.Lost == 0 {
		line(true, "No sale lost: all %d sales, free coffees and online orders approved today reached head office.", s.DeltasCreated)
	} else {
		line(false, "Sales lost: %d of the %d sales, free coffees and online orders approved today never reached head office.", s.Lost, s.DeltasCreated)
	}
	if s.CountedTwice == 0 {
		line(true, "None counted twice: head office has each of the %d exactly once.", s.DeltasCreated-s.Lost)
	} else {
		line(false, "Counted twice: head office has %d more entries than the %d approved.", s.CountedTwice, s.DeltasCreated)
	}
	line(s.ReceiptsMatch, "Every customer's balance at head office is exactly the sum of the points on their receipts.")
	if s.RetriesMatched {
		line(true, "A till that sent the same request twice (%d times today) got the same answer back, never double points.", s.POSRetries)
	} else {
		line(false, "A till that sent the same request twice got a different answer the second time.")
	}
	if s.BalancesMatch {
		line(true, "Same balance everywhere: for all %d customers, both stores show the balance head office has.", s.Members)
	} else {
		line(false, "Balances differ: %s not match head office.", plural(len(s.Mismatches), "balance at a store does", "balances at the stores do"))
	}
	if s.BudgetsKept {
		line(true, "Budget kept: %d free coffees for points, within the chain's budget of %d, even with %s offline.",
			s.BudgetSpent, s.BudgetLimit, demoStoreNames[stationRoad])
	} else {
		line(false, "Budget overspent: %d free coffees for points against a budget of %d.", s.BudgetSpent, s.BudgetLimit)
	}
	if len(s.problems()) == 0 {
		b.WriteString("All guarantees held: no sale lost, none counted twice, every store shows head office's balances, budget kept.\n")
	} else {
		b.WriteString("A GUARANTEE WAS BROKEN: see the lines marked FAIL.\n")
	}
	if verbose {
		fmt.Fprintf(&b, `
Engineering detail
  seed %d (run again with --seed %d for the same shoppers); %.1fs
  deltas created %d, applied (ledgered) at the hub %d, lost %d, ledgered more than once %d
  POS calls sent twice (retries) %d; every retry got the first response byte for byte: %v
  redeliveries ignored by the hub (duplicates_ignored) %d; agent restarts %d; hub restarts %d
  tier deltas ledgered by the hub %d; conflicts %d; mismatches %v
  budget free-coffees (redemptions of coffee): limit %d, spent %d, peak spent+outstanding %d, EBUDGET refusals %d
  hub and agent log: %s
`, s.Seed, s.Seed, float64(s.DurationMS)/1000, s.DeltasCreated, s.DeltasApplied, s.Lost, s.CountedTwice,
			s.POSRetries, s.RetriesMatched, s.DuplicatesIgnored, s.AgentRestarts, s.HubRestarts,
			s.TierUpgrades, s.Conflicts, s.Mismatches, s.BudgetLimit, s.BudgetSpent, s.BudgetPeak, s.BudgetRefusals, s.LogFile)
	}
	return b.String()
}

type demo struct {
	out       io.Writer
	verbose   bool // tell the engineering detail too
	keepLog   bool // log at info level and keep the log file
	tempDir   string
	logger    *slog.Logger
	dateError time.Duration // demoOptions.dateError
	rng       *mrand.Rand
	seed      uint64
	dir       string

	program loyalty.Program
	hubCfg  HubConfig
	hub     *HubMain
	agents  map[string]*AgentMain
	cfgs    map[string]AgentConfig
	members []string
	names   map[string]string // member -> name
	tokens  map[string]string // member -> QR token
	link    *faultnet.Link

	approved []string                   // every delta id a cashier or the online channel was told about
	expected map[string]int64           // member -> sum of the points on their receipts
	ledger   map[string]hub.LedgerEntry // the hub's ledger by delta id, as last counted
	sum      DemoSummary
	order    int

	offline  []string // delta ids approved at Station Road while it was cut off
	featured string   // the customer the story follows: the first to shop at Station Road offline
	balances map[string]map[string]int64
}

// say writes a line of the story.
func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// detail writes a line of engineering detail, with --verbose only.
func (d *demo) detail(format string, args ...any) {
	if d.verbose {
		fmt.Fprintf(d.out, "   [detail] "+format+"\n", args...)
	}
}

func (d *demo) run(ctx context.Context) (sum DemoSummary, err error) {
	start := time.Now()
	d.sum = DemoSummary{Seed: d.seed, RetriesMatched: true, Mismatches: []string{}, Tiers: map[string]int{}}
	d.expected, d.balances = map[string]int64{}, map[string]map[string]int64{}
	if d.dir, err = os.MkdirTemp(d.tempDir, "loyalty-demo-"); err != nil {
		return d.sum, err
	}
	// The hub's and agents' log goes to a file, never between the lines of the story. It is kept
	// (the databases are not) with --verbose or when something went wrong.
	logPath := filepath.Join(d.dir, "demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(d.dir)
		return d.sum, err
	}
	level := slog.LevelWarn
	if d.keepLog {
		level = slog.LevelInfo
	}
	d.logger = slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: level}))
	defer func() {
		d.closeAll()
		logFile.Close()
		if d.keepLog || err != nil || len(sum.problems()) > 0 {
			sum.LogFile = logPath
			removeAllBut(d.dir, filepath.Base(logPath))
		} else {
			os.RemoveAll(d.dir)
		}
	}()

	if err := d.setup(ctx); err != nil {
		return d.sum, fmt.Errorf("setup: %w", err)
	}
	steps := []struct {
		title string
		fn    func(context.Context) error
	}{
		{"Morning: both stores are online", d.online},
		{demoStoreNames[stationRoad] + " goes offline (its internet line is cut)", d.outage},
		{demoStoreNames[mainStreet] + "'s loyalty computer crashes while sending its sales to head office", d.crash},
		{"Head office's server restarts (as it would for a software update)", d.hubRestart},
		{demoStoreNames[stationRoad] + " is back online", d.heal},
	}
	for i, s := range steps {
		d.say("\n%d. %s", i+1, s.title)
		t := time.Now()
		if err := s.fn(ctx); err != nil {
			return d.sum, fmt.Errorf("step %d (%s): %w", i+1, s.title, err)
		}
		if err := d.checkBudget(ctx); err != nil {
			return d.sum, err
		}
		d.detail("step %d took %d ms", i+1, time.Since(t).Milliseconds())
	}
	if err := d.verify(ctx); err != nil {
		return d.sum, err
	}
	d.tellFeatured()
	d.sum.DurationMS = time.Since(start).Milliseconds()
	return d.sum, nil
}

// removeAllBut empties dir except for the file keep.
func removeAllBut(dir, keep string) {
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if e.Name() != keep {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

func (d *demo) closeAll() {
	for _, a := range d.agents {
		a.Close()
	}
	if d.hub != nil {
		d.hub.Close()
	}
	if d.link != nil {
		d.link.Close()
	}
}

func (d *demo) setup(ctx context.Context) error {
	d.hubCfg = DefaultHubConfig()
	d.hubCfg.Listen = "127.0.0.1:0"
	d.hubCfg.Database = filepath.Join(d.dir, "hub.db")
	d.hubCfg.AdminAPIKey = rand.Text()
	d.hubCfg.Sync.Heartbeat = time.Second
	d.hubCfg.Sync.PollInterval = 200 * time.Millisecond
	d.hub = &HubMain{Config: d.hubCfg, Logger: d.logger}
	if err := d.hub.Open(ctx); err != nil {
		return err
	}
	d.hubCfg.Listen = d.hub.HTTP.ListenAddr() // restart on the same port
	h := d.hub.Hub
	var err error
	if d.program, err = h.SetProgram(ctx, demoProgram(time.Now())); err != nil {
		return err
	}

	if d.link, err = faultnet.NewLink(d.hubCfg.Listen); err != nil {
		return err
	}
	d.agents, d.cfgs, d.tokens, d.names = map[string]*AgentMain{}, map[string]AgentConfig{}, map[string]string{}, map[string]string{}
	for _, id := range []string{mainStreet, stationRoad} {
		_, token, err := h.CreateStore(ctx, id, demoStoreNames[id])
		if err != nil {
			return err
		}
		cfg := DefaultAgentConfig()
		cfg.StoreID, cfg.Token, cfg.Listen = id, token, "127.0.0.1:0"
		cfg.Database = filepath.Join(d.dir, id+".db")
		cfg.HubURL = "ws://" + d.hubCfg.Listen + "/v1/sync"
		if id == stationRoad {
			cfg.HubURL = "ws://" + d.link.Addr() + "/v1/sync" // through a link we can cut
		}
		cfg.Sync.MinBackoff, cfg.Sync.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
		d.cfgs[id] = cfg
		if err := d.startAgent(ctx, id, nil); err != nil {
			return err
		}
	}
	d.sum.Stores = len(d.agents)
	for i, name := range demoCustomerNames {
		home := mainStreet
		if i%2 == 1 {
			home = stationRoad
		}
		m, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("m%02d", i+1), Name: name, HomeStore: home})
		if err != nil {
			return err
		}
		if d.tokens[m.ID], err = h.MemberToken(ctx, m.ID); err != nil {
			return err
		}
		d.members = append(d.members, m.ID)
		d.names[m.ID] = name
	}
	d.sum.Members = len(d.members)

	p := d.program
	d.say("A loyalty program on a bad day")
	d.say("Head office runs the program for two stores, %s and %s.", demoStoreNames[mainStreet], demoStoreNames[stationRoad])
	d.say("Each store has a small loyalty computer beside its tills; %d customers carry a loyalty card.", len(d.members))
	d.say("Points: %d per euro, %d per euro on coffee; this week's campaign: %q.", p.Earn.PointsPerUnit, p.CategoryRates[0].PointsPerUnit, p.Campaigns[0].Name)
	for _, t := range p.Tiers.Tiers[1:] {
		d.say("Customers who spent %s in the last 12 months become %s and earn %s the points.", money(t.Threshold, p.Currency), t.Name, times(t.Multiplier))
	}
	coffee, _ := p.Reward("coffee")
	d.say("A %s costs %d points; with the espresso card, every %d espressos bought earn one free.", strings.ToLower(coffee.Name), coffee.PointsCost, p.PunchCards[0].Buy)
	d.say("Head office allows at most %d free coffees for points across the chain: the free-coffee budget.", p.Budgets[0].Limit)
	d.sum.BudgetLimit = p.Budgets[0].Limit

	d.detail("seed %d (run again with --seed %d for the same shoppers)", d.seed, d.seed)
	d.detail("hub on %s (websocket sync at /v1/sync, SQLite %s); agents %s (Main Street) and %s (Station Road) with their own SQLite replicas",
		d.hubCfg.Listen, d.hubCfg.Database, mainStreet, stationRoad)
	d.detail("%s's websocket goes through a TCP link the demo can cut (%s); each POS call is sent twice, as a retry after a timeout", stationRoad, d.link.Addr())
	d.detail("budget %s: %s of %q, limit %d, split into quota leases (share %.0f%%)",
		p.Budgets[0].ID, p.Budgets[0].Metric, p.Budgets[0].Reward, p.Budgets[0].Limit, d.hubCfg.Leases.Share*100)
	d.detail("hub and agent log (level info): %s, kept after the demo", filepath.Join(d.dir, "demo.log"))
	return d.waitSynced(ctx)
}

// money formats minor units of EUR (or any 2-decimal currency): 1299 is "12.99 EUR", 30000 is
// "300 EUR".
func money(minor int64, currency string) string {
	if minor%100 == 0 {
		return fmt.Sprintf("%d %s", minor/100, currency)
	}
	return fmt.Sprintf("%d.%02d %s", minor/100, minor%100, currency)
}

// times formats a multiplier in thousandths: 1500 is "1.5 times", 2000 "twice".
func times(m int64) string {
	if m == 2000 {
		return "twice"
	}
	return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64) + " times"
}

// plural is "1 sale", "2 sales".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (d *demo) startAgent(ctx context.Context, id string, beforeAck func(*lsync.Ack) error) error {
	m := &AgentMain{Config: d.cfgs[id], Logger: d.logger, BeforeAck: beforeAck, DateError: d.dateError}
	if err := m.Open(ctx); err != nil {
		return err
	}
	d.agents[id] = m
	return nil
}

// waitSynced waits until every agent is online, has an empty outbox and has pulled up to the
// hub's current change version.
func (d *demo) waitSynced(ctx context.Context) error {
	var hv int64
	err := waitFor(ctx, 20*time.Second, func() (bool, string) {
		d.hub.Store.View(ctx, func(tx hub.Tx) error {
			hv, _ = tx.CurrentVersion(ctx)
			return nil
		})
		for id, a := range d.agents {
			st, err := a.Agent.Status(ctx)
			if err != nil || !st.Online || st.Outbox > 0 || st.Cursor < hv {
				return false, fmt.Sprintf("%s: online=%v outbox=%d cursor=%d hub=%d", id, st.Online, st.Outbox, st.Cursor, hv)
			}
		}
		return true, ""
	})
	if err == nil {
		d.detail("synced: every agent online, every outbox empty, every cursor at the hub's change version %d", hv)
	}
	return err
}

func waitFor(ctx context.Context, limit time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting: %s", limit, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pos sends one POS call twice, as a till does that retries after a timeout: the till never saw
// the first answer, so the retry's answer is the one the cashier acts on. An approved call must be
// answered the same, byte for byte, when retried. A refused one may be approved on the retry
// (refusals are not remembered: the store may have received more quota from head office since).
// It returns the HTTP status and, for a refusal, the error code.
func (d *demo) pos(store, path string, body any, out any) (int, string, error) {
	return d.posAt(d.agents[store].HTTP.URL()+path, body, out)
}

func (d *demo) posAt(url string, body any, out any) (int, string, error) {
	b, _ := json.Marshal(body)
	var first, last []byte
	var firstStatus, status int
	for attempt := range 2 {
		resp, err := http.Post(url, "application/json", bytes.NewReader(b))
		if err != nil {
			return 0, "", err
		}
		last, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		if attempt == 0 {
			first, firstStatus = last, status
			continue
		}
		d.sum.POSRetries++
		if firstStatus == http.StatusOK && (status != http.StatusOK || !bytes.Equal(first, last)) {
			d.sum.RetriesMatched = false
		}
	}
	if status != http.StatusOK {
		var e struct {
			Error *loyalty.Error `json:"error"`
		}
		if json.Unmarshal(last, &e) == nil && e.Error != nil {
			return status, e.Error.Code, nil
		}
		return status, "", nil
	}
	return status, "", json.Unmarshal(last, out)
}

func (d *demo) nextOrder(store string) string {
	d.order++
	return fmt.Sprintf("%s-%04d", store, d.order)
}

// receipt records an approved receipt: its deltas and its points.
func (d *demo) receipt(r loyalty.Receipt) {
	d.approved = append(d.approved, r.Deltas...)
	d.expected[r.Member] += r.Points
}

// demoSale is one sale rung up at a till.
type demoSale struct {
	store   string
	member  string
	amount  int64
	receipt loyalty.Receipt
}

// sale rings up a sale of a random member at store.
func (d *demo) sale(store string) (demoSale, error) {
	m := d.members[d.rng.IntN(len(d.members))]
	espressos := d.rng.Int64N(3)
	rest := 500 + d.rng.Int64N(15000)
	lines := []loyalty.Line{{SKU: "groceries", Qty: 1, Amount: rest}}
	if espressos > 0 {
		lines = append(lines, loyalty.Line{SKU: "espresso", Category: "coffee", Qty: espressos, Amount: 250 * espressos})
	}
	s := demoSale{store: store, member: m, amount: rest + 250*espressos}
	req := loyalty.EarnRequest{OrderID: d.nextOrder(store), Terminal: "till-1", QR: d.tokens[m],
		Amount: loyalty.Money(s.amount), Currency: "EUR", Lines: lines}
	status, code, err := d.pos(store, "/v1/earn", req, &s.receipt)
	if err != nil {
		return s, err
	} else if status != http.StatusOK {
		return s, fmt.Errorf("earn at %s: HTTP %d %s", store, status, code)
	}
	d.receipt(s.receipt)
	if s.receipt.Earn != nil {
		d.sum.CampaignBonus += s.receipt.Earn.CampaignBonus
	}
	d.sum.PunchRewards += len(s.receipt.PunchRewards)
	return s, nil
}

// tellSale tells one sale, then how its points were made up. format has the customer's name, the
// amount and the points.
func (d *demo) tellSale(s demoSale, format string) {
	r := s.receipt
	d.say(format, d.names[s.member], money(s.amount, d.program.Currency), r.Points)
	if e := r.Earn; e != nil && (e.TierBonus > 0 || e.CampaignBonus > 0) {
		parts := []string{fmt.Sprintf("%d for the purchase", e.Base)}
		if e.TierBonus > 0 {
			parts = append(parts, fmt.Sprintf("%d extra for their loyalty level", e.TierBonus))
		}
		if e.CampaignBonus > 0 {
			parts = append(parts, fmt.Sprintf("%d extra for double points week", e.CampaignBonus))
		}
		last := len(parts) - 1
		if last > 0 {
			parts[last-1] += " and " + parts[last]
			parts = parts[:last]
		}
		d.say("   That is %s.", strings.Join(parts, ", "))
	}
	if r.Earn != nil {
		d.detail("order %s: earn delta %v, %s, offline=%v, balance at the store %d", r.OrderID, r.Deltas, r.Earn.Describe(), r.Offline, r.Balance)
	}
}

// redemptions counts the outcomes of redemption attempts.
type redemptions struct {
	approved, noPoints, noBudget, offline int
	deltas                                []string
}

// redeem tries to redeem a coffee for a random member; too few points, or a budget share used up,
// is a normal refusal.
func (d *demo) redeem(store string, n *redemptions) error {
	m := d.members[d.rng.IntN(len(d.members))]
	req := loyalty.RedeemRequest{OrderID: d.nextOrder(store), Terminal: "till-2", QR: d.tokens[m], RewardID: "coffee"}
	var r loyalty.Receipt
	status, code, err := d.pos(store, "/v1/redeem", req, &r)
	switch {
	case err != nil:
		return err
	case status == http.StatusOK:
		d.receipt(r)
		d.sum.Redemptions++
		n.approved++
		n.deltas = append(n.deltas, r.Deltas...)
		if r.Offline {
			n.offline++
		}
	case code == loyalty.EINSUFFICIENT:
		n.noPoints++
	case code == loyalty.EBUDGET:
		d.sum.BudgetRefusals++
		n.noBudget++
	default:
		return fmt.Errorf("redeem at %s: HTTP %d %s", store, status, code)
	}
	return nil
}

// tellRefusals tells the redemptions a till refused, if any.
func (d *demo) tellRefusals(n redemptions, why string) {
	if n.noPoints == 1 {
		d.say("   1 free coffee was refused: the customer did not have enough points.")
	} else if n.noPoints > 1 {
		d.say("   %d free coffees were refused: the customers did not have enough points.", n.noPoints)
	}
	if n.noBudget == 1 {
		d.say("   1 free coffee was refused: %s (the customer keeps the points).", why)
	} else if n.noBudget > 1 {
		d.say("   %d free coffees were refused: %s (the customers keep their points).", n.noBudget, why)
	}
}

func (d *demo) online(ctx context.Context) error {
	var sales []demoSale
	for range 20 {
		for _, s := range []string{mainStreet, stationRoad} {
			sale, err := d.sale(s)
			if err != nil {
				return err
			}
			sales = append(sales, sale)
		}
	}
	var n redemptions
	for range 6 {
		for _, s := range []string{mainStreet, stationRoad} {
			if err := d.redeem(s, &n); err != nil {
				return err
			}
		}
	}
	// The online channel earns too (e-commerce order), straight at the hub.
	web := int64(4999)
	r, err := d.hub.Hub.Earn(ctx, loyalty.EarnRequest{OrderID: "web-1", MemberID: d.members[0], Amount: loyalty.Money(web), Currency: "EUR"})
	if err != nil {
		return err
	}
	d.receipt(r)

	d.say("   %s and %s ring up %d sales.", demoStoreNames[mainStreet], demoStoreNames[stationRoad], len(sales))
	d.tellSale(sales[0], "   Example: %s spends %s at "+demoStoreNames[sales[0].store]+" and gets %d points.")
	for _, s := range sales {
		if len(s.receipt.PunchRewards) > 0 {
			d.say("   %s fills the espresso card at %s: the till tells the cashier to hand over a %s.",
				d.names[s.member], demoStoreNames[s.store], strings.ToLower(s.receipt.PunchRewards[0].Name))
			break
		}
	}
	coffee, _ := d.program.Reward("coffee")
	d.say("   Customers swap %d points for a free coffee %s.", coffee.PointsCost, plural(n.approved, "time", "times"))
	d.tellRefusals(n, "the store's share of the free-coffee budget was used up")
	d.say("   %s also orders online for %s; head office credits %d points directly.", d.names[d.members[0]], money(web, d.program.Currency), r.Points)
	if d.sum.RetriesMatched {
		d.say("   Every till sent each request twice, as happens after a network timeout.")
		d.say("   The second answer was always the same as the first: no points given twice.")
	} else {
		d.say("   PROBLEM: a till that sent a request twice got a different answer the second time.")
	}
	d.detail("%d earn deltas, %d redeem deltas (%d EINSUFFICIENT, %d EBUDGET refusals), web order %s applied at the hub as delta %v",
		len(sales), n.approved, n.noPoints, n.noBudget, r.OrderID, r.Deltas)
	d.detail("POS retries so far %d, every retry answered with the first response: %v", d.sum.POSRetries, d.sum.RetriesMatched)
	if err := d.waitSynced(ctx); err != nil {
		return err
	}
	d.say("   Both stores are up to date with head office.")
	return nil
}

// budgetShare returns what a store may still spend of the free-coffee budget on its own: its
// active lease less what it spent of it.
func (d *demo) budgetShare(ctx context.Context, store string) (granted, left int64, err error) {
	b := d.program.Budgets[0].ID
	err = d.agents[store].Store.View(ctx, func(tx agent.Tx) error {
		ls, err := tx.Leases(ctx)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if l.Budget == b && l.State == "active" {
				spent, err := tx.LeaseSpent(ctx, l.ID)
				if err != nil {
					return err
				}
				granted, left = granted+l.Granted, left+l.Granted-spent
			}
		}
		return nil
	})
	return granted, left, err
}

func (d *demo) outage(ctx context.Context) error {
	south := demoStoreNames[stationRoad]
	d.link.Cut()
	if err := waitFor(ctx, 10*time.Second, func() (bool, string) {
		return !d.agents[stationRoad].Client.Status().Online, "south still online"
	}); err != nil {
		return err
	}
	granted, share, err := d.budgetShare(ctx, stationRoad)
	if err != nil {
		return err
	}
	var first *demoSale
	north := 0
	for range 25 {
		s, err := d.sale(stationRoad)
		if err != nil {
			return err
		}
		if s.receipt.Offline {
			d.sum.OfflineSales++
			d.offline = append(d.offline, s.receipt.Deltas...)
			if first == nil {
				first = &s
				d.featured = s.member
			}
		}
		if _, err := d.sale(mainStreet); err != nil {
			return err
		}
		north++
	}
	var n redemptions
	for range 8 {
		if err := d.redeem(stationRoad, &n); err != nil {
			return err
		}
	}
	d.sum.OfflineRedemptions += n.offline
	d.offline = append(d.offline, n.deltas...)
	st, err := d.agents[stationRoad].Agent.Status(ctx)
	if err != nil {
		return err
	}

	d.say("   The tills keep working without head office.")
	d.say("   %s approves %s while offline; every customer gets their points on the spot.", south, plural(d.sum.OfflineSales, "sale", "sales"))
	if first != nil {
		d.tellSale(*first, "   The cashier still scans %s's card: a sale of %s earns %d points, approved on the spot.")
	}
	d.say("   Offline, %s may give at most %s for points: its share of the chain's budget.", south, plural(int(share), "more free coffee", "more free coffees"))
	d.say("   Customers swap points for %s there while offline.", plural(n.offline, "free coffee", "free coffees"))
	d.tellRefusals(n, "the store's share of the budget was used up")
	d.say("   %s are saved at the store, waiting to be sent to head office.", plural(int(st.Outbox), "sale or free coffee", "sales and free coffees"))
	d.say("   %s, still online, rings up %d sales as usual.", demoStoreNames[mainStreet], north)
	d.detail("link cut: %s offline; earn deltas returned offline=true: %d; offline redemptions %d (EINSUFFICIENT %d, EBUDGET %d)",
		stationRoad, d.sum.OfflineSales, n.offline, n.noPoints, n.noBudget)
	d.detail("%s's lease of budget %s at the cut: granted %d, %d unspent; outbox now %d deltas", stationRoad, d.program.Budgets[0].ID, granted, share, st.Outbox)
	return nil
}

func (d *demo) crash(ctx context.Context) error {
	crashed := make(chan struct{})
	var once sync.Once
	north := d.agents[mainStreet]
	north.Client.Faults.BeforeAck = func(*lsync.Ack) error {
		once.Do(func() { close(crashed) })
		return fmt.Errorf("simulated crash before recording the ack")
	}
	sales := 0
	for range 5 {
		if _, err := d.sale(mainStreet); err != nil {
			return err
		}
		sales++
	}
	select {
	case <-crashed:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("north never received an ack")
	}
	if err := north.Close(); err != nil {
		return err
	}
	pending, applied, err := d.outboxAtHub(ctx, d.cfgs[mainStreet].Database)
	if err != nil {
		return err
	}
	d.sum.AgentRestarts++
	if err := d.startAgent(ctx, mainStreet, nil); err != nil {
		return err
	}
	// The restarted computer sends its outbox again; wait until head office has confirmed all of it.
	north = d.agents[mainStreet]
	if err := waitFor(ctx, 10*time.Second, func() (bool, string) {
		st, err := north.Agent.Status(ctx)
		return err == nil && st.Online && st.Outbox == 0, fmt.Sprintf("north outbox %d", st.Outbox)
	}); err != nil {
		return err
	}
	dups := north.Client.Status().Duplicates

	name := demoStoreNames[mainStreet]
	d.say("   %s rings up %d sales; its computer crashes while sending them.", name, sales)
	d.say("   Head office had already received %d of the %d unconfirmed sales, but its confirmation never reached the store.", applied, pending)
	d.say("   The computer restarts: all %d were saved on its disk.", pending)
	d.say("   It sends them again: head office adds the %d it did not have and recognises the %d it already had, so nothing counts twice.", pending-applied, dups)
	d.detail("BeforeAck fault: the hub committed a batch, %s died before recording the ack; outbox %d deltas, %d already applied at the hub",
		mainStreet, pending, applied)
	d.detail("restarted from %s; its redelivery: %d duplicates acknowledged by the hub without applying again (dedup by delta id)",
		filepath.Base(d.cfgs[mainStreet].Database), dups)
	return nil
}

// outboxAtHub counts a closed agent's outbox and how much of it the hub has applied already.
func (d *demo) outboxAtHub(ctx context.Context, path string) (pending, applied int, err error) {
	s, err := agentsqlite.Open(ctx, path)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	out, err := s.Pending(ctx, 0, 1_000_000)
	if err != nil {
		return 0, 0, err
	}
	err = d.hub.Store.View(ctx, func(tx hub.Tx) error {
		for _, o := range out {
			if _, err := tx.Delta(ctx, o.Delta.ID); err == nil {
				applied++
			}
		}
		return nil
	})
	return len(out), applied, err
}

func (d *demo) hubRestart(ctx context.Context) error {
	if err := d.hub.Close(); err != nil {
		return err
	}
	d.hub = &HubMain{Config: d.hubCfg, Logger: d.logger}
	if err := d.hub.Open(ctx); err != nil {
		return err
	}
	d.sum.HubRestarts++
	t := time.Now()
	if err := waitFor(ctx, 10*time.Second, func() (bool, string) {
		return d.agents[mainStreet].Client.Status().Online, "north has not reconnected"
	}); err != nil {
		return err
	}
	d.say("   Its records are on disk: it picks up where it left off.")
	d.say("   %s reconnects by itself; %s is still offline.", demoStoreNames[mainStreet], demoStoreNames[stationRoad])
	d.detail("hub closed and reopened on %s with the same %s; %s's websocket reconnected after %d ms (backoff 50 to 500 ms)",
		d.hubCfg.Listen, filepath.Base(d.hubCfg.Database), mainStreet, time.Since(t).Milliseconds())
	return nil
}

func (d *demo) heal(ctx context.Context) error {
	d.link.Heal()
	if err := d.waitSynced(ctx); err != nil {
		return err
	}
	counts, _, err := d.ledgerCounts(ctx)
	if err != nil {
		return err
	}
	received, once := 0, true
	for _, id := range d.offline {
		if counts[id] > 0 {
			received++
		}
		once = once && counts[id] <= 1
	}
	name := demoStoreNames[stationRoad]
	waiting := plural(len(d.offline), "sale or free coffee", "sales and free coffees")
	switch {
	case received == len(d.offline) && once:
		d.say("   It sends the %s it kept while offline: head office receives all of them, each counted once.", waiting)
	case received == len(d.offline):
		d.say("   PROBLEM: %s sends its %s: head office counted some of them more than once.", name, waiting)
	default:
		d.say("   PROBLEM: %s sends its %s: head office received only %d.", name, waiting, received)
	}
	d.say("   Both stores are up to date with head office.")
	d.detail("link healed; %d offline deltas from %s in the hub's ledger, each once: %v", received, stationRoad, once)
	return nil
}

// ledgerCounts counts the hub's ledger entries per delta id, and apart the hub's own tier changes.
func (d *demo) ledgerCounts(ctx context.Context) (counts map[string]int, tiers int, err error) {
	counts = map[string]int{}
	d.ledger = map[string]hub.LedgerEntry{}
	err = d.hub.Store.View(ctx, func(tx hub.Tx) error {
		for _, m := range d.members {
			es, err := tx.Ledger(ctx, m, 1_000_000)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.Kind == loyalty.KindTier {
					tiers++ // made by the hub, not by a till: not in deltas_applied
					continue
				}
				counts[e.ID]++
				d.ledger[e.ID] = e
			}
		}
		return nil
	})
	return counts, tiers, err
}

// unexpected names, under --verbose, a hub ledger entry no receipt accounts for, so a broken
// guarantee can be traced to its delta in the demo's log.
func (d *demo) unexpected(id string) {
	e := d.ledger[id]
	d.detail("unexpected ledger entry %s: kind %s, store %s, order %q, member %s, points %d, reward %q, reverses %q, at %s",
		id, e.Kind, e.Store, e.OrderID, e.Member, e.Points, e.Reward, e.Reverses, e.OccurredAt.Format(time.RFC3339Nano))
}

// lost tells, under --verbose and in the log, why an approved delta is not in the hub's ledger:
// set aside by the hub (and why), and which store's agent keeps it as refused.
func (d *demo) lost(ctx context.Context, id string) {
	why := "the hub has no record of it"
	if rs, err := d.hub.Hub.Rejections(ctx, 1000); err == nil {
		for _, r := range rs {
			if r.Delta.ID == id {
				why = fmt.Sprintf("the hub set it aside from %s: %s %s", r.Store, r.Code, r.Message)
			}
		}
	}
	d.detail("lost: the approved delta %s is not in the hub's ledger: %s", id, why)
	d.logger.Warn("demo: an approved delta is not in the hub's ledger", slog.String("delta", id), slog.String("why", why))
	for store, a := range d.agents {
		if rs, err := a.Agent.Rejected(ctx, 1000); err == nil {
			for _, r := range rs {
				if r.Delta.ID == id {
					d.detail("lost: %s keeps %s as refused: %s %s", store, id, r.Code, r.Message)
				}
			}
		}
	}
}

// checkBudget records the most of the free-coffee budget ever spent or held by stores, and whether
// it ever went over its limit.
func (d *demo) checkBudget(ctx context.Context) error {
	bs, err := d.hub.Hub.Budgets(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		d.sum.BudgetPeak = max(d.sum.BudgetPeak, b.Spent+b.Outstanding)
		d.sum.BudgetSpent = b.Spent
	}
	return nil
}

func (d *demo) verify(ctx context.Context) error {
	h := d.hub.Hub
	for _, a := range d.agents {
		d.sum.DuplicatesIgnored += a.Client.Status().Duplicates
	}
	counts, tiers, err := d.ledgerCounts(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, id := range d.approved {
		if seen[id] {
			continue
		}
		seen[id] = true
		if counts[id] == 0 {
			d.sum.Lost++
			d.lost(ctx, id)
		}
	}
	d.sum.DeltasCreated, d.sum.TierUpgrades = len(seen), tiers
	for id, n := range counts {
		d.sum.DeltasApplied += n
		if !seen[id] {
			d.sum.CountedTwice += n // in the ledger, but no till or channel approved it
			d.unexpected(id)
		} else if n > 1 {
			d.sum.CountedTwice += n - 1
			d.unexpected(id)
		}
	}
	check, err := h.Check(ctx)
	if err != nil {
		return err
	}
	d.sum.Mismatches = append(d.sum.Mismatches, check.Mismatches...)
	d.sum.ReceiptsMatch = true
	for _, m := range d.members {
		hm, err := h.Member(ctx, m, 0)
		if err != nil {
			return err
		}
		d.sum.Tiers[hm.Tier]++
		if hm.Balance != d.expected[m] {
			d.sum.ReceiptsMatch = false
		}
		d.balances[m] = map[string]int64{"": hm.Balance}
		for id := range d.agents {
			var s agent.ScanResult
			if status, code, err := d.pos(id, "/v1/scan", agent.ScanRequest{QR: d.tokens[m]}, &s); err != nil || status != http.StatusOK {
				return fmt.Errorf("scan %s at %s: HTTP %d %s %v", m, id, status, code, err)
			}
			d.balances[m][id] = s.Balance
			if s.Balance != hm.Balance {
				d.sum.Mismatches = append(d.sum.Mismatches, fmt.Sprintf("%s at %s: agent %d, hub %d", m, id, s.Balance, hm.Balance))
			}
		}
	}
	conflicts, err := h.Conflicts(ctx, 1000)
	if err != nil {
		return err
	}
	d.sum.Conflicts = len(conflicts)
	overspent := false
	for _, c := range conflicts {
		overspent = overspent || c.Kind == hub.ConflictOverBudget || c.Kind == hub.ConflictUnleased
	}
	if err := d.checkBudget(ctx); err != nil {
		return err
	}
	d.sum.BalancesMatch = len(d.sum.Mismatches) == 0
	d.sum.BudgetsKept = !overspent && d.sum.BudgetPeak <= d.sum.BudgetLimit && d.sum.BudgetSpent <= d.sum.BudgetLimit &&
		int64(d.sum.Redemptions) <= d.sum.BudgetLimit
	return nil
}

// tellFeatured ends the story with the balance of the customer it followed, everywhere.
func (d *demo) tellFeatured() {
	m := d.featured
	if m == "" {
		m = d.members[0]
	}
	b := d.balances[m]
	hq, n, s := b[""], b[mainStreet], b[stationRoad]
	who := d.names[m]
	if d.featured != "" {
		who += ", who shopped at " + demoStoreNames[stationRoad] + " while it was offline,"
	}
	if hq == n && hq == s {
		d.say("   %s now has %d points at head office, at %s and at %s.", who, hq, demoStoreNames[mainStreet], demoStoreNames[stationRoad])
	} else {
		d.say("   PROBLEM: %s has %d points at head office, %d at %s and %d at %s.", who, hq, n, demoStoreNames[mainStreet], s, demoStoreNames[stationRoad])
	}
	d.detail("%s (%s): hub balance %d, receipts add up to %d; scanned at %s %d, at %s %d", m, d.names[m], hq, d.expected[m], mainStreet, n, stationRoad, s)
}

// demoProgram is the demo's loyalty program: category rates, tiers, a campaign running now, a
// punch card and a chain-wide budget of free coffees.
func demoProgram(now time.Time) loyalty.Program {
	p := loyalty.DefaultProgram()
	p.CategoryRates = []loyalty.CategoryRate{{Category: "coffee", PointsPerUnit: 3}}
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowRolling12M, Tiers: []loyalty.Tier{
		{ID: "member", Name: "Member", Threshold: 0, Multiplier: 1000},
		{ID: "silver", Name: "Silver", Threshold: 30000, Multiplier: 1500},
		{ID: "gold", Name: "Gold", Threshold: 100000, Multiplier: 2000},
	}}
	p.Campaigns = []loyalty.Campaign{{ID: "opening-week", Name: "Opening week: double points",
		Start: now.Add(-time.Hour).UTC().Truncate(time.Second), End: now.Add(6 * time.Hour).UTC().Truncate(time.Second), Multiplier: 2000}}
	p.PunchCards = []loyalty.PunchCard{{ID: "espresso", Name: "Espresso card", SKU: "espresso", Buy: 5, Reward: "coffee"}}
	p.Budgets = []loyalty.Budget{{ID: "free-coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 40}}
	return p
}
