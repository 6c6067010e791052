package hub_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// importHTTP posts a CSV file to POST /v1/imports with the admin key.
func importHTTP(t *testing.T, a *akHub, query, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", a.URL+"/v1/imports?"+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+akAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// A bad row's reason quotes the bad value. Every other reason cuts it (loyalty.Truncate(…, 30..60)),
// but a bad member_id and a bad birthday are quoted whole (loyalty.ValidateID and
// loyalty.ValidateBirthday do not cut them): a file whose cells are megabytes long gets each one
// back in its JSON summary (up to 1000 of them), held in memory until the end of the import,
// and written into the errors CSV.
func TestHostile_ImportRowReasonEchoesHugeCell(t *testing.T) {
	a := openAKHub(t)
	huge := strings.Repeat("!", 1<<20)
	file := "member_id,email,points,birthday\n" +
		huge + ",x@example.com,1,\n" + // line 2: not a member id
		"m9,y@example.com,1," + strings.Repeat("9", 1<<20) + "\n" // line 3: not a birthday
	status, body := importHTTP(t, a, "import_id=big-cells&reason=migration&dry_run=true", file)
	if status != http.StatusOK {
		t.Fatalf("import: HTTP %d %.300s", status, body)
	}
	var rep hub.ImportReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Bad != 2 {
		t.Fatalf("report %+v: want the two rows bad", rep)
	}
	for _, e := range rep.Errors {
		if len(e.Reason) > 1000 {
			t.Errorf("line %d: the reason is %d bytes long (it quotes the whole cell); a reason must quote a cut value", e.Line, len(e.Reason))
		}
	}
	if len(body) > 16<<10 {
		t.Errorf("the summary of a 2-row import is %d bytes", len(body))
	}
}

// A header without the columns the import needs is refused with a message that repeats the
// whole header row (strings.Join(header, ",") in readHeader), however long it is.
func TestHostile_ImportHeaderErrorEchoesWholeHeader(t *testing.T) {
	a := openAKHub(t)
	header := strings.Repeat("x", 1<<20) + ",points\n"
	status, body := importHTTP(t, a, "import_id=big-header&reason=migration", header+"1\n")
	if status != http.StatusBadRequest || !strings.Contains(string(body), loyalty.EINVALID) {
		t.Fatalf("import: HTTP %d %.300s; want 400 EINVALID", status, body)
	}
	if len(body) > 4<<10 {
		t.Errorf("the refusal of a header is %d bytes long: it repeats the whole header row", len(body))
	}
}

// ImportOptions.RowError is called with every bad row as it is found, and serveImport writes the
// bad rows of errors=csv to a file as they are found: a large file of bad rows must not be held
// in memory until its end. Here a stream of 50,000 bad rows, with the batch size 100, must have
// reported some while the file is still open (the writer holds it open until then).
func TestHostile_ImportBadRowsHeldUntilEOF(t *testing.T) {
	h := openHub(t)
	pr, pw := io.Pipe()
	proceed := make(chan struct{})
	go func() {
		fmt.Fprint(pw, "email,points\n")
		for i := range 50_000 {
			fmt.Fprintf(pw, "bad-%d,1\n", i) // no @: not an email address
		}
		<-proceed // the file is not over until a bad row was reported, or the wait gave up
		pw.Close()
	}()
	reported := make(chan struct{})
	var once sync.Once
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := h.Import(cliCtx(), pr, hub.ImportOptions{ImportID: "bad-stream", Reason: "migration", BatchSize: 100,
			RowError: func(hub.RowError) { once.Do(func() { close(reported) }) }})
		if err != nil {
			t.Errorf("import: %v", err)
		}
	}()
	// A bound on the wait, not a pause: the import blocks on the open pipe once it has read the
	// rows, so if it held them all, nothing would ever be reported.
	select {
	case <-reported:
	case <-time.After(2 * time.Minute):
		t.Errorf("50,000 bad rows were read and none was reported while the file was still open: they are held in memory until its end")
	}
	close(proceed)
	<-done
}

