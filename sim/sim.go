// Package sim is a deterministic fault simulator for loyalty edge sync. It runs the real hub
// and agent logic on real SQLite files, with a virtual clock and a virtual network, and checks
// the guarantees listed at the top of the README after every step and after healing.
//
// Everything happens on one goroutine, in an order drawn from a seeded random generator, so a
// failing seed replays exactly. The network is simulated at the message level: each store's
// session runs the real sync client and server state machines (sync.Client.Step and
// sync.Server.Step), and the simulator carries every encoded message from one to the other, or
// loses, repeats or delays it. Only the goroutines and timers of Run and Serve are left out; they
// are tested in package sync and end to end.
//
// Hostile stores (hostile.go) run alongside the honest ones: registered stores that speak the
// protocol themselves (wire.go) and push forged deltas through the same server. None of their
// forgeries may be applied or move a balance, a ledger or a budget.
//
// The outage profile (outage.go) asks another question of the same code: how much of what stores
// cut off for hours are asked for, within the chain-wide budgets, they can approve on their own
// (docs/BUDGETS.md, "Availability: the outage profile"). Its stores keep their sessions open
// (live.go), as connected agents do.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	gosync "sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Config sets up one run.
type Config struct {
	Seed    uint64
	Stores  int
	Members int
	Steps   int
	Dir     string // where the run's SQLite files go; empty: a temporary directory
	// Broken makes the hub ignore quota already leased out when it grants leases and accepts
	// online spending, so tests can show that the checker catches an overspend.
	Broken bool
	// Hostile is how many extra registered stores push forged deltas (see hostile.go); 0: none.
	Hostile int
	// Forgeries are the kinds of forgery hostile stores draw from; empty: all.
	Forgeries []Forgery
}

// DefaultConfig returns a run of 3 stores, 2 hostile stores, 6 members and 200 steps.
func DefaultConfig(seed uint64) Config {
	return Config{Seed: seed, Stores: 3, Members: 6, Steps: 200, Hostile: 2}
}

// Result is what one run found.
type Result struct {
	Seed       uint64   `json:"seed"`
	Violations []string `json:"violations"`
	Stats      Stats    `json:"stats"`
	// OffTarget lists (up to 20) forged deltas the hub refused for another reason than their
	// forgery: safe, but the forgery did not test what it meant to.
	OffTarget []string `json:"off_target,omitempty"`
}

// Stats counts what happened in a run.
type Stats struct {
	Steps              int   `json:"steps"`
	Deltas             int   `json:"deltas"`
	OfflineAttempts    int   `json:"offline_redeem_attempts"` // redemptions tried at a store that was cut off
	OfflineApproved    int   `json:"offline_redeem_approved"` // of which approved locally (within lease and limits)
	OfflineNoQuota     int   `json:"offline_refused_quota"`   // refused: no lease quota left, or the lease expired
	OfflinePolicy      int   `json:"offline_refused_policy"`  // refused: online-only reward, offline daily limit, switched off
	OfflineNoPoints    int   `json:"offline_refused_points"`  // refused: not enough points in the store's view
	StrandedBeforeHeal int64 `json:"stranded_before_heal"`    // unspent quota in expired leases, before the final heal
	StrandedAfter      int64 `json:"stranded_after"`          // the same after healing and syncing: must be 0
	Conflicts          int   `json:"conflicts"`
	Crashes            int   `json:"crashes"`
	HubRestarts        int   `json:"hub_restarts"`
	Partitions         int   `json:"partitions"`
	DuplicatePushes    int   `json:"duplicate_pushes"`
	LateRedeliveries   int   `json:"late_redeliveries"`
	KillSwitches       int   `json:"kill_switches"`

	// Hostile stores (hostile.go).
	HostileSessions  int           `json:"hostile_sessions"`
	HostilePushes    int           `json:"hostile_pushes"`     // pushes of forged deltas
	HostileForged    int           `json:"hostile_forged"`     // forged deltas in them
	HostileApplied   int           `json:"hostile_applied"`    // forged deltas the hub applied or called duplicates: must be 0
	HostileMoved     int           `json:"hostile_moved"`      // hostile pushes after which a balance, ledger or budget had moved: must be 0
	HostileOffTarget int           `json:"hostile_off_target"` // forged deltas rejected for another reason than their forgery
	HostileControls  int           `json:"hostile_controls"`   // honest deltas the hostile stores pushed too (must be applied)
	Forged           ForgeryCounts `json:"forged"`             // forged deltas per kind
	ForgedOnTarget   ForgeryCounts `json:"forged_on_target"`   // of which rejected for the forged claim itself
	ForgedApplied    ForgeryCounts `json:"forged_applied"`     // of which applied: must be all 0
}

