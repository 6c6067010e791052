package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// The background jobs' schedule (hub/jobs.go, migration 0002) and the batch reads and writes of
// the jobs, as hub/sqlite has them.
//
// Exactly once across several hub processes: every write transaction here is SERIALIZABLE. Two
// runs that claim the same due members (MembersDue in their batch's transaction) both write those
// members' rows; the second to write waits for the first and is refused (40001), and Update runs
// it again, when it finds them no longer due. FOR UPDATE SKIP LOCKED on MembersDue would let
// concurrent runs take disjoint batches instead of retrying; the retry is enough for correctness.

func (t *tx) NextVersions(ctx context.Context, n int) (int64, error) {
	n = max(n, 1)
	var v int64
	err := t.queryRow(ctx, `UPDATE counters SET value = value + $1 WHERE name = 'version' RETURNING value`, int64(n)).Scan(&v)
	return v - int64(n) + 1, err
}

// nullMS stores a schedule time: NULL for none.
func nullMS(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

func fromNullMS(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return time.UnixMilli(*v).UTC()
}

const scheduleCols = `m.review_at, m.expire_at, m.last_active, m.expired_at`

func (t *tx) MemberWithSchedule(ctx context.Context, id string) (loyalty.Member, hub.Schedule, error) {
	var s hub.Schedule
	var review, expire, expired *int64
	var active int64
	m, err := scanMember(t.queryRow(ctx, `SELECT `+memberCols+`, `+scheduleCols+` FROM members m WHERE id = $1`, id), &review, &expire, &active, &expired)
	s.ReviewAt, s.ExpireAt, s.LastActive, s.ExpiredAt = fromNullMS(review), fromNullMS(expire), unixms.Time(active), fromNullMS(expired)
	return m, s, notFound(err, "member %s is not known to the hub", id)
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
	err := t.each(ctx, `SELECT `+memberCols+`, `+scheduleCols+` FROM members m WHERE m.`+column+` = ANY ($1)`, []any{keys}, func(rows pgx.Rows) error {
		var s hub.Schedule
		var review, expire, expired *int64
		var active int64
		m, err := scanMember(rows, &review, &expire, &active, &expired)
		s.ReviewAt, s.ExpireAt, s.LastActive, s.ExpiredAt = fromNullMS(review), fromNullMS(expire), unixms.Time(active), fromNullMS(expired)
		out[keyOf(m)] = hub.ScheduledMember{Member: m, Schedule: s}
		return err
	})
	return out, err
}

// memberColumns are the columns of members that each hub.MemberField stands for, with their types.
var memberColumns = []struct {
	field hub.MemberField
	cols  []string
	types []string
}{
	{hub.FieldBalance, []string{"balance", "version"}, []string{"bigint", "bigint"}},
	{hub.FieldTier, []string{"tier"}, []string{"text"}},
	{hub.FieldPunches, []string{"punches"}, []string{"text"}},
	{hub.FieldReviewAt, []string{"review_at"}, []string{"bigint"}},
	{hub.FieldExpireAt, []string{"expire_at"}, []string{"bigint"}},
	{hub.FieldLastActive, []string{"last_active"}, []string{"bigint"}},
	{hub.FieldExpiredAt, []string{"expired_at"}, []string{"bigint"}},
}

func punchesText(p map[string]int64) string {
	if len(p) == 0 {
		return ""
	}
	b, _ := json.Marshal(p)
	return string(b)
}

func (t *tx) UpdateMembers(ctx context.Context, us []hub.MemberUpdate) error {
	// Updates naming the same columns are written together, in one statement from arrays, one
	// per column (unnest): only the columns an update names are written.
	groups := map[hub.MemberField][]hub.MemberUpdate{}
	var order []hub.MemberField
	for _, u := range us {
		if u.Set == 0 {
			continue
		}
		if _, ok := groups[u.Set]; !ok {
			order = append(order, u.Set)
		}
		groups[u.Set] = append(groups[u.Set], u)
	}
	for _, set := range order {
		g := groups[set]
		ids := make([]string, len(g))
		for i, u := range g {
			ids[i] = u.Member
		}
		args := []any{ids}
		arrays := []string{"$1::text[]"}
		names := []string{"id"}
		var assign []string
		add := func(col, typ string, values any) {
			args = append(args, values)
			arrays = append(arrays, fmt.Sprintf("$%d::%s[]", len(args), typ))
			names = append(names, col)
			assign = append(assign, col+" = v."+col)
		}
		for _, c := range memberColumns {
			if set&c.field == 0 {
				continue
			}
			switch c.field {
			case hub.FieldBalance:
				balances, versions := make([]int64, len(g)), make([]int64, len(g))
				for i, u := range g {
					balances[i], versions[i] = u.Balance, u.Version
				}
				add("balance", "bigint", balances)
				add("version", "bigint", versions)
			case hub.FieldTier:
				tiers := make([]string, len(g))
				for i, u := range g {
					tiers[i] = u.Tier
				}
				add("tier", "text", tiers)
			case hub.FieldPunches:
				punches := make([]string, len(g))
				for i, u := range g {
					punches[i] = punchesText(u.Punches)
				}
				add("punches", "text", punches)
			case hub.FieldReviewAt, hub.FieldExpireAt, hub.FieldExpiredAt:
				times := make([]*int64, len(g))
				for i, u := range g {
					at := u.ReviewAt
					switch c.field {
					case hub.FieldExpireAt:
						at = u.ExpireAt
					case hub.FieldExpiredAt:
						at = u.ExpiredAt
					}
					times[i] = nullMS(at)
				}
				add(c.cols[0], "bigint", times)
			case hub.FieldLastActive:
				times := make([]int64, len(g))
				for i, u := range g {
					times[i] = unixms.Of(u.LastActive)
				}
				add("last_active", "bigint", times)
			}
		}
		_, err := t.exec(ctx, `UPDATE members AS m SET `+strings.Join(assign, ", ")+` FROM unnest(`+strings.Join(arrays, ", ")+`) AS v(`+
			strings.Join(names, ", ")+`) WHERE m.id = v.id`, args...)
		if err != nil {
			return err
		}
	}
	return nil
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

func (t *tx) ScheduleAll(ctx context.Context, job string, at time.Time) error {
	col, err := jobColumn(job)
	if err != nil {
		return err
	}
	value := `$1::bigint`
	if job == hub.JobExpiry {
		value = `CASE WHEN balance > 0 THEN $1::bigint END`
	}
	// Rows that already hold the value are left alone: a repeated reset rewrites nothing.
	_, err = t.exec(ctx, `UPDATE members SET `+col+` = `+value+` WHERE `+col+` IS DISTINCT FROM `+value, nullMS(at))
	return err
}

func (t *tx) MembersDue(ctx context.Context, job string, upTo time.Time, after hub.DueCursor, n int) ([]hub.DueMember, error) {
	col, err := jobColumn(job)
	if err != nil {
		return nil, err
	}
	from := int64(math.MinInt64)
	if after != (hub.DueCursor{}) {
		from = unixms.Of(after.At)
	}
	// members_review or members_expire, on (time, id), serves both the range and the order.
	var out []hub.DueMember
	err = t.each(ctx, `SELECT m.id, m.tier, m.balance, `+scheduleCols+` FROM members m
		WHERE m.`+col+` <= $1 AND (m.`+col+`, m.id) > ($2, $3) ORDER BY m.`+col+`, m.id LIMIT $4`,
		[]any{unixms.Of(upTo), from, after.ID, limit(n)}, func(rows pgx.Rows) error {
			var d hub.DueMember
			var review, expire, expired *int64
			var active int64
			err := rows.Scan(&d.ID, &d.Tier, &d.Balance, &review, &expire, &active, &expired)
			d.ReviewAt, d.ExpireAt, d.LastActive, d.ExpiredAt = fromNullMS(review), fromNullMS(expire), unixms.Time(active), fromNullMS(expired)
			out = append(out, d)
			return err
		})
	return out, err
}

// qualifyingEvents is the query of QualifyingFromLedger's events for the members where selects (on d), in
// the window [$2, $3): each one's member m, amount or points c, event time e and x, -1 if it was
// reversed in full, else what its partial refunds gave back. OFFSET 0 keeps PostgreSQL from
// pulling the query up into its caller, which would look at the reversals again for each use of x.
func qualifyingEvents(basis, where string) string {
	col, refunded := "amount", "r.amount"
	if basis == loyalty.BasisPoints {
		col, refunded = "points", "-r.points"
	}
	return `SELECT d.member AS m, d.` + col + ` AS c, d.event_at AS e, (SELECT CASE WHEN bool_or(r.amount = 0) THEN -1
			ELSE COALESCE(sum(CASE WHEN r.amount > 0 THEN ` + refunded + ` END), 0) END FROM deltas r WHERE r.reverses = d.id AND r.reverses <> '')::bigint AS x
		FROM deltas d WHERE ` + where + ` AND d.kind = 'earn' AND d.rule = '' AND d.event_at >= $2 AND d.event_at < $3 OFFSET 0`
}

// nextQualifying is the earliest event time of a qualifying event dated at or after $3, of the
// member n.member is compared with.
const nextQualifying = `n.kind = 'earn' AND n.rule = '' AND n.event_at >= $3
	AND NOT EXISTS (SELECT 1 FROM deltas w WHERE w.reverses = n.id AND w.reverses <> '' AND w.amount = 0)`

func (t *tx) QualifyingFromLedger(ctx context.Context, member, basis string, since, upTo time.Time) (hub.Qualification, error) {
	// Sales not reversed in full (a reversal without an amount), less what partial refunds of
	// them gave back; the earliest of them in the window, and the earliest dated after it.
	var q hub.Qualification
	var first, next int64
	err := t.queryRow(ctx, `SELECT COALESCE(sum(CASE WHEN x >= 0 THEN c - x END), 0)::bigint, COALESCE(min(CASE WHEN x >= 0 THEN e END), 0),
		COALESCE((SELECT min(n.event_at) FROM deltas n WHERE n.member = $1 AND `+nextQualifying+`), 0)
		FROM (`+qualifyingEvents(basis, "d.member = $1")+`) AS q`,
		member, unixms.Of(since), unixms.Until(upTo)).Scan(&q.Total, &first, &next)
	q.First, q.Next = unixms.Time(first), unixms.Time(next)
	return q, err
}

// qualifyingQuery reads, for the members of $1, the five parts of a hub.QualifyingWindow ($2 to
// $10), one row per member and part that has any: part, member, amount, points, first. Parts 0, 1
// and 4 are day totals (member_qualifying); parts 2 and 3 are events from the ledger
// (deltas_member_earn), each with one look at its reversals.
var qualifyingQuery = func() string {
	events := func(from, to string) string {
		return `SELECT m, COALESCE(sum(a - ra) FILTER (WHERE NOT whole), 0)::bigint, COALESCE(sum(p - rp) FILTER (WHERE NOT whole), 0)::bigint,
			COALESCE(min(e) FILTER (WHERE NOT whole), 0)
		FROM (SELECT d.member AS m, d.event_at AS e, d.amount AS a, d.points AS p, COALESCE(bool_or(r.amount = 0), false) AS whole,
				COALESCE(sum(r.amount) FILTER (WHERE r.amount > 0), 0) AS ra, COALESCE(sum(-r.points) FILTER (WHERE r.amount > 0), 0) AS rp
			FROM deltas d LEFT JOIN deltas r ON r.reverses = d.id AND r.reverses <> ''
			WHERE d.member = ANY ($1) AND d.kind = 'earn' AND d.rule = '' AND d.event_at >= ` + from + ` AND d.event_at < ` + to + `
			GROUP BY d.seq) AS q GROUP BY m`
	}
	// The day totals from $10 on, in one range of each member's rows, each day put in its part.
	return `SELECT part, member, sum(amount)::bigint, sum(points)::bigint, COALESCE(min(first), 0) FROM (
			SELECT CASE WHEN day >= $2::bigint AND day < $3::bigint THEN 0 WHEN day = $4::bigint THEN 1 WHEN day >= $9::bigint THEN 4 END AS part,
				member, amount, points, first
			FROM member_qualifying WHERE member = ANY ($1) AND day >= $10::bigint) AS days WHERE part IS NOT NULL GROUP BY member, part
		UNION ALL
		SELECT 2, * FROM (` + events("$5::bigint", "$6::bigint") + `) AS head
		UNION ALL
		SELECT 3, * FROM (` + events("$7::bigint", "$8::bigint") + `) AS tail`
}()

func (t *tx) Qualifying(ctx context.Context, member, basis string, since, upTo time.Time) (hub.Qualification, error) {
	qs, err := t.QualifyingOf(ctx, []string{member}, basis, since, upTo)
	return qs[member], err
}

func (t *tx) QualifyingOf(ctx context.Context, members []string, basis string, since, upTo time.Time) (map[string]hub.Qualification, error) {
	w := hub.NewQualifyingWindow(since, upTo)
	var end *int64 // NULL: no day
	if w.HasEnd {
		end = &w.EndDay
	}
	parts := make(map[string]*[5]hub.DayTotals, len(members))
	for _, m := range members {
		parts[m] = &[5]hub.DayTotals{}
	}
	args := []any{members, w.Days[0], w.Days[1], end, w.Head[0], w.Head[1], w.Tail[0], w.Tail[1], w.After, w.From}
	if len(members) > 1 {
		// A batch's members: planned for them (plannedPerCall). One member's read (an online
		// sale, a lookup) keeps the prepared plan, which costs no planning at each call.
		args = append([]any{plannedPerCall}, args...)
	}
	err := t.each(ctx, qualifyingQuery, args,
		func(rows pgx.Rows) error {
			var part int32
			var m string
			var d hub.DayTotals
			if err := rows.Scan(&part, &m, &d.Amount, &d.Points, &d.First); err != nil {
				return err
			}
			if p := parts[m]; p != nil && part >= 0 && part < 5 {
				p[part] = d
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	out := make(map[string]hub.Qualification, len(members))
	for m, p := range parts {
		out[m] = w.Qualification(basis, p[0], p[2], p[1], p[3], p[4])
	}
	return out, nil
}

func (t *tx) ProveLate(ctx context.Context, member, delta string) error {
	_, err := t.exec(ctx, `INSERT INTO late_proofs (member, delta) VALUES ($1, $2) ON CONFLICT DO NOTHING`, member, delta)
	return err
}

func (t *tx) LateProofs(ctx context.Context, member string) (map[string]bool, error) {
	out := map[string]bool{}
	err := t.each(ctx, `SELECT delta FROM late_proofs WHERE member = $1`, []any{member}, func(rows pgx.Rows) error {
		var id string
		err := rows.Scan(&id)
		out[id] = true
		return err
	})
	return out, err
}

func (t *tx) LotsOf(ctx context.Context, members []string, since time.Time) (map[string][]loyalty.Lot, error) {
	// Lots' query for every member of $1 at once.
	out := make(map[string][]loyalty.Lot, len(members))
	err := t.each(ctx, `SELECT member, event_at, net FROM (
			SELECT d.member, d.seq, d.event_at, d.points + COALESCE((SELECT sum(r.points) FROM deltas r WHERE r.reverses = d.id AND r.reverses <> ''), 0)::bigint AS net
			FROM deltas d WHERE d.member = ANY ($1) AND d.kind = 'earn' AND d.event_at >= $2
			UNION ALL
			SELECT d.member, d.seq, d.event_at, d.points + COALESCE((SELECT sum(r.points) FROM deltas r WHERE r.reverses = d.id AND r.reverses <> ''), 0)::bigint AS net
			FROM deltas d WHERE d.member = ANY ($1) AND d.kind = 'adjust' AND d.points > 0 AND d.reverses = '' AND d.event_at >= $2
		) AS credits
		WHERE net > 0 ORDER BY member, event_at, seq`, []any{members, unixms.Of(since)}, func(rows pgx.Rows) error {
		var m string
		var at int64
		var l loyalty.Lot
		err := rows.Scan(&m, &at, &l.Points)
		l.EarnedAt = unixms.Time(at)
		out[m] = append(out[m], l)
		return err
	})
	return out, err
}

func (t *tx) LedgerHead(ctx context.Context) (int64, error) {
	var seq int64
	err := t.queryRow(ctx, `SELECT COALESCE(max(seq), 0) FROM deltas`).Scan(&seq)
	return seq, err
}

// MembersAfter reads the deltas after seq along their primary key: few, where the members'
// index would be searched once per member.
func (t *tx) MembersAfter(ctx context.Context, seq int64, members []string) ([]string, error) {
	if len(members) == 0 {
		return nil, nil
	}
	var out []string
	err := t.each(ctx, `SELECT DISTINCT member FROM deltas WHERE seq > $1 AND member = ANY ($2::text[])`, []any{seq, members}, func(rows pgx.Rows) error {
		var m string
		err := rows.Scan(&m)
		out = append(out, m)
		return err
	})
	return out, err
}
