package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// plan returns SQLite's query plan for q with args, its steps joined by "; ".
func plan(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	rows, err := s.db.R.QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var steps []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		steps = append(steps, detail)
	}
	return strings.Join(steps, "; ")
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMembersAfterReadsTheNewDeltas: a job's check of which members of a batch changed since its
// read ahead (MembersAfter) reads the deltas after the ledger position, by the table's key, not
// each member's ledger through the index on members.
func TestMembersAfterReadsTheNewDeltas(t *testing.T) {
	s := openStore(t)
	got := plan(t, s, membersAfterQuery, 100, `["m1","m2"]`)
	if !strings.Contains(got, "SEARCH deltas USING INTEGER PRIMARY KEY (rowid>?)") || strings.Contains(got, "deltas_member") {
		t.Errorf("plan: %s; want a search of the table's key after the position, and no members' index", got)
	}
}

// TestBirthdayMembersReadsARange: a page of a day's birthdays is a range of the index on the day
// and the member id, not every member of the day sorted again for each page (which made a sweep
// cost the square of the day's members).
func TestBirthdayMembersReadsARange(t *testing.T) {
	s := openStore(t)
	got := plan(t, s, birthdayMembersQuery, "05-01", "", 200)
	if !strings.Contains(got, "USING INDEX members_birthday") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("plan: %s; want a search of members_birthday and no sort", got)
	}
}

// TestLotsAreOneSearchAMember: the expiry job's read of a batch's lots searches member_lots by
// each member's key and reads nothing else; the queries of a member's earns in a span of time
// (memberEarns: the tiers' window edges, earn caps, action limits) search it
// by member (and time) and read each earn's row by its position, as they did the index of
// members' earns it replaced, never a member's whole ledger.
func TestLotsAreOneSearchAMember(t *testing.T) {
	s := openStore(t)
	got := plan(t, s, lotsOfQuery, `["m1","m2"]`, 0)
	if !strings.Contains(got, "SEARCH l USING PRIMARY KEY (member=? AND at>?)") || strings.Contains(got, "deltas") {
		t.Errorf("lots: plan %s; want a search of member_lots by member and time, and no ledger read", got)
	}
	for name, q := range map[string]struct {
		query string
		lots  string
		args  []any
	}{
		"window edges": {qualifyingEdges, "(member=? AND at>? AND at<?)", []any{`["m1"]`, 0, 1, `["m1"]`, 0, 1}},
		"earned":       {memberEarnedQuery, "(member=? AND at>? AND at<?)", []any{"m1", "", 0, 1}},
		"rule count":   {ruleCountQuery, "(member=? AND at>? AND at<?)", []any{"m1", "review", 0, 1}},
	} {
		got := plan(t, s, q.query, q.args...)
		if !strings.Contains(got, "SEARCH l USING PRIMARY KEY "+q.lots) ||
			!strings.Contains(got, "SEARCH d USING INTEGER PRIMARY KEY (rowid=?)") || strings.Contains(got, "SCAN l") ||
			strings.Contains(got, "SCAN d") || strings.Contains(got, "USING INDEX deltas_member ") {
			t.Errorf("%s: plan %s; want member_lots searched by %s, each earn read by its position", name, got, q.lots)
		}
	}
}
