package sim

import (
	"cmp"
	"context"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // hostile stores are registered in, and claim, zones the machine may not have

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Hostile stores are registered stores whose agent was replaced by an attacker: they push
// hand-made deltas to the hub's real sync server in messages they write themselves (wire.go), each forging
// one claim the hub must verify (docs/PROTOCOL.md, "What the hub verifies"). Everything else about
// a forged delta is what an honest store would send, so the hub can only refuse it for the forged
// claim; whether it did is counted (ForgedOnTarget), and a rejection for another reason is
// counted as off target (the forgery then tested less than it meant to).
//
// The checker: every forged delta must be rejected (neither "applied" nor "duplicate"), and the
// hub's balances, ledgers, budgets (spent, outstanding, every lease) and conflicts must be exactly
// what they were before the push. A hostile store also pushes honest deltas now and then (the
// controls): those must be applied, which shows that its deltas are refused for their forgeries
// and not for being a hostile store's.

// hostileRate is the percentage of steps after which one of the hostile stores runs a session.
const hostileRate = 15

// Forgery is a kind of forged delta.
type Forgery int

// The forgeries.
const (
	ForgedTier         Forgery = iota // a tier the member never held (the top one when it can)
	ForgedCountry                     // a country that is not the member's, whose campaign pays
	FutureOccurred                    // occurred_at after the hub's clock + MaxFuture
	FutureOffset                      // a clock offset that puts the event time after the hub's clock + MaxFuture
	Backdated                         // an event time before the store's previous sync, less Backdate
	ZoneCampaign                      // points of a campaign that runs in a claimed time zone, not in the registered one
	OldVersion                        // a rule version replaced by one the store received more than Backdate before
	UnsentVersion                     // a rule version published after the store's last pull
	UnreceivedVersion                 // a rule version no pull ever brought the store (replaced before it pulled)
	MissingVersion                    // a rule version that does not exist
	ForeignLease                      // another store's lease
	OtherBudgetLease                  // the store's own lease of another budget
	NoLease                           // budget spent without naming a lease
	OverdrawnLease                    // more than the lease has left
	SettledLease                      // a lease the hub already settled
	InactiveLease                     // an event time before the lease was granted or after it expired
	OverflowAmount                    // an amount over MaxAmount
	OverflowLines                     // order lines that overflow (wrap to the amount, too big, negative, too many)
	HugePoints                        // points beyond ±MaxPoints
	WrongPoints                       // more points than the sale earns
	WrongCost                         // a redemption that pays less than the reward costs
	PercentNoAmount                   // a percent-off redemption without the order amount
	Replay                            // another store's applied delta, re-pushed as it is
	ReplayRestamped                   // another store's delta id and content, restamped with this store
	Impersonate                       // a delta that says it is another store's
	ReverseForeign                    // a reversal of another store's delta
	ReverseWrongPoints                // a reversal of its own delta for other points
	ReverseOtherMember                // a reversal of its own delta, for another member
	ReverseTwice                      // a second reversal of a delta already reversed
	InvalidUTF8                       // an id or text field that is not UTF-8
	HubKind                           // an adjust, tier or expire delta
	ActionEarn                        // an earn for an action rule (signup, review, referral)
	RefundLink                        // an earn that names one of the store's deltas in reverses, as a refund would
	UnheldRedeem                      // a redemption of the points of a member the store does not hold
	BorrowedCode                      // the same, with a code that proves nothing: another member's, or doctored
	NumForgeries
)

var forgeryNames = [NumForgeries]string{
	"forged_tier", "forged_country", "future_occurred_at", "future_clock_offset", "backdated", "zone_campaign",
	"old_version", "unsent_version", "unreceived_version", "missing_version",
	"foreign_lease", "other_budget_lease", "no_lease", "overdrawn_lease", "settled_lease", "inactive_lease",
	"overflow_amount", "overflow_lines", "huge_points", "wrong_points", "wrong_cost", "percent_no_amount",
	"replay", "replay_restamped", "impersonate",
	"reverse_foreign", "reverse_wrong_points", "reverse_other_member", "reverse_twice",
	"invalid_utf8", "hub_kind", "action_earn", "refund_link", "unheld_redeem",
	"borrowed_code",
}

func (f Forgery) String() string {
	if f >= 0 && f < NumForgeries {
		return forgeryNames[f]
	}
	return fmt.Sprintf("forgery(%d)", int(f))
}

// ParseForgery returns the forgery named name.
func ParseForgery(name string) (Forgery, error) {
	for f, n := range forgeryNames {
		if n == name {
			return Forgery(f), nil
		}
	}
	return 0, fmt.Errorf("no forgery %q (the forgeries are %s)", name, strings.Join(forgeryNames[:], ", "))
}

// Forgeries lists every kind of forgery.
func Forgeries() []Forgery {
	out := make([]Forgery, NumForgeries)
	for i := range out {
		out[i] = Forgery(i)
	}
	return out
}

// ForgeryCounts counts something per kind of forgery. It is an array, so Stats stay comparable.
type ForgeryCounts [NumForgeries]int

// MarshalJSON writes the counts as an object keyed by forgery name.
func (c ForgeryCounts) MarshalJSON() ([]byte, error) {
	m := make(map[string]int, len(c))
	for i, n := range c {
		m[Forgery(i).String()] = n
	}
	return json.Marshal(m)
}

// Add adds o to c.
func (c *ForgeryCounts) Add(o ForgeryCounts) {
	for i := range c {
		c[i] += o[i]
	}
}

// expect is why the hub should refuse each forgery: an error code, and words of which its message
// must contain one (any case; "" takes any message). They are loose on purpose, so that rewording
// a message does not make a forgery look refused for another reason.
var expect = [NumForgeries]struct{ code, text string }{
	ForgedTier:         {loyalty.EINVALID, "tier"},
	ForgedCountry:      {loyalty.EINVALID, "country"},
	FutureOccurred:     {loyalty.EINVALID, "clock|future"},
	FutureOffset:       {loyalty.EINVALID, "clock|future"},
	Backdated:          {loyalty.EINVALID, "sync|floor|backdat"},
	ZoneCampaign:       {loyalty.EINVALID, "earn"},
	OldVersion:         {loyalty.EINVALID, "version"},
	UnsentVersion:      {loyalty.EINVALID, "version"},
	UnreceivedVersion:  {loyalty.EINVALID, "version"},
	MissingVersion:     {loyalty.ENOTFOUND, "version"},
	ForeignLease:       {loyalty.EBUDGET, "granted|another store|not this store"},
	OtherBudgetLease:   {loyalty.EBUDGET, "granted|another budget|not this store"},
	NoLease:            {loyalty.EBUDGET, "without|no lease|naming"},
	OverdrawnLease:     {loyalty.EBUDGET, "overdr|exceed"},
	SettledLease:       {loyalty.EBUDGET, "settled"},
	InactiveLease:      {loyalty.EBUDGET, "active|expired|granted"},
	OverflowAmount:     {loyalty.EINVALID, "amount"},
	OverflowLines:      {loyalty.EINVALID, "line"},
	HugePoints:         {loyalty.EINVALID, "points"},
	WrongPoints:        {loyalty.EINVALID, "earn"},
	WrongCost:          {loyalty.EINVALID, "cost"},
	PercentNoAmount:    {loyalty.EINVALID, "order_amount|order amount"},
	Replay:             {loyalty.EUNAUTHORIZED, "store"},
	ReplayRestamped:    {loyalty.EDUPLICATE, ""},
	Impersonate:        {loyalty.EUNAUTHORIZED, "store"},
	ReverseForeign:     {loyalty.EUNAUTHORIZED, "revers"},
	ReverseWrongPoints: {loyalty.EINVALID, "revers|points"},
	ReverseOtherMember: {loyalty.EINVALID, "member"},
	ReverseTwice:       {loyalty.ECONFLICT, ""},
	InvalidUTF8:        {loyalty.EINVALID, "utf-8|utf8"},
	HubKind:            {loyalty.EUNAUTHORIZED, "hub"},
	ActionEarn:         {loyalty.EUNAUTHORIZED, "action|rule"},
	RefundLink:         {loyalty.EINVALID, "refund|revers"},
	UnheldRedeem:       {loyalty.EUNAUTHORIZED, "hold"},
	BorrowedCode:       {loyalty.EUNAUTHORIZED, "hold"},
}

// refusedFor reports whether the hub's answer refuses a delta for forgery f.
func refusedFor(f Forgery, r lsync.Result) bool {
	e := expect[f]
	msg := strings.ToLower(r.Message)
	return r.Status == lsync.StatusRejected && r.Code == e.code &&
		slices.ContainsFunc(strings.Split(e.text, "|"), func(t string) bool { return strings.Contains(msg, t) })
}

// Zones hostile stores are registered in and claim. At the simulation's start (Monday 09:00
// UTC) the daytime campaign (06:00-20:00 local) runs in Paris, Tokyo and UTC, not in Kiritimati
// (23:00) nor Los Angeles (01:00).
var (
	quietZones  = []string{"Pacific/Kiritimati", "America/Los_Angeles"}
	activeZones = []string{"Europe/Paris", "Asia/Tokyo", "UTC"}
	allZones    = append(slices.Clone(quietZones), activeZones...)
)

// hostile is a hostile store: what its attacker knows.
type hostile struct {
	id       string
	zone     string
	loc      *time.Location
	created  time.Time
	lastEnd  time.Time // end of its previous session (which pulled, flushed, when it began); zero before the first
	cursor   int64
	version  int64               // the newest rule version a pull brought it
	pulledAt time.Time           // its last pull
	received map[int64]time.Time // rule versions a pull brought it, and when
	// confirmed holds, for each version a pull brought, the time of the store's next pull: the
	// hub counts a version received only then (an answer lost with the link does not count).
	confirmed map[int64]time.Time
	leaseIDs  []string // every lease the hub granted it
	own       []loyalty.Delta
	reversed  map[string]bool
	orders    int
	wire      *wire // its session, while one is open
}

// newer returns the first rule version newer than v that the store is known to have received
// (a later pull confirmed it), and when.
func (h *hostile) newer(v int64) (int64, time.Time, bool) {
	best := int64(0)
	for u := range h.confirmed {
		if u > v && (best == 0 || u < best) {
			best = u
		}
	}
	return best, h.confirmed[best], best != 0
}

// had reports whether the store can have made a delta under rule version v at event time at:
// a pull brought it v, and a newer one no more than Backdate before at.
func (w *world) had(h *hostile, v int64, at time.Time) bool {
	if _, ok := h.received[v]; !ok {
		return false
	}
	_, t, ok := h.newer(v)
	return !ok || !at.After(t.Add(w.hub.Claims.Backdate))
}

func (h *hostile) order() string {
	h.orders++
	return fmt.Sprintf("%s-o%d", h.id, h.orders)
}

// ruleVersion is one published rule version.
type ruleVersion struct {
	v, cv     int64
	published time.Time
}

// session is what a hostile store's session sees of the hub, read at its start.
type session struct {
	h   *hostile
	now time.Time
	// The hub's floor for the store's event times lies between floorLow and floorHigh: its
	// registration or its previous session's flushed pull, less a minute (the hub may record
	// flushed pulls a minute late) and less Backdate; and its registration or this session's
	// flushed pull, less Backdate. Forgeries date their deltas before floorLow; honest deltas of
	// the session, at or after floorHigh.
	floorLow, floorHigh time.Time
	cur                 int64         // the hub's newest rule version
	versions            []ruleVersion // every rule version, versions[i].v == i+1
	leases              []hub.Lease   // its unsettled leases
	members             []loyalty.Member
	held                map[string]bool // the members in the store's scope: those whose points it may spend
	snap                snapshot        // the hub's state after the session's last push of forgeries
}

func (s *session) version(v int64) (ruleVersion, bool) {
	if v < 1 || v > int64(len(s.versions)) {
		return ruleVersion{}, false
	}
	return s.versions[v-1], true
}

// replacedBefore reports whether rule version v was replaced before t.
func (s *session) replacedBefore(v int64, t time.Time) bool {
	next, ok := s.version(v + 1)
	return ok && next.published.Before(t)
}

// grantLeeway is how long before a lease's grant the hub takes a spend from it: the store's clock
// error, leases.margin or claims.max_future, whichever is longer.
func (w *world) grantLeeway() time.Duration { return max(leaseMargin, w.hub.Claims.MaxFuture) }

// activeLease returns the store's active lease of budget, if one is active at event time at.
func (w *world) activeLease(s *session, budget string, at time.Time) (hub.Lease, bool) {
	for _, l := range s.leases {
		if l.Budget == budget && l.State == hub.LeaseActive && !at.Before(l.CreatedAt.Add(-w.grantLeeway())) && !at.After(l.ExpiresAt) {
			return l, true
		}
	}
	return hub.Lease{}, false
}

func (w *world) setupHostile(ctx context.Context) error {
	for i := range w.cfg.Hostile {
		zones := allZones
		switch i {
		case 0:
			zones = quietZones // a campaign it can claim from another zone
		case 1:
			zones = activeZones // a campaign its controls earn whatever zone they claim
		}
		zone := zones[w.rng.IntN(len(zones))]
		id := fmt.Sprintf("x%d", i+1)
		info, token, err := w.hub.CreateStoreIn(ctx, id, "hostile "+id, zone)
		if err != nil {
			return err
		}
		w.storeTokens[id] = token
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return err
		}
		h := &hostile{id: id, zone: zone, loc: loc, created: info.CreatedAt, received: map[int64]time.Time{},
			confirmed: map[int64]time.Time{}, reversed: map[string]bool{}}
		if err := w.hostilePull(ctx, h); err != nil {
			return err
		}
		w.hostile = append(w.hostile, h)
	}
	return nil
}

