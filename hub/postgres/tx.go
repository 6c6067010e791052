package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// The hub.Tx methods, one for one with hub/sqlite's and with the same results.

func (t *tx) NextVersion(ctx context.Context) (int64, error) {
	var v int64
	err := t.queryRow(ctx, `UPDATE counters SET value = value + 1 WHERE name = 'version' RETURNING value`).Scan(&v)
	return v, err
}

const currentVersionSQL = `SELECT value FROM counters WHERE name = 'version'`

func (t *tx) CurrentVersion(ctx context.Context) (int64, error) {
	var v int64
	err := t.queryRow(ctx, currentVersionSQL).Scan(&v)
	return v, err
}

// Stores.

func (t *tx) ChangedStores(ctx context.Context, after, upTo int64, limit int) ([]string, bool, error) {
	var all bool
	if err := t.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM programs WHERE change_version > $1 AND change_version <= $2)
		OR EXISTS (SELECT 1 FROM signing_keys WHERE change_version > $1 AND change_version <= $2)`, after, upTo).Scan(&all); err != nil || all {
		return nil, all, err
	}
	var stores []string
	// Through the scope rows' own versions (member_stores_changed), not through members as on
	// SQLite: with the range a parameter, PostgreSQL plans that join as a hash join over every
	// scope row (26 ms with 100k of them, measured), where this index reads only the changed ones.
	err := t.each(ctx, `SELECT store FROM member_stores WHERE version > $1 AND version <= $2
		UNION SELECT id FROM stores WHERE version > $1 AND version <= $2 LIMIT $3`, []any{after, upTo, int64(limit) + 1}, func(rows pgx.Rows) error {
		var s string
		err := rows.Scan(&s)
		stores = append(stores, s)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if len(stores) > limit {
		return nil, true, nil
	}
	return stores, false, nil
}

func (t *tx) MarkStoreChanged(ctx context.Context, store string, version int64) error {
	_, err := t.exec(ctx, `UPDATE stores SET version = $1 WHERE id = $2`, version, store)
	return err
}

func (t *tx) InsertStore(ctx context.Context, s hub.StoreInfo) error {
	tag, err := t.exec(ctx, `INSERT INTO stores (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`,
		s.ID, s.Name, s.TokenHash, unixms.Of(s.CreatedAt))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.EDUPLICATE, "store %s already exists", s.ID)
	}
	return nil
}

// storeCols are a store's columns in storeFrom: its health is kept apart (migration 0023).
const storeCols = `s.id, s.name, s.token_hash, s.created_at, COALESCE(h.connected, false), COALESCE(h.last_seen, 0),
	COALESCE(h.clock_offset_ms, 0), COALESCE(h.outbox, 0), s.tz, s.flushed_at`

const storeFrom = `stores s LEFT JOIN store_health h ON h.store = s.id`

func scanStore(row pgx.Row) (hub.StoreInfo, error) {
	var s hub.StoreInfo
	var created, seen, flushed int64
	err := row.Scan(&s.ID, &s.Name, &s.TokenHash, &created, &s.Health.Connected, &seen, &s.Health.ClockOffsetMS, &s.Health.Outbox,
		&s.TimeZone, &flushed)
	s.CreatedAt, s.Health.LastSeen, s.FlushedAt = unixms.Time(created), unixms.Time(seen), unixms.Time(flushed)
	return s, err
}

const storeSQL = `SELECT ` + storeCols + ` FROM ` + storeFrom + ` WHERE s.id = $1`

func (t *tx) StoreInfo(ctx context.Context, id string) (hub.StoreInfo, error) {
	s, err := scanStore(t.queryRow(ctx, storeSQL, id))
	return s, notFound(err, "no store %q", id)
}

func (t *tx) StoresInfo(ctx context.Context, ids []string) (map[string]hub.StoreInfo, error) {
	out := make(map[string]hub.StoreInfo, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	err := t.each(ctx, `SELECT `+storeCols+` FROM `+storeFrom+` WHERE s.id = ANY ($1)`, []any{ids}, func(rows pgx.Rows) error {
		s, err := scanStore(rows)
		out[s.ID] = s
		return err
	})
	return out, err
}

func (t *tx) Stores(ctx context.Context) ([]hub.StoreInfo, error) {
	out := []hub.StoreInfo{}
	err := t.each(ctx, `SELECT `+storeCols+` FROM `+storeFrom+` ORDER BY s.id`, nil, func(rows pgx.Rows) error {
		s, err := scanStore(rows)
		out = append(out, s)
		return err
	})
	return out, err
}

func (t *tx) CountStores(ctx context.Context) (int, error) {
	var n int
	err := t.queryRow(ctx, `SELECT count(*) FROM stores`).Scan(&n)
	return n, err
}

// updateStore runs an UPDATE of one store, ENOTFOUND if there is none.
func (t *tx) updateStore(ctx context.Context, id, q string, args ...any) error {
	tag, err := t.exec(ctx, q, args...)
	if err != nil {
		return notFound(err, "no store %q", id)
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "no store %q", id)
	}
	return nil
}

func (t *tx) SetStoreToken(ctx context.Context, id, hash string) error {
	return t.updateStore(ctx, id, `UPDATE stores SET token_hash = $1 WHERE id = $2`, hash, id)
}

func (t *tx) SetStoreZone(ctx context.Context, id, tz string) error {
	return t.updateStore(ctx, id, `UPDATE stores SET tz = $1 WHERE id = $2`, tz, id)
}

func (t *tx) SetStoreHealth(ctx context.Context, id string, h hub.Health) error {
	_, err := t.exec(ctx, `INSERT INTO store_health (store, connected, last_seen, clock_offset_ms, outbox)
		SELECT id, $1, $2, $3, $4 FROM stores WHERE id = $5
		ON CONFLICT (store) DO UPDATE SET connected = excluded.connected, last_seen = excluded.last_seen,
			clock_offset_ms = excluded.clock_offset_ms, outbox = excluded.outbox`,
		h.Connected, unixms.Of(h.LastSeen), h.ClockOffsetMS, h.Outbox, id)
	return err
}

func (t *tx) MarkFlushed(ctx context.Context, store string, at time.Time) error {
	// At most one write a minute per store: the floor it sets may lag by that much.
	_, err := t.exec(ctx, `UPDATE stores SET flushed_at = $1 WHERE id = $2 AND flushed_at < $3`, unixms.Of(at), store, unixms.Of(at.Add(-time.Minute)))
	return err
}

func (t *tx) MarkProgramSent(ctx context.Context, store string, version int64, at time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO store_programs (store, version, sent_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		store, version, unixms.Of(at))
	return err
}

func (t *tx) ProgramsReceived(ctx context.Context, store string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE store_programs SET received_at = $1 WHERE store = $2 AND received_at = 0`, unixms.Of(at), store)
	return err
}

