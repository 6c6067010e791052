package hub

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// Analyzer is a Store whose engine chooses its query plans from statistics it keeps of the tables
// (PostgreSQL). Analyze brings them up to date. The hub calls it after a large import
// (AnalyzeAfterImport): until the server's own background analysis catches up, which with
// PostgreSQL's defaults may take a minute, every write would run on plans made for the nearly
// empty tables of before the import, several times slower.
type Analyzer interface {
	Analyze(ctx context.Context) error
}

// Checkpointer is a Store that keeps the pages a commit changed in a log beside the database
// until it copies them back (SQLite's write-ahead log, hub.db-wal), where the pages as they were
// before may stay until the log is written over. Checkpoint copies the log's pages back and empties
// it. The hub calls it after erasing a member's personal data (EraseMember), so that the erased
// values do not stay in the log.
type Checkpointer interface {
	Checkpoint(ctx context.Context) error
}

// EraseCheckpointWait is how long the checkpoint after an erasure waits for readers that still
// use the log; it holds the writer meanwhile. If they outlast it, the log keeps its pages until
// it is written over, after the next checkpoint.
const EraseCheckpointWait = time.Second

// AnalyzeAfterImport is how many members an import must create or change for the hub to bring
// the engine's statistics up to date after it (Analyzer).
const AnalyzeAfterImport = 10_000

// Store is the hub's durable storage. The hub's logic runs inside its transactions; an
// implementation (hub/sqlite, later hub/postgres) only stores and finds rows.
type Store interface {
	// Update runs fn in one serializable write transaction, committed if fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read transaction that sees one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Listen calls fn with every Event published (Tx.Publish) on the database by any process,
	// this one included, in the order their transactions committed, from when it listens until
	// ctx ends or it fails: it returns ctx's error, or why it stopped listening (the connection
	// to the database was lost, or it fell behind). Its first call of fn is an EventReset, once
	// it listens. Events published when nothing listened are not delivered: a caller that
	// listens again must assume anything may have changed (bus.go).
	Listen(ctx context.Context, fn func(Event)) error
	Close() error
}

type bookkeepingKey struct{}

// Bookkeeping marks the context of a write transaction that draws no change version and whose
// rows agents never pull: the sync sessions' rows and store health (sessions.go). A Store may run
// it beside the writer rather than after it (hub/postgres does: it takes no writer lock), so that
// a long write cannot hold up the renewal of live sessions until they expire.
func Bookkeeping(ctx context.Context) context.Context {
	return context.WithValue(ctx, bookkeepingKey{}, true)
}

// IsBookkeeping reports whether ctx is Bookkeeping's.
func IsBookkeeping(ctx context.Context) bool { b, _ := ctx.Value(bookkeepingKey{}).(bool); return b }