// connect opens a session for a hostile store.
func (w *world) connect(ctx context.Context, h *hostile) error {
	c, err := w.dial(ctx, h.id)
	h.wire = c
	return err
}

// hangUp ends a hostile store's session, if one is open.
func (h *hostile) hangUp(ctx context.Context) {
	if h.wire != nil {
		h.wire.close(ctx)
		h.wire = nil
	}
}

// hostilePull pulls like an agent whose outbox is empty: its leases are renewed and settled. It
// pulls in the store's open session, or in one of its own.
func (w *world) hostilePull(ctx context.Context, h *hostile) error {
	if h.wire == nil {
		if err := w.connect(ctx, h); err != nil {
			return err
		}
		defer h.hangUp(ctx)
	}
	for v := range h.received {
		if _, ok := h.confirmed[v]; !ok {
			h.confirmed[v] = w.now
		}
	}
	for {
		ch, err := h.wire.pull(ctx, lsync.Pull{Cursor: h.cursor, Limit: 1000, Flushed: true})
		if err != nil {
			return err
		}
		if ch.Program != nil {
			if _, ok := h.received[ch.Program.Version]; !ok {
				h.received[ch.Program.Version] = w.now
			}
			h.version = max(h.version, ch.Program.Version)
		}
		for _, l := range ch.Leases {
			if !slices.Contains(h.leaseIDs, l.ID) {
				h.leaseIDs = append(h.leaseIDs, l.ID)
			}
		}
		h.cursor = ch.Cursor
		if !ch.More {
			h.pulledAt = w.now
			return nil
		}
	}
}

// hostileSession connects a hostile store, pulls, pushes an honest delta now and then and
// forged ones, and disconnects.
func (w *world) hostileSession(ctx context.Context, h *hostile) error {
	w.res.Stats.HostileSessions++
	if err := w.connect(ctx, h); err != nil {
		return err
	}
	defer h.hangUp(ctx)
	if err := w.hostilePull(ctx, h); err != nil {
		return err
	}
	s, err := w.openSession(ctx, h)
	if err != nil {
		return err
	}
	if w.rng.IntN(4) == 0 {
		if err := w.controlEarn(ctx, s); err != nil {
			return err
		}
	}
	if w.rng.IntN(5) == 0 {
		if err := w.controlReverse(ctx, s); err != nil {
			return err
		}
	}
	for range 1 + w.rng.IntN(3) {
		var batch []forged
		for range 1 + w.rng.IntN(2) {
			f, ok, err := w.forgeAny(ctx, s)
			if err != nil {
				return err
			}
			if ok {
				batch = append(batch, f)
			}
		}
		if err := w.pushForged(ctx, s, batch); err != nil {
			return err
		}
	}
	h.lastEnd = w.now
	return nil
}