const leaseTTL, leaseMargin = 10 * time.Minute, 30 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type store struct {
	id   string
	path string
	st   *agentsqlite.Store
	ag   *agent.Agent
	link bool
	w    *world
	live *liveSession // a session kept open, as a connected agent keeps it (outage profile); nil: one session per sync
	// offsetMS is the agent's clock offset (hub's clock minus its own, in ms) as its last session
	// measured it from a round trip. The hub and the agents share the virtual clock, so all of it
	// is the measurement's error (clockError); the agent dates its changes by it.
	offsetMS int64
}

// Kick implements agent.Syncer; the simulator decides when stores sync.
func (s *store) Kick() {}

// Status implements agent.Syncer.
func (s *store) Status() lsync.Status {
	return lsync.Status{Online: s.link, Sessions: 1, ClockOffsetMS: s.offsetMS}
}

// Subscribe implements agent.Syncer: Lookup without a voucher or a scanned code.
func (s *store) Subscribe(ctx context.Context, member string) (*loyalty.Member, error) {
	m, _, err := s.Lookup(ctx, member, "", "")
	return m, err
}

var _ agent.Looker = (*store)(nil)

// Lookup implements agent.Looker, as the sync client does: a subscribe message with the scanned
// code, in a session of its own (or the live one). The agent's deadline is dropped: the simulated
// network runs in virtual time, and a real-time deadline would make a seed's outcome depend on
// how busy the machine is.
func (s *store) Lookup(ctx context.Context, member, voucher, qr string) (*loyalty.Member, *lsync.Standing, error) {
	if !s.link {
		return nil, nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
	}
	ctx = context.WithoutCancel(ctx)
	req := &lsync.Subscribe{Member: member, Voucher: voucher, QR: qr}
	if s.live != nil {
		return s.w.liveSubscribe(ctx, s, req)
	}
	c, err := s.w.dial(ctx, s.id)
	if err != nil {
		return nil, nil, err
	}
	defer c.close(ctx)
	r, err := c.call(ctx, &lsync.Message{Type: lsync.TypeSubscribe, Subscribe: req})
	if err != nil {
		return nil, nil, err
	}
	if r.Type != lsync.TypeMember {
		return nil, nil, fmt.Errorf("a subscribe answered with %s", r.Type)
	}
	return r.Member, r.Standing, s.st.ApplyMember(ctx, r.Member)
}

// Refresh implements agent.Syncer: a session without faults, in virtual time (see Subscribe).
func (s *store) Refresh(ctx context.Context) error {
	if !s.link {
		return loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
	}
	if s.live != nil {
		return s.w.heartbeat(context.WithoutCancel(ctx), s)
	}
	return s.w.syncWith(context.WithoutCancel(ctx), s, false)
}

// lateBatch is a copy of a push message that reaches the hub again later, in another session.
type lateBatch struct {
	store string
	msg   []byte
}

type world struct {
	cfg    Config
	rng    *rand.Rand
	now    time.Time
	dir    string
	res    *Result
	hubDB  *hubsqlite.Store
	hub    *hub.Hub
	server *lsync.Server
	stores []*store

	storeTokens map[string]string
	kek         *seal.Box // the hub's key-encryption key, across restarts

	members  []string
	tokens   map[string]string
	vouchers []string
	orders   [][2]string      // store, order id: candidates for refunds
	approved map[string]bool  // every delta id a receipt reported
	expected map[string]int64 // per member: sum of receipt points
	offline  map[[3]string]int64
	late     []lateBatch
	order    int

	over     map[string]bool // budgets over their limit at the last check
	hostile  []*hostile
	programs map[int64]*loyalty.Program // rule versions, read once

	leases hub.LeaseConfig // the hub's lease settings
	ticks  int64           // nanoseconds the sync server's clock has moved on from now (serverClock)
}

func (w *world) clock() time.Time { return w.now }

// serverClock is the sync server's clock: the virtual time, moved on by a nanosecond at every
// reading, so that two sessions never start at the same instant, as on a real clock. The hub
// tells a store's sessions apart by when they started (it confirms a lease reclaim only in the
// session that told it).
func (w *world) serverClock() time.Time {
	w.ticks++
	return w.now.Add(time.Duration(w.ticks))
}

// clockError draws the error of an agent's estimate of the hub's clock at a session: none half
// the time, else up to 6 s either way (half of a 12 s round trip: a store on a poor mobile link;
// a step of the simulation moves the clock 1 to 5 s, so a change in the step after the store
// heard of something can be dated before it). An honest store's change dated by it must be
// taken as one dated right: the hub's checks of times it told the store (a tier reached, a lease
// granted, a rule version published) give a store's clock that leeway. A sale made just after
// the store heard of a member's upgrade, dated just before it, was refused once.
func (w *world) clockError() int64 {
	if w.rng.IntN(2) == 0 {
		return 0
	}
	return w.rng.Int64N(12_001) - 6_000
}

