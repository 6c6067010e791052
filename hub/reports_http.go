package hub

import (
	"context"
	"io"
	"net/http"

	"github.com/loyalty-edge-sync/loyalty"
)

// reportRoutes registers the report endpoints (docs/API.md, "Reports"): each takes from, to and
// store (optional) in the query string, and answers JSON, or CSV with format=csv.
func (s *Server) reportRoutes(admin router) {
	h := s.Hub
	admin.HandleFunc("GET /v1/reports/summary", reportHandler(s, h.ReportSummary))
	admin.HandleFunc("GET /v1/reports/cohorts", reportHandler(s, h.ReportCohorts))
	admin.HandleFunc("GET /v1/reports/stores", reportHandler(s, h.ReportStores))
}

// csvReport is a report that can be written as CSV.
type csvReport interface {
	WriteCSV(w io.Writer) error
}

func reportHandler[R csvReport](s *Server, fn func(context.Context, ReportQuery) (R, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, format, err := reportQuery(r)
		if err != nil {
			s.reply(w, r, 0, nil, err)
			return
		}
		out, err := fn(r.Context(), q)
		if err != nil || format == "json" {
			s.reply(w, r, http.StatusOK, out, err)
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		out.WriteCSV(w) // the status is sent: a failed write is the client's going away
	}
}

// reportQuery reads a report's query string: from, to, store, format (json or csv).
func reportQuery(r *http.Request) (ReportQuery, string, error) {
	v := r.URL.Query()
	var q ReportQuery
	var err error
	if q.From, err = ParseReportTime("from", v.Get("from")); err != nil {
		return q, "", err
	}
	if q.To, err = ParseReportTime("to", v.Get("to")); err != nil {
		return q, "", err
	}
	q.Store = v.Get("store")
	format := v.Get("format")
	switch format {
	case "":
		format = "json"
	case "json", "csv":
	default:
		return q, "", loyalty.Errorf(loyalty.EINVALID, "format must be json or csv")
	}
	return q, format, q.Validate()
}
