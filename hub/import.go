// CSV import of members and their points from another loyalty program: read as a stream,
// checked row by row, applied in set-based batches of adjust deltas.

package hub

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
)

// Import modes.
const (
	ImportAdd = "add" // the file's points are added to the members' balances
	ImportSet = "set" // the members' balances become the file's points
)

// ImportOptions says how to import a CSV file (Hub.Import).
type ImportOptions struct {
	// ImportID names the import: with a row's member key it makes the row's adjustment
	// idempotent, so that the same import run again changes nothing twice. Required.
	ImportID string
	Mode     string // ImportAdd or ImportSet ("": add)
	Reason   string // recorded on every row's adjustment; required
	DryRun   bool   // check and compute everything, change nothing
	// PointsPerUnit is the rate that turns a total_spent column into points: points per unit
	// of the program's earn rule (earn.unit_minor minor units, 100 for a 2-decimal currency),
	// a decimal number such as "1" or "0.5". Required with total_spent, refused without it.
	PointsPerUnit string
	// BatchSize is how many rows go into one transaction (0: DefaultImportBatch).
	BatchSize int
	// Progress, if set, is called after each batch is applied.
	Progress func(ImportProgress)
	// RowError, if set, is called with every bad row as it is found, in file order: at once,
	// or, behind a good row that waits in the batch, when that batch is applied (at the latest
	// once 1000 bad rows wait).
	RowError func(RowError)
}

// DefaultImportBatch is how many rows an import applies in one transaction by default.
const DefaultImportBatch = 2000

// MaxReportedErrors is how many bad rows an ImportReport lists (all are counted, and all are
// passed to ImportOptions.RowError).
const MaxReportedErrors = 1000

// MaxImportRowBytes is the most bytes one row of an import file may take, its line end, any
// empty lines before it and the line breaks of its quoted values included: far more than any row
// of a members file (a row with a cell of a megabyte is still read, and reported as a bad row),
// and bounded so that a file whose double quote is never closed, which makes the rest of the file
// one value, is not read into memory. A longer row stops the import at its line (EINVALID); the
// rows before it are imported. The header row is held to the same limit.
const MaxImportRowBytes = 2 << 20

// MaxIgnoredColumns is how many of the header's ignored columns an ImportReport lists.
const MaxIgnoredColumns = 20

// maxPendingErrors is how many bad rows an import holds, found after a row that waits in the
// batch, before it applies that batch early to report them (importer.pending).
const maxPendingErrors = 1000

// ImportProgress is how far an import got.
type ImportProgress struct {
	Rows  int   // data rows read
	Bytes int64 // bytes of the file read
}

// ImportReport is what an import did (or, dry, would do).
type ImportReport struct {
	ImportID string `json:"import_id"`
	Mode     string `json:"mode"`
	DryRun   bool   `json:"dry_run"`
	Rows     int    `json:"rows"`     // data rows read (the header not counted)
	Imported int    `json:"imported"` // rows whose adjustment was applied now
	Created  int    `json:"members_created"`
	// Skipped are rows this import id applied before: a re-run changes nothing for them.
	Skipped int   `json:"skipped"`
	Bad     int   `json:"bad"`    // rows refused: see Errors
	Points  int64 `json:"points"` // the net points the imported rows added, held at the largest or smallest int64
	// Errors lists the first MaxReportedErrors bad rows, with their line numbers.
	Errors []RowError `json:"errors"`
	// IgnoredColumns are columns of the header the import does not read: the first
	// MaxIgnoredColumns of them, each cut to 40 bytes.
	IgnoredColumns []string `json:"ignored_columns,omitempty"`
}