const unreceivedSQL = `SELECT EXISTS (SELECT 1 FROM store_programs WHERE store = $1 AND received_at = 0)`

func (t *tx) ProgramsUnreceived(ctx context.Context, store string) (bool, error) {
	var any bool
	err := t.queryRow(ctx, unreceivedSQL, store).Scan(&any)
	return any, err
}

const sentCols = `version, sent_at, received_at`

func scanSent(row pgx.Row) (hub.SentProgram, error) {
	var p hub.SentProgram
	var at, received int64
	err := row.Scan(&p.Version, &at, &received)
	p.At, p.Received = unixms.Time(at), unixms.Time(received)
	return p, err
}

func (t *tx) ProgramsSent(ctx context.Context, store string, from int64, n int) ([]hub.SentProgram, error) {
	var out []hub.SentProgram
	err := t.each(ctx, `SELECT `+sentCols+` FROM store_programs WHERE store = $1 AND version >= $2
		ORDER BY version LIMIT $3`, []any{store, from, limit(n)}, func(rows pgx.Rows) error {
		p, err := scanSent(rows)
		out = append(out, p)
		return err
	})
	return out, err
}

func (t *tx) ProgramsSentTo(ctx context.Context, stores []string, from int64, n int) (map[string][]hub.SentProgram, error) {
	out := make(map[string][]hub.SentProgram, len(stores))
	if len(stores) == 0 {
		return out, nil
	}
	// A store is sent a rule version once: a few rows each, numbered in the store's order.
	err := t.each(ctx, `SELECT store, `+sentCols+` FROM (
			SELECT store, `+sentCols+`, row_number() OVER (PARTITION BY store ORDER BY version) AS n
			FROM store_programs WHERE store = ANY ($1) AND version >= $2) AS s
		WHERE $3::bigint IS NULL OR n <= $3 ORDER BY store, version`, []any{stores, from, limit(n)}, func(rows pgx.Rows) error {
		var store string
		var p hub.SentProgram
		var at, received int64
		err := rows.Scan(&store, &p.Version, &at, &received)
		p.At, p.Received = unixms.Time(at), unixms.Time(received)
		out[store] = append(out[store], p)
		return err
	})
	return out, err
}