// Tx is the set of storage operations available inside a transaction. Methods that find one
// thing return ENOTFOUND when it is not there; inserts of an existing id return EDUPLICATE.
type Tx interface {
	// Epoch returns the hub database's epoch: a random number drawn when the database was
	// created and drawn again when it is restored from a backup (NewEpoch). Agents that meet a
	// new epoch know the hub may have lost what they sent since the backup.
	Epoch(ctx context.Context) (EpochInfo, error)
	// NewEpoch draws a new epoch for a database restored at at, records when the backup was
	// taken (the last delta it received), and returns the epoch.
	NewEpoch(ctx context.Context, at time.Time) (int64, error)
	// MarkReplaced records that a restore at at replaced this database with another
	// (EpochInfo.ReplacedAt): no hub serves on it again.
	MarkReplaced(ctx context.Context, at time.Time) error
	// NextVersion advances the hub's change sequence and returns the new value. Every change an
	// agent must see (member, program, key) is stamped with one.
	NextVersion(ctx context.Context) (int64, error)
	// NextVersions advances the hub's change sequence by n (at least 1) and returns the first of
	// the n new values.
	NextVersions(ctx context.Context, n int) (int64, error)
	// CurrentVersion returns the change sequence's current value.
	CurrentVersion(ctx context.Context) (int64, error)
	// ChangedStores returns the stores that have something to pull among the changes stamped
	// after after and up to upTo: those with a member in scope that changed (MembersSince), or a
	// setting of their own (MarkStoreChanged); all is true instead when the program or a key
	// changed, which every store pulls, or when more than limit stores did.
	ChangedStores(ctx context.Context, after, upTo int64, limit int) (stores []string, all bool, err error)
	// MarkStoreChanged records that a setting of store (its time zone) changed at version.
	MarkStoreChanged(ctx context.Context, store string, version int64) error

	InsertStore(ctx context.Context, s StoreInfo) error
	StoreInfo(ctx context.Context, id string) (StoreInfo, error)
	// StoresInfo is StoreInfo for many stores at once (a group of pushes'): those of ids that
	// exist, by id.
	StoresInfo(ctx context.Context, ids []string) (map[string]StoreInfo, error)
	Stores(ctx context.Context) ([]StoreInfo, error)
	SetStoreToken(ctx context.Context, id, tokenHash string) error
	SetStoreHealth(ctx context.Context, id string, h Health) error
	// SetStoreZone sets a store's registered time zone (an IANA name; "" is UTC).
	SetStoreZone(ctx context.Context, id, tz string) error
	// MarkProgramSent records that rule version was sent to store at time at (the first time counts).
	MarkProgramSent(ctx context.Context, store string, version int64, at time.Time) error
	// ProgramsReceived records that store received every rule version sent to it so far: it
	// pulled again, which it does only after the answer to its previous pull.
	ProgramsReceived(ctx context.Context, store string, at time.Time) error
	// ProgramsUnreceived reports whether a rule version was sent to store that ProgramsReceived
	// has not marked received yet.
	ProgramsUnreceived(ctx context.Context, store string) (bool, error)
	// ProgramsSent returns up to limit rule versions from version from on that were sent to store,
	// oldest first.
	ProgramsSent(ctx context.Context, store string, from int64, limit int) ([]SentProgram, error)
	// ProgramsSentTo is ProgramsSent for many stores at once, by store; a store that was sent
	// none of those versions is not in it.
	ProgramsSentTo(ctx context.Context, stores []string, from int64, limit int) (map[string][]SentProgram, error)
	// MarkFlushed records a flushed pull from store at time at: everything the store had made
	// then was pushed before it. It only moves forward, and may lag by a minute.
	MarkFlushed(ctx context.Context, store string, at time.Time) error
	// TierChanges returns up to limit of a member's tier changes at or before until, newest first.
	TierChanges(ctx context.Context, member string, until time.Time, limit int) ([]TierChange, error)

	// InsertMember returns EDUPLICATE if the id or the email is taken. A new member is due for a
	// tier review at once (Schedule.ReviewAt is CreatedAt): it places them in the entry tier.
	InsertMember(ctx context.Context, m loyalty.Member) error
	Member(ctx context.Context, id string) (loyalty.Member, error)
	// MemberWithSchedule is Member and the member's job Schedule, in one read.
	MemberWithSchedule(ctx context.Context, id string) (loyalty.Member, Schedule, error)
	// MembersWithSchedule is MemberWithSchedule for many members at once (a pushed batch's): those
	// of ids that exist, by id.
	MembersWithSchedule(ctx context.Context, ids []string) (map[string]ScheduledMember, error)
	// UpdateMembers writes, for each update, the fields of member u.Member that u.Set names (each
	// member at most once).
	UpdateMembers(ctx context.Context, us []MemberUpdate) error
	// Subscribe puts member in store's replica scope. It is idempotent.
	Subscribe(ctx context.Context, store, member string) error
	// Subscribed reports whether member is in store's replica scope.
	Subscribed(ctx context.Context, store, member string) (bool, error)
	// InScope returns those of the (store, member) pairs whose member is in the store's replica
	// scope, in one read.
	InScope(ctx context.Context, pairs [][2]string) (map[[2]string]bool, error)
	// Unsubscribe takes member out of store's replica scope. It is idempotent.
	Unsubscribe(ctx context.Context, store, member string) error
	// SubscribeAll is Subscribe for many members at once, of many stores: each of scopes[store]
	// in store's scope.
	SubscribeAll(ctx context.Context, scopes map[string][]string) error
	// MembersSince returns members in store's scope with a version after cursor, oldest first.
	MembersSince(ctx context.Context, store string, cursor int64, limit int) ([]loyalty.Member, error)
	// Members returns members in id order after the given id, for checks and exports.
	Members(ctx context.Context, after string, limit int) ([]loyalty.Member, error)

	// InsertDelta adds d to the ledger unless its id is there already. It returns the ledger
	// sequence number and whether it inserted.
	InsertDelta(ctx context.Context, d loyalty.Delta, hash string, receivedAt time.Time) (seq int64, inserted bool, err error)
	// InsertDeltas adds new deltas to the ledger in their order, in one statement or a few, and
	// returns their sequence numbers in that order: a pushed batch's inserts at once. The caller
	// has checked that no id is in the ledger (Tx.DeltaHashes) nor twice in ds; if one is there
	// after all, it returns an error and inserts none.
	InsertDeltas(ctx context.Context, ds []NewDelta) ([]int64, error)
	// Delta returns a ledger entry by delta id.
	Delta(ctx context.Context, id string) (LedgerEntry, error)
	// DeltaHashes returns the sequence number and content hash of those of ids in the ledger, by
	// id: a pushed batch's deduplication in one read.
	DeltaHashes(ctx context.Context, ids []string) (map[string]DeltaRef, error)
	// Ledger returns a member's ledger, newest first, at most limit entries.
	Ledger(ctx context.Context, member string, limit int) ([]LedgerEntry, error)
	// LedgerSum returns the sum of a member's ledger points.
	LedgerSum(ctx context.Context, member string) (int64, error)
	// ReversalOf returns the id of the delta that reverses id, or "" if none does.
	ReversalOf(ctx context.Context, id string) (string, error)
	// Reversals returns the deltas that reverse id, in whole or in part, oldest first.
	Reversals(ctx context.Context, id string) ([]LedgerEntry, error)
	// OrderDeltas returns the deltas of one order at one store (OnlineStore for the online channel).
	OrderDeltas(ctx context.Context, store, orderID string) ([]LedgerEntry, error)
	// VoucherUses returns the ids of redeem deltas that used the voucher.
	VoucherUses(ctx context.Context, voucher string) ([]string, error)
	// OpenVouchers returns up to limit of member's vouchers that may still be used at now: not
	// voided, not expired, with no use that stands (VoucherUses); oldest first.
	OpenVouchers(ctx context.Context, member string, now time.Time, limit int) ([]Voucher, error)

	InsertVoucher(ctx context.Context, v Voucher) error
	Voucher(ctx context.Context, id string) (Voucher, error)
	// VoucherPaidBy returns the voucher that a redeem delta paid for.
	VoucherPaidBy(ctx context.Context, delta string) (Voucher, error)
	// VoidVoucher cancels a voucher; later uses are conflicts.
	VoidVoucher(ctx context.Context, id string, at time.Time) error

	// InsertRejection records a delta a store pushed and the hub refused. The first record of a
	// store's delta id stands: the same id pushed again, with the same content or another, adds
	// nothing, so that a store cannot overwrite the record of what it pushed first.
	InsertRejection(ctx context.Context, r Rejection) error
	// RejectedAs returns, of the (store, delta id) pairs, those the hub rejected (InsertRejection),
	// each as recorded, in one read.
	RejectedAs(ctx context.Context, pairs [][2]string) (map[[2]string]Rejection, error)
	// Rejections returns the newest limit rejections, newest first.
	Rejections(ctx context.Context, limit int) ([]Rejection, error)
	// RejectionsPage returns up to limit rejections after the one at after (the zero
	// RejectionKey: from the start), oldest first: in the order of At, Store and Delta.ID.
	RejectionsPage(ctx context.Context, after RejectionKey, limit int) ([]Rejection, error)
	InsertConflict(ctx context.Context, c Conflict) (id int64, err error)
	// Conflicts returns up to limit conflicts with an id below before (0: the newest), newest
	// first.
	Conflicts(ctx context.Context, before int64, limit int) ([]Conflict, error)

	// Program returns the newest program and the change version it was published at.
	Program(ctx context.Context) (loyalty.Program, int64, error)
	// ProgramVersion returns the program with rule version v.
	ProgramVersion(ctx context.Context, v int64) (loyalty.Program, error)
	InsertProgram(ctx context.Context, p loyalty.Program, changeVersion int64, at time.Time) error
	// ProgramPublished returns the change version and the time at which rule version v was published.
	ProgramPublished(ctx context.Context, v int64) (changeVersion int64, at time.Time, err error)
	// ProgramVersionAt returns the rule version in force at time at: the newest one published at
	// or before it (0 if none was).
	ProgramVersionAt(ctx context.Context, at time.Time) (int64, error)

	// InsertKey stores a new QR signing key, its private half sealed.
	InsertKey(ctx context.Context, k StoredKey, changeVersion int64) error
	// SigningKey returns the newest key that is not retired.
	SigningKey(ctx context.Context) (StoredKey, error)
	// Keys returns every signing key, oldest first.
	Keys(ctx context.Context) ([]StoredKey, error)
	// ResealKey replaces a key's sealed private half (a new key-encryption key, or a key stored in
	// clear by an older version).
	ResealKey(ctx context.Context, id string, sealed []byte) error
	// PublicKeys returns every key with the change version it was last changed at.
	PublicKeys(ctx context.Context) ([]VersionedKey, error)
	RetireKey(ctx context.Context, id string, notAfter time.Time, changeVersion int64) error

	// BudgetSpent returns what a budget has spent.
	BudgetSpent(ctx context.Context, budget string) (int64, error)
	// AddBudgetSpent adds x (negative for a reversal) to a budget's spending.
	AddBudgetSpent(ctx context.Context, budget string, x int64) error
	// InsertCharge records what an applied delta charged to a budget, and from which lease.
	InsertCharge(ctx context.Context, c Charge) error
	// CarryCharge adds x to what an applied delta's charge to a budget took over from its order's
	// reversed redemptions (Charge.Carried).
	CarryCharge(ctx context.Context, delta, budget string, x int64) error
	// Charges returns what an applied delta charged to budgets (none: an empty list). It returns
	// ENOTFOUND for a delta applied before the hub recorded charges.
	Charges(ctx context.Context, delta string) ([]Charge, error)
	// Outstanding returns the quota leased to stores and not yet spent or settled for a budget.
	Outstanding(ctx context.Context, budget string) (int64, error)
	// Leases returns a store's leases that are not settled.
	Leases(ctx context.Context, store string) ([]Lease, error)
	// BudgetLeases returns a budget's leases that are not settled.
	BudgetLeases(ctx context.Context, budget string) ([]Lease, error)
	// ExpiredLeases returns active leases whose expiry is before t, earliest first.
	ExpiredLeases(ctx context.Context, t time.Time) ([]Lease, error)
	// Wanted returns how much more of a budget its active leases' stores asked for at their
	// last pulls than the hub could grant (Lease.Wanted, summed).
	Wanted(ctx context.Context, budget string) (int64, error)
	// WatchSince returns since when the hub has recorded store's demand of budget, starting at at
	// if it had not yet.
	WatchSince(ctx context.Context, store, budget string, at time.Time) (time.Time, error)
	// Watched returns since when the hub has recorded store's demand of budget, or ENOTFOUND
	// if it has not yet (WatchSince without the write).
	Watched(ctx context.Context, store, budget string) (time.Time, error)
	// CountStores returns how many stores are registered.
	CountStores(ctx context.Context) (int, error)
	// PullHead returns what a pull of store from cursor reads before it decides anything, in one
	// round trip where the engine has round trips (ReadPullHead is the reference).
	PullHead(ctx context.Context, store string, cursor int64, limit int) (PullHead, error)
	// BudgetFigures returns, for each of budgets, what sizing store's lease of it reads: as
	// BudgetSpent, Outstanding, LargestCharge and Demand (both from since) and Watched (the zero
	// time where it is ENOTFOUND) would, in one round trip where the engine has round trips
	// (ReadBudgetFigures is the reference). A pull sizes a lease of every budget.
	BudgetFigures(ctx context.Context, store string, budgets []string, since time.Time) (map[string]BudgetFigures, error)
	// AddDemand records that a store's lease of budget was charged amount by a delta with event
	// time at, in the hour containing at; and, chain-wide, the largest single charge of that hour.
	AddDemand(ctx context.Context, store, budget string, at time.Time, amount int64) error
	// Demand returns what store's leases of budget were charged per hour, for the hours from the
	// one containing since on, oldest first (hours without a charge are left out).
	Demand(ctx context.Context, store, budget string, since time.Time) ([]DemandHour, error)
	// LargestCharge returns the largest single charge of budget to any store's lease in the hours
	// from the one containing since on (0: none).
	LargestCharge(ctx context.Context, budget string, since time.Time) (int64, error)
	// PruneDemand forgets the demand recorded for hours that ended before t.
	PruneDemand(ctx context.Context, t time.Time) error
	Lease(ctx context.Context, id string) (Lease, error)
	// PutLease inserts or updates a lease and records the event that changed it.
	PutLease(ctx context.Context, l Lease, e LeaseEvent) error
	// MemberRedemptions counts a member's redemptions (of reward, or of any reward if empty) with an
	// event time in [since, until), not counting reversed ones nor uses of vouchers (a voucher
	// counted when it was bought). A zero until has no end (loyalty.PeriodBounds).
	MemberRedemptions(ctx context.Context, member, reward string, since, until time.Time) (int64, error)

	// Qualifying sums what counts toward a member's tier (basis spend: order amounts; points: points
	// earned from purchases) with an event time in [since, until), not counting reversed earns. A
	// zero until has no end (loyalty.TierRules.WindowBounds). It also returns the event times the
	// tier review schedule is computed from (Qualification). It does not sum the member's history:
	// the storage keeps running totals per member and UTC day as deltas are inserted (by sales,
	// and by reversals of them), and reads the ledger only for the part of a day at the window's
	// edges (QualifyingWindow, qualifying.go). The answer is the same as QualifyingFromLedger's.
	Qualifying(ctx context.Context, member, basis string, since, until time.Time) (Qualification, error)
	// QualifyingOf is Qualifying for many members at once (a job's batch): members without a
	// qualifying event have the zero Qualification.
	QualifyingOf(ctx context.Context, members []string, basis string, since, until time.Time) (map[string]Qualification, error)
	// QualifyingFromLedger is Qualifying computed from the member's ledger alone, every
	// qualifying event of theirs, without the running totals: what Check compares them with.
	QualifyingFromLedger(ctx context.Context, member, basis string, since, until time.Time) (Qualification, error)
	// SetReferralPaid records that a referred member's referral bonus was given, for the sale
	// (a delta id) that qualified; with sale "" it records that it was taken back (or never
	// given), which forgets the sale.
	SetReferralPaid(ctx context.Context, member, sale string) error
	// ReferralSale returns the sale whose purchase gave member's referral bonus: "" when none is
	// recorded (not given, or given before the hub recorded the sale).
	ReferralSale(ctx context.Context, member string) (string, error)

	// The background jobs' schedule (jobs.go): when each member must next be looked at.

	// ScheduleAll sets, in one statement, the time of job (JobTiers or JobExpiry) of every member to
	// at (zero: none), for a program change that alters the tiers or the expiry rule: the job's
	// next run looks at everyone again. For JobExpiry only members with a positive balance are
	// given at; the others get none.
	ScheduleAll(ctx context.Context, job string, at time.Time) error
	// MembersDue returns up to limit members whose time for job (JobTiers: Schedule.ReviewAt;
	// JobExpiry: Schedule.ExpireAt) is at or before until, in the order of that time and then in
	// one of the storage's (see DueCursor), starting after the cursor after (the zero DueCursor:
	// from the start). Members without a time for the job are never due. Members due at the same time
	// (everyone, after a program change) come in the order they are stored where that is known,
	// so that a batch reads and writes few pages. In a write transaction it is how a job claims
	// its next batch (jobs.go: "Exactly once across several hub processes").
	MembersDue(ctx context.Context, job string, until time.Time, after DueCursor, limit int) ([]DueMember, error)
	// LedgerHead returns the newest ledger position (the largest sequence number; 0: none). The
	// storage gives positions in the order writes commit (one writer at a time: on PostgreSQL the
	// writer's lock, which every transaction that inserts deltas takes), so every delta committed
	// after a snapshot that read head has a position after head.
	LedgerHead(ctx context.Context) (int64, error)
	// MembersAfter returns those of members who have a delta after ledger position seq, each
	// once. It reads the deltas after seq, not each member's ledger.
	MembersAfter(ctx context.Context, seq int64, members []string) ([]string, error)
	// RuleCount counts a member's earns under an action rule with an event time in [since, until),
	// not counting reversed ones. A zero until has no end.
	RuleCount(ctx context.Context, member, rule string, since, until time.Time) (int64, error)
	// MemberEarned sums a member's points earned under rule ("" for purchases, or an action id),
	// less reversals of them, with an event time in [since, until). A zero until has no end.
	MemberEarned(ctx context.Context, member, rule string, since, until time.Time) (int64, error)
	// Lots returns a member's lots earned at or after since, for points expiry per lot: earns and
	// positive adjustments that reverse nothing (loyalty.IsLot) with their event time, each less
	// what reversals of it took back; those with nothing left are left out. Oldest first.
	Lots(ctx context.Context, member string, since time.Time) ([]loyalty.Lot, error)
	// ProveLate records that a store's change of member, dated at or before the member's last
	// points expiry, carried the member's code (giveback.go); recording it again changes nothing.
	ProveLate(ctx context.Context, member, delta string) error
	// LateProofs returns the ids of member's changes ProveLate recorded.
	LateProofs(ctx context.Context, member string) (map[string]bool, error)
	// LotsOf is Lots for many members at once (a job's batch).
	LotsOf(ctx context.Context, members []string, since time.Time) (map[string][]loyalty.Lot, error)
	// LotsDrift compares the lots a storage keeps apart from the ledger (SQLite's member_lots:
	// every lot (loyalty.IsLot) with its time, ledger position and points less what
	// reversals took back, those with nothing left too) with the ledger, for the members with an
	// id in (after, last] (no upper bound when last is ""), and returns a line for each lot that
	// differs, at most most of them (Hub.Check, a page of members at a time). A storage that reads
	// lots from the ledger (PostgreSQL) has none to compare.
	LotsDrift(ctx context.Context, after, last string, most int) ([]string, error)
	// MemberBirthday returns a member's birthday ("" when none is on file). Member and the other
	// member reads leave it out, so that what goes to stores never carries it.
	MemberBirthday(ctx context.Context, member string) (string, error)
	// BirthdayMembers returns up to limit members, in id order after the given id, whose birthday
	// falls on day ("MM-DD", of a birthday given as "MM-DD" or "YYYY-MM-DD"), with Birthday filled
	// in. A page costs what it returns: the index on the day is ordered by member id.
	BirthdayMembers(ctx context.Context, day string, after string, limit int) ([]loyalty.Member, error)

	// Sessions: each store's one live sync session, across the hub processes on the database
	// (sessions.go).

	// Deadlines are on the database's clock (the machine's, for an embedded database), so that
	// hub processes on machines whose clocks differ agree on them.

	// ClaimSession makes s (Store, Owner, Remote, Started) store s.Store's live session until
	// ttl from now, replacing whichever session the store had, live or not (the newest
	// connection wins). It returns the session as stored: its Started is moved past the start
	// of the store's previous session if it was not after it, so that a store's sessions are
	// told apart by their start, in the order they were claimed.
	ClaimSession(ctx context.Context, s Session, ttl time.Duration) (Session, error)
	// RenewSessions moves the deadline of every session owner holds to ttl from now, sets the
	// last seen time of their stores to seen, and returns them.
	RenewSessions(ctx context.Context, owner string, seen time.Time, ttl time.Duration) ([]Session, error)
	// ReleaseSession ends store's session started at started if owner still holds it, and
	// reports whether it did.
	ReleaseSession(ctx context.Context, store, owner string, started time.Time) (bool, error)
	// ExpireSessions ends the live sessions whose deadline has passed (their hub process stopped
	// renewing them: it died, or lost the database), marks their stores disconnected, and
	// returns them as they were.
	ExpireSessions(ctx context.Context) ([]Session, error)
	// Session returns store's session, live or ended (ENOTFOUND if it never had one).
	Session(ctx context.Context, store string) (Session, error)
	// LiveSessions returns which of stores have a live session, held by any hub process, in one
	// read.
	LiveSessions(ctx context.Context, stores []string) (map[string]bool, error)
	// Publish delivers ev to every listener on the database (Store.Listen) when the transaction
	// commits, and never if it does not.
	Publish(ctx context.Context, ev Event) error

	// Idempotent returns the stored result of an earlier request with this scope and key.
	Idempotent(ctx context.Context, scope, key string) (hash string, response []byte, found bool, err error)
	// LegacyIdempotent is Idempotent among the keys of parts of orders kept before
	// loyalty.PartKey, under loyalty.LegacyPartKey: only those, so that a newer order id holding
	// "/" never matches.
	LegacyIdempotent(ctx context.Context, scope, key string) (hash string, response []byte, found bool, err error)
	SaveIdempotent(ctx context.Context, scope, key, hash string, response []byte, at time.Time) error

	AccessTx  // API keys and the audit trail
	ReportTx  // reports (reports.go)
	CareTx    // member care: profile updates, erasure, export (care.go)
	MigrateTx // member search, bulk imports and exports (migrate.go)
	WebhookTx // webhook endpoints, the event outbox and the delivery log (webhooks.go)
	ReviewTx  // conflicts marked resolved on the operator's dashboard (dashboard_data.go)
	CardTx    // member card links' revocation (card_links.go)
}