func (w *world) violate(format string, args ...any) {
	w.res.Violations = append(w.res.Violations, fmt.Sprintf("step %d: ", w.res.Stats.Steps)+fmt.Sprintf(format, args...))
}

// Run runs one simulation and checks it. An error means the simulator itself could not run
// (a file could not be created); broken guarantees are Violations.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	dir, done, err := runDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer done()
	w := newWorld(cfg, dir, time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	// Short leases, and a short demand window, so that within a run of an hour or two leases
	// expire, stores' demand is known and idle quota is reclaimed, under every fault.
	w.leases = hub.LeaseConfig{TTL: leaseTTL, Margin: leaseMargin, Min: 1, Share: 0.1, DemandWindow: time.Hour, ExpectedOutage: 15 * time.Minute}
	defer w.close()
	if err := w.setup(ctx); err != nil {
		return nil, err
	}
	for range cfg.Steps {
		w.res.Stats.Steps++
		w.now = w.now.Add(time.Duration(1+w.rng.IntN(5)) * time.Second)
		if err := w.step(ctx); err != nil {
			return nil, fmt.Errorf("seed %d step %d: %w", cfg.Seed, w.res.Stats.Steps, err)
		}
		if len(w.hostile) > 0 && w.rng.IntN(100) < hostileRate {
			if err := w.hostileSession(ctx, w.hostile[w.rng.IntN(len(w.hostile))]); err != nil {
				return nil, fmt.Errorf("seed %d step %d (hostile): %w", cfg.Seed, w.res.Stats.Steps, err)
			}
		}
		if err := w.checkBudgets(ctx); err != nil {
			return nil, err
		}
	}
	if err := w.finish(ctx); err != nil {
		return nil, fmt.Errorf("seed %d finish: %w", cfg.Seed, err)
	}
	return w.res, nil
}

// newWorld returns a world for a run of cfg in dir, starting at start.
func newWorld(cfg Config, dir string, start time.Time) *world {
	return &world{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), dir: dir,
		now: start, res: &Result{Seed: cfg.Seed, Violations: []string{}},
		tokens: map[string]string{}, storeTokens: map[string]string{}, kek: seal.NewRandom(), approved: map[string]bool{}, expected: map[string]int64{}, offline: map[[3]string]int64{},
		over: map[string]bool{}}
}

// Program is the simulated loyalty program: budgets small enough to run out, an offline limit
// and an online-only reward; tiers members climb during a run and a daytime campaign (read in
// each store's registered time zone), so forged tiers and time zones have something to gain; and
// a percent-off reward, which the simulated tills never offer (they send no order amount) but a
// hostile store can try to redeem without one.
func Program() loyalty.Program {
	p := loyalty.DefaultProgram()
	p.Rewards[0].Offline = loyalty.OfflineAllow                             // coffee, 50
	p.Rewards[1].Offline, p.Rewards[1].OfflineMax = loyalty.OfflineLimit, 1 // five-off, 100
	p.Rewards[2].Offline = loyalty.OfflineDeny                              // tote, 250
	p.Rewards = append(p.Rewards, loyalty.Reward{ID: "ten-pct", Name: "10% off", PointsCost: 150, Kind: "percent_off", Value: 10, MaxValue: 500})
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
		{ID: "bronze", Name: "Bronze", Threshold: 0, Multiplier: 1000},
		{ID: "silver", Name: "Silver", Threshold: 60000, Multiplier: 1250},
		{ID: "gold", Name: "Gold", Threshold: 250000, Multiplier: 1500},
	}}
	p.Campaigns = []loyalty.Campaign{{ID: "daytime", Name: "Daytime bonus", Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), From: "06:00", To: "20:00", Multiplier: 1500},
		// A country's campaign: what a forged country claim would be after (ForgedCountry).
		{ID: "fr-members", Name: "FR members' bonus", Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			End: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Bonus: 15, Segment: loyalty.Segment{Countries: []string{"FR"}}}}
	p.Budgets = []loyalty.Budget{
		{ID: "coffee-count", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 12},
		{ID: "discount", Metric: loyalty.MetricDiscount, Limit: 3000},
		{ID: "points", Metric: loyalty.MetricPointsIssued, Limit: 40000},
	}
	p.MemberLimits = []loyalty.MemberLimit{{Reward: "five-off", Period: loyalty.PeriodWeek, Max: 3}}
	p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 600}}
	return p
}

