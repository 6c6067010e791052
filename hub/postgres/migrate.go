package postgres

import (
	"context"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Member search, bulk imports and exports (hub.MigrateTx).

func (t *tx) SearchMembers(ctx context.Context, f hub.MemberFilter, after string, n int) ([]loyalty.Member, error) {
	q, args := searchMembersQuery(f, after, n)
	return t.queryMembers(ctx, q, args...)
}

// searchMembersQuery is SearchMembers' query and its arguments. Each filter is a condition of its
// own, so that the planner reads the index of the one that finds fewest: the unique index on
// emails, the names' trigram index (nameIn), or member_homes' index by home store (migration
// 0031), in id order after the page before; the page's start is put on the column of the table
// read in order, as the planner does not carry an inequality across a join. A tier alone is read
// in id order until the page is full (the migration says why it has no index here).
func searchMembersQuery(f hub.MemberFilter, after string, n int) (string, []any) {
	from, key := "members m", "m.id"
	if f.HomeStore != "" {
		from, key = "member_homes g JOIN members m ON m.id = g.id", "g.id"
	}
	where, args := []string{key + " > $1"}, []any{after}
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if f.Email != "" {
		add("m.email = $?", f.Email)
	}
	if f.Name != "" {
		add(nameIn, "%"+likeEscape(f.Name)+"%")
	}
	if f.Tier != "" {
		add("m.tier = $?", f.Tier)
	}
	if f.HomeStore != "" {
		add("g.home_store = $?", f.HomeStore)
	}
	if !f.CreatedSince.IsZero() {
		add("m.created_at >= $?", unixms.Of(f.CreatedSince))
	}
	args = append(args, limit(n))
	return `SELECT ` + memberCols + ` FROM ` + from + ` WHERE ` + strings.Join(where, " AND ") + ` ORDER BY ` + key + ` LIMIT $` + strconv.Itoa(len(args)), args
}

// nameIn is a search by name: through member_names' trigram index (migration 0026), which the
// planner reads as a bitmap of the names that hold the text's trigrams, checking each. A text of
// fewer than 3 characters has none, and reads member_names, narrower than members, whole.
const nameIn = `m.id IN (SELECT n.id FROM member_names n WHERE n.name ILIKE $? ESCAPE '\')`

// likeEscape escapes LIKE's wildcards with a backslash.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func (t *tx) MembersByEmail(ctx context.Context, emails []string) (map[string]hub.ScheduledMember, error) {
	return t.scheduledMembers(ctx, "email", emails, func(m loyalty.Member) string { return m.Email })
}

func (t *tx) InsertMembers(ctx context.Context, ms []loyalty.Member) error {
	if len(ms) == 0 {
		return nil
	}
	n := len(ms)
	var (
		ids, emails, names, homes, tiers, countries, referrers, birthdays = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		balances, versions, created                                       = make([]int64, n), make([]int64, n), make([]int64, n)
	)
	for i, m := range ms {
		ids[i], emails[i], names[i], homes[i], tiers[i], countries[i] = m.ID, m.Email, m.Name, m.HomeStore, m.Tier, m.Country
		referrers[i], birthdays[i], balances[i], versions[i], created[i] = m.ReferredBy, m.Birthday, m.Balance, m.Version, unixms.Of(m.CreatedAt)
	}
	// One statement for the batch; as InsertMember, no email is NULL, and a new member's tier
	// review is due at once.
	_, err := t.exec(ctx, `INSERT INTO members (id, email, name, home_store, tier, country, balance, version, created_at, referred_by,
			birthday, review_at)
		SELECT id, NULLIF(email, ''), name, home_store, tier, country, balance, version, created_at, referred_by, birthday, created_at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[],
			$10::text[], $11::text[]) AS u (id, email, name, home_store, tier, country, balance, version, created_at, referred_by, birthday)`,
		ids, emails, names, homes, tiers, countries, balances, versions, created, referrers, birthdays)
	return err
}

func (t *tx) LedgerPage(ctx context.Context, from, to time.Time, after int64, n int) ([]hub.LedgerEntry, error) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !from.IsZero() {
		lo = unixms.Of(from)
	}
	if !to.IsZero() {
		hi = unixms.Of(to)
	}
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE seq > $1 AND event_at >= $2 AND event_at < $3 ORDER BY seq LIMIT $4`,
		after, lo, hi, limit(n))
}

func (t *tx) ConflictsPage(ctx context.Context, after int64, n int) ([]hub.Conflict, error) {
	out := []hub.Conflict{}
	err := t.each(ctx, `SELECT id, kind, member, store, deltas, amount, detail, at, flagged FROM conflicts WHERE id > $1 ORDER BY id LIMIT $2`,
		[]any{after, limit(n)}, func(rows pgx.Rows) error {
			var c hub.Conflict
			var at int64
			err := rows.Scan(&c.ID, &c.Kind, &c.Member, &c.Store, &c.Deltas, &c.Amount, &c.Detail, &at, &c.Flagged)
			c.At = unixms.Time(at)
			out = append(out, c)
			return err
		})
	return out, err
}

func (t *tx) ImportedMembers(ctx context.Context, importID string, members []string) (map[string]bool, error) {
	out := make(map[string]bool)
	if len(members) == 0 {
		return out, nil
	}
	// deltas_member_adjust finds each member's few adjustments.
	err := t.each(ctx, `SELECT DISTINCT member FROM deltas WHERE kind = 'adjust' AND member = ANY ($1) AND rule = $2 AND order_id = $3`,
		[]any{members, hub.RuleImport, importID}, func(rows pgx.Rows) error {
			var m string
			err := rows.Scan(&m)
			out[m] = true
			return err
		})
	return out, err
}
