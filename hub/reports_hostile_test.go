package hub_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// A report's from and to are RFC 3339 times with an offset. An offset can push a time written
// in year 9999 into year 10000 (or one in year 0000 into year -1) once it is turned into UTC:
// the report runs, but its answer cannot be written as JSON (time.Time.MarshalJSON refuses a
// year outside [0, 9999]) and the hub answers HTTP 200 with an empty body. A bound the hub
// cannot write back must be refused with 400 EINVALID, as a range over 366 days is.
func TestHostile_ReportBoundsOutsideJSONYears(t *testing.T) {
	a := openAKHub(t)
	rep := a.newKey(t, akAdminKey, "finance", hub.ScopeReport)
	for _, q := range []struct{ from, to string }{
		{"9999-12-31T00:00:00Z", "9999-12-31T23:59:59-23:59"}, // to is 10000-01-01T23:58:59Z
		{"0000-01-01T00:00:00+23:59", "0000-01-02T00:00:00Z"}, // from is -0001-12-31T00:01:00Z
	} {
		for _, path := range []string{"/v1/reports/summary", "/v1/reports/cohorts", "/v1/reports/stores"} {
			p := path + "?from=" + url.QueryEscape(q.from) + "&to=" + url.QueryEscape(q.to)
			status, body := a.do(t, rep.Key, "GET", p, "")
			if status == http.StatusOK {
				var v map[string]any
				if err := json.Unmarshal(body, &v); err != nil {
					t.Errorf("GET %s: HTTP 200 with a body that is not JSON (%q): %v; want 400 EINVALID", p, body, err)
				}
				continue
			}
			var e struct {
				Error *loyalty.Error `json:"error"`
			}
			if json.Unmarshal(body, &e) != nil || e.Error == nil || e.Error.Code != loyalty.EINVALID {
				t.Errorf("GET %s: HTTP %d %s; want 400 EINVALID", p, status, body)
			}
		}
	}
}

// An export's bounds (ParseDay) are held to the same years as a report's, in UTC whichever way
// they are written.
func TestHostile_ExportDayBounds(t *testing.T) {
	for _, v := range []string{"0001-01-01", "1969-12-31", "9999-12-31T23:59:59-23:59", "1970-01-01T00:00:00+01:00", "10000-01-01"} {
		if _, err := hub.ParseDay("from", v); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("ParseDay(%q): %v, want EINVALID", v, err)
		}
	}
	for _, v := range []string{"1970-01-01", "9999-12-31", "2026-11-22T10:00:00+02:00"} {
		if d, err := hub.ParseDay("from", v); err != nil || d.Location() != time.UTC {
			t.Errorf("ParseDay(%q): %v, %v; want a time in UTC", v, d, err)
		}
	}
}
