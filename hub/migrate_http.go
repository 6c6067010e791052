package hub

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
)

// MaxImportBytes is the largest CSV file one POST /v1/imports takes (a larger file goes up in
// parts with the same import id).
const MaxImportBytes = 512 << 20

// migrateRoutes registers member search, adjustments, imports and exports (docs/API.md).
func (s *Server) migrateRoutes(admin router) {
	h := s.Hub
	admin.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for k := range q {
			if !slices.Contains(memberParams, k) {
				jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.EINVALID, "members are searched by %s; %q is none of them",
					strings.Join(memberParams, ", "), loyalty.Truncate(k, 40)))
				return
			}
		}
		limit, err := intParam(r, "limit", 100, 1, MaxMemberPage)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		f := MemberFilter{Email: q.Get("email"), Name: q.Get("name"), Tier: q.Get("tier"), HomeStore: q.Get("home_store")}
		if v := q.Get("created_since"); v != "" {
			if f.CreatedSince, err = ParseDay("created_since", v); err != nil {
				jsonapi.Error(w, r, s.Logger, err)
				return
			}
		}
		out, err := h.SearchMembers(r.Context(), f, q.Get("after"), limit)
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("POST /v1/adjustments", call(s, h.Adjust))
	admin.HandleFunc("POST /v1/adjustments/{id}/reverse", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Reason string `json:"reason"`
		}
		if s.decode(w, r, &req) {
			out, err := h.ReverseAdjustment(r.Context(), r.PathValue("id"), req.Reason)
			jsonapi.MarkReplayed(w.Header(), out)
			s.reply(w, r, http.StatusOK, out, err)
		}
	})
	admin.HandleFunc("POST /v1/imports", s.serveImport)
	admin.HandleFunc("GET /v1/exports/{what}", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		o := ExportOptions{Format: q.Get("format")}
		var err error
		if v := q.Get("from"); v != "" {
			o.From, err = ParseDay("from", v)
		}
		if v := q.Get("to"); v != "" && err == nil {
			o.To, err = ParseDay("to", v)
		}
		what := r.PathValue("what")
		if err == nil {
			err = CheckExport(what, o)
		}
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		w.Header().Set("Content-Type", ContentType(o.Format))
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, what, cmp.Or(o.Format, FormatCSV)))
		if err := h.Export(r.Context(), flushWriter{w}, what, o); err != nil {
			// The status and part of the file are sent: end the response without its end, so that
			// the client sees a broken download rather than a short file.
			s.Logger.Error("export failed", slog.String("export", what), slog.Any("err", err))
			panic(http.ErrAbortHandler)
		}
	})
}

// memberParams are the query parameters of GET /v1/members.
var memberParams = []string{"email", "name", "tier", "home_store", "created_since", "after", "limit"}

// serveImport is POST /v1/imports: a CSV file as the body, read as a stream.
func (s *Server) serveImport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		switch mt {
		case "text/csv", "application/csv", "application/octet-stream":
		default:
			jsonapi.Error(w, r, s.Logger, jsonapi.WithStatus(http.StatusUnsupportedMediaType,
				loyalty.Errorf(loyalty.EINVALID, "send the file as text/csv, not %s", loyalty.Truncate(ct, 60))))
			return
		}
	}
	dry, err := boolParam(q.Get("dry_run"), "dry_run")
	if err != nil {
		jsonapi.Error(w, r, s.Logger, err)
		return
	}
	wantCSV := q.Get("errors") == "csv"
	if v := q.Get("errors"); v != "" && v != "csv" && v != "json" {
		jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.EINVALID, "errors must be json (in the summary) or csv (the bad rows as a CSV file)"))
		return
	}
	o := ImportOptions{ImportID: q.Get("import_id"), Mode: q.Get("mode"), Reason: q.Get("reason"), DryRun: dry, PointsPerUnit: q.Get("points_per_unit")}
	var errFile *os.File
	var errCSV *ImportErrorsCSV
	if wantCSV {
		// The bad rows go to a file as they are found: a large file of bad rows must not be
		// held in memory.
		f, err := os.CreateTemp("", "loyalty-import-errors-*.csv")
		if err != nil {
			jsonapi.Error(w, r, s.Logger, fmt.Errorf("a file for the import's errors: %w", err))
			return
		}
		defer os.Remove(f.Name())
		defer f.Close()
		errFile, errCSV = f, NewImportErrorsCSV(f)
		o.RowError = errCSV.Add
	}
	body := s.upload(w, http.MaxBytesReader(w, r.Body, MaxImportBytes))
	rep, err := s.Hub.Import(r.Context(), body, o)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		err = loyalty.Errorf(loyalty.ETOOLARGE, "the file is larger than %d MiB: %d rows before the limit were read, and those in whole batches applied; split the file and send each part with the same import_id (rows imported already are skipped)",
			MaxImportBytes>>20, rep.Rows)
	} else if e := body.stopped(err, rep.Rows); e != err {
		err = jsonapi.WithStatus(http.StatusRequestTimeout, loyalty.AsError(e))
	}
	body.extend() // the answer's time counts from the end of the file
	if err != nil {
		jsonapi.Error(w, r, s.Logger, err)
		return
	}
	if !wantCSV {
		jsonapi.Write(w, http.StatusOK, rep)
		return
	}
	if err := errCSV.Flush(); err != nil {
		jsonapi.Error(w, r, s.Logger, fmt.Errorf("the import's errors file: %w", err))
		return
	}
	if _, err := errFile.Seek(0, io.SeekStart); err != nil {
		jsonapi.Error(w, r, s.Logger, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Loyalty-Import-Summary", fmt.Sprintf("rows=%d imported=%d skipped=%d bad=%d created=%d", rep.Rows, rep.Imported, rep.Skipped, rep.Bad, rep.Created))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, errFile)
}

// boolParam reads an optional true/false query parameter. It returns EINVALID.
func boolParam(v, name string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, loyalty.Errorf(loyalty.EINVALID, "%s must be true or false", name)
	}
	return b, nil
}

// ParseDay reads a time given as a date (2026-11-22, midnight UTC) or an RFC 3339 time. It
// returns EINVALID naming the parameter.
func ParseDay(name, v string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		t, err = time.Parse(time.RFC3339, v)
	}
	// In UTC: an offset can move a time written in year 9999 into year 10000.
	if t = t.UTC(); err != nil || t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, loyalty.Errorf(loyalty.EINVALID, "%s must be a date such as 2026-11-22 or a time such as 2026-11-22T10:00:00Z, in the years 1970 to 9999, not %q", name, loyalty.Truncate(v, 40))
	}
	return t, nil
}

// flushWriter sends what is written at once: an export writes a page at a time.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		// Through the wrappers between here and the connection (the metrics' StatusRecorder
		// unwraps): a page is not left in a buffer.
		if ferr := http.NewResponseController(f.w).Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
			err = ferr
		}
	}
	return n, err
}
