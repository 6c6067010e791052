// Package hub is the central service of loyalty edge sync: the authoritative ledger and
// balances, deduplication and exactly-once apply of deltas pushed by store agents, the change
// feed that keeps agents' replicas current, the online channel (earn and redeem from e-commerce or
// a member app), and the operator's admin API.
//
// The logic here runs inside transactions of a Store (hub/sqlite; a PostgreSQL backend can
// implement the same interface). Transport is the sync package's Server, which calls Hub through
// the lsync.Handler interface.
package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Hub is the central service. Set the exported fields before use.
type Hub struct {
	Store           Store
	Logger          *slog.Logger
	Now             func() time.Time
	MemberTokenTTL  time.Duration // lifetime of member QR tokens; 0: no expiry
	VoucherTokenTTL time.Duration // lifetime of voucher tokens
	// OnChange is called after every commit that agents must see, with the new change version.
	OnChange func(version int64)
	// OnTokenRotated is called after a store's token is replaced, to end its live session.
	OnTokenRotated func(store string)
	Lease          LeaseConfig
	// Faults breaks the hub on purpose, for the simulator's test that its checker catches it.
	Faults struct {
		IgnoreOutstanding bool // grant leases and accept online spending as if no quota were leased out
	}

	// Claims bounds the event times the hub accepts from stores (see checkClaims).
	Claims ClaimLimits

	// KEK seals the QR signing keys in the database (keys.go). Init fails without it.
	KEK *seal.Box

	// TierChanges counts tier upgrades and downgrades since the hub started (for the demo and metrics).
	TierChanges int64

	healthMu sync.Mutex
	health   map[string]Health
	started  map[string]time.Time // per store: when its live session started
}

// ClaimLimits bounds the event time a store may give a delta: from Backdate before the store's
// last flushed pull (everything it had made then was pushed before it), and no more than
// MaxOffline before the hub's clock, up to MaxFuture after the hub's clock.
type ClaimLimits struct {
	Backdate   time.Duration
	MaxOffline time.Duration
	MaxFuture  time.Duration
}

// DefaultClaimLimits returns the defaults: an hour of backdating, 30 days offline, ten minutes of
// clock error.
func DefaultClaimLimits() ClaimLimits {
	return ClaimLimits{Backdate: time.Hour, MaxOffline: 30 * 24 * time.Hour, MaxFuture: 10 * time.Minute}
}

var _ lsync.Handler = (*Hub)(nil)

// New returns a Hub on s with default settings.
func New(s Store) *Hub {
	return &Hub{
		Store:           s,
		Logger:          slog.Default(),
		Now:             time.Now,
		MemberTokenTTL:  2 * 365 * 24 * time.Hour,
		VoucherTokenTTL: 90 * 24 * time.Hour,
		Lease:           DefaultLeaseConfig(),
		Claims:          DefaultClaimLimits(),
		health:          make(map[string]Health),
		started:         make(map[string]time.Time),
	}
}

// Init makes sure the hub has a program and a signing key, creating the defaults on first start,
// and that its signing keys are sealed under KEK and open with it.
func (h *Hub) Init(ctx context.Context) error {
	return h.update(ctx, func(tx Tx) error {
		if h.KEK == nil {
			// Without the key the hub cannot sign, nor make its first signing key: tools that
			// do not sign may go on with a database that has one.
			if _, err := tx.SigningKey(ctx); err != nil {
				return loyalty.Errorf(loyalty.EINVALID, "the hub needs a key-encryption key to seal its QR signing keys: set keys.kek_file (or keys.kek)")
			}
			return nil
		}
		if _, _, err := tx.Program(ctx); loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			v, err := tx.NextVersion(ctx)
			if err != nil {
				return err
			}
			if err := tx.InsertProgram(ctx, loyalty.DefaultProgram(), v, h.Now()); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if _, err := tx.SigningKey(ctx); loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			return h.insertNewKey(ctx, tx)
		} else if err != nil {
			return err
		}
		return h.sealKeys(ctx, tx)
	})
}

// update runs fn in a write transaction and reports the newest change version to OnChange.
func (h *Hub) update(ctx context.Context, fn func(Tx) error) error {
	var before int64
	var after int64
	err := h.Store.Update(ctx, func(tx Tx) error {
		var err error
		if before, err = tx.CurrentVersion(ctx); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		after, err = tx.CurrentVersion(ctx)
		return err
	})
	if err == nil && after > before && h.OnChange != nil {
		h.OnChange(after)
	}
	return err
}

// --- sync.Handler ---------------------------------------------------------------------------

// Authenticate implements lsync.Handler. Tokens are stored as SHA-256 hashes and compared in
// constant time.
func (h *Hub) Authenticate(ctx context.Context, store, token string) error {
	var s StoreInfo
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		s, err = tx.StoreInfo(ctx, store)
		return err
	})
	refused := loyalty.Errorf(loyalty.EUNAUTHORIZED,
		"store %q: unknown store or wrong token; check the agent's token (an operator can issue a new one with `loyalty store token --id %s`)", store, store)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return refused
	} else if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(s.TokenHash)) != 1 {
		return refused
	}
	return nil
}

// Push implements lsync.Handler: the batch is applied in one transaction. If that fails, the
// deltas are applied one at a time, and one that fails on its own twice is set aside as a
// rejection (EINTERNAL) for an operator, so it cannot stall the store's outbox behind it. The
// rejection keeps the whole delta: nothing is lost.
func (h *Hub) Push(ctx context.Context, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	ack, err := h.push(ctx, store, deltas)
	if err == nil || len(deltas) == 0 || ctx.Err() != nil {
		return ack, err
	}
	h.Logger.Warn("a push failed; applying its deltas one at a time", slog.String("store", store), slog.Any("err", err))
	ack = &lsync.Ack{Results: make([]lsync.Result, 0, len(deltas)), Balances: []lsync.Balance{}}
	for _, d := range deltas {
		one, err := h.push(ctx, store, []loyalty.Delta{d})
		if err != nil && ctx.Err() == nil {
			one, err = h.push(ctx, store, []loyalty.Delta{d})
		}
		if err != nil && ctx.Err() == nil {
			h.Logger.Error("delta set aside: it cannot be applied", slog.String("store", store), slog.String("delta", d.ID), slog.Any("err", err))
			one, err = h.quarantine(ctx, store, d)
		}
		if err != nil {
			return nil, err // storage is down: the store retries the whole push later
		}
		ack.Results = append(ack.Results, one.Results...)
		ack.Balances = append(ack.Balances, one.Balances...)
	}
	return ack, nil
}

// quarantine records a delta that cannot be applied as a rejection, in a transaction of its own.
func (h *Hub) quarantine(ctx context.Context, store string, d loyalty.Delta) (*lsync.Ack, error) {
	var r lsync.Result
	err := h.update(ctx, func(tx Tx) error {
		var err error
		r, err = h.newApplier(tx).reject(ctx, store, d, loyalty.Errorf(loyalty.EINTERNAL,
			"the hub could not apply this change (an internal error; the details are in the hub's log); it is set aside for an operator"))
		return err
	})
	return &lsync.Ack{Results: []lsync.Result{r}, Balances: []lsync.Balance{}}, err
}