// ScheduledMember is a member and their job Schedule (Tx.MembersWithSchedule).
type ScheduledMember struct {
	Member   loyalty.Member
	Schedule Schedule
}

// NewDelta is a delta for Tx.InsertDeltas: the delta, its hash and when the hub received it.
type NewDelta struct {
	Delta      loyalty.Delta
	Hash       string
	ReceivedAt time.Time
}

// DeltaRef is what deduplication needs of a delta in the ledger (Tx.DeltaHashes).
type DeltaRef struct {
	Seq  int64
	Hash string
}

// MemberUpdate is one write of a member (Tx.UpdateMembers): the fields Set names, and no others.
type MemberUpdate struct {
	Member  string
	Pos     int64 // the member's DueMember.Pos when a job read them (0: unknown), to find them faster
	Set     MemberField
	Balance int64 // FieldBalance, with Version
	Version int64 // the change version that tells agents the member changed
	Tier    string
	Punches map[string]int64
	Schedule
}

// MemberField names fields of a MemberUpdate.
type MemberField uint8

// The fields of a MemberUpdate.
const (
	FieldBalance    MemberField = 1 << iota // Balance and Version
	FieldTier                               // Tier
	FieldPunches                            // Punches
	FieldReviewAt                           // Schedule.ReviewAt
	FieldExpireAt                           // Schedule.ExpireAt
	FieldLastActive                         // Schedule.LastActive
	FieldExpiredAt                          // Schedule.ExpiredAt
)

