// Package sqlite is the agent's local replica and outbox on SQLite (modernc.org/sqlite, pure Go),
// in WAL mode with synchronous FULL so that an approved sale survives a crash or a power cut.
//
// Writes use group commit (sqlitedb.Options.GroupCommit): concurrent POS calls share one commit,
// so one fsync, each in its own savepoint. A transaction function may therefore be rolled back
// alone, or with its whole group after it returned nil; so it changes nothing outside the replica
// itself, and what it must change (the cached program, a log line) it changes in
// Tx.AfterCommit. The agent-time anchor (clk) is the exception that needs none: it is computed
// from a checkpoint of an earlier process, which no transaction of this one has written before
// the anchor exists, so it is right whether or not the transaction that computed it commits.
package sqlite

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"strconv"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store implements agent.Store on a SQLite file.
type Store struct {
	db      *sqlitedb.DB
	program atomic.Pointer[loyalty.Program] // the synced program, parsed once; replaced after the commit that changes it

	// Now is the clock that stamps when leases arrive (a lease is usable for its TTL from then) and
	// when the store last heard from the hub. time.Now carries a monotonic reading, so wall-clock
	// jumps do not stretch a lease while the agent runs; across restarts, see clock.
	Now    func() time.Time
	Logger *slog.Logger // says when the hub was restored (Epoch)

	mu   gosync.Mutex
	clk  *clock        // nil until this process first needs the agent time
	stop chan struct{} // ends the clock keeper and the WAL's eraser
	done chan struct{} // closed when the clock keeper has ended; nil: none was started
	once gosync.Once   // Close's last checkpoint

	erase      chan struct{}    // an erased copy was committed: empty the WAL (eraser; buffered, so requests coalesce)
	eraserOnce gosync.Once      // starts the eraser at the first request
	eraser     gosync.WaitGroup // the eraser, waited for by Close
}

// The agent time: the timeline on which lease deadlines and the last time the store heard from
// the hub are kept in the replica, so that they survive a restart and no clock change extends
// them. Within a process it advances with Now's monotonic reading, whatever the wall clock does.
// The replica keeps a checkpoint, the agent time and the wall clock at one moment (clock_at_ms,
// clock_wall_ms); a new process starts the agent time at the checkpoint plus the wall-clock time
// since it, or plus nothing if the wall clock is now behind it. So a clock set back never gives
// time back, and one set forward while the agent was stopped only makes it look longer. The
// checkpoint is written at every change-feed page and every clockEvery by a keeper, each time
// clockSlack ahead (so a crash between two writes gives nothing back either), and exactly when
// the replica is closed.
const (
	clockEvery = 10 * time.Second
	clockSlack = 3 * clockEvery
)

// clock anchors the agent time in this process.
type clock struct {
	start time.Time // Now() when this process first needed the agent time
	at    time.Time // the agent time then (a wall-clock reading, without a monotonic one)
	real  bool      // start has a monotonic reading: Now runs by itself (the machine's clock), so a keeper checkpoints it
}

// agentTime returns Now() and the agent time then.
func (t *tx) agentTime(ctx context.Context) (now, at time.Time, err error) {
	s := t.s
	now = s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clk == nil {
		// Round(0) strips a monotonic reading: only the machine's clock (time.Now) has one.
		c := &clock{start: now, at: now.Round(0), real: now != now.Round(0)}
		ckAt, err := t.metaInt(ctx, "clock_at_ms")
		if err != nil {
			return now, now, err
		}
		ckWall, err := t.metaInt(ctx, "clock_wall_ms")
		if err != nil {
			return now, now, err
		}
		if ckAt != 0 {
			c.at = time.UnixMilli(ckAt).Add(max(0, now.Round(0).Sub(time.UnixMilli(ckWall))))
		}
		s.clk = c
		if c.real {
			s.done = make(chan struct{})
			go s.keepClock(c)
		}
	}
	return now, s.clk.at.Add(now.Sub(s.clk.start)), nil
}

func (t *tx) AgentTime(ctx context.Context) (time.Time, error) {
	_, at, err := t.agentTime(ctx)
	return at, err
}

// checkpoint records the agent time at now (slack ahead), in t.
func (t *tx) checkpoint(ctx context.Context, now, at time.Time, slack time.Duration) error {
	if err := t.setMeta(ctx, "clock_at_ms", strconv.FormatInt(at.Add(slack).UnixMilli(), 10)); err != nil {
		return err
	}
	return t.setMeta(ctx, "clock_wall_ms", strconv.FormatInt(now.Round(0).Add(slack).UnixMilli(), 10))
}

// keepClock writes a checkpoint every clockEvery until stop. It runs while Now carries a
// monotonic reading: the machine's clock, or the end-to-end tests' shared clock, which keeps it
// (tests and the simulator that inject a clock of their own call Checkpoint instead).
func (s *Store) keepClock(c *clock) {
	defer close(s.done)
	tick := time.NewTicker(clockEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		err := s.db.Update(context.Background(), func(t *sqlitedb.Tx) error {
			now := s.Now()
			return (&tx{t, s}).checkpoint(context.Background(), now, c.at.Add(now.Sub(c.start)), clockSlack)
		})
		if err != nil {
			s.Logger.Warn("could not record the clock checkpoint in the replica", slog.Any("err", err))
		}
	}
}