// Members.

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (t *tx) InsertMember(ctx context.Context, m loyalty.Member) error {
	var taken string
	err := t.queryRow(ctx, `SELECT CASE WHEN id = $1 THEN 'id' ELSE 'email' END FROM members WHERE id = $1 OR email = $2 LIMIT 1`,
		m.ID, nullable(m.Email)).Scan(&taken)
	if err == nil && taken == "id" {
		return loyalty.Errorf(loyalty.EDUPLICATE, "member id %s is taken", m.ID)
	} else if err == nil {
		return loyalty.Errorf(loyalty.EDUPLICATE, "email %s belongs to another member", m.Email)
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	// A new member's tier review is due at once: it places them in the entry tier (hub.Tx).
	_, err = t.exec(ctx, `INSERT INTO members (id, email, name, home_store, tier, country, balance, version, created_at, referred_by,
		birthday, review_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $9)`,
		m.ID, nullable(m.Email), m.Name, m.HomeStore, m.Tier, m.Country, m.Balance, m.Version, unixms.Of(m.CreatedAt), m.ReferredBy, m.Birthday)
	return err
}

const memberCols = `m.id, COALESCE(m.email, ''), m.name, m.home_store, m.tier, m.country, m.punches, m.balance, m.version, m.created_at,
	m.referred_by, m.referral_paid, m.erased_at IS NOT NULL`

// scanMember scans a row of memberCols, then the extra columns into extra.
func scanMember(row pgx.Row, extra ...any) (loyalty.Member, error) {
	var m loyalty.Member
	var created int64
	var punches string
	err := row.Scan(append([]any{&m.ID, &m.Email, &m.Name, &m.HomeStore, &m.Tier, &m.Country, &punches, &m.Balance, &m.Version, &created,
		&m.ReferredBy, &m.ReferralPaid, &m.Erased}, extra...)...)
	m.CreatedAt = unixms.Time(created)
	if err == nil && punches != "" {
		err = json.Unmarshal([]byte(punches), &m.Punches)
	}
	return m, err
}

func (t *tx) Member(ctx context.Context, id string) (loyalty.Member, error) {
	m, err := scanMember(t.queryRow(ctx, `SELECT `+memberCols+` FROM members m WHERE id = $1`, id))
	return m, notFound(err, "member %s is not known to the hub", id)
}

func (t *tx) MemberBirthday(ctx context.Context, id string) (string, error) {
	var b string
	err := t.queryRow(ctx, `SELECT birthday FROM members WHERE id = $1`, id).Scan(&b)
	return b, notFound(err, "member %s is not known to the hub", id)
}

func (t *tx) BirthdayMembers(ctx context.Context, day string, after string, n int) ([]loyalty.Member, error) {
	// right(birthday, 5) is the indexed expression (migration 0017): "MM-DD" of either form, then
	// the member's id.
	var out []loyalty.Member
	err := t.each(ctx, `SELECT `+memberCols+`, m.birthday FROM members m WHERE m.birthday <> '' AND right(m.birthday, 5) = $1
		AND m.id > $2 ORDER BY m.id LIMIT $3`, []any{day, after, limit(n)}, func(rows pgx.Rows) error {
		var birthday string
		m, err := scanMember(rows, &birthday)
		m.Birthday = birthday
		out = append(out, m)
		return err
	})
	return out, err
}

func (t *tx) SetReferralPaid(ctx context.Context, member, sale string) error {
	if _, err := t.exec(ctx, `UPDATE members SET referral_paid = $1 WHERE id = $2`, sale != "", member); err != nil {
		return err
	}
	if sale == "" {
		_, err := t.exec(ctx, `DELETE FROM referral_sales WHERE member = $1`, member)
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO referral_sales (member, delta_id) VALUES ($1, $2)
		ON CONFLICT (member) DO UPDATE SET delta_id = excluded.delta_id`, member, sale)
	return err
}

func (t *tx) ReferralSale(ctx context.Context, member string) (string, error) {
	var sale string
	err := t.queryRow(ctx, `SELECT delta_id FROM referral_sales WHERE member = $1`, member).Scan(&sale)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return sale, err
}

func (t *tx) Subscribe(ctx context.Context, store, member string) error {
	_, err := t.exec(ctx, `INSERT INTO member_stores (store, member, version) SELECT $1, id, version FROM members WHERE id = $2
		ON CONFLICT DO NOTHING`, store, member)
	return err
}

func (t *tx) Subscribed(ctx context.Context, store, member string) (bool, error) {
	var in bool
	err := t.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM member_stores WHERE store = $1 AND member = $2)`, store, member).Scan(&in)
	return in, err
}

func (t *tx) InScope(ctx context.Context, pairs [][2]string) (map[[2]string]bool, error) {
	in := make(map[[2]string]bool)
	if len(pairs) == 0 {
		return in, nil
	}
	stores, members := make([]string, len(pairs)), make([]string, len(pairs))
	for i, p := range pairs {
		stores[i], members[i] = p[0], p[1]
	}
	err := t.each(ctx, `SELECT s.store, s.member FROM unnest($1::text[], $2::text[]) AS j(store, member)
		JOIN member_stores s ON s.store = j.store AND s.member = j.member`, []any{stores, members}, func(rows pgx.Rows) error {
		var p [2]string
		err := rows.Scan(&p[0], &p[1])
		in[p] = true
		return err
	})
	return in, err
}

func (t *tx) Unsubscribe(ctx context.Context, store, member string) error {
	_, err := t.exec(ctx, `DELETE FROM member_stores WHERE store = $1 AND member = $2`, store, member)
	return err
}

func (t *tx) SubscribeAll(ctx context.Context, scopes map[string][]string) error {
	var stores, members []string
	for store, ms := range scopes {
		for _, m := range ms {
			stores, members = append(stores, store), append(members, m)
		}
	}
	if len(members) == 0 {
		return nil
	}
	// With the members' versions, as Subscribe: the trigger that would look each one up
	// (migration 0004) is not called (migration 0016).
	_, err := t.exec(ctx, `INSERT INTO member_stores (store, member, version)
		SELECT u.store, m.id, m.version FROM unnest($1::text[], $2::text[]) AS u (store, member) JOIN members m ON m.id = u.member
		ORDER BY u.store, m.id ON CONFLICT DO NOTHING`, stores, members)
	return err
}

func (t *tx) queryMembers(ctx context.Context, q string, args ...any) ([]loyalty.Member, error) {
	var out []loyalty.Member
	err := t.each(ctx, q, args, func(rows pgx.Rows) error {
		m, err := scanMember(rows)
		out = append(out, m)
		return err
	})
	return out, err
}

const membersSinceSQL = `SELECT ` + memberCols + ` FROM member_stores s JOIN members m ON m.id = s.member
	WHERE s.store = $1 AND s.version > $2 ORDER BY s.version LIMIT $3`

func (t *tx) MembersSince(ctx context.Context, store string, cursor int64, n int) ([]loyalty.Member, error) {
	return t.queryMembers(ctx, membersSinceSQL, store, cursor, limit(n))
}

func (t *tx) Members(ctx context.Context, after string, n int) ([]loyalty.Member, error) {
	return t.queryMembers(ctx, `SELECT `+memberCols+` FROM members m WHERE id > $1 ORDER BY id LIMIT $2`, after, limit(n))
}

// The ledger.

// deltaBody stores the whole delta as JSON beside its columns, so that a ledger entry
// reproduces every field of the delta, including those without a column (lines, leases, …).
func deltaBody(d loyalty.Delta) string {
	b, _ := json.Marshal(d)
	return string(b)
}

func (t *tx) InsertDelta(ctx context.Context, d loyalty.Delta, hash string, receivedAt time.Time) (int64, bool, error) {
	var seq int64
	err := t.queryRow(ctx, `INSERT INTO deltas (id, hash, store, terminal, member, kind, points, amount, currency, reward, voucher,
		order_id, reverses, rule_version, occurred_at, received_at, event_at, body, rule)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
		ON CONFLICT (id) DO NOTHING RETURNING seq`,
		d.ID, hash, d.Store, d.Terminal, d.Member, string(d.Kind), d.Points, d.Amount, d.Currency, d.Reward, d.Voucher,
		d.OrderID, d.Reverses, d.RuleVersion, unixms.Of(d.OccurredAt), unixms.Of(receivedAt), unixms.Of(d.EventTime()), deltaBody(d), d.Rule).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) { // the id is in the ledger already
		e, err := t.Delta(ctx, d.ID)
		return e.Seq, false, err
	}
	return seq, err == nil, err
}