// Background jobs, by the member time that schedules them (Schedule).
const (
	JobTiers  = "tiers"  // tier requalification, at Schedule.ReviewAt
	JobExpiry = "expiry" // points expiry, at Schedule.ExpireAt
)

// Schedule is when the background jobs must next look at a member (jobs.go), kept on the member
// and indexed, so that a job visits only the members that are due instead of every member.
type Schedule struct {
	// ReviewAt is when the member's tier must be computed again although nothing was applied to
	// them: when a qualifying event leaves the window while the member's tier is above the lowest
	// one, or when an event dated later enters it. Zero: never (no tiers, a lifetime window, or
	// nothing that can change the tier).
	ReviewAt time.Time
	// ExpireAt is the earliest time some of the member's points may expire: the last activity
	// plus after_days (mode inactivity), or the earliest expiry of a lot the balance holds (mode
	// lot). It may be early, never late. Zero: never (no expiry rule, or nothing to expire).
	ExpireAt time.Time
	// LastActive is the event time of the member's last earn or redemption in the ledger (zero
	// if none).
	LastActive time.Time
	// ExpiredAt is the event time of the last expiry that took points of the member (zero if
	// none): a change dated at or before it may make an expiry give points back (expireBack).
	ExpiredAt time.Time
}

// Qualification is what Tx.Qualifying finds of a member's qualifying events: their total in the
// window, the event time of the earliest one in it, and of the earliest one dated at or after
// the window's end (a store's clock ahead, a calendar year still to come). Zero: none.
type Qualification struct {
	Total int64
	First time.Time
	Next  time.Time
}

