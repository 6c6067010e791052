// Applying deltas: the checks every delta passes (identity, claims, recomputation), conflicts,
// balances, and the member state a batch stamps once.

package hub

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

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
	cur        *loyalty.Program         // the newest program, for budgets and limits
	leasesPut  int                      // leases written (putLease)
	storeCount int                      // registered stores, once read (newStoreShare; 0: not yet)
	epochInfo  *EpochInfo               // read once per transaction: it changes only with a restore
	schedules  map[string]Schedule      // members' job schedules as read in this transaction
	changes    map[string]*memberChange // what the applied deltas change of members' schedules
	clock      time.Time                // a job's run time, for the member state it computes (zero: Now)
	quals      map[string]Qualification // what a job's batch read of its members' qualifying events, at clock
	key        string                   // the API key of the online call being run (newDelta's Key)
	replayed   map[string]*memberReplay // members whose expiries this transaction replayed (giveback.go)

	// A pushed batch's reads, made once for the batch (prepare) or once per transaction.
	known        map[string]*DeltaRef          // ids looked up in the ledger at the batch's start (nil: not there)
	rejections   map[[2]string]*priorRejection // (store, delta id) pairs read or rejected in this transaction, and how (nil: not rejected)
	minted       map[string]bool               // ids newDelta minted in this transaction (runOnlineAll: not looked up; nil: none kept)
	inserted     map[string]DeltaRef           // ids this transaction inserted
	published    map[int64]publishedAt         // rule versions' publication (checkVersion)
	sent         map[sentKey][]SentProgram     // rule versions sent to stores (checkVersion)
	subscribe    map[string][]string           // members to put in stores' scope, by store, written by finish
	prefetched   map[string]bool               // members read by prepare (absent from members: unknown)
	verifier     *qr.Verifier                  // the hub's keys, read for the first code a delta carries (present)
	scannedCodes map[string]scannedCode        // the codes present checked, by their text
	codeWarned   bool                          // present logged a code that does not verify

	// A pushed batch's deltas inserted together (batch.go): the storage's own Tx, when tx is the
	// batchTx over it, and the deltas accepted and not inserted yet.
	base        Tx
	pending     []pendingDelta
	pendingTier bool // a tier delta is pending

	events []pendingEvent // webhook events of this transaction, written by flushEvents (webhooks.go)
}

// publishedAt is what Tx.ProgramPublished said of a rule version.
type publishedAt struct {
	at  time.Time
	err error
}

// sentKey is a store and a rule version from which Tx.ProgramsSent was read.
type sentKey struct {
	store   string
	version int64
}

// memberChange is what the deltas applied to one member in a transaction change of their job
// schedule (memberState).
type memberChange struct {
	active time.Time // the latest event time of an earn or a redemption
	lot    time.Time // the earliest event time of a new lot (loyalty.IsLot)
	credit bool      // points that are no lot came back (a refunded redemption, a deduction's reversal): the balance may hold older lots again
}

func (h *Hub) newApplier(tx Tx) *applier {
	return &applier{Hub: h, tx: tx, balances: make(map[string]int64), changed: make(map[string]bool), programs: make(map[int64]*loyalty.Program),
		members: make(map[string]loyalty.Member), punches: make(map[string]map[string]int64),
		subscribed: make(map[[2]string]bool), stores: make(map[string]StoreInfo), schedules: make(map[string]Schedule),
		changes: make(map[string]*memberChange), inserted: make(map[string]DeltaRef)}
}

