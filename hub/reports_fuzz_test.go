package hub_test

import (
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// FuzzReportTime: a report bound is a date or an RFC 3339 time, or a refusal with EINVALID; an
// accepted range is never longer than MaxReportRange nor empty.
func FuzzReportTime(f *testing.F) {
	for _, s := range []string{"2026-12-01", "2026-12-01T10:00:00Z", "2026-12-01T10:00:00+01:00", "", "yesterday",
		"9999-12-31", "0000-01-01", "2026-02-30", "2026-12-01T25:00:00Z", "-2026-01-01"} {
		f.Add(s, "2026-12-03")
	}
	f.Fuzz(func(t *testing.T, from, to string) {
		a, errA := hub.ParseReportTime("from", from)
		b, errB := hub.ParseReportTime("to", to)
		for _, err := range []error{errA, errB} {
			if err != nil && loyalty.ErrorCode(err) != loyalty.EINVALID {
				t.Fatalf("%q, %q: %v, want EINVALID", from, to, err)
			}
		}
		if errA != nil || errB != nil {
			return
		}
		q := hub.ReportQuery{From: a, To: b}
		if err := q.Validate(); err == nil && (!b.After(a) || b.Sub(a) > hub.MaxReportRange) {
			t.Fatalf("accepted %v to %v", a, b)
		} else if err != nil && loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Fatalf("%v", err)
		}
	})
}
