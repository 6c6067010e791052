// Package sqlite is the agent's local replica and outbox on SQLite (modernc.org/sqlite, pure Go),
// in WAL mode with synchronous FULL so that an approved sale survives a crash or a power cut.
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

	// Now is the clock that stamps when leases arrive; a lease is usable for its TTL from then.
	// time.Now carries a monotonic reading, so wall-clock jumps do not stretch a lease.
	Now       func() time.Time
	Logger    *slog.Logger // says when the hub was restored (Epoch)
	mu        gosync.Mutex
	leaseSeen map[string]time.Time // in memory only: after a restart, leases wait for renewal
}

var _ agent.Store = (*Store)(nil)
var _ agent.Tx = (*tx)(nil)

// Open opens or creates the replica at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, sqlitedb.Options{})
}

// OpenWith is Open with options (sqlitedb.Options.NoSync, for the simulator).
func OpenWith(ctx context.Context, path string, opts sqlitedb.Options) (*Store, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	db, err := sqlitedb.OpenWith(ctx, path, sub, opts)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, Now: time.Now, Logger: slog.Default(), leaseSeen: map[string]time.Time{}}, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.db.Path }

// Close implements agent.Store.
func (s *Store) Close() error { return s.db.Close() }

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

func (t *tx) Member(ctx context.Context, id string) (loyalty.Member, error) {
	m := loyalty.Member{ID: id}
	var punches string
	err := t.QueryRowContext(ctx, `SELECT email, name, tier, country, punches, balance, version FROM members WHERE id = ?`, id).
		Scan(&m.Email, &m.Name, &m.Tier, &m.Country, &punches, &m.Balance, &m.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return m, loyalty.Errorf(loyalty.ENOTFOUND, "member %s is not in this store's replica", id)
	} else if err == nil && punches != "" {
		err = json.Unmarshal([]byte(punches), &m.Punches)
	}
	return m, err
}