// Checkpoint records the agent time at Now(), as the keeper does every clockEvery (which it
// does only on the machine's clock: a test or a simulator with its own clock calls this).
func (s *Store) Checkpoint(ctx context.Context) error {
	return s.db.Update(ctx, func(t *sqlitedb.Tx) error {
		x := &tx{t, s}
		now, at, err := x.agentTime(ctx)
		if err != nil {
			return err
		}
		return x.checkpoint(ctx, now, at, clockSlack)
	})
}

var _ agent.Store = (*Store)(nil)
var _ agent.Tx = (*tx)(nil)

// Open opens or creates the replica at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, sqlitedb.Options{})
}

// OpenWith is Open with options (sqlitedb.Options.NoSync, for the simulator). Group commit is
// always on.
func OpenWith(ctx context.Context, path string, opts sqlitedb.Options) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	opts.GroupCommit = true
	db, err := sqlitedb.OpenWith(ctx, path, sub, opts)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, Now: time.Now, Logger: slog.Default(), stop: make(chan struct{}), erase: make(chan struct{}, 1)}, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.db.Path }

// Close implements agent.Store. It records the agent time exactly first, so that a restart
// counts the time from now on and no more.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.eraser.Wait()
		s.mu.Lock()
		anchored, done := s.clk != nil, s.done
		s.mu.Unlock()
		if done != nil {
			<-done
		}
		if !anchored {
			return
		}
		err := s.db.Update(context.Background(), func(t *sqlitedb.Tx) error {
			x := &tx{t, s}
			now, at, err := x.agentTime(context.Background())
			if err != nil {
				return err
			}
			return x.checkpoint(context.Background(), now, at, 0)
		})
		if err != nil {
			s.Logger.Warn("could not record the clock checkpoint in the replica", slog.Any("err", err))
		}
	})
	return s.db.Close()
}

// Update implements agent.Store.
func (s *Store) Update(ctx context.Context, fn func(agent.Tx) error) error {
	return s.db.Update(ctx, func(t *sqlitedb.Tx) error { return fn(&tx{t, s}) })
}

// View implements agent.Store.
func (s *Store) View(ctx context.Context, fn func(agent.Tx) error) error {
	return s.db.View(ctx, func(t *sqlitedb.Tx) error { return fn(&tx{t, s}) })
}

type tx struct {
	*sqlitedb.Tx
	s *Store
}

func (t *tx) TimeZone(ctx context.Context) (string, error) { return t.meta(ctx, "tz") }