func (t *tx) InsertDeltas(ctx context.Context, ds []hub.NewDelta) ([]int64, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	// One statement for the batch, a column per array (checkArgs refuses text PostgreSQL cannot
	// store, as for one delta); WITH ORDINALITY and ORDER BY insert the rows, and so number them,
	// in the batch's order. Without ON CONFLICT: a delta of the batch in the ledger already fails
	// the statement (the caller checked there was none; a concurrent transaction that inserts
	// one makes this one's serialization fail, and it is retried).
	n := len(ds)
	var (
		ids, hashes, stores, terminals, members, kinds, currencies = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		rewards, vouchers, orders, reverses, bodies, rules         = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		points, amounts, versions, occurred, received, events      = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	)
	for i, nd := range ds {
		d := nd.Delta
		ids[i], hashes[i], stores[i], terminals[i], members[i], kinds[i] = d.ID, nd.Hash, d.Store, d.Terminal, d.Member, string(d.Kind)
		points[i], amounts[i], currencies[i], rewards[i], vouchers[i] = d.Points, d.Amount, d.Currency, d.Reward, d.Voucher
		orders[i], reverses[i], versions[i], occurred[i], received[i] = d.OrderID, d.Reverses, d.RuleVersion, unixms.Of(d.OccurredAt), unixms.Of(nd.ReceivedAt)
		events[i], bodies[i], rules[i] = unixms.Of(d.EventTime()), deltaBody(d), d.Rule
	}
	got := make(map[string]int64, n)
	err := t.each(ctx, `INSERT INTO deltas (id, hash, store, terminal, member, kind, points, amount, currency, reward, voucher,
			order_id, reverses, rule_version, occurred_at, received_at, event_at, body, rule)
		SELECT id, hash, store, terminal, member, kind, points, amount, currency, reward, voucher,
			order_id, reverses, rule_version, occurred_at, received_at, event_at, body, rule
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::text[],
			$10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::text[], $19::text[])
			WITH ORDINALITY AS u (id, hash, store, terminal, member, kind, points, amount, currency, reward, voucher,
				order_id, reverses, rule_version, occurred_at, received_at, event_at, body, rule, n)
		ORDER BY n
		RETURNING id, seq`,
		[]any{ids, hashes, stores, terminals, members, kinds, points, amounts, currencies, rewards, vouchers, orders, reverses, versions,
			occurred, received, events, bodies, rules}, func(rows pgx.Rows) error {
			var id string
			var seq int64
			err := rows.Scan(&id, &seq)
			got[id] = seq
			return err
		})
	if err != nil {
		return nil, err
	}
	seqs := make([]int64, n)
	for i, id := range ids {
		var ok bool
		if seqs[i], ok = got[id]; !ok {
			return nil, fmt.Errorf("postgres: delta %s of a batch was not inserted", id)
		}
	}
	return seqs, nil
}

const deltaCols = `seq, id, hash, store, terminal, member, kind, points, amount, currency, reward, voucher, order_id, reverses,
	rule_version, occurred_at, received_at, body`

func scanDelta(row pgx.Row) (hub.LedgerEntry, error) {
	var e hub.LedgerEntry
	var occurred, received int64
	var kind, extras string
	err := row.Scan(&e.Seq, &e.ID, &e.Hash, &e.Store, &e.Terminal, &e.Member, &kind, &e.Points, &e.Amount, &e.Currency,
		&e.Reward, &e.Voucher, &e.OrderID, &e.Reverses, &e.RuleVersion, &occurred, &received, &extras)
	e.Kind, e.OccurredAt, e.ReceivedAt = loyalty.Kind(kind), unixms.Time(occurred), unixms.Time(received)
	if err == nil && extras != "" {
		err = json.Unmarshal([]byte(extras), &e.Delta)
	}
	return e, err
}

func (t *tx) Delta(ctx context.Context, id string) (hub.LedgerEntry, error) {
	e, err := scanDelta(t.queryRow(ctx, `SELECT `+deltaCols+` FROM deltas WHERE id = $1`, id))
	return e, notFound(err, "no delta %s", id)
}

func (t *tx) DeltaHashes(ctx context.Context, ids []string) (map[string]hub.DeltaRef, error) {
	out := make(map[string]hub.DeltaRef, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	err := t.each(ctx, `SELECT id, seq, hash FROM deltas WHERE id = ANY ($1)`, []any{plannedPerCall, ids}, func(rows pgx.Rows) error {
		var id string
		var r hub.DeltaRef
		err := rows.Scan(&id, &r.Seq, &r.Hash)
		out[id] = r
		return err
	})
	return out, err
}

func (t *tx) queryDeltas(ctx context.Context, q string, args ...any) ([]hub.LedgerEntry, error) {
	out := []hub.LedgerEntry{}
	err := t.each(ctx, q, args, func(rows pgx.Rows) error {
		e, err := scanDelta(rows)
		out = append(out, e)
		return err
	})
	return out, err
}

func (t *tx) Ledger(ctx context.Context, member string, n int) ([]hub.LedgerEntry, error) {
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE member = $1 ORDER BY seq DESC LIMIT $2`, member, limit(n))
}

func (t *tx) LedgerSum(ctx context.Context, member string) (int64, error) {
	var sum int64
	err := t.queryRow(ctx, `SELECT COALESCE(sum(points), 0)::bigint FROM deltas WHERE member = $1`, member).Scan(&sum)
	return sum, err
}

func (t *tx) Reversals(ctx context.Context, id string) ([]hub.LedgerEntry, error) {
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE reverses = $1 AND reverses <> '' ORDER BY seq`, id)
}

func (t *tx) ReversalOf(ctx context.Context, id string) (string, error) {
	var by string
	err := t.queryRow(ctx, `SELECT id FROM deltas WHERE reverses = $1 AND reverses <> '' LIMIT 1`, id).Scan(&by)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return by, err
}

func (t *tx) OrderDeltas(ctx context.Context, store, orderID string) ([]hub.LedgerEntry, error) {
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE store = $1 AND order_id = $2 AND order_id <> '' ORDER BY seq`,
		store, orderID)
}

func (t *tx) TierChanges(ctx context.Context, member string, until time.Time, n int) ([]hub.TierChange, error) {
	var out []hub.TierChange
	err := t.each(ctx, `SELECT event_at, body FROM deltas WHERE member = $1 AND kind = 'tier' AND event_at <= $2
		ORDER BY event_at DESC, seq DESC LIMIT $3`, []any{member, unixms.Of(until), limit(n)}, func(rows pgx.Rows) error {
		var at int64
		var body string
		if err := rows.Scan(&at, &body); err != nil {
			return err
		}
		var d loyalty.Delta
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			return err
		}
		out = append(out, hub.TierChange{At: unixms.Time(at), Tier: d.Tier})
		return nil
	})
	return out, err
}

// Vouchers.

func (t *tx) VoucherUses(ctx context.Context, voucher string) ([]string, error) {
	var ids []string
	err := t.each(ctx, `SELECT d.id FROM deltas d WHERE d.voucher = $1 AND d.voucher <> '' AND d.kind = 'redeem'
		AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.reverses <> '') ORDER BY d.seq`, []any{voucher}, func(rows pgx.Rows) error {
		var id string
		err := rows.Scan(&id)
		ids = append(ids, id)
		return err
	})
	return ids, err
}

func (t *tx) OpenVouchers(ctx context.Context, member string, now time.Time, limit int) ([]hub.Voucher, error) {
	var out []hub.Voucher
	err := t.each(ctx, `SELECT `+voucherCols+` FROM vouchers v
		WHERE v.member = $1 AND v.voided_at = 0 AND (v.expires_at = 0 OR v.expires_at > $2)
			AND NOT EXISTS (SELECT 1 FROM deltas d WHERE d.voucher = v.id AND d.voucher <> '' AND d.kind = 'redeem'
				AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.reverses <> ''))
		ORDER BY v.created_at, v.id LIMIT $3`, []any{member, unixms.Of(now), int64(limit)}, func(rows pgx.Rows) error {
		v, err := scanVoucher(rows)
		out = append(out, v)
		return err
	})
	return out, err
}

// voucherCols are a voucher's columns, as scanVoucher reads them.
const voucherCols = `id, member, reward, delta_id, token, created_at, expires_at, voided_at`

func scanVoucher(row pgx.Row) (hub.Voucher, error) {
	var v hub.Voucher
	var created, expires, voided int64
	err := row.Scan(&v.ID, &v.Member, &v.Reward, &v.DeltaID, &v.Token, &created, &expires, &voided)
	v.CreatedAt, v.ExpiresAt, v.VoidedAt = unixms.Time(created), unixms.Time(expires), unixms.Time(voided)
	return v, err
}

func (t *tx) InsertVoucher(ctx context.Context, v hub.Voucher) error {
	_, err := t.exec(ctx, `INSERT INTO vouchers (id, member, reward, delta_id, token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		v.ID, v.Member, v.Reward, v.DeltaID, v.Token, unixms.Of(v.CreatedAt), unixms.Of(v.ExpiresAt))
	return err
}