func (w *world) openHub(ctx context.Context) error {
	s, err := hubsqlite.OpenWith(ctx, filepath.Join(w.dir, "hub.db"), sqlitedb.Options{NoSync: true})
	if err != nil {
		return err
	}
	h := hub.New(s)
	h.Logger, h.Now, h.KEK = quiet, w.clock, w.kek
	h.Lease = w.leases
	h.Faults.IgnoreOutstanding = w.cfg.Broken
	if err := h.Init(ctx); err != nil {
		s.Close()
		return err
	}
	srv := lsync.NewServer(h)
	srv.Logger, srv.Now = quiet, w.serverClock
	w.hubDB, w.hub, w.server = s, h, srv
	return nil
}

func (w *world) openStore(ctx context.Context, s *store) error {
	st, err := agentsqlite.OpenWith(ctx, s.path, sqlitedb.Options{NoSync: true})
	if err != nil {
		return err
	}
	st.Now = w.clock
	a := agent.New(s.id, st, s)
	a.Logger, a.Now = quiet, w.clock
	s.st, s.ag = st, a
	return nil
}

func (w *world) close() {
	for _, s := range w.stores {
		if s.st != nil {
			s.st.Close()
		}
	}
	if w.server != nil {
		w.server.Close()
	}
	if w.hubDB != nil {
		w.hubDB.Close()
	}
}

func (w *world) setup(ctx context.Context) error {
	if err := w.openHub(ctx); err != nil {
		return err
	}
	if _, err := w.hub.SetProgram(ctx, Program()); err != nil {
		return err
	}
	for i := range w.cfg.Stores {
		id := fmt.Sprintf("s%d", i+1)
		_, token, err := w.hub.CreateStore(ctx, id, "")
		if err != nil {
			return err
		}
		w.storeTokens[id] = token
		s := &store{id: id, path: filepath.Join(w.dir, id+".db"), link: true, w: w}
		if err := w.openStore(ctx, s); err != nil {
			return err
		}
		w.stores = append(w.stores, s)
	}
	for i := range w.cfg.Members {
		m, err := w.hub.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("m%d", i+1), HomeStore: w.stores[i%len(w.stores)].id,
			Country: countries[i%len(countries)]})
		if err != nil {
			return err
		}
		if w.tokens[m.ID], err = w.hub.MemberToken(ctx, m.ID); err != nil {
			return err
		}
		w.members = append(w.members, m.ID)
		r, err := w.hub.Earn(ctx, loyalty.EarnRequest{OrderID: "welcome-" + m.ID, MemberID: m.ID, Amount: 20000, Currency: "EUR"})
		if err != nil {
			return err
		}
		w.record(r)
	}
	for _, s := range w.stores {
		if err := w.sync(ctx, s); err != nil {
			return err
		}
	}
	return w.setupHostile(ctx)
}

var countries = []string{"FR", "DE", "NL"}

func (w *world) record(r loyalty.Receipt) {
	if len(r.Deltas) > 0 && w.approved[r.Deltas[0]] {
		return // a replay of an earlier answer (the same order again): nothing new happened
	}
	w.expected[r.Member] += r.Points
	for _, id := range r.Deltas {
		w.approved[id] = true
	}
	w.res.Stats.Deltas += len(r.Deltas)
}

// refused tells a normal refusal (a cashier reads it) from a failure of the system.
func refused(err error) bool {
	switch loyalty.ErrorCode(err) {
	case loyalty.EINSUFFICIENT, loyalty.EBUDGET, loyalty.EUNAVAILABLE, loyalty.ECONFLICT, loyalty.ENOTFOUND:
		return true
	}
	return false
}

func (w *world) pick() *store { return w.stores[w.rng.IntN(len(w.stores))] }
func (w *world) member() string {
	return w.members[w.rng.IntN(len(w.members))]
}

func (w *world) nextOrder(prefix string) string {
	w.order++
	return fmt.Sprintf("%s-%d", prefix, w.order)
}

