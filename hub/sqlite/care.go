package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Member care (hub.CareTx).

func (t *tx) MemberProfile(ctx context.Context, id string) (hub.Profile, error) {
	var p hub.Profile
	var attrs string
	var erased sql.NullInt64
	err := t.QueryRowContext(ctx, `SELECT COALESCE(email, ''), name, country, birthday, attributes, erased_at FROM members WHERE id = ?`, id).
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
		err := t.QueryRowContext(ctx, `SELECT id FROM members WHERE email = ? AND id != ?`, p.Email, id).Scan(&other)
		if err == nil {
			return loyalty.Errorf(loyalty.EDUPLICATE, "email %s belongs to another member", p.Email)
		} else if !errors.Is(err, sql.ErrNoRows) {
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
	res, err := t.ExecContext(ctx, `UPDATE members SET email = ?, name = ?, country = ?, birthday = ?, attributes = ?, version = ? WHERE id = ?`,
		nullable(p.Email), p.Name, p.Country, p.Birthday, attrs, version, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "member %s is not known to the hub", id)
	}
	return nil
}

func (t *tx) EraseMember(ctx context.Context, id string, at time.Time, version int64) error {
	// The writer overwrites what it rewrites (OpenWith: secure_delete), so the email does not
	// stay readable in the file.
	res, err := t.ExecContext(ctx, `UPDATE members SET email = NULL, name = '', country = '', birthday = '', attributes = '',
		erased_at = ?, version = ? WHERE id = ?`, unixms.Of(at), version, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return loyalty.Errorf(loyalty.ENOTFOUND, "member %s is not known to the hub", id)
	}
	// The country a store saw the member in, which their deltas carry for campaign segments.
	if _, err := t.ExecContext(ctx, `UPDATE deltas SET body = json_remove(body, '$.country')
		WHERE member = ? AND body != '' AND json_extract(body, '$.country') IS NOT NULL`, id); err != nil {
		return err
	}
	if _, err := t.ExecContext(ctx, `DELETE FROM member_countries WHERE member = ?`, id); err != nil {
		return err
	}
	if _, err := t.ExecContext(ctx, `UPDATE rejections SET message = ?
		WHERE json_extract(delta, '$.member') = ? AND message LIKE ?`, hub.CountryMismatch, id, hub.OldCountryMismatch); err != nil {
		return err
	}
	_, err = t.ExecContext(ctx, `UPDATE rejections SET delta = json_remove(delta, '$.country')
		WHERE json_extract(delta, '$.member') = ? AND json_extract(delta, '$.country') IS NOT NULL`, id)
	return err
}

func (t *tx) NotePastCountry(ctx context.Context, member, country string, until time.Time) error {
	_, err := t.ExecContext(ctx, `INSERT INTO member_countries (member, country, until_at) VALUES (?, ?, ?)`, member, country, unixms.Of(until))
	return err
}

func (t *tx) ForgetPastCountries(ctx context.Context, before time.Time) (int, error) {
	// Overwritten in the file as they are deleted (OpenWith: secure_delete).
	res, err := t.ExecContext(ctx, `DELETE FROM member_countries WHERE until_at < ?`, unixms.Of(before))
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (t *tx) PastCountries(ctx context.Context, member string, since time.Time) ([]hub.PastCountry, error) {
	rows, err := t.QueryContext(ctx, `SELECT country, until_at FROM member_countries WHERE member = ? AND until_at > ?
		ORDER BY until_at DESC`, member, unixms.Of(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hub.PastCountry{}
	for rows.Next() {
		var c hub.PastCountry
		var until int64
		if err := rows.Scan(&c.Country, &until); err != nil {
			return nil, err
		}
		c.Until = unixms.Time(until)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (t *tx) LedgerAfter(ctx context.Context, member string, after int64, limit int) ([]hub.LedgerEntry, error) {
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE member = ? AND seq > ? ORDER BY seq LIMIT ?+0`, member, after, limit)
}

func (t *tx) MemberRecords(ctx context.Context, member string) (hub.MemberRecords, error) {
	r := hub.MemberRecords{Referred: []string{}, Vouchers: []hub.Voucher{}, Conflicts: []hub.Conflict{}, Rejections: []hub.Rejection{},
		Audit: []hub.AuditEntry{}}
	each := func(q string, scan func(*sql.Rows) error) error {
		rows, err := t.QueryContext(ctx, q, member)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	err := each(`SELECT id FROM members WHERE referred_by = ? AND referred_by != '' ORDER BY id`, func(rows *sql.Rows) error {
		var id string
		err := rows.Scan(&id)
		r.Referred = append(r.Referred, id)
		return err
	})
	if err == nil {
		err = each(`SELECT `+voucherCols+` FROM vouchers WHERE member = ? ORDER BY created_at, id`,
			func(rows *sql.Rows) error {
				v, err := scanVoucher(rows)
				r.Vouchers = append(r.Vouchers, v)
				return err
			})
	}
	if err == nil {
		err = each(`SELECT id, kind, member, store, deltas, amount, detail, at, flagged FROM conflicts WHERE member = ? ORDER BY id`,
			func(rows *sql.Rows) error {
				var c hub.Conflict
				var deltas string
				var at int64
				err := rows.Scan(&c.ID, &c.Kind, &c.Member, &c.Store, &deltas, &c.Amount, &c.Detail, &at, &c.Flagged)
				c.Deltas, c.At = strings.Split(deltas, ","), unixms.Time(at)
				r.Conflicts = append(r.Conflicts, c)
				return err
			})
	}
	if err == nil {
		err = each(`SELECT store, delta, code, message, at FROM rejections WHERE json_extract(delta, '$.member') = ? ORDER BY at, store, delta_id`,
			func(rows *sql.Rows) error {
				var j hub.Rejection
				var body string
				var at int64
				if err := rows.Scan(&j.Store, &body, &j.Code, &j.Message, &at); err != nil {
					return err
				}
				j.At = unixms.Time(at)
				r.Rejections = append(r.Rejections, j)
				return json.Unmarshal([]byte(body), &r.Rejections[len(r.Rejections)-1].Delta)
			})
	}
	if err == nil {
		err = each(`SELECT seq, at, key_id, key_name, action, target, detail FROM audit WHERE target = ? AND action IN (`+hub.MemberAuditActionsSQL()+`) ORDER BY seq`, func(rows *sql.Rows) error {
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