// openSession reads what the session needs from the hub. A real attacker learns the same from
// its pulls and its own records.
func (w *world) openSession(ctx context.Context, h *hostile) (*session, error) {
	s := &session{h: h, now: w.now, floorLow: later(h.created, h.lastEnd.Add(-time.Minute)).Add(-w.hub.Claims.Backdate),
		floorHigh: later(h.created, h.lastEnd, h.pulledAt).Add(-w.hub.Claims.Backdate)}
	err := w.hubDB.View(ctx, func(tx hub.Tx) error {
		p, _, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		s.cur = p.Version
		return w.readSession(ctx, tx, s)
	})
	return s, err
}

func (w *world) readSession(ctx context.Context, tx hub.Tx, s *session) error {
	s.versions = s.versions[:0]
	for v := int64(1); v <= s.cur; v++ {
		cv, at, err := tx.ProgramPublished(ctx, v)
		if err != nil {
			return err
		}
		s.versions = append(s.versions, ruleVersion{v: v, cv: cv, published: at})
	}
	ls, err := tx.Leases(ctx, s.h.id)
	if err != nil {
		return err
	}
	sortLeases(ls)
	s.leases = ls
	s.members = s.members[:0]
	for after := ""; ; {
		ms, err := tx.Members(ctx, after, 1000)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			break
		}
		s.members = append(s.members, ms...)
		after = ms[len(ms)-1].ID
	}
	s.held = make(map[string]bool, len(s.members))
	for _, m := range s.members {
		in, err := tx.Subscribed(ctx, s.h.id, m.ID)
		if err != nil {
			return err
		}
		s.held[m.ID] = in
	}
	return nil
}

// sortLeases orders leases by what they are, not by their (random) ids, so runs replay.
func sortLeases(ls []hub.Lease) {
	slices.SortStableFunc(ls, func(a, b hub.Lease) int {
		return cmp.Or(strings.Compare(a.Store, b.Store), strings.Compare(a.Budget, b.Budget), strings.Compare(a.State, b.State),
			a.CreatedAt.Compare(b.CreatedAt), a.ExpiresAt.Compare(b.ExpiresAt), cmp.Compare(a.Granted, b.Granted), cmp.Compare(a.Consumed, b.Consumed))
	})
}

func later(t time.Time, ts ...time.Time) time.Time {
	for _, u := range ts {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// hid returns a delta id drawn from the run's generator, shaped like the random ids of earlier
// versions (loyalty.NewDeltaID's are time-ordered; the hub accepts both).
func (w *world) hid() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], w.rng.Uint64())
	binary.LittleEndian.PutUint64(b[8:], w.rng.Uint64())
	return "d" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

func (w *world) program(ctx context.Context, v int64) (*loyalty.Program, error) {
	if p, ok := w.programs[v]; ok {
		return p, nil
	}
	var p loyalty.Program
	err := w.hubDB.View(ctx, func(tx hub.Tx) error {
		var err error
		p, err = tx.ProgramVersion(ctx, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	if w.programs == nil {
		w.programs = map[int64]*loyalty.Program{}
	}
	w.programs[v] = &p
	return &p, nil
}

func hasTier(p *loyalty.Program, tier string) bool {
	return p.Tiers != nil && slices.ContainsFunc(p.Tiers.Tiers, func(t loyalty.Tier) bool { return t.ID == tier })
}

// earn is the delta an honest store would make for a sale of amount to m at event time at
// under rule version v, with the member in tier: its points as the hub computes them in the
// store's registered zone, cut to what the store's lease of the points budget has left (a store
// may award less under an earn cap), 0 without a lease.
func (w *world) earn(ctx context.Context, s *session, m loyalty.Member, at time.Time, v int64, tier string, amount int64) (loyalty.Delta, *loyalty.Program, error) {
	p, err := w.program(ctx, v)
	if err != nil {
		return loyalty.Delta{}, nil, err
	}
	if !hasTier(p, tier) {
		tier = ""
	}
	d := loyalty.Delta{ID: w.hid(), Store: s.h.id, Member: m.ID, Kind: loyalty.KindEarn, OrderID: s.h.order(), Amount: amount,
		Currency: p.Currency, RuleVersion: v, OccurredAt: at, Tier: tier, Country: m.Country, TimeZone: s.h.loc.String()}
	d.Normalize()
	res, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: tier, Country: m.Country}, Amount: amount,
		Currency: d.Currency, At: d.EventTime(), Location: s.h.loc})
	if err != nil {
		return d, p, err
	}
	d.Points = res.Points
	w.leaseEarn(s, p, &d)
	return d, p, nil
}

// leaseEarn names the store's lease of every budget an earn spends, cutting its points to
// what the lease has left.
func (w *world) leaseEarn(s *session, p *loyalty.Program, d *loyalty.Delta) {
	for _, b := range p.BudgetsFor(d) {
		if b.Consumption(p, d, nil) <= 0 || b.Metric != loyalty.MetricPointsIssued || !p.HasEarnCap(loyalty.RulePurchase) {
			continue
		}
		l, ok := w.activeLease(s, b.ID, d.EventTime())
		if !ok {
			d.Points = 0
			continue
		}
		d.Points = min(d.Points, l.Granted-l.Consumed)
		if d.Points > 0 {
			if d.Leases == nil {
				d.Leases = map[string]string{}
			}
			d.Leases[b.ID] = l.ID
		}
	}
}

// hostileRedeem is the delta an honest store would make for reward at event time at, naming its leases;
// false if it holds no lease with quota for a budget the redemption spends.
func (w *world) hostileRedeem(ctx context.Context, s *session, m loyalty.Member, reward string, at time.Time) (loyalty.Delta, bool, error) {
	p, err := w.program(ctx, s.h.version)
	if err != nil {
		return loyalty.Delta{}, false, err
	}
	r, err := p.Reward(reward)
	if err != nil {
		return loyalty.Delta{}, false, nil
	}
	d := loyalty.Delta{ID: w.hid(), Store: s.h.id, Member: m.ID, Kind: loyalty.KindRedeem, OrderID: s.h.order(), Reward: r.ID,
		Points: -r.PointsCost, RuleVersion: p.Version, OccurredAt: at}
	d.Normalize()
	for _, b := range p.BudgetsFor(&d) {
		x := b.Consumption(p, &d, nil)
		if x <= 0 {
			continue
		}
		l, ok := w.activeLease(s, b.ID, at)
		if !ok || l.Granted-l.Consumed < x {
			return d, false, nil
		}
		if d.Leases == nil {
			d.Leases = map[string]string{}
		}
		d.Leases[b.ID] = l.ID
	}
	return d, true, nil
}

func (w *world) someMember(s *session) loyalty.Member { return s.members[w.rng.IntN(len(s.members))] }

// memberHeld picks a member the store holds (held) or does not; false if there is none.
func (w *world) memberHeld(s *session, held bool) (loyalty.Member, bool) {
	var ms []loyalty.Member
	for _, m := range s.members {
		if s.held[m.ID] == held {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return loyalty.Member{}, false
	}
	return ms[w.rng.IntN(len(ms))], true
}

func (w *world) amount() int64 { return 100 + w.rng.Int64N(15000) }

// --- controls -------------------------------------------------------------------------------

// controlEarn pushes an honest earn; it must be applied. Half of them claim another time zone
// than the store's registered one: the hub must ignore the claim, so the points computed in the
// registered zone are applied as they are (for a store in a zone where the campaign runs, a hub
// that believed a claimed zone where it does not would refuse them). Half carry the member's code,
// scanned at the till, which brings the member into the store's scope; the others do not.
func (w *world) controlEarn(ctx context.Context, s *session) error {
	m := w.someMember(s)
	d, _, err := w.earn(ctx, s, m, s.now, s.h.version, m.Tier, w.amount())
	if err != nil {
		return err
	}
	if w.rng.IntN(2) == 0 {
		d.TimeZone = allZones[w.rng.IntN(len(allZones))]
	}
	if w.rng.IntN(2) == 0 { // the member scanned at the till: the store holds them from now on
		if d.Presence, err = w.hub.MemberToken(ctx, m.ID); loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			d.Presence = "" // an erased member has no code
		} else if err != nil {
			return err
		}
	}
	if err := w.pushControl(ctx, s, d); err != nil {
		return err
	}
	s.h.own = append(s.h.own, d)
	return nil
}