// step does one random thing.
func (w *world) step(ctx context.Context) error {
	switch n := w.rng.IntN(100); {
	case n < 28:
		return w.sale(ctx, w.pick())
	case n < 48:
		return w.redeem(ctx, w.pick())
	case n < 51:
		r, err := w.hub.Earn(ctx, loyalty.EarnRequest{OrderID: w.nextOrder("web"), MemberID: w.member(), Amount: loyalty.Money(100 + w.rng.Int64N(5000)), Currency: "EUR"})
		return w.outcome(r, err)
	case n < 55:
		r, err := w.hub.Redeem(ctx, loyalty.RedeemRequest{OrderID: w.nextOrder("web"), MemberID: w.member(), RewardID: rewards[w.rng.IntN(len(rewards))]})
		return w.outcome(r, err)
	case n < 58:
		v, err := w.hub.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: w.nextOrder("web"), MemberID: w.member(), RewardID: "coffee"})
		if err == nil {
			w.vouchers = append(w.vouchers, v.Voucher.Token)
		}
		return w.outcome(v.Receipt, err)
	case n < 62:
		return w.useVoucher(ctx)
	case n < 65:
		return w.refund(ctx)
	case n < 70:
		if s := w.pick(); s.link {
			s.link = false
			w.res.Stats.Partitions++
		}
	case n < 77:
		s := w.pick()
		s.link = true
		return w.sync(ctx, s)
	case n < 90:
		return w.sync(ctx, w.pick())
	case n < 92:
		return w.crash(ctx, w.pick())
	case n < 93:
		w.server.Close()
		w.hubDB.Close()
		w.res.Stats.HubRestarts++
		return w.openHub(ctx)
	case n < 96:
		w.now = w.now.Add(time.Duration(w.rng.IntN(120)) * time.Second)
		_, err := w.hub.ExpireLeases(ctx)
		return err
	case n < 97:
		w.now = w.now.Add(leaseTTL + leaseMargin + time.Duration(w.rng.IntN(3600))*time.Second)
		_, err := w.hub.ExpireLeases(ctx)
		return err
	case n < 98:
		return w.toggleKill(ctx)
	default:
		return w.redeliver(ctx)
	}
	return nil
}

var rewards = []string{"coffee", "five-off", "tote"}

func (w *world) outcome(r loyalty.Receipt, err error) error {
	if err == nil {
		w.record(r)
		return nil
	} else if refused(err) {
		return nil
	}
	return err
}

func (w *world) sale(ctx context.Context, s *store) error {
	m := w.member()
	r, err := s.ag.Earn(ctx, loyalty.EarnRequest{OrderID: w.nextOrder(s.id), QR: w.tokens[m], Amount: loyalty.Money(100 + w.rng.Int64N(15000)), Currency: "EUR"})
	if err == nil {
		w.orders = append(w.orders, [2]string{s.id, r.OrderID})
	}
	return w.outcome(r, err)
}

func (w *world) redeem(ctx context.Context, s *store) error {
	m := w.member()
	reward := rewards[w.rng.IntN(len(rewards))]
	if !s.link {
		w.res.Stats.OfflineAttempts++
	}
	r, err := s.ag.Redeem(ctx, loyalty.RedeemRequest{OrderID: w.nextOrder(s.id), QR: w.tokens[m], RewardID: reward})
	if !s.link && err != nil {
		switch msg := loyalty.ErrorMessage(err); {
		case loyalty.ErrorCode(err) == loyalty.EINSUFFICIENT:
			w.res.Stats.OfflineNoPoints++
		case strings.Contains(msg, "quota") || strings.Contains(msg, "share of budget"):
			w.res.Stats.OfflineNoQuota++
		default:
			w.res.Stats.OfflinePolicy++
		}
	}
	if err == nil {
		w.orders = append(w.orders, [2]string{s.id, r.OrderID})
		if r.Offline {
			w.res.Stats.OfflineApproved++
			day := loyalty.PeriodStart(loyalty.PeriodDay, w.now).Format(time.DateOnly)
			w.offline[[3]string{m, s.id + "/" + reward, day}]++
		}
	}
	return w.outcome(r, err)
}

func (w *world) useVoucher(ctx context.Context) error {
	if len(w.vouchers) == 0 {
		return nil
	}
	v := w.vouchers[w.rng.IntN(len(w.vouchers))]
	if w.rng.IntN(4) == 0 {
		r, err := w.hub.Redeem(ctx, loyalty.RedeemRequest{OrderID: w.nextOrder("web"), Voucher: v})
		return w.outcome(r, err)
	}
	s := w.pick()
	r, err := s.ag.Redeem(ctx, loyalty.RedeemRequest{OrderID: w.nextOrder(s.id), Voucher: v})
	return w.outcome(r, err)
}

func (w *world) refund(ctx context.Context) error {
	if len(w.orders) == 0 {
		return nil
	}
	o := w.orders[w.rng.IntN(len(w.orders))]
	for _, s := range w.stores {
		if s.id == o[0] {
			r, err := s.ag.Reverse(ctx, loyalty.ReverseRequest{OrderID: o[1]})
			return w.outcome(r, err)
		}
	}
	return nil
}

func (w *world) toggleKill(ctx context.Context) error {
	p, err := w.hub.Program(ctx)
	if err != nil {
		return err
	}
	i := w.rng.IntN(len(p.Rewards))
	p.Rewards[i].Disabled = !p.Rewards[i].Disabled
	w.res.Stats.KillSwitches++
	_, err = w.hub.SetProgram(ctx, p)
	return err
}

func (w *world) crash(ctx context.Context, s *store) error {
	w.res.Stats.Crashes++
	s.st.Close()
	return w.openStore(ctx, s)
}

