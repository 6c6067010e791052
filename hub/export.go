// Streamed exports: members, the ledger, conflicts, rejections, budgets and leases as CSV or JSON lines, read
// in pages of short read transactions, so that memory stays flat however large the table.

package hub

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// Exports and their formats.
const (
	ExportMembers    = "members"
	ExportLedger     = "ledger"
	ExportConflicts  = "conflicts"
	ExportRejections = "rejections"
	ExportBudgets    = "budgets"

	FormatCSV   = "csv"
	FormatJSONL = "jsonl"
)

// Exports lists what can be exported.
var Exports = []string{ExportMembers, ExportLedger, ExportConflicts, ExportRejections, ExportBudgets}

// ExportOptions says what to export (Hub.Export).
type ExportOptions struct {
	Format string    // FormatCSV ("") or FormatJSONL
	From   time.Time // the ledger: event times at or after (zero: from the start)
	To     time.Time // the ledger: event times before (zero: no end)
	// PageSize is how many rows one read transaction reads (0: DefaultExportPage).
	PageSize int
	// OnPage, if set, is called after each page is written, with its number of rows.
	OnPage func(rows int)
}

// DefaultExportPage is how many rows an export reads per transaction by default.
const DefaultExportPage = 1000

// ContentType returns the media type of an export format.
func ContentType(format string) string {
	if format == FormatJSONL {
		return "application/jsonl"
	}
	return "text/csv; charset=utf-8"
}

// CheckExport checks an export's name and options before anything is written. It returns
// EINVALID.
func CheckExport(what string, o ExportOptions) error {
	switch {
	case !slices.Contains(Exports, what):
		return loyalty.Errorf(loyalty.EINVALID, "there is no export %q: export members, ledger, conflicts, rejections or budgets", loyalty.Truncate(what, 30))
	case o.Format != "" && o.Format != FormatCSV && o.Format != FormatJSONL:
		return loyalty.Errorf(loyalty.EINVALID, "format must be csv or jsonl, not %q", loyalty.Truncate(o.Format, 20))
	case !o.From.IsZero() && !o.To.IsZero() && !o.From.Before(o.To):
		return loyalty.Errorf(loyalty.EINVALID, "from must be before to")
	case (!o.From.IsZero() || !o.To.IsZero()) && what != ExportLedger:
		return loyalty.Errorf(loyalty.EINVALID, "from and to select a date range of the ledger export only")
	}
	return nil
}

// The columns of each export, in order: CSV's header row, and the keys of JSON lines.
var (
	memberColumns   = []string{"member_id", "email", "name", "balance", "tier", "home_store", "country", "created_at", "version"}
	ledgerColumns   = []string{"seq", "delta_id", "member_id", "store", "terminal", "kind", "points", "amount", "currency", "reward", "voucher", "order_id", "reverses", "rule", "reason", "occurred_at", "received_at"}
	conflictColumns = []string{"id", "kind", "member_id", "store", "delta_ids", "amount", "detail", "at", "flagged"}
	rejectColumns   = []string{"at", "store", "delta_id", "member_id", "kind", "points", "amount", "currency", "reward", "order_id", "occurred_at", "code", "message"}
	budgetColumns   = []string{"row", "budget", "metric", "limit", "spent", "outstanding", "available", "lease_id", "store", "granted", "consumed", "state", "expires_at"}
)