func (t *tx) voucher(ctx context.Context, where string, arg string) (hub.Voucher, error) {
	return scanVoucher(t.queryRow(ctx, `SELECT `+voucherCols+` FROM vouchers WHERE `+where, arg))
}

func (t *tx) Voucher(ctx context.Context, id string) (hub.Voucher, error) {
	v, err := t.voucher(ctx, "id = $1", id)
	return v, notFound(err, "no voucher %s", id)
}

func (t *tx) VoucherPaidBy(ctx context.Context, delta string) (hub.Voucher, error) {
	v, err := t.voucher(ctx, "delta_id = $1", delta)
	return v, notFound(err, "delta %s paid for no voucher", delta)
}

func (t *tx) VoidVoucher(ctx context.Context, id string, at time.Time) error {
	_, err := t.exec(ctx, `UPDATE vouchers SET voided_at = $1 WHERE id = $2`, unixms.Of(at), id)
	return err
}

// Rejections and conflicts.

func (t *tx) InsertRejection(ctx context.Context, r hub.Rejection) error {
	b, err := json.Marshal(r.Delta)
	if err != nil {
		return err
	}
	// A rejection must be recorded whatever the delta holds, or its store would push it again
	// forever: the key and message are made storable (the delta itself is JSON, escaped).
	_, err = t.exec(ctx, `INSERT INTO rejections (delta_id, store, delta, code, message, at, hash, member) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (store, delta_id) DO NOTHING`,
		sanitize(r.Delta.ID), sanitize(r.Store), string(b), sanitize(r.Code), sanitize(r.Message), unixms.Of(r.At), r.Hash, sanitize(r.Delta.Member))
	return err
}

func (t *tx) RejectedAs(ctx context.Context, pairs [][2]string) (map[[2]string]hub.Rejection, error) {
	out := make(map[[2]string]hub.Rejection)
	if len(pairs) == 0 {
		return out, nil
	}
	stores, ids := make([]string, len(pairs)), make([]string, len(pairs))
	for i, p := range pairs {
		stores[i], ids[i] = p[0], p[1]
	}
	err := t.each(ctx, `SELECT r.delta_id, r.store, r.delta, r.code, r.message, r.at, r.hash
		FROM unnest($1::text[], $2::text[]) AS j(store, delta_id)
		JOIN rejections r ON r.store = j.store AND r.delta_id = j.delta_id`, []any{stores, ids}, func(rows pgx.Rows) error {
		var id, body string
		var r hub.Rejection
		var at int64
		if err := rows.Scan(&id, &r.Store, &body, &r.Code, &r.Message, &at, &r.Hash); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(body), &r.Delta); err != nil {
			return err
		}
		r.At = unixms.Time(at)
		out[[2]string{r.Store, id}] = r
		return nil
	})
	return out, err
}

func (t *tx) Rejections(ctx context.Context, n int) ([]hub.Rejection, error) {
	return t.queryRejections(ctx, `ORDER BY at DESC, seq DESC LIMIT $1`, limit(n))
}

// RejectionsPage reads rejections_at for the time, and sorts the few of one time by store and id.
func (t *tx) RejectionsPage(ctx context.Context, after hub.RejectionKey, n int) ([]hub.Rejection, error) {
	from := int64(math.MinInt64)
	if after != (hub.RejectionKey{}) {
		from = unixms.Of(after.At)
	}
	return t.queryRejections(ctx, `WHERE at >= $1 AND (at, store, delta_id) > ($1, $2, $3) ORDER BY at, store, delta_id LIMIT $4`,
		from, after.Store, after.Delta, limit(n))
}

// queryRejections reads the rejections that tail (a WHERE, ORDER BY and LIMIT) selects.
func (t *tx) queryRejections(ctx context.Context, tail string, args ...any) ([]hub.Rejection, error) {
	out := []hub.Rejection{}
	err := t.each(ctx, `SELECT store, delta, code, message, at FROM rejections `+tail, args,
		func(rows pgx.Rows) error {
			var r hub.Rejection
			var body string
			var at int64
			if err := rows.Scan(&r.Store, &body, &r.Code, &r.Message, &at); err != nil {
				return err
			}
			r.At = unixms.Time(at)
			out = append(out, r)
			return json.Unmarshal([]byte(body), &out[len(out)-1].Delta)
		})
	return out, err
}