// sync runs one session for a connected store, with faults.
func (w *world) sync(ctx context.Context, s *store) error { return w.syncWith(ctx, s, true) }

// errDied ends a session as if the agent died between the hub's commit and recording the ack.
var errDied = errors.New("the agent died before it recorded the ack")

// syncWith runs one session between store s and the hub through the real sync state machines
// (sync.Client and sync.Server, stepped by hand over mailboxes): hello and welcome, the whole
// outbox in pushes of a random size, then pulls until the change feed has nothing more. With
// faults, a push may reach the hub twice (the second answer is lost), a copy of it may be kept to
// arrive late in another session, or the agent may die after the hub's commit and before it
// records the ack.
func (w *world) syncWith(ctx context.Context, s *store, faults bool) error {
	if !s.link {
		return nil
	}
	s.offsetMS = w.clockError()
	c := lsync.NewClient("sim://"+s.id, s.id, w.storeTokens[s.id], nil, s.st)
	c.Logger, c.Now, c.BatchSize, c.AgentVersion = quiet, w.clock, 1+w.rng.IntN(20), "sim"
	c.Faults.BeforeAck = func(ack *lsync.Ack) error {
		w.checkAck(s, ack, false)
		if faults && w.rng.IntN(100) < 3 {
			return errDied
		}
		return nil
	}
	toHub, toAgent := &lsync.Mailbox{}, &lsync.Mailbox{}
	cs, err := c.Step(ctx, toHub)
	if err != nil {
		return err
	}
	defer cs.Close()
	ss := w.server.Step(toAgent)
	defer ss.Close(ctx)
	var down [][]byte
	pushes, acks, more := 0, 0, true // the session must answer every push and end its pulls on a last page
	beat := false                    // a heartbeat was sent
	for {
		up := toHub.Take()
		for _, b := range up {
			m, err := lsync.Decode(b)
			if err != nil {
				return fmt.Errorf("store %s: the agent sent a message it cannot decode: %w", s.id, err)
			}
			if err := ss.Deliver(ctx, b); err != nil {
				return fmt.Errorf("store %s: the hub ended the session: %w", s.id, err)
			}
			down = append(down, toAgent.Take()...)
			if m.Type != lsync.TypePush {
				continue
			}
			pushes++
			if !faults {
				continue
			}
			switch n := w.rng.IntN(100); {
			case n < 5:
				w.res.Stats.DuplicatePushes++
				if err := ss.Deliver(ctx, b); err != nil {
					return fmt.Errorf("store %s: the hub ended the session on a repeated push: %w", s.id, err)
				}
				w.checkAnswers(s, toAgent.Take())
			case n < 8:
				w.late = append(w.late, lateBatch{store: s.id, msg: b})
			}
		}
		if len(up) == 0 && len(down) == 0 {
			if acks != pushes || more {
				w.violate("store %s: a session went quiet with %d of %d pushes answered and the change feed unfinished (%v)", s.id, acks, pushes, more)
			}
			if faults && !beat && w.rng.IntN(2) == 0 {
				// A heartbeat in the same session: a second pull, at which the hub may confirm a
				// lease reclaim its first answer told the store (hub/leases.go).
				beat, more = true, true
				if err := cs.Heartbeat(ctx); err != nil {
					return fmt.Errorf("store %s: heartbeat: %w", s.id, err)
				}
				continue
			}
			return nil
		}
		for len(down) > 0 {
			b := down[0]
			down = down[1:]
			if m, err := lsync.Decode(b); err == nil && m.Type == lsync.TypeAck {
				acks++
			} else if err == nil && m.Type == lsync.TypeChanges {
				more = m.Changes.More
			}
			if err := cs.Deliver(ctx, b); errors.Is(err, errDied) {
				// The hub committed the pushes answered after this ack too: their results are
				// checked, though the agent never records them.
				for _, b := range down {
					if m, err := lsync.Decode(b); err == nil && m.Type == lsync.TypeAck {
						w.checkAck(s, m.Ack, false)
					}
				}
				cs.Close()
				ss.Close(ctx)
				return w.crash(ctx, s)
			} else if err != nil {
				return fmt.Errorf("store %s: the agent ended the session: %w", s.id, err)
			}
		}
	}
}

// checkAnswers checks the hub's answers to a push delivered again: one ack, every delta a duplicate.
func (w *world) checkAnswers(s *store, answers [][]byte) {
	if len(answers) != 1 {
		w.violate("store %s: a repeated push was answered with %d messages", s.id, len(answers))
		return
	}
	m, err := lsync.Decode(answers[0])
	if err != nil || m.Type != lsync.TypeAck {
		w.violate("store %s: a repeated push was answered with %s (%v)", s.id, answers[0], err)
		return
	}
	w.checkAck(s, m.Ack, true)
}