// Export writes an export to w, page by page: members in id order with their balances and tiers,
// the ledger (of a date range of event times) in apply order, conflicts oldest first, the deltas
// the hub refused oldest first (by when, then by store and delta id), or each
// budget of the program followed by its leases that are not settled. CSV has a header row; JSON
// lines have one object per row with the same keys. Text that a spreadsheet would read as a
// formula (starting with =, +, - or @) is written with a leading apostrophe in CSV.
func (h *Hub) Export(ctx context.Context, w io.Writer, what string, o ExportOptions) error {
	if err := CheckExport(what, o); err != nil {
		return err
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultExportPage
	}
	ew := newExportWriter(w, o.Format)
	switch what {
	case ExportMembers:
		ew.header(memberColumns)
		after := ""
		return pages(ctx, h, o, ew, func(tx Tx) (int, func(), error) {
			ms, err := tx.Members(ctx, after, o.PageSize)
			for _, m := range ms {
				ew.row(text(m.ID), text(m.Email), text(m.Name), num(m.Balance), text(m.Tier), text(m.HomeStore), text(m.Country), when(m.CreatedAt), num(m.Version))
			}
			return len(ms), func() {
				if len(ms) > 0 {
					after = ms[len(ms)-1].ID
				}
			}, err
		})
	case ExportLedger:
		ew.header(ledgerColumns)
		var after int64
		return pages(ctx, h, o, ew, func(tx Tx) (int, func(), error) {
			es, err := tx.LedgerPage(ctx, o.From, o.To, after, o.PageSize)
			for _, e := range es {
				ew.row(num(e.Seq), text(e.ID), text(e.Member), text(e.Store), text(e.Terminal), text(string(e.Kind)), num(e.Points), num(e.Amount),
					text(e.Currency), text(e.Reward), text(e.Voucher), text(e.OrderID), text(e.Reverses), text(e.Rule), text(e.Reason),
					when(e.OccurredAt), when(e.ReceivedAt))
			}
			return len(es), func() {
				if len(es) > 0 {
					after = es[len(es)-1].Seq
				}
			}, err
		})
	case ExportConflicts:
		ew.header(conflictColumns)
		var after int64
		return pages(ctx, h, o, ew, func(tx Tx) (int, func(), error) {
			cs, err := tx.ConflictsPage(ctx, after, o.PageSize)
			for _, c := range cs {
				ew.row(num(c.ID), text(c.Kind), text(c.Member), text(c.Store), text(strings.Join(c.Deltas, " ")), num(c.Amount), text(c.Detail),
					when(c.At), cell{s: strconv.FormatBool(c.Flagged), v: c.Flagged})
			}
			return len(cs), func() {
				if len(cs) > 0 {
					after = cs[len(cs)-1].ID
				}
			}, err
		})
	case ExportRejections:
		ew.header(rejectColumns)
		var after RejectionKey
		return pages(ctx, h, o, ew, func(tx Tx) (int, func(), error) {
			rs, err := tx.RejectionsPage(ctx, after, o.PageSize)
			for _, r := range rs {
				d := r.Delta
				ew.row(when(r.At), text(r.Store), text(d.ID), text(d.Member), text(string(d.Kind)), num(d.Points), num(d.Amount), text(d.Currency),
					text(d.Reward), text(d.OrderID), when(d.OccurredAt), text(r.Code), text(r.Message))
			}
			return len(rs), func() {
				if len(rs) > 0 {
					after = rs[len(rs)-1].Key()
				}
			}, err
		})
	}
	// Budgets: a program has few, each with a lease per store at most.
	ew.header(budgetColumns)
	bs, err := h.Budgets(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		ew.row(text("budget"), text(b.ID), text(b.Metric), num(b.Limit), num(b.Spent), num(b.Outstanding), num(b.Available),
			text(""), text(""), num(0), num(0), text(""), when(time.Time{}))
		for _, l := range b.Leases {
			ew.row(text("lease"), text(b.ID), text(b.Metric), num(b.Limit), num(0), num(l.Outstanding()), num(0),
				text(l.ID), text(l.Store), num(l.Granted), num(l.Consumed), text(l.State), when(l.ExpiresAt))
		}
	}
	return ew.flush()
}