func (h *Hub) push(ctx context.Context, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	var ack *lsync.Ack
	err := h.update(ctx, func(tx Tx) error {
		a := h.newApplier(tx)
		ack = &lsync.Ack{Results: make([]lsync.Result, 0, len(deltas))}
		for _, d := range deltas {
			r, err := a.apply(ctx, store, d)
			if err != nil {
				return fmt.Errorf("delta %s: %w", d.ID, err)
			}
			ack.Results = append(ack.Results, r)
		}
		var err error
		ack.Balances, err = a.finish(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ack, nil
}

// Pull implements lsync.Handler. It reads one snapshot: the members in store's scope changed
// after cursor, the program and the keys if they changed, and the cursor to resume from.
func (h *Hub) Pull(ctx context.Context, store string, req lsync.Pull) (*lsync.Changes, error) {
	cursor, limit := req.Cursor, req.Limit
	ch := &lsync.Changes{}
	err := h.Store.Update(ctx, func(tx Tx) error {
		upTo, err := tx.CurrentVersion(ctx)
		if err != nil {
			return err
		}
		if ch.Members, err = tx.MembersSince(ctx, store, cursor, limit); err != nil {
			return err
		}
		if len(ch.Members) == limit {
			ch.More = true
			upTo = ch.Members[len(ch.Members)-1].Version
		}
		p, pv, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		if pv > cursor && pv <= upTo {
			ch.Program = &p
		}
		keys, err := tx.PublicKeys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.Version > cursor && k.Version <= upTo {
				ch.Keys = append(ch.Keys, k.PublicKey)
			}
		}
		ch.Cursor = max(upTo, cursor)
		// This pull shows the store received the answer to its previous one; the current program
		// goes to a store that was never sent it, whatever cursor the store names.
		if err := tx.ProgramsReceived(ctx, store, h.Now()); err != nil {
			return err
		}
		if ch.Program == nil && !ch.More {
			if sent, err := tx.ProgramsSent(ctx, store, p.Version, 1); err != nil {
				return err
			} else if len(sent) == 0 {
				ch.Program = &p
			}
		}
		if ch.Program != nil {
			if err := tx.MarkProgramSent(ctx, store, ch.Program.Version, h.Now()); err != nil {
				return err
			}
		}
		if !ch.More {
			if err := h.markFlushed(ctx, tx, store, req.Flushed); err != nil {
				return err
			}
			info, err := tx.StoreInfo(ctx, store)
			if err != nil {
				return err
			}
			ch.TimeZone = info.TimeZone // "" for a store registered before zones were: its agent keeps its own
			ch.Leases, err = h.newApplier(tx).leases(ctx, store, req.Flushed)
			return err
		}
		return err
	})
	return ch, err
}

// Subscribe implements lsync.Handler: the member, in the store's scope from now on, and their
// standing, read in the same transaction so that the standing is exactly what the copy's version
// includes.
func (h *Hub) Subscribe(ctx context.Context, store string, req lsync.Subscribe) (*loyalty.Member, *lsync.Standing, error) {
	if !loyalty.ValidText(req.Voucher, loyalty.MaxIDLength) {
		return nil, nil, loyalty.Errorf(loyalty.EINVALID, "voucher id is not valid text of at most %d characters", loyalty.MaxIDLength)
	}
	var m loyalty.Member
	var st *lsync.Standing
	err := h.Store.Update(ctx, func(tx Tx) error {
		var err error
		if m, err = tx.Member(ctx, req.Member); err != nil {
			return err
		}
		if st, err = h.newApplier(tx).standing(ctx, req.Member, req.Voucher); err != nil {
			return err
		}
		return tx.Subscribe(ctx, store, req.Member)
	})
	if err != nil {
		return nil, nil, err
	}
	return &m, st, nil
}

// Seen implements lsync.Handler. Health is kept in memory and written to the store when a
// store connects or disconnects, so heartbeats from thousands of stores cost no writes.
func (h *Hub) Seen(ctx context.Context, store string, s lsync.Health) error {
	h.healthMu.Lock()
	prev, known := h.health[store]
	cur := Health{Connected: s.Connected, LastSeen: s.At, ClockOffsetMS: s.ClockOffsetMS, Outbox: s.Outbox}
	if !s.Connected || s.ClockOffsetMS == 0 && s.Outbox == 0 {
		cur.ClockOffsetMS, cur.Outbox = prev.ClockOffsetMS, prev.Outbox
	}
	cur.ClockSkewed = time.Duration(max(cur.ClockOffsetMS, -cur.ClockOffsetMS))*time.Millisecond > MaxClockSkew
	if cur.ClockSkewed && !prev.ClockSkewed {
		h.Logger.Warn("store clock is far off the hub's; its event times are corrected by the measured offset",
			slog.String("store", store), slog.Int64("clock_offset_ms", cur.ClockOffsetMS))
	}
	h.health[store] = cur
	if s.Connected && !prev.Connected {
		h.started[store] = s.At
	} else if !s.Connected {
		delete(h.started, store)
	}
	h.healthMu.Unlock()
	if known && prev.Connected == cur.Connected {
		return nil
	}
	return h.Store.Update(ctx, func(tx Tx) error { return tx.SetStoreHealth(ctx, store, cur) })
}

// --- applying deltas ------------------------------------------------------------------------

// applier applies deltas within one transaction and tracks the balances they change, so a batch
// stamps each member once with a new version.
type applier struct {
	*Hub
	tx         Tx
	balances   map[string]int64 // members read in this transaction, with their running balance
	order      []string         // members whose balance changed, in the order they first changed
	changed    map[string]bool
	reported   []string                    // members of duplicates, whose balance the ack reports as it is
	members    map[string]loyalty.Member   // as read at the start of the transaction
	punches    map[string]map[string]int64 // running punch card counts
	programs   map[int64]*loyalty.Program  // rule versions are immutable once published
	subscribed map[[2]string]bool
	stores     map[string]StoreInfo
	cur        *loyalty.Program // the newest program, for budgets and limits
	epochInfo  *EpochInfo       // read once per transaction: it changes only with a restore
}

func (h *Hub) newApplier(tx Tx) *applier {
	return &applier{Hub: h, tx: tx, balances: make(map[string]int64), changed: make(map[string]bool), programs: make(map[int64]*loyalty.Program),
		members: make(map[string]loyalty.Member), punches: make(map[string]map[string]int64),
		subscribed: make(map[[2]string]bool), stores: make(map[string]StoreInfo)}
}

// program returns rule version v, read once per transaction.
func (a *applier) program(ctx context.Context, v int64) (*loyalty.Program, error) {
	if p, ok := a.programs[v]; ok {
		return p, nil
	}
	p, err := a.tx.ProgramVersion(ctx, v)
	if err != nil {
		return nil, err
	}
	a.programs[v] = &p
	return &p, nil
}

// apply applies one delta pushed by store. Rule violations become a rejected Result, recorded
// for review; only storage failures return an error.
func (a *applier) apply(ctx context.Context, store string, d loyalty.Delta) (lsync.Result, error) {
	d.Normalize()
	hash := d.Hash()
	// Who may push this delta is settled before deduplication: a store that re-pushes another
	// store's delta id learns nothing about it, not even that it exists.
	if err := a.identity(store, &d); err != nil {
		return a.reject(ctx, store, d, err)
	}
	if e, err := a.tx.Delta(ctx, d.ID); err == nil {
		if e.Hash == hash {
			a.report(d.Member)
			return lsync.Result{DeltaID: d.ID, Status: lsync.StatusDuplicate, Seq: e.Seq}, nil
		}
		a.Logger.Warn("delta id reused for different content", slog.String("store", store), slog.String("delta", d.ID))
		return a.reject(ctx, store, d, loyalty.Errorf(loyalty.EDUPLICATE,
			"delta id %s was already used for a different change; this one was not applied", d.ID))
	} else if loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		return lsync.Result{}, err
	}
	if err := a.check(ctx, store, &d); loyalty.ErrorCode(err) == loyalty.EINTERNAL {
		return lsync.Result{}, err
	} else if err != nil {
		return a.reject(ctx, store, d, err)
	}
	bal, err := a.balance(ctx, d.Member)
	if err != nil {
		return lsync.Result{}, err
	}
	seq, inserted, err := a.tx.InsertDelta(ctx, d, hash, a.Now())
	if err != nil {
		return lsync.Result{}, err
	} else if !inserted {
		return lsync.Result{DeltaID: d.ID, Status: lsync.StatusDuplicate, Seq: seq}, nil
	}
	bal += d.Points
	a.balances[d.Member] = bal
	if len(d.Punches) > 0 {
		ps := a.punches[d.Member]
		for card, n := range d.Punches {
			ps[card] += n
		}
	}
	if !a.changed[d.Member] {
		a.changed[d.Member] = true
		a.order = append(a.order, d.Member) // stamped with a new version in finish
	}
	if key := [2]string{store, d.Member}; store != loyalty.OnlineStore && !a.subscribed[key] {
		if err := a.tx.Subscribe(ctx, store, d.Member); err != nil {
			return lsync.Result{}, err
		}
		a.subscribed[key] = true
	}
	if err := a.conflicts(ctx, store, d, bal); err != nil {
		return lsync.Result{}, err
	}
	if err := a.account(ctx, store, d); err != nil {
		return lsync.Result{}, err
	}
	if err := a.referral(ctx, d); err != nil {
		return lsync.Result{}, err
	}
	return lsync.Result{DeltaID: d.ID, Status: lsync.StatusApplied, Seq: seq}, nil
}

// identity checks a delta's shape and that store may push it at all. It returns EINVALID or
// EUNAUTHORIZED.
func (a *applier) identity(store string, d *loyalty.Delta) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Store != store {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "store %s cannot push changes as another store", store)
	}
	if (d.Kind == loyalty.KindAdjust || d.Kind == loyalty.KindTier || d.Kind == loyalty.KindExpire) && store != loyalty.HubStore {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "only the hub makes %s deltas; store %s pushed one", d.Kind, store)
	}
	if d.Kind == loyalty.KindEarn && d.Rule != "" && store != loyalty.OnlineStore && store != loyalty.HubStore {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "stores award points for sales; action %q goes through the hub's API", d.Rule)
	}
	return nil
}

