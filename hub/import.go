// CSV import of members and their points from another loyalty program: read as a stream,
// checked row by row, applied in set-based batches of adjust deltas.

package hub

import (
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
	// RowError, if set, is called with every bad row as it is found, in file order.
	RowError func(RowError)
}

// DefaultImportBatch is how many rows an import applies in one transaction by default.
const DefaultImportBatch = 2000

// MaxReportedErrors is how many bad rows an ImportReport lists (all are counted, and all are
// passed to ImportOptions.RowError).
const MaxReportedErrors = 1000

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
	Points  int64 `json:"points"` // the net points the imported rows added
	// Errors lists the first MaxReportedErrors bad rows, with their line numbers.
	Errors []RowError `json:"errors"`
	// IgnoredColumns are columns of the header the import does not read.
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
// (the hub computes tiers). A file names each member once. In mode add the points are added to the balance, in mode set the
// balance becomes them; no row may take a balance below zero. Imported points are a migration
// of points the old program issued: no budget counts them (docs/BUDGETS.md).
//
// The file is read as a stream and applied in batches of BatchSize rows, each one transaction:
// the new members at once, one range of change versions, the deltas at once. A batch is
// recorded in the audit trail. Re-running the same import (same ImportID) skips the rows it
// applied: a member holds at most one adjust delta of an import (RuleImport, with the import id
// as its order id).
func (h *Hub) Import(ctx context.Context, r io.Reader, o ImportOptions) (ImportReport, error) {
	rep := ImportReport{ImportID: o.ImportID, Mode: cmp.Or(o.Mode, ImportAdd), DryRun: o.DryRun, Errors: []RowError{}}
	o.Mode = rep.Mode
	if o.Mode != ImportAdd && o.Mode != ImportSet {
		return rep, loyalty.Errorf(loyalty.EINVALID, "mode must be add (add the file's points to the balances) or set (make the balances the file's points), not %q", truncated(o.Mode, 20))
	}
	if err := loyalty.ValidateOrderID(o.ImportID); err != nil || strings.IndexByte(o.ImportID, 0) >= 0 {
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
	counter := &countingReader{r: r}
	cr := csv.NewReader(counter)
	cr.FieldsPerRecord = -1 // a row with a column too many is reported, not fatal
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return rep, loyalty.Errorf(loyalty.EINVALID, "the file is empty: it needs a header row such as email,points")
	} else if err != nil {
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
		seen: make(map[uint64]int), seed: maphash.MakeSeed(), stores: map[string]bool{}}
	batch := make([]importRow, 0, o.BatchSize)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return rep, fmt.Errorf("read the file: %w", err)
			}
			rep.Rows++
			im.bad(pe.StartLine, loyalty.EINVALID, csvReason(err))
			continue
		}
		rep.Rows++
		line, _ := cr.FieldPos(0)
		if row, ok := im.row(line, rec); ok {
			batch = append(batch, row)
		}
		if len(batch) == o.BatchSize {
			if err := im.apply(ctx, batch); err != nil {
				return rep, err
			}
			im.flushErrors()
			batch = batch[:0]
			if o.Progress != nil {
				o.Progress(ImportProgress{Rows: rep.Rows, Bytes: counter.n})
			}
		}
	}
	if err := im.apply(ctx, batch); err != nil {
		return rep, err
	}
	im.flushErrors()
	if o.Progress != nil {
		o.Progress(ImportProgress{Rows: rep.Rows, Bytes: counter.n})
	}
	return rep, nil
}

