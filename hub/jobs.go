// Background jobs the hub runs on a schedule: tier requalification and points expiry (birthday
// points are in birthday.go, lease expiry in leases.go).
//
// Both jobs are incremental. Every member carries a Schedule, indexed: when their tier must next
// be reviewed (ReviewAt) and the earliest time some of their points may expire (ExpireAt). The
// hub keeps it as it applies deltas (applier.memberState), and a program change that alters the
// tiers or the expiry rule sets it for everyone at once (SetProgram). A run visits only the
// members that are due, in batches of JobOptions.Batch members, one write transaction per batch:
// the batch is claimed, handled and given its members' next times in that transaction, so a run
// that stops between batches (a crash, the hub's shutdown) loses nothing, the next run goes on
// from there, and a member handled once is not due again until its next time.
//
// Exactly once across several hub processes. A batch is claimed by reading it (MembersDue) in
// the write transaction that handles it and gives its members their next times. On SQLite that
// transaction is the only writer (BEGIN IMMEDIATE): a second process's batch, in the next write
// transaction, finds those members with their new times. Expiry also reads, in the transaction
// that writes it, the balance it expires, so a member is never expired twice. A backend with
// concurrent writers must keep two runs from both handling a member: hub/postgres runs every
// write transaction SERIALIZABLE, so of two runs that claim the same members one is refused
// (40001) and run again, when they are no longer due; claiming with SELECT … ORDER BY review_at
// LIMIT n FOR UPDATE SKIP LOCKED would let concurrent runs take disjoint batches instead of
// retrying. At READ COMMITTED the row locks would be required, and the balances read under them.

package hub