// check validates a delta against the hub's state. It returns EINVALID, ENOTFOUND,
// EUNAUTHORIZED, EBUDGET or ECONFLICT for deltas that must not be applied.
func (a *applier) check(ctx context.Context, store string, d *loyalty.Delta) error {
	bal, err := a.balance(ctx, d.Member)
	if err != nil {
		return err
	}
	if d.Points > 0 && bal > loyalty.MaxBalance-d.Points {
		return loyalty.Errorf(loyalty.EINVALID, "this change would take the member's balance over %d points", int64(loyalty.MaxBalance))
	}
	if len(d.Punches) > 0 && d.Kind != loyalty.KindEarn && d.Kind != loyalty.KindReverse {
		return loyalty.Errorf(loyalty.EINVALID, "only a sale or its refund changes punch cards")
	}
	var claims *verified
	if store != loyalty.OnlineStore && store != loyalty.HubStore {
		if claims, err = a.checkClaims(ctx, store, d); err != nil {
			return err
		}
	}
	switch d.Kind {
	case loyalty.KindEarn:
		p, err := a.program(ctx, d.RuleVersion)
		if err != nil {
			return err
		}
		if d.Rule == loyalty.RuleReferral {
			if store != loyalty.HubStore || p.Referral == nil || (d.Points != p.Referral.Give && d.Points != p.Referral.Get) {
				return loyalty.Errorf(loyalty.EUNAUTHORIZED, "only the hub awards referral bonuses, as the program sets them")
			}
			return nil
		}
		if d.Rule != "" {
			act, err := p.Action(d.Rule)
			if err != nil {
				return err
			}
			if d.Points > act.Points {
				return loyalty.Errorf(loyalty.EINVALID, "action %s gives %d points, not %d", act.ID, act.Points, d.Points)
			}
			return nil
		}
		loc := time.UTC
		if claims != nil {
			loc = claims.loc
		}
		res, err := recompute(p, d, loc)
		if err != nil {
			return err
		}
		if !maps.Equal(res.Punches, d.Punches) {
			return loyalty.Errorf(loyalty.EINVALID, "the order's lines punch %v, the delta says %v", res.Punches, d.Punches)
		}
		want := res.Points
		// Under an earn cap a store may award less: it caps with what it can see of the member.
		if p.HasEarnCap(loyalty.RulePurchase) && d.Points <= want {
			return nil
		}
		if want != d.Points {
			return loyalty.Errorf(loyalty.EINVALID, "this sale of %d minor units of %s earns %d points under rule version %d, not %d",
				d.Amount, d.Currency, want, d.RuleVersion, d.Points)
		}
	case loyalty.KindRedeem:
		if d.Voucher != "" {
			v, err := a.tx.Voucher(ctx, d.Voucher)
			if err != nil {
				return err
			}
			switch {
			case v.Member != d.Member:
				return loyalty.Errorf(loyalty.EINVALID, "voucher %s belongs to another member", v.ID)
			case d.Reward != "" && d.Reward != v.Reward:
				return loyalty.Errorf(loyalty.EINVALID, "voucher %s is for %s, not %s", v.ID, v.Reward, d.Reward)
			case store != loyalty.OnlineStore && d.EventTime().After(v.ExpiresAt.Add(a.Claims.MaxFuture)):
				return loyalty.Errorf(loyalty.EINVALID, "voucher %s had expired when it was used", v.ID)
			}
			if d.Points != 0 {
				return loyalty.Errorf(loyalty.EINVALID, "a voucher was paid for when issued; its use costs 0 points, not %d", -d.Points)
			}
			return nil
		}
		p, err := a.program(ctx, d.RuleVersion)
		if err != nil {
			return err
		}
		r, err := p.Reward(d.Reward)
		if err != nil {
			return err
		}
		if d.Points != -r.PointsCost {
			return loyalty.Errorf(loyalty.EINVALID, "reward %s costs %d points under rule version %d, not %d",
				r.ID, r.PointsCost, d.RuleVersion, -d.Points)
		}
		if err := p.CheckOrderAmount(r.ID, d.Amount); err != nil {
			return err
		}
		if r.MinOrder > 0 && d.Amount < r.MinOrder {
			return loyalty.Errorf(loyalty.EINVALID, "%s needs an order of at least %d minor units", r.Name, r.MinOrder)
		}
	case loyalty.KindReverse:
		orig, err := a.tx.Delta(ctx, d.Reverses)
		if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			return loyalty.Errorf(loyalty.ENOTFOUND, "this refund reverses a change the hub never applied")
		} else if err != nil {
			return err
		}
		switch {
		case orig.Store != store:
			return loyalty.Errorf(loyalty.EUNAUTHORIZED, "a store reverses only its own changes; refunds of other stores and channels go through the hub")
		case orig.Member != d.Member:
			return loyalty.Errorf(loyalty.EINVALID, "this refund reverses a change of another member")
		case orig.Kind != loyalty.KindEarn && orig.Kind != loyalty.KindRedeem:
			return loyalty.Errorf(loyalty.EINVALID, "only earn and redeem deltas can be reversed, not %s", orig.Kind)
		}
		e, err := a.entry(ctx, orig.Delta)
		if err != nil {
			return err
		}
		// The same order core that made the refund at the store judges it: a full reversal
		// undoes exactly what is left, a partial one takes exactly its share.
		return loyalty.CheckRefund(e, *d)
	}
	return nil
}

// recompute computes a store's earn again from the delta's lines, the member's tier and
// country (verified by checkClaims), the store's registered time zone loc and the event time.
// An offline store's earn under the program version it had is accepted as long as that version
// gives the same.
func recompute(p *loyalty.Program, d *loyalty.Delta, loc *time.Location) (loyalty.EarnResult, error) {
	if d.Tier != "" && (p.Tiers == nil || !slices.ContainsFunc(p.Tiers.Tiers, func(t loyalty.Tier) bool { return t.ID == d.Tier })) {
		return loyalty.EarnResult{}, loyalty.Errorf(loyalty.EINVALID, "no tier %q in rule version %d", d.Tier, p.Version)
	}
	return p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: d.Tier, Country: d.Country}, Amount: d.Amount,
		Currency: d.Currency, Lines: d.Lines, At: d.EventTime(), Location: loc})
}