func (t *tx) InsertConflict(ctx context.Context, c hub.Conflict) (int64, error) {
	if c.Deltas == nil {
		c.Deltas = []string{} // an empty array; nil would be NULL
	}
	var id int64
	err := t.queryRow(ctx, `INSERT INTO conflicts (kind, member, store, deltas, amount, detail, at, flagged) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		c.Kind, c.Member, c.Store, c.Deltas, c.Amount, c.Detail, unixms.Of(c.At), c.Flagged).Scan(&id)
	return id, err
}

func (t *tx) Conflicts(ctx context.Context, before int64, n int) ([]hub.Conflict, error) {
	where, args := `WHERE id < $2`, []any{limit(n), before}
	if before <= 0 {
		where, args = "", args[:1]
	}
	out := []hub.Conflict{}
	err := t.each(ctx, `SELECT id, kind, member, store, deltas, amount, detail, at, flagged FROM conflicts `+where+` ORDER BY id DESC LIMIT $1`,
		args, func(rows pgx.Rows) error {
			var c hub.Conflict
			var at int64
			err := rows.Scan(&c.ID, &c.Kind, &c.Member, &c.Store, &c.Deltas, &c.Amount, &c.Detail, &at, &c.Flagged)
			c.At = unixms.Time(at)
			out = append(out, c)
			return err
		})
	return out, err
}

// Programs.

const programSQL = `SELECT body, change_version FROM programs ORDER BY version DESC LIMIT 1`

func (t *tx) Program(ctx context.Context) (loyalty.Program, int64, error) {
	var body string
	var cv int64
	err := t.queryRow(ctx, programSQL).Scan(&body, &cv)
	if err != nil {
		return loyalty.Program{}, 0, notFound(err, "no program yet")
	}
	p, err := loyalty.DecodeProgram(body)
	return p, cv, err
}

func (t *tx) ProgramVersion(ctx context.Context, v int64) (loyalty.Program, error) {
	var body string
	if err := t.queryRow(ctx, `SELECT body FROM programs WHERE version = $1`, v).Scan(&body); err != nil {
		return loyalty.Program{}, notFound(err, "rule version %d is unknown to the hub", v)
	}
	return loyalty.DecodeProgram(body)
}

func (t *tx) InsertProgram(ctx context.Context, p loyalty.Program, changeVersion int64, at time.Time) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO programs (version, body, change_version, published_at) VALUES ($1, $2, $3, $4)`,
		p.Version, string(b), changeVersion, unixms.Of(at))
	return err
}

func (t *tx) ProgramPublished(ctx context.Context, v int64) (int64, time.Time, error) {
	var cv, at int64
	if err := t.queryRow(ctx, `SELECT change_version, published_at FROM programs WHERE version = $1`, v).Scan(&cv, &at); err != nil {
		return 0, time.Time{}, notFound(err, "rule version %d is unknown to the hub", v)
	}
	return cv, unixms.Time(at), nil
}

func (t *tx) ProgramVersionAt(ctx context.Context, at time.Time) (int64, error) {
	var v int64
	err := t.queryRow(ctx, `SELECT COALESCE(max(version), 0) FROM programs WHERE published_at <= $1`, unixms.Of(at)).Scan(&v)
	return v, err
}

// Idempotency.

func (t *tx) Idempotent(ctx context.Context, scope, key string) (string, []byte, bool, error) {
	return t.idempotent(ctx, `SELECT hash, response FROM idempotency WHERE scope = $1 AND key = $2`, scope, key)
}

func (t *tx) LegacyIdempotent(ctx context.Context, scope, key string) (string, []byte, bool, error) {
	return t.idempotent(ctx, `SELECT hash, response FROM idempotency WHERE scope = $1 AND key = $2 AND legacy`, scope, key)
}

func (t *tx) idempotent(ctx context.Context, q, scope, key string) (string, []byte, bool, error) {
	var hash, resp string
	err := t.queryRow(ctx, q, scope, key).Scan(&hash, &resp)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, false, nil
	}
	return hash, []byte(resp), err == nil, err
}

func (t *tx) SaveIdempotent(ctx context.Context, scope, key, hash string, response []byte, at time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO idempotency (scope, key, hash, response, at) VALUES ($1, $2, $3, $4, $5)`,
		scope, key, hash, string(response), unixms.Of(at))
	return err
}

// Budgets and leases.

const budgetSpentSQL = `SELECT spent FROM budget_usage WHERE budget = $1`

func (t *tx) BudgetSpent(ctx context.Context, budget string) (int64, error) {
	var v int64
	err := t.queryRow(ctx, budgetSpentSQL, budget).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func (t *tx) AddBudgetSpent(ctx context.Context, budget string, x int64) error {
	_, err := t.exec(ctx, `INSERT INTO budget_usage (budget, spent) VALUES ($1, $2)
		ON CONFLICT (budget) DO UPDATE SET spent = budget_usage.spent + excluded.spent`, budget, x)
	return err
}

func (t *tx) InsertCharge(ctx context.Context, c hub.Charge) error {
	_, err := t.exec(ctx, `INSERT INTO budget_charges (delta, budget, lease, amount, spared, carried) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.Delta, c.Budget, c.Lease, c.Amount, c.Spared, c.Carried)
	return err
}

func (t *tx) CarryCharge(ctx context.Context, delta, budget string, x int64) error {
	_, err := t.exec(ctx, `UPDATE budget_charges SET carried = carried + $1 WHERE delta = $2 AND budget = $3`, x, delta, budget)
	return err
}

func (t *tx) Charges(ctx context.Context, delta string) ([]hub.Charge, error) {
	var seq, from int64
	err := t.queryRow(ctx, `SELECT (SELECT seq FROM deltas WHERE id = $1), value FROM counters WHERE name = 'charges_from'`, delta).Scan(&seq, &from)
	if err != nil {
		return nil, err
	}
	if seq <= from {
		return nil, loyalty.Errorf(loyalty.ENOTFOUND, "no charges recorded for %s", delta)
	}
	cs := []hub.Charge{}
	err = t.each(ctx, `SELECT budget, lease, amount, spared, carried FROM budget_charges WHERE delta = $1 ORDER BY budget`, []any{delta}, func(rows pgx.Rows) error {
		c := hub.Charge{Delta: delta}
		err := rows.Scan(&c.Budget, &c.Lease, &c.Amount, &c.Spared, &c.Carried)
		cs = append(cs, c)
		return err
	})
	return cs, err
}

const outstandingSQL = `SELECT COALESCE((SELECT amount FROM lease_outstanding WHERE budget = $1), 0)`

func (t *tx) Outstanding(ctx context.Context, budget string) (int64, error) {
	var v int64
	// A running total (migration 0011), not a sum over every store's lease.
	err := t.queryRow(ctx, outstandingSQL, budget).Scan(&v)
	return v, err
}