func (t *tx) ClockOffset(ctx context.Context) (int64, error) {
	v, err := t.meta(ctx, "clock_offset_ms")
	if err != nil || v == "" {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

func (t *tx) SetClockOffset(ctx context.Context, ms int64) error {
	return t.setMeta(ctx, "clock_offset_ms", strconv.FormatInt(ms, 10))
}

// metaInt returns a number kept in meta, 0 if there is none.
func (t *tx) metaInt(ctx context.Context, key string) (int64, error) {
	v, err := t.meta(ctx, key)
	if err != nil || v == "" {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// OfflineFor implements agent.Tx: the agent time since the last complete pull.
func (t *tx) OfflineFor(ctx context.Context) (time.Duration, error) {
	heard, err := t.metaInt(ctx, "heard_at_ms")
	if err != nil || heard == 0 {
		return math.MaxInt64, err
	}
	_, at, err := t.agentTime(ctx)
	return max(0, at.Sub(time.UnixMilli(heard))), err
}

func (t *tx) meta(ctx context.Context, key string) (string, error) {
	var v string
	err := t.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (t *tx) setMeta(ctx context.Context, key, value string) error {
	_, err := t.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// Member implements agent.Tx: the synced copy, plus this store's acknowledged deltas the copy
// does not include yet (the hub applied them at a newer version of the member than the copy's).
func (t *tx) Member(ctx context.Context, id string) (loyalty.Member, error) {
	m := loyalty.Member{ID: id}
	var punches string
	var found bool
	var n, points int64
	// The copy and the acknowledged deltas in one statement: POS calls read members in their
	// transactions, whose functions group commit runs one after the other.
	err := t.QueryRowContext(ctx, `SELECT m.id IS NOT NULL, COALESCE(m.email, ''), COALESCE(m.name, ''), COALESCE(m.tier, ''),
		COALESCE(m.country, ''), COALESCE(m.punches, ''), COALESCE(m.balance, 0), COALESCE(m.version, 0), COALESCE(m.erased, 0),
		(SELECT COUNT(*) FROM deltas WHERE member = ?1 AND hub_version > 0),
		(SELECT COALESCE(SUM(points), 0) FROM deltas WHERE member = ?1 AND hub_version > 0)
		FROM (SELECT 1) LEFT JOIN members m ON m.id = ?1`, id).
		Scan(&found, &m.Email, &m.Name, &m.Tier, &m.Country, &punches, &m.Balance, &m.Version, &m.Erased, &n, &points)
	if err == nil && punches != "" {
		err = json.Unmarshal([]byte(punches), &m.Punches)
	}
	if err != nil {
		return m, err
	}
	if n == 0 && !found {
		return m, loyalty.Errorf(loyalty.ENOTFOUND, "member %s is not in this store's replica", id)
	}
	if n == 0 {
		return m, nil
	}
	m.Balance += points
	add, err := t.punchSums(ctx, `SELECT p.card, SUM(p.units) FROM delta_punches p JOIN deltas d ON d.id = p.delta_id
		WHERE d.member = ? AND d.hub_version > 0 GROUP BY p.card`, id)
	if err != nil {
		return m, err
	}
	m.Punches = addPunches(m.Punches, add, 1)
	return m, nil
}

// addPunches returns punch counts with sign × add added, leaving out cards at zero.
func addPunches(punches, add map[string]int64, sign int64) map[string]int64 {
	if len(add) == 0 {
		return punches
	}
	out := maps.Clone(punches)
	if out == nil {
		out = map[string]int64{}
	}
	for card, n := range add {
		if out[card] += sign * n; out[card] == 0 {
			delete(out, card)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// punchSums runs a query of (card, units) rows with one argument.
func (t *tx) punchSums(ctx context.Context, q string, arg any) (map[string]int64, error) {
	rows, err := t.QueryContext(ctx, q, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var card string
		var n int64
		if err := rows.Scan(&card, &n); err != nil {
			return nil, err
		}
		out[card] = n
	}
	return out, rows.Err()
}

func (t *tx) PendingPunches(ctx context.Context, member string) (map[string]int64, error) {
	return t.punchSums(ctx, `SELECT p.card, SUM(p.units) FROM delta_punches p JOIN deltas d ON d.id = p.delta_id
		WHERE d.member = ? AND d.state = 'pending' GROUP BY p.card`, member)
}

func (t *tx) PendingPoints(ctx context.Context, member string) (int64, error) {
	var sum int64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(SUM(points), 0) FROM deltas WHERE member = ? AND state = 'pending'`, member).Scan(&sum)
	return sum, err
}

func (t *tx) Program(ctx context.Context) (loyalty.Program, error) {
	if p := t.s.program.Load(); p != nil {
		return *p, nil
	}
	var p loyalty.Program
	v, err := t.meta(ctx, "program")
	if err != nil {
		return p, err
	}
	if v == "" {
		return p, loyalty.Errorf(loyalty.EUNAVAILABLE, "this store has not received the loyalty program from the hub yet; check its connection")
	}
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		return p, err
	}
	// Fill an empty cache only, and once the transaction has committed: its snapshot may be
	// older than a program that ApplyChanges has just committed and cached, and a write
	// transaction may see a program written before it in its group that never commits.
	t.AfterCommit(func() { t.s.program.CompareAndSwap(nil, &p) })
	return p, nil
}

func (t *tx) Keys(ctx context.Context) ([]qr.PublicKey, error) {
	rows, err := t.QueryContext(ctx, `SELECT kid, public_key, not_after FROM keys`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []qr.PublicKey
	for rows.Next() {
		var k qr.PublicKey
		var pub []byte
		var notAfter int64
		if err := rows.Scan(&k.ID, &pub, &notAfter); err != nil {
			return nil, err
		}
		k.Key = ed25519.PublicKey(pub)
		if notAfter != 0 {
			k.NotAfter = time.UnixMilli(notAfter).UTC()
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func (t *tx) InsertDelta(ctx context.Context, d loyalty.Delta, at time.Time, use []agent.LeaseUse, offline bool) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	_, err = t.ExecContext(ctx, `INSERT INTO deltas (id, member, kind, points, order_id, reverses, voucher, body, created_at, offline, reward, event_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.ID, d.Member, d.Kind, d.Points, d.OrderID, d.Reverses, d.Voucher, string(b),
		at.UnixMilli(), offline, d.Reward, d.EventTime().UnixMilli())
	if err != nil {
		return err
	}
	for _, u := range use {
		if _, err := t.ExecContext(ctx, `INSERT INTO lease_use (delta_id, lease, budget, amount, spared, carried, order_rule) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			d.ID, u.Lease, u.Budget, u.Amount, u.Spared, u.Carried, string(u.Rule)); err != nil {
			return err
		}
	}
	for card, n := range d.Punches {
		if _, err := t.ExecContext(ctx, `INSERT INTO delta_punches (delta_id, card, units) VALUES (?, ?, ?)`, d.ID, card, n); err != nil {
			return err
		}
	}
	return nil
}

// Leases implements agent.Tx. A lease's deadline is kept in agent time; ValidUntil is that
// deadline on Now's clock (with its monotonic reading, while the agent runs on the machine's).
func (t *tx) Leases(ctx context.Context) ([]agent.Lease, error) {
	now, at, err := t.agentTime(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := t.QueryContext(ctx, `SELECT id, budget, granted, state, deadline_ms FROM leases ORDER BY budget, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []agent.Lease
	for rows.Next() {
		var l agent.Lease
		var deadline int64
		if err := rows.Scan(&l.ID, &l.Budget, &l.Granted, &l.State, &deadline); err != nil {
			return nil, err
		}
		if deadline != 0 {
			l.ValidUntil = now.Add(time.UnixMilli(deadline).Sub(at))
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func (t *tx) LeaseSpent(ctx context.Context, lease string) (int64, error) {
	var n int64
	err := t.QueryRowContext(ctx, `SELECT (SELECT COALESCE(SUM(u.amount), 0) FROM lease_use u JOIN deltas d ON d.id = u.delta_id
		WHERE u.lease = ?1 AND d.state != 'rejected') + `+prunedSpend, lease).Scan(&n)
	return n, err
}

func (t *tx) LeaseUses(ctx context.Context, delta string) ([]agent.LeaseUse, error) {
	rows, err := t.QueryContext(ctx, `SELECT lease, budget, amount, spared, carried, order_rule FROM lease_use WHERE delta_id = ? ORDER BY budget`, delta)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []agent.LeaseUse
	for rows.Next() {
		var u agent.LeaseUse
		if err := rows.Scan(&u.Lease, &u.Budget, &u.Amount, &u.Spared, &u.Carried, &u.Rule); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func (t *tx) SetLeaseUse(ctx context.Context, delta string, u agent.LeaseUse) error {
	_, err := t.ExecContext(ctx, `INSERT INTO lease_use (delta_id, lease, budget, amount, spared, carried, order_rule) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (delta_id, budget) DO UPDATE SET lease = excluded.lease, amount = excluded.amount, spared = excluded.spared,
			carried = excluded.carried, order_rule = excluded.order_rule`, delta, u.Lease, u.Budget, u.Amount, u.Spared, u.Carried, string(u.Rule))
	return err
}

func (t *tx) OrdersToResplit(ctx context.Context, limit int) ([]string, error) {
	rows, err := t.QueryContext(ctx, `SELECT order_id FROM order_resplit ORDER BY order_id LIMIT ?+0`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (t *tx) OrderResplit(ctx context.Context, order string) error {
	_, err := t.ExecContext(ctx, `DELETE FROM order_resplit WHERE order_id = ?`, order)
	return err
}

func (t *tx) OfflineRedemptions(ctx context.Context, member, reward string, since time.Time) (int64, error) {
	var n int64
	err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM deltas WHERE member = ? AND kind = 'redeem' AND reward = ? AND offline = 1
		AND state != 'rejected' AND created_at >= ?`, member, reward, since.UnixMilli()).Scan(&n)
	return n, err
}

func (t *tx) OrderDeltas(ctx context.Context, orderID string) ([]loyalty.Delta, error) {
	return t.bodies(ctx, `SELECT body FROM deltas WHERE order_id = ? AND state != 'rejected' ORDER BY seq`, orderID)
}

// bodies reads the deltas whose JSON bodies q selects.
func (t *tx) bodies(ctx context.Context, q string, args ...any) ([]loyalty.Delta, error) {
	rows, err := t.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []loyalty.Delta
	for rows.Next() {
		var body string
		var d loyalty.Delta
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (t *tx) single(ctx context.Context, q string, arg string) (string, error) {
	var v string
	err := t.QueryRowContext(ctx, q, arg).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (t *tx) Reversals(ctx context.Context, id string) ([]loyalty.Delta, error) {
	return t.bodies(ctx, `SELECT body FROM deltas WHERE reverses = ? AND state != 'rejected' ORDER BY seq`, id)
}

func (t *tx) Presence(ctx context.Context, member string) (string, error) {
	// Newest first, so a member who came back lately is found at once; rare (a race with an
	// eviction), so no index.
	return t.single(ctx, `SELECT body ->> '$.presence' FROM deltas WHERE member = ? AND body ->> '$.presence' != ''
		ORDER BY seq DESC LIMIT 1`, member)
}

func (t *tx) VoucherUse(ctx context.Context, voucher string) (string, error) {
	return t.single(ctx, `SELECT d.order_id FROM deltas d WHERE d.voucher = ? AND d.kind = 'redeem' AND d.state != 'rejected'
		AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.state != 'rejected') LIMIT 1`, voucher)
}

func (t *tx) PosResult(ctx context.Context, op, orderID string) (string, []byte, bool, error) {
	return t.posResult(ctx, `SELECT hash, response FROM pos_requests WHERE op = ? AND order_id = ?`, op, orderID)
}

func (t *tx) LegacyPosResult(ctx context.Context, op, key string) (string, []byte, bool, error) {
	return t.posResult(ctx, `SELECT hash, response FROM pos_requests WHERE op = ? AND order_id = ? AND legacy = 1`, op, key)
}

func (t *tx) posResult(ctx context.Context, q, op, key string) (string, []byte, bool, error) {
	var hash, resp string
	err := t.QueryRowContext(ctx, q, op, key).Scan(&hash, &resp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, false, nil
	}
	return hash, []byte(resp), err == nil, err
}

func (t *tx) SavePosResult(ctx context.Context, op, orderID, hash string, response []byte, at time.Time) error {
	_, err := t.ExecContext(ctx, `INSERT INTO pos_requests (op, order_id, hash, response, at) VALUES (?, ?, ?, ?, ?)`,
		op, orderID, hash, string(response), at.UnixMilli())
	return err
}

func (t *tx) Stats(ctx context.Context) (agent.Stats, error) {
	var s agent.Stats
	err := t.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM deltas WHERE state = 'pending'),
		(SELECT COUNT(*) FROM deltas WHERE state = 'rejected'),
		(SELECT COUNT(*) FROM members),
		(SELECT COUNT(*) FROM unsubscribes)`).Scan(&s.Outbox, &s.Rejected, &s.Members, &s.Unsubscribing)
	if err != nil {
		return s, err
	}
	if s.Cursor, err = t.cursor(ctx); err != nil {
		return s, err
	}
	if p, err := t.Program(ctx); err == nil {
		s.ProgramVersion = p.Version
	}
	return s, nil
}

func (t *tx) Rejected(ctx context.Context, limit int) ([]agent.RejectedDelta, error) {
	rows, err := t.QueryContext(ctx, `SELECT body, code, message FROM deltas WHERE state = 'rejected' ORDER BY seq DESC LIMIT ?+0`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []agent.RejectedDelta{}
	for rows.Next() {
		var r agent.RejectedDelta
		var body string
		if err := rows.Scan(&body, &r.Code, &r.Message); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &r.Delta); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (t *tx) cursor(ctx context.Context) (int64, error) {
	v, err := t.meta(ctx, "cursor")
	if err != nil || v == "" {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// setMember stores a whole copy of a member from the hub (the change feed, a subscription) if
// its version is not older than the replica's copy, and stops counting on top of the copy the
// acknowledged deltas it includes. Acks never write a copy: they carry a balance but not the
// member's punch cards or tier, so a copy of their version would be wrong until the feed came.
// (Replicas written before that may hold an ack's bare balance at the feed's version: the feed
// wins at an equal version.)
//
// An erased member's copy (no email, no name) overwrites a copy that still holds them with
// secure_delete on, so that the old bytes do not stay in the page's free space, and once it is
// committed the WAL, whose older frames still hold them, is emptied into the file, in the
// background (eraseWAL). A copy erased already (every later copy of the member is) costs nothing
// more.
func (t *tx) setMember(ctx context.Context, m loyalty.Member) error {
	if m.Erased {
		var personal bool
		err := t.QueryRowContext(ctx, `SELECT email <> '' OR name <> '' FROM members WHERE id = ? AND version <= ?`, m.ID, m.Version).Scan(&personal)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if personal {
			restore, err := t.SecureDelete(ctx)
			if err != nil {
				return err
			}
			defer restore()
			t.AfterCommit(t.s.eraseWAL)
		}
	}
	punches := ""
	if len(m.Punches) > 0 {
		b, _ := json.Marshal(m.Punches)
		punches = string(b)
	}
	_, err := t.ExecContext(ctx, `INSERT INTO members (id, email, name, tier, country, punches, balance, version, erased)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name, tier = excluded.tier,
			country = excluded.country, punches = excluded.punches, balance = excluded.balance, version = excluded.version,
			erased = excluded.erased
		WHERE excluded.version >= members.version`, m.ID, m.Email, m.Name, m.Tier, m.Country, punches, m.Balance, m.Version, m.Erased)
	if err != nil {
		return err
	}
	_, err = t.ExecContext(ctx, `UPDATE deltas SET hub_version = 0 WHERE member = ? AND hub_version > 0
		AND hub_version <= (SELECT version FROM members WHERE id = ?)`, m.ID, m.ID)
	return err
}

// eraseWAL asks the eraser to empty the WAL, after a commit that erased a member's copy. It does
// not wait: the tills' next writes go on meanwhile. Requests made while the eraser is at work
// are one more run.
func (s *Store) eraseWAL() {
	s.eraserOnce.Do(func() {
		s.eraser.Add(1)
		go s.runEraser()
	})
	select {
	case s.erase <- struct{}{}:
	default: // one is waiting already
	}
}

// runEraser empties the WAL into the file for each request until Close, waiting at most
// sqlitedb.EraseWait for the readers that still use it; a reader that holds it longer leaves the
// erased bytes in the WAL until they are written over, which the log says.
func (s *Store) runEraser() {
	defer s.eraser.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.erase:
		}
		ctx, cancel := context.WithTimeout(context.Background(), sqlitedb.EraseWait)
		if err := s.db.Checkpoint(ctx); err != nil {
			s.Logger.Warn("a member's erasure reached the replica, but the WAL still holds pages from before it, until they are written over",
				slog.Any("err", err))
		}
		cancel()
	}
}

// --- lsync.ClientHandler ---

// Cursor implements lsync.ClientHandler.
func (s *Store) Cursor(ctx context.Context) (int64, error) {
	var c int64
	err := s.db.View(ctx, func(t *sqlitedb.Tx) error {
		var err error
		c, err = (&tx{t, s}).cursor(ctx)
		return err
	})
	return c, err
}

// Pending implements lsync.ClientHandler.
func (s *Store) Pending(ctx context.Context, after int64, limit int) ([]lsync.Outgoing, error) {
	var out []lsync.Outgoing
	err := s.db.View(ctx, func(t *sqlitedb.Tx) error { // a transaction's statements are prepared once
		out = nil
		rows, err := t.QueryContext(ctx, `SELECT seq, body FROM deltas WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?+0`, after, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o lsync.Outgoing
			var body string
			if err := rows.Scan(&o.Seq, &body); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(body), &o.Delta); err != nil {
				return err
			}
			out = append(out, o)
		}
		return rows.Err()
	})
	return out, err
}

// PendingCount implements lsync.ClientHandler.
func (s *Store) PendingCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.View(ctx, func(t *sqlitedb.Tx) error {
		return t.QueryRowContext(ctx, `SELECT COUNT(*) FROM deltas WHERE state = 'pending'`).Scan(&n)
	})
	return n, err
}

// ApplyAck implements lsync.ClientHandler: acknowledged deltas leave the outbox, in one
// transaction. A delta the hub applied (or had applied) counts on top of the member's synced copy
// until a copy that includes it arrives: the ack's balance for the member names the version of the
// member that includes every delta of the push (the hub stamps it after applying them), and a copy
// of that version or newer includes the delta, its points and its punch card units alike. Without
// a balance for its member in the ack, the hub does not count the member as this store's (it
// tells the balances of the members a store holds, and of no others): it keeps no copy here
// current, so a copy the replica has is dropped rather than shown without the delta, and the
// member's next scan fetches them again (docs/PROTOCOL.md, "Replica scope").
func (s *Store) ApplyAck(ctx context.Context, ack *lsync.Ack) error {
	versions := make(map[string]int64, len(ack.Balances))
	for _, b := range ack.Balances {
		versions[b.Member] = max(versions[b.Member], b.Version) // a push applied one delta at a time names a member more than once
	}
	// Lazy: an acknowledgement a crash of the machine loses is had again, as duplicates, when the
	// deltas are pushed again; a later durable commit makes it durable too.
	return s.db.Update(sqlitedb.Lazy(ctx), func(t *sqlitedb.Tx) error {
		for _, r := range ack.Results {
			var err error
			switch r.Status {
			case lsync.StatusApplied, lsync.StatusDuplicate:
				var member string
				var have int64
				err = t.QueryRowContext(ctx, `SELECT d.member, COALESCE(m.version, 0) FROM deltas d LEFT JOIN members m ON m.id = d.member
					WHERE d.id = ? AND d.state = 'pending'`, r.DeltaID).Scan(&member, &have)
				if errors.Is(err, sql.ErrNoRows) {
					continue // acknowledged before, or not this store's
				} else if err != nil {
					return err
				}
				v, told := versions[member]
				if !told && have > 0 {
					if _, err := t.ExecContext(ctx, `DELETE FROM members WHERE id = ?`, member); err != nil {
						return err
					}
				}
				if v <= have {
					v = 0 // the copy includes it already
				}
				_, err = t.ExecContext(ctx, `UPDATE deltas SET state = 'acked', hub_seq = ?, hub_version = ? WHERE id = ? AND state = 'pending'`,
					r.Seq, v, r.DeltaID)
			case lsync.StatusRejected:
				_, err = t.ExecContext(ctx, `UPDATE deltas SET state = 'rejected', code = ?, message = ? WHERE id = ? AND state = 'pending'`,
					r.Code, r.Message, r.DeltaID)
				if err == nil { // its order's other deltas were counted with it: split it again (agent.resplit)
					_, err = t.ExecContext(ctx, `INSERT INTO order_resplit (order_id) SELECT order_id FROM deltas d
						WHERE d.id = ? AND d.order_id != '' AND EXISTS (SELECT 1 FROM lease_use u WHERE u.delta_id IN
							(SELECT id FROM deltas o WHERE o.order_id = d.order_id)) ON CONFLICT DO NOTHING`, r.DeltaID)
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Epoch implements lsync.ClientHandler. When the hub's epoch is not the one this replica last
// saw, the hub was restored from a backup and may have lost what it acknowledged since: every
// delta made since since goes back in the outbox (the hub applies what it lost and answers
// duplicate for the rest), the members' synced balances drop by those deltas so that what a
// cashier sees (synced + pending) does not change, the change feed starts over, and the leases of
// the old epoch are dropped (the hub grants new ones at the next pull), and the members and the
// program the restored hub sends are taken whatever their versions. One transaction.
// resentSince is whether an acknowledged delta d goes back in the outbox after a restore (Epoch):
// its time on the hub's clock (?2), its occurred_at and clock offset, or its time on the
// agent's clock (?1), is since the restore's resend time.
const resentSince = `(d.created_at >= ?1 OR CAST(ROUND((julianday(json_extract(d.body, '$.occurred_at')) - 2440587.5) * 86400000) AS INTEGER)
	+ COALESCE(json_extract(d.body, '$.clock_offset_ms'), 0) >= ?2)`

func (s *Store) Epoch(ctx context.Context, epoch int64, since time.Time, offset time.Duration) error {
	local := since.Add(-offset) // the agent's clock
	return s.db.Update(ctx, func(t *sqlitedb.Tx) error {
		x := &tx{t, s}
		seen, err := x.meta(ctx, "hub_epoch")
		if err != nil {
			return err
		}
		now := strconv.FormatInt(epoch, 10)
		if seen == now {
			return nil
		}
		if seen != "" {
			// What goes back in the outbox leaves the synced copies that include it (an
			// acknowledged delta with hub_version 0), its points and its punch card units.
			if _, err := t.ExecContext(ctx, `UPDATE members SET balance = balance - (SELECT COALESCE(SUM(d.points), 0) FROM deltas d
				WHERE d.member = members.id AND d.state = 'acked' AND d.hub_version = 0 AND `+resentSince+`)`, local.UnixMilli(), since.UnixMilli()); err != nil {
				return err
			}
			if err := x.takeBackPunches(ctx, local, since); err != nil {
				return err
			}
			res, err := t.ExecContext(ctx, `UPDATE deltas AS d SET state = 'pending', hub_seq = 0, hub_version = 0 WHERE d.state = 'acked' AND `+resentSince,
				local.UnixMilli(), since.UnixMilli())
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			// Acknowledged deltas older than that are in the backup, but the copies here may not
			// include them yet: they count until the restored hub's first copy of their member,
			// whose version numbers start over (every copy's version is 0 below).
			if _, err := t.ExecContext(ctx, `UPDATE deltas SET hub_version = 1 WHERE hub_version > 0`); err != nil {
				return err
			}
			if _, err := t.ExecContext(ctx, `DELETE FROM leases`); err != nil {
				return err
			}
			// The restored hub's versions start over from the backup's: take its members and
			// its program whatever their version numbers.
			if _, err := t.ExecContext(ctx, `UPDATE members SET version = 0`); err != nil {
				return err
			}
			if err := x.setMeta(ctx, "program_any", "1"); err != nil {
				return err
			}
			if err := x.setMeta(ctx, "cursor", "0"); err != nil {
				return err
			}
			t.AfterCommit(func() {
				s.Logger.Warn("the hub was restored from a backup: sending again what it acknowledged since then, and syncing from the start",
					slog.Int64("deltas", n), slog.Time("since", since))
			})
		}
		return x.setMeta(ctx, "hub_epoch", now)
	})
}

// takeBackPunches takes the punch card units of the acknowledged deltas resent since since
// (resentSince: local on the agent's clock, since on the hub's), which the synced copies include,
// out of those copies.
func (t *tx) takeBackPunches(ctx context.Context, local, since time.Time) error {
	rows, err := t.QueryContext(ctx, `SELECT d.member, p.card, SUM(p.units) FROM delta_punches p JOIN deltas d ON d.id = p.delta_id
		WHERE d.state = 'acked' AND d.hub_version = 0 AND `+resentSince+` GROUP BY d.member, p.card`, local.UnixMilli(), since.UnixMilli())
	if err != nil {
		return err
	}
	take := map[string]map[string]int64{}
	for rows.Next() {
		var member, card string
		var n int64
		if err := rows.Scan(&member, &card, &n); err != nil {
			rows.Close()
			return err
		}
		if take[member] == nil {
			take[member] = map[string]int64{}
		}
		take[member][card] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for member, cards := range take {
		var punches string
		err := t.QueryRowContext(ctx, `SELECT punches FROM members WHERE id = ?`, member).Scan(&punches)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return err
		}
		var have map[string]int64
		if punches != "" {
			if err := json.Unmarshal([]byte(punches), &have); err != nil {
				return err
			}
		}
		punches = ""
		if left := addPunches(have, cards, -1); len(left) > 0 {
			b, _ := json.Marshal(left)
			punches = string(b)
		}
		if _, err := t.ExecContext(ctx, `UPDATE members SET punches = ? WHERE id = ?`, punches, member); err != nil {
			return err
		}
	}
	return nil
}

// ApplyChanges implements lsync.ClientHandler. The last page of a pull is the store hearing from
// the hub (agent.Tx.OfflineFor); the leases it carries run for their TTL from then, in agent time.
func (s *Store) ApplyChanges(ctx context.Context, ch *lsync.Changes) error {
	return s.db.Update(ctx, func(t *sqlitedb.Tx) error {
		x := &tx{t, s}
		for _, m := range ch.Members {
			if err := x.setMember(ctx, m); err != nil {
				return err
			}
		}
		if ch.Program != nil {
			cur, err := x.Program(ctx)
			if err != nil && loyalty.ErrorCode(err) != loyalty.EUNAVAILABLE {
				return err
			}
			anyVersion, err := x.meta(ctx, "program_any") // set when the hub was restored (Epoch)
			if err != nil {
				return err
			}
			if ch.Program.Version > cur.Version || anyVersion != "" {
				b, err := json.Marshal(ch.Program)
				if err != nil {
					return err
				}
				if err := x.setMeta(ctx, "program", string(b)); err != nil {
					return err
				}
				if _, err := t.ExecContext(ctx, `DELETE FROM meta WHERE key = 'program_any'`); err != nil {
					return err
				}
				// Cached once committed, before the writer begins another transaction.
				t.AfterCommit(func() { s.program.Store(ch.Program) })
			}
		}
		for _, k := range ch.Keys {
			var notAfter int64
			if !k.NotAfter.IsZero() {
				notAfter = k.NotAfter.UnixMilli()
			}
			if _, err := t.ExecContext(ctx, `INSERT INTO keys (kid, public_key, not_after) VALUES (?, ?, ?)
				ON CONFLICT (kid) DO UPDATE SET not_after = excluded.not_after`, k.ID, []byte(k.Key), notAfter); err != nil {
				return err
			}
		}
		if ch.TimeZone != "" {
			if err := x.setMeta(ctx, "tz", ch.TimeZone); err != nil {
				return err
			}
		}
		now, at, err := x.agentTime(ctx)
		if err != nil {
			return err
		}
		if ch.Leases != nil {
			if _, err := t.ExecContext(ctx, `DELETE FROM leases`); err != nil {
				return err
			}
			for _, l := range ch.Leases {
				deadline := at.Add(time.Duration(l.TTLMillis) * time.Millisecond).UnixMilli()
				if _, err := t.ExecContext(ctx, `INSERT INTO leases (id, budget, granted, state, ttl_ms, deadline_ms) VALUES (?, ?, ?, ?, ?, ?)`,
					l.ID, l.Budget, l.Granted, l.State, l.TTLMillis, deadline); err != nil {
					return err
				}
			}
		}
		if !ch.More {
			if err := x.setMeta(ctx, "heard_at_ms", strconv.FormatInt(at.UnixMilli(), 10)); err != nil {
				return err
			}
		}
		if err := x.checkpoint(ctx, now, at, clockSlack); err != nil {
			return err
		}
		return x.setMeta(ctx, "cursor", strconv.FormatInt(ch.Cursor, 10))
	})
}

// ApplyMember implements lsync.ClientHandler. The store asked the hub for the member for a POS
// call: the member is seen now (Touch), in the same transaction, so that maintenance cannot
// evict the copy before the call uses it.
func (s *Store) ApplyMember(ctx context.Context, m *loyalty.Member) error {
	// Lazy: a member's copy a crash of the machine loses is had again from the hub.
	return s.db.Update(sqlitedb.Lazy(ctx), func(t *sqlitedb.Tx) error {
		x := &tx{t, s}
		if err := x.setMember(ctx, *m); err != nil {
			return err
		}
		return x.Touch(ctx, m.ID, s.Now())
	})
}

// unsyncedOnly narrows a query on deltas d to those the member's synced copy does not include.
const unsyncedOnly = ` AND (d.state = 'pending' OR d.hub_version > 0)`

// Earned counts, as the hub does, by event time (event_at), and a refund with its sale, by the
// sale's: a refund made the next day gives back room in the sale's period, not in its own.
func (t *tx) Earned(ctx context.Context, member string, since time.Time, unsynced bool) (int64, error) {
	q := `SELECT COALESCE(SUM(d.points), 0) FROM deltas d WHERE d.member = ?1 AND d.state != 'rejected'
		AND (d.kind = 'earn' AND d.event_at >= ?2 OR d.kind = 'reverse' AND d.points < 0 AND EXISTS
			(SELECT 1 FROM deltas o WHERE o.id = d.reverses AND o.kind = 'earn' AND o.event_at >= ?2))`
	if unsynced {
		q += unsyncedOnly
	}
	var n int64
	err := t.QueryRowContext(ctx, q, member, since.UnixMilli()).Scan(&n)
	return n, err
}

func (t *tx) Redemptions(ctx context.Context, member, reward string, since time.Time, unsynced bool) (int64, error) {
	q := `SELECT COUNT(*) FROM deltas d WHERE d.member = ? AND d.kind = 'redeem' AND d.state != 'rejected'
		AND d.event_at >= ? AND d.voucher = '' AND (? = '' OR d.reward = ?)
		AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.state != 'rejected')`
	if !unsynced {
		var n int64
		err := t.QueryRowContext(ctx, q, member, since.UnixMilli(), reward, reward).Scan(&n)
		return n, err
	}
	// What the copy does not include: new redemptions, less the reversals of redemptions it
	// does include (the hub still counts those).
	var n, back int64
	if err := t.QueryRowContext(ctx, q+unsyncedOnly, member, since.UnixMilli(), reward, reward).Scan(&n); err != nil {
		return 0, err
	}
	err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM deltas d JOIN deltas o ON o.id = d.reverses
		WHERE d.member = ? AND d.kind = 'reverse' AND d.state != 'rejected'`+unsyncedOnly+`
		AND o.kind = 'redeem' AND o.state = 'acked' AND o.hub_version = 0 AND o.event_at >= ? AND o.voucher = ''
		AND (? = '' OR o.reward = ?)`, member, since.UnixMilli(), reward, reward).Scan(&back)
	return n - back, err
}