// pages calls read with a new read transaction until a page comes back short, writing and
// flushing each page before the next is read. read writes its page's rows and returns how many,
// and what moves its cursor past them, called once the transaction is over: a transaction that
// runs again writes its rows again, in place of the first attempt's.
func pages(ctx context.Context, h *Hub, o ExportOptions, ew *exportWriter, read func(tx Tx) (int, func(), error)) error {
	for {
		var n int
		var next func()
		ew.csv.Flush()
		start := ew.buf.Len()
		err := h.Store.View(ctx, func(tx Tx) error {
			ew.truncate(start)
			var err error
			n, next, err = read(tx)
			return err
		})
		if err != nil {
			return err
		}
		next()
		if err := ew.flush(); err != nil {
			return err
		}
		if o.OnPage != nil && n > 0 {
			o.OnPage(n)
		}
		if n < o.PageSize {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// cell is one value of an export: its text for CSV, its value for JSON.
type cell struct {
	s string
	v any
}

func text(s string) cell { return cell{s: s, v: s} }
func num(n int64) cell   { return cell{s: strconv.FormatInt(n, 10), v: n} }

func when(t time.Time) cell {
	if t.IsZero() {
		return cell{s: "", v: nil}
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return cell{s: s, v: s}
}

// exportWriter writes rows as CSV or JSON lines, buffered a page at a time until flush.
type exportWriter struct {
	w     io.Writer
	jsonl bool
	cols  []string
	buf   bytes.Buffer
	csv   *csv.Writer
}

func newExportWriter(w io.Writer, format string) *exportWriter {
	ew := &exportWriter{w: w, jsonl: format == FormatJSONL}
	ew.csv = csv.NewWriter(&ew.buf)
	return ew
}

func (ew *exportWriter) header(cols []string) {
	ew.cols = cols
	if !ew.jsonl {
		ew.csv.Write(cols)
		ew.csv.Flush()
	}
}

// truncate drops what was written after the first n bytes of the buffer.
func (ew *exportWriter) truncate(n int) {
	ew.csv.Flush()
	ew.buf.Truncate(n)
}

func (ew *exportWriter) row(cells ...cell) {
	if ew.jsonl {
		ew.buf.WriteByte('{')
		for i, c := range cells {
			if i > 0 {
				ew.buf.WriteByte(',')
			}
			k, _ := json.Marshal(ew.cols[i])
			v, _ := json.Marshal(c.v)
			ew.buf.Write(k)
			ew.buf.WriteByte(':')
			ew.buf.Write(v)
		}
		ew.buf.WriteString("}\n")
		return
	}
	rec := make([]string, len(cells))
	for i, c := range cells {
		rec[i] = c.s
		if _, isText := c.v.(string); isText {
			rec[i] = spreadsheetSafe(c.s)
		}
	}
	ew.csv.Write(rec)
}

// formulaStart are the characters that make a spreadsheet read a cell as a formula.
const formulaStart = "=+-@\t\r"

// spreadsheetSafe returns a text cell as it is exported to CSV: with a "'" in front when it
// starts like a formula, and after every ";" or line break followed by what starts one. A
// spreadsheet set to a European locale splits a line at ";", and takes no quotes in the middle
// of a field as quotes: "Ann;=HYPERLINK(…)" in a member's name made a cell of its own, a
// formula, and a line break inside a quoted order id a row of its own.
func spreadsheetSafe(s string) string {
	if s == "" {
		return s
	}
	if strings.ContainsRune(formulaStart, rune(s[0])) {
		s = "'" + s
	}
	if !strings.ContainsAny(s, ";\n\r") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if s[i] != ';' && s[i] != '\n' && s[i] != '\r' {
			continue
		}
		j := i + 1
		for j < len(s) && s[j] == ' ' {
			j++
		}
		if j < len(s) && strings.ContainsRune(formulaStart, rune(s[j])) {
			b.WriteByte('\'')
		}
	}
	return b.String()
}

// flush writes what is buffered.
func (ew *exportWriter) flush() error {
	ew.csv.Flush()
	if err := ew.csv.Error(); err != nil {
		return err
	}
	_, err := ew.w.Write(ew.buf.Bytes())
	ew.buf.Reset()
	return err
}