// DueMember is what the jobs read of a member (Tx.MembersDue): their tier, balance and job
// schedule, and where the storage keeps them, if it says (Pos: on SQLite the rowid, which finds
// the member within the transaction and orders members across transactions, unless a VACUUM
// renumbered the rows meanwhile: then a run may miss a member, which the next run finds).
type DueMember struct {
	ID      string
	Tier    string
	Balance int64
	Schedule
	Pos int64
}

// DueCursor is where a reading of due members stopped (Tx.MembersDue): the due time, Pos and ID
// of the last member read. Members due at the same time come in an order of the storage's (on
// SQLite Pos, on PostgreSQL ID). A cursor with an ID and no Pos (GET /v1/expiring's, which
// shows no storage position) is found by its ID.
type DueCursor struct {
	At  time.Time
	Pos int64
	ID  string
}

// StoreInfo is a retail store registered with the hub.
type StoreInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	TokenHash string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	// TimeZone is the store's registered IANA time zone ("" is UTC): the one campaign days and
	// hours are read in for its sales, whatever its deltas say.
	TimeZone string `json:"timezone,omitempty"`
	// FlushedAt is when the store last pulled with everything it had made pushed before.
	FlushedAt time.Time `json:"-"`
	Health    Health    `json:"health"`
}