// prepare reads at once what applying a pushed batch reads of every delta: whether its id is in
// the ledger already (one query for the batch instead of one per delta), its member (one
// query instead of one per member), and, for a delta that carries its member's code, whether its
// store holds the member already (one query), so that only the codes of members new to a store
// are checked (present). Ids and members that cannot be stored are left to the per-delta path,
// which refuses them.
func (a *applier) prepare(ctx context.Context, deltas []loyalty.Delta) error {
	ids := make([]string, 0, len(deltas))
	members := make([]string, 0, len(deltas))
	seen := make(map[string]bool, 2*len(deltas))
	var scopes [][2]string
	for i := range deltas {
		if d := &deltas[i]; d.Presence != "" && storableKey(d.Store) && storableKey(d.Member) {
			if key := [2]string{d.Store, d.Member}; !a.subscribed[key] && !seen["s"+key[0]+"\x00"+key[1]] {
				seen["s"+key[0]+"\x00"+key[1]] = true
				scopes = append(scopes, key)
			}
		}
		if id := deltas[i].ID; storableKey(id) && !seen["d"+id] {
			seen["d"+id] = true
			ids = append(ids, id)
		}
		if m := deltas[i].Member; storableKey(m) && !seen["m"+m] {
			if _, ok := a.balances[m]; !ok {
				seen["m"+m] = true
				members = append(members, m)
			}
		}
	}
	refs, err := a.tx.DeltaHashes(ctx, ids)
	if err != nil {
		return err
	}
	if a.known == nil {
		a.known = make(map[string]*DeltaRef, len(ids))
	}
	var fresh [][2]string // deltas not in the ledger: were they rejected before?
	for _, id := range ids {
		if r, ok := refs[id]; ok {
			a.known[id] = &r
		} else {
			a.known[id] = nil
		}
	}
	for i := range deltas {
		if d := &deltas[i]; storableKey(d.Store) && a.known[d.ID] == nil && storableKey(d.ID) {
			key := [2]string{d.Store, d.ID}
			if _, read := a.rejections[key]; !read && !seen["r"+d.Store+"\x00"+d.ID] {
				seen["r"+d.Store+"\x00"+d.ID] = true
				fresh = append(fresh, key)
			}
		}
	}
	if err := a.readRejections(ctx, fresh); err != nil {
		return err
	}
	in, err := a.tx.InScope(ctx, scopes)
	if err != nil {
		return err
	}
	for key := range in {
		a.subscribed[key] = true
	}
	ms, err := a.tx.MembersWithSchedule(ctx, members)
	if err != nil {
		return err
	}
	if a.prefetched == nil {
		a.prefetched = make(map[string]bool, len(members))
	}
	for _, id := range members {
		a.prefetched[id] = true
		if m, ok := ms[id]; ok {
			a.remember(m.Member, m.Schedule)
		}
	}
	return nil
}

// readRejections reads which of the (store, delta id) pairs the hub rejected before.
func (a *applier) readRejections(ctx context.Context, pairs [][2]string) error {
	if len(pairs) == 0 {
		return nil
	}
	rs, err := a.tx.RejectedAs(ctx, pairs)
	if err != nil {
		return err
	}
	if a.rejections == nil {
		a.rejections = make(map[[2]string]*priorRejection)
	}
	for _, key := range pairs {
		a.rejections[key] = nil
		if r, ok := rs[key]; ok {
			a.rejections[key] = &priorRejection{hash: cmp.Or(r.Hash, r.Delta.Hash()), err: &loyalty.Error{Code: r.Code, Message: r.Message}}
		}
	}
	return nil
}

// priorRejection is a delta the hub rejected: a digest of what it rejected, and its answer.
type priorRejection struct {
	hash string
	err  *loyalty.Error
}

// rejectedBefore returns how the hub answered store's delta id when it rejected this very delta
// (hash), or nil if it did not. A delta's outcome is decided once: one the hub rejected, pushed
// again because its store never had the answer (an acknowledgement lost on the way), gets the
// same answer, even if it would pass now (a clock put right, a lease refilled), so that it is
// never both in the rejection lists and applied. Other content under the id is judged on its
// own; the record of the first stands (InsertRejection).
func (a *applier) rejectedBefore(ctx context.Context, store, id, hash string) (*loyalty.Error, error) {
	if store == loyalty.OnlineStore || store == loyalty.HubStore || a.minted[id] {
		return nil, nil // the hub's own: a change it refuses rolls its call back, and leaves no record
	}
	key := [2]string{store, id}
	if _, read := a.rejections[key]; !read && storableKey(store) && storableKey(id) {
		if err := a.readRejections(ctx, [][2]string{key}); err != nil {
			return nil, err
		}
	}
	if r := a.rejections[key]; r != nil && r.hash == hash {
		return r.err, nil
	}
	return nil, nil
}

// storableKey reports whether s can be looked up in a batch read: text either backend stores as
// it is (valid UTF-8 without NUL characters; PostgreSQL refuses the rest, and JSON would change
// it).
func storableKey(s string) bool {
	return s != "" && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// lookup returns what the ledger holds under a delta's id, if anything: from prepare's read, or
// from what this transaction inserted, or else from the ledger.
func (a *applier) lookup(ctx context.Context, id string) (DeltaRef, bool, error) {
	if r, ok := a.inserted[id]; ok {
		if r.Seq == 0 && len(a.pending) > 0 { // pending: its sequence number comes with the insert
			if err := a.flush(ctx); err != nil {
				return DeltaRef{}, false, err
			}
			r = a.inserted[id]
		}
		return r, true, nil
	}
	if a.minted[id] { // minted a moment ago; should it be in the ledger after all, the batch's insert fails
		return DeltaRef{}, false, nil
	}
	if r, ok := a.known[id]; ok {
		if r == nil {
			return DeltaRef{}, false, nil
		}
		return *r, true, nil
	}
	e, err := a.tx.Delta(ctx, id)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return DeltaRef{}, false, nil
	} else if err != nil {
		return DeltaRef{}, false, err
	}
	return DeltaRef{Seq: e.Seq, Hash: e.Hash}, true, nil
}

