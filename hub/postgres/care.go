package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Member care (hub.CareTx).

func (t *tx) MemberProfile(ctx context.Context, id string) (hub.Profile, error) {
	var p hub.Profile
	var attrs string
	var erased sql.NullInt64
	err := t.queryRow(ctx, `SELECT COALESCE(email, ''), name, country, birthday, attributes, erased_at FROM members WHERE id = $1`, id).
		Scan(&p.Email, &p.Name, &p.Country, &p.Birthday, &attrs, &erased)
	if err != nil {
		return p, notFound(err, "member %s is not known to the hub", id)
	}
	if erased.Valid {
		p.ErasedAt = unixms.Time(erased.Int64)
	}
	if attrs != "" {
		err = json.Unmarshal([]byte(attrs), &p.Attributes)
	}
	return p, err
}

func (t *tx) SetMemberProfile(ctx context.Context, id string, p hub.Profile, version int64) error {
	if p.Email != "" {
		var other string
		err := t.queryRow(ctx, `SELECT id FROM members WHERE email = $1 AND id <> $2`, p.Email, id).Scan(&other)
		if err == nil {
			return loyalty.Errorf(loyalty.EDUPLICATE, "email %s belongs to another member", p.Email)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	attrs := ""
	if len(p.Attributes) > 0 {
		b, err := json.Marshal(p.Attributes)
		if err != nil {
			return err
		}
		attrs = string(b)
	}
	tag, err := t.exec(ctx, `UPDATE members SET email = $1, name = $2, country = $3, birthday = $4, attributes = $5, version = $6 WHERE id = $7`,
		nullable(p.Email), p.Name, p.Country, p.Birthday, attrs, version, id)
	if err != nil {
		return notFound(err, "member %s is not known to the hub", id)
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "member %s is not known to the hub", id)
	}
	return nil
}

func (t *tx) EraseMember(ctx context.Context, id string, at time.Time, version int64) error {
	tag, err := t.exec(ctx, `UPDATE members SET email = NULL, name = '', country = '', birthday = '', attributes = '',
		erased_at = $1, version = $2 WHERE id = $3`, unixms.Of(at), version, id)
	if err != nil {
		return notFound(err, "member %s is not known to the hub", id)
	}
	if tag.RowsAffected() == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "member %s is not known to the hub", id)
	}
	if _, err := t.exec(ctx, `DELETE FROM member_countries WHERE member = $1`, id); err != nil {
		return err
	}
	// The country a store saw the member in, which their deltas carry for campaign segments. The
	// bodies are rewritten here rather than with jsonb in SQL: a cast to jsonb fails on a \u0000
	// escape, which a delta's text may hold.
	var seqs []int64
	var bodies []string
	err = t.each(ctx, `SELECT seq, body FROM deltas WHERE member = $1 AND strpos(body, '"country":') > 0`, []any{id}, func(rows pgx.Rows) error {
		var seq int64
		var body string
		if err := rows.Scan(&seq, &body); err != nil {
			return err
		}
		b, ok, err := withoutCountry(body, id)
		if ok {
			seqs, bodies = append(seqs, seq), append(bodies, b)
		}
		return err
	})
	if err != nil {
		return err
	}
	if len(seqs) > 0 {
		if _, err := t.exec(ctx, `UPDATE deltas SET body = u.body FROM unnest($1::bigint[], $2::text[]) AS u (seq, body) WHERE deltas.seq = u.seq`,
			seqs, bodies); err != nil {
			return err
		}
	}
	if _, err := t.exec(ctx, `UPDATE rejections SET message = $1 WHERE `+rejectionMember+` = $2 AND message LIKE $3`,
		hub.CountryMismatch, id, hub.OldCountryMismatch); err != nil {
		return err
	}
	var stores, ids []string
	bodies = nil
	err = t.each(ctx, `SELECT store, delta_id, delta FROM rejections WHERE `+rejectionMember+` = $1`, []any{id}, func(rows pgx.Rows) error {
		var store, did, body string
		if err := rows.Scan(&store, &did, &body); err != nil {
			return err
		}
		b, ok, err := withoutCountry(body, id)
		if ok {
			stores, ids, bodies = append(stores, store), append(ids, did), append(bodies, b)
		}
		return err
	})
	if err != nil || len(ids) == 0 {
		return err
	}
	_, err = t.exec(ctx, `UPDATE rejections SET delta = u.delta FROM unnest($1::text[], $2::text[], $3::text[]) AS u (store, delta_id, delta)
		WHERE rejections.store = u.store AND rejections.delta_id = u.delta_id`, stores, ids, bodies)
	return err
}