// SentProgram is a rule version the hub sent a store, when, and when the store's next pull
// showed it had received it (zero: not yet).
type SentProgram struct {
	Version  int64
	At       time.Time
	Received time.Time
}

// TierChange is one tier delta of a member's history.
type TierChange struct {
	At   time.Time
	Tier string
}

// Health is a store's sync health as the hub last saw it.
type Health struct {
	Connected     bool      `json:"connected"`
	LastSeen      time.Time `json:"last_seen,omitzero"`
	ClockOffsetMS int64     `json:"clock_offset_ms"`
	ClockSkewed   bool      `json:"clock_skewed"` // more than MaxClockSkew off the hub's clock
	Outbox        int64     `json:"outbox"`
	// Unsynced is what the store's last ping said its outbox holds (unsynced.go; nil: it said
	// nothing). The stores table does not keep it: Tx.SetStoreUnsynced does.
	Unsynced *Unsynced `json:"unsynced,omitempty"`
}

// Session is a store's sync session as the database keeps it: which hub process holds it
// (Owner; "" once it ended), the agent's address, when it started, and until when it lives
// unless its owner renews it.
type Session struct {
	Store    string
	Owner    string
	Remote   string
	Started  time.Time // unique per store, later for every later session (Tx.ClaimSession)
	Deadline time.Time // on the database's clock
}

// MaxClockSkew is how far a store's clock may be off before it is reported. Period limits use
// the corrected event time either way.
const MaxClockSkew = 5 * time.Minute

// LedgerEntry is an applied delta with the hub's sequence number.
type LedgerEntry struct {
	loyalty.Delta
	Seq        int64     `json:"seq"`
	Hash       string    `json:"-"`
	ReceivedAt time.Time `json:"received_at"`
}

// Charge is what one applied delta spent of one budget: positive for an earn or redemption the
// budget covers. Lease is the store's lease it was counted against, or "". A redemption on an
// order that had counted already records what that spared it, and what it took over since from
// the order's reversed redemptions (loyalty.OrderCharge).
type Charge struct {
	Delta   string
	Budget  string
	Lease   string
	Amount  int64
	Spared  int64
	Carried int64
}

