package main

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// loyalty report prints the same report as a table, JSON or CSV, on the hub's database, and
// refuses bad ranges and formats with codes.
func TestCLI_Report(t *testing.T) {
	db := initHubDB(t)
	mustRun(t, "store", "add", "--id", "s1", "--database", db)
	mustRun(t, "member", "add", "--id", "m1", "--home-store", "s1", "--database", db)
	today := time.Now().UTC()
	rng := []string{"--from", today.Add(-24 * time.Hour).Format(time.DateOnly), "--to", today.Add(48 * time.Hour).Format(time.DateOnly), "--database", db}

	out, _ := mustRun(t, append([]string{"report", "summary", "--format", "json"}, rng...)...)
	var r hub.SummaryReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Members.Total != 1 || r.Members.Enrolled != 1 {
		t.Fatalf("summary JSON %s (%v): want one member, enrolled in the range", out, err)
	}
	out, _ = mustRun(t, append([]string{"report", "summary"}, rng...)...)
	if !strings.HasPrefix(out, "FIGURE") || !strings.Contains(out, "members enrolled") {
		t.Errorf("summary table:\n%s", out)
	}
	out, _ = mustRun(t, append([]string{"report", "summary", "--format", "csv", "--store", "s1"}, rng...)...)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) < 2 || strings.Join(rows[0], ",") != "store,figure,currency,value" || rows[1][0] != "s1" {
		t.Errorf("summary CSV %q (%v)", out, err)
	}
	out, _ = mustRun(t, append([]string{"report", "stores", "--format", "csv"}, rng...)...)
	if !strings.Contains(out, "\ns1,false,") {
		t.Errorf("stores CSV %q: want s1, not connected", out)
	}
	out, _ = mustRun(t, append([]string{"report", "cohorts"}, rng...)...)
	if !strings.Contains(out, today.Format("2006-01")) {
		t.Errorf("cohorts table %q: want this month's cohort", out)
	}
	for _, args := range [][]string{
		{"report", "summary", "--from", "2026-01-01", "--to", "2027-06-01", "--database", db},
		{"report", "summary", "--from", "2026-02-01", "--to", "2026-01-01", "--database", db},
		{"report", "summary", "--to", "2026-01-01", "--database", db},
		{"report", "cohorts", "--from", "last week", "--to", "2026-01-01", "--database", db},
		append([]string{"report", "stores", "--format", "xml"}, rng...),
	} {
		if _, _, err := run(t, args...); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("loyalty %s: %v, want EINVALID", strings.Join(args, " "), err)
		}
	}
	if _, _, err := run(t, append([]string{"report", "summary", "--store", "s9"}, rng...)...); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("an unknown store: %v, want ENOTFOUND", err)
	}
}