import (
	"context"
	"encoding/base64"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// DefaultJobBatch is how many members a job handles per write transaction: large enough that a
// commit's fsync is shared by many members, small enough that a push, which waits for the single
// writer, is held up by one batch at most (some milliseconds; tens on a slow, busy machine).
const DefaultJobBatch = 500

// JobOptions tune one run of a job.
type JobOptions struct {
	Batch int // members per write transaction (0: DefaultJobBatch)
	// OnBatch, if set, is called after each committed batch with the number of members it
	// visited (for metrics and tests).
	OnBatch func(visited int)
}

// JobRun is what one run of a job did.
type JobRun struct {
	Visited int // members that were due and were looked at
	Changed int // tiers changed (first placements in the entry tier not counted), or members whose points expired
	Batches int // write transactions committed
	// Reread counts the members whose reads were made in their batch's write transaction
	// rather than ahead of it (runJob): read ahead and changed since, not read ahead (their
	// times moved meanwhile), or a whole batch whose read ahead failed or was under another
	// program.
	Reread int
}

// Requalify recomputes the tier of every member who is due for a review (Schedule.ReviewAt), so
// members whose rolling or calendar-year total fell below their tier's threshold are downgraded
// even without new activity. The hub runs it periodically; it returns how many tiers changed.
func (h *Hub) Requalify(ctx context.Context) (int, error) {
	r, err := h.RequalifyWith(ctx, JobOptions{})
	return r.Changed, err
}

// RequalifyWith is Requalify with options, and says what the run did.
func (h *Hub) RequalifyWith(ctx context.Context, o JobOptions) (JobRun, error) {
	return runJob(ctx, h, o, jobSpec[Qualification]{name: JobTiers, read: readQualifying, batch: h.requalifyBatch})
}

// readQualifying reads the qualifying totals of members for the tier window at now; nothing
// without tiers.
func readQualifying(ctx context.Context, tx Tx, p *loyalty.Program, members []string, now time.Time) (map[string]Qualification, error) {
	if p.Tiers == nil || len(p.Tiers.Tiers) == 0 || len(members) == 0 {
		return nil, nil
	}
	from, to := p.Tiers.WindowBounds(now)
	return tx.QualifyingOf(ctx, members, p.Tiers.Basis, from, to)
}

// requalifyBatch computes the tier and the next review of the due members, at now, from their
// qualifying totals quals; a member whose tier changed is stamped with a new version, so that
// agents learn it.
func (h *Hub) requalifyBatch(ctx context.Context, tx Tx, p *loyalty.Program, due []DueMember, quals map[string]Qualification, now time.Time) (int, error) {
	a := h.newJobApplier(tx, len(due))
	a.clock, a.cur, a.quals = now, p, quals
	us := make([]MemberUpdate, 0, len(due))
	var stamp []int // the updates of members whose tier changed
	changed := 0
	for _, d := range due {
		a.seed(d)
		tier, u, err := a.memberState(ctx, d.ID)
		if err != nil {
			return 0, err
		}
		u.Member, u.Pos = d.ID, d.Pos
		if tier != d.Tier {
			if d.Tier != "" {
				changed++ // not the first placement in the entry tier
			}
			u.Set |= FieldBalance
			u.Balance = d.Balance
			stamp = append(stamp, len(us))
		}
		us = append(us, u)
	}
	if err := stampVersions(ctx, tx, us, stamp); err != nil {
		return 0, err
	}
	return changed, a.finishJob(ctx, us)
}

// stampVersions gives the updates us[i], for i in stamp, new change versions, in order: agents
// must learn those members' changes.
func stampVersions(ctx context.Context, tx Tx, us []MemberUpdate, stamp []int) error {
	if len(stamp) == 0 {
		return nil
	}
	v, err := tx.NextVersions(ctx, len(stamp))
	if err != nil {
		return err
	}
	for k, i := range stamp {
		us[i].Version = v + int64(k)
	}
	return nil
}

func dueIDs(due []DueMember) []string {
	ids := make([]string, len(due))
	for i, d := range due {
		ids[i] = d.ID
	}
	return ids
}

// seed gives the applier a member as a job read them, so that it does not read them again. A
// job changes no punch card: the member's counts are neither read nor written (memberState finds
// none on either side, and writes none).
func (a *applier) seed(d DueMember) {
	a.members[d.ID] = loyalty.Member{ID: d.ID, Tier: d.Tier, Balance: d.Balance}
	a.balances[d.ID] = d.Balance
	a.schedules[d.ID] = d.Schedule
}

// newJobApplier returns an applier for a job's batch of n members, its maps sized for them. The
// deltas the batch ledgers (tier changes, expiries) go into the ledger together when the batch
// ends (finishJob), a few statements for the batch, as a pushed batch's do (batch.go).
func (h *Hub) newJobApplier(tx Tx, n int) *applier {
	a := h.newApplier(tx)
	a.members, a.balances, a.schedules = make(map[string]loyalty.Member, n), make(map[string]int64, n), make(map[string]Schedule, n)
	a.deferInserts()
	return a
}

// finishJob ends a job's batch: its deltas, then its events, then its members' new state.
func (a *applier) finishJob(ctx context.Context, us []MemberUpdate) error {
	if err := a.flush(ctx); err != nil {
		return err
	}
	if err := a.flushEvents(ctx); err != nil {
		return err
	}
	return a.tx.UpdateMembers(ctx, us)
}

// jobSpec is a job as runJob runs it: which schedule it follows (JobTiers, JobExpiry), what it
// reads of its due members beyond their rows (read: by member, under the program p, for a run at
// now), and what it does with a batch of them given what read returned for them.
type jobSpec[T any] struct {
	name  string
	read  func(ctx context.Context, tx Tx, p *loyalty.Program, members []string, now time.Time) (map[string]T, error)
	batch func(ctx context.Context, tx Tx, p *loyalty.Program, due []DueMember, data map[string]T, now time.Time) (changed int, err error)
}

// ahead is a batch read ahead of its write transaction, in a read snapshot: the members due, what
// the job reads of them, and what the reads depend on: the program (by the change version it was
// published at) and the ledger (its head).
type ahead[T any] struct {
	due     []DueMember
	data    map[string]T
	program int64
	head    int64
	err     error
}

// runJob runs job: batches of due members, each handled in its own write transaction, until
// none is due at the run's start. It stops between batches when ctx ends.
//
// The reads a batch needs beyond its members' rows (qualifying totals, lots) are most of its
// time, so each batch is read ahead, in a read snapshot, while the batch before it is written:
// those reads run beside the writer, on the other core, instead of holding it. The write
// transaction claims its batch (MembersDue, in it) and uses what was read ahead only where it
// still holds: for a member that was read ahead, under the same program, and has no delta after
// the snapshot's ledger head. Those reads depend on the program and the ledger alone, and a
// delta committed after the snapshot has a later ledger position (Tx.LedgerHead); every other
// member of the batch is read again in the write transaction.
func runJob[T any](ctx context.Context, h *Hub, o JobOptions, job jobSpec[T]) (JobRun, error) {
	limit := o.Batch
	if limit <= 0 {
		limit = DefaultJobBatch
	}
	now := h.Now()
	var run JobRun
	// The cursor only moves forward: a member handled in this run is not met again in it, even
	// if their next time were still due.
	var cursor DueCursor
	pending := readAhead(ctx, h, job, cursor, limit, now)
	defer func() {
		if pending != nil {
			pending.drop()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return run, err
		}
		pre := pending.wait()
		pending = nil
		if len(pre.due) == limit && pre.err == nil {
			pending = readAhead(ctx, h, job, dueCursor(job.name, pre.due[len(pre.due)-1]), limit, now)
		}
		if h.jobHooks.ahead != nil {
			h.jobHooks.ahead()
		}
		var n, changed, reread int
		var last DueCursor
		err := h.update(ctx, func(tx Tx) error {
			n, changed, reread = 0, 0, 0
			p, pv, err := tx.Program(ctx)
			if err != nil {
				return err
			}
			due, err := tx.MembersDue(ctx, job.name, now, cursor, limit)
			if err != nil || len(due) == 0 {
				return err
			}
			n, last = len(due), dueCursor(job.name, due[len(due)-1])
			var data map[string]T
			if data, reread, err = batchReads(ctx, tx, job, &p, pv, due, pre, now); err != nil {
				return err
			}
			changed, err = job.batch(ctx, tx, &p, due, data, now)
			return err
		})
		if err != nil {
			return run, err
		}
		if n == 0 {
			return run, nil
		}
		run.Visited += n
		run.Changed += changed
		run.Reread += reread
		run.Batches++
		cursor = last
		if o.OnBatch != nil {
			o.OnBatch(n)
		}
		if n < limit {
			return run, nil
		}
		if pending == nil || !dueCursor(job.name, pre.due[len(pre.due)-1]).same(last) {
			// No read ahead starts where this batch ended (members' times moved meanwhile, or
			// the last read ahead failed or came back short): start one there.
			if pending != nil {
				pending.drop()
			}
			pending = readAhead(ctx, h, job, cursor, limit, now)
		}
	}
}

// reading is a batch being read ahead (readAhead).
type reading[T any] struct {
	out    <-chan ahead[T]
	cancel context.CancelFunc
}

// readAhead reads, in a read snapshot and in a goroutine of its own, the batch of members due
// after cursor and what job reads of them.
func readAhead[T any](ctx context.Context, h *Hub, job jobSpec[T], cursor DueCursor, limit int, now time.Time) *reading[T] {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan ahead[T], 1)
	go func() {
		var r ahead[T]
		r.err = h.Store.View(ctx, func(tx Tx) error {
			p, pv, err := tx.Program(ctx)
			if err != nil {
				return err
			}
			if r.head, err = tx.LedgerHead(ctx); err != nil {
				return err
			}
			if r.due, err = tx.MembersDue(ctx, job.name, now, cursor, limit); err != nil {
				return err
			}
			r.program = pv
			r.data, err = job.read(ctx, tx, &p, dueIDs(r.due), now)
			return err
		})
		out <- r
	}()
	return &reading[T]{out: out, cancel: cancel}
}

