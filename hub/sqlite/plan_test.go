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
