package agent

import (
	"context"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Store is the agent's local replica and outbox. It also serves the sync client
// (lsync.ClientHandler), so acknowledgements and change-feed pages are applied in the same
// database as the POS writes.
type Store interface {
	lsync.ClientHandler
	// Update runs fn in one durable write transaction, committed if fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read transaction.
	View(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is the set of storage operations available inside a transaction.
type Tx interface {
	// Member returns a member as the hub has confirmed them to this store: the copy last synced
	// (change feed, subscription) with its version, plus this store's deltas the hub acknowledged
	// that the copy does not include yet (the hub applied them at a newer version of the member),
	// in the balance and the punch cards alike. ENOTFOUND when the replica has neither.
	Member(ctx context.Context, id string) (loyalty.Member, error)
	// PendingPoints returns the sum of points of the member's deltas not yet acknowledged. With
	// Member's balance it makes what this store knows of the member's points: every delta counts
	// once, whether the hub has acknowledged it and whether the synced copy includes it yet.
	PendingPoints(ctx context.Context, member string) (int64, error)
	// PendingPunches returns the punch card units of the member's deltas not yet acknowledged.
	PendingPunches(ctx context.Context, member string) (map[string]int64, error)
	// Program returns the program as last synced. ENOTFOUND before the first sync.
	Program(ctx context.Context) (loyalty.Program, error)
	// TimeZone returns the store's time zone as the hub last sent it ("" before the first sync).
	TimeZone(ctx context.Context) (string, error)
	// ClockOffset returns the hub clock minus the device clock as last measured, in ms (0: never).
	ClockOffset(ctx context.Context) (int64, error)
	// AgentTime returns the agent time now: the timeline that a wall clock set forward or back
	// while the agent runs does not move (leases and the last time the store heard from the hub
	// are kept on it).
	AgentTime(ctx context.Context) (time.Time, error)
	// SetClockOffset keeps a newly measured clock offset.
	SetClockOffset(ctx context.Context, ms int64) error
	// OfflineFor returns how long it is since this store last heard from the hub (the last page of
	// a pull), on a clock that no change of the machine's clock winds back, across restarts too;
	// the longest duration if the replica has no record of it.
	OfflineFor(ctx context.Context) (time.Duration, error)
	// Keys returns the hub's public keys as last synced.
	Keys(ctx context.Context) ([]qr.PublicKey, error)

	// InsertDelta writes a delta into the local ledger and the outbox, with what it spends of
	// each lease, and whether it was approved offline.
	InsertDelta(ctx context.Context, d loyalty.Delta, at time.Time, use []LeaseUse, offline bool) error
	// Leases returns the budget leases as last received, with when each stops being usable (kept
	// across restarts; no clock change extends it).
	Leases(ctx context.Context) ([]Lease, error)
	// LeaseSpent returns what this store's deltas (not rejected by the hub) spent of a lease.
	LeaseSpent(ctx context.Context, lease string) (int64, error)
	// LeaseUses returns what one delta spent of each lease.
	LeaseUses(ctx context.Context, delta string) ([]LeaseUse, error)
	// SetLeaseUse writes what a delta spends of a budget, in place of what it spent before.
	SetLeaseUse(ctx context.Context, delta string, u LeaseUse) error
	// OrdersToResplit returns up to limit of the orders whose uses must be split again because
	// the hub rejected one of their deltas; OrderResplit says one was.
	OrdersToResplit(ctx context.Context, limit int) ([]string, error)
	OrderResplit(ctx context.Context, order string) error
	// Earned sums the points this store awarded a member for purchases (less reversals) with an
	// event time (Delta.EventTime, the hub's clock) since a time; a reversal counts at its sale's
	// event time, as the hub counts it. Unsynced counts only what the member's synced copy does
	// not include yet: deltas not acknowledged, or acknowledged at a newer version of the member
	// than the copy's.
	Earned(ctx context.Context, member string, since time.Time, unsynced bool) (int64, error)
	// Redemptions counts a member's redemptions of reward (of any reward if empty) at this store
	// with an event time since a time, leaving out voucher uses and reversed redemptions, as the
	// hub's per-member limits count. Unsynced is as for Earned.
	Redemptions(ctx context.Context, member, reward string, since time.Time, unsynced bool) (int64, error)
	// OfflineRedemptions counts a member's redemptions of a reward approved offline at this store
	// since a time.
	OfflineRedemptions(ctx context.Context, member, reward string, since time.Time) (int64, error)
	// OrderDeltas returns this store's deltas for an order, oldest first.
	OrderDeltas(ctx context.Context, orderID string) ([]loyalty.Delta, error)
	// Reversals returns this store's deltas that reverse id, in whole or in part, oldest first.
	Reversals(ctx context.Context, id string) ([]loyalty.Delta, error)
	// VoucherUse returns the order that used a voucher at this store, or "".
	VoucherUse(ctx context.Context, voucher string) (string, error)

	// PosResult returns the stored answer to an earlier POS call with the same operation and order id.
	// The response is empty when the answer was dropped (ForgetResults) while the key is kept.
	PosResult(ctx context.Context, op, orderID string) (hash string, response []byte, found bool, err error)
	// LegacyPosResult is PosResult among the keys of parts kept before loyalty.PartKey, under
	// loyalty.LegacyPartKey: only those, so that a newer order id holding "/" never matches.
	LegacyPosResult(ctx context.Context, op, key string) (hash string, response []byte, found bool, err error)
	SavePosResult(ctx context.Context, op, orderID, hash string, response []byte, at time.Time) error

	// Touch records that the store saw a member in the replica at at (a scan, a delta of theirs).
	// It may leave a time less than an hour older as it is, so that touching costs no write.
	Touch(ctx context.Context, member string, at time.Time) error

	// Maintenance (agent/maintain.go): each call does at most limit rows, in the caller's
	// transaction.

	// StampUnseen gives members never touched since their copy arrived the time at, so that they
	// are evicted evict_after from then if they are not seen. It returns how many it stamped.
	StampUnseen(ctx context.Context, at time.Time, limit int) (int64, error)
	// Evict removes from the replica members last seen before before that have nothing the hub has
	// not confirmed (no pending delta, none acknowledged that the copy does not include yet), and
	// records each, with at, for an unsubscribe at the hub. It returns their ids.
	Evict(ctx context.Context, before, at time.Time, limit int) ([]string, error)
	// Unsubscribes returns evicted members whose unsubscribe the hub has not confirmed, oldest first.
	Unsubscribes(ctx context.Context, limit int) ([]Evicted, error)
	// Unsubscribed records that the hub took these members out of the store's scope, and returns
	// those that came back since their eviction (a copy in the replica again, a delta of theirs
	// not yet in a copy), which the store must subscribe to again.
	Unsubscribed(ctx context.Context, done []Evicted) (back []string, err error)
	// DropCopy removes the replica's copy of member, a copy the hub no longer keeps current,
	// unless a change of theirs waiting for the hub carries their code (loyalty.Delta.Presence),
	// which brings them back into the store's scope; it reports whether it did.
	DropCopy(ctx context.Context, member string) (bool, error)
	// Presence returns the member's code that the newest change of theirs made from a scan here
	// carried (loyalty.Delta.Presence), or "" if none did.
	Presence(ctx context.Context, member string) (string, error)
	// ForgetResults drops the answers of POS calls made before before, keeping their keys and
	// request hashes (a retry is then refused, not done again). It returns how many it dropped.
	ForgetResults(ctx context.Context, before time.Time, limit int) (int64, error)
	// PruneOrders deletes the orders that p allows among those with an acknowledged delta after
	// local sequence number after: their deltas, what they spent of leases and added to punch
	// cards (what they spent of leases the store holds still counts in LeaseSpent), and their POS
	// keys. It looks at up to limit deltas.
	PruneOrders(ctx context.Context, p Prune, after int64, limit int) (Pruned, error)

	// Stats summarises the replica for the status call.
	Stats(ctx context.Context) (Stats, error)
	// Outbox returns how many deltas wait for the hub and when the oldest of them was made (zero
	// when none waits), in one indexed read: what the metrics read at every scrape.
	Outbox(ctx context.Context) (n int64, oldest time.Time, err error)
	// Rejected returns deltas the hub refused, newest first.
	Rejected(ctx context.Context, limit int) ([]RejectedDelta, error)
}

// Lease is budget quota this store may spend without the hub.
type Lease struct {
	ID      string `json:"id"`
	Budget  string `json:"budget"`
	Granted int64  `json:"granted"`
	// State is the hub's (LeaseActive or LeaseEnded) as last received; in GET /v1/status an active
	// lease past ValidUntil shows as LeaseExpired.
	State      string    `json:"state"`
	ValidUntil time.Time `json:"valid_until,omitzero"` // by this machine's clock; zero: unknown (received before the agent kept deadlines), not usable
}

// Lease states.
const (
	LeaseActive  = "active"  // the store may spend it until ValidUntil
	LeaseEnded   = "ended"   // the hub ended it (revoked, or expired at the hub): spend no more
	LeaseExpired = "expired" // active at the hub as last heard, but its time at this store is up: spend no more
)

// Usable reports whether the store may spend the lease at now.
func (l Lease) Usable(now time.Time) bool {
	return l.State == LeaseActive && now.Before(l.ValidUntil)
}

// LeaseUse is what one delta spends of one lease. A redemption on an order that had counted
// already records what that spared it, and what it took over since from the order's reversed
// redemptions (loyalty.OrderCharge), and how its charge depends on the order (Rule); a lease's
// spending is the sum of Amount.
type LeaseUse struct {
	Lease   string
	Budget  string
	Amount  int64
	Spared  int64
	Carried int64
	Rule    loyalty.OrderRule // how Amount depended on the order when it was made
}

// Order is the use as the order core counts it.
func (u LeaseUse) Order() loyalty.OrderCharge {
	return loyalty.OrderCharge{Amount: u.Amount, Spared: u.Spared, Carried: u.Carried}
}

// Stats summarises the replica.
type Stats struct {
	Outbox         int64 `json:"outbox"`   // deltas waiting for the hub
	Rejected       int64 `json:"rejected"` // deltas the hub refused, kept for review
	Members        int64 `json:"members"`
	Cursor         int64 `json:"cursor"`
	ProgramVersion int64 `json:"program_version"`
	Unsubscribing  int64 `json:"unsubscribing"` // members evicted whose unsubscribe the hub has not confirmed yet
}

// Evicted is a member evicted from the replica, and when.
type Evicted struct {
	Member string
	At     time.Time
}

// Prune says which orders PruneOrders may delete: those whose every delta (but rejected ones,
// kept for review) the hub acknowledged, the member's synced copy includes, and was made before
// Before; and none the program still counts for a lifetime (period "total") limit or cap. What a
// deleted order spent of a lease the store still holds goes on counting in LeaseSpent.
type Prune struct {
	Before      time.Time
	KeepEarns   bool     // keep orders with a sale: a lifetime earn cap on purchases counts them
	KeepRedeems bool     // keep orders with a redemption of points: a lifetime limit on every reward counts them
	KeepRewards []string // keep orders with a redemption of these rewards: lifetime limits on them
}

// Pruned is what one PruneOrders call did.
type Pruned struct {
	Next    int64 // the local sequence number to go on after
	Scanned int   // deltas looked at: fewer than the limit means none is left after Next
	Orders  int64
	Deltas  int64
	Results int64 // POS answers deleted with their orders (keys whose answer was dropped before are not counted)
}

// RejectedDelta is a delta the hub refused, with its reason.
type RejectedDelta struct {
	Delta   loyalty.Delta `json:"delta"`
	Code    string        `json:"code"`
	Message string        `json:"message"`
}