// Order is the charge as the order core counts it.
func (c Charge) Order() loyalty.OrderCharge {
	return loyalty.OrderCharge{Amount: c.Amount, Spared: c.Spared, Carried: c.Carried}
}

// Voucher is a reward a member paid for online, to be used once, online or in a store.
type Voucher struct {
	ID        string    `json:"id"`
	Member    string    `json:"member_id"`
	Reward    string    `json:"reward_id"`
	DeltaID   string    `json:"delta_id"` // the redeem delta that paid for it
	Token     string    `json:"token"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	VoidedAt  time.Time `json:"voided_at,omitzero"` // set when the order that bought it was refunded
}

// RejectionKey is where a reading of rejections stopped (Tx.RejectionsPage): the time, store and
// delta id of the last one read, which are unique together.
type RejectionKey struct {
	At    time.Time
	Store string
	Delta string
}

// Key is the rejection's place in Tx.RejectionsPage's order.
func (r Rejection) Key() RejectionKey {
	return RejectionKey{At: r.At, Store: r.Store, Delta: r.Delta.ID}
}

// Rejection is a delta the hub refused to apply, kept for review.
type Rejection struct {
	Delta   loyalty.Delta `json:"delta"`
	Store   string        `json:"store"`
	Code    string        `json:"code"`
	Message string        `json:"message"`
	At      time.Time     `json:"at"`
	// Hash is the digest of the delta as its store pushed it (Delta.Hash), which Delta may no
	// longer be (an erased member's country is taken out); "" in records older than it.
	Hash string `json:"-"`
}

// Conflict kinds.
const (
	ConflictOverdraft    = "overdraft"     // a delta took a balance below zero
	ConflictVoucherReuse = "voucher_reuse" // a single-use voucher was used more than once
	ConflictVoucherVoid  = "voucher_void"  // a voucher was used after the order that bought it was refunded
	ConflictMemberLimit  = "member_limit"  // an offline redemption broke a per-member limit in its own period
	ConflictEarnCap      = "earn_cap"      // stores offline together awarded more than an earn cap in a period
	ConflictDisabled     = "disabled"      // a store redeemed a reward while it was switched off, before it heard
	ConflictUnleased     = "unleased"      // a store spent a budget of its rule version without a lease: a bug, never expected
	ConflictOverBudget   = "over_budget"   // spent plus outstanding went over a limit: a bug, never expected
	ConflictRestore      = "restore"       // spent from a lease the hub granted and then lost when it was restored from a backup
)

// Conflict is an offline event that broke a rule. The delta was applied (it physically
// happened); the conflict is recorded and flagged for review.
type Conflict struct {
	ID      int64     `json:"id"`
	Kind    string    `json:"kind"`
	Member  string    `json:"member_id"`
	Store   string    `json:"store"`
	Deltas  []string  `json:"delta_ids"`
	Amount  int64     `json:"amount"` // points overdrawn, or the number of extra uses
	Detail  string    `json:"detail"`
	At      time.Time `json:"at"`
	Flagged bool      `json:"flagged"`
}

// Lease states.
const (
	LeaseActive  = "active"  // the store may spend it until its TTL
	LeaseEnded   = "ended"   // expired or revoked: no more spending; the unspent part stays reserved until settled
	LeaseSettled = "settled" // the store's spending under it is known; the unspent part went back to the budget
)

// Lease is quota of a budget that a store may spend without asking the hub.
type Lease struct {
	ID        string    `json:"id"`
	Store     string    `json:"store"`
	Budget    string    `json:"budget"`
	Granted   int64     `json:"granted"`
	Consumed  int64     `json:"consumed"`
	State     string    `json:"state"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
	// Reclaiming is quota the hub is taking back from the store (docs/BUDGETS.md, "Rebalancing"):
	// the store was told Granted - Reclaiming, and the hub goes on reserving all of Granted until
	// a later flushed pull of the same session shows that the store has heard.
	Reclaiming int64 `json:"reclaiming,omitempty"`
	// ReclaimSession is the start of the store's session in which it was told its current grant,
	// as the hub recorded it (Hub.Seen); zero when nothing is being reclaimed.
	ReclaimSession time.Time `json:"-"`
	// Wanted is what the store's last pull asked for beyond what the budget could grant it:
	// while a budget's stores want more than is free, idle leases of connected stores are
	// trimmed to their need.
	Wanted int64 `json:"wanted,omitempty"`
}

// PullHead is what a pull reads first (Tx.PullHead), each field as the read named would return
// it.
type PullHead struct {
	Version        int64            // CurrentVersion
	Members        []loyalty.Member // MembersSince(store, cursor, limit)
	Program        loyalty.Program  // Program
	ProgramVersion int64            // the change version Program returns
	Keys           []VersionedKey   // PublicKeys
	Unreceived     bool             // ProgramsUnreceived(store)
	Sent           []SentProgram    // ProgramsSent(store, Program.Version, 1): was the current rule version sent?
	Store          StoreInfo        // StoreInfo(store)
	Leases         []Lease          // Leases(store)
}