// A file names each member once. Two rows naming the same member (once by email, once by
// member_id) in one batch are caught: the second is bad, EDUPLICATE. In two batches, the second
// row is counted as "skipped" (imported before by this import id) instead: its points are
// dropped without an error, and the summary says nothing was wrong. Whether a row of the file is
// reported depends on where the batch boundary falls.
func TestHostile_ImportSameMemberAcrossBatchesSilentlySkipped(t *testing.T) {
	h := openHub(t)
	file := "member_id,email,points\n" +
		"new1,ann@example.com,100\n" + // creates new1
		",ann@example.com,5000\n" // the same member again, by email
	for _, size := range []int{2, 1} {
		id := fmt.Sprintf("dup-%d", size)
		rep, err := h.Import(cliCtx(), strings.NewReader(file), hub.ImportOptions{ImportID: id, Reason: "migration", BatchSize: size, DryRun: size == 2})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Bad != 1 || rep.Skipped != 0 || len(rep.Errors) != 1 || rep.Errors[0].Code != loyalty.EDUPLICATE {
			t.Errorf("batch size %d: %+v; want line 3 bad (EDUPLICATE), nothing skipped", size, rep)
		}
	}
}

// errReadTooFar is what cellReader returns once the import read more of one cell than any row
// of a members file needs.
var errReadTooFar = fmt.Errorf("the import read %d MiB of a single CSV cell", cellLimit>>20)

const cellLimit = 32 << 20

// cellReader is a file whose second line opens a quoted cell that never closes: what a careless
// operator sends when the file is not CSV (a spreadsheet's binary, a zip, accepted as
// application/octet-stream) and a stray double quote comes early. It fails once cellLimit bytes
// were read.
type cellReader struct{ n int }

func (c *cellReader) Read(p []byte) (int, error) {
	if c.n == 0 {
		c.n = copy(p, "email,points\n\"")
		return c.n, nil
	}
	if c.n >= cellLimit {
		return 0, errReadTooFar
	}
	k := min(len(p), cellLimit-c.n)
	for i := range p[:k] {
		p[i] = 'a'
	}
	c.n += k
	return k, nil
}

// A row of a members file is a few hundred bytes, but the import has no limit on a row or a
// cell: encoding/csv keeps reading one quoted cell, and holds all of it in memory (twice over,
// as its buffers grow), until the quote closes or the file ends. Over HTTP a file may be
// 512 MiB (MaxImportBytes), so one request holds a gigabyte or more of the hub's memory for a
// single row, and a few at once can take the hub (and every store's sync) down. The row should
// be refused as bad (or the import stopped) once a row is longer than any row can be.
func TestHostile_ImportUnboundedCell(t *testing.T) {
	h := openHub(t)
	rep, err := h.Import(cliCtx(), &cellReader{}, hub.ImportOptions{ImportID: "huge-cell", Reason: "migration", DryRun: true})
	if errors.Is(err, errReadTooFar) {
		t.Fatalf("%v without refusing it: a row has no size limit (report %+v)", err, rep)
	}
}

// An unclosed quote stops the import at the row's line, with EINVALID, and the summary says
// where; the rows before it are applied (also those of a batch not yet full), and a row of
// exactly MaxImportRowBytes is still read.
func TestHostile_ImportRowLimit(t *testing.T) {
	h := openHub(t)
	header := "email,points,name\n"
	exact := "big@example.com,1,"
	exact += strings.Repeat("n", hub.MaxImportRowBytes-len(exact)-1) + "\n" // a name far over 200: a bad row
	file := header +
		"ann@example.com,10,Ann\n" + // 2
		"\n\n" + // 3, 4: empty lines, skipped
		"bob@example.com,20,\"Bob\nBobson\"\n" + // 5-6: a quoted line break (a bad row: a name has no control characters)
		exact + // 7: exactly the limit
		"cy@example.com,30,Cy\n" + // 8
		"dee@example.com,40,\"Dee" + strings.Repeat("x", hub.MaxImportRowBytes) + "\n" + // 9: never closed
		"eve@example.com,50,Eve\n"
	rep, err := h.Import(cliCtx(), strings.NewReader(file), hub.ImportOptions{ImportID: "limit", Reason: "migration", BatchSize: 100})
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(loyalty.ErrorMessage(err), "line 9 starts a row longer than") ||
		!strings.Contains(loyalty.ErrorMessage(err), "The 4 rows before it were read: 2 imported, 0 skipped (imported before), 2 bad") {
		t.Fatalf("import: %v (report %+v); want EINVALID naming line 9 and what was done", err, rep)
	}
	if len(loyalty.ErrorMessage(err)) > 1000 {
		t.Errorf("the message is %d bytes", len(loyalty.ErrorMessage(err)))
	}
	// Lines 5-6 are one row, and line 7 is read (bad rows: a line break in the name, a name too
	// long); their neighbours are imported.
	if rep.Imported != 2 || rep.Bad != 2 || len(rep.Errors) != 2 || rep.Errors[0].Line != 5 || rep.Errors[1].Line != 7 {
		t.Fatalf("report %+v", rep)
	}
	for _, email := range []string{"ann@example.com", "cy@example.com"} {
		if m := memberBy(t, h, email); m.Balance == 0 {
			t.Errorf("%s was not imported: %+v", email, m)
		}
	}
	// One byte more and line 2 stops the import.
	_, err = h.Import(cliCtx(), strings.NewReader(header+"x"+exact), hub.ImportOptions{ImportID: "limit-2", Reason: "migration", DryRun: true})
	if !strings.Contains(loyalty.ErrorMessage(err), "line 2 starts a row longer than") {
		t.Errorf("a row one byte over the limit: %v", err)
	}
	// Empty lines count to the row after them: a few are nothing, megabytes of them stop the
	// import at the first.
	rep, err = h.Import(cliCtx(), strings.NewReader("email,points,name,note\n"+"ann@example.com,1,Ann,\"a\nnote\"\n"+strings.Repeat("\r\n", 1000)+"fay@example.com,1,Fay,\n"),
		hub.ImportOptions{ImportID: "limit-3", Reason: "migration", DryRun: true})
	if err != nil || rep.Imported != 2 {
		t.Errorf("after empty lines: %+v, %v", rep, err)
	}
	_, err = h.Import(cliCtx(), strings.NewReader("email,points,name,note\n"+"ann@example.com,1,Ann,\"a\nnote\"\n"+strings.Repeat("\r\n", hub.MaxImportRowBytes)),
		hub.ImportOptions{ImportID: "limit-3", Reason: "migration", DryRun: true})
	if !strings.Contains(loyalty.ErrorMessage(err), "line 4 starts more than 2 MiB of empty lines") {
		t.Errorf("megabytes of empty lines: %v", err)
	}
	// The header is held to the limit too.
	_, err = h.Import(cliCtx(), strings.NewReader("\"email"+strings.Repeat(",points", hub.MaxImportRowBytes)), hub.ImportOptions{ImportID: "limit-4", Reason: "migration"})
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(loyalty.ErrorMessage(err), "the header row is longer than") {
		t.Errorf("a header over the limit: %v", err)
	}
}

