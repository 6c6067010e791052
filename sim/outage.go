package sim

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	gosync "sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// The outage profile measures availability rather than hunting for broken guarantees: a chain
// whose stores serve redemptions on a day curve, with budgets that end the run 30 to 70% used,
// where a fifth of the stores lose their line for eight hours in the middle of the second day.
// It asks how many of the redemptions the cut-off stores were asked for, and that the chain-wide
// budgets had room for, they could approve on their own (docs/BUDGETS.md, "Availability"). The
// first day gives the hub a day of each store's demand to size leases from. Every guarantee the
// adversarial runs check is checked here too.

// OutageConfig sets up one run of the outage profile (RunOutage).
type OutageConfig struct {
	Seed    uint64
	Stores  int           // stores in the chain
	Offline float64       // the share of stores cut off
	Outage  time.Duration // how long they are cut off, from OutageAt on the second day
	// LeaseTTL replaces the hub's leases.ttl (0: its default), to compare with the 15 minutes
	// leases had before they were sized for availability.
	LeaseTTL time.Duration
	Dir      string // where the run's SQLite files go; empty: a temporary directory
}

// OutageAt is when the outage starts on the second day, in UTC: the late morning.
const OutageAt = 10 * time.Hour

// DefaultOutageConfig returns the profile's run for seed: 10 stores, 2 of them cut off for 8
// hours.
func DefaultOutageConfig(seed uint64) OutageConfig {
	return OutageConfig{Seed: seed, Stores: 10, Offline: 0.2, Outage: 8 * time.Hour}
}

// OutageResult is what one run of the outage profile measured.
type OutageResult struct {
	Seed          uint64      `json:"seed"`
	Stores        int         `json:"stores"`
	OfflineStores []string    `json:"offline_stores"`
	Budgets       []BudgetUse `json:"budgets"`
	// Redemptions tried at the cut-off stores during the outage; of them, those the chain-wide
	// budgets had room for (by what every store and the online channel had really spent by then,
	// delivered or not); of those, the ones the store approved on its own.
	OfflineAttempts     int `json:"offline_attempts"`
	OfflineWithinBudget int `json:"offline_attempts_within_budget"`
	OfflineApproved     int `json:"offline_approved_within_budget"`
	// The same at connected stores, and for the online channel (web shop) at the hub.
	ConnectedWithinBudget int `json:"connected_attempts_within_budget"`
	ConnectedApproved     int `json:"connected_approved_within_budget"`
	WebWithinBudget       int `json:"web_attempts_within_budget"`
	WebApproved           int `json:"web_approved_within_budget"`
	// HeldOffline is the most quota the cut-off stores held unspent in their leases while cut
	// off, as a share of the limits (averaged over the budgets): what the others could not use.
	HeldOffline float64 `json:"held_offline_share"`
	// Reclaimed is the quota the hub took back from idle leases of connected stores.
	Reclaimed         int64    `json:"quota_reclaimed"`
	StrandedAfterHeal int64    `json:"stranded_quota_after_heal"`
	Violations        []string `json:"violations"`
}

// BudgetUse is one budget of a run: its limit and what was spent of it by the end.
type BudgetUse struct {
	ID     string  `json:"id"`
	Metric string  `json:"metric"`
	Limit  int64   `json:"limit"`
	Spent  int64   `json:"spent"`
	Used   float64 `json:"used"` // spent / limit
}

// Demand model: orders with a reward per hour at a store of weight 1, by hour of the day (UTC).
var dayCurve = [24]float64{0, 0, 0, 0, 0, 0, 0, 0.3, 0.6, 0.8, 1, 1, 1, 1, 0.7, 0.7, 0.7, 0.9, 0.9, 0.9, 0.5, 0.2, 0, 0}

const (
	ordersPerHour = 8.0              // at the busiest hours, at a store of weight 1
	webShare      = 0.05             // the online channel's orders, as a share of one store's
	slot          = 15 * time.Minute // connected stores push and pull this often (their heartbeat, slowed down)
	coffeeShare   = 0.6              // orders whose first reward is a coffee; the others take five-off
	secondReward  = 0.1              // orders that carry the other reward too (both are stackable)
	orderMedian   = 2500.0           // minor units
	orderSpread   = 0.5              // log-normal sigma of order amounts
)