// controlReverse pushes an honest reversal of one of the store's own earns.
func (w *world) controlReverse(ctx context.Context, s *session) error {
	var open []loyalty.Delta
	for _, d := range s.h.own {
		if !s.h.reversed[d.ID] {
			open = append(open, d)
		}
	}
	if len(open) == 0 {
		return nil
	}
	orig := open[w.rng.IntN(len(open))]
	d := w.reversal(s, orig)
	for b, id := range orig.Leases {
		if slices.ContainsFunc(s.leases, func(l hub.Lease) bool { return l.ID == id && l.State == hub.LeaseActive }) {
			if d.Leases == nil {
				d.Leases = map[string]string{}
			}
			d.Leases[b] = id
		}
	}
	if err := w.pushControl(ctx, s, d); err != nil {
		return err
	}
	s.h.reversed[orig.ID] = true
	return nil
}

func (w *world) reversal(s *session, orig loyalty.Delta) loyalty.Delta {
	d := loyalty.Delta{ID: w.hid(), Store: s.h.id, Member: orig.Member, Kind: loyalty.KindReverse, OrderID: orig.OrderID,
		Points: -orig.Points, Reverses: orig.ID, RuleVersion: orig.RuleVersion, Reward: orig.Reward, OccurredAt: s.now}
	d.Normalize()
	return d
}

func (w *world) pushControl(ctx context.Context, s *session, d loyalty.Delta) error {
	w.res.Stats.HostileControls++
	s.snap = nil
	ack, err := s.h.wire.push(ctx, []loyalty.Delta{d})
	if err != nil {
		return err
	}
	if len(ack.Results) != 1 || ack.Results[0].Status != lsync.StatusApplied {
		w.violate("seed %d: hostile store %s's honest %s %s (%d points, zone claimed %q, registered %q) was not applied: %+v",
			w.cfg.Seed, s.h.id, d.Kind, d.ID, d.Points, d.TimeZone, s.h.zone, ack.Results)
		return nil
	}
	w.record(loyalty.Receipt{Member: d.Member, Points: d.Points, Deltas: []string{d.ID}})
	// The leases it spent moved: read them again. The sale brought its member into the store's
	// scope if it carried their code, or is their home store's.
	return w.hubDB.View(ctx, func(tx hub.Tx) error {
		ls, err := tx.Leases(ctx, s.h.id)
		sortLeases(ls)
		s.leases = ls
		if err != nil {
			return err
		}
		s.held[d.Member], err = tx.Subscribed(ctx, s.h.id, d.Member)
		return err
	})
}

// --- forgeries ------------------------------------------------------------------------------

type forged struct {
	kind Forgery
	d    loyalty.Delta
	note string // how it was forged, for the report
}

// forgeAny forges a delta of a random kind, trying others when one cannot be made right now
// (no settled lease yet, no old rule version, ...).
func (w *world) forgeAny(ctx context.Context, s *session) (forged, bool, error) {
	kinds := w.cfg.Forgeries
	if len(kinds) == 0 {
		kinds = Forgeries()
	}
	for range 8 {
		k := kinds[w.rng.IntN(len(kinds))]
		f, ok, err := w.forge(ctx, s, k)
		if err != nil || ok {
			f.kind = k
			return f, ok, err
		}
	}
	return forged{}, false, nil
}

func (w *world) forge(ctx context.Context, s *session, k Forgery) (forged, bool, error) {
	switch k {
	case ForgedTier, ForgedCountry, ZoneCampaign:
		return w.forgeClaim(ctx, s, k)
	case FutureOccurred, FutureOffset, Backdated:
		return w.forgeTime(ctx, s, k)
	case OldVersion, UnsentVersion, UnreceivedVersion, MissingVersion:
		return w.forgeVersion(ctx, s, k)
	case ForeignLease, OtherBudgetLease, NoLease, OverdrawnLease, SettledLease, InactiveLease:
		return w.forgeLease(ctx, s, k)
	case OverflowAmount, OverflowLines, HugePoints, WrongPoints, WrongCost, PercentNoAmount, UnheldRedeem, BorrowedCode:
		return w.forgeNumbers(ctx, s, k)
	case Replay, ReplayRestamped, Impersonate, InvalidUTF8, HubKind, ActionEarn:
		return w.forgeIdentity(ctx, s, k)
	case RefundLink:
		if len(s.h.own) == 0 {
			return forged{}, false, nil
		}
		orig := s.h.own[w.rng.IntN(len(s.h.own))]
		d, _, err := w.baseEarn(ctx, s, w.someMember(s))
		d.Reverses = orig.ID
		return forged{d: d, note: "an earn that names its " + string(orig.Kind) + " " + orig.ID + " in reverses"}, err == nil, err
	case ReverseForeign, ReverseWrongPoints, ReverseOtherMember, ReverseTwice:
		return w.forgeReverse(ctx, s, k)
	}
	return forged{}, false, nil
}

// forgeClaim forges a claim about the member or the sale: tier, country, the time zone of a campaign.
func (w *world) forgeClaim(ctx context.Context, s *session, k Forgery) (forged, bool, error) {
	h := s.h
	m := w.someMember(s)
	now := s.now
	switch k {
	case ForgedTier:
		p, err := w.program(ctx, h.version)
		if err != nil || p.Tiers == nil {
			return forged{}, false, err
		}
		for _, i := range w.rng.Perm(len(s.members)) {
			m := s.members[i]
			held, err := w.tiersEver(ctx, p, m)
			if err != nil {
				return forged{}, false, err
			}
			for j := len(p.Tiers.Tiers) - 1; j >= 0; j-- {
				if t := p.Tiers.Tiers[j].ID; !held[t] {
					d, _, err := w.earn(ctx, s, m, now, h.version, t, w.amount())
					return forged{d: d, note: fmt.Sprintf("tier %s, member %s has only held %v", t, m.ID, slices.Sorted(maps.Keys(held)))}, err == nil, err
				}
			}
		}
		return forged{}, false, nil
	case ForgedCountry:
		// FR, whose members' campaign pays a bonus, for a member of another country, with the
		// bonus in the points. (Another country that changes nothing stands, as a store's stale
		// copy of a member whose country changed: the ledger keeps the member's.)
		for _, i := range w.rng.Perm(len(s.members)) {
			m := s.members[i]
			if m.Country == "FR" {
				continue
			}
			as := m
			as.Country = "FR"
			d, _, err := w.earn(ctx, s, as, now, h.version, m.Tier, w.amount())
			return forged{d: d, note: fmt.Sprintf("country FR, with its members' bonus, for a member of %s", m.Country)}, err == nil, err
		}
		return forged{}, false, nil
	case ZoneCampaign:
		for _, amount := range []int64{w.amount(), 100 + w.rng.Int64N(1000)} {
			d, p, err := w.earn(ctx, s, m, now, h.version, m.Tier, amount)
			if err != nil || d.Points == 0 {
				return forged{}, false, err
			}
			l, ok := w.activeLease(s, "points", now)
			if !ok {
				return forged{}, false, nil
			}
			reg, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: d.Tier, Country: d.Country}, Amount: amount, Currency: d.Currency, At: now, Location: h.loc})
			if err != nil {
				return forged{}, false, err
			}
			for _, i := range w.rng.Perm(len(allZones)) {
				z := allZones[i]
				loc, _ := time.LoadLocation(z)
				res, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: d.Tier, Country: d.Country}, Amount: amount, Currency: d.Currency, At: now, Location: loc})
				if err != nil {
					return forged{}, false, err
				}
				if res.Points > reg.Points && res.Points <= l.Granted-l.Consumed {
					d.Points, d.TimeZone, d.Leases = res.Points, z, map[string]string{"points": l.ID}
					return forged{d: d, note: fmt.Sprintf("%d points with campaigns %v in %s; %d in the registered %s", res.Points, res.Campaigns, z, reg.Points, h.zone)}, true, nil
				}
			}
		}
		return forged{}, false, nil
	}
	return forged{}, false, nil
}