// Bad rows behind a row waiting in its batch are held in line order, but not without end: after
// many of them the batch is applied early and they are reported.
func TestHostile_ImportBadRowsBehindAWaitingRow(t *testing.T) {
	h := openHub(t)
	var b strings.Builder
	b.WriteString("email,points\nann@example.com,1\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "bad-%d,1\n", i)
	}
	b.WriteString("bob@example.com,2\n")
	var lines []int
	rep, err := h.Import(cliCtx(), strings.NewReader(b.String()), hub.ImportOptions{ImportID: "behind", Reason: "migration",
		RowError: func(e hub.RowError) { lines = append(lines, e.Line) }})
	if err != nil || rep.Imported != 2 || rep.Bad != 3000 || len(lines) != 3000 {
		t.Fatalf("%+v, %v; %d reported", rep.Imported, err, len(lines))
	}
	for i, l := range lines {
		if l != i+3 {
			t.Fatalf("bad row %d reported as line %d", i, l)
		}
	}
	if memberBy(t, h, "ann@example.com").Balance != 1 || memberBy(t, h, "bob@example.com").Balance != 2 {
		t.Errorf("not imported")
	}
}

// A member named twice is EDUPLICATE on a re-run too (not skipped), and the report lists at most
// MaxIgnoredColumns ignored columns.
func TestHostile_ImportDuplicateOnRerunAndIgnoredColumns(t *testing.T) {
	h := openHub(t)
	var cols []string
	for i := range 500 {
		cols = append(cols, fmt.Sprintf("extra %d", i))
	}
	file := "member_id,email,points," + strings.Join(cols, ",") + "\n" +
		"new1,ann@example.com,100" + strings.Repeat(",", len(cols)) + "\n" +
		",ann@example.com,5000" + strings.Repeat(",", len(cols)) + "\n"
	for run := range 2 {
		rep, err := h.Import(cliCtx(), strings.NewReader(file), hub.ImportOptions{ImportID: "dup-rerun", Reason: "migration", BatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Bad != 1 || rep.Errors[0].Code != loyalty.EDUPLICATE || rep.Imported+rep.Skipped != 1 {
			t.Errorf("run %d: %+v", run, rep)
		}
		if len(rep.IgnoredColumns) != hub.MaxIgnoredColumns {
			t.Errorf("%d ignored columns listed", len(rep.IgnoredColumns))
		}
	}
	if m := memberBy(t, h, "ann@example.com"); m.Balance != 100 {
		t.Errorf("balance %d", m.Balance)
	}
}