// conflicts records what an applied delta broke. Offline events physically happened, so they
// are applied; the conflict is flagged for review instead.
func (a *applier) conflicts(ctx context.Context, store string, d loyalty.Delta, balance int64) error {
	if d.Points < 0 && balance < 0 {
		c := Conflict{Kind: ConflictOverdraft, Member: d.Member, Store: store, Deltas: []string{d.ID},
			Amount: min(-balance, -d.Points), Detail: fmt.Sprintf("%s took the balance to %d", d.Kind, balance), At: a.Now(), Flagged: true}
		if err := a.tx.InsertConflict(ctx, c); err != nil {
			return err
		}
	}
	if d.Kind == loyalty.KindRedeem && d.Voucher != "" {
		if v, err := a.tx.Voucher(ctx, d.Voucher); err != nil {
			return err
		} else if !v.VoidedAt.IsZero() {
			c := Conflict{Kind: ConflictVoucherVoid, Member: d.Member, Store: store, Deltas: []string{d.ID, v.DeltaID},
				Amount: 1, Detail: fmt.Sprintf("voucher %s was used after its purchase was refunded", d.Voucher), At: a.Now(), Flagged: true}
			if err := a.tx.InsertConflict(ctx, c); err != nil {
				return err
			}
		}
		uses, err := a.tx.VoucherUses(ctx, d.Voucher)
		if err != nil {
			return err
		}
		if len(uses) > 1 {
			c := Conflict{Kind: ConflictVoucherReuse, Member: d.Member, Store: store, Deltas: uses,
				Amount: int64(len(uses) - 1), Detail: fmt.Sprintf("voucher %s used %d times", d.Voucher, len(uses)), At: a.Now(), Flagged: true}
			if err := a.tx.InsertConflict(ctx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *applier) reject(ctx context.Context, store string, d loyalty.Delta, err error) (lsync.Result, error) {
	e := loyalty.AsError(err)
	if ierr := a.tx.InsertRejection(ctx, Rejection{Delta: d, Store: store, Code: e.Code, Message: e.Message, At: a.Now()}); ierr != nil {
		return lsync.Result{}, ierr
	}
	return lsync.Result{DeltaID: d.ID, Status: lsync.StatusRejected, Code: e.Code, Message: e.Message}, nil
}

func (a *applier) balance(ctx context.Context, member string) (int64, error) {
	if b, ok := a.balances[member]; ok {
		return b, nil
	}
	m, err := a.tx.Member(ctx, member)
	if err != nil {
		return 0, err
	}
	a.balances[member] = m.Balance
	a.members[member] = m
	a.punches[member] = maps.Clone(m.Punches)
	if a.punches[member] == nil {
		a.punches[member] = map[string]int64{}
	}
	return m.Balance, nil
}

// report asks finish to include a member's balance in the ack although this batch did not change
// it: a duplicate's effect is in the balance, and the agent must see that balance when the delta
// leaves its outbox, or it would show the member short until its next pull.
func (a *applier) report(member string) {
	if !slices.Contains(a.reported, member) {
		a.reported = append(a.reported, member)
	}
}

// finish writes every changed balance with a new change version, and returns those and the
// balances of reported members.
func (a *applier) finish(ctx context.Context) ([]lsync.Balance, error) {
	out := make([]lsync.Balance, 0, len(a.order))
	for _, id := range a.reported {
		if a.changed[id] {
			continue
		}
		m, err := a.tx.Member(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, lsync.Balance{Member: id, Balance: m.Balance, Version: m.Version})
	}
	for _, m := range a.order {
		if err := a.memberState(ctx, m); err != nil {
			return nil, err
		}
		v, err := a.tx.NextVersion(ctx)
		if err != nil {
			return nil, err
		}
		if err := a.tx.SetBalance(ctx, m, a.balances[m], v); err != nil {
			return nil, err
		}
		out = append(out, lsync.Balance{Member: m, Balance: a.balances[m], Version: v})
	}
	return out, nil
}

// memberState writes a changed member's punch counts and tier. A tier change is a ledgered
// delta of kind tier, made by the hub.
func (a *applier) memberState(ctx context.Context, member string) error {
	p, err := a.current(ctx)
	if err != nil {
		return err
	}
	m := a.members[member]
	tier := m.Tier
	if p.Tiers != nil && len(p.Tiers.Tiers) > 0 {
		from, to := p.Tiers.WindowBounds(a.Now()) // the window the member's tier is for now
		q, err := a.tx.Qualifying(ctx, member, p.Tiers.Basis, from, to)
		if err != nil {
			return err
		}
		tier = p.Tiers.TierFor(q).ID
	}
	// Placing a member in the entry tier for the first time is not a change worth a ledger entry.
	entry := m.Tier == "" && p.Tiers != nil && len(p.Tiers.Tiers) > 0 && tier == p.Tiers.Tiers[0].ID
	if tier != m.Tier && !entry {
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: member, Kind: loyalty.KindTier,
			Tier: tier, RuleVersion: p.Version, OccurredAt: a.Now()}
		d.Normalize()
		if _, _, err := a.tx.InsertDelta(ctx, d, d.Hash(), a.Now()); err != nil {
			return err
		}
		a.TierChanges++
	}
	if tier != m.Tier || !maps.Equal(a.punches[member], m.Punches) {
		return a.tx.SetMemberState(ctx, member, tier, a.punches[member])
	}
	return nil
}

// --- admin --------------------------------------------------------------------------------

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateStore registers a store and returns its token. The token is shown once: the hub keeps
// only its hash.
func (h *Hub) CreateStore(ctx context.Context, id, name string) (StoreInfo, string, error) {
	return h.CreateStoreIn(ctx, id, name, "")
}

// CreateStoreIn registers a store in time zone tz (an IANA name; "" is UTC) and returns its token.
func (h *Hub) CreateStoreIn(ctx context.Context, id, name, tz string) (StoreInfo, string, error) {
	if tz == "" {
		tz = "UTC"
	}
	if _, err := time.LoadLocation(tz); err != nil || strings.EqualFold(tz, "local") {
		return StoreInfo{}, "", loyalty.Errorf(loyalty.EINVALID, "time zone %q is not an IANA time zone name such as Europe/Berlin", tz)
	}
	if err := loyalty.ValidateID("store", id); err != nil {
		return StoreInfo{}, "", err
	}
	if id == loyalty.OnlineStore || id == loyalty.HubStore {
		return StoreInfo{}, "", loyalty.Errorf(loyalty.EINVALID, "store id %q is reserved for the hub's own deltas", id)
	}
	if name == "" {
		name = id
	}
	token := rand.Text() + rand.Text()
	s := StoreInfo{ID: id, Name: name, TokenHash: hashToken(token), CreatedAt: h.Now().UTC().Truncate(time.Millisecond), TimeZone: tz}
	err := h.Store.Update(ctx, func(tx Tx) error {
		if err := tx.InsertStore(ctx, s); err != nil {
			return err
		}
		if err := tx.SetStoreZone(ctx, id, tz); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditStoreAdd, id, fmt.Sprintf("name %q, time zone %s", name, tz))
	})
	return s, token, err
}

// SetStoreZone registers a store's time zone (an IANA name such as Europe/Berlin; "" or UTC for
// UTC). Campaign days and hours of the store's sales are read in it, and the store's agent
// receives it at its next sync.
func (h *Hub) SetStoreZone(ctx context.Context, id, tz string) error {
	if tz == "" {
		tz = "UTC"
	}
	if _, err := time.LoadLocation(tz); err != nil || strings.EqualFold(tz, "local") || len(tz) > loyalty.MaxIDLength {
		return loyalty.Errorf(loyalty.EINVALID, "time zone %q is not an IANA time zone name such as Europe/Berlin", tz)
	}
	return h.update(ctx, func(tx Tx) error {
		if err := tx.SetStoreZone(ctx, id, tz); err != nil {
			return err
		}
		if _, err := tx.NextVersion(ctx); err != nil { // the store's agent must pull it
			return err
		}
		return h.audit(ctx, tx, AuditStoreTimeZone, id, "time zone "+tz)
	})
}

// RotateStoreToken issues a new token for a store; the old one stops working at once, and a
// session opened with it is ended (when rotated through this hub process; a rotation by the
// admin command takes effect at the store's next connection).
func (h *Hub) RotateStoreToken(ctx context.Context, id string) (string, error) {
	token := rand.Text() + rand.Text()
	err := h.Store.Update(ctx, func(tx Tx) error {
		if err := tx.SetStoreToken(ctx, id, hashToken(token)); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditStoreToken, id, "new token issued; the old one stopped working")
	})
	if err == nil && h.OnTokenRotated != nil {
		h.OnTokenRotated(id)
	}
	return token, err
}

// Stores lists the stores with their sync health.
func (h *Hub) Stores(ctx context.Context) ([]StoreInfo, error) {
	var out []StoreInfo
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Stores(ctx)
		return err
	})
	h.healthMu.Lock()
	defer h.healthMu.Unlock()
	for i := range out {
		if hl, ok := h.health[out[i].ID]; ok {
			out[i].Health = hl
		}
	}
	return out, err
}

// NewMember is what CreateMember answers: the member as stored after the sign-up award, and what
// became of that award.
type NewMember struct {
	loyalty.Member
	// Signup is the program's sign-up award (its action "signup"), when the program has one.
	Signup *SignupAward `json:"signup,omitempty"`
}

// SignupAward is what a new member got from the program's sign-up action.
type SignupAward struct {
	// Points are the points given: the action's, fewer if an earn cap reduced them, 0 if refused.
	Points int64 `json:"points"`
	// Refused is why no points were given (the member was created anyway): EBUDGET for a used-up
	// budget or the action's max_times, as POST /v1/actions would answer.
	Refused *loyalty.Error `json:"refused,omitempty"`
}

// CreateMember adds a member. An empty id gets a generated one. The member starts at zero points
// and is in its home store's replica scope. If the program has a signup action, the member is
// awarded it; a refused award (a used-up budget) does not undo the sign-up: the answer's Signup
// says so. Only a storage failure of the award returns an error, with the member created.
func (h *Hub) CreateMember(ctx context.Context, m loyalty.Member) (NewMember, error) {
	fail := func(err error) (NewMember, error) { return NewMember{Member: m}, err }
	if m.ID == "" {
		m.ID = "m" + strings.ToLower(rand.Text()[:12])
	}
	if err := loyalty.ValidateID("member", m.ID); err != nil {
		return fail(err)
	}
	m.Email = strings.ToLower(strings.TrimSpace(m.Email))
	if m.Email != "" && (!strings.Contains(m.Email, "@") || len(m.Email) > 254) {
		return fail(loyalty.Errorf(loyalty.EINVALID, "email %q is not an email address", m.Email))
	}
	if m.ReferredBy != "" {
		ref, err := h.Member(ctx, m.ReferredBy, 0)
		if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			return fail(loyalty.Errorf(loyalty.EINVALID, "referral code %q belongs to no member", m.ReferredBy))
		} else if err != nil {
			return fail(err)
		}
		if ref.ID == m.ID || ref.Email != "" && strings.EqualFold(ref.Email, strings.TrimSpace(m.Email)) {
			return fail(loyalty.Errorf(loyalty.EINVALID, "a member cannot refer themselves"))
		}
	}
	m.ReferralPaid = false
	if m.Country != "" && (len(m.Country) != 2 || strings.ToUpper(m.Country) != m.Country) {
		return fail(loyalty.Errorf(loyalty.EINVALID, "country must be an ISO 3166 two-letter code such as DE, got %q", m.Country))
	}
	if m.Birthday != "" {
		if err := loyalty.ValidateBirthday(m.Birthday, h.Now().UTC().AddDate(0, 0, 1)); err != nil { // a day of slack: time zones ahead of UTC
			return fail(err)
		}
	}
	m.Balance, m.CreatedAt = 0, h.Now().UTC().Truncate(time.Millisecond)
	err := h.update(ctx, func(tx Tx) error {
		if m.HomeStore != "" {
			if _, err := tx.StoreInfo(ctx, m.HomeStore); err != nil {
				return loyalty.Errorf(loyalty.EINVALID, "home store %q is not registered", m.HomeStore)
			}
		}
		var err error
		if m.Version, err = tx.NextVersion(ctx); err != nil {
			return err
		}
		if err := tx.InsertMember(ctx, m); err != nil {
			return err
		}
		if m.HomeStore != "" {
			if err := tx.Subscribe(ctx, m.HomeStore, m.ID); err != nil {
				return err
			}
		}
		return h.audit(ctx, tx, AuditMemberAdd, m.ID, "home store "+orNone(m.HomeStore)) // no email or name: personal data
	})
	if err != nil {
		return fail(err)
	}
	// A program with a signup action welcomes the new member with its points. The member exists
	// either way: points a budget refuses are not given, and the answer says why.
	out := NewMember{Member: m}
	if p, perr := h.Program(ctx); perr != nil {
		return out, perr
	} else if _, aerr := p.Action("signup"); aerr == nil {
		r, err := h.Action(ctx, loyalty.ActionRequest{OrderID: "signup-" + m.ID, MemberID: m.ID, Action: "signup"})
		if code := loyalty.ErrorCode(err); code == loyalty.EINTERNAL {
			return out, fmt.Errorf("signup points: %w", err)
		} else if err != nil {
			h.Logger.Info("no signup points", slog.String("member", m.ID), slog.String("reason", loyalty.ErrorMessage(err)))
			out.Signup = &SignupAward{Refused: loyalty.AsError(err)}
		} else {
			out.Signup = &SignupAward{Points: r.Points}
		}
	}
	v, err := h.Member(ctx, m.ID, 0)
	out.Member = v.Member
	if err != nil {
		out.Member = m
	}
	return out, err
}