// forgeTime forges an event time out of bounds.
func (w *world) forgeTime(ctx context.Context, s *session, k Forgery) (forged, bool, error) {
	h := s.h
	m := w.someMember(s)
	now := s.now
	switch k {
	case FutureOccurred:
		at := now.Add(w.hub.Claims.MaxFuture + time.Millisecond + time.Duration(w.rng.Int64N(int64(48*time.Hour))))
		d, _, err := w.earn(ctx, s, m, at, h.version, "", w.amount())
		return forged{d: d, note: "occurred " + at.Sub(now).String() + " after the hub's clock"}, err == nil, err
	case FutureOffset:
		off := w.hub.Claims.MaxFuture + time.Second + time.Duration(w.rng.Int64N(int64(48*time.Hour)))
		d, _, err := w.earn(ctx, s, m, now.Add(off), h.version, "", w.amount())
		d.OccurredAt, d.ClockOffsetMS = now, off.Milliseconds()
		return forged{d: d, note: fmt.Sprintf("clock offset %d ms", d.ClockOffsetMS)}, err == nil, err
	case Backdated:
		at := s.floorLow.Add(-time.Millisecond - time.Duration(w.rng.Int64N(int64(6*time.Hour))))
		d, _, err := w.earn(ctx, s, m, at, h.version, "", w.amount())
		note := fmt.Sprintf("occurred %s before the floor %s", s.floorLow.Sub(at), s.floorLow.Format(time.TimeOnly))
		if w.rng.IntN(2) == 0 {
			d.OccurredAt, d.ClockOffsetMS = now, at.Sub(now).Milliseconds()
			note += " (by its clock offset)"
		}
		return forged{d: d, note: note}, err == nil, err
	}
	return forged{}, false, nil
}

// forgeVersion forges a rule version the store cannot have had.
func (w *world) forgeVersion(ctx context.Context, s *session, k Forgery) (forged, bool, error) {
	h := s.h
	m := w.someMember(s)
	now := s.now
	switch k {
	case OldVersion:
		// The newest version the store had replaced by one it received more than Backdate ago
		// (a couple of minutes more, as a hub may record a pull late): whether the hub counts
		// what it sent the store, or when the version was replaced against the store's floor,
		// nothing the store made now can be under it.
		for v := s.cur - 1; v >= 1; v-- {
			if nv, t, ok := h.newer(v); ok && t.Before(now.Add(-w.hub.Claims.Backdate-2*time.Minute)) {
				d, _, err := w.earn(ctx, s, m, now, v, m.Tier, w.amount())
				next, _ := s.version(v + 1)
				return forged{d: d, note: fmt.Sprintf("rule version %d, replaced at %s; the store received version %d at %s", v,
					next.published.Format(time.TimeOnly), nv, t.Format(time.TimeOnly))}, err == nil, err
			}
		}
		return forged{}, false, nil
	case UnsentVersion:
		if cur, _ := s.version(s.cur); cur.cv <= h.cursor {
			// Publish the program again, unchanged, as an operator might: this store has not
			// pulled it.
			p, err := w.hub.Program(ctx)
			if err != nil {
				return forged{}, false, err
			}
			if _, err := w.hub.SetProgram(ctx, p); err != nil {
				return forged{}, false, err
			}
			if err := w.hubDB.View(ctx, func(tx hub.Tx) error {
				s.cur++
				return w.readSession(ctx, tx, s)
			}); err != nil {
				return forged{}, false, err
			}
		}
		cur, _ := s.version(s.cur)
		d, _, err := w.earn(ctx, s, m, now, s.cur, m.Tier, w.amount())
		return forged{d: d, note: fmt.Sprintf("rule version %d (change %d), store's cursor %d", s.cur, cur.cv, h.cursor)}, err == nil, err
	case UnreceivedVersion:
		var cands []ruleVersion
		for _, rv := range s.versions {
			if _, ok := h.received[rv.v]; !ok && rv.cv <= h.cursor && !s.replacedBefore(rv.v, s.floorHigh) && !rv.published.After(now) {
				cands = append(cands, rv)
			}
		}
		if len(cands) == 0 {
			return forged{}, false, nil
		}
		rv := cands[w.rng.IntN(len(cands))]
		amount := w.amount()
		if w.rng.IntN(3) == 0 {
			amount = 1_000_000_000 // ten million euros: what a budget or a lease would cap
		}
		d, _, err := w.earn(ctx, s, m, now, rv.v, m.Tier, amount)
		next, _ := s.version(rv.v + 1)
		return forged{d: d, note: fmt.Sprintf("rule version %d (change %d, replaced at %s), which no pull brought the store (it received %v, cursor %d, floor %s)",
			rv.v, rv.cv, next.published.Format(time.TimeOnly), slices.Sorted(maps.Keys(h.received)), h.cursor, s.floorHigh.Format(time.TimeOnly))}, err == nil, err
	case MissingVersion:
		d, _, err := w.baseEarn(ctx, s, m)
		d.RuleVersion = []int64{0, -1 - w.rng.Int64N(1000), s.cur + 1 + w.rng.Int64N(1000)}[w.rng.IntN(3)]
		return forged{d: d, note: fmt.Sprintf("rule version %d", d.RuleVersion)}, err == nil, err
	}
	return forged{}, false, nil
}