// importer is one import's state between batches.
type importer struct {
	h      *Hub
	o      ImportOptions
	p      *loyalty.Program
	cols   map[string]int // column index by name, -1 when absent
	ncols  int
	rate   *big.Rat
	rep    *ImportReport
	seen   map[uint64]int // member keys of rows read so far (a hash), with their line
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

// flushErrors reports the bad rows held, in line order.
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
	cols := make(map[string]int, len(importColumns))
	for _, c := range importColumns {
		cols[c] = -1
	}
	var ignored []string
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(name, "\ufeff"))) // a spreadsheet's byte order mark
		if j, ok := cols[name]; !ok {
			ignored = append(ignored, truncated(name, 40))
			continue
		} else if j >= 0 {
			return nil, nil, loyalty.Errorf(loyalty.EINVALID, "the header names column %s twice", name)
		}
		cols[name] = i
	}
	switch {
	case cols["email"] < 0 && cols["member_id"] < 0:
		return nil, nil, loyalty.Errorf(loyalty.EINVALID, "the header row needs an email or a member_id column (found %s): the first row of the file names the columns, such as email,points", strings.Join(header, ","))
	case cols["points"] < 0 && cols["total_spent"] < 0:
		return nil, nil, loyalty.Errorf(loyalty.EINVALID, "the header row needs a points or a total_spent column (found %s)", strings.Join(header, ","))
	case cols["points"] >= 0 && cols["total_spent"] >= 0:
		return nil, nil, loyalty.Errorf(loyalty.EINVALID, "the header has both points and total_spent: import one of them")
	}
	return cols, ignored, nil
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
	if r.email != "" && (!strings.Contains(r.email, "@") || len(r.email) > 254 || !storableKey(r.email) || strings.ContainsAny(r.email, " \t\r\n")) {
		return fail("%q is not an email address", truncated(r.email, 60))
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
	r.member = loyalty.Member{ID: r.id, Email: r.email, Name: get("name"), Country: strings.ToUpper(get("country")), HomeStore: get("home_store"),
		Birthday: get("birthday")}
	if !loyalty.ValidText(r.member.Name, 200) || strings.IndexByte(r.member.Name, 0) >= 0 {
		return fail("a name is at most 200 characters of UTF-8")
	}
	if c := r.member.Country; c != "" && (len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z') {
		return fail("country must be an ISO 3166 two-letter code such as DE, got %q", truncated(c, 20))
	}
	if b := r.member.Birthday; b != "" {
		if err := loyalty.ValidateBirthday(b, im.h.Now().UTC().AddDate(0, 0, 1)); err != nil {
			return fail("%s", loyalty.ErrorMessage(err))
		}
	}
	if s := r.member.HomeStore; s != "" && loyalty.ValidateID("store", s) != nil {
		return fail("home_store %q is not a store id", truncated(s, 40))
	}
	k := maphash.String(im.seed, r.key())
	if first, ok := im.seen[k]; ok {
		return fail("this member is on line %d already: a file names each member once", first)
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
		return 0, loyalty.Errorf(loyalty.EINVALID, "points %q has a thousands separator: write %s, without one", truncated(s, 30), truncated(plain, 30))
	}
	if strings.Contains(digits, ".") {
		return 0, loyalty.Errorf(loyalty.EINVALID, "points %q is not a whole number: points have no fractions", truncated(s, 30))
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, loyalty.Errorf(loyalty.EINVALID, "points %q is not a whole number", truncated(s, 30))
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > loyalty.MaxPoints || n < -loyalty.MaxPoints {
		return 0, loyalty.Errorf(loyalty.EINVALID, "points %s is more than one row may carry (at most %d either way)", truncated(s, 30), int64(loyalty.MaxPoints))
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
		return 0, loyalty.Errorf(loyalty.EINVALID, "total_spent %q is not a whole number of minor units: write 123456 for 1234.56, without separators", truncated(s, 30))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > loyalty.MaxAmount*1000 {
		return 0, loyalty.Errorf(loyalty.EINVALID, "total_spent %q must be a whole number of minor units from 0 to %d", truncated(s, 30), int64(loyalty.MaxAmount)*1000)
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
	bad := loyalty.Errorf(loyalty.EINVALID, "points-per-unit must be a decimal number above 0 and at most 1000, such as 1 or 0.5 (points per unit of the program's earn rule), for a total_spent column; got %q", truncated(s, 30))
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
	im.rep.Imported += out.imported
	im.rep.Created += out.created
	im.rep.Skipped += out.skipped
	im.rep.Points += out.points
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
		if found && done[m.Member.ID] {
			out.skipped++
			continue
		}
		if !found {
			if r.member.HomeStore != "" && !im.stores[r.member.HomeStore] {
				bad(r, loyalty.EINVALID, "home store %s is not registered", r.member.HomeStore)
				continue
			}
			if line, ok := taken["e"+r.email]; ok && r.email != "" {
				bad(r, loyalty.EDUPLICATE, "email %s is on line %d already", r.email, line)
				continue
			}
			nm := r.member
			nm.ID, nm.CreatedAt, nm.Balance = newIDs[i], now, 0
			m = ScheduledMember{Member: nm, Schedule: Schedule{ReviewAt: now}}
		}
		if line, ok := taken["m"+m.Member.ID]; ok {
			bad(r, loyalty.EDUPLICATE, "this row names member %s, as line %d does: a file names each member once", m.Member.ID, line)
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
			}
			if m.Member.HomeStore != "" {
				if a.subscribe == nil {
					a.subscribe = map[string][]string{}
				}
				a.subscribe[m.Member.HomeStore] = append(a.subscribe[m.Member.HomeStore], m.Member.ID)
			}
		}
		taken["m"+m.Member.ID] = r.line
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
		out.points += points
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

// countingReader counts the bytes read through it, for progress.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ImportErrorsCSV writes an import's bad rows as CSV, line,code,reason under a header row, as
// they are found (ImportOptions.RowError): the errors file of the CLI and of the API.
type ImportErrorsCSV struct{ w *csv.Writer }

// NewImportErrorsCSV writes the header row to w and returns the writer of the rows.
func NewImportErrorsCSV(w io.Writer) *ImportErrorsCSV {
	e := &ImportErrorsCSV{csv.NewWriter(w)}
	e.w.Write([]string{"line", "code", "reason"})
	return e
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