func (t *tx) Wanted(ctx context.Context, budget string) (int64, error) {
	var v int64
	err := t.queryRow(ctx, `SELECT COALESCE(sum(wanted), 0)::bigint FROM leases WHERE budget = $1 AND state = 'active'`, budget).Scan(&v)
	return v, err
}

const leaseCols = `id, store, budget, granted, consumed, state, expires_at, created_at, reclaiming, reclaim_session, wanted`

func scanLease(row pgx.Row) (hub.Lease, error) {
	var l hub.Lease
	var exp, created, session int64
	if err := row.Scan(&l.ID, &l.Store, &l.Budget, &l.Granted, &l.Consumed, &l.State, &exp, &created,
		&l.Reclaiming, &session, &l.Wanted); err != nil {
		return l, err
	}
	l.ExpiresAt, l.CreatedAt = unixms.Time(exp), unixms.Time(created)
	if session != 0 {
		l.ReclaimSession = time.Unix(0, session).UTC()
	}
	return l, nil
}

func (t *tx) queryLeases(ctx context.Context, where string, args ...any) ([]hub.Lease, error) {
	var out []hub.Lease
	err := t.each(ctx, `SELECT `+leaseCols+` FROM leases WHERE `+where, args, func(rows pgx.Rows) error {
		l, err := scanLease(rows)
		out = append(out, l)
		return err
	})
	return out, err
}

func (t *tx) Lease(ctx context.Context, id string) (hub.Lease, error) {
	ls, err := t.queryLeases(ctx, `id = $1`, id)
	if err != nil {
		return hub.Lease{}, notFound(err, "no lease %s", id)
	}
	if len(ls) == 0 {
		return hub.Lease{}, loyalty.Errorf(loyalty.ENOTFOUND, "no lease %s", id)
	}
	return ls[0], nil
}

const storeLeases = `store = $1 AND state <> 'settled' ORDER BY created_at, id`

func (t *tx) Leases(ctx context.Context, store string) ([]hub.Lease, error) {
	return t.queryLeases(ctx, storeLeases, store)
}

// PullHead sends the pull's first reads in one round trip (tx.pipeline). Whether the current
// rule version was sent to the store is asked of the newest program in the same statement.
func (t *tx) PullHead(ctx context.Context, store string, cursor int64, n int) (hub.PullHead, error) {
	var h hub.PullHead
	var body string
	var versions, programs, stores int
	err := t.pipeline(ctx,
		read{currentVersionSQL, nil, func(r pgx.Rows) error { versions++; return r.Scan(&h.Version) }},
		read{membersSinceSQL, []any{store, cursor, limit(n)}, func(r pgx.Rows) error {
			m, err := scanMember(r)
			h.Members = append(h.Members, m)
			return err
		}},
		read{programSQL, nil, func(r pgx.Rows) error { programs++; return r.Scan(&body, &h.ProgramVersion) }},
		read{publicKeysSQL, nil, func(r pgx.Rows) error {
			k, err := scanVersionedKey(r)
			h.Keys = append(h.Keys, k)
			return err
		}},
		read{unreceivedSQL, []any{store}, func(r pgx.Rows) error { return r.Scan(&h.Unreceived) }},
		read{`SELECT ` + sentCols + ` FROM store_programs WHERE store = $1
			AND version >= (SELECT version FROM programs ORDER BY version DESC LIMIT 1) ORDER BY version LIMIT 1`,
			[]any{store}, func(r pgx.Rows) error {
				p, err := scanSent(r)
				h.Sent = append(h.Sent, p)
				return err
			}},
		read{storeSQL, []any{store}, func(r pgx.Rows) error {
			stores++
			var err error
			h.Store, err = scanStore(r)
			return err
		}},
		read{`SELECT ` + leaseCols + ` FROM leases WHERE ` + storeLeases, []any{store}, func(r pgx.Rows) error {
			l, err := scanLease(r)
			h.Leases = append(h.Leases, l)
			return err
		}},
	)
	switch {
	case err != nil:
		return h, err
	case versions == 0:
		return h, errors.New("the change version is missing")
	case programs == 0:
		return h, loyalty.Errorf(loyalty.ENOTFOUND, "no program yet")
	}
	if h.Program, err = loyalty.DecodeProgram(body); err != nil {
		return h, err
	}
	if stores == 0 {
		return h, loyalty.Errorf(loyalty.ENOTFOUND, "no store %q", store)
	}
	return h, nil
}

func (t *tx) BudgetLeases(ctx context.Context, budget string) ([]hub.Lease, error) {
	return t.queryLeases(ctx, `budget = $1 AND state <> 'settled' ORDER BY store, id`, budget)
}

func (t *tx) ExpiredLeases(ctx context.Context, at time.Time) ([]hub.Lease, error) {
	return t.queryLeases(ctx, `state = 'active' AND expires_at < $1 ORDER BY expires_at, id`, unixms.Of(at))
}

func (t *tx) PutLease(ctx context.Context, l hub.Lease, e hub.LeaseEvent) error {
	var session int64
	if !l.ReclaimSession.IsZero() {
		session = l.ReclaimSession.UnixNano()
	}
	_, err := t.exec(ctx, `INSERT INTO leases (`+leaseCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (id) DO UPDATE SET granted = excluded.granted, consumed = excluded.consumed, state = excluded.state,
			expires_at = excluded.expires_at, reclaiming = excluded.reclaiming, reclaim_session = excluded.reclaim_session,
			wanted = excluded.wanted`,
		l.ID, l.Store, l.Budget, l.Granted, l.Consumed, l.State, unixms.Of(l.ExpiresAt), unixms.Of(l.CreatedAt), l.Reclaiming, session, l.Wanted)
	if err != nil || e.Kind == "" {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO lease_events (lease, store, budget, kind, amount, at) VALUES ($1, $2, $3, $4, $5, $6)`,
		e.Lease, e.Store, e.Budget, e.Kind, e.Amount, unixms.Of(e.At))
	return err
}