// forgeLease forges the budget leases a delta spends.
func (w *world) forgeLease(ctx context.Context, s *session, k Forgery) (forged, bool, error) {
	h := s.h
	m := w.someMember(s)
	now := s.now
	switch k {
	case ForeignLease:
		bs, err := w.hub.Budgets(ctx)
		if err != nil {
			return forged{}, false, err
		}
		var ls []hub.Lease
		for _, b := range bs {
			for _, l := range b.Leases {
				if l.Store != h.id && l.State == hub.LeaseActive {
					ls = append(ls, l)
				}
			}
		}
		sortLeases(ls)
		for _, i := range w.rng.Perm(len(ls)) {
			l := ls[i]
			if d, ok, err := w.spendFrom(ctx, s, m, l.Budget, l.ID, max(l.Granted-l.Consumed, 1)); err != nil || ok {
				return forged{d: d, note: fmt.Sprintf("lease %s of store %s for %s", l.ID, l.Store, l.Budget)}, ok, err
			}
		}
		return forged{}, false, nil
	case OtherBudgetLease:
		for _, i := range w.rng.Perm(len(s.leases)) {
			l := s.leases[i]
			for _, b := range []string{"points", "coffee-count", "discount"} {
				if b == l.Budget {
					continue
				}
				if d, ok, err := w.spendFrom(ctx, s, m, b, l.ID, 50); err != nil || ok {
					return forged{d: d, note: fmt.Sprintf("its lease %s of %s named for %s", l.ID, l.Budget, b)}, ok, err
				}
			}
		}
		return forged{}, false, nil
	case NoLease:
		b := []string{"points", "coffee-count", "discount"}[w.rng.IntN(3)]
		d, ok, err := w.spendFrom(ctx, s, m, b, "", 1000)
		return forged{d: d, note: "no lease for " + b}, ok, err
	case OverdrawnLease:
		l, ok := w.activeLease(s, "points", now)
		if !ok {
			return forged{}, false, nil
		}
		left := l.Granted - l.Consumed
		pts := left + 1 + w.rng.Int64N(10)
		d, _, err := w.earn(ctx, s, m, now, h.version, m.Tier, pts*100+w.rng.Int64N(100))
		if err != nil {
			return forged{}, false, err
		}
		p, err := w.program(ctx, d.RuleVersion)
		if err != nil {
			return forged{}, false, err
		}
		res, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: d.Tier, Country: d.Country}, Amount: d.Amount, Currency: d.Currency, At: now, Location: h.loc})
		if err != nil || res.Points < pts {
			return forged{}, false, err
		}
		d.Points, d.Leases = pts, map[string]string{"points": l.ID}
		return forged{d: d, note: fmt.Sprintf("%d points from lease %s with %d of %d left", pts, l.ID, left, l.Granted)}, true, nil
	case SettledLease:
		var settled []hub.Lease
		err := w.hubDB.View(ctx, func(tx hub.Tx) error {
			for _, id := range h.leaseIDs {
				l, err := tx.Lease(ctx, id)
				if err != nil {
					return err
				}
				if l.State == hub.LeaseSettled {
					settled = append(settled, l)
				}
			}
			return nil
		})
		if err != nil || len(settled) == 0 {
			return forged{}, false, err
		}
		sortLeases(settled)
		l := settled[w.rng.IntN(len(settled))]
		d, ok, err := w.spendFrom(ctx, s, m, l.Budget, l.ID, max(l.Granted-l.Consumed, 1))
		return forged{d: d, note: fmt.Sprintf("settled lease %s of %s (%d of %d spent)", l.ID, l.Budget, l.Consumed, l.Granted)}, ok, err
	case InactiveLease:
		for _, i := range w.rng.Perm(len(s.leases)) {
			l := s.leases[i]
			if l.State != hub.LeaseActive {
				continue
			}
			var at time.Time
			var note string
			if before := l.CreatedAt.Add(-w.grantLeeway() - time.Millisecond); before.After(s.floorHigh) && w.rng.IntN(2) == 0 {
				at = s.floorHigh.Add(time.Millisecond + time.Duration(w.rng.Int64N(int64(before.Sub(s.floorHigh)))))
				note = fmt.Sprintf("occurred %s before lease %s was granted", l.CreatedAt.Sub(at), l.ID)
			} else if after := l.ExpiresAt.Add(time.Millisecond); !after.After(now.Add(w.hub.Claims.MaxFuture)) {
				at = after.Add(time.Duration(w.rng.Int64N(int64(now.Add(w.hub.Claims.MaxFuture).Sub(after)) + 1)))
				note = fmt.Sprintf("occurred %s after lease %s expired", at.Sub(l.ExpiresAt), l.ID)
			} else {
				continue
			}
			// A rule version the store had at that time, with the lease's budget.
			v := int64(0)
			for _, rv := range slices.Backward(s.versions) {
				if w.had(h, rv.v, at) && !rv.published.After(at.Add(w.hub.Claims.MaxFuture)) && !s.replacedBefore(rv.v, s.floorHigh) {
					v = rv.v
					break
				}
			}
			if v == 0 {
				continue
			}
			d, ok, err := w.spendAt(ctx, s, m, l.Budget, l.ID, max(l.Granted-l.Consumed, 1), at, v)
			if err != nil || ok {
				return forged{d: d, note: note}, ok, err
			}
		}
		return forged{}, false, nil
	}
	return forged{}, false, nil
}

// forgeNumbers forges amounts, lines and points.
func (w *world) forgeNumbers(ctx context.Context, s *session, k Forgery) (forged, bool, error) {
	h := s.h
	m := w.someMember(s)
	now := s.now
	switch k {
	case OverflowAmount:
		d, _, err := w.baseEarn(ctx, s, m)
		d.Amount = loyalty.MaxAmount + 1 + w.rng.Int64N(math.MaxInt64-loyalty.MaxAmount-1)
		d.Points = min(d.Points, 1+w.rng.Int64N(1000))
		if d.Points == 0 {
			d.Leases = nil
		}
		return forged{d: d, note: fmt.Sprintf("amount %d", d.Amount)}, err == nil, err
	case OverflowLines:
		d, _, err := w.baseEarn(ctx, s, m)
		if err != nil {
			return forged{}, false, err
		}
		a := d.Amount
		var note string
		switch w.rng.IntN(4) {
		case 0: // the int64 sum wraps around to the amount
			d.Lines = []loyalty.Line{{Qty: 1, Amount: math.MaxInt64}, {Qty: 1, Amount: math.MaxInt64}, {Qty: 1, Amount: a + 2}}
			note = "lines that wrap around to the amount"
		case 1:
			d.Lines = []loyalty.Line{{Qty: 1, Amount: -loyalty.MaxAmount}, {Qty: 1, Amount: a + loyalty.MaxAmount}}
			note = "a negative line and one over the maximum"
		case 2:
			d.Lines = []loyalty.Line{{Qty: loyalty.MaxQty + 1 + w.rng.Int64N(math.MaxInt64-loyalty.MaxQty-1), Amount: a}}
			note = fmt.Sprintf("quantity %d", d.Lines[0].Qty)
		default:
			d.Lines = make([]loyalty.Line, loyalty.MaxLines+1)
			for i := range d.Lines {
				d.Lines[i].Qty = 1
			}
			d.Lines[0].Amount = a
			note = fmt.Sprintf("%d lines", len(d.Lines))
		}
		return forged{d: d, note: note}, true, nil
	case HugePoints:
		d, _, err := w.baseEarn(ctx, s, m)
		switch w.rng.IntN(3) {
		case 0:
			d.Points = loyalty.MaxPoints + 1 + w.rng.Int64N(math.MaxInt64-loyalty.MaxPoints-1)
		case 1:
			d.Points = math.MaxInt64
		default:
			d.Kind, d.Reward, d.Amount, d.Currency = loyalty.KindRedeem, "coffee", 0, ""
			d.Points = []int64{math.MinInt64, -loyalty.MaxPoints - 1}[w.rng.IntN(2)]
		}
		return forged{d: d, note: fmt.Sprintf("%s of %d points", d.Kind, d.Points)}, err == nil, err
	case WrongPoints:
		d, p, err := w.earn(ctx, s, m, now, h.version, m.Tier, 100+w.rng.Int64N(3000))
		if err != nil {
			return forged{}, false, err
		}
		l, ok := w.activeLease(s, "points", now)
		res, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: d.Tier, Country: d.Country}, Amount: d.Amount, Currency: d.Currency, At: now, Location: h.loc})
		if err != nil {
			return forged{}, false, err
		}
		pts := res.Points + 1 + w.rng.Int64N(20)
		if !ok || l.Granted-l.Consumed < pts {
			return forged{}, false, nil
		}
		d.Points, d.Leases = pts, map[string]string{"points": l.ID}
		return forged{d: d, note: fmt.Sprintf("%d points for a sale that earns %d", pts, res.Points)}, true, nil
	case WrongCost:
		m, ok := w.memberHeld(s, true) // a member it does not hold would be refused for that
		if !ok {
			return forged{}, false, nil
		}
		d, ok, err := w.hostileRedeem(ctx, s, m, "tote", now)
		if err != nil || !ok {
			return forged{}, false, err
		}
		cost := -d.Points
		d.Points = -w.rng.Int64N(cost)
		return forged{d: d, note: fmt.Sprintf("%d points for a reward of %d", -d.Points, cost)}, true, nil
	case PercentNoAmount:
		m, ok := w.memberHeld(s, true)
		if !ok {
			return forged{}, false, nil
		}
		d, ok, err := w.hostileRedeem(ctx, s, m, "ten-pct", now)
		return forged{d: d, note: "percent_off reward, no order amount"}, ok, err
	case UnheldRedeem:
		m, ok := w.memberHeld(s, false)
		if !ok {
			return forged{}, false, nil
		}
		d, ok, err := w.hostileRedeem(ctx, s, m, "tote", now)
		return forged{d: d, note: "a tote on the points of " + m.ID + ", whom the store does not hold"}, ok, err
	case BorrowedCode:
		m, ok := w.memberHeld(s, false)
		if !ok {
			return forged{}, false, nil
		}
		d, ok, err := w.hostileRedeem(ctx, s, m, "tote", now)
		if !ok || err != nil {
			return forged{}, false, err
		}
		// The code of a member the store may hold (its own scan), or the victim's with its
		// signature changed.
		other, note := w.someMember(s), "a code of another member, "
		if other.ID == m.ID || w.rng.IntN(2) == 0 {
			other, note = m, "the member's code, doctored, "
		}
		code, err := w.hub.MemberToken(ctx, other.ID)
		if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			return forged{}, false, nil // an erased member has no code
		} else if err != nil {
			return forged{}, false, err
		}
		if other.ID == m.ID {
			i := len(code) - 1 - w.rng.IntN(20) // in the signature
			c := byte('A')
			if code[i] == c {
				c = 'B'
			}
			code = code[:i] + string(c) + code[i+1:]
		} else {
			note += other.ID + ", "
		}
		d.Presence = code
		return forged{d: d, note: "a tote on the points of " + m.ID + ", whom the store does not hold, with " + note + "as proof they were there"}, true, nil
	}
	return forged{}, false, nil
}