// wait returns the batch read.
func (r *reading[T]) wait() ahead[T] {
	a := <-r.out
	r.cancel()
	return a
}

// drop stops a read no longer wanted, and waits for its goroutine to end.
func (r *reading[T]) drop() {
	r.cancel()
	<-r.out
}

// batchReads returns what job reads of the members of due, in tx under program p (published at
// change version pv): what pre read ahead of them where it still holds (runJob), and the rest
// read now. It also returns how many members it read now.
func batchReads[T any](ctx context.Context, tx Tx, job jobSpec[T], p *loyalty.Program, pv int64, due []DueMember, pre ahead[T], now time.Time) (map[string]T, int, error) {
	ids := dueIDs(due)
	if pre.err != nil || pre.program != pv {
		data, err := job.read(ctx, tx, p, ids, now)
		return data, len(ids), err
	}
	touched, err := tx.MembersAfter(ctx, pre.head, ids)
	if err != nil {
		return nil, 0, err
	}
	stale := make(map[string]bool, len(touched))
	for _, m := range touched {
		stale[m] = true
	}
	read := make(map[string]bool, len(pre.due))
	for _, d := range pre.due {
		read[d.ID] = true
	}
	data := make(map[string]T, len(due))
	var again []string
	for _, id := range ids {
		if !read[id] || stale[id] {
			again = append(again, id)
			continue
		}
		if v, ok := pre.data[id]; ok {
			data[id] = v
		}
	}
	if len(again) == 0 {
		return data, 0, nil
	}
	reread, err := job.read(ctx, tx, p, again, now)
	if err != nil {
		return nil, 0, err
	}
	maps.Copy(data, reread)
	return data, len(again), nil
}