func (t *tx) PendingPunches(ctx context.Context, member string) (map[string]int64, error) {
	rows, err := t.QueryContext(ctx, `SELECT p.card, SUM(p.units) FROM delta_punches p JOIN deltas d ON d.id = p.delta_id
		WHERE d.member = ? AND d.state = 'pending' GROUP BY p.card`, member)
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
	// Fill an empty cache only: this transaction's snapshot may be older than a program that
	// ApplyChanges has just committed and cached.
	t.s.program.CompareAndSwap(nil, &p)
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
	_, err = t.ExecContext(ctx, `INSERT INTO deltas (id, member, kind, points, order_id, reverses, voucher, body, created_at, offline, reward)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.ID, d.Member, d.Kind, d.Points, d.OrderID, d.Reverses, d.Voucher, string(b),
		at.UnixMilli(), offline, d.Reward)
	if err != nil {
		return err
	}
	for _, u := range use {
		if _, err := t.ExecContext(ctx, `INSERT INTO lease_use (delta_id, lease, budget, amount) VALUES (?, ?, ?, ?)`,
			d.ID, u.Lease, u.Budget, u.Amount); err != nil {
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

func (t *tx) Leases(ctx context.Context) ([]agent.Lease, error) {
	rows, err := t.QueryContext(ctx, `SELECT id, budget, granted, state, ttl_ms FROM leases ORDER BY budget, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []agent.Lease
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	for rows.Next() {
		var l agent.Lease
		var ttl int64
		if err := rows.Scan(&l.ID, &l.Budget, &l.Granted, &l.State, &ttl); err != nil {
			return nil, err
		}
		if seen, ok := t.s.leaseSeen[l.ID]; ok {
			l.ValidUntil = seen.Add(time.Duration(ttl) * time.Millisecond)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func (t *tx) LeaseSpent(ctx context.Context, lease string) (int64, error) {
	var n int64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(SUM(u.amount), 0) FROM lease_use u JOIN deltas d ON d.id = u.delta_id
		WHERE u.lease = ? AND d.state != 'rejected'`, lease).Scan(&n)
	return n, err
}

func (t *tx) LeaseUses(ctx context.Context, delta string) ([]agent.LeaseUse, error) {
	rows, err := t.QueryContext(ctx, `SELECT lease, budget, amount FROM lease_use WHERE delta_id = ? ORDER BY budget`, delta)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []agent.LeaseUse
	for rows.Next() {
		var u agent.LeaseUse
		if err := rows.Scan(&u.Lease, &u.Budget, &u.Amount); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func (t *tx) OfflineRedemptions(ctx context.Context, member, reward string, since time.Time) (int64, error) {
	var n int64
	err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM deltas WHERE member = ? AND kind = 'redeem' AND reward = ? AND offline = 1
		AND state != 'rejected' AND created_at >= ?`, member, reward, since.UnixMilli()).Scan(&n)
	return n, err
}

func (t *tx) OrderDeltas(ctx context.Context, orderID string) ([]loyalty.Delta, error) {
	rows, err := t.QueryContext(ctx, `SELECT body FROM deltas WHERE order_id = ? AND state != 'rejected' ORDER BY seq`, orderID)
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

func (t *tx) ReversalOf(ctx context.Context, id string) (string, error) {
	return t.single(ctx, `SELECT id FROM deltas WHERE reverses = ? AND state != 'rejected' LIMIT 1`, id)
}

func (t *tx) VoucherUse(ctx context.Context, voucher string) (string, error) {
	return t.single(ctx, `SELECT d.order_id FROM deltas d WHERE d.voucher = ? AND d.kind = 'redeem' AND d.state != 'rejected'
		AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.state != 'rejected') LIMIT 1`, voucher)
}

func (t *tx) PosResult(ctx context.Context, op, orderID string) (string, []byte, bool, error) {
	var hash, resp string
	err := t.QueryRowContext(ctx, `SELECT hash, response FROM pos_requests WHERE op = ? AND order_id = ?`, op, orderID).Scan(&hash, &resp)
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
		(SELECT COUNT(*) FROM members)`).Scan(&s.Outbox, &s.Rejected, &s.Members)
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
	rows, err := t.QueryContext(ctx, `SELECT body, code, message FROM deltas WHERE state = 'rejected' ORDER BY seq DESC LIMIT ?`, limit)
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

// setMember stores a member if version is newer than the replica's copy. An ack carries only
// a balance (details false), which must not wipe the name and tier the feed delivered; the feed's
// details win at an equal version (an ack may have stored the bare balance of that version first).
func (t *tx) setMember(ctx context.Context, m loyalty.Member, details bool) error {
	q := `INSERT INTO members (id, email, name, tier, country, punches, balance, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name, tier = excluded.tier,
			country = excluded.country, punches = excluded.punches, balance = excluded.balance, version = excluded.version
		WHERE excluded.version >= members.version`
	if !details {
		q = `INSERT INTO members (id, email, name, tier, country, punches, balance, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET balance = excluded.balance, version = excluded.version
		WHERE excluded.version > members.version`
	}
	punches := ""
	if len(m.Punches) > 0 {
		b, _ := json.Marshal(m.Punches)
		punches = string(b)
	}
	_, err := t.ExecContext(ctx, q, m.ID, m.Email, m.Name, m.Tier, m.Country, punches, m.Balance, m.Version)
	return err
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
	rows, err := s.db.R.QueryContext(ctx, `SELECT seq, body FROM deltas WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []lsync.Outgoing
	for rows.Next() {
		var o lsync.Outgoing
		var body string
		if err := rows.Scan(&o.Seq, &body); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &o.Delta); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// PendingCount implements lsync.ClientHandler.
func (s *Store) PendingCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.R.QueryRowContext(ctx, `SELECT COUNT(*) FROM deltas WHERE state = 'pending'`).Scan(&n)
	return n, err
}

// ApplyAck implements lsync.ClientHandler: acknowledged deltas leave the outbox and balances
// move to the hub's, in one transaction, so a delta is never counted both as pending and in the
// synced balance.
func (s *Store) ApplyAck(ctx context.Context, ack *lsync.Ack) error {
	return s.db.Update(ctx, func(t *sqlitedb.Tx) error {
		x := &tx{t, s}
		for _, r := range ack.Results {
			var err error
			switch r.Status {
			case lsync.StatusApplied, lsync.StatusDuplicate:
				_, err = t.ExecContext(ctx, `UPDATE deltas SET state = 'acked', hub_seq = ? WHERE id = ? AND state = 'pending'`, r.Seq, r.DeltaID)
			case lsync.StatusRejected:
				_, err = t.ExecContext(ctx, `UPDATE deltas SET state = 'rejected', code = ?, message = ? WHERE id = ? AND state = 'pending'`,
					r.Code, r.Message, r.DeltaID)
			}
			if err != nil {
				return err
			}
		}
		for _, b := range ack.Balances {
			if err := x.setMember(ctx, loyalty.Member{ID: b.Member, Balance: b.Balance, Version: b.Version}, false); err != nil {
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
func (s *Store) Epoch(ctx context.Context, epoch int64, since time.Time) error {
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
			if _, err := t.ExecContext(ctx, `UPDATE members SET balance = balance - (SELECT COALESCE(SUM(d.points), 0) FROM deltas d
				WHERE d.member = members.id AND d.state = 'acked' AND d.created_at >= ?)`, since.UnixMilli()); err != nil {
				return err
			}
			res, err := t.ExecContext(ctx, `UPDATE deltas SET state = 'pending', hub_seq = 0 WHERE state = 'acked' AND created_at >= ?`, since.UnixMilli())
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
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
			s.Logger.Warn("the hub was restored from a backup: sending again what it acknowledged since then, and syncing from the start",
				slog.Int64("deltas", n), slog.Time("since", since))
		}
		return x.setMeta(ctx, "hub_epoch", now)
	})
}

// ApplyChanges implements lsync.ClientHandler.
func (s *Store) ApplyChanges(ctx context.Context, ch *lsync.Changes) error {
	var newer bool
	err := s.db.Update(ctx, func(t *sqlitedb.Tx) error {
		x := &tx{t, s}
		for _, m := range ch.Members {
			if err := x.setMember(ctx, m, true); err != nil {
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
				newer = true
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
		if ch.Leases != nil {
			if _, err := t.ExecContext(ctx, `DELETE FROM leases`); err != nil {
				return err
			}
			for _, l := range ch.Leases {
				if _, err := t.ExecContext(ctx, `INSERT INTO leases (id, budget, granted, state, ttl_ms) VALUES (?, ?, ?, ?, ?)`,
					l.ID, l.Budget, l.Granted, l.State, l.TTLMillis); err != nil {
					return err
				}
			}
		}
		return x.setMeta(ctx, "cursor", strconv.FormatInt(ch.Cursor, 10))
	})
	if err == nil && newer {
		s.program.Store(ch.Program)
	}
	if err == nil && ch.Leases != nil {
		now := s.Now()
		s.mu.Lock()
		clear(s.leaseSeen)
		for _, l := range ch.Leases {
			s.leaseSeen[l.ID] = now
		}
		s.mu.Unlock()
	}
	return err
}

// ApplyMember implements lsync.ClientHandler.
func (s *Store) ApplyMember(ctx context.Context, m *loyalty.Member) error {
	return s.db.Update(ctx, func(t *sqlitedb.Tx) error { return (&tx{t, s}).setMember(ctx, *m, true) })
}

func (t *tx) Earned(ctx context.Context, member string, since time.Time) (int64, error) {
	var n int64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(SUM(points), 0) FROM deltas d WHERE member = ? AND state != 'rejected'
		AND created_at >= ? AND (kind = 'earn' OR kind = 'reverse' AND points < 0 AND EXISTS
			(SELECT 1 FROM deltas o WHERE o.id = d.reverses AND o.kind = 'earn'))`, member, since.UnixMilli()).Scan(&n)
	return n, err
}