// outageProgram is the profile's program: two stackable rewards every store may redeem offline,
// and three budgets, one of each kind a redemption spends.
func outageProgram(limits [3]int64) loyalty.Program {
	p := loyalty.DefaultProgram()
	p.Rewards = []loyalty.Reward{
		{ID: "coffee", Name: "Free coffee", PointsCost: 50, Kind: "free_product", Offline: loyalty.OfflineAllow, Stackable: true},
		{ID: "five-off", Name: "5.00 EUR off", PointsCost: 100, Kind: "amount_off", Value: 500, Offline: loyalty.OfflineAllow, Stackable: true},
	}
	p.Budgets = []loyalty.Budget{
		{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: limits[0]},
		{ID: "five-off-discount", Metric: loyalty.MetricDiscount, Reward: "five-off", Limit: limits[1]},
		{ID: "order-value", Metric: loyalty.MetricOrderValue, Limit: limits[2]},
	}
	return p
}

type outage struct {
	w       *world
	cfg     OutageConfig
	res     *OutageResult
	p       loyalty.Program
	weight  map[string]float64
	members map[string][]string         // per store: its members (the store is their home)
	used    map[string]int64            // per budget: what approved redemptions really spent, delivered or not
	counted map[string]map[string]int64 // per store and order: what the order counted per budget
	cut     []*store
	web     int
	granted map[string]int64 // per lease: its grant when last observed
}

// RunOutage runs the outage profile once.
func RunOutage(ctx context.Context, cfg OutageConfig) (*OutageResult, error) {
	dir, done, err := runDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer done()
	w := newWorld(Config{Seed: cfg.Seed, Stores: cfg.Stores}, dir, time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC))
	defer w.close()
	w.leases = hub.DefaultLeaseConfig()
	if cfg.LeaseTTL > 0 {
		w.leases.TTL = cfg.LeaseTTL
	}
	o := &outage{w: w, cfg: cfg, res: &OutageResult{Seed: cfg.Seed, Stores: cfg.Stores, OfflineStores: []string{}, Violations: []string{}},
		weight: map[string]float64{}, members: map[string][]string{}, used: map[string]int64{}, counted: map[string]map[string]int64{}, granted: map[string]int64{}}
	if err := o.setup(ctx); err != nil {
		return nil, err
	}
	if err := o.run(ctx); err != nil {
		return nil, fmt.Errorf("outage seed %d at %s: %w", cfg.Seed, w.now.Format(time.RFC3339), err)
	}
	if err := o.finish(ctx); err != nil {
		return nil, fmt.Errorf("outage seed %d finish: %w", cfg.Seed, err)
	}
	o.res.Violations = append(o.res.Violations, w.res.Violations...)
	return o.res, nil
}

