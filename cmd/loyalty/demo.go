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
		Long: `demo starts a hub and two store agents in this process, on temporary directories, with
real SQLite files and real websockets on 127.0.0.1. It rings up sales and redemptions at both
stores, cuts one store off (it keeps earning and redeeming offline), kills an agent between the
hub's commit and its own, restarts the hub, heals the network, and checks that nothing was lost
or counted twice and that every balance agrees.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, _ := cmd.Flags().GetBool("json")
			verbose, _ := cmd.Flags().GetBool("verbose")
			seed, _ := cmd.Flags().GetUint64("seed")
			if seed == 0 {
				seed = mrand.Uint64()
			}
			d := &demo{out: os.Stdout, rng: mrand.New(mrand.NewPCG(seed, seed)), seed: seed}
			if asJSON {
				d.out = io.Discard
			}
			level := slog.LevelError
			if verbose {
				level = slog.LevelInfo
			}
			d.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			sum, err := d.run(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(sum)
			}
			d.say("\n%s", sum.human())
			if sum.Lost != 0 || !sum.BalancesMatch {
				return fmt.Errorf("guarantees broken: lost=%d balances_match=%v", sum.Lost, sum.BalancesMatch)
			}
			return nil
		},
	}
	cmd.Flags().Bool("json", false, "print one JSON summary instead of the narrative")
	cmd.Flags().Bool("verbose", false, "show the hub's and agents' logs")
	cmd.Flags().Uint64("seed", 0, "random seed for the simulated shoppers (0: random)")
	return cmd
}

// DemoSummary is what the demo prints with --json.
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
}

func (s DemoSummary) human() string {
	verdict := "PASS: nothing lost, nothing counted twice, every balance agrees."
	if s.Lost != 0 || !s.BalancesMatch {
		verdict = "FAIL: a guarantee was broken."
	}
	return fmt.Sprintf(`Summary (seed %d, %.1fs)
  stores %d, members %d
  deltas approved %d (offline: %d sales, %d redemptions), applied at the hub %d
  POS retries %d (all answered with the first result: %v)
  redeliveries ignored by the hub %d, agent restarts %d, hub restarts %d
  program: %d tier upgrades, %d campaign bonus points, %d punch-card rewards
  lost %d, conflicts flagged %d, balances match %v