// MemberView is a member with their recent ledger.
type MemberView struct {
	loyalty.Member
	Ledger []LedgerEntry `json:"ledger"`
}

// Member returns a member, with their birthday, and their newest ledger entries.
func (h *Hub) Member(ctx context.Context, id string, ledger int) (MemberView, error) {
	var v MemberView
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		if v.Member, err = tx.Member(ctx, id); err != nil {
			return err
		}
		if v.Birthday, err = tx.MemberBirthday(ctx, id); err != nil {
			return err
		}
		v.Ledger, err = tx.Ledger(ctx, id, ledger)
		return err
	})
	return v, err
}

// MemberToken returns a signed member QR token.
func (h *Hub) MemberToken(ctx context.Context, id string) (string, error) {
	var token string
	err := h.Store.View(ctx, func(tx Tx) error {
		if _, err := tx.Member(ctx, id); err != nil {
			return err
		}
		k, err := h.signingKey(ctx, tx)
		if err != nil {
			return err
		}
		now := h.Now()
		c := qr.Claims{Type: qr.TypeMember, Member: id, IssuedAt: now.Unix()}
		if h.MemberTokenTTL > 0 {
			c.Expires = now.Add(h.MemberTokenTTL).Unix()
		}
		token, err = qr.Sign(k, c)
		return err
	})
	return token, err
}

// Program returns the current program.
func (h *Hub) Program(ctx context.Context) (loyalty.Program, error) {
	var p loyalty.Program
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		p, _, err = tx.Program(ctx)
		return err
	})
	return p, err
}

// SetProgram publishes a new version of the program. Its Version is assigned by the hub.
func (h *Hub) SetProgram(ctx context.Context, p loyalty.Program) (loyalty.Program, error) {
	if err := p.Validate(); err != nil {
		return p, err
	}
	err := h.update(ctx, func(tx Tx) error {
		cur, _, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		p.Version = cur.Version + 1
		v, err := tx.NextVersion(ctx)
		if err != nil {
			return err
		}
		if err := tx.InsertProgram(ctx, p, v, h.Now()); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditProgramPublish, "program", fmt.Sprintf("rule version %d, %d rewards", p.Version, len(p.Rewards)))
	})
	return p, err
}

// RotateKey creates a new signing key. Older keys keep verifying until retired.
func (h *Hub) RotateKey(ctx context.Context) (qr.PublicKey, error) {
	var k qr.PrivateKey
	err := h.update(ctx, func(tx Tx) error {
		if err := h.insertNewKey(ctx, tx); err != nil {
			return err
		}
		var err error
		if k, err = h.signingKey(ctx, tx); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditSigningKeyRotate, k.ID, "new QR signing key")
	})
	if err != nil {
		return qr.PublicKey{}, err
	}
	return k.Public(), nil
}

// RetireKey sets the time after which tokens signed by key id are refused everywhere.
func (h *Hub) RetireKey(ctx context.Context, id string, at time.Time) error {
	return h.update(ctx, func(tx Tx) error {
		v, err := tx.NextVersion(ctx)
		if err != nil {
			return err
		}
		if err := tx.RetireKey(ctx, id, at, v); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditSigningKeyRetire, id, "tokens it signed are refused after "+at.UTC().Format(time.RFC3339))
	})
}

func (h *Hub) insertNewKey(ctx context.Context, tx Tx) error {
	if h.KEK == nil {
		return loyalty.Errorf(loyalty.EINVALID, "the hub has no key-encryption key to seal a new signing key with: set keys.kek_file (or keys.kek)")
	}
	k, err := qr.NewKey()
	if err != nil {
		return err
	}
	v, err := tx.NextVersion(ctx)
	if err != nil {
		return err
	}
	return tx.InsertKey(ctx, h.sealKey(k), v)
}

// Conflicts returns the newest recorded conflicts.
func (h *Hub) Conflicts(ctx context.Context, limit int) ([]Conflict, error) {
	var out []Conflict
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Conflicts(ctx, limit)
		return err
	})
	return out, err
}

// Rejections returns the newest rejected deltas.
func (h *Hub) Rejections(ctx context.Context, limit int) ([]Rejection, error) {
	var out []Rejection
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Rejections(ctx, limit)
		return err
	})
	return out, err
}

// CheckReport is the result of Check.
type CheckReport struct {
	Members    int      `json:"members"`
	Points     int64    `json:"points"` // sum of all balances
	Mismatches []string `json:"mismatches"`
}

// Check verifies that every member's balance equals the sum of their ledger.
func (h *Hub) Check(ctx context.Context) (CheckReport, error) {
	r := CheckReport{Mismatches: []string{}}
	err := h.Store.View(ctx, func(tx Tx) error {
		after := ""
		for {
			ms, err := tx.Members(ctx, after, 1000)
			if err != nil || len(ms) == 0 {
				return err
			}
			for _, m := range ms {
				sum, err := tx.LedgerSum(ctx, m.ID)
				if err != nil {
					return err
				}
				r.Members++
				r.Points += m.Balance
				if sum != m.Balance {
					r.Mismatches = append(r.Mismatches, fmt.Sprintf("%s: balance %d, ledger %d", m.ID, m.Balance, sum))
				}
			}
			after = ms[len(ms)-1].ID
		}
	})
	return r, err
}

// --- online channel -------------------------------------------------------------------------

// online runs an online-channel operation once per (op, order id): a retry with the same body
// gets the first result; the same order id with a different body is ECONFLICT. Only successful
// results are remembered, so a refused call can be retried after fixing its cause.
func (h *Hub) online(ctx context.Context, op, orderID string, req any, fn func(*applier) (any, error), out any) error {
	if i := strings.IndexByte(orderID, '\x00'); i >= 0 { // order id and part, see onlinePart
		if err := loyalty.ValidateOrderID(orderID[:i]); err != nil {
			return err
		}
		orderID = orderID[:i] + "/" + orderID[i+1:]
	} else if err := loyalty.ValidateOrderID(orderID); err != nil {
		return err
	}
	hash := loyalty.RequestHash(req)
	return h.update(ctx, func(tx Tx) error {
		prevHash, resp, found, err := tx.Idempotent(ctx, op, orderID)
		if err != nil {
			return err
		}
		if found {
			if prevHash != hash {
				return loyalty.IdempotencyConflict(op, orderID)
			}
			return json.Unmarshal(resp, out)
		}
		a := h.newApplier(tx)
		res, err := fn(a)
		if err != nil {
			return err
		}
		if _, err := a.finish(ctx); err != nil {
			return err
		}
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		if err := tx.SaveIdempotent(ctx, op, orderID, hash, b, h.Now()); err != nil {
			return err
		}
		return json.Unmarshal(b, out)
	})
}

// applyOnline applies a delta minted by the online channel and fails with the rejection's code
// if it breaks a rule (the online channel can still say no, unlike an offline store). The
// rejection apply recorded is rolled back with the rest of the refused request.
func (a *applier) applyOnline(ctx context.Context, d loyalty.Delta) error {
	if err := a.allow(ctx, d); err != nil {
		return err
	}
	r, err := a.apply(ctx, loyalty.OnlineStore, d)
	if err != nil {
		return err
	}
	if r.Status != lsync.StatusApplied {
		return loyalty.Errorf(r.Code, "%s", r.Message)
	}
	return nil
}

