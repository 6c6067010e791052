// Package sqlite is the hub's embedded storage on SQLite (modernc.org/sqlite, pure Go).
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store implements hub.Store on a SQLite file.
type Store struct {
	db  *sqlitedb.DB
	bus bus // the listeners of Listen
}

var _ hub.Store = (*Store)(nil)
var _ hub.Tx = (*tx)(nil)

// Open opens or creates the hub database at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, sqlitedb.Options{})
}

// CheckpointPages is how many pages (of 4 KiB) the hub's WAL holds before a commit copies them into
// the database file: 64 MiB, where SQLite's default is 4 MiB. Sales to members spread over the
// table write some five pages each, among them pages that every commit writes again (the ledger's
// last pages, the counters, the upper pages of the indexes) and, at a chain's peak, the same
// stores' and members' pages again and again; each is copied into the database once per
// checkpoint, however often the WAL took it. Measured (BenchmarkIngestSmallPushes, docs/
// PERFORMANCE.md "2026-12-06 (2)"): 200 stores pushing single sales went from 3,200-3,800 to
// 5,100-5,400 sales a second; nothing measured got slower.
const CheckpointPages = 16000

// OpenWith is Open with options (sqlitedb.Options.NoSync, for the simulator). Its writer always
// overwrites what it deletes or rewrites, and the pages it frees (sqlitedb.Options.SecureDelete):
// an erasure's statements need nothing more. It keeps SQLite's temporary files in memory
// whatever opts says (sqlitedb.Options.MemoryTemp): a batch's
// inserts into the ledger, whose triggers keep the qualifying totals, would otherwise write a
// statement journal to a file, a system call per page. Its WAL holds CheckpointPages pages unless
// opts says otherwise.
func OpenWith(ctx context.Context, path string, opts sqlitedb.Options) (*Store, error) {
	opts.MemoryTemp = true
	opts.SecureDelete = true
	opts.CacheKiB = 64 << 10
	if opts.CheckpointPages == 0 {
		opts.CheckpointPages = CheckpointPages
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	db, err := sqlitedb.OpenWith(ctx, path, sub, opts)
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Checkpoint copies every page the WAL holds into the database file and empties the WAL
// (wal_checkpoint TRUNCATE), waiting for the readers that still use it, until ctx ends (hub.
// Checkpointer). Otherwise a commit checkpoints once the WAL holds CheckpointPages pages. The hub
// calls it after an erasure; the bench before each part it times, so that each pays for its own
// writes' checkpoint and not for the part before.
func (s *Store) Checkpoint(ctx context.Context) error { return s.db.Checkpoint(ctx) }

// Path returns the database file's path.
func (s *Store) Path() string { return s.db.Path }

// Close implements hub.Store.
func (s *Store) Close() error { return s.db.Close() }

// Update implements hub.Store.
func (s *Store) Update(ctx context.Context, fn func(hub.Tx) error) error {
	if hub.IsBookkeeping(ctx) {
		// A session's row and its store's health need not wait for the disk: a crash of the
		// machine that loses them ends every session anyway, and the next durable commit makes
		// them durable too (sqlitedb.Lazy).
		ctx = sqlitedb.Lazy(ctx)
	}
	return s.db.Update(ctx, func(t *sqlitedb.Tx) error { return fn(&tx{t, &s.bus}) })
}

// View implements hub.Store.
func (s *Store) View(ctx context.Context, fn func(hub.Tx) error) error {
	return s.db.View(ctx, func(t *sqlitedb.Tx) error { return fn(&tx{t, nil}) })
}

type tx struct {
	*sqlitedb.Tx
	bus *bus // where Publish delivers after the commit; nil in a read transaction
}

func notFound(err error, format string, args ...any) error {
	if errors.Is(err, sql.ErrNoRows) {
		return loyalty.Errorf(loyalty.ENOTFOUND, format, args...)
	}
	return err
}

func (t *tx) NextVersion(ctx context.Context) (int64, error) {
	var v int64
	err := t.QueryRowContext(ctx, `UPDATE counters SET value = value + 1 WHERE name = 'version' RETURNING value`).Scan(&v)
	return v, err
}

func (t *tx) NextVersions(ctx context.Context, n int) (int64, error) {
	var v int64
	err := t.QueryRowContext(ctx, `UPDATE counters SET value = value + ? WHERE name = 'version' RETURNING value`, max(n, 1)).Scan(&v)
	return v - int64(max(n, 1)) + 1, err
}

func (t *tx) CurrentVersion(ctx context.Context) (int64, error) {
	var v int64
	err := t.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = 'version'`).Scan(&v)
	return v, err
}

func (t *tx) ChangedStores(ctx context.Context, after, upTo int64, limit int) ([]string, bool, error) {
	var all bool
	if err := t.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM programs WHERE change_version > ?1 AND change_version <= ?2)
		OR EXISTS (SELECT 1 FROM signing_keys WHERE change_version > ?1 AND change_version <= ?2)`, after, upTo).Scan(&all); err != nil || all {
		return nil, all, err
	}
	rows, err := t.QueryContext(ctx, `SELECT s.store FROM members m JOIN member_stores s ON s.member = m.id WHERE m.version > ?1 AND m.version <= ?2
		UNION SELECT id FROM stores WHERE version > ?1 AND version <= ?2 LIMIT ?3+0`, after, upTo, limit+1)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var stores []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, false, err
		}
		stores = append(stores, s)
	}
	if len(stores) > limit {
		return nil, true, rows.Err()
	}
	return stores, false, rows.Err()
}

func (t *tx) MarkStoreChanged(ctx context.Context, store string, version int64) error {
	_, err := t.ExecContext(ctx, `UPDATE stores SET version = ? WHERE id = ?`, version, store)
	return err
}

func (t *tx) InsertStore(ctx context.Context, s hub.StoreInfo) error {
	res, err := t.ExecContext(ctx, `INSERT INTO stores (id, name, token_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		s.ID, s.Name, s.TokenHash, unixms.Of(s.CreatedAt))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.EDUPLICATE, "store %s already exists", s.ID)
	}
	return nil
}

const storeCols = `id, name, token_hash, created_at, connected, last_seen, clock_offset_ms, outbox, tz, flushed_at`

func scanStore(row interface{ Scan(...any) error }) (hub.StoreInfo, error) {
	var s hub.StoreInfo
	var created, seen, flushed int64
	err := row.Scan(&s.ID, &s.Name, &s.TokenHash, &created, &s.Health.Connected, &seen, &s.Health.ClockOffsetMS, &s.Health.Outbox,
		&s.TimeZone, &flushed)
	s.CreatedAt, s.Health.LastSeen, s.FlushedAt = unixms.Time(created), unixms.Time(seen), unixms.Time(flushed)
	return s, err
}

func (t *tx) StoreInfo(ctx context.Context, id string) (hub.StoreInfo, error) {
	s, err := scanStore(t.QueryRowContext(ctx, `SELECT `+storeCols+` FROM stores WHERE id = ?`, id))
	return s, notFound(err, "no store %q", id)
}

func (t *tx) StoresInfo(ctx context.Context, ids []string) (map[string]hub.StoreInfo, error) {
	out := make(map[string]hub.StoreInfo, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := t.QueryContext(ctx, `SELECT `+storeCols+` FROM stores WHERE id IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		s, err := scanStore(rows)
		if err != nil {
			return nil, err
		}
		out[s.ID] = s
	}
	return out, rows.Err()
}

func (t *tx) Stores(ctx context.Context) ([]hub.StoreInfo, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+storeCols+` FROM stores ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hub.StoreInfo{}
	for rows.Next() {
		s, err := scanStore(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (t *tx) SetStoreToken(ctx context.Context, id, hash string) error {
	res, err := t.ExecContext(ctx, `UPDATE stores SET token_hash = ? WHERE id = ?`, hash, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no store %q", id)
	}
	return nil
}

func (t *tx) SetStoreHealth(ctx context.Context, id string, h hub.Health) error {
	_, err := t.ExecContext(ctx, `UPDATE stores SET connected = ?, last_seen = ?, clock_offset_ms = ?, outbox = ? WHERE id = ?`,
		h.Connected, unixms.Of(h.LastSeen), h.ClockOffsetMS, h.Outbox, id)
	return err
}

func (t *tx) SetStoreZone(ctx context.Context, id, tz string) error {
	res, err := t.ExecContext(ctx, `UPDATE stores SET tz = ? WHERE id = ?`, tz, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no store %q", id)
	}
	return nil
}

func (t *tx) MarkProgramSent(ctx context.Context, store string, version int64, at time.Time) error {
	_, err := t.ExecContext(ctx, `INSERT INTO store_programs (store, version, sent_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		store, version, unixms.Of(at))
	return err
}

func (t *tx) ProgramsReceived(ctx context.Context, store string, at time.Time) error {
	_, err := t.ExecContext(ctx, `UPDATE store_programs SET received_at = ? WHERE store = ? AND received_at = 0`, unixms.Of(at), store)
	return err
}

// programsUnreceived asks whether a store has a rule version it has not acknowledged, through
// the index of those alone (migration 0041).
const programsUnreceived = `SELECT EXISTS (SELECT 1 FROM store_programs WHERE store = ? AND received_at = 0)`

func (t *tx) ProgramsUnreceived(ctx context.Context, store string) (bool, error) {
	var any bool
	err := t.QueryRowContext(ctx, programsUnreceived, store).Scan(&any)
	return any, err
}