func (w *world) checkAck(s *store, ack *lsync.Ack, redelivery bool) {
	for _, r := range ack.Results {
		switch {
		case r.Status == lsync.StatusRejected:
			w.violate("store %s: delta %s rejected: %s %s", s.id, r.DeltaID, r.Code, r.Message)
		case redelivery && r.Status != lsync.StatusDuplicate:
			w.violate("store %s: redelivered delta %s was %s, want duplicate", s.id, r.DeltaID, r.Status)
		}
	}
}

func (w *world) redeliver(ctx context.Context) error {
	if len(w.late) == 0 {
		return nil
	}
	i := w.rng.IntN(len(w.late))
	b := w.late[i]
	w.late = append(w.late[:i], w.late[i+1:]...)
	w.res.Stats.LateRedeliveries++
	return w.deliverLate(ctx, b)
}

// deliverLate delivers a kept copy of a push in a session of its own, as a connection the store
// had given up on would, and checks that the hub applies none of it again.
func (w *world) deliverLate(ctx context.Context, b lateBatch) error {
	c, err := w.dial(ctx, b.store)
	if err != nil {
		return err
	}
	defer c.close(ctx)
	if err := c.ss.Deliver(ctx, b.msg); err != nil {
		return fmt.Errorf("store %s: the hub ended the session on a late push: %w", b.store, err)
	}
	w.checkAnswers(&store{id: b.store}, c.box.Take())
	return nil
}

// checkBudgets checks the escrow invariant: spent + outstanding leases <= limit, for every budget.
// A budget over its limit is reported when it goes over, not again at every step it stays over.
func (w *world) checkBudgets(ctx context.Context) error {
	bs, err := w.hub.Budgets(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		over := b.Spent+b.Outstanding > b.Limit
		if over && !w.over[b.ID] {
			w.violate("budget %s: spent %d + outstanding %d > limit %d", b.ID, b.Spent, b.Outstanding, b.Limit)
		}
		w.over[b.ID] = over
	}
	return nil
}