func (t *tx) WatchSince(ctx context.Context, store, budget string, at time.Time) (time.Time, error) {
	if _, err := t.exec(ctx, `INSERT INTO lease_watch (store, budget, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		store, budget, unixms.Of(at)); err != nil {
		return time.Time{}, err
	}
	var since int64
	err := t.queryRow(ctx, `SELECT since FROM lease_watch WHERE store = $1 AND budget = $2`, store, budget).Scan(&since)
	return unixms.Time(since), err
}

const watchedSQL = `SELECT since FROM lease_watch WHERE store = $1 AND budget = $2`

func (t *tx) Watched(ctx context.Context, store, budget string) (time.Time, error) {
	var since int64
	err := t.queryRow(ctx, watchedSQL, store, budget).Scan(&since)
	return unixms.Time(since), notFound(err, "no demand of budget %s recorded for store %s", budget, store)
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
		if _, err := t.exec(ctx, `INSERT INTO lease_demand (store, budget, hour, amount, largest) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (store, budget, hour) DO UPDATE SET amount = lease_demand.amount + excluded.amount,
				largest = greatest(lease_demand.largest, excluded.largest)`,
			row.store, budget, hourOf(at), row.amount, amount); err != nil {
			return err
		}
	}
	return nil
}

const demandSQL = `SELECT hour, amount FROM lease_demand WHERE store = $1 AND budget = $2 AND hour >= $3 ORDER BY hour`

func scanDemand(row pgx.Row) (hub.DemandHour, error) {
	var h hub.DemandHour
	var hour int64
	err := row.Scan(&hour, &h.Amount)
	h.Hour = unixms.Time(hour)
	return h, err
}

func (t *tx) Demand(ctx context.Context, store, budget string, since time.Time) ([]hub.DemandHour, error) {
	var out []hub.DemandHour
	err := t.each(ctx, demandSQL, []any{store, budget, hourOf(since)}, func(rows pgx.Rows) error {
		h, err := scanDemand(rows)
		out = append(out, h)
		return err
	})
	return out, err
}

const largestChargeSQL = `SELECT COALESCE(max(largest), 0) FROM lease_demand WHERE store = $1 AND budget = $2 AND hour >= $3`

func (t *tx) LargestCharge(ctx context.Context, budget string, since time.Time) (int64, error) {
	var v int64
	err := t.queryRow(ctx, largestChargeSQL, chainWide, budget, hourOf(since)).Scan(&v)
	return v, err
}

// BudgetFigures sends the reads it stands for, those of every budget, in one round trip
// (tx.pipeline): each a small statement PostgreSQL plans once.
func (t *tx) BudgetFigures(ctx context.Context, store string, budgets []string, since time.Time) (map[string]hub.BudgetFigures, error) {
	figures := make([]hub.BudgetFigures, len(budgets))
	reads := make([]read, 0, 5*len(budgets))
	hour := hourOf(since)
	for i, b := range budgets {
		f := &figures[i]
		reads = append(reads,
			read{budgetSpentSQL, []any{b}, func(r pgx.Rows) error { return r.Scan(&f.Spent) }},
			read{outstandingSQL, []any{b}, func(r pgx.Rows) error { return r.Scan(&f.Outstanding) }},
			read{largestChargeSQL, []any{chainWide, b, hour}, func(r pgx.Rows) error { return r.Scan(&f.Largest) }},
			read{demandSQL, []any{store, b, hour}, func(r pgx.Rows) error {
				h, err := scanDemand(r)
				f.Demand = append(f.Demand, h)
				return err
			}},
			read{watchedSQL, []any{store, b}, func(r pgx.Rows) error {
				var since int64
				err := r.Scan(&since)
				f.Watched = unixms.Time(since)
				return err
			}})
	}
	if len(reads) > 0 {
		if err := t.pipeline(ctx, reads...); err != nil {
			return nil, err
		}
	}
	out := make(map[string]hub.BudgetFigures, len(budgets))
	for i, b := range budgets {
		out[b] = figures[i]
	}
	return out, nil
}

func (t *tx) PruneDemand(ctx context.Context, before time.Time) error {
	_, err := t.exec(ctx, `DELETE FROM lease_demand WHERE hour < $1`, hourOf(before))
	return err
}

// What the program's rules count of a member's history.

func (t *tx) MemberRedemptions(ctx context.Context, member, reward string, since, upTo time.Time) (int64, error) {
	var n int64
	err := t.queryRow(ctx, `SELECT count(*) FROM deltas d WHERE d.member = $1 AND d.kind = 'redeem' AND d.event_at >= $2 AND d.event_at < $3
		AND d.voucher = '' AND ($4 = '' OR d.reward = $4) AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.reverses <> '')`,
		member, unixms.Of(since), unixms.Until(upTo), reward).Scan(&n)
	return n, err
}

func (t *tx) MemberEarned(ctx context.Context, member, rule string, since, upTo time.Time) (int64, error) {
	// The earns of the period, less what reversals of them took back (reversal points are negative).
	var n int64
	err := t.queryRow(ctx, `SELECT (COALESCE(sum(d.points), 0) - COALESCE((SELECT sum(-r.points) FROM deltas r
			JOIN deltas o ON o.id = r.reverses WHERE r.member = $1 AND o.kind = 'earn' AND o.rule = $2 AND o.event_at >= $3 AND o.event_at < $4), 0))::bigint
		FROM deltas d WHERE d.member = $1 AND d.kind = 'earn' AND d.rule = $2 AND d.event_at >= $3 AND d.event_at < $4`,
		member, rule, unixms.Of(since), unixms.Until(upTo)).Scan(&n)
	return n, err
}

func (t *tx) RuleCount(ctx context.Context, member, rule string, since, upTo time.Time) (int64, error) {
	var n int64
	err := t.queryRow(ctx, `SELECT count(*) FROM deltas d WHERE d.member = $1 AND d.kind = 'earn' AND d.rule = $2 AND d.event_at >= $3
		AND d.event_at < $4 AND NOT EXISTS (SELECT 1 FROM deltas r WHERE r.reverses = d.id AND r.reverses <> '')`, member, rule, unixms.Of(since), unixms.Until(upTo)).Scan(&n)
	return n, err
}

// LotsDrift finds nothing: lots are read from the ledger.
func (t *tx) LotsDrift(ctx context.Context, after, last string, most int) ([]string, error) {
	return nil, nil
}

func (t *tx) Lots(ctx context.Context, member string, since time.Time) ([]loyalty.Lot, error) {
	lots, err := t.LotsOf(ctx, []string{member}, since)
	return lots[member], err
}