func (t *tx) ProgramsSent(ctx context.Context, store string, from int64, limit int) ([]hub.SentProgram, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+sentCols+` FROM store_programs WHERE store = ? AND version >= ?
		ORDER BY version LIMIT ?+0`, store, from, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.SentProgram
	for rows.Next() {
		p, err := scanSent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// sentCols are a store_programs row's columns that scanSent reads, after any columns of its own.
const sentCols = `version, sent_at, received_at`

// scanSent reads a row of sentCols, with dest first for the query's own columns before them.
func scanSent(rows *sql.Rows, dest ...any) (hub.SentProgram, error) {
	var p hub.SentProgram
	var at, received int64
	err := rows.Scan(append(dest, &p.Version, &at, &received)...)
	p.At, p.Received = unixms.Time(at), unixms.Time(received)
	return p, err
}

func (t *tx) ProgramsSentTo(ctx context.Context, stores []string, from int64, limit int) (map[string][]hub.SentProgram, error) {
	out := make(map[string][]hub.SentProgram, len(stores))
	if len(stores) == 0 {
		return out, nil
	}
	list, err := json.Marshal(stores)
	if err != nil {
		return nil, err
	}
	// A store is sent a rule version once: a few rows each, numbered in the store's order.
	rows, err := t.QueryContext(ctx, `SELECT store, `+sentCols+` FROM (
			SELECT store, `+sentCols+`, row_number() OVER (PARTITION BY store ORDER BY version) AS n
			FROM store_programs WHERE store IN (SELECT value FROM json_each(?1)) AND version >= ?2)
		WHERE ?3 < 0 OR n <= ?3 ORDER BY store, version`, string(list), from, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var store string
		p, err := scanSent(rows, &store)
		if err != nil {
			return nil, err
		}
		out[store] = append(out[store], p)
	}
	return out, rows.Err()
}

func (t *tx) MarkFlushed(ctx context.Context, store string, at time.Time) error {
	// At most one write a minute per store: the floor it sets may lag by that much.
	_, err := t.ExecContext(ctx, `UPDATE stores SET flushed_at = ? WHERE id = ? AND flushed_at < ?`, unixms.Of(at), store, unixms.Of(at.Add(-time.Minute)))
	return err
}

func (t *tx) TierChanges(ctx context.Context, member string, until time.Time, limit int) ([]hub.TierChange, error) {
	rows, err := t.QueryContext(ctx, `SELECT event_at, body FROM deltas WHERE member = ? AND kind = 'tier' AND event_at <= ?
		ORDER BY event_at DESC, seq DESC LIMIT ?+0`, member, unixms.Of(until), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.TierChange
	for rows.Next() {
		var at int64
		var body string
		if err := rows.Scan(&at, &body); err != nil {
			return nil, err
		}
		var d loyalty.Delta
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			return nil, err
		}
		out = append(out, hub.TierChange{At: unixms.Time(at), Tier: d.Tier})
	}
	return out, rows.Err()
}

func (t *tx) ProgramPublished(ctx context.Context, v int64) (int64, time.Time, error) {
	var cv, at int64
	if err := t.QueryRowContext(ctx, `SELECT change_version, published_at FROM programs WHERE version = ?`, v).Scan(&cv, &at); err != nil {
		return 0, time.Time{}, notFound(err, "rule version %d is unknown to the hub", v)
	}
	return cv, unixms.Time(at), nil
}

func (t *tx) ProgramVersionAt(ctx context.Context, at time.Time) (int64, error) {
	var v int64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM programs WHERE published_at <= ?`, unixms.Of(at)).Scan(&v)
	return v, err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (t *tx) InsertMember(ctx context.Context, m loyalty.Member) error {
	var taken string
	err := t.QueryRowContext(ctx, `SELECT CASE WHEN id = ? THEN 'id' ELSE 'email' END FROM members WHERE id = ? OR email = ? LIMIT 1`,
		m.ID, m.ID, nullable(m.Email)).Scan(&taken)
	if err == nil && taken == "id" {
		return loyalty.Errorf(loyalty.EDUPLICATE, "member id %s is taken", m.ID)
	} else if err == nil {
		return loyalty.Errorf(loyalty.EDUPLICATE, "email %s belongs to another member", m.Email)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	// A new member's tier review is due at once: it places them in the entry tier (hub.Tx).
	_, err = t.ExecContext(ctx, `INSERT INTO members (id, email, name, home_store, tier, country, balance, version, created_at, referred_by,
		birthday, review_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.ID, nullable(m.Email), m.Name, m.HomeStore, m.Tier, m.Country, m.Balance, m.Version, unixms.Of(m.CreatedAt), m.ReferredBy, m.Birthday,
		unixms.Of(m.CreatedAt))
	return err
}

func (t *tx) MemberBirthday(ctx context.Context, id string) (string, error) {
	var b string
	err := t.QueryRowContext(ctx, `SELECT birthday FROM members WHERE id = ?`, id).Scan(&b)
	return b, notFound(err, "member %s is not known to the hub", id)
}

// birthdayMembersQuery reads a page of a day's birthdays: substr(birthday, -5) is the indexed
// expression (migrations 0017 and 0031), "MM-DD" of either form, then the member's id.
const birthdayMembersQuery = `SELECT ` + memberCols + `, m.birthday FROM members m
	WHERE m.birthday != '' AND substr(m.birthday, -5) = ? AND m.id > ? ORDER BY m.id LIMIT ?+0`

func (t *tx) BirthdayMembers(ctx context.Context, day string, after string, limit int) ([]loyalty.Member, error) {
	rows, err := t.QueryContext(ctx, birthdayMembersQuery, day, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []loyalty.Member
	for rows.Next() {
		var birthday string
		m, err := scanMember(extraCol{rows, &birthday})
		if err != nil {
			return nil, err
		}
		m.Birthday = birthday
		out = append(out, m)
	}
	return out, rows.Err()
}

// extraCol scans a row of memberCols followed by one more column into dest.
type extraCol struct {
	row  interface{ Scan(...any) error }
	dest any
}

func (e extraCol) Scan(dest ...any) error { return e.row.Scan(append(dest, e.dest)...) }

const memberCols = `m.id, COALESCE(m.email, ''), m.name, m.home_store, m.tier, m.country, m.punches, m.balance, m.version, m.created_at,
	m.referred_by, m.referral_paid, m.erased_at IS NOT NULL`

func scanMember(row interface{ Scan(...any) error }) (loyalty.Member, error) {
	var m loyalty.Member
	var created int64
	var punches string
	err := row.Scan(&m.ID, &m.Email, &m.Name, &m.HomeStore, &m.Tier, &m.Country, &punches, &m.Balance, &m.Version, &created,
		&m.ReferredBy, &m.ReferralPaid, &m.Erased)
	m.CreatedAt = unixms.Time(created)
	if err == nil && punches != "" {
		err = json.Unmarshal([]byte(punches), &m.Punches)
	}
	return m, err
}

func (t *tx) Member(ctx context.Context, id string) (loyalty.Member, error) {
	m, err := scanMember(t.QueryRowContext(ctx, `SELECT `+memberCols+` FROM members m WHERE id = ?`, id))
	return m, notFound(err, "member %s is not known to the hub", id)
}

func (t *tx) MemberWithSchedule(ctx context.Context, id string) (loyalty.Member, hub.Schedule, error) {
	var sc hub.Schedule
	var review, expire, expired sql.NullInt64
	var active int64
	m, err := scanMember(extraCols{t.QueryRowContext(ctx, `SELECT `+memberCols+`, `+scheduleCols+` FROM members m WHERE id = ?`, id),
		[]any{&review, &expire, &active, &expired}})
	sc.ReviewAt, sc.ExpireAt, sc.LastActive, sc.ExpiredAt = fromNullMS(review), fromNullMS(expire), unixms.Time(active), fromNullMS(expired)
	return m, sc, notFound(err, "member %s is not known to the hub", id)
}

func (t *tx) MembersWithSchedule(ctx context.Context, ids []string) (map[string]hub.ScheduledMember, error) {
	return t.scheduledMembers(ctx, "id", ids, func(m loyalty.Member) string { return m.ID })
}

// scheduledMembers reads the members whose column (id or email) is one of keys, with their
// schedules, by keyOf of each.
func (t *tx) scheduledMembers(ctx context.Context, column string, keys []string, keyOf func(loyalty.Member) string) (map[string]hub.ScheduledMember, error) {
	out := make(map[string]hub.ScheduledMember, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	list, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	rows, err := t.QueryContext(ctx, `SELECT `+memberCols+`, `+scheduleCols+` FROM members m WHERE m.`+column+` IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var sc hub.Schedule
		var review, expire, expired sql.NullInt64
		var active int64
		m, err := scanMember(extraCols{rows, []any{&review, &expire, &active, &expired}})
		if err != nil {
			return nil, err
		}
		sc.ReviewAt, sc.ExpireAt, sc.LastActive, sc.ExpiredAt = fromNullMS(review), fromNullMS(expire), unixms.Time(active), fromNullMS(expired)
		out[keyOf(m)] = hub.ScheduledMember{Member: m, Schedule: sc}
	}
	return out, rows.Err()
}

// extraCols scans a row of memberCols followed by more columns into dest.
type extraCols struct {
	row  interface{ Scan(...any) error }
	dest []any
}

func (e extraCols) Scan(dest ...any) error { return e.row.Scan(append(dest, e.dest...)...) }

// memberColumns are the columns of members that each hub.MemberField stands for, in order.
var memberColumns = []struct {
	field hub.MemberField
	cols  []string
}{
	{hub.FieldBalance, []string{"balance", "version"}},
	{hub.FieldTier, []string{"tier"}},
	{hub.FieldPunches, []string{"punches"}},
	{hub.FieldReviewAt, []string{"review_at"}},
	{hub.FieldExpireAt, []string{"expire_at"}},
	{hub.FieldLastActive, []string{"last_active"}},
	{hub.FieldExpiredAt, []string{"expired_at"}},
}

// memberValues returns the values of the columns u.Set names, in memberColumns' order.
func memberValues(u hub.MemberUpdate) []any {
	var out []any
	if u.Set&hub.FieldBalance != 0 {
		out = append(out, u.Balance, u.Version)
	}
	if u.Set&hub.FieldTier != 0 {
		out = append(out, u.Tier)
	}
	if u.Set&hub.FieldPunches != 0 {
		p := ""
		if len(u.Punches) > 0 {
			b, _ := json.Marshal(u.Punches)
			p = string(b)
		}
		out = append(out, p)
	}
	if u.Set&hub.FieldReviewAt != 0 {
		out = append(out, nullMS(u.ReviewAt))
	}
	if u.Set&hub.FieldExpireAt != 0 {
		out = append(out, nullMS(u.ExpireAt))
	}
	if u.Set&hub.FieldLastActive != 0 {
		out = append(out, unixms.Of(u.LastActive))
	}
	if u.Set&hub.FieldExpiredAt != 0 {
		out = append(out, nullMS(u.ExpiredAt))
	}
	return out
}

func (t *tx) UpdateMembers(ctx context.Context, us []hub.MemberUpdate) error {
	// Only the columns an update names are in its statement, so that only the indexes on them
	// are touched. Updates naming the same columns are written together, up to 128 rows per
	// statement from a VALUES list; lists are of 128 or 16 rows (a shorter one padded with rows
	// that match no member) or a single row, so that few statement texts are prepared.
	// A member whose Pos (rowid) is known is found by it, in the table itself, rather than
	// through the index on ids: a job's batch, read in rowid order, then writes few pages.
	type group struct {
		set   hub.MemberField
		byPos bool
	}
	groups := map[group][]hub.MemberUpdate{}
	var order []group
	for _, u := range us {
		if u.Set == 0 {
			continue
		}
		g := group{u.Set, u.Pos != 0}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], u)
	}
	for _, g := range order {
		var cols []string
		for _, c := range memberColumns {
			if g.set&c.field != 0 {
				cols = append(cols, c.cols...)
			}
		}
		key := "id"
		if g.byPos {
			key = "rowid"
		}
		for rest := groups[g]; len(rest) > 0; {
			n := 1
			switch {
			case len(rest) >= 128:
				n = 128
			case len(rest) > 1:
				n = 16
			}
			k := min(n, len(rest))
			if err := t.updateMembers(ctx, key, cols, rest[:k], n); err != nil {
				return err
			}
			rest = rest[k:]
		}
	}
	return nil
}

// updateMembers writes cols of us, found by key (id or rowid), in one statement of n rows (those
// beyond us match nobody).
func (t *tx) updateMembers(ctx context.Context, key string, cols []string, us []hub.MemberUpdate, n int) error {
	args := make([]any, 0, n*(len(cols)+1))
	for i := range n {
		switch {
		case i >= len(us):
			args = append(args, make([]any, len(cols)+1)...) // NULL: no member
		case key == "rowid":
			args = append(append(args, us[i].Pos), memberValues(us[i])...)
		default:
			args = append(append(args, us[i].Member), memberValues(us[i])...)
		}
	}
	if n == 1 {
		set := make([]string, len(cols))
		for i, c := range cols {
			set[i] = c + " = ?"
		}
		_, err := t.ExecContext(ctx, `UPDATE members SET `+strings.Join(set, ", ")+` WHERE `+key+` = ?`, append(args[1:], args[0])...)
		return err
	}
	set := make([]string, len(cols))
	for i, c := range cols {
		set[i] = fmt.Sprintf("%s = v.column%d", c, i+2)
	}
	row := "(?" + strings.Repeat(", ?", len(cols)) + ")"
	_, err := t.ExecContext(ctx, `UPDATE members SET `+strings.Join(set, ", ")+` FROM (VALUES `+row+strings.Repeat(", "+row, n-1)+
		`) AS v WHERE members.`+key+` = v.column1`, args...)
	return err
}

func (t *tx) Subscribe(ctx context.Context, store, member string) error {
	_, err := t.ExecContext(ctx, `INSERT INTO member_stores (store, member, version) SELECT ?, id, version FROM members WHERE id = ?
		ON CONFLICT DO NOTHING`, store, member)
	return err
}

func (t *tx) Subscribed(ctx context.Context, store, member string) (bool, error) {
	var in bool
	err := t.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM member_stores WHERE store = ? AND member = ?)`, store, member).Scan(&in)
	return in, err
}

func (t *tx) InScope(ctx context.Context, pairs [][2]string) (map[[2]string]bool, error) {
	in := make(map[[2]string]bool)
	if len(pairs) == 0 {
		return in, nil
	}
	list, err := json.Marshal(pairs)
	if err != nil {
		return nil, err
	}
	rows, err := t.QueryContext(ctx, `SELECT s.store, s.member FROM json_each(?) AS j
		JOIN member_stores s ON s.store = j.value ->> 0 AND s.member = j.value ->> 1`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var p [2]string
		if err := rows.Scan(&p[0], &p[1]); err != nil {
			return nil, err
		}
		in[p] = true
	}
	return in, rows.Err()
}

func (t *tx) Unsubscribe(ctx context.Context, store, member string) error {
	_, err := t.ExecContext(ctx, `DELETE FROM member_stores WHERE store = ? AND member = ?`, store, member)
	return err
}

func (t *tx) SubscribeAll(ctx context.Context, scopes map[string][]string) error {
	pairs := make([][2]string, 0, len(scopes))
	for store, members := range scopes {
		for _, m := range members {
			pairs = append(pairs, [2]string{store, m})
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	slices.SortFunc(pairs, func(a, b [2]string) int { // in the key's order
		return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
	})
	list, err := json.Marshal(pairs)
	if err != nil {
		return err
	}
	// With the members' versions, as Subscribe: the trigger that would set them (migration 0020)
	// rewrites each new row, and moves its entry in the scope's version index.
	_, err = t.ExecContext(ctx, `INSERT INTO member_stores (store, member, version)
		SELECT j.value ->> 0, m.id, m.version FROM json_each(?) AS j JOIN members m ON m.id = j.value ->> 1
		WHERE true ON CONFLICT DO NOTHING`,
		string(list))
	return err
}

func (t *tx) queryMembers(ctx context.Context, q string, args ...any) ([]loyalty.Member, error) {
	rows, err := t.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []loyalty.Member
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (t *tx) MembersSince(ctx context.Context, store string, cursor int64, limit int) ([]loyalty.Member, error) {
	return t.queryMembers(ctx, `SELECT `+memberCols+` FROM member_stores s JOIN members m ON m.id = s.member
		WHERE s.store = ? AND s.version > ? ORDER BY s.version LIMIT ?+0`, store, cursor, limit)
}

func (t *tx) Members(ctx context.Context, after string, limit int) ([]loyalty.Member, error) {
	return t.queryMembers(ctx, `SELECT `+memberCols+` FROM members m WHERE id > ? ORDER BY id LIMIT ?+0`, after, limit)
}

func (t *tx) InsertDelta(ctx context.Context, d loyalty.Delta, hash string, receivedAt time.Time) (int64, bool, error) {
	res, err := t.ExecContext(ctx, `INSERT INTO deltas (`+insertCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`, insertValues(d, hash, receivedAt)...)
	if err != nil {
		return 0, false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		e, err := t.Delta(ctx, d.ID)
		return e.Seq, false, err
	}
	seq, err := res.LastInsertId()
	return seq, true, err
}

// insertCols are the columns InsertDelta and InsertDeltas write, insertValues their values.
const insertCols = `id, hash, store, terminal, member, kind, points, amount, currency, reward, voucher, order_id, reverses, rule_version,
	occurred_at, received_at, event_at, body, rule`

func insertValues(d loyalty.Delta, hash string, receivedAt time.Time) []any {
	return []any{d.ID, hash, d.Store, d.Terminal, d.Member, d.Kind, d.Points, d.Amount, d.Currency, d.Reward, d.Voucher,
		d.OrderID, d.Reverses, d.RuleVersion, unixms.Of(d.OccurredAt), unixms.Of(receivedAt), unixms.Of(d.EventTime()), deltaBody(d), d.Rule}
}

// insertRows is how many rows InsertDeltas writes with one statement: a multi-row VALUES list
// spares the per-statement cost of each row, which is most of an insert's cost in Go. Lists are
// of 100, 10 or 1 rows, so that few statement texts are prepared.
var insertRows = []int{100, 10, 1}

func (t *tx) InsertDeltas(ctx context.Context, ds []hub.NewDelta) ([]int64, error) {
	seqs := make([]int64, 0, len(ds))
	for rest := ds; len(rest) > 0; {
		n := 1
		for _, k := range insertRows {
			if len(rest) >= k {
				n = k
				break
			}
		}
		row := "(?" + strings.Repeat(", ?", 18) + ")"
		args := make([]any, 0, 19*n)
		for _, d := range rest[:n] {
			args = append(args, insertValues(d.Delta, d.Hash, d.ReceivedAt)...)
		}
		// Without ON CONFLICT: a delta of the batch in the ledger already fails the statement
		// (the caller checked there was none). The rows take consecutive sequence numbers, in
		// the order of the list, ending at the last insert's.
		res, err := t.ExecContext(ctx, `INSERT INTO deltas (`+insertCols+`) VALUES `+row+strings.Repeat(", "+row, n-1), args...)
		if err != nil {
			return nil, err
		}
		last, err := res.LastInsertId()
		if err != nil {
			return nil, err
		}
		for i := range n {
			seqs = append(seqs, last-int64(n-1-i))
		}
		rest = rest[n:]
	}
	return seqs, nil
}

const deltaCols = `seq, id, hash, store, terminal, member, kind, points, amount, currency, reward, voucher, order_id, reverses,
	rule_version, occurred_at, received_at, body`

func scanDelta(row interface{ Scan(...any) error }) (hub.LedgerEntry, error) {
	var e hub.LedgerEntry
	var occurred, received int64
	var extras string
	err := row.Scan(&e.Seq, &e.ID, &e.Hash, &e.Store, &e.Terminal, &e.Member, &e.Kind, &e.Points, &e.Amount, &e.Currency,
		&e.Reward, &e.Voucher, &e.OrderID, &e.Reverses, &e.RuleVersion, &occurred, &received, &extras)
	e.OccurredAt, e.ReceivedAt = unixms.Time(occurred), unixms.Time(received)
	if err == nil && extras != "" {
		err = json.Unmarshal([]byte(extras), &e.Delta)
	}
	return e, err
}

func (t *tx) Delta(ctx context.Context, id string) (hub.LedgerEntry, error) {
	e, err := scanDelta(t.QueryRowContext(ctx, `SELECT `+deltaCols+` FROM deltas WHERE id = ?`, id))
	return e, notFound(err, "no delta %s", id)
}

func (t *tx) DeltaHashes(ctx context.Context, ids []string) (map[string]hub.DeltaRef, error) {
	out := make(map[string]hub.DeltaRef, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := t.QueryContext(ctx, `SELECT id, seq, hash FROM deltas WHERE id IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var r hub.DeltaRef
		if err := rows.Scan(&id, &r.Seq, &r.Hash); err != nil {
			return nil, err
		}
		out[id] = r
	}
	return out, rows.Err()
}

func (t *tx) queryDeltas(ctx context.Context, q string, args ...any) ([]hub.LedgerEntry, error) {
	rows, err := t.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hub.LedgerEntry{}
	for rows.Next() {
		e, err := scanDelta(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (t *tx) Ledger(ctx context.Context, member string, limit int) ([]hub.LedgerEntry, error) {
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE member = ? ORDER BY seq DESC LIMIT ?+0`, member, limit)
}

func (t *tx) LedgerSum(ctx context.Context, member string) (int64, error) {
	var sum int64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(SUM(points), 0) FROM deltas WHERE member = ?`, member).Scan(&sum)
	return sum, err
}

func (t *tx) Reversals(ctx context.Context, id string) ([]hub.LedgerEntry, error) {
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE reverses = ? AND reverses != '' ORDER BY seq`, id)
}

func (t *tx) ReversalOf(ctx context.Context, id string) (string, error) {
	var by string
	err := t.QueryRowContext(ctx, `SELECT id FROM deltas WHERE reverses = ? AND reverses != '' LIMIT 1`, id).Scan(&by)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return by, err
}

func (t *tx) OrderDeltas(ctx context.Context, store, orderID string) ([]hub.LedgerEntry, error) {
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE store = ? AND order_id = ? AND order_id != '' ORDER BY seq`, store, orderID)
}

func (t *tx) VoucherUses(ctx context.Context, voucher string) ([]string, error) {
	return t.Strings(ctx, `SELECT d.id FROM deltas d WHERE d.voucher = ? AND d.voucher != '' AND d.kind = 'redeem'
		AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.reverses != '') ORDER BY d.seq`, voucher)
}

func (t *tx) OpenVouchers(ctx context.Context, member string, now time.Time, limit int) ([]hub.Voucher, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+voucherCols+` FROM vouchers v
		WHERE v.member = ? AND v.voided_at = 0 AND (v.expires_at = 0 OR v.expires_at > ?)
			AND NOT EXISTS (SELECT 1 FROM deltas d WHERE d.voucher = v.id AND d.voucher != '' AND d.kind = 'redeem'
				AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.reverses != ''))
		ORDER BY v.created_at, v.id LIMIT ?+0`, member, unixms.Of(now), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.Voucher
	for rows.Next() {
		v, err := scanVoucher(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// voucherCols are a voucher's columns, as scanVoucher reads them.
const voucherCols = `id, member, reward, delta_id, token, created_at, expires_at, voided_at`

func scanVoucher(row interface{ Scan(...any) error }) (hub.Voucher, error) {
	var v hub.Voucher
	var created, expires, voided int64
	err := row.Scan(&v.ID, &v.Member, &v.Reward, &v.DeltaID, &v.Token, &created, &expires, &voided)
	v.CreatedAt, v.ExpiresAt, v.VoidedAt = unixms.Time(created), unixms.Time(expires), unixms.Time(voided)
	return v, err
}

func (t *tx) InsertVoucher(ctx context.Context, v hub.Voucher) error {
	_, err := t.ExecContext(ctx, `INSERT INTO vouchers (id, member, reward, delta_id, token, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		v.ID, v.Member, v.Reward, v.DeltaID, v.Token, unixms.Of(v.CreatedAt), unixms.Of(v.ExpiresAt))
	return err
}

func (t *tx) voucher(ctx context.Context, where string, arg string) (hub.Voucher, error) {
	return scanVoucher(t.QueryRowContext(ctx, `SELECT `+voucherCols+` FROM vouchers WHERE `+where, arg))
}

func (t *tx) Voucher(ctx context.Context, id string) (hub.Voucher, error) {
	v, err := t.voucher(ctx, "id = ?", id)
	return v, notFound(err, "no voucher %s", id)
}

func (t *tx) VoucherPaidBy(ctx context.Context, delta string) (hub.Voucher, error) {
	v, err := t.voucher(ctx, "delta_id = ?", delta)
	return v, notFound(err, "delta %s paid for no voucher", delta)
}

func (t *tx) VoidVoucher(ctx context.Context, id string, at time.Time) error {
	_, err := t.ExecContext(ctx, `UPDATE vouchers SET voided_at = ? WHERE id = ?`, unixms.Of(at), id)
	return err
}

func (t *tx) InsertRejection(ctx context.Context, r hub.Rejection) error {
	b, err := json.Marshal(r.Delta)
	if err != nil {
		return err
	}
	_, err = t.ExecContext(ctx, `INSERT INTO rejections (delta_id, store, delta, code, message, at, hash) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (store, delta_id) DO NOTHING`,
		r.Delta.ID, r.Store, string(b), r.Code, r.Message, unixms.Of(r.At), r.Hash)
	return err
}

func (t *tx) RejectedAs(ctx context.Context, pairs [][2]string) (map[[2]string]hub.Rejection, error) {
	out := make(map[[2]string]hub.Rejection)
	if len(pairs) == 0 {
		return out, nil
	}
	list, err := json.Marshal(pairs)
	if err != nil {
		return nil, err
	}
	rows, err := t.QueryContext(ctx, `SELECT r.delta_id, r.store, r.delta, r.code, r.message, r.at, r.hash FROM json_each(?) AS j
		JOIN rejections r ON r.store = j.value ->> 0 AND r.delta_id = j.value ->> 1`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, body string
		var r hub.Rejection
		var at int64
		if err := rows.Scan(&id, &r.Store, &body, &r.Code, &r.Message, &at, &r.Hash); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &r.Delta); err != nil {
			return nil, err
		}
		r.At = unixms.Time(at)
		out[[2]string{r.Store, id}] = r
	}
	return out, rows.Err()
}

func (t *tx) Rejections(ctx context.Context, limit int) ([]hub.Rejection, error) {
	return t.queryRejections(ctx, `ORDER BY at DESC LIMIT ?+0`, limit)
}

// RejectionsPage reads rejections_at for the time, and sorts the few of one time by store and id.
func (t *tx) RejectionsPage(ctx context.Context, after hub.RejectionKey, limit int) ([]hub.Rejection, error) {
	from := int64(math.MinInt64)
	if after != (hub.RejectionKey{}) {
		from = unixms.Of(after.At)
	}
	return t.queryRejections(ctx, `WHERE at >= ?1 AND (at, store, delta_id) > (?1, ?2, ?3) ORDER BY at, store, delta_id LIMIT ?4+0`,
		from, after.Store, after.Delta, limit)
}

// queryRejections reads the rejections that tail (a WHERE, ORDER BY and LIMIT) selects.
func (t *tx) queryRejections(ctx context.Context, tail string, args ...any) ([]hub.Rejection, error) {
	rows, err := t.QueryContext(ctx, `SELECT store, delta, code, message, at FROM rejections `+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hub.Rejection{}
	for rows.Next() {
		var r hub.Rejection
		var body string
		var at int64
		if err := rows.Scan(&r.Store, &body, &r.Code, &r.Message, &at); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &r.Delta); err != nil {
			return nil, err
		}
		r.At = unixms.Time(at)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (t *tx) InsertConflict(ctx context.Context, c hub.Conflict) (int64, error) {
	res, err := t.ExecContext(ctx, `INSERT INTO conflicts (kind, member, store, deltas, amount, detail, at, flagged) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Kind, c.Member, c.Store, strings.Join(c.Deltas, ","), c.Amount, c.Detail, unixms.Of(c.At), c.Flagged)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (t *tx) Conflicts(ctx context.Context, before int64, limit int) ([]hub.Conflict, error) {
	if before <= 0 {
		return t.queryConflicts(ctx, `ORDER BY id DESC LIMIT ?+0`, limit)
	}
	return t.queryConflicts(ctx, `WHERE id < ? ORDER BY id DESC LIMIT ?+0`, before, limit)
}

// queryConflicts reads the conflicts that tail (a WHERE, ORDER BY and LIMIT) selects.
func (t *tx) queryConflicts(ctx context.Context, tail string, args ...any) ([]hub.Conflict, error) {
	rows, err := t.QueryContext(ctx, `SELECT id, kind, member, store, deltas, amount, detail, at, flagged FROM conflicts `+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hub.Conflict{}
	for rows.Next() {
		var c hub.Conflict
		var deltas string
		var at int64
		if err := rows.Scan(&c.ID, &c.Kind, &c.Member, &c.Store, &deltas, &c.Amount, &c.Detail, &at, &c.Flagged); err != nil {
			return nil, err
		}
		c.Deltas, c.At = strings.Split(deltas, ","), unixms.Time(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (t *tx) Program(ctx context.Context) (loyalty.Program, int64, error) {
	var body string
	var cv int64
	err := t.QueryRowContext(ctx, `SELECT body, change_version FROM programs ORDER BY version DESC LIMIT 1`).Scan(&body, &cv)
	if err != nil {
		return loyalty.Program{}, 0, notFound(err, "no program yet")
	}
	p, err := loyalty.DecodeProgram(body)
	return p, cv, err
}

func (t *tx) ProgramVersion(ctx context.Context, v int64) (loyalty.Program, error) {
	var body string
	if err := t.QueryRowContext(ctx, `SELECT body FROM programs WHERE version = ?`, v).Scan(&body); err != nil {
		return loyalty.Program{}, notFound(err, "rule version %d is unknown to the hub", v)
	}
	return loyalty.DecodeProgram(body)
}

func (t *tx) InsertProgram(ctx context.Context, p loyalty.Program, changeVersion int64, at time.Time) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = t.ExecContext(ctx, `INSERT INTO programs (version, body, change_version, published_at) VALUES (?, ?, ?, ?)`,
		p.Version, string(b), changeVersion, unixms.Of(at))
	return err
}

func (t *tx) Idempotent(ctx context.Context, scope, key string) (string, []byte, bool, error) {
	return t.idempotent(ctx, `SELECT hash, response FROM idempotency WHERE scope = ? AND key = ?`, scope, key)
}

func (t *tx) LegacyIdempotent(ctx context.Context, scope, key string) (string, []byte, bool, error) {
	return t.idempotent(ctx, `SELECT hash, response FROM idempotency WHERE scope = ? AND key = ? AND legacy = 1`, scope, key)
}

func (t *tx) idempotent(ctx context.Context, q, scope, key string) (string, []byte, bool, error) {
	var hash, resp string
	err := t.QueryRowContext(ctx, q, scope, key).Scan(&hash, &resp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, false, nil
	}
	return hash, []byte(resp), err == nil, err
}

func (t *tx) SaveIdempotent(ctx context.Context, scope, key, hash string, response []byte, at time.Time) error {
	_, err := t.ExecContext(ctx, `INSERT INTO idempotency (scope, key, hash, response, at) VALUES (?, ?, ?, ?, ?)`, scope, key, hash, string(response), unixms.Of(at))
	return err
}

// deltaBody stores the whole delta as JSON beside its columns, so that a ledger entry
// reproduces every field of the delta, including those without a column (lines, leases, …).
func deltaBody(d loyalty.Delta) string {
	b, _ := json.Marshal(d)
	return string(b)
}

func (t *tx) BudgetSpent(ctx context.Context, budget string) (int64, error) {
	var v int64
	err := t.QueryRowContext(ctx, `SELECT spent FROM budget_usage WHERE budget = ?`, budget).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func (t *tx) AddBudgetSpent(ctx context.Context, budget string, x int64) error {
	_, err := t.ExecContext(ctx, `INSERT INTO budget_usage (budget, spent) VALUES (?, ?)
		ON CONFLICT (budget) DO UPDATE SET spent = spent + excluded.spent`, budget, x)
	return err
}

func (t *tx) InsertCharge(ctx context.Context, c hub.Charge) error {
	_, err := t.ExecContext(ctx, `INSERT INTO budget_charges (delta, budget, lease, amount, spared, carried) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Delta, c.Budget, c.Lease, c.Amount, c.Spared, c.Carried)
	return err
}

func (t *tx) CarryCharge(ctx context.Context, delta, budget string, x int64) error {
	_, err := t.ExecContext(ctx, `UPDATE budget_charges SET carried = carried + ? WHERE delta = ? AND budget = ?`, x, delta, budget)
	return err
}

func (t *tx) Charges(ctx context.Context, delta string) ([]hub.Charge, error) {
	var seq, from int64
	err := t.QueryRowContext(ctx, `SELECT (SELECT seq FROM deltas WHERE id = ?), value FROM counters WHERE name = 'charges_from'`, delta).Scan(&seq, &from)
	if err != nil {
		return nil, err // no charges_from: a database the migration did not run on
	}
	if seq <= from {
		return nil, loyalty.Errorf(loyalty.ENOTFOUND, "no charges recorded for %s", delta)
	}
	rows, err := t.QueryContext(ctx, `SELECT budget, lease, amount, spared, carried FROM budget_charges WHERE delta = ? ORDER BY budget`, delta)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cs := []hub.Charge{}
	for rows.Next() {
		c := hub.Charge{Delta: delta}
		if err := rows.Scan(&c.Budget, &c.Lease, &c.Amount, &c.Spared, &c.Carried); err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

func (t *tx) Outstanding(ctx context.Context, budget string) (int64, error) {
	var v int64
	// A running total (migration 0026), not a sum over every store's lease.
	err := t.QueryRowContext(ctx, `SELECT COALESCE((SELECT amount FROM lease_outstanding WHERE budget = ?), 0)`, budget).Scan(&v)
	return v, err
}

const leaseCols = `id, store, budget, granted, consumed, state, expires_at, created_at, reclaiming, reclaim_session, wanted`

func (t *tx) queryLeases(ctx context.Context, q string, args ...any) ([]hub.Lease, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+leaseCols+` FROM leases WHERE `+q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.Lease
	for rows.Next() {
		var l hub.Lease
		var exp, created, session int64
		if err := rows.Scan(&l.ID, &l.Store, &l.Budget, &l.Granted, &l.Consumed, &l.State, &exp, &created,
			&l.Reclaiming, &session, &l.Wanted); err != nil {
			return nil, err
		}
		l.ExpiresAt, l.CreatedAt = unixms.Time(exp), unixms.Time(created)
		if session != 0 {
			l.ReclaimSession = time.Unix(0, session).UTC()
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// The conditions of a store's and a budget's open leases, and of the active ones run out: each
// searches an index of the open rows alone (migration 0041), not every lease ever granted.
const (
	storeLeases   = `store = ? AND state != 'settled' ORDER BY created_at, id`
	budgetLeases  = `budget = ? AND state != 'settled' ORDER BY store, id`
	expiredLeases = `state = 'active' AND expires_at < ? ORDER BY expires_at, id`
)

func (t *tx) Leases(ctx context.Context, store string) ([]hub.Lease, error) {
	return t.queryLeases(ctx, storeLeases, store)
}

func (t *tx) BudgetLeases(ctx context.Context, budget string) ([]hub.Lease, error) {
	return t.queryLeases(ctx, budgetLeases, budget)
}

func (t *tx) ExpiredLeases(ctx context.Context, at time.Time) ([]hub.Lease, error) {
	return t.queryLeases(ctx, expiredLeases, unixms.Of(at))
}

func (t *tx) Wanted(ctx context.Context, budget string) (int64, error) {
	var v int64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(SUM(wanted), 0) FROM leases WHERE budget = ? AND state = 'active'`, budget).Scan(&v)
	return v, err
}

func (t *tx) WatchSince(ctx context.Context, store, budget string, at time.Time) (time.Time, error) {
	if _, err := t.ExecContext(ctx, `INSERT INTO lease_watch (store, budget, since) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		store, budget, unixms.Of(at)); err != nil {
		return time.Time{}, err
	}
	var since int64
	err := t.QueryRowContext(ctx, `SELECT since FROM lease_watch WHERE store = ? AND budget = ?`, store, budget).Scan(&since)
	return unixms.Time(since), err
}

func (t *tx) Watched(ctx context.Context, store, budget string) (time.Time, error) {
	var since int64
	err := t.QueryRowContext(ctx, `SELECT since FROM lease_watch WHERE store = ? AND budget = ?`, store, budget).Scan(&since)
	return unixms.Time(since), notFound(err, "no demand of budget %s recorded for store %s", budget, store)
}

func (t *tx) CountStores(ctx context.Context) (int, error) {
	var n int
	err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM stores`).Scan(&n)
	return n, err
}

// PullHead is the reference, its reads one by one: each costs no round trip here.
func (t *tx) PullHead(ctx context.Context, store string, cursor int64, limit int) (hub.PullHead, error) {
	return hub.ReadPullHead(ctx, t, store, cursor, limit)
}

// BudgetFigures reads the figures of every budget in two statements: one row per budget (spent,
// outstanding, largest charge, watched), then the store's demand of them all. The reads it stands
// for (hub.ReadBudgetFigures) are five statements a budget, and every pull sizes its leases: a
// statement costs a few µs of database/sql and the driver however little it reads, which made
// these reads most of a heartbeat pull's cost.
func (t *tx) BudgetFigures(ctx context.Context, store string, budgets []string, since time.Time) (map[string]hub.BudgetFigures, error) {
	out := make(map[string]hub.BudgetFigures, len(budgets))
	if len(budgets) == 0 {
		return out, nil
	}
	ids, err := json.Marshal(budgets)
	if err != nil {
		return nil, err
	}
	hour := hourOf(since)
	rows, err := t.QueryContext(ctx, `SELECT b.value,
			COALESCE((SELECT spent FROM budget_usage WHERE budget = b.value), 0),
			COALESCE((SELECT amount FROM lease_outstanding WHERE budget = b.value), 0),
			COALESCE((SELECT MAX(largest) FROM lease_demand WHERE store = ?2 AND budget = b.value AND hour >= ?3), 0),
			(SELECT since FROM lease_watch WHERE store = ?4 AND budget = b.value)
		FROM json_each(?1) b`, string(ids), chainWide, hour, store)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var b string
		var f hub.BudgetFigures
		var watched sql.NullInt64
		if err := rows.Scan(&b, &f.Spent, &f.Outstanding, &f.Largest, &watched); err != nil {
			return nil, err
		}
		if watched.Valid {
			f.Watched = unixms.Time(watched.Int64)
		}
		out[b] = f
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	demand, err := t.QueryContext(ctx, `SELECT budget, hour, amount FROM lease_demand
		WHERE store = ?1 AND budget IN (SELECT value FROM json_each(?2)) AND hour >= ?3 ORDER BY budget, hour`, store, string(ids), hour)
	if err != nil {
		return nil, err
	}
	defer demand.Close()
	for demand.Next() {
		var b string
		var h hub.DemandHour
		var at int64
		if err := demand.Scan(&b, &at, &h.Amount); err != nil {
			return nil, err
		}
		h.Hour = unixms.Time(at)
		f := out[b]
		f.Demand = append(f.Demand, h)
		out[b] = f
	}
	return out, demand.Err()
}

// hourOf returns the start of the hour containing at, in unix milliseconds.
func hourOf(at time.Time) int64 { return at.UTC().Truncate(time.Hour).UnixMilli() }

// chainWide is the lease_demand row that keeps, per budget and hour, the largest single charge.
const chainWide = "*"

func (t *tx) AddDemand(ctx context.Context, store, budget string, at time.Time, amount int64) error {
	for _, row := range []struct {
		store  string
		amount int64
	}{{store, amount}, {chainWide, 0}} {
		if _, err := t.ExecContext(ctx, `INSERT INTO lease_demand (store, budget, hour, amount, largest) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (store, budget, hour) DO UPDATE SET amount = amount + excluded.amount, largest = MAX(largest, excluded.largest)`,
			row.store, budget, hourOf(at), row.amount, amount); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) Demand(ctx context.Context, store, budget string, since time.Time) ([]hub.DemandHour, error) {
	rows, err := t.QueryContext(ctx, `SELECT hour, amount FROM lease_demand WHERE store = ? AND budget = ? AND hour >= ? ORDER BY hour`,
		store, budget, hourOf(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.DemandHour
	for rows.Next() {
		var h hub.DemandHour
		var hour int64
		if err := rows.Scan(&hour, &h.Amount); err != nil {
			return nil, err
		}
		h.Hour = unixms.Time(hour)
		out = append(out, h)
	}
	return out, rows.Err()
}

func (t *tx) LargestCharge(ctx context.Context, budget string, since time.Time) (int64, error) {
	var v int64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(MAX(largest), 0) FROM lease_demand WHERE store = ? AND budget = ? AND hour >= ?`,
		chainWide, budget, hourOf(since)).Scan(&v)
	return v, err
}

func (t *tx) PruneDemand(ctx context.Context, before time.Time) error {
	_, err := t.ExecContext(ctx, `DELETE FROM lease_demand WHERE hour < ?`, hourOf(before))
	return err
}

func (t *tx) Lease(ctx context.Context, id string) (hub.Lease, error) {
	ls, err := t.queryLeases(ctx, `id = ?`, id)
	if err != nil {
		return hub.Lease{}, err
	}
	if len(ls) == 0 {
		return hub.Lease{}, loyalty.Errorf(loyalty.ENOTFOUND, "no lease %s", id)
	}
	return ls[0], nil
}

func (t *tx) PutLease(ctx context.Context, l hub.Lease, e hub.LeaseEvent) error {
	var session int64
	if !l.ReclaimSession.IsZero() {
		session = l.ReclaimSession.UnixNano()
	}
	_, err := t.ExecContext(ctx, `INSERT INTO leases (`+leaseCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET granted = excluded.granted, consumed = excluded.consumed, state = excluded.state,
			expires_at = excluded.expires_at, reclaiming = excluded.reclaiming, reclaim_session = excluded.reclaim_session,
			wanted = excluded.wanted`,
		l.ID, l.Store, l.Budget, l.Granted, l.Consumed, l.State, unixms.Of(l.ExpiresAt), unixms.Of(l.CreatedAt), l.Reclaiming, session, l.Wanted)
	if err != nil || e.Kind == "" {
		return err
	}
	_, err = t.ExecContext(ctx, `INSERT INTO lease_events (lease, store, budget, kind, amount, at) VALUES (?, ?, ?, ?, ?, ?)`,
		e.Lease, e.Store, e.Budget, e.Kind, e.Amount, unixms.Of(e.At))
	return err
}

func (t *tx) MemberRedemptions(ctx context.Context, member, reward string, since, upTo time.Time) (int64, error) {
	var n int64
	err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM deltas d WHERE d.member = ? AND d.kind = 'redeem' AND d.event_at >= ? AND d.event_at < ?
		AND d.voucher = '' AND (? = '' OR d.reward = ?) AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.reverses != '')`,
		member, unixms.Of(since), unixms.Until(upTo), reward, reward).Scan(&n)
	return n, err
}

func (t *tx) MemberEarned(ctx context.Context, member, rule string, since, upTo time.Time) (int64, error) {
	var n int64
	err := t.QueryRowContext(ctx, memberEarnedQuery, member, rule, unixms.Of(since), unixms.Until(upTo)).Scan(&n)
	return n, err
}

// memberEarnedQuery sums member ?1's earns under rule ?2 with an event time in [?3, ?4), each less
// what its reversals took back (their points are negative): the earns in the span, and a look
// for each one's reversals, not the member's whole ledger.
const memberEarnedQuery = `SELECT COALESCE(SUM(d.points + (SELECT COALESCE(SUM(r.points), 0) FROM deltas r
		WHERE r.reverses = d.id AND r.reverses != '')), 0)
	FROM ` + memberEarns + ` WHERE l.member = ?1 AND d.rule = ?2 AND l.at >= ?3 AND l.at < ?4`

func (t *tx) QualifyingFromLedger(ctx context.Context, member, basis string, since, upTo time.Time) (hub.Qualification, error) {
	// Sales not reversed in full (a reversal without an amount), less what partial refunds of
	// them gave back; the earliest of them in the window, and the earliest dated after it. One
	// scan of the member's ledger (deltas_member, and none of what is kept apart from the ledger:
	// this is what Check compares the day totals with) with one look at each earn's
	// reversals: x is -1 for a sale reversed in full, else what its partial refunds gave back.
	// LIMIT -1 keeps SQLite from flattening the inner query, which would look again for each use
	// of x.
	var q hub.Qualification
	var first, next int64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN x >= 0 THEN c - x END), 0), COALESCE(MIN(CASE WHEN x >= 0 THEN e END), 0),
		COALESCE((SELECT MIN(n.event_at) FROM deltas n INDEXED BY deltas_member WHERE n.member = ?1 AND n.kind = 'earn' AND n.rule = ''
			AND n.event_at >= ?3 AND NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = n.id AND w.reverses != '' AND w.amount = 0)), 0)
		FROM (`+qualifyingEvents(basis, "d.member = ?1")+` LIMIT -1)`,
		member, unixms.Of(since), unixms.Until(upTo)).Scan(&q.Total, &first, &next)
	q.First, q.Next = unixms.Time(first), unixms.Time(next)
	return q, err
}

// qualifyingEvents is the query of QualifyingFromLedger's events for the members where selects
// (on d), in the window [?2, ?3): each one's member m, amount or points c, event time e and x, -1
// if it was reversed in full, else what its partial refunds gave back.
func qualifyingEvents(basis, where string) string {
	col, refunded := "amount", "r.amount"
	if basis == loyalty.BasisPoints {
		col, refunded = "points", "-r.points"
	}
	return `SELECT d.member AS m, d.` + col + ` AS c, d.event_at AS e, (SELECT CASE WHEN MAX(r.amount = 0) THEN -1
			ELSE COALESCE(SUM(CASE WHEN r.amount > 0 THEN ` + refunded + ` END), 0) END FROM deltas r WHERE r.reverses = d.id AND r.reverses != '') AS x
		FROM deltas d INDEXED BY deltas_member WHERE ` + where + ` AND d.kind = 'earn' AND d.rule = '' AND d.event_at >= ?2 AND d.event_at < ?3`
}

// memberEarns is the FROM clause of queries of a member's earns in a span of time: l, their lots
// (member_lots, which has every earn: the 0032 migration), searched by member and time, each
// earn d read by its ledger position. Lots of adjustments are passed over. CROSS JOIN keeps the
// order: the lots drive.
const memberEarns = `member_lots AS l CROSS JOIN deltas AS d ON d.seq = l.seq AND d.kind = 'earn'`

// qualifyingEdgesQuery returns the second read of a qualification (hub.QualifyingWindow), after the
// day totals (qualifyingDays), for the members in(col, list) selects. It reads the ledger for the parts of
// a day at the window's edges, each event with one look at its reversals: 2 the head (?2 to ?3)
// for the members of list ?1, 3 the tail (?5 to ?6) for those of list ?4. A member's edge is read
// only where the day totals show sales on its day: most members have none on the one or two days
// a window cuts through, and these ledger reads were most of a tier review's time. The edges
// are short spans of time, which a search of the members' lots by time finds (memberEarns).
func qualifyingEdgesQuery(in func(col, list string) string) (edges string) {
	events := func(list, from, to string) string {
		return `SELECT m, COALESCE(SUM(CASE WHEN whole = 0 THEN a - ra END), 0), COALESCE(SUM(CASE WHEN whole = 0 THEN p - rp END), 0),
			COALESCE(MIN(CASE WHEN whole = 0 THEN e END), 0)
		FROM (SELECT d.member AS m, d.event_at AS e, d.amount AS a, d.points AS p, COALESCE(MAX(r.amount = 0), 0) AS whole,
				COALESCE(SUM(CASE WHEN r.amount > 0 THEN r.amount END), 0) AS ra, COALESCE(SUM(CASE WHEN r.amount > 0 THEN -r.points END), 0) AS rp
			FROM ` + memberEarns + ` LEFT JOIN deltas r ON r.reverses = d.id AND r.reverses != ''
			WHERE ` + in("l.member", list) + ` AND d.rule = '' AND l.at >= ` + from + ` AND l.at < ` + to + `
			GROUP BY d.seq) GROUP BY m`
	}
	edges = `SELECT 2, * FROM (` + events("?1", "?2", "?3") + `)
		UNION ALL
		SELECT 3, * FROM (` + events("?4", "?5", "?6") + `)`
	return edges
}

var (
	qualifyingEdgesOne = qualifyingEdgesQuery(func(col, list string) string { return col + " = " + list })
	qualifyingEdges    = qualifyingEdgesQuery(func(col, list string) string {
		return col + " IN (SELECT value FROM json_each(" + list + "))"
	})
	// The day totals (member_qualifying) of one member ?1, or of the members of the JSON list ?1
	// (sorted, each once), from day ?2 on: a row per member and day (member, day, amount,
	// points, first), which the caller adds up by part (partOf in qualifying). The list drives the
	// join, one search of the primary key per member in key order; as IN (…) it would first be
	// copied into a temporary index, and summed in SQL, GROUP BY member and part would sort
	// every row in a temporary B-tree.
	qualifyingDaysOne = `SELECT member, day, amount, points, COALESCE(first, 0) FROM member_qualifying WHERE member = ?1 AND day >= ?2`
	qualifyingDays    = `SELECT q.member, q.day, q.amount, q.points, COALESCE(q.first, 0)
		FROM json_each(?1) AS j CROSS JOIN member_qualifying AS q ON q.member = j.value WHERE q.day >= ?2`
)

func (t *tx) Qualifying(ctx context.Context, member, basis string, since, upTo time.Time) (hub.Qualification, error) {
	qs, err := t.qualifying(ctx, []string{member}, basis, since, upTo)
	return qs[member], err
}

func (t *tx) QualifyingOf(ctx context.Context, members []string, basis string, since, upTo time.Time) (map[string]hub.Qualification, error) {
	return t.qualifying(ctx, members, basis, since, upTo)
}

// qualifying reads the day totals of members in the window [since, upTo), then the window's edges
// from the ledger for the members that had sales on an edge's day (qualifyingEdgesQuery), and puts
// the parts together.
func (t *tx) qualifying(ctx context.Context, members []string, basis string, since, upTo time.Time) (map[string]hub.Qualification, error) {
	w := hub.NewQualifyingWindow(since, upTo)
	daysQ, edgesQ := qualifyingDays, qualifyingEdges
	list := func(ms []string) (any, error) {
		if len(ms) == 0 {
			return "[]", nil
		}
		b, err := json.Marshal(ms)
		return string(b), err
	}
	if len(members) == 1 {
		daysQ, edgesQ = qualifyingDaysOne, qualifyingEdgesOne
		list = func(ms []string) (any, error) {
			if len(ms) == 0 {
				return nil, nil // NULL: no member
			}
			return ms[0], nil
		}
	}
	ids := members
	if len(ids) > 1 {
		ids = slices.Compact(slices.Sorted(slices.Values(members))) // each once, in the key's order
	}
	arg, err := list(ids)
	if err != nil {
		return nil, err
	}
	// The days the edges cut through: the head's, read as part 5 (the day before the first whole
	// day, or the end's day when the window is within one day), and the tail's, which is the end
	// day (part 1) or, within one day, the head's.
	from := w.From
	hasHead, hasTail := w.Head[0] < w.Head[1], w.Tail[0] < w.Tail[1]
	headDay := hub.FloorDay(w.Head[0]) // with hasHead only
	if hasHead {
		from = min(from, headDay)
	}
	tailPart := -1 // the part whose row says the member had sales on the tail's day (-1: read every member's tail)
	if hasTail {
		switch d := hub.FloorDay(w.Tail[0]); {
		case w.HasEnd && d == w.EndDay:
			tailPart = 1
		case hasHead && d == headDay:
			tailPart = 5
		}
	}
	parts := make(map[string]*[6]hub.DayTotals, len(members))
	seen := make(map[string]*[6]bool, len(members))
	for _, m := range members {
		parts[m], seen[m] = &[6]hub.DayTotals{}, &[6]bool{}
	}
	// partOf is the part of the window the day totals of day count in: 0 the whole days, 1 the
	// end day, 4 the days after the window, 5 the head's day (its row only says the member had
	// sales that day); -1 none.
	partOf := func(day int64) int {
		switch {
		case day >= w.Days[0] && day < w.Days[1]:
			return 0
		case w.HasEnd && day == w.EndDay:
			return 1
		case day >= w.After:
			return 4
		case hasHead && day == headDay:
			return 5
		}
		return -1
	}
	// read reads rows of (part, member, totals), or with days (member, day, totals) and adds
	// them up by part.
	read := func(days bool, q string, args ...any) error {
		rows, err := t.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var part int
			var m string
			var d hub.DayTotals
			if days {
				var day int64
				if err := rows.Scan(&m, &day, &d.Amount, &d.Points, &d.First); err != nil {
					return err
				}
				part = partOf(day)
			} else if err := rows.Scan(&part, &m, &d.Amount, &d.Points, &d.First); err != nil {
				return err
			}
			if p := parts[m]; p != nil && part >= 0 && part < len(p) {
				p[part].Add(d)
				seen[m][part] = true
			}
		}
		return rows.Err()
	}
	if err := read(true, daysQ, arg, from); err != nil {
		return nil, err
	}
	var heads, tails []string
	for _, m := range members {
		if hasHead && seen[m][5] {
			heads = append(heads, m)
		}
		if hasTail && (tailPart < 0 || seen[m][tailPart]) {
			tails = append(tails, m)
		}
	}
	if len(heads)+len(tails) > 0 {
		h, err := list(heads)
		if err != nil {
			return nil, err
		}
		tl, err := list(tails)
		if err != nil {
			return nil, err
		}
		if err := read(false, edgesQ, h, w.Head[0], w.Head[1], tl, w.Tail[0], w.Tail[1]); err != nil {
			return nil, err
		}
	}
	out := make(map[string]hub.Qualification, len(members))
	for m, p := range parts {
		out[m] = w.Qualification(basis, p[0], p[2], p[1], p[3], p[4])
	}
	return out, nil
}

func (t *tx) RuleCount(ctx context.Context, member, rule string, since, upTo time.Time) (int64, error) {
	var n int64
	err := t.QueryRowContext(ctx, ruleCountQuery, member, rule, unixms.Of(since), unixms.Until(upTo)).Scan(&n)
	return n, err
}

// ruleCountQuery counts member ?1's earns under rule ?2 with an event time in [?3, ?4) that are
// not reversed.
const ruleCountQuery = `SELECT COUNT(*) FROM ` + memberEarns + ` WHERE l.member = ?1 AND d.rule = ?2 AND l.at >= ?3
	AND l.at < ?4 AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.reverses != '')`

func (t *tx) Lots(ctx context.Context, member string, since time.Time) ([]loyalty.Lot, error) {
	lots, err := t.LotsOf(ctx, []string{member}, since)
	return lots[member], err
}

func (t *tx) ProveLate(ctx context.Context, member, delta string) error {
	_, err := t.ExecContext(ctx, `INSERT INTO late_proofs (member, delta) VALUES (?, ?) ON CONFLICT DO NOTHING`, member, delta)
	return err
}

func (t *tx) LateProofs(ctx context.Context, member string) (map[string]bool, error) {
	rows, err := t.QueryContext(ctx, `SELECT delta FROM late_proofs WHERE member = ?`, member)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

// LotsOf reads the members' lots kept in member_lots: one search of its key per member, each
// once and in key order, a member's lots in the order they are read (their time, then their
// ledger position).
func (t *tx) LotsOf(ctx context.Context, members []string, since time.Time) (map[string][]loyalty.Lot, error) {
	members = slices.Compact(slices.Sorted(slices.Values(members)))
	ids, err := json.Marshal(members)
	if err != nil {
		return nil, err
	}
	rows, err := t.QueryContext(ctx, lotsOfQuery, string(ids), unixms.Of(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string][]loyalty.Lot, len(members))
	for rows.Next() {
		var m string
		var at int64
		var l loyalty.Lot
		if err := rows.Scan(&m, &at, &l.Points); err != nil {
			return nil, err
		}
		l.EarnedAt = unixms.Time(at)
		out[m] = append(out[m], l)
	}
	return out, rows.Err()
}

// lotsOfQuery reads the lots of the members of the JSON list ?1 (sorted, each once) earned at or
// after ?2 with points left: the list drives, one search of member_lots' key per member.
const lotsOfQuery = `SELECT l.member, l.at, l.points FROM json_each(?1) AS j
	CROSS JOIN member_lots AS l ON l.member = j.value WHERE l.at >= ?2 AND l.points > 0`

// lotsDriftQuery lists the lots of the members in (?1, ?2] (in (?1, ∞) when upTo is false) that
// differ between member_lots and the ledger, in member and ledger order, at most ?3: the ledger's
// lots of those members (deltas_member, a range of members) each looked up in member_lots by its
// key, then member_lots' rows of those members (its key, the same range) each looked up in the
// ledger by its position. A FULL JOIN would read one side whole for every row of the other. The
// upper bound is left out of the text, not made optional in it, so that both ranges end there.
func lotsDriftQuery(upTo bool) string {
	dEnd, kEnd := "", ""
	if upTo {
		dEnd, kEnd = " AND d.member <= ?2", " AND k.member <= ?2"
	}
	return `SELECT * FROM (
		SELECT l.member, l.at, l.seq, k.points, l.points FROM (SELECT d.member AS member, d.event_at AS at, d.seq AS seq,
				d.points + COALESCE((SELECT SUM(r.points) FROM deltas r WHERE r.reverses = d.id AND r.reverses != ''), 0) AS points
			FROM deltas d INDEXED BY deltas_member WHERE d.member > ?1` + dEnd + `
				AND (d.kind = 'earn' OR (d.kind = 'adjust' AND d.points > 0 AND d.reverses = ''))) AS l
		LEFT JOIN member_lots AS k ON k.member = l.member AND k.at = l.at AND k.seq = l.seq WHERE k.points IS NOT l.points
		UNION ALL
		SELECT k.member, k.at, k.seq, k.points, NULL FROM member_lots AS k WHERE k.member > ?1` + kEnd + `
			AND NOT EXISTS (SELECT 1 FROM deltas d WHERE d.seq = k.seq AND d.member = k.member AND d.event_at = k.at
				AND (d.kind = 'earn' OR (d.kind = 'adjust' AND d.points > 0 AND d.reverses = ''))))
	ORDER BY 1, 3 LIMIT ?3+0`
}

func (t *tx) LotsDrift(ctx context.Context, after, last string, most int) ([]string, error) {
	rows, err := t.QueryContext(ctx, lotsDriftQuery(last != ""), after, last, most)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	say := func(p sql.NullInt64) string {
		if !p.Valid {
			return "none"
		}
		if p.Int64 == 1 {
			return "1 point"
		}
		return fmt.Sprintf("%d points", p.Int64)
	}
	var out []string
	for rows.Next() {
		var member string
		var at, seq int64
		var kept, in sql.NullInt64
		if err := rows.Scan(&member, &at, &seq, &kept, &in); err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s: lot of %s (ledger position %d): kept %s, the ledger makes %s", member,
			unixms.Time(at).Format(time.RFC3339Nano), seq, say(kept), say(in)))
	}
	return out, rows.Err()
}

func (t *tx) SetReferralPaid(ctx context.Context, member, sale string) error {
	if _, err := t.ExecContext(ctx, `UPDATE members SET referral_paid = ? WHERE id = ?`, sale != "", member); err != nil {
		return err
	}
	if sale == "" {
		_, err := t.ExecContext(ctx, `DELETE FROM referral_sales WHERE member = ?`, member)
		return err
	}
	_, err := t.ExecContext(ctx, `INSERT INTO referral_sales (member, delta_id) VALUES (?, ?)
		ON CONFLICT (member) DO UPDATE SET delta_id = excluded.delta_id`, member, sale)
	return err
}

func (t *tx) ReferralSale(ctx context.Context, member string) (string, error) {
	var sale string
	err := t.QueryRowContext(ctx, `SELECT delta_id FROM referral_sales WHERE member = ?`, member).Scan(&sale)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return sale, err
}

// nullMS stores a schedule time: NULL for none.
func nullMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return unixms.Of(t)
}

func fromNullMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// jobColumn is the members column that schedules a job.
func jobColumn(job string) (string, error) {
	switch job {
	case hub.JobTiers:
		return "review_at", nil
	case hub.JobExpiry:
		return "expire_at", nil
	}
	return "", fmt.Errorf("no background job %q", job)
}

const scheduleCols = `m.review_at, m.expire_at, m.last_active, m.expired_at`

func (t *tx) ScheduleAll(ctx context.Context, job string, at time.Time) error {
	col, err := jobColumn(job)
	if err != nil {
		return err
	}
	value := `?1`
	if job == hub.JobExpiry {
		value = `CASE WHEN balance > 0 THEN ?1 END`
	}
	// Rows that already hold the value are left alone: a repeated reset rewrites nothing.
	_, err = t.ExecContext(ctx, `UPDATE members SET `+col+` = `+value+` WHERE `+col+` IS NOT `+value, nullMS(at))
	return err
}

func (t *tx) MembersDue(ctx context.Context, job string, upTo time.Time, after hub.DueCursor, limit int) ([]hub.DueMember, error) {
	col, err := jobColumn(job)
	if err != nil {
		return nil, err
	}
	from, pos := int64(math.MinInt64), after.Pos
	if after != (hub.DueCursor{}) {
		from = unixms.Of(after.At)
	}
	if pos == 0 && after.ID != "" { // a cursor by member id (GET /v1/expiring's): find its rowid
		err := t.QueryRowContext(ctx, `SELECT rowid FROM members WHERE id = ?`, after.ID).Scan(&pos)
		if err != nil {
			return nil, notFound(err, "member %s is not known to the hub", after.ID)
		}
	}
	// The partial index members_review or members_expire, on the time (and, as every index, the
	// rowid), serves both the range and the order; Pos is the rowid, the order of the table.
	rows, err := t.QueryContext(ctx, `SELECT m.id, m.tier, m.balance, `+scheduleCols+`, m.rowid FROM members m
		WHERE m.`+col+` <= ? AND (m.`+col+`, m.rowid) > (?, ?) ORDER BY m.`+col+`, m.rowid LIMIT ?+0`,
		unixms.Of(upTo), from, pos, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.DueMember
	for rows.Next() {
		var d hub.DueMember
		var review, expire, expired sql.NullInt64
		var active int64
		if err := rows.Scan(&d.ID, &d.Tier, &d.Balance, &review, &expire, &active, &expired, &d.Pos); err != nil {
			return nil, err
		}
		d.ReviewAt, d.ExpireAt, d.LastActive, d.ExpiredAt = fromNullMS(review), fromNullMS(expire), unixms.Time(active), fromNullMS(expired)
		out = append(out, d)
	}
	return out, rows.Err()
}

func (t *tx) LedgerHead(ctx context.Context) (int64, error) {
	var seq int64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM deltas`).Scan(&seq)
	return seq, err
}

// membersAfterQuery is MembersAfter's: the members of the JSON list ?2 with a delta after ?1.
const membersAfterQuery = `SELECT DISTINCT member FROM deltas NOT INDEXED WHERE seq > ?1 AND member IN (SELECT value FROM json_each(?2))`

// MembersAfter reads the deltas after seq by their positions (the table's key), and looks each
// one's member up in the list. NOT INDEXED keeps SQLite from reading the index on members
// instead, whole, for the order DISTINCT wants, or once for each member of the list.
func (t *tx) MembersAfter(ctx context.Context, seq int64, members []string) ([]string, error) {
	if len(members) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(members)
	if err != nil {
		return nil, err
	}
	return t.Strings(ctx, membersAfterQuery, seq, string(list))
}