// dueCursor is the cursor after d, read as due for job.
func dueCursor(job string, d DueMember) DueCursor {
	if job == JobTiers {
		return DueCursor{At: d.ReviewAt, Pos: d.Pos, ID: d.ID}
	}
	return DueCursor{At: d.ExpireAt, Pos: d.Pos, ID: d.ID}
}

// same reports whether c and d are the same place.
func (c DueCursor) same(d DueCursor) bool {
	return c.At.Equal(d.At) && c.Pos == d.Pos && c.ID == d.ID
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
// returns how many members lost points. Running it again expires nothing more. Without an
// expiry rule it does nothing. Only members due for a look (Schedule.ExpireAt) are visited.
// What expires within expiry.remind_days is read apart: ExpiringSoonPage, RemindExpiring.
func (h *Hub) ExpirePoints(ctx context.Context) (expired int, err error) {
	r, err := h.ExpirePointsWith(ctx, JobOptions{})
	return r.Changed, err
}

// ExpirePointsWith is ExpirePoints with options, and says what the run did; it does not list
// what expires soon.
func (h *Hub) ExpirePointsWith(ctx context.Context, o JobOptions) (JobRun, error) {
	return runJob(ctx, h, o, jobSpec[[]loyalty.Lot]{name: JobExpiry, read: readLots, batch: h.expireBatch})
}

// readLots reads the lots of members that may still expire at now, in mode lot; nothing in
// other modes.
func readLots(ctx context.Context, tx Tx, p *loyalty.Program, members []string, now time.Time) (map[string][]loyalty.Lot, error) {
	if p.Expiry == nil || p.Expiry.Mode != loyalty.ExpiryLot || len(members) == 0 {
		return nil, nil
	}
	return tx.LotsOf(ctx, members, p.Expiry.LotsSince(now))
}

// expireBatch expires what is due of the due members' points at now, and sets when each must be
// looked at next: the exact time their points, or their oldest held lot's, expire. In mode lot,
// lots are the members' lots (readLots).
func (h *Hub) expireBatch(ctx context.Context, tx Tx, p *loyalty.Program, due []DueMember, lots map[string][]loyalty.Lot, now time.Time) (int, error) {
	a := h.newJobApplier(tx, len(due))
	a.clock, a.cur = now, p
	us := make([]MemberUpdate, 0, len(due))
	var stamp []int // the updates of members whose points expired
	for _, d := range due {
		u := MemberUpdate{Member: d.ID, Pos: d.Pos, Schedule: d.Schedule}
		u.ExpireAt = time.Time{}
		var points int64
		switch {
		case p.Expiry == nil || d.Balance <= 0:
		case p.Expiry.Mode == loyalty.ExpiryLot:
			var upcoming []loyalty.ExpiringPoints
			points, upcoming = p.Expiry.LotExpiry(lots[d.ID], d.Balance, now)
			if len(upcoming) > 0 {
				u.ExpireAt = upcoming[0].At
			}
		case !d.LastActive.IsZero():
			if at := p.Expiry.ExpiresAt(d.LastActive); now.Before(at) {
				u.ExpireAt = at
			} else {
				points = d.Balance
			}
		}
		u.Set = u.Schedule.changed(d.Schedule)
		if points > 0 {
			if err := a.expire(ctx, p, d.ID, points, now); err != nil {
				return 0, err
			}
			u.ExpiredAt = now.UTC().Truncate(time.Millisecond) // as the ledger's event_at
			u.Set |= FieldBalance | FieldExpiredAt
			u.Balance = d.Balance - points
			stamp = append(stamp, len(us))
			a.emit(EventPointsExpired, map[string]any{"member_id": d.ID, "points": -points, "balance": u.Balance,
				"occurred_at": now.UTC().Truncate(time.Millisecond)}, d.ID, now.UTC().Format(time.RFC3339Nano))
		}
		us = append(us, u)
	}
	if err := stampVersions(ctx, tx, us, stamp); err != nil {
		return 0, err
	}
	return len(stamp), a.finishJob(ctx, us)
}

// expire ledgers the expiry of points of a member with expire deltas of the hub (a delta carries
// at most MaxPoints; a balance may hold more); the caller writes the member's balance, which it
// read in this transaction. These deltas are the hub's own: none of the checks of a store's
// delta applies, no budget counts them, and they change no tier. They wait for the batch's insert
// (finishJob); an id in the ledger already fails it, and with it the batch.
func (a *applier) expire(ctx context.Context, p *loyalty.Program, member string, points int64, now time.Time) error {
	for rest := points; rest > 0; {
		n := min(rest, loyalty.MaxPoints)
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: member, Kind: loyalty.KindExpire,
			Points: -n, RuleVersion: p.Version, OccurredAt: now, Reason: ReasonExpired}
		d.Normalize()
		if _, _, err := a.insert(ctx, d, d.Hash()); err != nil {
			return err
		}
		rest -= n
	}
	return nil
}

