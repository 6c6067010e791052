package hub

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
)

// Imports on the dashboard: a CSV file uploaded with a form goes to Hub.Import, as the body of
// POST /v1/imports does, read as a stream (never held whole in memory).

type importsData struct {
	ImportID, Mode, Reason, PointsPerUnit string
	DryRun                                bool
	Report                                *ImportReport
	FileError                             string
	// Marker, while the import runs, marks where the page streams the progress and the result.
	Marker string
}

func (d *dashboard) imports(w http.ResponseWriter, r *http.Request, op *operator) (string, int, any, *web.Flash) {
	return "imports", http.StatusOK, importsData{ImportID: newFormID(), Mode: ImportAdd}, nil
}

// maxImportFields is how many fields the import form may send before its file: it has six, and
// each is kept (up to 1 KiB) until the file's part.
const maxImportFields = 16

// importCSV reads the form's parts in order: the CSRF token and the options first (the form
// puts them before the file), then the file, streamed into Hub.Import.
func (d *dashboard) importCSV(w http.ResponseWriter, r *http.Request) {
	body := d.s.upload(w, http.MaxBytesReader(w, r.Body, MaxImportBytes+64<<10))
	r.Body = io.NopCloser(body)
	op := d.changer(w, r, "imported")
	if op == nil {
		return
	}
	if !op.Admin { // before a byte of the body is read
		d.refuse(w, op, http.StatusForbidden, "Your key may only read.", "Ask for a key of scope admin to import; nothing was imported.")
		return
	}
	outOfDate := func() {
		d.refuse(w, op, http.StatusForbidden, "This form is out of date or came from another site.", "Open the imports page again and send the file from there; nothing was imported.")
	}
	mr, err := r.MultipartReader()
	if err != nil {
		outOfDate()
		return
	}
	data := importsData{}
	form := url.Values{}
	checked, fields := false, 0
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			outOfDate()
			return
		}
		name := part.FormName()
		if name != "file" {
			if fields++; fields > maxImportFields {
				outOfDate()
				return
			}
			b, err := io.ReadAll(io.LimitReader(part, 1024))
			if err != nil {
				outOfDate()
				return
			}
			form.Set(name, strings.TrimSpace(string(b)))
			continue
		}
		// The file: everything before it must have checked out.
		r.PostForm = form
		if !d.sess.CheckCSRF(r, op.Sess) {
			outOfDate()
			return
		}
		checked = true
		data = importsData{ImportID: form.Get("import_id"), Mode: form.Get("mode"), Reason: form.Get("reason"),
			PointsPerUnit: form.Get("points_per_unit"), DryRun: form.Get("dry_run") == "true"}
		if part.FileName() == "" {
			data.FileError = "Choose a CSV file to import."
			break
		}
		d.streamImport(w, r, op, body, part, data)
		return
	}
	if !checked {
		r.PostForm = form
		if !d.sess.CheckCSRF(r, op.Sess) {
			outOfDate()
			return
		}
		data = importsData{ImportID: form.Get("import_id"), Mode: form.Get("mode"), Reason: form.Get("reason"),
			PointsPerUnit: form.Get("points_per_unit"), DryRun: form.Get("dry_run") == "true"}
		data.FileError = "Choose a CSV file to import."
	}
	d.render(w, http.StatusBadRequest, "imports", &view{Op: op, Nav: "imports", Data: data,
		Flash: &web.Flash{Title: "Not imported.", Error: "No file was sent."}})
}

// streamImport runs the import and streams the page as it goes: the page up to its progress
// box at once, a line in the box after each batch, then the result. It works without
// JavaScript: the browser shows the page as it arrives. body is the request's body, file the
// file's part of it.
func (d *dashboard) streamImport(w http.ResponseWriter, r *http.Request, op *operator, body *upload, file io.Reader, data importsData) {
	data.Marker = "import-progress-" + rand.Text()
	var page bytes.Buffer
	if err := d.pages["imports"].ExecuteTemplate(&page, "layout", &view{Op: op, Nav: "imports", Data: data}); err != nil {
		d.fail(w, r, op, err)
		return
	}
	head, rest, _ := strings.Cut(page.String(), data.Marker)
	middle, tail, _ := strings.Cut(rest, data.Marker)
	rc := http.NewResponseController(w)
	// The page starts before the file has been read: without full duplex, Go's HTTP/1.1 server
	// would drop the rest of the upload at the first write, and the import would end early.
	// (HTTP/2 streams both ways by itself: there it is not supported, and not needed.)
	if err := rc.EnableFullDuplex(); err != nil && (r.ProtoMajor < 2 || !errors.Is(err, http.ErrNotSupported)) {
		d.fail(w, r, op, fmt.Errorf("stream an import's page: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, head)
	rc.Flush()
	o := ImportOptions{ImportID: data.ImportID, Mode: data.Mode, Reason: data.Reason, DryRun: data.DryRun, PointsPerUnit: data.PointsPerUnit,
		Progress: func(p ImportProgress) {
			fmt.Fprintf(w, "<p>%s rows read (%s KiB of the file)</p>\n", web.Group(int64(p.Rows)), web.Group(p.Bytes>>10))
			rc.Flush()
		}}
	rep, err := d.s.Hub.Import(WithActor(r.Context(), op.Actor), file, o)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		err = loyalty.Errorf(loyalty.ETOOLARGE, "the file is larger than %d MiB: %d rows before the limit were read, and those in whole batches applied; split the file and send each part with the same import id", MaxImportBytes>>20, rep.Rows)
	} else {
		err = body.stopped(err, rep.Rows)
	}
	body.extend()
	var flash *web.Flash
	if err != nil {
		flash = web.Refusal(err)
		if loyalty.ErrorCode(err) == "" || loyalty.ErrorCode(err) == loyalty.EINTERNAL {
			d.s.Logger.Error("dashboard import", slog.Any("err", err))
		}
	} else {
		data.Report = &rep
		flash = &web.Flash{Title: "Imported.", Text: fmt.Sprintf("%d rows read: %d imported, %d skipped (imported before), %d refused.", rep.Rows, rep.Imported, rep.Skipped, rep.Bad)}
		if rep.DryRun {
			flash.Title = "Checked (dry run): nothing was changed."
		}
	}
	io.WriteString(w, "<p>Finished.</p>")
	io.WriteString(w, middle)
	var done bytes.Buffer
	if err := d.pages["imports"].ExecuteTemplate(&done, "import-done", &view{Op: op, Flash: flash, Data: data}); err != nil {
		d.s.Logger.Error("page template failed", slog.String("template", "import-done"), slog.Any("err", err))
	}
	w.Write(done.Bytes())
	io.WriteString(w, tail)
}
