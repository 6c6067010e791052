package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestBirthdayMembersReadsARange: a page of a day's birthdays is a range of the index on the day
// and the member id, not every member of the day sorted again for each page (which made a sweep
// cost the square of the day's members).
func TestBirthdayMembersReadsARange(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.db.R.QueryContext(ctx, `EXPLAIN QUERY PLAN `+birthdayMembersQuery, "05-01", "", 200)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	got := strings.Join(plan, "; ")
	if !strings.Contains(got, "USING INDEX members_birthday") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("plan: %s; want a search of members_birthday and no sort", got)
	}
}