// now is the time member state is computed at: a job's run time, or the hub's clock.
func (a *applier) now() time.Time {
	if !a.clock.IsZero() {
		return a.clock
	}
	return a.Now()
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
		return a.reject(ctx, store, d, hash, err)
	}
	if d.Kind == loyalty.KindSale {
		return a.applySale(ctx, store, d, hash) // counted apart from the ledger (sales.go)
	}
	if e, found, err := a.lookup(ctx, d.ID); err != nil {
		return lsync.Result{}, err
	} else if found {
		if e.Hash == hash {
			a.report(d.Member)
			return lsync.Result{DeltaID: d.ID, Status: lsync.StatusDuplicate, Seq: e.Seq}, nil
		}
		a.Logger.Warn("delta id reused for different content", slog.String("store", store), slog.String("delta", d.ID))
		return a.reject(ctx, store, d, hash, loyalty.Errorf(loyalty.EDUPLICATE,
			"delta id %s was already used for a different change; this one was not applied", d.ID))
	}
	if e, err := a.rejectedBefore(ctx, store, d.ID, hash); err != nil {
		return lsync.Result{}, err
	} else if e != nil {
		return lsync.Result{DeltaID: d.ID, Status: lsync.StatusRejected, Code: e.Code, Message: e.Message}, nil
	}
	if err := a.check(ctx, store, &d); loyalty.ErrorCode(err) == loyalty.EINTERNAL {
		return lsync.Result{}, err
	} else if err != nil {
		return a.reject(ctx, store, d, hash, err)
	}
	bal, err := a.balance(ctx, d.Member)
	if err != nil {
		return lsync.Result{}, err
	}
	key := [2]string{store, d.Member}
	bringIn := false
	if store != loyalty.OnlineStore && !a.subscribed[key] {
		if bringIn, err = a.present(ctx, store, &d); err != nil {
			return lsync.Result{}, err
		}
	}
	// A change dated before the member's last expiry may give back what it took (expireBack) only
	// with proof that the member was there, which forget takes off the change.
	proven := false
	if d.Presence != "" && a.lateForExpiry(d) {
		if proven, err = a.codeProvesLate(ctx, store, &d); err != nil {
			return lsync.Result{}, err
		}
	}
	a.forget(&d)
	seq, inserted, err := a.insert(ctx, d, hash)
	if err != nil {
		return lsync.Result{}, err
	} else if !inserted {
		return lsync.Result{DeltaID: d.ID, Status: lsync.StatusDuplicate, Seq: seq}, nil
	}
	a.inserted[d.ID] = DeltaRef{Seq: seq, Hash: hash}
	bal += d.Points
	a.balances[d.Member] = bal
	a.noteChange(d)
	if proven {
		if err := a.tx.ProveLate(ctx, d.Member, d.ID); err != nil {
			return lsync.Result{}, err
		}
	}
	if err := a.noteReplay(ctx, d, proven); err != nil {
		return lsync.Result{}, err
	}
	back, err := a.expireBack(ctx, store, d, proven)
	if err != nil {
		return lsync.Result{}, err
	}
	bal += back
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
	if bringIn {
		if a.subscribe == nil {
			a.subscribe = make(map[string][]string)
		}
		a.subscribe[store] = append(a.subscribe[store], d.Member) // by finish, for the batch at once
		a.subscribed[key] = true
	}
	if err := a.conflicts(ctx, store, d, bal); err != nil {
		return lsync.Result{}, err
	}
	a.emitDelta(store, d, bal)
	if err := a.account(ctx, store, d); err != nil {
		return lsync.Result{}, err
	}
	if err := a.referral(ctx, d); err != nil {
		return lsync.Result{}, err
	}
	if err := a.referralRefunded(ctx, d); err != nil {
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
	if d.Key != "" && store != loyalty.OnlineStore {
		return loyalty.Errorf(loyalty.EUNAUTHORIZED, "key_id names the API key of an online change; the hub sets it, and store %s pushed one", store)
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
		switch {
		case claims != nil:
			loc = claims.loc
		case store == loyalty.OnlineStore:
			loc, _ = p.OnlineLocation() // the zone the online channel reads campaigns in
		}
		res, err := recompute(p, d, loc)
		if err != nil {
			return err
		}
		if claims != nil && claims.country != nil {
			// Another country than the member's: the sale stands only if it changes nothing, and
			// the ledger keeps the member's country, the one the hub verified.
			as := *d
			as.Country = *claims.country
			if mine, err := recompute(p, &as, loc); err != nil || mine.Points != res.Points || !maps.Equal(mine.Punches, res.Punches) {
				return loyalty.Errorf(loyalty.EINVALID, "%s", CountryMismatch)
			}
			d.Country = as.Country
		}
		if !maps.Equal(res.Punches, d.Punches) {
			return loyalty.Errorf(loyalty.EINVALID, "the order's lines punch %v, the delta says %v", res.Punches, d.Punches)
		}
		if err := punchRewardsPossible(p, d); err != nil {
			return err
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
			// A voucher is its own proof, honoured as the till took it: its stacking with the
			// order's rewards is the agent's to check (useVoucher), as an agent before it never
			// did; refused here, the voucher would stay unused, and usable again.
			return nil
		}
		if claims != nil {
			if err := a.mayRedeem(ctx, store, d); err != nil {
				return err
			}
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
		// The online channel checked its order amount itself (payReward): a voucher's purchase
		// has none, and counts the most the voucher can give.
		if store != loyalty.OnlineStore {
			if err := p.CheckOrderAmount(r.ID, d.Amount); err != nil {
				return err
			}
			if err := r.FitsOrder(d.Amount); err != nil {
				return err
			}
		}
		if claims != nil {
			return a.storeReward(ctx, store, d, p, r, claims.floor)
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

// mayRedeem checks that store may spend member d.Member's points: a store spends only points it
// has seen, those of a member in its scope (its home store's members, those it scanned online,
// or offline for a change it pushed before), or of one whose code it scanned for this very
// redemption (present). (A voucher is its own proof: any store takes a valid one.) A hub restored
// from a backup lost the scope rows stores gained after the backup, and takes no redemption on
// trust for it: a store that kept from syncing could date its redemptions into any window the
// hub opened, and spend any member's points. The changes an agent sends again after a restore
// carry the codes that brought their members in, and its redemptions made from a scan carry the
// code; a redemption by member id of a member the store scanned online after the backup is
// refused (a rejection an operator sees), and the member's next scan fetches them again.
func (a *applier) mayRedeem(ctx context.Context, store string, d *loyalty.Delta) error {
	if in, err := a.holds(ctx, store, d.Member); in || err != nil {
		return err
	}
	if in, err := a.present(ctx, store, d); in || err != nil {
		return err
	}
	return loyalty.Errorf(loyalty.EUNAUTHORIZED, "store %s does not hold member %s, so it cannot spend their points; "+
		"scan the member's QR code to bring them in", store, d.Member)
}

// present reports whether d shows that its member was at store: a change of the member's home
// store, or one that carries the member's code as the store scanned it (Delta.Presence),
// authentic and valid at the change's time. Only such a change brings a member into a store's
// scope (apply), and lets a store spend the points of a member it does not hold (mayRedeem): a
// sale a store invents shows nothing. A code that shows nothing (forged, another member's, one
// that had expired) is no error: the change is judged on its own, as one without a code.
func (a *applier) present(ctx context.Context, store string, d *loyalty.Delta) (bool, error) {
	if m, ok := a.members[d.Member]; ok && m.HomeStore == store {
		return true, nil
	}
	return a.codeShows(ctx, store, d)
}

// codeShows reports whether d carries its member's code as store scanned it (Delta.Presence),
// authentic and valid at the change's time: proof that the member was at the till.
func (a *applier) codeShows(ctx context.Context, store string, d *loyalty.Delta) (bool, error) {
	m, ok := a.members[d.Member]
	if d.Presence == "" || !ok || m.Erased { // an erased member's codes name no one any more (care.go)
		return false, nil
	}
	if a.verifier == nil {
		var err error
		if a.verifier, err = a.Hub.verifier(ctx, a.tx); err != nil {
			return false, err
		}
	}
	code, ok := a.scannedCodes[d.Presence] // a batch's changes for one member carry the same code
	if !ok {
		var err error
		if code.Claims, err = a.verifier.Authentic(d.Presence); err != nil && !a.codeWarned {
			a.codeWarned = true // once a transaction: a hostile batch may carry hundreds
			a.Logger.Warn("a store sent a member code that does not verify with a change", slog.String("store", store),
				slog.String("delta", d.ID), slog.Any("err", err))
		}
		code.authentic = err == nil
		if a.scannedCodes == nil {
			a.scannedCodes = make(map[string]scannedCode)
		}
		a.scannedCodes[d.Presence] = code
	}
	return code.authentic && code.Type == qr.TypeMember && code.Member == d.Member && a.verifier.CurrentAt(code.Claims, d.EventTime()) == nil, nil
}

// scannedCode is what present found of a code: its claims, if its signature is the hub's.
type scannedCode struct {
	qr.Claims
	authentic bool
}

// storeReward checks a store's redemption of r under p against the reward's rules the store's
// agent checks too: a reward for some tiers only is for a member who held one of them at some time
// between the store's floor and the event (the store may have decided with a copy the hub has
// changed since), and an order carries several rewards only if they stack.
func (a *applier) storeReward(ctx context.Context, store string, d *loyalty.Delta, p *loyalty.Program, r loyalty.Reward, floor time.Time) error {
	if len(r.Tiers) > 0 {
		held, err := a.tiersHeld(ctx, a.members[d.Member], p, floor, d.EventTime())
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(held, func(t string) bool { return slices.Contains(r.Tiers, t) }) {
			return loyalty.Errorf(loyalty.EINVALID, "%s is for %v members only, and the member was in none of those tiers when this redemption happened, "+
				"nor when the store last synced", r.Name, r.Tiers)
		}
	}
	if d.OrderID == "" {
		return nil
	}
	return a.stacks(ctx, p, store, d.OrderID, r.ID)
}

// holds reports whether store holds member in its replica scope at this point of the
// transaction: in the scope as read, or brought in by a delta applied before (apply).
func (a *applier) holds(ctx context.Context, store, member string) (bool, error) {
	key := [2]string{store, member}
	if a.subscribed[key] {
		return true, nil
	}
	in, err := a.tx.Subscribed(ctx, store, member)
	if in {
		a.subscribed[key] = true // in the scope already: apply need not put them in
	}
	return in, err
}

// recompute computes a store's earn again from the delta's lines, the member's tier and
// country (verified by checkClaims), the store's registered time zone loc and the event time.
// An offline store's earn under the program version it had is accepted as long as that version
// gives the same. A tier the version does not have (the program dropped or renamed it since the
// member reached it, and the member has not been reviewed yet) earns as no tier, as the store
// computed it; refused, it kept the member from earning anywhere until a review.
func recompute(p *loyalty.Program, d *loyalty.Delta, loc *time.Location) (loyalty.EarnResult, error) {
	return p.ComputeEarn(loyalty.EarnInput{Member: loyalty.Member{Tier: d.Tier, Country: d.Country}, Amount: d.Amount,
		Currency: d.Currency, Lines: d.Lines, At: d.EventTime(), Location: loc})
}

// conflicts records what an applied delta broke. Offline events physically happened, so they
// are applied; the conflict is flagged for review instead.
func (a *applier) conflicts(ctx context.Context, store string, d loyalty.Delta, balance int64) error {
	if d.Points < 0 && balance < 0 {
		c := Conflict{Kind: ConflictOverdraft, Member: d.Member, Store: store, Deltas: []string{d.ID},
			Amount: min(-balance, -d.Points), Detail: fmt.Sprintf("%s took the balance to %d", d.Kind, balance), At: a.Now(), Flagged: true}
		if err := a.recordConflict(ctx, c); err != nil {
			return err
		}
	}
	if d.Kind == loyalty.KindRedeem && d.Voucher != "" {
		if v, err := a.tx.Voucher(ctx, d.Voucher); err != nil {
			return err
		} else if !v.VoidedAt.IsZero() {
			c := Conflict{Kind: ConflictVoucherVoid, Member: d.Member, Store: store, Deltas: []string{d.ID, v.DeltaID},
				Amount: 1, Detail: fmt.Sprintf("voucher %s was used after its purchase was refunded", d.Voucher), At: a.Now(), Flagged: true}
			if err := a.recordConflict(ctx, c); err != nil {
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
			if err := a.recordConflict(ctx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// punchRewardsPossible checks the punch card rewards a store says sale d gave: cards of its rule
// version that the sale punched, each at most as often as the sale's units can fill it on any
// count. How often they filled it on the member's count is the store's to judge (it counts from
// what it last synced: README, "Known limitations").
func punchRewardsPossible(p *loyalty.Program, d *loyalty.Delta) error {
	given := make(map[string]int64, len(d.PunchRewards))
	for _, id := range d.PunchRewards {
		given[id]++
	}
	for id, n := range given {
		card, ok := p.PunchCard(id)
		if units := d.Punches[id]; !ok || units <= 0 || n > card.Fills(card.Buy-1, units) {
			return loyalty.Errorf(loyalty.EINVALID, "this sale's punches cannot fill punch card %q %d times", loyalty.Truncate(id, 60), n)
		}
	}
	return nil
}

// forget takes out of d, before the hub keeps it, the personal data of an erased member that a
// store which had not synced since the erasure put in it: the country it saw the member in. The
// delta's hash stays that of the delta as the store sent it, so a redelivery is a duplicate.
func (a *applier) forget(d *loyalty.Delta) {
	d.Presence = "" // checked (present), never kept: a code is the member's, not the ledger's
	if m, ok := a.members[d.Member]; ok && m.Erased {
		d.Country = ""
	}
}

// reject records d as rejected, with why, and answers the store so. hash is the digest of d as
// its store pushed it (Delta.Hash), which d may no longer be: later pushes of it get this answer.
func (a *applier) reject(ctx context.Context, store string, d loyalty.Delta, hash string, err error) (lsync.Result, error) {
	a.forget(&d)
	e := loyalty.AsError(err)
	if ierr := a.tx.InsertRejection(ctx, Rejection{Delta: d, Store: store, Code: e.Code, Message: e.Message, At: a.Now(), Hash: hash}); ierr != nil {
		return lsync.Result{}, ierr
	}
	if key := [2]string{store, d.ID}; a.rejections != nil {
		if r, read := a.rejections[key]; read && r == nil { // the first record stands (InsertRejection)
			a.rejections[key] = &priorRejection{hash: hash, err: e}
		}
	}
	return lsync.Result{DeltaID: d.ID, Status: lsync.StatusRejected, Code: e.Code, Message: e.Message}, nil
}

func (a *applier) balance(ctx context.Context, member string) (int64, error) {
	if b, ok := a.balances[member]; ok {
		return b, nil
	}
	if a.prefetched[member] { // prepare read it: there is no such member
		return 0, loyalty.Errorf(loyalty.ENOTFOUND, "member %s is not known to the hub", member)
	}
	m, sc, err := a.tx.MemberWithSchedule(ctx, member)
	if err != nil {
		return 0, err
	}
	a.remember(m, sc)
	return m.Balance, nil
}

// remember keeps a member as read at the start of the transaction, with their schedule.
func (a *applier) remember(m loyalty.Member, sc Schedule) {
	a.balances[m.ID] = m.Balance
	a.members[m.ID] = m
	a.schedules[m.ID] = sc
	a.punches[m.ID] = maps.Clone(m.Punches)
	if a.punches[m.ID] == nil {
		a.punches[m.ID] = map[string]int64{}
	}
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
//
// It writes the batch's members at once: their new change versions are one range
// (Tx.NextVersions), their qualifying totals one read (Tx.QualifyingOf), their rows a few
// statements (Tx.UpdateMembers), the stores' new subscriptions one statement for them all
// (Tx.SubscribeAll).
func (a *applier) finish(ctx context.Context) ([]lsync.Balance, error) {
	out, err := a.finishMembers(ctx)
	if err != nil {
		return nil, err
	}
	return out, a.flushEvents(ctx) // after the members: their tier changes are events too
}

// finishMembers is finish but for the webhook events.
func (a *applier) finishMembers(ctx context.Context) ([]lsync.Balance, error) {
	if err := a.giveBackDeferred(ctx); err != nil {
		return nil, err
	}
	if err := a.flush(ctx); err != nil {
		return nil, err
	}
	out := make([]lsync.Balance, 0, len(a.order))
	for _, id := range a.reported {
		if a.changed[id] {
			continue
		}
		m, ok := a.members[id] // read in this transaction, and not changed since
		if !ok {
			var err error
			if m, err = a.tx.Member(ctx, id); err != nil {
				return nil, err
			}
		}
		out = append(out, lsync.Balance{Member: id, Balance: m.Balance, Version: m.Version})
	}
	if err := a.updateMembers(ctx, &out); err != nil {
		return nil, err
	}
	// The tier changes the members' new state ledgered (memberState) wait like the batch's
	// other deltas: they go in now, after them.
	if err := a.flush(ctx); err != nil {
		return nil, err
	}
	// The stores' new scope rows come after their members' new versions, so that each starts at
	// its member's newest version and is written once.
	if err := a.tx.SubscribeAll(ctx, a.subscribe); err != nil { // nothing to write: no statement
		return nil, err
	}
	a.subscribe = nil
	return out, nil
}

// updateMembers writes the batch's changed members (a.order) with new change versions, and adds
// their balances to out.
func (a *applier) updateMembers(ctx context.Context, out *[]lsync.Balance) error {
	if len(a.order) == 0 {
		return nil
	}
	read, err := a.readQualifying(ctx, a.order)
	if err != nil {
		return err
	}
	defer func() { // read for now: what a later finish reads is its own
		for _, m := range read {
			delete(a.quals, m)
		}
	}()
	v0, err := a.tx.NextVersions(ctx, len(a.order))
	if err != nil {
		return err
	}
	us := make([]MemberUpdate, 0, len(a.order))
	for i, m := range a.order {
		_, u, err := a.memberState(ctx, m)
		if err != nil {
			return err
		}
		v := v0 + int64(i)
		u.Member, u.Set = m, u.Set|FieldBalance
		u.Balance, u.Version = a.balances[m], v
		us = append(us, u)
		*out = append(*out, lsync.Balance{Member: m, Balance: a.balances[m], Version: v})
	}
	return a.tx.UpdateMembers(ctx, us)
}

// readQualifying reads, in one query, the qualifying events of those of members whose tier
// memberState will compute and has not read yet, for the window of now, and returns them.
func (a *applier) readQualifying(ctx context.Context, members []string) ([]string, error) {
	p, err := a.current(ctx)
	if err != nil || p.Tiers == nil || len(p.Tiers.Tiers) == 0 {
		return nil, err
	}
	var ids []string
	for _, m := range members {
		if _, ok := a.quals[m]; !ok {
			ids = append(ids, m)
		}
	}
	if len(ids) < 2 {
		return nil, nil // memberState reads one
	}
	from, to := p.Tiers.WindowBounds(a.now())
	qs, err := a.tx.QualifyingOf(ctx, ids, p.Tiers.Basis, from, to)
	if err != nil {
		return nil, err
	}
	if a.quals == nil {
		a.quals = make(map[string]Qualification, len(qs))
	}
	maps.Copy(a.quals, qs)
	return ids, nil
}

// memberState computes a changed member's tier, punch counts and job schedule, and returns
// their tier and the update that records what changed of them (UpdateMembers), which the caller
// writes with whatever else it changes of the member. A tier change is a ledgered delta of kind
// tier, made by the hub.
func (a *applier) memberState(ctx context.Context, member string) (string, MemberUpdate, error) {
	var u MemberUpdate
	p, err := a.current(ctx)
	if err != nil {
		return "", u, err
	}
	now := a.now()
	m := a.members[member]
	tier := m.Tier
	tiered := p.Tiers != nil && len(p.Tiers.Tiers) > 0
	var q Qualification
	if tiered {
		var ok bool
		if q, ok = a.quals[member]; !ok {
			from, to := p.Tiers.WindowBounds(now) // the window the member's tier is for now
			if q, err = a.tx.Qualifying(ctx, member, p.Tiers.Basis, from, to); err != nil {
				return "", u, err
			}
		}
		tier = p.Tiers.TierFor(q.Total).ID
	}
	// Placing a member in the entry tier for the first time is not a change worth a ledger entry.
	entry := m.Tier == "" && tiered && tier == p.Tiers.Tiers[0].ID
	if tier != m.Tier && !entry {
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: member, Kind: loyalty.KindTier,
			Tier: tier, RuleVersion: p.Version, OccurredAt: now}
		d.Normalize()
		if _, _, err := a.insert(ctx, d, d.Hash()); err != nil {
			return "", u, err
		}
		a.emit(EventTierChanged, map[string]any{"member_id": member, "from": m.Tier, "to": tier, "delta_id": d.ID,
			"occurred_at": now.UTC().Truncate(time.Millisecond)}, d.ID)
	}
	if tier != m.Tier {
		u.Set |= FieldTier
		u.Tier = tier
	}
	if !maps.Equal(a.punches[member], m.Punches) {
		u.Set |= FieldPunches
		u.Punches = a.punches[member]
	}
	old, ok := a.schedules[member]
	if !ok {
		if _, old, err = a.tx.MemberWithSchedule(ctx, member); err != nil {
			return "", u, err
		}
	}
	u.Schedule = a.schedule(p, member, tier, q, old, now)
	u.Set |= u.Schedule.changed(old)
	a.schedules[member] = u.Schedule
	return tier, u, nil
}

// noteChange records what an applied delta changes of its member's job schedule.
func (a *applier) noteChange(d loyalty.Delta) {
	c := a.changes[d.Member]
	if c == nil {
		c = &memberChange{}
		a.changes[d.Member] = c
	}
	at := d.EventTime().UTC().Truncate(time.Millisecond) // as the ledger's event_at
	if d.Kind == loyalty.KindEarn || d.Kind == loyalty.KindRedeem {
		c.active = later(c.active, at)
	}
	switch {
	case d.Points <= 0:
	case loyalty.IsLot(d.Kind, d.Points, d.Reverses): // a lot (Tx.Lots)
		if c.lot.IsZero() || at.Before(c.lot) {
			c.lot = at
		}
	default:
		c.credit = true
	}
}

// schedule returns when the jobs must next look at a member whose tier (with qualification q)
// and balance were computed at now (jobs.go), given the schedule old they had: the next tier
// review, the last activity, and the earliest time some of their points may expire.
func (a *applier) schedule(p *loyalty.Program, member, tier string, q Qualification, old Schedule, now time.Time) Schedule {
	s := Schedule{LastActive: old.LastActive, ExpiredAt: old.ExpiredAt}
	if p.Tiers != nil && len(p.Tiers.Tiers) > 0 {
		s.ReviewAt = reviewAt(p.Tiers, tier, q, now)
	}
	c := a.changes[member]
	if c != nil {
		s.LastActive = later(s.LastActive, c.active)
	}
	s.ExpireAt = nextExpiry(p.Expiry, old.ExpireAt, s.LastActive, a.balances[member], c, now)
	return s
}

// changed returns the fields of s that differ from old.
func (s Schedule) changed(old Schedule) MemberField {
	var f MemberField
	if !s.ReviewAt.Equal(old.ReviewAt) {
		f |= FieldReviewAt
	}
	if !s.ExpireAt.Equal(old.ExpireAt) {
		f |= FieldExpireAt
	}
	if !s.LastActive.Equal(old.LastActive) {
		f |= FieldLastActive
	}
	if !s.ExpiredAt.Equal(old.ExpiredAt) {
		f |= FieldExpiredAt
	}
	return f
}

// reviewAt returns when the tier of a member placed in tier at now, with qualification q, must be
// computed again although nothing is applied to them (zero: never): when the earliest qualifying
// event leaves the window, unless the member is in the lowest tier already (their total can only
// fall); and when a qualifying event dated later enters it. Qualifying events applied meanwhile
// compute it again.
func reviewAt(r *loyalty.TierRules, tier string, q Qualification, now time.Time) time.Time {
	var at time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	lowest := r.TierFor(0).ID == tier
	switch r.Window {
	case loyalty.WindowCalendar: // every event leaves at the end of the year
		if _, end := r.WindowBounds(now); !q.First.IsZero() && !lowest {
			earliest(end)
		}
		if !q.Next.IsZero() {
			start, _ := r.WindowBounds(q.Next)
			earliest(start)
		}
	case loyalty.WindowRolling12M:
		if !q.First.IsZero() && !lowest {
			earliest(leavesWindow(r, q.First))
		}
		earliest(q.Next) // the window's end passes it
	}
	return at
}

// leavesWindow returns the first millisecond at which an event at e (a millisecond) is no longer
// in the rolling window: WindowBounds' start is after it. Within one day the window's start moves
// with the clock, from the same day a year before, except on 29 February, whose window starts on 1
// March of the year before (AddDate's normalisation); so the answer is on one of the days around
// e's date a year later, the first whose start passes e. (Such an event of 1 March leaves the
// window during 29 February and is in it again on 1 March until its time of day: that return is
// left to the next change or review.)
func leavesWindow(r *loyalty.TierRules, e time.Time) time.Time {
	e = e.UTC()
	out := func(t time.Time) bool {
		start, _ := r.WindowBounds(t)
		return start.After(e)
	}
	day := time.Date(e.Year()+1, e.Month(), e.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -2)
	for range 8 {
		if out(day) {
			return day
		}
		start, _ := r.WindowBounds(day) // the day's window starts at start + the time of day
		if t := day.Add(e.Sub(start) + time.Millisecond); t.Before(day.AddDate(0, 0, 1)) && out(t) {
			return t
		}
		day = day.AddDate(0, 0, 1)
	}
	return e.AddDate(1, 0, 0) // not reached: the window is a year long
}

// nextExpiry returns the earliest time some of a member's points may expire under expiry rule e
// (nil: none), after a change c (nil: none) left their balance and last activity, given the time
// old that held before: zero for nothing to expire. In mode inactivity it is exact: the last
// activity plus after_days. In mode lot it may be early, never late: a new lot's expiry may come
// before old; debits and refunds of earns spend or shrink lots, which leaves the oldest lot the
// balance holds as old as it was or newer; a credit that is no lot (a refunded redemption, a deduction's reversal) may make
// the balance hold older lots again, so the job looks at once (the expiry job computes the exact
// time when it looks).
func nextExpiry(e *loyalty.Expiry, old, active time.Time, balance int64, c *memberChange, now time.Time) time.Time {
	switch {
	case e == nil || balance <= 0:
		return time.Time{}
	case e.Mode != loyalty.ExpiryLot:
		if active.IsZero() {
			return time.Time{} // never earned nor redeemed: nothing starts the clock
		}
		return e.ExpiresAt(active)
	case c != nil && c.credit:
		return now.Truncate(time.Millisecond)
	}
	at := old
	if c != nil && !c.lot.IsZero() {
		if lot := e.LotExpiresAt(c.lot); at.IsZero() || lot.Before(at) {
			at = lot
		}
	}
	if at.IsZero() { // a positive balance and no time: look at once
		at = now.Truncate(time.Millisecond)
	}
	return at
}