%s
`, s.Seed, float64(s.DurationMS)/1000, s.Stores, s.Members, s.DeltasCreated, s.OfflineSales, s.OfflineRedemptions,
		s.DeltasApplied, s.POSRetries, s.RetriesMatched, s.DuplicatesIgnored, s.AgentRestarts, s.HubRestarts,
		s.TierUpgrades, s.CampaignBonus, s.PunchRewards, s.Lost, s.Conflicts, s.BalancesMatch, verdict)
}

type demo struct {
	out    io.Writer
	logger *slog.Logger
	rng    *mrand.Rand
	seed   uint64
	dir    string

	hubCfg  HubConfig
	hub     *HubMain
	agents  map[string]*AgentMain
	cfgs    map[string]AgentConfig
	members []string
	tokens  map[string]string // member -> QR token
	link    *faultnet.Link

	approved []string // every delta id a cashier or the online channel was told about
	sum      DemoSummary
	order    int
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) run(ctx context.Context) (DemoSummary, error) {
	start := time.Now()
	d.sum = DemoSummary{Seed: d.seed, RetriesMatched: true, Mismatches: []string{}}
	dir, err := os.MkdirTemp("", "loyalty-demo-")
	if err != nil {
		return d.sum, err
	}
	d.dir = dir
	defer os.RemoveAll(dir)
	defer d.closeAll()

	if err := d.setup(ctx); err != nil {
		return d.sum, fmt.Errorf("setup: %w", err)
	}
	steps := []struct {
		title string
		fn    func(context.Context) error
	}{
		{"1. Both stores online: sales and redemptions, each POS call sent twice", d.online},
		{"2. The south store is cut off; it keeps earning and redeeming offline", d.outage},
		{"3. The north agent dies after the hub applied its batch but before it recorded the ack", d.crash},
		{"4. The hub restarts", d.hubRestart},
		{"5. The network heals; everyone catches up", d.heal},
	}
	for _, s := range steps {
		d.say("\n%s", s.title)
		if err := s.fn(ctx); err != nil {
			return d.sum, fmt.Errorf("%s: %w", s.title, err)
		}
	}
	if err := d.verify(ctx); err != nil {
		return d.sum, err
	}
	d.sum.DurationMS = time.Since(start).Milliseconds()
	return d.sum, nil
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
	if _, err := h.SetProgram(ctx, demoProgram(time.Now())); err != nil {
		return err
	}

	var err error
	if d.link, err = faultnet.NewLink(d.hubCfg.Listen); err != nil {
		return err
	}
	d.agents, d.cfgs, d.tokens = map[string]*AgentMain{}, map[string]AgentConfig{}, map[string]string{}
	for _, id := range []string{"north", "south"} {
		_, token, err := h.CreateStore(ctx, id, id+" store")
		if err != nil {
			return err
		}
		cfg := DefaultAgentConfig()
		cfg.StoreID, cfg.Token, cfg.Listen = id, token, "127.0.0.1:0"
		cfg.Database = filepath.Join(d.dir, id+".db")
		cfg.HubURL = "ws://" + d.hubCfg.Listen + "/v1/sync"
		if id == "south" {
			cfg.HubURL = "ws://" + d.link.Addr() + "/v1/sync" // through a link we can cut
		}
		cfg.Sync.MinBackoff, cfg.Sync.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
		d.cfgs[id] = cfg
		if err := d.startAgent(ctx, id, nil); err != nil {
			return err
		}
	}
	d.sum.Stores = len(d.agents)
	for i := range 12 {
		home := "north"
		if i%2 == 1 {
			home = "south"
		}
		m, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("m%02d", i+1), Name: fmt.Sprintf("Member %d", i+1), HomeStore: home})
		if err != nil {
			return err
		}
		if d.tokens[m.ID], err = h.MemberToken(ctx, m.ID); err != nil {
			return err
		}
		d.members = append(d.members, m.ID)
	}
	d.sum.Members = len(d.members)
	d.say("Hub on %s; stores north and south; %d members with signed QR codes.", d.hubCfg.Listen, len(d.members))
	d.say("Program: 1 point per euro, 3 per euro on coffee; Silver from 300 EUR spent (1.5x), Gold from 1000 EUR (2x);")
	d.say("opening-week double points running now; espresso punch card: buy 5, the next coffee is free.")
	return d.waitSynced(ctx)
}

func (d *demo) startAgent(ctx context.Context, id string, beforeAck func(*lsync.Ack) error) error {
	m := &AgentMain{Config: d.cfgs[id], Logger: d.logger, BeforeAck: beforeAck}
	if err := m.Open(ctx); err != nil {
		return err
	}
	d.agents[id] = m
	return nil
}

// waitSynced waits until every agent is online, has an empty outbox and has pulled up to the
// hub's current change version.
func (d *demo) waitSynced(ctx context.Context) error {
	return waitFor(ctx, 20*time.Second, func() (bool, string) {
		var hv int64
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

// pos sends one POS call twice (a retry after a timeout) and checks the retry got the same answer.
func (d *demo) pos(store, path string, body any, out any) (int, error) {
	b, _ := json.Marshal(body)
	url := d.agents[store].HTTP.URL() + path
	var first []byte
	var status int
	for attempt := range 2 {
		resp, err := http.Post(url, "application/json", bytes.NewReader(b))
		if err != nil {
			return 0, err
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if attempt == 0 {
			first, status = got, resp.StatusCode
			continue
		}
		d.sum.POSRetries++
		if status == http.StatusOK && !bytes.Equal(first, got) {
			d.sum.RetriesMatched = false
		}
	}
	if status != http.StatusOK {
		return status, nil
	}
	return status, json.Unmarshal(first, out)
}

func (d *demo) nextOrder(store string) string {
	d.order++
	return fmt.Sprintf("%s-%04d", store, d.order)
}

// sale rings up a sale of a random member at store and returns whether it was approved offline.
func (d *demo) sale(store string) (offline bool, err error) {
	m := d.members[d.rng.IntN(len(d.members))]
	espressos := d.rng.Int64N(3)
	rest := 500 + d.rng.Int64N(15000)
	lines := []loyalty.Line{{SKU: "groceries", Qty: 1, Amount: rest}}
	if espressos > 0 {
		lines = append(lines, loyalty.Line{SKU: "espresso", Category: "coffee", Qty: espressos, Amount: 250 * espressos})
	}
	req := loyalty.EarnRequest{OrderID: d.nextOrder(store), Terminal: "till-1", QR: d.tokens[m],
		Amount: loyalty.Money(rest + 250*espressos), Currency: "EUR", Lines: lines}
	var r loyalty.Receipt
	status, err := d.pos(store, "/v1/earn", req, &r)
	if err != nil {
		return false, err
	} else if status != http.StatusOK {
		return false, fmt.Errorf("earn at %s: HTTP %d", store, status)
	}
	d.approved = append(d.approved, r.Deltas...)
	if r.Earn != nil {
		if r.Earn.CampaignBonus > 0 && d.sum.CampaignBonus == 0 {
			d.say("   %s at %s: %s points (%s)", r.OrderID, store, fmt.Sprint(r.Points), r.Earn.Describe())
		}
		d.sum.CampaignBonus += r.Earn.CampaignBonus
	}
	for _, rw := range r.PunchRewards {
		if d.sum.PunchRewards == 0 {
			d.say("   %s filled the espresso card at %s: give them a %s", m, store, rw.Name)
		}
		d.sum.PunchRewards++
	}
	return r.Offline, nil
}

// redeem tries to redeem a coffee for a random member; too few points is a normal refusal.
func (d *demo) redeem(store string) (approved, offline bool, err error) {
	m := d.members[d.rng.IntN(len(d.members))]
	req := loyalty.RedeemRequest{OrderID: d.nextOrder(store), Terminal: "till-2", QR: d.tokens[m], RewardID: "coffee"}
	var r loyalty.Receipt
	status, err := d.pos(store, "/v1/redeem", req, &r)
	if err != nil || status == http.StatusUnprocessableEntity {
		return false, false, err
	} else if status != http.StatusOK {
		return false, false, fmt.Errorf("redeem at %s: HTTP %d", store, status)
	}
	d.approved = append(d.approved, r.Deltas...)
	return true, r.Offline, nil
}

func (d *demo) online(ctx context.Context) error {
	sales, redemptions := 0, 0
	for range 20 {
		for _, s := range []string{"north", "south"} {
			if _, err := d.sale(s); err != nil {
				return err
			}
			sales++
		}
	}
	for range 6 {
		for _, s := range []string{"north", "south"} {
			ok, _, err := d.redeem(s)
			if err != nil {
				return err
			}
			if ok {
				redemptions++
			}
		}
	}
	// The online channel earns too (e-commerce order), straight at the hub.
	r, err := d.hub.Hub.Earn(ctx, loyalty.EarnRequest{OrderID: "web-1", MemberID: d.members[0], Amount: 4999, Currency: "EUR"})
	if err != nil {
		return err
	}
	d.approved = append(d.approved, r.Deltas...)
	d.say("   %d sales and %d redemptions at the tills, 1 web order; every retry got its first answer: %v", sales, redemptions, d.sum.RetriesMatched)
	return d.waitSynced(ctx)
}

func (d *demo) outage(ctx context.Context) error {
	d.link.Cut()
	if err := waitFor(ctx, 10*time.Second, func() (bool, string) {
		return !d.agents["south"].Client.Status().Online, "south still online"
	}); err != nil {
		return err
	}
	for range 25 {
		off, err := d.sale("south")
		if err != nil {
			return err
		}
		if off {
			d.sum.OfflineSales++
		}
		if _, err := d.sale("north"); err != nil {
			return err
		}
	}
	for range 8 {
		ok, off, err := d.redeem("south")
		if err != nil {
			return err
		}
		if ok && off {
			d.sum.OfflineRedemptions++
		}
	}
	st, _ := d.agents["south"].Agent.Status(ctx)
	d.say("   south approved %d sales and %d redemptions offline; %d deltas wait in its outbox", d.sum.OfflineSales, d.sum.OfflineRedemptions, st.Outbox)
	return nil
}

func (d *demo) crash(ctx context.Context) error {
	crashed := make(chan struct{})
	var once sync.Once
	north := d.agents["north"]
	north.Client.Faults.BeforeAck = func(*lsync.Ack) error {
		once.Do(func() { close(crashed) })
		return fmt.Errorf("simulated crash before recording the ack")
	}
	for range 5 {
		if _, err := d.sale("north"); err != nil {
			return err
		}
	}
	select {
	case <-crashed:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("north never received an ack")
	}
	if err := north.Close(); err != nil {
		return err
	}
	pending, applied, err := d.outboxAtHub(ctx, d.cfgs["north"].Database)
	if err != nil {
		return err
	}
	d.say("   north died with %d deltas in its outbox, %d of them already applied by the hub; restarting it from its SQLite file", pending, applied)
	d.sum.AgentRestarts++
	return d.startAgent(ctx, "north", nil)
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
	d.say("   hub back on %s with the same database; agents reconnect with backoff", d.hubCfg.Listen)
	return nil
}

func (d *demo) heal(ctx context.Context) error {
	d.link.Heal()
	if err := d.waitSynced(ctx); err != nil {
		return err
	}
	d.say("   every outbox is empty and every replica is at the hub's newest change")
	return nil
}

func (d *demo) verify(ctx context.Context) error {
	h := d.hub.Hub
	for _, a := range d.agents {
		d.sum.DuplicatesIgnored += a.Client.Status().Duplicates
	}
	err := d.hub.Store.View(ctx, func(tx hub.Tx) error {
		seen := map[string]bool{}
		for _, id := range d.approved {
			if seen[id] {
				continue
			}
			seen[id] = true
			if _, err := tx.Delta(ctx, id); loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
				d.sum.Lost++
			} else if err != nil {
				return err
			}
		}
		d.sum.DeltasCreated = len(seen)
		for _, m := range d.members {
			n, err := tx.Ledger(ctx, m, 1_000_000)
			if err != nil {
				return err
			}
			for _, e := range n {
				if e.Kind == loyalty.KindTier {
					d.sum.TierUpgrades++ // made by the hub, not by a till: not in deltas_applied
				} else {
					d.sum.DeltasApplied++
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	check, err := h.Check(ctx)
	if err != nil {
		return err
	}
	d.sum.Mismatches = append(d.sum.Mismatches, check.Mismatches...)
	for _, m := range d.members {
		hm, err := h.Member(ctx, m, 0)
		if err != nil {
			return err
		}
		for id := range d.agents {
			var s agent.ScanResult
			if status, err := d.pos(id, "/v1/scan", agent.ScanRequest{QR: d.tokens[m]}, &s); err != nil || status != http.StatusOK {
				return fmt.Errorf("scan %s at %s: HTTP %d %v", m, id, status, err)
			}
			if s.Balance != hm.Balance {
				d.sum.Mismatches = append(d.sum.Mismatches, fmt.Sprintf("%s at %s: agent %d, hub %d", m, id, s.Balance, hm.Balance))
			}
		}
	}
	tiers := map[string]int{}
	for _, m := range d.members {
		hm, err := h.Member(ctx, m, 0)
		if err != nil {
			return err
		}
		tiers[hm.Tier]++
	}
	d.say("\nTiers after the day: %d Member, %d Silver, %d Gold (%d upgrades ledgered by the hub)", tiers["member"], tiers["silver"], tiers["gold"], d.sum.TierUpgrades)
	conflicts, err := h.Conflicts(ctx, 1000)
	if err != nil {
		return err
	}
	d.sum.Conflicts = len(conflicts)
	d.sum.BalancesMatch = len(d.sum.Mismatches) == 0
	return nil
}

// demoProgram is the demo's loyalty program: category rates, tiers, a campaign running now and a
// punch card.
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
	return p
}