// MaxExpiringPage is the most members one page of ExpiringSoonPage holds.
const MaxExpiringPage = 1000

// expiringScan is the most due members one page of ExpiringSoonPage reads: right after a
// program change every member with points is due, and most have nothing within remind_days, so
// a page stops after this many with a cursor, even if it holds fewer members than its limit.
const expiringScan = 10 * MaxExpiringPage

// ExpiringPage is a page of what expires soon (ExpiringSoonPage). Next, when not "", is where
// the next page starts: more members may follow.
type ExpiringPage struct {
	Expiring []Expiring `json:"expiring"`
	Next     string     `json:"next,omitempty"`
}

// ExpiringSoonPage lists what expires within the program's remind_days for up to limit members
// (1 to MaxExpiringPage), starting after the cursor after ("": from the start). It only reads,
// in one snapshot, and only the members whose earliest expiry (Schedule.ExpireAt) falls before
// the reminder horizon, in the order of that time (members of the same time in an order of the
// storage's), a member's lots oldest first. A page reads at most expiringScan due members, so
// it may hold fewer than limit, even none, and still have a Next. A member whose schedule the
// expiry job moves between two pages may be missed or listed twice; a reader who wants every
// reminder reads from the start again after the next run.
func (h *Hub) ExpiringSoonPage(ctx context.Context, after string, limit int) (ExpiringPage, error) {
	if limit < 1 || limit > MaxExpiringPage {
		return ExpiringPage{}, loyalty.Errorf(loyalty.EINVALID, "limit must be a whole number from 1 to %d", MaxExpiringPage)
	}
	from, err := parseExpiringCursor(after)
	if err != nil {
		return ExpiringPage{}, err
	}
	var page ExpiringPage
	err = h.Store.View(ctx, func(tx Tx) error {
		page = ExpiringPage{Expiring: []Expiring{}}
		p, _, err := tx.Program(ctx)
		if err != nil || p.Expiry == nil {
			return err
		}
		if from.ID != "" {
			// A cursor names the last member of its page; members are never deleted.
			if _, err := tx.Member(ctx, from.ID); loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
				return errExpiringCursor
			} else if err != nil {
				return err
			}
		}
		now := h.Now()
		horizon := now.AddDate(0, 0, p.Expiry.RemindDays)
		scan := expiringScan
		if h.scanLimit > 0 {
			scan = h.scanLimit
		}
		cursor, members, read := from, 0, 0
		for {
			// At least 100 at a time: a page of one member may read thousands without a reminder.
			batch := min(scan-read, max(limit, 100))
			due, err := tx.MembersDue(ctx, JobExpiry, horizon, cursor, batch)
			if err != nil {
				return err
			}
			var lots map[string][]loyalty.Lot
			if p.Expiry.Mode == loyalty.ExpiryLot && len(due) > 0 {
				if lots, err = tx.LotsOf(ctx, dueIDs(due), p.Expiry.LotsSince(now)); err != nil {
					return err
				}
			}
			for _, d := range due {
				cursor = dueCursor(JobExpiry, d)
				if soon := expiringOf(p.Expiry, d, lots[d.ID], now); len(soon) > 0 {
					page.Expiring = append(page.Expiring, soon...)
					members++
				}
				if read++; members == limit || read == scan {
					page.Next = expiringCursor(cursor)
					return nil
				}
			}
			if len(due) < batch {
				return nil // no one else is due
			}
		}
	})
	return page, err
}