// authentic checks a token's signature with the hub's public keys and its type. Whether it is
// still current is checked by the returned func, only for a new request, so that a retry of a
// call approved just before the code expired gets its first answer.
func (h *Hub) authentic(ctx context.Context, token, want string) (qr.Claims, func() error, error) {
	var c qr.Claims
	v := &qr.Verifier{Now: h.Now}
	err := h.Store.View(ctx, func(tx Tx) error {
		keys, err := tx.PublicKeys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			v.Keys = append(v.Keys, k.PublicKey)
		}
		c, err = v.Authentic(token)
		return err
	})
	if err == nil && c.Type != want {
		if want == qr.TypeMember {
			return c, nil, loyalty.Errorf(loyalty.EINVALID, "this is a voucher code, not a member code")
		}
		return c, nil, loyalty.Errorf(loyalty.EINVALID, "this is a member code, not a voucher")
	}
	return c, func() error { return v.Current(c) }, err
}

// memberOf resolves the member of an online request from a QR token or an id. Whether the
// member exists is checked inside the request's transaction, as is whether the code is current.
func (h *Hub) memberOf(ctx context.Context, token, id string) (string, func() error, error) {
	if token != "" {
		c, current, err := h.authentic(ctx, token, qr.TypeMember)
		return c.Member, current, err
	}
	if id == "" {
		return "", nil, loyalty.Errorf(loyalty.EINVALID, "member_id or qr is required")
	}
	return id, func() error { return nil }, nil
}

func (a *applier) newDelta(orderID, member string, kind loyalty.Kind, terminal string) loyalty.Delta {
	return loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.OnlineStore, Terminal: terminal, Member: member,
		Kind: kind, OrderID: orderID, OccurredAt: a.Now()}
}

// Earn awards points for an online sale.
func (h *Hub) Earn(ctx context.Context, req loyalty.EarnRequest) (loyalty.Receipt, error) {
	var out loyalty.Receipt
	if err := req.Validate(); err != nil {
		return out, err
	}
	member, current, err := h.memberOf(ctx, req.QR, req.MemberID)
	if err != nil {
		return out, err
	}
	req.QR, req.MemberID = "", member // a retry with a refreshed code is the same request
	err = h.online(ctx, "earn", req.OrderID, req, func(a *applier) (any, error) {
		if err := current(); err != nil {
			return nil, err
		}
		if _, err := a.balance(ctx, member); err != nil {
			return nil, err
		}
		m := a.members[member]
		p, _, err := a.tx.Program(ctx)
		if err != nil {
			return nil, err
		}
		d := a.newDelta(req.OrderID, member, loyalty.KindEarn, req.Terminal)
		res, err := p.ComputeEarn(loyalty.EarnInput{Member: m, Amount: int64(req.Amount), Currency: req.Currency, Lines: req.Lines,
			At: d.EventTime(), Location: time.UTC})
		if err != nil {
			return nil, err
		}
		pts, err := a.capEarn(ctx, &p, member, loyalty.RulePurchase, res.Points)
		if err != nil {
			return nil, err
		}
		d.Points, d.Amount, d.Currency, d.RuleVersion = pts, int64(req.Amount), req.Currency, p.Version
		d.Lines, d.Tier, d.Country, d.TimeZone, d.Punches, d.PunchRewards = req.Lines, m.Tier, m.Country, "UTC", res.Punches, res.PunchRewards
		if err := a.applyOnline(ctx, d); err != nil {
			return nil, err
		}
		var rewards []loyalty.Reward
		for _, id := range res.PunchRewards {
			if c, ok := p.PunchCard(id); ok {
				if r, err := p.Reward(c.Reward); err == nil {
					rewards = append(rewards, r)
				}
			}
		}
		return loyalty.Receipt{OrderID: req.OrderID, Member: member, Deltas: []string{d.ID}, Points: pts, Balance: a.balances[member],
			Earn: &res, PunchRewards: rewards}, nil
	}, &out)
	return out, err
}

// Redeem spends points on a reward, or uses a voucher, online. Unlike an offline store, the
// online channel refuses a redemption the balance cannot cover (EINSUFFICIENT) or a voucher that
// was already used or cancelled (ECONFLICT).
func (h *Hub) Redeem(ctx context.Context, req loyalty.RedeemRequest) (loyalty.Receipt, error) {
	var out loyalty.Receipt
	if err := loyalty.ValidateOrderID(req.OrderID); err != nil {
		return out, err
	}
	if req.Voucher != "" {
		c, current, err := h.authentic(ctx, req.Voucher, qr.TypeVoucher)
		if err != nil {
			return out, err
		}
		req.Voucher = c.Voucher
		err = h.online(ctx, "redeem", onlinePart(req.OrderID, c.Voucher), req, func(a *applier) (any, error) {
			if err := current(); err != nil {
				return nil, err
			}
			return a.useVoucher(ctx, req, c)
		}, &out)
		return out, err
	}
	if req.RewardID == "" {
		return out, loyalty.Errorf(loyalty.EINVALID, "reward_id or voucher is required")
	}
	member, current, err := h.memberOf(ctx, req.QR, req.MemberID)
	if err != nil {
		return out, err
	}
	req.QR, req.MemberID = "", member
	// Each reward on an order is its own idempotent call: an order may carry stackable rewards.
	err = h.online(ctx, "redeem", onlinePart(req.OrderID, req.RewardID), req, func(a *applier) (any, error) {
		if err := current(); err != nil {
			return nil, err
		}
		if err := a.stacks(ctx, req.OrderID, req.RewardID); err != nil {
			return nil, err
		}
		d, r, err := a.payReward(ctx, req, member)
		if err != nil {
			return nil, err
		}
		return loyalty.Receipt{OrderID: req.OrderID, Member: member, Deltas: []string{d.ID}, Points: d.Points, Balance: a.balances[member], Reward: &r}, nil
	}, &out)
	return out, err
}

// payReward applies a redeem delta for req.RewardID if the member can afford it.
func (a *applier) payReward(ctx context.Context, req loyalty.RedeemRequest, member string) (loyalty.Delta, loyalty.Reward, error) {
	p, _, err := a.tx.Program(ctx)
	if err != nil {
		return loyalty.Delta{}, loyalty.Reward{}, err
	}
	r, err := p.Reward(req.RewardID)
	if err != nil {
		return loyalty.Delta{}, r, err
	}
	bal, err := a.balance(ctx, member)
	if err != nil {
		return loyalty.Delta{}, r, err
	}
	if bal < r.PointsCost {
		return loyalty.Delta{}, r, loyalty.Errorf(loyalty.EINSUFFICIENT, "member %s has %d points; %s costs %d", member, bal, r.Name, r.PointsCost)
	}
	if err := r.Redeemable(a.members[member].Tier, int64(req.OrderAmount)); err != nil {
		return loyalty.Delta{}, r, err
	}
	if err := p.CheckOrderAmount(r.ID, int64(req.OrderAmount)); err != nil {
		return loyalty.Delta{}, r, err
	}
	d := a.newDelta(req.OrderID, member, loyalty.KindRedeem, req.Terminal)
	d.Points, d.Reward, d.RuleVersion, d.Amount = -r.PointsCost, r.ID, p.Version, int64(req.OrderAmount)
	return d, r, a.applyOnline(ctx, d)
}

func (a *applier) useVoucher(ctx context.Context, req loyalty.RedeemRequest, c qr.Claims) (any, error) {
	v, err := a.tx.Voucher(ctx, c.Voucher)
	if err != nil {
		return nil, err
	}
	if !v.VoidedAt.IsZero() {
		return nil, loyalty.Errorf(loyalty.ECONFLICT, "voucher %s was cancelled: the order that bought it was refunded", v.ID)
	}
	uses, err := a.tx.VoucherUses(ctx, v.ID)
	if err != nil {
		return nil, err
	}
	if len(uses) > 0 {
		return nil, loyalty.Errorf(loyalty.ECONFLICT, "voucher %s was already used", v.ID)
	}
	p, _, err := a.tx.Program(ctx)
	if err != nil {
		return nil, err
	}
	d := a.newDelta(req.OrderID, v.Member, loyalty.KindRedeem, req.Terminal)
	d.Voucher, d.Reward, d.RuleVersion, d.Amount = v.ID, v.Reward, p.Version, int64(req.OrderAmount)
	if err := a.applyOnline(ctx, d); err != nil {
		return nil, err
	}
	rc := loyalty.Receipt{OrderID: req.OrderID, Member: v.Member, Deltas: []string{d.ID}, Balance: a.balances[v.Member]}
	if r, err := p.Reward(v.Reward); err == nil {
		rc.Reward = &r
	}
	return rc, nil
}

// VoucherReceipt is the answer to IssueVoucher.
type VoucherReceipt struct {
	loyalty.Receipt
	Voucher Voucher `json:"voucher"`
}