// RowError is a bad row of an import: its line in the file (the header is line 1), a stable
// code and why it was refused.
type RowError struct {
	Line   int    `json:"line"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// importColumns are the columns an import reads.
var importColumns = []string{"member_id", "email", "points", "total_spent", "name", "birthday", "country", "tier", "home_store"}

// importRow is a checked row of the file.
type importRow struct {
	line   int
	id     string // member_id, if given
	email  string // lower case, if given
	points int64  // points, or what total_spent earns
	member loyalty.Member
}

// key is the member the row names: the member id the file gives, else the email.
func (r *importRow) key() string {
	if r.id != "" {
		return "id:" + r.id
	}
	return "email:" + r.email
}

// RuleImport is the rule of an import's adjust deltas: with the import id as their order id, it
// marks a member as imported by that import (Tx.ImportedMembers).
const RuleImport = "import"

// newMemberID returns an id for a member an import creates: "m" and 18 lower-case characters,
// ordered by time like delta ids (loyalty.NewDeltaID), so that a large import adds its members at
// the end of the indexes on member ids rather than all over them.
func newMemberID() string {
	return "m" + strings.ToLower(loyalty.NewDeltaID()[1:19])
}

// Import reads a CSV file of members and points and applies each good row as an adjust delta
// of the hub, reason and all; bad rows are reported with their line numbers and do not stop
// the others. A header row names the columns: email or member_id, and points or total_spent
// (with PointsPerUnit), and optionally name, birthday, country and home_store for members it
// creates (members are matched by member_id if given, else by email); tier is read and ignored
// (the hub computes tiers). A file names each member once: a row naming a member an earlier row
// of the file named, by member_id or by email, in the same batch or another, is refused
// (EDUPLICATE); only the members an earlier run of the import adjusted are skipped. In mode add
// the points are added to the balance, in mode set the balance becomes them; no row may take a
// balance below zero. Imported points are a migration of points the old program issued: no
// budget counts them (docs/BUDGETS.md).
//
// The file is read as a stream and applied in batches of BatchSize rows (fewer when many bad rows
// wait behind a batch's rows, to report them), each one transaction:
// the new members at once, one range of change versions, the deltas at once. A batch is
// recorded in the audit trail. Re-running the same import (same ImportID) skips the rows it
// applied: a member holds at most one adjust delta of an import (RuleImport, with the import id
// as its order id).
//
// A row is at most MaxImportRowBytes long: a longer one stops the import at its line with
// EINVALID, saying how far it got, after the rows before it were applied.
func (h *Hub) Import(ctx context.Context, r io.Reader, o ImportOptions) (ImportReport, error) {
	rep := ImportReport{ImportID: o.ImportID, Mode: cmp.Or(o.Mode, ImportAdd), DryRun: o.DryRun, Errors: []RowError{}}
	o.Mode = rep.Mode
	if o.Mode != ImportAdd && o.Mode != ImportSet {
		return rep, loyalty.Errorf(loyalty.EINVALID, "mode must be add (add the file's points to the balances) or set (make the balances the file's points), not %q", loyalty.Truncate(o.Mode, 20))
	}
	if err := loyalty.ValidateOrderID(o.ImportID); err != nil {
		return rep, loyalty.Errorf(loyalty.EINVALID, "an import id is required, at most %d characters: it makes running the same import again safe", loyalty.MaxIDLength)
	}
	if err := validReason(o.Reason); err != nil {
		return rep, err
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultImportBatch
	}
	p, err := h.Program(ctx)
	if err != nil {
		return rep, err
	}
	skipper := &bomSkipper{r: r}
	counter := &countingReader{r: skipper, max: MaxImportRowBytes, next: 1}
	cr := csv.NewReader(counter)
	cr.FieldsPerRecord = -1 // a row with a column too many is reported, not fatal
	cr.ReuseRecord = true
	header, err := readRecord(cr, counter)
	if err == io.EOF {
		return rep, loyalty.Errorf(loyalty.EINVALID, "the file is empty: it needs a header row such as email,points")
	} else if errors.As(err, new(*rowTooLong)) {
		if skipper.crOnly() { // the whole file one line: the CSV reader ends none at a lone CR
			return rep, errCarriageReturns
		}
		return rep, loyalty.Errorf(loyalty.EINVALID, "the header row is longer than %d MiB: it is not the header of a members file (or a double quote in it is never closed)", MaxImportRowBytes>>20)
	} else if err != nil {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return rep, fmt.Errorf("read the file: %w", err)
		}
		return rep, loyalty.Errorf(loyalty.EINVALID, "the header row cannot be read as CSV: %v", csvReason(err))
	}
	cols, ignored, err := readHeader(header)
	if err != nil {
		return rep, err
	}
	rep.IgnoredColumns = ignored
	var rate *big.Rat
	if cols["total_spent"] >= 0 {
		if rate, err = parseRate(o.PointsPerUnit); err != nil {
			return rep, err
		}
	} else if o.PointsPerUnit != "" {
		return rep, loyalty.Errorf(loyalty.EINVALID, "points-per-unit converts a total_spent column, and this file has none")
	}
	im := &importer{h: h, o: o, p: &p, cols: cols, ncols: len(header), rate: rate, rep: &rep,
		seen: make(map[uint64]int), named: make(map[uint64]int32), seed: maphash.MakeSeed(), stores: map[string]bool{}}
	batch := make([]importRow, 0, o.BatchSize)
	// flush applies the rows waiting in the batch and reports the bad rows found with them.
	flush := func() error {
		if err := im.apply(ctx, batch); err != nil {
			return err
		}
		im.flushErrors()
		batch = batch[:0]
		if o.Progress != nil {
			o.Progress(ImportProgress{Rows: rep.Rows, Bytes: counter.n})
		}
		return nil
	}
	for {
		rec, err := readRecord(cr, counter)
		if err == io.EOF {
			break
		}
		if long := (*rowTooLong)(nil); errors.As(err, &long) {
			// The rows before it are applied, so that the message can say where the import stopped.
			if err := flush(); err != nil {
				return rep, err
			}
			return rep, im.stopped(long)
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return rep, fmt.Errorf("read the file: %w", err)
			}
			rep.Rows++
			im.bad(pe.StartLine, loyalty.EINVALID, csvReason(err))
		} else {
			rep.Rows++
			line, _ := cr.FieldPos(0)
			if row, ok := im.row(line, rec); ok {
				batch = append(batch, row)
			}
		}
		switch {
		case len(batch) == o.BatchSize || len(batch) > 0 && len(im.pending) >= maxPendingErrors:
			// A batch is full, or so many bad rows wait behind its rows (in line order) that
			// it is applied early, to report them.
			if err := flush(); err != nil {
				return rep, err
			}
		case len(batch) == 0 && len(im.pending) > 0:
			// No row waits to be applied: the bad rows held are the last lines read, reported now.
			im.flushErrors()
		}
	}
	if err := flush(); err != nil {
		return rep, err
	}
	if a, ok := h.Store.(Analyzer); ok && !o.DryRun && max(rep.Created, rep.Imported) >= AnalyzeAfterImport {
		// The import is done whatever this does: a failure leaves the statistics to the server.
		if err := a.Analyze(ctx); err != nil {
			h.Logger.Warn("the database's statistics were not brought up to date after the import; the server's background analysis will", "err", err)
		}
	}
	return rep, nil
}

// stopped is the error of an import stopped at a row longer than MaxImportRowBytes, after the rows
// before it were applied: it says where it stopped and what the import did until then.
func (im *importer) stopped(long *rowTooLong) error {
	did := "imported"
	if im.o.DryRun {
		did = "would be imported (dry run)"
	}
	what := "starts a row longer than %d MiB, more than any row of a members file (most likely a double quote that is never closed, which makes the rest of the file one value)"
	if long.empty {
		what = "starts more than %d MiB of empty lines"
	}
	return loyalty.Errorf(loyalty.EINVALID, "line %d "+what+": the import stopped there. "+
		"The %d rows before it were read: %d %s, %d skipped (imported before), %d bad; fix the file from line %d on and run the import again with the same import id (the rows imported already are skipped)",
		long.line, MaxImportRowBytes>>20, im.rep.Rows, im.rep.Imported, did, im.rep.Skipped, im.rep.Bad, long.line)
}

// rowTooLong is readRecord's error for a row longer than MaxImportRowBytes: the line it starts
// on, or (empty) the first of the empty lines that are longer than that.
type rowTooLong struct {
	line  int
	empty bool
}

func (e *rowTooLong) Error() string {
	return fmt.Sprintf("line %d: a row longer than %d bytes", e.line, MaxImportRowBytes)
}

// readRecord reads the next record of the file, at most MaxImportRowBytes long (*rowTooLong).
// c is what cr reads from: it lets cr read at most one byte more than that past the end of the
// record before, so that cr holds no more of a row that never ends.
func readRecord(cr *csv.Reader, c *countingReader) ([]string, error) {
	rec, err := cr.Read()
	if c.over {
		var pe *csv.ParseError
		switch {
		case err == io.EOF: // nothing but empty lines, which cr skips
			return nil, &rowTooLong{line: c.next, empty: true}
		case errors.As(err, &pe):
			return nil, &rowTooLong{line: pe.StartLine}
		}
		line, _ := cr.FieldPos(0)
		return nil, &rowTooLong{line: line}
	}
	if err == nil && cr.InputOffset()-c.start > MaxImportRowBytes {
		line, _ := cr.FieldPos(0)
		return nil, &rowTooLong{line: line}
	}
	c.start = cr.InputOffset()
	if err == nil {
		// The line after the record: its last value may hold line breaks.
		line, _ := cr.FieldPos(len(rec) - 1)
		c.next = line + strings.Count(rec[len(rec)-1], "\n") + 1
	} else if pe := (*csv.ParseError)(nil); errors.As(err, &pe) {
		c.next = pe.Line + 1
	}
	return rec, err
}

// importer is one import's state between batches.
type importer struct {
	h     *Hub
	o     ImportOptions
	p     *loyalty.Program
	cols  map[string]int // column index by name, -1 when absent
	ncols int
	rate  *big.Rat
	rep   *ImportReport
	seen  map[uint64]int // member keys of rows read so far (a hash), with their line
	// named are the members that the rows of the batches applied so far adjusted or skipped (a
	// hash of "m" and the member id), with the row's line, so that a row naming one of them
	// again, in another batch, is reported as a row of the same batch is. In a dry run it also
	// holds "e" and the email of each member the rows would create: the rollback leaves them
	// out of the next batch's lookups.
	named  map[uint64]int32
	seed   maphash.Seed
	stores map[string]bool // home stores looked up: registered or not
	// pending are the bad rows found since the last batch was applied.
	pending []RowError
}

// bad reports a bad row: it is held until the rows read with it were applied (flushErrors), so
// that bad rows are reported in line order.
func (im *importer) bad(line int, code, reason string) {
	im.pending = append(im.pending, RowError{Line: line, Code: code, Reason: reason})
}

// flushErrors reports the bad rows held, in line order: with no row of a batch left to apply
// before them.
func (im *importer) flushErrors() {
	slices.SortStableFunc(im.pending, func(a, b RowError) int { return a.Line - b.Line })
	if !im.o.DryRun && len(im.pending) > 0 {
		im.h.metrics().ImportRows("failed", len(im.pending))
	}
	for _, e := range im.pending {
		im.rep.Bad++
		if len(im.rep.Errors) < MaxReportedErrors {
			im.rep.Errors = append(im.rep.Errors, e)
		}
		if im.o.RowError != nil {
			im.o.RowError(e)
		}
	}
	im.pending = im.pending[:0]
}

// readHeader maps the header's column names (any case, spaces around them ignored) to indexes.
func readHeader(header []string) (map[string]int, []string, error) {
	if err := fileFormat(header); err != nil {
		return nil, nil, err
	}
	cols := make(map[string]int, len(importColumns))
	for _, c := range importColumns {
		cols[c] = -1
	}
	var ignored []string
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(name))
		if j, ok := cols[name]; !ok {
			if len(ignored) < MaxIgnoredColumns {
				ignored = append(ignored, loyalty.Truncate(name, 40))
			}
			continue
		} else if j >= 0 {
			return nil, nil, loyalty.Errorf(loyalty.EINVALID, "the header names column %s twice", loyalty.Truncate(name, 40))
		}
		cols[name] = i
	}
	switch {
	case cols["email"] < 0 && cols["member_id"] < 0:
		return nil, nil, loyalty.Errorf(loyalty.EINVALID, "the header row needs an email or a member_id column (found %s): the first row of the file names the columns, such as email,points", headerList(header))
	case cols["points"] < 0 && cols["total_spent"] < 0:
		return nil, nil, loyalty.Errorf(loyalty.EINVALID, "the header row needs a points or a total_spent column (found %s)", headerList(header))
	case cols["points"] >= 0 && cols["total_spent"] >= 0:
		return nil, nil, loyalty.Errorf(loyalty.EINVALID, "the header has both points and total_spent: import one of them")
	}
	return cols, ignored, nil
}

// errCarriageReturns refuses a file whose lines end with a carriage return alone, which the CSV
// reader reads as one line.
var errCarriageReturns = loyalty.Errorf(loyalty.EINVALID, "the file's lines end with a carriage return alone, as old Mac spreadsheets write: save it as CSV UTF-8 (comma delimited)")

// fileFormat recognises, from its header row, a file saved in a form the import does not read,
// and says how to save it instead: UTF-16 (a spreadsheet's "Unicode text"), lines that end with a
// carriage return alone (old Mac spreadsheets), columns separated by semicolons (spreadsheets set
// to languages that write a decimal comma).
func fileFormat(header []string) error {
	joined := strings.Join(header, ",")
	switch {
	case strings.HasPrefix(joined, "\xff\xfe") || strings.HasPrefix(joined, "\xfe\xff") || strings.ContainsRune(joined, 0):
		return loyalty.Errorf(loyalty.EINVALID, "the file is in UTF-16, not UTF-8: save it as CSV UTF-8 (comma delimited)")
	case !utf8.ValidString(joined):
		return loyalty.Errorf(loyalty.EINVALID, "the header row is not UTF-8 text: save the file as CSV UTF-8 (comma delimited)")
	case strings.Contains(joined, "\r"):
		return errCarriageReturns
	case len(header) == 1 && strings.Contains(joined, ";"):
		return loyalty.Errorf(loyalty.EINVALID, "the columns are separated by semicolons: save the file as CSV with commas (comma delimited), such as email,points")
	}
	return nil
}

// headerList is what a message quotes of a header row: its first 10 column names, each cut to
// 40 bytes, and how many more there are.
func headerList(header []string) string {
	const n = 10
	names := make([]string, 0, min(len(header), n))
	for _, name := range header[:min(len(header), n)] {
		names = append(names, loyalty.Truncate(name, 40))
	}
	s := strings.Join(names, ",")
	if len(header) > n {
		s += fmt.Sprintf(",… (%d columns in all)", len(header))
	}
	return s
}

// row checks one record; a bad one is reported.
func (im *importer) row(line int, rec []string) (importRow, bool) {
	r := importRow{line: line}
	if len(rec) != im.ncols {
		reason := fmt.Sprintf("the row has %d columns, the header %d", len(rec), im.ncols)
		if len(rec) > im.ncols {
			reason += ": a value with a comma must be in double quotes, and points are written without a thousands separator (52620, not 52,620)"
		}
		im.bad(line, loyalty.EINVALID, reason)
		return r, false
	}
	get := func(col string) string {
		if i := im.cols[col]; i >= 0 {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	fail := func(format string, args ...any) (importRow, bool) {
		im.bad(line, loyalty.EINVALID, fmt.Sprintf(format, args...))
		return r, false
	}
	r.id, r.email = get("member_id"), strings.ToLower(get("email"))
	if r.id == "" && r.email == "" {
		return fail("the row has neither a member_id nor an email")
	}
	if r.id != "" {
		if err := loyalty.ValidateID("member", r.id); err != nil {
			return fail("%s", loyalty.ErrorMessage(err))
		}
	}
	if r.email != "" && (validEmail(r.email) != nil || !storableKey(r.email)) {
		return fail("%q is not an email address", loyalty.Truncate(r.email, 60))
	}
	var err error
	if im.cols["points"] >= 0 {
		r.points, err = parsePoints(get("points"))
	} else {
		r.points, err = im.spentPoints(get("total_spent"))
	}
	if err != nil {
		return fail("%s", loyalty.ErrorMessage(err))
	}
	if im.o.Mode == ImportSet && r.points < 0 {
		return fail("a balance cannot be negative: in mode set, points is the balance the member will have")
	}
	r.member = loyalty.Member{ID: r.id, Email: r.email, Name: get("name"), Country: countryCode(get("country")), HomeStore: get("home_store"),
		Birthday: get("birthday")}
	if err := validName(r.member.Name); err != nil { // as the API checks a member's fields (care.go)
		return fail("%s", loyalty.ErrorMessage(err))
	}
	if c := r.member.Country; c != "" {
		if err := validCountry(c); err != nil {
			return fail("%s", loyalty.ErrorMessage(err))
		}
	}
	if b := r.member.Birthday; b != "" {
		if err := loyalty.ValidateBirthday(b, im.h.Now().UTC().AddDate(0, 0, 1)); err != nil {
			return fail("%s", loyalty.ErrorMessage(err))
		}
	}
	if s := r.member.HomeStore; s != "" && loyalty.ValidateID("store", s) != nil {
		return fail("home_store %q is not a store id", loyalty.Truncate(s, 40))
	}
	k := maphash.String(im.seed, r.key())
	if first, ok := im.seen[k]; ok {
		im.bad(line, loyalty.EDUPLICATE, fmt.Sprintf("this member is on line %d already: a file names each member once", first))
		return r, false
	}
	im.seen[k] = line
	return r, true
}

// parsePoints reads a points value: a whole number, optionally negative, without separators.
func parsePoints(s string) (int64, error) {
	if s == "" {
		return 0, loyalty.Errorf(loyalty.EINVALID, "points is empty: write 0 for none")
	}
	digits := strings.TrimPrefix(s, "-")
	if strings.ContainsAny(digits, ",'  _") || strings.Count(digits, ".") > 1 || thousandsDot(digits) {
		plain := strings.NewReplacer(",", "", "'", "", " ", "", " ", "", "_", "", ".", "").Replace(s)
		return 0, loyalty.Errorf(loyalty.EINVALID, "points %q has a thousands separator: write %s, without one", loyalty.Truncate(s, 30), loyalty.Truncate(plain, 30))
	}
	if strings.Contains(digits, ".") {
		return 0, loyalty.Errorf(loyalty.EINVALID, "points %q is not a whole number: points have no fractions", loyalty.Truncate(s, 30))
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, loyalty.Errorf(loyalty.EINVALID, "points %q is not a whole number", loyalty.Truncate(s, 30))
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > loyalty.MaxPoints || n < -loyalty.MaxPoints {
		return 0, loyalty.Errorf(loyalty.EINVALID, "points %s is more than one row may carry (at most %d either way)", loyalty.Truncate(s, 30), int64(loyalty.MaxPoints))
	}
	return n, nil
}

// thousandsDot reports whether s reads as a number grouped in thousands with dots, as some
// locales write them: 52.620 or 1.234.567.
func thousandsDot(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	if len(parts) == 2 {
		return len(parts[1]) == 3 && len(parts[0]) >= 1 && len(parts[0]) <= 3 && parts[0] != "0"
	}
	return true // more than one dot is never a plain number
}

// spentPoints reads a total_spent value, a whole number of minor units of the program's
// currency (docs/API.md, "Money"), and returns the points it earns at the import's rate:
// total × rate ÷ earn.unit_minor, rounded down.
func (im *importer) spentPoints(s string) (int64, error) {
	if s == "" {
		return 0, loyalty.Errorf(loyalty.EINVALID, "total_spent is empty: write 0 for none")
	}
	if strings.ContainsAny(s, ".,'  ") {
		return 0, loyalty.Errorf(loyalty.EINVALID, "total_spent %q is not a whole number of minor units: write 123456 for 1234.56, without separators", loyalty.Truncate(s, 30))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > loyalty.MaxAmount*1000 {
		return 0, loyalty.Errorf(loyalty.EINVALID, "total_spent %q must be a whole number of minor units from 0 to %d", loyalty.Truncate(s, 30), int64(loyalty.MaxAmount)*1000)
	}
	x := new(big.Rat).SetInt64(n)
	x.Mul(x, im.rate)
	x.Quo(x, new(big.Rat).SetInt64(int64(max(im.p.Earn.UnitMinor, 1))))
	pts := new(big.Int).Quo(x.Num(), x.Denom()) // both positive: rounds down
	if !pts.IsInt64() || pts.Int64() > loyalty.MaxPoints {
		return 0, loyalty.Errorf(loyalty.EINVALID, "total_spent %s earns more points than one row may carry (%d)", s, int64(loyalty.MaxPoints))
	}
	return pts.Int64(), nil
}

// parseRate reads --points-per-unit: a decimal number above 0, at most 1000, at most 6 decimals.
func parseRate(s string) (*big.Rat, error) {
	bad := loyalty.Errorf(loyalty.EINVALID, "points-per-unit must be a decimal number above 0 and at most 1000, such as 1 or 0.5 (points per unit of the program's earn rule), for a total_spent column; got %q", loyalty.Truncate(s, 30))
	if s == "" || strings.ContainsAny(s, "eE/+-") {
		return nil, bad
	}
	if i := strings.IndexByte(s, '.'); i >= 0 && len(s)-i-1 > 6 {
		return nil, bad
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() <= 0 || r.Cmp(big.NewRat(1000, 1)) > 0 {
		return nil, bad
	}
	return r, nil
}

// csvReason says what is wrong with a record encoding/csv refused.
func csvReason(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, csv.ErrBareQuote):
			return "a double quote in a value that is not in double quotes: quote the value and double the quote (\"a \"\"b\"\"\")"
		case errors.Is(pe.Err, csv.ErrQuote):
			return "a quoted value is not closed, or has text after its closing quote"
		}
		return pe.Err.Error()
	}
	return err.Error()
}

// batchOutcome is what a batch's transaction did, set afresh by each attempt.
type batchOutcome struct {
	imported, created, skipped int
	points                     int64
	bad                        []RowError
	named                      []namedRow // the members the batch adjusted or skipped, for importer.named
}

// namedRow is a member a row of an import named: "m" and its id, or (importer.named) "e" and the
// email of a member a dry run would create.
type namedRow struct {
	key  string
	line int
}

// apply applies a batch of checked rows in one transaction (dry: in one that is rolled back).
func (im *importer) apply(ctx context.Context, rows []importRow) error {
	if len(rows) == 0 {
		return nil
	}
	// Home stores are looked up once per import.
	var missing []string
	for i := range rows {
		if s := rows[i].member.HomeStore; s != "" {
			if _, ok := im.stores[s]; !ok {
				missing = append(missing, s)
				im.stores[s] = false
			}
		}
	}
	if len(missing) > 0 {
		if err := im.h.Store.View(ctx, func(tx Tx) error {
			for _, s := range missing {
				_, err := tx.StoreInfo(ctx, s)
				if err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
					return err
				}
				im.stores[s] = err == nil
			}
			return nil
		}); err != nil {
			return err
		}
	}
	// New member ids are drawn once, outside the transaction: an attempt that is retried uses
	// the same ones.
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].id
		if ids[i] == "" {
			ids[i] = newMemberID()
		}
	}
	var out batchOutcome
	err := im.h.update(ctx, func(tx Tx) error {
		out = batchOutcome{}
		if err := im.applyBatch(ctx, tx, rows, ids, &out); err != nil {
			return err
		}
		if im.o.DryRun {
			return errDryRun
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDryRun) {
		return fmt.Errorf("import lines %d to %d: %w", rows[0].line, rows[len(rows)-1].line, err)
	}
	slices.SortFunc(out.bad, func(a, b RowError) int { return a.Line - b.Line })
	for _, e := range out.bad {
		im.bad(e.Line, e.Code, e.Reason)
	}
	for _, n := range out.named {
		im.named[maphash.String(im.seed, n.key)] = int32(n.line)
	}
	im.rep.Imported += out.imported
	im.rep.Created += out.created
	im.rep.Skipped += out.skipped
	im.rep.Points = loyalty.AddSaturating(im.rep.Points, out.points)
	if !im.o.DryRun {
		m := im.h.metrics()
		m.ImportRows("imported", out.imported)
		m.ImportRows("skipped", out.skipped)
	}
	return nil
}

// errDryRun rolls back a dry run's transaction.
var errDryRun = errors.New("dry run")

// applyBatch is a batch's transaction: it finds the members of the rows (two reads) and which of
// them this import adjusted before (one read), creates the missing members (one write), and
// applies an adjust delta for each row, all inserted together, the changed members stamped with
// one range of change versions (applier.finish).
func (im *importer) applyBatch(ctx context.Context, tx Tx, rows []importRow, newIDs []string, out *batchOutcome) error {
	now := im.h.Now().UTC().Truncate(time.Millisecond)
	key := ActorFrom(ctx).KeyID
	var byID, emails []string
	for i := range rows {
		if rows[i].id != "" {
			byID = append(byID, rows[i].id)
		}
		if rows[i].email != "" {
			emails = append(emails, rows[i].email)
		}
	}
	members, err := tx.MembersWithSchedule(ctx, byID)
	if err != nil {
		return err
	}
	owners, err := tx.MembersByEmail(ctx, emails)
	if err != nil {
		return err
	}
	known := make([]string, 0, len(members)+len(owners))
	for id := range members {
		known = append(known, id)
	}
	for _, m := range owners {
		known = append(known, m.Member.ID)
	}
	done, err := tx.ImportedMembers(ctx, im.o.ImportID, known)
	if err != nil {
		return err
	}
	a := im.h.newApplier(tx)
	a.deferInserts()
	bad := func(r *importRow, code, format string, args ...any) {
		out.bad = append(out.bad, RowError{Line: r.line, Code: code, Reason: fmt.Sprintf(format, args...)})
	}
	var created []loyalty.Member
	taken := map[string]int{} // emails of members this batch creates, and member ids it adjusts, with the line
	for i := range rows {
		r := &rows[i]
		var m ScheduledMember
		var found bool
		if r.id != "" {
			m, found = members[r.id]
			if !found && r.email != "" {
				if o, ok := owners[r.email]; ok {
					bad(r, loyalty.EDUPLICATE, "email %s belongs to member %s, not %s", r.email, o.Member.ID, r.id)
					continue
				}
			}
		} else {
			m, found = owners[r.email]
		}
		if !found {
			if r.member.HomeStore != "" && !im.stores[r.member.HomeStore] {
				bad(r, loyalty.EINVALID, "home store %s is not registered", r.member.HomeStore)
				continue
			}
			if r.email != "" {
				if line, ok := im.namedBefore(taken, "e", r.email); ok {
					bad(r, loyalty.EDUPLICATE, "email %s is on line %d already", r.email, line)
					continue
				}
			}
			nm := r.member
			nm.ID, nm.CreatedAt, nm.Balance = newIDs[i], now, 0
			m = ScheduledMember{Member: nm, Schedule: Schedule{ReviewAt: now}}
		}
		// A member named by an earlier row of this import, in this batch or an earlier one, by
		// the same key or the other (member_id, email).
		if line, ok := im.namedBefore(taken, "m", m.Member.ID); ok {
			bad(r, loyalty.EDUPLICATE, "this row names member %s, as line %d does: a file names each member once", m.Member.ID, line)
			continue
		}
		if found && done[m.Member.ID] {
			// Adjusted by an earlier run of this import.
			taken["m"+m.Member.ID] = r.line
			out.named = append(out.named, namedRow{"m" + m.Member.ID, r.line})
			out.skipped++
			continue
		}
		bal := m.Member.Balance
		points := r.points
		if im.o.Mode == ImportSet {
			points = r.points - bal
		}
		switch {
		case bal+points < 0 && !found:
			bad(r, loyalty.EINVALID, "this row would start a new member at %d points: an import never takes a balance below zero", bal+points)
			continue
		case bal+points < 0:
			bad(r, loyalty.EINVALID, "this row would take the balance of member %s to %d; their balance is %d points, and an import never takes it below zero",
				m.Member.ID, bal+points, bal)
			continue
		case bal+points > loyalty.MaxBalance:
			bad(r, loyalty.EINVALID, "this row would take the balance of member %s over %d points", m.Member.ID, int64(loyalty.MaxBalance))
			continue
		case points > loyalty.MaxPoints || points < -loyalty.MaxPoints:
			bad(r, loyalty.EINVALID, "this row changes the balance of member %s by %d points, more than one change may carry", m.Member.ID, points)
			continue
		}
		if !found {
			created = append(created, m.Member)
			if r.email != "" {
				taken["e"+r.email] = r.line
				if im.o.DryRun {
					out.named = append(out.named, namedRow{"e" + r.email, r.line})
				}
			}
			if m.Member.HomeStore != "" {
				if a.subscribe == nil {
					a.subscribe = map[string][]string{}
				}
				a.subscribe[m.Member.HomeStore] = append(a.subscribe[m.Member.HomeStore], m.Member.ID)
			}
		}
		taken["m"+m.Member.ID] = r.line
		out.named = append(out.named, namedRow{"m" + m.Member.ID, r.line})
		a.remember(m.Member, m.Schedule)
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Terminal: key, Member: m.Member.ID, Kind: loyalty.KindAdjust,
			Points: points, OrderID: im.o.ImportID, Rule: RuleImport, Reason: im.o.Reason, OccurredAt: now}
		if _, _, err := a.insert(ctx, d, d.Hash()); err != nil {
			return err
		}
		a.balances[d.Member] = bal + points
		if !found {
			a.emit(EventMemberCreated, memberCreated(m.Member), m.Member.ID)
		}
		a.emitDelta(loyalty.HubStore, d, bal+points)
		a.noteChange(d)
		a.changed[d.Member] = true
		a.order = append(a.order, d.Member)
		out.imported++
		out.points = loyalty.AddSaturating(out.points, points)
	}
	out.created = len(created)
	if err := tx.InsertMembers(ctx, created); err != nil {
		return err
	}
	if _, err := a.finish(ctx); err != nil {
		return err
	}
	if out.imported == 0 {
		return nil
	}
	return im.h.audit(ctx, tx, AuditImport, im.o.ImportID, fmt.Sprintf("lines %d to %d, mode %s: %d rows imported (%+d points), %d members created; reason: %s",
		rows[0].line, rows[len(rows)-1].line, im.o.Mode, out.imported, out.points, out.created, im.o.Reason))
}

// namedBefore returns the line of the row before that named the member (kind "m", key its id) or
// the new member's email (kind "e"): a row of this batch (taken) or of an earlier one (named).
func (im *importer) namedBefore(taken map[string]int, kind, key string) (int, bool) {
	if line, ok := taken[kind+key]; ok {
		return line, true
	}
	line, ok := im.named[maphash.String(im.seed, kind+key)]
	return int(line), ok
}

// countingReader counts the bytes read through it, for progress, and limits a record: from
// start, where the record being read begins, it reads at most max bytes and one more, then
// ends the file early and sets over (readRecord).
type countingReader struct {
	r     io.Reader
	n     int64
	start int64 // the offset of the record being read (csv.Reader.InputOffset after the last)
	next  int   // the line after the last record read
	max   int64
	over  bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	room := c.start + c.max + 1 - c.n
	if room <= 0 {
		// Everything read since start is of the one record being read: it is longer than max.
		c.over = true
		return 0, io.EOF
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// bomSkipper leaves out the byte order mark a spreadsheet writes at the start of a UTF-8 file,
// before the CSV reader sees it: in front of a quoted first column name ("email", as tools that
// quote every field write it), the mark makes the quote one in the middle of a field.
type bomSkipper struct {
	r       io.Reader
	started bool
	head    []byte // the first bytes read, not the mark, still to be returned
	cr, lf  bool   // a carriage return and a line feed were read (looked for until the first LF)
}

// crOnly reports whether what was read has carriage returns and no line feed: lines that end
// with a carriage return alone, which the CSV reader does not end a record at.
func (b *bomSkipper) crOnly() bool { return b.cr && !b.lf }

// see notes what p[:n] holds of line ends, until a line feed is found.
func (b *bomSkipper) see(p []byte) {
	if !b.lf {
		b.lf = bytes.IndexByte(p, '\n') >= 0
		b.cr = b.cr || bytes.IndexByte(p, '\r') >= 0
	}
}

func (b *bomSkipper) Read(p []byte) (int, error) {
	if !b.started {
		b.started = true
		head := make([]byte, len(utf8BOM))
		n, err := io.ReadFull(b.r, head)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return 0, err
		}
		if string(head[:n]) != utf8BOM {
			b.head = head[:n]
		}
	}
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		b.see(p[:n])
		return n, nil
	}
	n, err := b.r.Read(p)
	b.see(p[:n])
	return n, err
}

// utf8BOM is the byte order mark in UTF-8.
const utf8BOM = "\ufeff"

// ImportErrorsCSV writes an import's bad rows as CSV, line,code,reason under a header row, as
// they are found (ImportOptions.RowError): the errors file of the CLI and of the API.
type ImportErrorsCSV struct{ w *csv.Writer }

// ImportErrorsHeader is the header row an errors file begins with, line end included.
const ImportErrorsHeader = "line,code,reason\n"

// NewImportErrorsCSV writes the header row to w and returns the writer of the rows.
func NewImportErrorsCSV(w io.Writer) *ImportErrorsCSV {
	io.WriteString(w, ImportErrorsHeader) // an error shows in Flush's, as the rows' do
	return &ImportErrorsCSV{csv.NewWriter(w)}
}

// Add writes one bad row.
func (e *ImportErrorsCSV) Add(r RowError) {
	e.w.Write([]string{strconv.Itoa(r.Line), r.Code, r.Reason})
}

// Flush writes what is buffered and returns the first error of any write.
func (e *ImportErrorsCSV) Flush() error {
	e.w.Flush()
	return e.w.Error()
}