// ReadPullHead is Tx.PullHead made of the reads it stands for: the reference for adapters, and
// their implementation where a read costs no round trip (SQLite).
func ReadPullHead(ctx context.Context, tx Tx, store string, cursor int64, limit int) (PullHead, error) {
	var h PullHead
	var err error
	if h.Version, err = tx.CurrentVersion(ctx); err != nil {
		return h, err
	}
	if h.Members, err = tx.MembersSince(ctx, store, cursor, limit); err != nil {
		return h, err
	}
	if h.Program, h.ProgramVersion, err = tx.Program(ctx); err != nil {
		return h, err
	}
	if h.Keys, err = tx.PublicKeys(ctx); err != nil {
		return h, err
	}
	if h.Unreceived, err = tx.ProgramsUnreceived(ctx, store); err != nil {
		return h, err
	}
	if h.Sent, err = tx.ProgramsSent(ctx, store, h.Program.Version, 1); err != nil {
		return h, err
	}
	if h.Store, err = tx.StoreInfo(ctx, store); err != nil {
		return h, err
	}
	h.Leases, err = tx.Leases(ctx, store)
	return h, err
}

// BudgetFigures is what sizing a store's lease of a budget reads (Tx.BudgetFigures).
type BudgetFigures struct {
	Spent       int64        // Tx.BudgetSpent
	Outstanding int64        // Tx.Outstanding
	Largest     int64        // Tx.LargestCharge
	Demand      []DemandHour // the store's, Tx.Demand
	Watched     time.Time    // Tx.Watched for the store; zero: not watched yet
}

// ReadBudgetFigures is Tx.BudgetFigures made of the reads it stands for, one budget after the
// other: the reference for adapters, and their implementation where a read costs no round trip
// (SQLite).
func ReadBudgetFigures(ctx context.Context, tx Tx, store string, budgets []string, since time.Time) (map[string]BudgetFigures, error) {
	out := make(map[string]BudgetFigures, len(budgets))
	for _, b := range budgets {
		var f BudgetFigures
		var err error
		if f.Spent, err = tx.BudgetSpent(ctx, b); err != nil {
			return nil, err
		}
		if f.Outstanding, err = tx.Outstanding(ctx, b); err != nil {
			return nil, err
		}
		if f.Largest, err = tx.LargestCharge(ctx, b, since); err != nil {
			return nil, err
		}
		if f.Demand, err = tx.Demand(ctx, store, b, since); err != nil {
			return nil, err
		}
		if f.Watched, err = tx.Watched(ctx, store, b); loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			f.Watched, err = time.Time{}, nil
		}
		if err != nil {
			return nil, err
		}
		out[b] = f
	}
	return out, nil
}

// DemandHour is what a store's leases of a budget were charged in one hour.
type DemandHour struct {
	Hour   time.Time // the start of the hour, UTC
	Amount int64
}

// Told is the quota the hub last told the store it may spend: Granted less what is being
// reclaimed.
func (l Lease) Told() int64 { return l.Granted - l.Reclaiming }

// Outstanding is the quota still reserved for the store.
func (l Lease) Outstanding() int64 {
	if l.State == LeaseSettled {
		return 0
	}
	return max(l.Granted-l.Consumed, 0)
}

// LeaseEvent is one ledgered change of a lease.
type LeaseEvent struct {
	Lease  string    `json:"lease"`
	Store  string    `json:"store"`
	Budget string    `json:"budget"`
	Kind   string    `json:"kind"` // grant, refill, reclaim, expire, revoke, settle, writeoff, restore
	Amount int64     `json:"amount"`
	At     time.Time `json:"at"`
}

// EpochInfo is the hub database's epoch, and, if it was restored from a backup, when it was
// restored and when the backup was taken (zero: never restored).
type EpochInfo struct {
	Epoch      int64
	RestoredAt time.Time
	BackupAt   time.Time
	// ReplacedAt is when loyalty restore replaced this database with a restored one (zero:
	// never). A hub refuses to start on it: its stores would split their changes between the two.
	ReplacedAt time.Time
}

// StoredKey is a QR signing key as the hub stores it: the public half in clear, the private seed
// sealed under the hub's key-encryption key (internal/seal), so that a copy of the database alone
// cannot sign a token.
type StoredKey struct {
	ID       string
	Public   ed25519.PublicKey
	Sealed   []byte
	NotAfter time.Time
}

// VersionedKey is a public key and the change version it was last changed at.
type VersionedKey struct {
	qr.PublicKey
	Version int64
}

// AccessTx stores the HTTP API's keys and the audit trail of admin changes (apikeys.go, audit.go).
type AccessTx interface {
	// InsertAPIKey returns EDUPLICATE if the id or the hash is taken.
	InsertAPIKey(ctx context.Context, k APIKey) error
	// APIKey returns a key by id.
	APIKey(ctx context.Context, id string) (APIKey, error)
	// APIKeyByHash returns the key whose secret has this hash (revoked keys too).
	APIKeyByHash(ctx context.Context, hash string) (APIKey, error)
	// APIKeys returns every key, oldest first.
	APIKeys(ctx context.Context) ([]APIKey, error)
	// RevokeAPIKey sets a key's revocation time.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) error
	// InsertAudit appends an entry to the audit trail; its Seq is assigned.
	InsertAudit(ctx context.Context, e AuditEntry) error
	// Audit returns up to q.Limit audit entries that match q, newest first.
	Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
	// EndSession records that the dashboard session id was signed out; its cookie would be
	// valid until until. It forgets the sessions ended whose cookies have expired by now.
	EndSession(ctx context.Context, id string, until, now time.Time) error
	// SessionEnded reports whether the dashboard session id was signed out.
	SessionEnded(ctx context.Context, id string) (bool, error)
}