func (w *world) stranded(ctx context.Context) (int64, error) {
	bs, err := w.hub.Budgets(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, b := range bs {
		for _, l := range b.Leases {
			if l.State == hub.LeaseEnded {
				n += l.Outstanding()
			}
		}
	}
	return n, nil
}

// finish heals everything, lets every lease expire and settle, and checks the end state.
func (w *world) finish(ctx context.Context) error {
	var err error
	if w.res.Stats.StrandedBeforeHeal, err = w.stranded(ctx); err != nil {
		return err
	}
	for _, b := range w.late {
		if err := w.deliverLate(ctx, b); err != nil {
			return err
		}
	}
	for round := range 2 {
		for _, s := range w.stores {
			s.link = true
			if err := w.sync(ctx, s); err != nil {
				return err
			}
		}
		for _, h := range w.hostile {
			if err := w.hostilePull(ctx, h); err != nil {
				return err
			}
		}
		if round == 0 {
			w.now = w.now.Add(leaseTTL + leaseMargin + time.Second)
			if _, err := w.hub.ExpireLeases(ctx); err != nil {
				return err
			}
		}
	}
	// Sync in rounds until a whole round changes nothing at the hub and leaves every outbox
	// empty: a store that pushes late must still reach the stores that pulled before it.
	for rounds := 0; ; rounds++ {
		var before, after int64
		version := func(v *int64) error {
			return w.hubDB.View(ctx, func(tx hub.Tx) error {
				var err error
				*v, err = tx.CurrentVersion(ctx)
				return err
			})
		}
		if err := version(&before); err != nil {
			return err
		}
		left := int64(0)
		for _, s := range w.stores {
			if err := w.sync(ctx, s); err != nil {
				return err
			}
			n, err := s.st.PendingCount(ctx)
			if err != nil {
				return err
			}
			left += n
		}
		for _, h := range w.hostile {
			if err := w.hostilePull(ctx, h); err != nil {
				return err
			}
		}
		if err := version(&after); err != nil {
			return err
		}
		if left == 0 && after == before {
			break
		}
		if rounds > 100 {
			w.violate("no quiet round after 100: %d deltas in outboxes, hub version %d -> %d", left, before, after)
			break
		}
	}
	if w.res.Stats.StrandedAfter, err = w.stranded(ctx); err != nil {
		return err
	}
	if w.res.Stats.StrandedAfter != 0 {
		w.violate("%d units of quota still stranded after every store reconnected", w.res.Stats.StrandedAfter)
	}
	if err := w.checkBudgets(ctx); err != nil {
		return err
	}
	return w.checkEnd(ctx)
}

func (w *world) checkEnd(ctx context.Context) error {
	h := w.hub
	ledger := 0
	vouchers := map[string]int{}
	err := w.hubDB.View(ctx, func(tx hub.Tx) error {
		for id := range w.approved {
			if _, err := tx.Delta(ctx, id); loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
				w.violate("approved delta %s was lost", id)
			} else if err != nil {
				return err
			}
		}
		for _, m := range w.members {
			es, err := tx.Ledger(ctx, m, 1<<30)
			if err != nil {
				return err
			}
			for _, e := range es {
				if e.Kind == loyalty.KindTier && e.Store == loyalty.HubStore {
					if e.Points != 0 {
						w.violate("tier change %s of %s moved %d points", e.ID, m, e.Points)
					}
					continue // the hub's own record of a tier change, not a delta anyone approved
				}
				ledger++
				if e.Voucher != "" && e.Kind == loyalty.KindRedeem {
					if by, err := tx.ReversalOf(ctx, e.ID); err != nil {
						return err
					} else if by == "" {
						vouchers[e.Voucher]++
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if ledger != len(w.approved) {
		w.violate("the hub's ledger has %d entries, %d deltas were approved", ledger, len(w.approved))
	}
	check, err := h.Check(ctx)
	if err != nil {
		return err
	}
	for _, m := range check.Mismatches {
		w.violate("hub balance is not its ledger sum: %s", m)
	}
	conflicts, err := h.Conflicts(ctx, 1<<20)
	if err != nil {
		return err
	}
	w.res.Stats.Conflicts = len(conflicts)
	has := func(kind, member string) bool {
		for _, c := range conflicts {
			if c.Kind == kind && (member == "" || c.Member == member) {
				return true
			}
		}
		return false
	}
	for _, c := range conflicts {
		if c.Kind == hub.ConflictOverBudget || c.Kind == hub.ConflictUnleased {
			w.violate("conflict %s: %s", c.Kind, c.Detail)
		}
	}
	for _, m := range w.members {
		v, err := h.Member(ctx, m, 0)
		if err != nil {
			return err
		}
		if v.Balance != w.expected[m] {
			w.violate("%s: hub balance %d, the receipts add up to %d (not exactly once)", m, v.Balance, w.expected[m])
		}
		if v.Balance < 0 && !has(hub.ConflictOverdraft, m) {
			w.violate("%s is overdrawn (%d) and no conflict was recorded", m, v.Balance)
		}
		for _, s := range w.stores {
			err := s.st.View(ctx, func(tx agent.Tx) error {
				am, err := tx.Member(ctx, m)
				if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
					return nil // not in this store's replica
				} else if err != nil {
					return err
				}
				pending, err := tx.PendingPoints(ctx, m)
				if err != nil {
					return err
				}
				if am.Balance+pending != v.Balance {
					cur, _ := s.st.Cursor(ctx)
					w.violate("%s at %s: agent shows %d (version %d, pending %d, cursor %d), hub %d (version %d)",
						m, s.id, am.Balance+pending, am.Version, pending, cur, v.Balance, v.Version)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	for v, n := range vouchers {
		if n > 1 && !has(hub.ConflictVoucherReuse, "") {
			w.violate("voucher %s used %d times with no conflict recorded", v, n)
		}
	}
	p := Program()
	for k, n := range w.offline {
		reward := rewardOf(k[1])
		r, _ := p.Reward(reward)
		if r.Offline == loyalty.OfflineDeny {
			w.violate("%s redeemed %s offline at %s although it is online-only", k[0], reward, k[1])
		} else if r.Offline == loyalty.OfflineLimit && n > r.OfflineMax {
			w.violate("%s redeemed %s offline %d times on %s at one store; the limit is %d", k[0], reward, n, k[2], r.OfflineMax)
		}
	}
	return nil
}

func rewardOf(storeReward string) string {
	for i := len(storeReward) - 1; i >= 0; i-- {
		if storeReward[i] == '/' {
			return storeReward[i+1:]
		}
	}
	return storeReward
}

// RunSeeds runs seeds first, first+1, … first+n-1 on workers goroutines and calls report with
// each result as it finishes, in no particular order. It stops at the first error.
func RunSeeds(ctx context.Context, base Config, first uint64, n, workers int, report func(*Result)) error {
	seeds := make(chan uint64)
	errs := make(chan error, workers)
	results := make(chan *Result)
	var wg gosync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				cfg := base
				cfg.Seed = seed
				r, err := Run(ctx, cfg)
				if err != nil {
					errs <- err
					return
				}
				results <- r
			}
		}()
	}
	go func() {
		defer close(seeds)
		for i := range n {
			select {
			case seeds <- first + uint64(i):
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()
	var err error
	for r := range results {
		report(r)
	}
	select {
	case err = <-errs:
	default:
	}
	return err
}