// forgeIdentity forges whose delta it is, what kind, its ids.
func (w *world) forgeIdentity(ctx context.Context, s *session, k Forgery) (forged, bool, error) {
	h := s.h
	m := w.someMember(s)
	switch k {
	case Replay, ReplayRestamped:
		es, err := w.othersDeltas(ctx, s, k == ReplayRestamped)
		if err != nil || len(es) == 0 {
			return forged{}, false, err
		}
		e := es[w.rng.IntN(len(es))]
		d := e.Delta
		if k == ReplayRestamped {
			d.Store = h.id
		}
		return forged{d: d, note: fmt.Sprintf("%s delta %s of store %s", e.Kind, e.ID, e.Store)}, true, nil
	case Impersonate:
		others := []string{loyalty.OnlineStore, loyalty.HubStore}
		for _, st := range w.stores {
			others = append(others, st.id)
		}
		for _, o := range w.hostile {
			if o != h {
				others = append(others, o.id)
			}
		}
		d, _, err := w.baseEarn(ctx, s, m)
		d.Store = others[w.rng.IntN(len(others))]
		return forged{d: d, note: "as store " + d.Store}, err == nil, err
	case InvalidUTF8:
		d, _, err := w.baseEarn(ctx, s, m)
		bad := []string{"\xff", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}[w.rng.IntN(5)]
		spoil := func(s string) string { i := w.rng.IntN(len(s) + 1); return s[:i] + bad + s[i:] }
		fields := []struct {
			name string
			f    *string
		}{{"id", &d.ID}, {"store", &d.Store}, {"member", &d.Member}, {"order", &d.OrderID}, {"terminal", &d.Terminal},
			{"tier", &d.Tier}, {"country", &d.Country}, {"tz", &d.TimeZone}, {"reward", &d.Reward}}
		f := fields[w.rng.IntN(len(fields))]
		note := "in " + f.name
		if w.rng.IntN(len(fields)+1) == 0 {
			d.Lines, d.Points, d.Leases = []loyalty.Line{{SKU: spoil("sku"), Qty: 1, Amount: d.Amount}}, 0, nil
			note = "in a line's sku"
		} else {
			*f.f = spoil(*f.f)
		}
		return forged{d: d, note: note}, err == nil, err
	case HubKind:
		d, p, err := w.baseEarn(ctx, s, m)
		if err != nil {
			return forged{}, false, err
		}
		d.Amount, d.Currency, d.Leases, d.Tier = 0, "", nil, ""
		switch w.rng.IntN(3) {
		case 0:
			d.Kind, d.Points = loyalty.KindAdjust, []int64{1, -1}[w.rng.IntN(2)]*(1+w.rng.Int64N(100000))
		case 1:
			d.Kind, d.Points = loyalty.KindTier, 0
			if p.Tiers != nil {
				d.Tier = p.Tiers.Tiers[len(p.Tiers.Tiers)-1].ID
			}
		default:
			d.Kind, d.Points = loyalty.KindExpire, -1-w.rng.Int64N(max(m.Balance, 1))
		}
		return forged{d: d, note: fmt.Sprintf("%s of %d points", d.Kind, d.Points)}, true, nil
	case ActionEarn:
		d, _, err := w.baseEarn(ctx, s, m)
		d.Rule = []string{"signup", "review", "birthday", loyalty.RuleReferral, loyalty.RulePurchase}[w.rng.IntN(5)]
		d.Amount, d.Points, d.Leases = 0, 1+w.rng.Int64N(5000), nil
		return forged{d: d, note: fmt.Sprintf("rule %s, %d points", d.Rule, d.Points)}, err == nil, err
	}
	return forged{}, false, nil
}

// forgeReverse forges reversals.
func (w *world) forgeReverse(ctx context.Context, s *session, k Forgery) (forged, bool, error) {
	h := s.h
	switch k {
	case ReverseForeign:
		es, err := w.othersDeltas(ctx, s, true)
		if err != nil {
			return forged{}, false, err
		}
		es = slices.DeleteFunc(es, func(e hub.LedgerEntry) bool { return e.Kind != loyalty.KindEarn && e.Kind != loyalty.KindRedeem })
		if len(es) == 0 {
			return forged{}, false, nil
		}
		e := es[w.rng.IntN(len(es))]
		return forged{d: w.reversal(s, e.Delta), note: fmt.Sprintf("reverses %s delta %s of store %s", e.Kind, e.ID, e.Store)}, true, nil
	case ReverseWrongPoints, ReverseOtherMember, ReverseTwice:
		var cands []loyalty.Delta
		for _, d := range h.own {
			if h.reversed[d.ID] == (k == ReverseTwice) {
				cands = append(cands, d)
			}
		}
		if len(cands) == 0 {
			return forged{}, false, nil
		}
		orig := cands[w.rng.IntN(len(cands))]
		d := w.reversal(s, orig)
		note := fmt.Sprintf("reverses its %s %s of %d points", orig.Kind, orig.ID, orig.Points)
		switch k {
		case ReverseWrongPoints:
			for d.Points == -orig.Points {
				d.Points = -orig.Points + w.rng.Int64N(101) - 50
			}
			note += fmt.Sprintf(" for %d", d.Points)
		case ReverseOtherMember:
			for d.Member == orig.Member {
				d.Member = w.someMember(s).ID
			}
			note += " on member " + d.Member
		default:
			note += ", already reversed"
		}
		return forged{d: d, note: note}, true, nil
	}
	return forged{}, false, nil
}

// baseEarn is an honest earn of a sale to m now, with the member's tier.
func (w *world) baseEarn(ctx context.Context, s *session, m loyalty.Member) (loyalty.Delta, *loyalty.Program, error) {
	return w.earn(ctx, s, m, s.now, s.h.version, m.Tier, w.amount())
}

// spendFrom makes an honest-looking delta now that spends budget from lease id ("": none), at
// most want of it: an earn of the points budget, a coffee for the count, a five-off for discount.
func (w *world) spendFrom(ctx context.Context, s *session, m loyalty.Member, budget, id string, want int64) (loyalty.Delta, bool, error) {
	return w.spendAt(ctx, s, m, budget, id, want, s.now, s.h.version)
}

func (w *world) spendAt(ctx context.Context, s *session, m loyalty.Member, budget, id string, want int64, at time.Time, v int64) (loyalty.Delta, bool, error) {
	p, err := w.program(ctx, v)
	if err != nil {
		return loyalty.Delta{}, false, err
	}
	var d loyalty.Delta
	switch budget {
	case "points":
		tier := ""
		if at.Equal(s.now) {
			tier = m.Tier
		}
		d, p, err = w.earn(ctx, s, m, at, v, tier, w.amount())
		if err != nil {
			return d, false, err
		}
		res, err := p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: d.Tier, Country: d.Country}, Amount: d.Amount, Currency: d.Currency, At: d.EventTime(), Location: s.h.loc})
		if err != nil {
			return d, false, err
		}
		d.Points = min(res.Points, max(want, 1))
	case "coffee-count", "discount":
		reward := map[string]string{"coffee-count": "coffee", "discount": "five-off"}[budget]
		r, err := p.Reward(reward)
		if err != nil {
			return d, false, nil
		}
		d = loyalty.Delta{ID: w.hid(), Store: s.h.id, Member: m.ID, Kind: loyalty.KindRedeem, OrderID: s.h.order(), Reward: r.ID,
			Points: -r.PointsCost, RuleVersion: v, OccurredAt: at}
		d.Normalize()
	default:
		return d, false, nil
	}
	d.Leases = nil
	for _, b := range p.BudgetsFor(&d) {
		if b.Consumption(p, &d, nil) <= 0 {
			continue
		}
		if b.ID != budget {
			return d, false, nil // it would spend another budget too: keep the forgery to one claim
		}
		if id != "" {
			d.Leases = map[string]string{b.ID: id}
		}
		return d, true, nil
	}
	return d, false, nil // the budget is not spent by it (not in this rule version)
}