// IssueVoucher spends a member's points on a reward now and returns a signed single-use voucher
// token that any store can accept offline.
func (h *Hub) IssueVoucher(ctx context.Context, req loyalty.RedeemRequest) (VoucherReceipt, error) {
	var out VoucherReceipt
	if err := loyalty.ValidateOrderID(req.OrderID); err != nil {
		return out, err
	}
	if req.RewardID == "" || req.Voucher != "" {
		return out, loyalty.Errorf(loyalty.EINVALID, "a voucher is bought with reward_id (and member_id or qr)")
	}
	member, current, err := h.memberOf(ctx, req.QR, req.MemberID)
	if err != nil {
		return out, err
	}
	req.QR, req.MemberID = "", member
	err = h.online(ctx, "voucher", req.OrderID, req, func(a *applier) (any, error) {
		if err := current(); err != nil {
			return nil, err
		}
		d, r, err := a.payReward(ctx, req, member)
		if err != nil {
			return nil, err
		}
		k, err := a.signingKey(ctx, a.tx)
		if err != nil {
			return nil, err
		}
		now := a.Now().UTC().Truncate(time.Millisecond)
		v := Voucher{ID: "v" + strings.ToLower(rand.Text()[:16]), Member: member, Reward: r.ID, DeltaID: d.ID,
			CreatedAt: now, ExpiresAt: now.Add(a.VoucherTokenTTL)}
		if v.Token, err = qr.Sign(k, qr.Claims{Type: qr.TypeVoucher, Member: member, Voucher: v.ID, Reward: r.ID,
			IssuedAt: now.Unix(), Expires: v.ExpiresAt.Unix()}); err != nil {
			return nil, err
		}
		if err := a.tx.InsertVoucher(ctx, v); err != nil {
			return nil, err
		}
		return VoucherReceipt{Receipt: loyalty.Receipt{OrderID: req.OrderID, Member: member, Deltas: []string{d.ID},
			Points: d.Points, Balance: a.balances[member], Reward: &r}, Voucher: v}, nil
	}, &out)
	return out, err
}

// Reverse undoes every earn and redeem of an online order that is not reversed yet. Refunding the
// purchase of a voucher cancels the voucher; if it was used already, the refund is refused.
func (h *Hub) Reverse(ctx context.Context, req loyalty.ReverseRequest) (loyalty.Receipt, error) {
	var out loyalty.Receipt
	if err := req.Validate(); err != nil {
		return out, err
	}
	key := req.OrderID
	if req.RefundID != "" {
		key = onlinePart(req.OrderID, req.RefundID)
	}
	err := h.online(ctx, "reverse", key, req, func(a *applier) (any, error) {
		es, err := a.orderEntries(ctx, loyalty.OnlineStore, req.OrderID)
		if err != nil {
			return nil, err
		}
		if req.RefundID != "" {
			return a.refundPart(ctx, req, es)
		}
		rc := loyalty.Receipt{OrderID: req.OrderID, Deltas: []string{}}
		for _, e := range loyalty.ToReverse(es) {
			if err := a.voidVoucherOf(ctx, e.ID); err != nil {
				return nil, err
			}
			d := a.newDelta(req.OrderID, e.Member, loyalty.KindReverse, req.Terminal)
			d.Undo(e)
			if err := a.applyOnline(ctx, d); err != nil {
				return nil, err
			}
			rc.Member, rc.Points = e.Member, rc.Points+d.Points
			rc.Deltas = append(rc.Deltas, d.ID)
			rc.Balance = a.balances[e.Member]
		}
		if len(rc.Deltas) == 0 {
			return nil, loyalty.Errorf(loyalty.ENOTFOUND, "online order %s has nothing left to reverse", req.OrderID)
		}
		return rc, nil
	}, &out)
	return out, err
}

// refundPart takes back a partial refund's share of an online order's sale, under the program
// version the sale was made under (its punch cards).
func (a *applier) refundPart(ctx context.Context, req loyalty.ReverseRequest, es []loyalty.OrderEntry) (any, error) {
	i := slices.IndexFunc(es, func(e loyalty.OrderEntry) bool { return e.Kind == loyalty.KindEarn && e.Rule == "" })
	if i < 0 {
		return nil, loyalty.Errorf(loyalty.ENOTFOUND, "online order %s has no sale with points to refund", req.OrderID)
	}
	e := es[i]
	p, err := a.program(ctx, e.RuleVersion)
	if err != nil {
		return nil, err
	}
	d := a.newDelta(req.OrderID, e.Member, loyalty.KindReverse, req.Terminal)
	if err := d.RefundPart(e, loyalty.Refund{Amount: int64(req.Amount), Lines: req.Lines}, p.PunchCardsOf()); err != nil {
		return nil, err
	}
	if err := a.applyOnline(ctx, d); err != nil {
		return nil, err
	}
	return loyalty.Receipt{OrderID: req.OrderID, Member: e.Member, Deltas: []string{d.ID}, Points: d.Points, Balance: a.balances[e.Member]}, nil
}

// orderEntries reads an order's deltas at one store (OnlineStore for the online channel), each
// with the reversals that undid it since, in whole or in part.
func (a *applier) orderEntries(ctx context.Context, store, orderID string) ([]loyalty.OrderEntry, error) {
	ds, err := a.tx.OrderDeltas(ctx, store, orderID)
	if err != nil {
		return nil, err
	}
	out := make([]loyalty.OrderEntry, 0, len(ds))
	for _, d := range ds {
		e, err := a.entry(ctx, d.Delta)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// entry is d with the reversals that undid it since.
func (a *applier) entry(ctx context.Context, d loyalty.Delta) (loyalty.OrderEntry, error) {
	rs, err := a.tx.Reversals(ctx, d.ID)
	if err != nil {
		return loyalty.OrderEntry{}, err
	}
	e := loyalty.OrderEntry{Delta: d}
	for _, r := range rs {
		e.Reversals = append(e.Reversals, r.Delta)
	}
	return e, nil
}

// voidVoucherOf cancels the voucher that delta paid for, if any, before the payment is refunded.
func (a *applier) voidVoucherOf(ctx context.Context, delta string) error {
	v, err := a.tx.VoucherPaidBy(ctx, delta)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return nil
	} else if err != nil {
		return err
	}
	uses, err := a.tx.VoucherUses(ctx, v.ID)
	if err != nil {
		return err
	}
	if len(uses) > 0 {
		return loyalty.Errorf(loyalty.ECONFLICT, "voucher %s bought by this order was already used, so its points cannot be refunded", v.ID)
	}
	return a.tx.VoidVoucher(ctx, v.ID, a.Now())
}

// Action awards an action rule's points: signup, birthday, review, social follow, newsletter, or
// a custom event. It is refused with EBUDGET once the member had it max_times in the rule's
// period, and reduced by the earn caps that name the action.
func (h *Hub) Action(ctx context.Context, req loyalty.ActionRequest) (loyalty.Receipt, error) {
	out, _, err := h.action(ctx, req)
	return out, err
}

// action is Action, and says whether this call made the award (fresh) rather than answering a
// retry of one made before, by this process or another.
func (h *Hub) action(ctx context.Context, req loyalty.ActionRequest) (out loyalty.Receipt, fresh bool, err error) {
	if err := loyalty.ValidateOrderID(req.OrderID); err != nil {
		return out, false, err
	}
	if req.MemberID == "" || req.Action == "" {
		return out, false, loyalty.Errorf(loyalty.EINVALID, "member_id and action are required")
	}
	err = h.online(ctx, "action", req.OrderID, req, func(a *applier) (any, error) {
		fresh = true // online calls this only when the key is new; it commits only if this succeeds
		if _, err := a.balance(ctx, req.MemberID); err != nil {
			return nil, err
		}
		p, _, err := a.tx.Program(ctx)
		if err != nil {
			return nil, err
		}
		act, err := p.Action(req.Action)
		if err != nil {
			return nil, err
		}
		if act.MaxTimes > 0 {
			from, to := loyalty.PeriodBounds(act.Period, a.Now()) // the award's event time is now
			n, err := a.tx.RuleCount(ctx, req.MemberID, act.ID, from, to)
			if err != nil {
				return nil, err
			}
			if n >= act.MaxTimes {
				return nil, loyalty.Errorf(loyalty.EBUDGET, "member %s already had %s %d time(s) %s; the limit is %d",
					req.MemberID, act.ID, n, loyalty.PeriodName(act.Period), act.MaxTimes)
			}
		}
		pts, err := a.capEarn(ctx, &p, req.MemberID, act.ID, act.Points)
		if err != nil {
			return nil, err
		}
		d := a.newDelta(req.OrderID, req.MemberID, loyalty.KindEarn, "")
		d.Points, d.Rule, d.RuleVersion, d.Currency = pts, act.ID, p.Version, p.Currency
		if err := a.applyOnline(ctx, d); err != nil {
			return nil, err
		}
		return loyalty.Receipt{OrderID: req.OrderID, Member: req.MemberID, Deltas: []string{d.ID}, Points: pts, Balance: a.balances[req.MemberID]}, nil
	}, &out)
	return out, fresh && err == nil, err
}

// Requalify recomputes every member's tier, so members whose rolling or calendar-year total fell
// below their tier's threshold are downgraded even without new activity. The hub runs it
// periodically; it returns how many tiers changed.
func (h *Hub) Requalify(ctx context.Context) (int, error) {
	changed := 0
	err := h.eachMember(ctx, func(m loyalty.Member) error {
		return h.update(ctx, func(tx Tx) error {
			a := h.newApplier(tx)
			bal, err := a.balance(ctx, m.ID)
			if err != nil {
				return err
			}
			before := a.members[m.ID].Tier
			if err := a.memberState(ctx, m.ID); err != nil {
				return err
			}
			now, err := tx.Member(ctx, m.ID)
			if err != nil || now.Tier == before {
				return err
			}
			if before != "" {
				changed++ // not the first placement in the entry tier
			}
			v, err := tx.NextVersion(ctx) // agents must learn the new tier
			if err != nil {
				return err
			}
			return tx.SetBalance(ctx, m.ID, bal, v)
		})
	})
	return changed, err
}

// eachMember calls fn for every member, in id order, a page at a time; it stops at fn's first
// error. Each page is read in its own snapshot, so fn may write.
func (h *Hub) eachMember(ctx context.Context, fn func(loyalty.Member) error) error {
	after := ""
	for {
		var ms []loyalty.Member
		if err := h.Store.View(ctx, func(tx Tx) error {
			var err error
			ms, err = tx.Members(ctx, after, 200)
			return err
		}); err != nil || len(ms) == 0 {
			return err
		}
		for _, m := range ms {
			if err := fn(m); err != nil {
				return err
			}
		}
		after = ms[len(ms)-1].ID
	}
}

// Expiring is points of a member that expire soon: their whole balance (mode inactivity), or
// one earned lot's points still held (mode lot; a member may have several entries).
type Expiring struct {
	Member    string    `json:"member_id"`
	Balance   int64     `json:"balance"`
	Points    int64     `json:"points"` // that expire at ExpiresAt unless spent first
	ExpiresAt time.Time `json:"expires_at"`
}

// ExpirePoints applies the program's expiry with ledgered expire deltas: in mode inactivity, a
// member inactive for expiry.after_days loses their balance; in mode lot, the points of lots
// earned more than after_days ago that were not spent first (loyalty.Expiry.LotExpiry). It
// returns how many members lost points, and what expires within expiry.remind_days, for
// reminders. Running it again expires nothing more. Without an expiry rule it does nothing.
func (h *Hub) ExpirePoints(ctx context.Context) (expired int, soon []Expiring, err error) {
	return h.expirePoints(ctx, true)
}

// ExpiringSoon lists members whose points expire within the program's remind_days, changing
// nothing.
func (h *Hub) ExpiringSoon(ctx context.Context) ([]Expiring, error) {
	_, soon, err := h.expirePoints(ctx, false)
	return soon, err
}

func (h *Hub) expirePoints(ctx context.Context, apply bool) (expired int, soon []Expiring, err error) {
	p, err := h.Program(ctx)
	if err != nil || p.Expiry == nil {
		return 0, nil, err
	}
	now := h.Now()
	err = h.eachMember(ctx, func(m loyalty.Member) error {
		if m.Balance <= 0 {
			return nil
		}
		return h.update(ctx, func(tx Tx) error {
			a := h.newApplier(tx)
			bal, err := a.balance(ctx, m.ID)
			if err != nil || bal <= 0 {
				return err
			}
			if p.Expiry.Mode == loyalty.ExpiryLot {
				n, s, err := a.expireLots(ctx, &p, m.ID, bal, now, apply)
				if n > 0 {
					expired++
				}
				soon = append(soon, s...)
				return err
			}
			last, err := tx.LastActivity(ctx, m.ID)
			if err != nil || last.IsZero() {
				return err
			}
			at := p.Expiry.ExpiresAt(last)
			if now.Before(at) || !apply {
				if now.Before(at) && !now.Before(at.AddDate(0, 0, -p.Expiry.RemindDays)) {
					soon = append(soon, Expiring{Member: m.ID, Balance: bal, Points: bal, ExpiresAt: at})
				}
				return nil
			}
			d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: m.ID, Kind: loyalty.KindExpire,
				Points: -bal, RuleVersion: p.Version, OccurredAt: now}
			if _, err := a.apply(ctx, loyalty.HubStore, d); err != nil {
				return err
			}
			expired++
			_, err = a.finish(ctx)
			return err
		})
	})
	return expired, soon, err
}

