package sqlite

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Member search, bulk imports and exports (hub.MigrateTx).

func (t *tx) SearchMembers(ctx context.Context, f hub.MemberFilter, after string, limit int) ([]loyalty.Member, error) {
	q, args := searchMembersQuery(f, after, limit)
	return t.queryMembers(ctx, q, args...)
}

// searchMembersQuery is SearchMembers' query and its arguments. Each filter is a condition of its
// own, so that the planner reads the index of the one that finds fewest: the names' trigram
// index, the unique index on emails, or members_home_store and members_tier (migration 0044),
// each in id order after the page before.
func searchMembersQuery(f hub.MemberFilter, after string, limit int) (string, []any) {
	from, where, args := "members m", []string{"m.id > ?"}, []any{after}
	switch {
	case utf8.RuneCountInString(f.Name) >= hub.MinNameSearch:
		// The members whose name holds the text, in any case, through the names' trigram index
		// (migration 0040): the text as one phrase, its quotes doubled, is a substring match.
		// CROSS JOIN keeps SQLite from walking every member in id order instead.
		from = nameSearchFrom
		where, args = append(where, nameMatch), append(args, `"`+strings.ReplaceAll(f.Name, `"`, `""`)+`"`)
	case f.Name != "":
		// Too short for a trigram: every member's name, in id order until the page is full.
		// LIKE folds the case of A to Z only.
		where, args = append(where, `m.name LIKE ? ESCAPE '\'`), append(args, "%"+likeEscape(f.Name)+"%")
	}
	if f.Email != "" {
		where, args = append(where, "m.email = ?"), append(args, f.Email)
	}
	if f.Tier != "" {
		where, args = append(where, "m.tier = ?"), append(args, f.Tier)
	}
	if f.HomeStore != "" {
		where, args = append(where, "m.home_store = ?"), append(args, f.HomeStore)
	}
	if !f.CreatedSince.IsZero() {
		where, args = append(where, "m.created_at >= ?"), append(args, unixms.Of(f.CreatedSince))
	}
	return `SELECT ` + memberCols + ` FROM ` + from + ` WHERE ` + strings.Join(where, " AND ") + ` ORDER BY m.id LIMIT ?+0`, append(args, limit)
}

// nameSearchFrom and nameMatch are the search by name through the names' index (SearchMembers).
const (
	nameSearchFrom = "member_names n CROSS JOIN members m ON m.rowid = n.rowid"
	nameMatch      = "n.member_names MATCH ?"
)

// likeEscape escapes LIKE's wildcards with a backslash.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func (t *tx) MembersByEmail(ctx context.Context, emails []string) (map[string]hub.ScheduledMember, error) {
	return t.scheduledMembers(ctx, "email", emails, func(m loyalty.Member) string { return m.Email })
}

// memberRows is how many members InsertMembers writes with one statement.
const memberRows = 100

func (t *tx) InsertMembers(ctx context.Context, ms []loyalty.Member) error {
	const cols = 12
	row := "(?" + strings.Repeat(", ?", cols-1) + ")"
	for rest := ms; len(rest) > 0; {
		n := min(len(rest), memberRows)
		args := make([]any, 0, cols*n)
		for _, m := range rest[:n] {
			// As InsertMember: a new member's tier review is due at once.
			args = append(args, m.ID, nullable(m.Email), m.Name, m.HomeStore, m.Tier, m.Country, m.Balance, m.Version, unixms.Of(m.CreatedAt),
				m.ReferredBy, m.Birthday, unixms.Of(m.CreatedAt))
		}
		_, err := t.ExecContext(ctx, `INSERT INTO members (id, email, name, home_store, tier, country, balance, version, created_at, referred_by,
			birthday, review_at) VALUES `+row+strings.Repeat(", "+row, n-1), args...)
		if err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

func (t *tx) LedgerPage(ctx context.Context, from, to time.Time, after int64, limit int) ([]hub.LedgerEntry, error) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !from.IsZero() {
		lo = unixms.Of(from)
	}
	if !to.IsZero() {
		hi = unixms.Of(to)
	}
	return t.queryDeltas(ctx, `SELECT `+deltaCols+` FROM deltas WHERE seq > ? AND event_at >= ? AND event_at < ? ORDER BY seq LIMIT ?+0`,
		after, lo, hi, limit)
}

func (t *tx) ConflictsPage(ctx context.Context, after int64, limit int) ([]hub.Conflict, error) {
	return t.queryConflicts(ctx, `WHERE id > ? ORDER BY id LIMIT ?+0`, after, limit)
}

func (t *tx) ImportedMembers(ctx context.Context, importID string, members []string) (map[string]bool, error) {
	out := make(map[string]bool)
	if len(members) == 0 {
		return out, nil
	}
	list, err := json.Marshal(members)
	if err != nil {
		return nil, err
	}
	// deltas_member_adjust finds each member's few adjustments.
	rows, err := t.QueryContext(ctx, `SELECT DISTINCT member FROM deltas WHERE kind = 'adjust' AND member IN (SELECT value FROM json_each(?))
		AND rule = ? AND order_id = ?`, string(list), hub.RuleImport, importID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return nil, err
		}
		out[m] = true
	}
	return out, rows.Err()
}