// runDir returns the directory a run's files go in, and what removes it afterwards.
func runDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm" // memory-backed: the run's files never need to reach a disk
	}
	d, err := os.MkdirTemp(base, "loyalty-sim-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// setup registers the stores and their members, sets budgets to end the run 30 to 70% used, and
// connects every store.
func (o *outage) setup(ctx context.Context) error {
	w := o.w
	if err := w.openHub(ctx); err != nil {
		return err
	}
	var orders float64 // expected over the run, stores and web
	for _, v := range dayCurve {
		orders += 2 * ordersPerHour * v
	}
	total := 0.0
	for i := range o.cfg.Stores {
		id := fmt.Sprintf("s%02d", i+1)
		o.weight[id] = 0.7 + 0.6*w.rng.Float64()
		total += o.weight[id]
	}
	total += webShare
	orders *= total
	perOrder := [3]float64{coffeeShare + (1-coffeeShare)*secondReward, 500 * ((1 - coffeeShare) + coffeeShare*secondReward),
		orderMedian * math.Exp(orderSpread*orderSpread/2)}
	var limits [3]int64
	for i := range limits {
		limits[i] = int64(orders * perOrder[i] / (0.3 + 0.4*w.rng.Float64()))
	}
	o.p = outageProgram(limits)
	if _, err := w.hub.SetProgram(ctx, o.p); err != nil {
		return err
	}
	for i := range o.cfg.Stores {
		id := fmt.Sprintf("s%02d", i+1)
		_, token, err := w.hub.CreateStore(ctx, id, "")
		if err != nil {
			return err
		}
		w.storeTokens[id] = token
		s := &store{id: id, path: w.dir + "/" + id + ".db", w: w}
		if err := w.openStore(ctx, s); err != nil {
			return err
		}
		w.stores = append(w.stores, s)
		for j := range 6 {
			m, err := w.hub.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("m%s-%d", id, j), HomeStore: id})
			if err != nil {
				return err
			}
			if w.tokens[m.ID], err = w.hub.MemberToken(ctx, m.ID); err != nil {
				return err
			}
			r, err := w.hub.Earn(ctx, loyalty.EarnRequest{OrderID: "welcome-" + m.ID, MemberID: m.ID, Amount: 100_000_000, Currency: "EUR"})
			if err != nil {
				return err
			}
			w.record(r)
			w.members = append(w.members, m.ID)
			o.members[id] = append(o.members[id], m.ID)
		}
	}
	n := max(1, int(math.Round(o.cfg.Offline*float64(o.cfg.Stores))))
	for _, i := range w.rng.Perm(len(w.stores))[:n] {
		o.cut = append(o.cut, w.stores[i])
		o.res.OfflineStores = append(o.res.OfflineStores, w.stores[i].id)
	}
	slices.Sort(o.res.OfflineStores)
	for _, s := range w.stores {
		if err := w.goLive(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// event is one order with a reward (or two) at a store ("" for the online channel).
type event struct {
	at     time.Time
	store  *store
	amount int64
	first  string
	second string
}

// run plays two days, slot by slot: the orders of the slot in time order, then every connected
// store's heartbeat, the hub's lease expiry and the budget check. The cut-off stores lose their
// line at OutageAt on the second day and get it back Outage later.
func (o *outage) run(ctx context.Context) error {
	w := o.w
	start := w.now
	down, up := start.Add(24*time.Hour+OutageAt), start.Add(24*time.Hour+OutageAt+o.cfg.Outage)
	for t := start; t.Before(start.Add(48 * time.Hour)); t = t.Add(slot) {
		if !t.Before(down) && t.Before(up) && o.cut[0].link {
			w.now = down
			for _, s := range o.cut {
				w.disconnect(ctx, s)
			}
		}
		if !t.Before(up) && !o.cut[0].link {
			w.now = up
			for _, s := range o.cut {
				if err := w.goLive(ctx, s); err != nil {
					return err
				}
			}
		}
		for _, e := range o.orders(t) {
			w.now = e.at
			if err := o.order(ctx, e); err != nil {
				return err
			}
		}
		w.now = t.Add(slot)
		for _, s := range w.stores {
			if s.link {
				if err := w.heartbeat(ctx, s); err != nil {
					return err
				}
			}
		}
		if _, err := w.hub.ExpireLeases(ctx); err != nil {
			return err
		}
		if err := w.checkBudgets(ctx); err != nil {
			return err
		}
		if err := o.observe(ctx, !o.cut[0].link); err != nil {
			return err
		}
	}
	return nil
}

// orders draws the orders of the slot starting at t, at every store and online, in time order.
func (o *outage) orders(t time.Time) []event {
	w := o.w
	rate := dayCurve[t.UTC().Hour()] * ordersPerHour * slot.Hours()
	var es []event
	draw := func(s *store, weight float64) {
		for range poisson(w, rate*weight) {
			e := event{at: t.Add(time.Duration(w.rng.Int64N(int64(slot)))), store: s,
				amount: int64(orderMedian * math.Exp(orderSpread*w.rng.NormFloat64())), first: "five-off"}
			if w.rng.Float64() < coffeeShare {
				e.first = "coffee"
			}
			if w.rng.Float64() < secondReward {
				e.second = map[string]string{"coffee": "five-off", "five-off": "coffee"}[e.first]
			}
			es = append(es, e)
		}
	}
	for _, s := range w.stores {
		draw(s, o.weight[s.id])
	}
	draw(nil, webShare)
	slices.SortStableFunc(es, func(a, b event) int { return a.at.Compare(b.at) })
	return es
}

// poisson draws from a Poisson distribution of mean m (Knuth's method: m is small here).
func poisson(w *world, m float64) int {
	limit, n, p := math.Exp(-m), 0, w.rng.Float64()
	for p > limit {
		n++
		p *= w.rng.Float64()
	}
	return n
}

// order redeems an event's rewards on one order, at its store or online.
func (o *outage) order(ctx context.Context, e event) error {
	w := o.w
	o.web++
	id := fmt.Sprintf("o%d", o.web)
	// One member's order: only the same member's rewards share an order's budget count
	// (loyalty.SharesOrder).
	key, member := "web/"+id, w.members[w.rng.IntN(len(w.members))]
	if e.store != nil {
		key = e.store.id + "/" + id
		member = o.members[e.store.id][w.rng.IntN(len(o.members[e.store.id]))]
	}
	for _, reward := range []string{e.first, e.second} {
		if reward == "" {
			continue
		}
		d := loyalty.Delta{Kind: loyalty.KindRedeem, Reward: reward, Amount: e.amount, OrderID: id}
		room, use := o.room(key, &d)
		var r loyalty.Receipt
		var err error
		if e.store == nil {
			r, err = w.hub.Redeem(ctx, loyalty.RedeemRequest{OrderID: id, MemberID: member, RewardID: reward, OrderAmount: loyalty.Money(e.amount)})
		} else {
			r, err = e.store.ag.Redeem(ctx, loyalty.RedeemRequest{OrderID: id, QR: w.tokens[member], RewardID: reward, OrderAmount: loyalty.Money(e.amount)})
		}
		if err != nil && !refused(err) {
			return err
		}
		ok := err == nil
		if ok {
			w.record(r)
			o.spend(key, use)
		}
		if !room {
			continue
		}
		switch {
		case e.store == nil:
			o.res.WebWithinBudget++
			o.res.WebApproved += b2i(ok)
		case !e.store.link:
			o.res.OfflineWithinBudget++
			o.res.OfflineApproved += b2i(ok)
		default:
			o.res.ConnectedWithinBudget++
			o.res.ConnectedApproved += b2i(ok)
		}
	}
	if e.store != nil && !e.store.link {
		o.res.OfflineAttempts += 1 + b2i(e.second != "")
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// room reports whether every budget a redemption spends has room for it, by what was really
// spent chain-wide, and what it would spend of each (each order counted once, as the hub counts).
func (o *outage) room(order string, d *loyalty.Delta) (bool, map[string]int64) {
	use := map[string]int64{}
	ok := true
	for _, b := range o.p.BudgetsFor(d) {
		x := b.OrderConsumption(&o.p, d, o.counted[order][b.ID])
		use[b.ID] = x
		ok = ok && o.used[b.ID]+x <= b.Limit
	}
	return ok, use
}

// spend records an approved redemption's spending.
func (o *outage) spend(order string, use map[string]int64) {
	if o.counted[order] == nil {
		o.counted[order] = map[string]int64{}
	}
	for b, x := range use {
		o.used[b] += x
		o.counted[order][b] += x
	}
}

// observe looks at the budgets after a slot: the share of the limits the cut-off stores hold
// unspent while cut off, and the quota the hub took back from idle leases (a lease's grant drops
// only when a reclaim is confirmed).
func (o *outage) observe(ctx context.Context, cutOff bool) error {
	bs, err := o.w.hub.Budgets(ctx)
	if err != nil {
		return err
	}
	var share float64
	for _, b := range bs {
		var held int64
		for _, l := range b.Leases {
			if g, ok := o.granted[l.ID]; ok && l.Granted < g {
				o.res.Reclaimed += g - l.Granted
			}
			o.granted[l.ID] = l.Granted
			if cutOff && slices.ContainsFunc(o.cut, func(s *store) bool { return s.id == l.Store }) {
				held += l.Outstanding()
			}
		}
		share += float64(held) / float64(max(b.Limit, 1)) / float64(len(bs))
	}
	o.res.HeldOffline = max(o.res.HeldOffline, math.Round(1000*share)/1000)
	return nil
}

// finish syncs every store until nothing changes, and checks the end state as the adversarial
// runs do: nothing lost or counted twice, every view converged, no budget over its limit, no
// quota stranded.
func (o *outage) finish(ctx context.Context) error {
	w := o.w
	for rounds := 0; ; rounds++ {
		before, err := w.version(ctx)
		if err != nil {
			return err
		}
		left := int64(0)
		for _, s := range w.stores {
			if err := w.heartbeat(ctx, s); err != nil {
				return err
			}
			n, err := s.st.PendingCount(ctx)
			if err != nil {
				return err
			}
			left += n
		}
		after, err := w.version(ctx)
		if err != nil {
			return err
		}
		if left == 0 && after == before {
			break
		}
		if rounds > 20 {
			w.violate("no quiet round after 20: %d deltas in outboxes", left)
			break
		}
	}
	var err error
	if o.res.StrandedAfterHeal, err = w.stranded(ctx); err != nil {
		return err
	}
	if o.res.StrandedAfterHeal != 0 {
		w.violate("%d units of quota still stranded after every store healed and synced", o.res.StrandedAfterHeal)
	}
	if err := w.checkBudgets(ctx); err != nil {
		return err
	}
	bs, err := w.hub.Budgets(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		o.res.Budgets = append(o.res.Budgets, BudgetUse{ID: b.ID, Metric: b.Metric, Limit: b.Limit, Spent: b.Spent,
			Used: math.Round(1000*float64(b.Spent)/float64(max(b.Limit, 1))) / 1000})
		if b.Spent != o.used[b.ID] {
			w.violate("budget %s: the hub counted %d, the redemptions approved spent %d", b.ID, b.Spent, o.used[b.ID])
		}
	}
	return w.checkEnd(ctx)
}

// version returns the hub's change version.
func (w *world) version(ctx context.Context) (int64, error) {
	var v int64
	err := w.hubDB.View(ctx, func(tx hub.Tx) error {
		var err error
		v, err = tx.CurrentVersion(ctx)
		return err
	})
	return v, err
}

// RunOutageSeeds runs the outage profile for seeds first, first+1, … first+n-1 on workers
// goroutines and returns the results in seed order. It stops at the first error.
func RunOutageSeeds(ctx context.Context, base OutageConfig, first uint64, n, workers int) ([]*OutageResult, error) {
	out := make([]*OutageResult, n)
	err := forSeeds(ctx, first, n, workers, func(i int, seed uint64) error {
		cfg := base
		cfg.Seed = seed
		r, err := RunOutage(ctx, cfg)
		out[i] = r
		return err
	})
	return out, err
}

// forSeeds calls run for seeds first … first+n-1 (i is the seed's index) on workers goroutines,
// and returns the first error.
func forSeeds(ctx context.Context, first uint64, n, workers int, run func(i int, seed uint64) error) error {
	idx := make(chan int)
	errs := make(chan error, max(workers, 1))
	var wg gosync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := run(i, first+uint64(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	func() {
		defer close(idx)
		for i := range n {
			select {
			case idx <- i:
			case err := <-errs:
				errs <- err
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// OutageSummary is the outage profile over several seeds: `loyalty sim --profile outage --json`.
type OutageSummary struct {
	Profile       string        `json:"profile"`
	Seeds         []uint64      `json:"seeds"`
	Stores        int           `json:"stores"`
	OfflineStores int           `json:"offline_stores"` // cut off in each run
	Outage        string        `json:"outage"`         // how long, from 10:00 UTC on the second day
	LeaseTTL      string        `json:"lease_ttl"`
	Budgets       []BudgetRange `json:"budgets"`
	// Redemptions tried at cut-off stores while cut off that the chain-wide budgets had room for,
	// and the share of them the stores approved on their own.
	OfflineAttempts             int     `json:"offline_attempts"`
	OfflineWithinBudget         int     `json:"offline_attempts_within_budget"`
	OfflineApproved             int     `json:"offline_approved_within_budget"`
	OfflineApprovalWithinBudget float64 `json:"offline_approval_within_budget"`
	WorstSeed                   uint64  `json:"worst_seed"`
	WorstApproval               float64 `json:"worst_seed_approval"`
	// The same share at connected stores and for the online channel.
	ConnectedApprovalWithinBudget float64 `json:"connected_approval_within_budget"`
	WebApprovalWithinBudget       float64 `json:"online_channel_approval_within_budget"`
	// The most of the limits cut-off stores held unspent while cut off (worst run), and the quota
	// taken back from idle leases of connected stores (all runs).
	HeldOffline       float64       `json:"held_offline_share_max"`
	Reclaimed         int64         `json:"quota_reclaimed"`
	Violations        int           `json:"violations"`
	ViolationDetails  []string      `json:"violation_details"`
	StrandedAfterHeal int64         `json:"stranded_quota_after_heal"`
	Replay            string        `json:"replay"`
	Runs              []SeedFigures `json:"runs"`
}

// SeedFigures is one run of the outage profile, in short.
type SeedFigures struct {
	Seed          uint64   `json:"seed"`
	OfflineStores []string `json:"offline_stores"`
	WithinBudget  int      `json:"offline_attempts_within_budget"`
	Approval      float64  `json:"offline_approval_within_budget"`
	Violations    int      `json:"violations"`
}

// BudgetRange is how much of a budget the runs used, at least and at most.
type BudgetRange struct {
	ID      string  `json:"id"`
	Metric  string  `json:"metric"`
	UsedMin float64 `json:"used_min"`
	UsedMax float64 `json:"used_max"`
}

// SummarizeOutage sums up runs of cfg.
func SummarizeOutage(cfg OutageConfig, runs []*OutageResult) OutageSummary {
	ttl := hub.DefaultLeaseConfig().TTL
	if cfg.LeaseTTL > 0 {
		ttl = cfg.LeaseTTL
	}
	s := OutageSummary{Profile: "outage", Seeds: []uint64{}, Stores: cfg.Stores, Outage: loyalty.Duration(cfg.Outage).String(),
		LeaseTTL: loyalty.Duration(ttl).String(), Budgets: []BudgetRange{}, ViolationDetails: []string{}, WorstApproval: 1,
		Runs: []SeedFigures{}}
	ratio := func(a, b int) float64 {
		if b == 0 {
			return 1
		}
		return math.Floor(10000*float64(a)/float64(b)) / 10000 // rounded down: never better than measured
	}
	var connWithin, connOK, webWithin, webOK int
	for _, r := range runs {
		if r == nil {
			continue
		}
		s.Seeds = append(s.Seeds, r.Seed)
		s.OfflineStores = len(r.OfflineStores)
		s.OfflineAttempts += r.OfflineAttempts
		s.OfflineWithinBudget += r.OfflineWithinBudget
		s.OfflineApproved += r.OfflineApproved
		a := ratio(r.OfflineApproved, r.OfflineWithinBudget)
		if a < s.WorstApproval || len(s.Seeds) == 1 {
			s.WorstSeed, s.WorstApproval = r.Seed, a
		}
		s.Runs = append(s.Runs, SeedFigures{Seed: r.Seed, OfflineStores: r.OfflineStores, WithinBudget: r.OfflineWithinBudget,
			Approval: a, Violations: len(r.Violations)})
		connWithin, connOK = connWithin+r.ConnectedWithinBudget, connOK+r.ConnectedApproved
		webWithin, webOK = webWithin+r.WebWithinBudget, webOK+r.WebApproved
		s.HeldOffline = max(s.HeldOffline, r.HeldOffline)
		s.Reclaimed += r.Reclaimed
		s.StrandedAfterHeal += r.StrandedAfterHeal
		s.Violations += len(r.Violations)
		for _, v := range r.Violations {
			if len(s.ViolationDetails) < 20 {
				s.ViolationDetails = append(s.ViolationDetails, fmt.Sprintf("seed %d: %s", r.Seed, v))
			}
		}
		for i, b := range r.Budgets {
			if i == len(s.Budgets) {
				s.Budgets = append(s.Budgets, BudgetRange{ID: b.ID, Metric: b.Metric, UsedMin: b.Used, UsedMax: b.Used})
			}
			s.Budgets[i].UsedMin, s.Budgets[i].UsedMax = min(s.Budgets[i].UsedMin, b.Used), max(s.Budgets[i].UsedMax, b.Used)
		}
	}
	s.OfflineApprovalWithinBudget = ratio(s.OfflineApproved, s.OfflineWithinBudget)
	s.ConnectedApprovalWithinBudget = ratio(connOK, connWithin)
	s.WebApprovalWithinBudget = ratio(webOK, webWithin)
	s.Replay = fmt.Sprintf("loyalty sim --profile outage --seed %d --json", s.WorstSeed)
	if s.Violations > 0 {
		s.Replay = fmt.Sprintf("loyalty sim --profile outage --seed %d --json", firstFailing(runs))
	}
	return s
}

func firstFailing(runs []*OutageResult) uint64 {
	for _, r := range runs {
		if r != nil && len(r.Violations) > 0 {
			return r.Seed
		}
	}
	return 0
}