// expireLots applies expiry per earned lot to one member with balance bal, in a's transaction:
// what the balance holds beyond the member's lots that have not expired at now is expired (when
// apply), with expire deltas of store hub; and the lots' points still held that expire within
// remind_days are listed, one entry per expiry instant. It returns the points expired. The
// transaction reads the balance it changes, so a sweep run twice, or by two hub processes at
// once, expires the points once.
func (a *applier) expireLots(ctx context.Context, p *loyalty.Program, member string, bal int64, now time.Time, apply bool) (int64, []Expiring, error) {
	lots, err := a.tx.Lots(ctx, member, p.Expiry.LotsSince(now))
	if err != nil {
		return 0, nil, err
	}
	due, upcoming := p.Expiry.LotExpiry(lots, bal, now)
	if !apply {
		due = 0
	}
	for rest := due; rest > 0; { // a delta carries at most MaxPoints; a balance may hold more
		n := min(rest, loyalty.MaxPoints)
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: member, Kind: loyalty.KindExpire,
			Points: -n, RuleVersion: p.Version, OccurredAt: now}
		r, err := a.apply(ctx, loyalty.HubStore, d)
		if err != nil {
			return 0, nil, err
		} else if r.Status != lsync.StatusApplied {
			return 0, nil, fmt.Errorf("expiring %d points of member %s: %s %s", n, member, r.Code, r.Message)
		}
		rest -= n
	}
	if due > 0 {
		if _, err := a.finish(ctx); err != nil {
			return 0, nil, err
		}
	}
	var soon []Expiring
	for _, x := range upcoming {
		if now.Before(x.At.AddDate(0, 0, -p.Expiry.RemindDays)) {
			break // oldest first: the rest are further away
		}
		soon = append(soon, Expiring{Member: member, Balance: bal - due, Points: x.Points, ExpiresAt: x.At})
	}
	return due, soon, nil
}

// referral pays the "give X, get X" bonus at a referred member's first qualifying purchase, from
// any store or channel: two hub-made earn deltas, once. They are charged to the program's
// points_issued budgets directly, without a lease (account), so they are paid only when those
// budgets have room for both, as an online call is checked; otherwise the bonus waits for the
// member's next qualifying purchase (docs/BUDGETS.md, "What a budget counts").
func (a *applier) referral(ctx context.Context, d loyalty.Delta) error {
	if d.Kind != loyalty.KindEarn || d.Rule != "" {
		return nil
	}
	m := a.members[d.Member]
	if m.ReferredBy == "" || m.ReferralPaid {
		return nil
	}
	p, err := a.current(ctx)
	if err != nil || p.Referral == nil {
		return err
	}
	// min_amount is in the program's currency, like every amount in the program: a sale in
	// another of earn.currencies is read at its rate, as campaign minimums are. A sale in a
	// currency the program no longer earns in does not qualify.
	if value, err := p.ProgramAmount(d.Amount, d.Currency); err != nil || value < p.Referral.MinAmount {
		return nil
	}
	var bonuses []loyalty.Delta
	for _, bonus := range []struct {
		member string
		points int64
	}{{m.ID, p.Referral.Give}, {m.ReferredBy, p.Referral.Get}} {
		if bonus.points == 0 {
			continue
		}
		bonuses = append(bonuses, loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: bonus.member, Kind: loyalty.KindEarn,
			Rule: loyalty.RuleReferral, Points: bonus.points, Currency: p.Currency, RuleVersion: p.Version, OccurredAt: a.Now(),
			OrderID: "referral-" + m.ID})
	}
	if err := a.fits(ctx, p, bonuses...); loyalty.ErrorCode(err) == loyalty.EBUDGET {
		a.Logger.Info("referral bonus not paid yet: it waits for the member's next qualifying purchase",
			slog.String("member", m.ID), slog.String("reason", loyalty.ErrorMessage(err)))
		return nil
	} else if err != nil {
		return err
	}
	if err := a.tx.SetReferralPaid(ctx, m.ID); err != nil {
		return err
	}
	m.ReferralPaid = true
	a.members[m.ID] = m
	for _, b := range bonuses {
		r, err := a.apply(ctx, loyalty.HubStore, b)
		if err != nil {
			return err
		}
		if r.Status != lsync.StatusApplied {
			return fmt.Errorf("referral bonus for %s: %s %s", b.Member, r.Code, r.Message)
		}
	}
	return nil
}

// stacks checks the program's stacking rule against the rewards already redeemed online on an order.
func (a *applier) stacks(ctx context.Context, orderID, reward string) error {
	p, err := a.current(ctx)
	if err != nil {
		return err
	}
	es, err := a.orderEntries(ctx, loyalty.OnlineStore, orderID)
	if err != nil {
		return err
	}
	return p.Stacks(reward, loyalty.StandingRewards(es))
}

// onlinePart names one part (a reward) of an online order as an idempotency key: each reward on
// an order is its own idempotent call. online validates the order id part on its own.
func onlinePart(orderID, part string) string { return orderID + "\x00" + part }