// expiringOf is what of member d's points expires within x.RemindDays of now: in mode lot, each
// earned lot still holding points (lots, as LotsOf read them), oldest first; in mode
// inactivity, the whole balance.
func expiringOf(x *loyalty.Expiry, d DueMember, lots []loyalty.Lot, now time.Time) []Expiring {
	if d.Balance <= 0 {
		return nil
	}
	var soon []Expiring
	if x.Mode == loyalty.ExpiryLot {
		_, upcoming := x.LotExpiry(lots, d.Balance, now)
		for _, u := range upcoming {
			if now.Before(u.At.AddDate(0, 0, -x.RemindDays)) {
				break // oldest first: the rest are further away
			}
			soon = append(soon, Expiring{Member: d.ID, Balance: d.Balance, Points: u.Points, ExpiresAt: u.At})
		}
		return soon
	}
	if d.LastActive.IsZero() {
		return nil
	}
	if at := x.ExpiresAt(d.LastActive); now.Before(at) && !now.Before(at.AddDate(0, 0, -x.RemindDays)) {
		soon = append(soon, Expiring{Member: d.ID, Balance: d.Balance, Points: d.Balance, ExpiresAt: at})
	}
	return soon
}

// errExpiringCursor refuses an after that no page of ExpiringSoonPage gave.
var errExpiringCursor = loyalty.Errorf(loyalty.EINVALID, "after is not a cursor GET /v1/expiring gave: pass the previous page's next as it is, or leave after out to start from the first page")

// expiringCursor is the text of the cursor after c: its time and member id, not the storage's
// position (on SQLite the rowid, which MembersDue finds again from the id).
func expiringCursor(c DueCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(unixms.Of(c.At), 10) + ":" + c.ID))
}

// parseExpiringCursor reads an expiringCursor: "" is the start.
func parseExpiringCursor(s string) (DueCursor, error) {
	if s == "" {
		return DueCursor{}, nil
	}
	if len(s) > 1024 { // a member id of MaxIDLength characters and a time fit
		return DueCursor{}, errExpiringCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return DueCursor{}, errExpiringCursor
	}
	at, id, ok := strings.Cut(string(b), ":")
	ms, err := strconv.ParseInt(at, 10, 64)
	c := DueCursor{At: unixms.Time(ms), ID: id}
	if !ok || err != nil || id == "" || expiringCursor(c) != s {
		return DueCursor{}, errExpiringCursor // not as a page writes it
	}
	return c, nil
}