// tiersEver returns every tier a member has held: the entry tier, the tiers of their tier
// changes and their tier now.
func (w *world) tiersEver(ctx context.Context, p *loyalty.Program, m loyalty.Member) (map[string]bool, error) {
	held := map[string]bool{m.Tier: true, p.Tiers.Tiers[0].ID: true}
	err := w.hubDB.View(ctx, func(tx hub.Tx) error {
		es, err := tx.Ledger(ctx, m.ID, 1<<30)
		for _, e := range es {
			if e.Kind == loyalty.KindTier {
				held[e.Tier] = true
			}
		}
		return err
	})
	delete(held, "")
	return held, err
}

// othersDeltas returns the applied deltas of other stores (and of the online channel and the hub),
// only the kinds a store may push if storeKinds.
func (w *world) othersDeltas(ctx context.Context, s *session, storeKinds bool) ([]hub.LedgerEntry, error) {
	var out []hub.LedgerEntry
	err := w.hubDB.View(ctx, func(tx hub.Tx) error {
		for _, m := range s.members {
			es, err := tx.Ledger(ctx, m.ID, 1<<30)
			if err != nil {
				return err
			}
			for _, e := range slices.Backward(es) {
				if e.Store == s.h.id || storeKinds && (e.Kind != loyalty.KindEarn && e.Kind != loyalty.KindRedeem && e.Kind != loyalty.KindReverse || e.Rule != "") {
					continue
				}
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

// --- the checker ----------------------------------------------------------------------------

// pushForged pushes forged deltas in one batch and checks that the hub refused every one and
// that nothing moved. Text that is not UTF-8 goes out raw, in a push of its own: the hub refuses
// such a message whole and ends the session, and the store connects again.
func (w *world) pushForged(ctx context.Context, s *session, batch []forged) error {
	var rest []forged
	for _, f := range batch {
		if f.kind != InvalidUTF8 {
			rest = append(rest, f)
		} else if err := w.pushBatch(ctx, s, []forged{f}, true); err != nil {
			return err
		}
	}
	return w.pushBatch(ctx, s, rest, false)
}

func (w *world) pushBatch(ctx context.Context, s *session, batch []forged, raw bool) error {
	if len(batch) == 0 {
		return nil
	}
	before := s.snap // nothing else changes the hub during a session
	if before == nil {
		var err error
		if before, err = w.snapshot(ctx); err != nil {
			return err
		}
	}
	ds := make([]loyalty.Delta, len(batch))
	for i, f := range batch {
		ds[i] = f.d
	}
	w.res.Stats.HostilePushes++
	w.res.Stats.HostileForged += len(batch)
	ack, err := s.h.wire.pushBytes(ctx, ds, raw)
	if refusal, ok := s.h.wire.refusal(); raw && err != nil && ok {
		// The hub refused the message whole, told the store why and ended the session: every
		// delta in it is refused for that reason.
		ack = &lsync.Ack{}
		for _, d := range ds {
			ack.Results = append(ack.Results, lsync.Result{DeltaID: d.ID, Status: lsync.StatusRejected, Code: refusal.Code, Message: refusal.Message})
		}
		s.h.wire.close(ctx)
		s.h.wire = nil
		if s.h.wire, err = w.dial(ctx, s.h.id); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("hostile store %s: the hub ended the session on a push of forged deltas %v: %w", s.h.id, ds, err)
	}
	if len(ack.Results) != len(batch) {
		w.violate("seed %d: hostile store %s pushed %d forged deltas, the ack has %d results", w.cfg.Seed, s.h.id, len(batch), len(ack.Results))
	}
	var kinds []string
	for i, f := range batch {
		kinds = append(kinds, f.kind.String())
		w.res.Stats.Forged[f.kind]++
		if i >= len(ack.Results) {
			continue
		}
		r := ack.Results[i]
		switch {
		case r.Status != lsync.StatusRejected:
			w.res.Stats.HostileApplied++
			w.res.Stats.ForgedApplied[f.kind]++
			if r.Status == lsync.StatusApplied {
				// Counted in the end checks as if approved, so they report this forgery once, here
				// (a conflict it caused, such as unleased spending, is still reported there).
				w.record(loyalty.Receipt{Member: f.d.Member, Points: f.d.Points, Deltas: []string{f.d.ID}})
			}
			w.violate("seed %d: hostile store %s, forgery %s (%s): %s delta %s of %s, %d points, rule version %d: the hub answered %q (seq %d)",
				w.cfg.Seed, s.h.id, f.kind, f.note, f.d.Kind, f.d.ID, f.d.Member, f.d.Points, f.d.RuleVersion, r.Status, r.Seq)
		case refusedFor(f.kind, r):
			w.res.Stats.ForgedOnTarget[f.kind]++
		default:
			w.res.Stats.HostileOffTarget++
			if len(w.res.OffTarget) < 20 {
				w.res.OffTarget = append(w.res.OffTarget, fmt.Sprintf("step %d: %s (%s): %s %s", w.res.Stats.Steps, f.kind, f.note, r.Code, r.Message))
			}
		}
	}
	after, err := w.snapshot(ctx)
	if err != nil {
		return err
	}
	s.snap = after
	if diff := before.diff(after); len(diff) > 0 {
		w.res.Stats.HostileMoved++
		w.violate("seed %d: hostile store %s pushed forgeries %v and the hub's state moved: %s", w.cfg.Seed, s.h.id, kinds, strings.Join(diff[:min(len(diff), 6)], "; "))
		// What it moved (leases, tiers) is what the next forgeries are made from.
		return w.hubDB.View(ctx, func(tx hub.Tx) error { return w.readSession(ctx, tx, s) })
	}
	return nil
}

// snapshot is what no forged delta may move.
type snapshot map[string]string

func (w *world) snapshot(ctx context.Context) (snapshot, error) {
	s := snapshot{}
	err := w.hubDB.View(ctx, func(tx hub.Tx) error {
		for after := ""; ; {
			ms, err := tx.Members(ctx, after, 1000)
			if err != nil {
				return err
			}
			if len(ms) == 0 {
				break
			}
			for _, m := range ms {
				sum, err := tx.LedgerSum(ctx, m.ID)
				if err != nil {
					return err
				}
				newest, err := tx.Ledger(ctx, m.ID, 1) // a new entry, of any points, would be the newest
				if err != nil {
					return err
				}
				last := int64(0)
				if len(newest) > 0 {
					last = newest[0].Seq
				}
				s["member "+m.ID] = fmt.Sprintf("balance %d, version %d, tier %q, punches %v, ledger summing to %d up to seq %d", m.Balance, m.Version, m.Tier, m.Punches, sum, last)
			}
			after = ms[len(ms)-1].ID
		}
		cs, err := tx.Conflicts(ctx, 0, 1<<30)
		s["conflicts"] = fmt.Sprint(len(cs))
		return err
	})
	if err != nil {
		return nil, err
	}
	bs, err := w.hub.Budgets(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		s["budget "+b.ID] = fmt.Sprintf("spent %d, outstanding %d", b.Spent, b.Outstanding)
		for _, l := range b.Leases {
			s["lease "+l.ID] = fmt.Sprintf("of %s for %s: granted %d, consumed %d, %s until %s", l.Store, l.Budget, l.Granted, l.Consumed, l.State, l.ExpiresAt.Format(time.TimeOnly))
		}
	}
	return s, nil
}

func (s snapshot) diff(t snapshot) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if t[k] != s[k] {
			out = append(out, fmt.Sprintf("%s: %s -> %s", k, s[k], cmp.Or(t[k], "(gone)")))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if _, ok := s[k]; !ok {
			out = append(out, fmt.Sprintf("%s: new, %s", k, t[k]))
		}
	}
	return out
}