func (t *tx) NotePastCountry(ctx context.Context, member, country string, until time.Time) error {
	_, err := t.exec(ctx, `INSERT INTO member_countries (member, country, until_at) VALUES ($1, $2, $3)`, member, country, unixms.Of(until))
	return err
}

func (t *tx) ForgetPastCountries(ctx context.Context, before time.Time) (int, error) {
	tag, err := t.exec(ctx, `DELETE FROM member_countries WHERE until_at < $1`, unixms.Of(before))
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

func (t *tx) PastCountries(ctx context.Context, member string, since time.Time) ([]hub.PastCountry, error) {
	out := []hub.PastCountry{}
	err := t.each(ctx, `SELECT country, until_at FROM member_countries WHERE member = $1 AND until_at > $2 ORDER BY until_at DESC`,
		[]any{member, unixms.Of(since)}, func(rows pgx.Rows) error {
			var c hub.PastCountry
			var until int64
			err := rows.Scan(&c.Country, &until)
			c.Until = unixms.Time(until)
			out = append(out, c)
			return err
		})
	return out, err
}

// rejectionMember is the member of a rejected delta, indexed (rejections_member, migration 0030):
// what finds a member's rejected deltas without reading them all.
const rejectionMember = `member`

// withoutCountry returns a delta's JSON without its country, and whether it was the member's
// delta and had a country.
func withoutCountry(body, member string) (string, bool, error) {
	var d loyalty.Delta
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		return "", false, err
	}
	if d.Member != member || d.Country == "" {
		return "", false, nil
	}
	d.Country = ""
	b, err := json.Marshal(d)
	return string(b), true, err
}

func (t *tx) LedgerAfter(ctx context.Context, member string, after int64, n int) ([]hub.LedgerEntry, error) {
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE member = $1 AND seq > $2 ORDER BY seq LIMIT $3`, member, after, limit(n))
}

func (t *tx) MemberRecords(ctx context.Context, member string) (hub.MemberRecords, error) {
	r := hub.MemberRecords{Referred: []string{}, Vouchers: []hub.Voucher{}, Conflicts: []hub.Conflict{}, Rejections: []hub.Rejection{},
		Audit: []hub.AuditEntry{}}
	args := []any{member}
	err := t.each(ctx, `SELECT id FROM members WHERE referred_by = $1 AND referred_by <> '' ORDER BY id`, args, func(rows pgx.Rows) error {
		var id string
		err := rows.Scan(&id)
		r.Referred = append(r.Referred, id)
		return err
	})
	if err == nil {
		err = t.each(ctx, `SELECT `+voucherCols+` FROM vouchers WHERE member = $1
			ORDER BY created_at, id`, args, func(rows pgx.Rows) error {
			v, err := scanVoucher(rows)
			r.Vouchers = append(r.Vouchers, v)
			return err
		})
	}
	if err == nil {
		err = t.each(ctx, `SELECT id, kind, member, store, deltas, amount, detail, at, flagged FROM conflicts WHERE member = $1 ORDER BY id`, args,
			func(rows pgx.Rows) error {
				var c hub.Conflict
				var at int64
				err := rows.Scan(&c.ID, &c.Kind, &c.Member, &c.Store, &c.Deltas, &c.Amount, &c.Detail, &at, &c.Flagged)
				c.At = unixms.Time(at)
				r.Conflicts = append(r.Conflicts, c)
				return err
			})
	}
	if err == nil {
		err = t.each(ctx, `SELECT store, delta, code, message, at FROM rejections WHERE `+rejectionMember+` = $1 ORDER BY at, seq`,
			[]any{member}, func(rows pgx.Rows) error {
				var j hub.Rejection
				var body string
				var at int64
				if err := rows.Scan(&j.Store, &body, &j.Code, &j.Message, &at); err != nil {
					return err
				}
				if err := json.Unmarshal([]byte(body), &j.Delta); err != nil || j.Delta.Member != member {
					return err
				}
				j.At = unixms.Time(at)
				r.Rejections = append(r.Rejections, j)
				return nil
			})
	}
	if err == nil {
		err = t.each(ctx, `SELECT seq, at, key_id, key_name, action, target, detail FROM audit WHERE target = $1 AND action IN (`+hub.MemberAuditActionsSQL()+`) ORDER BY seq`, args,
			func(rows pgx.Rows) error {
				var e hub.AuditEntry
				var at int64
				err := rows.Scan(&e.Seq, &at, &e.KeyID, &e.KeyName, &e.Action, &e.Target, &e.Detail)
				e.At = unixms.Time(at)
				r.Audit = append(r.Audit, e)
				return err
			})
	}
	return r, err
}
