package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// migrateCommands are `loyalty adjust`, `loyalty import members` and `loyalty export`, run on
// the hub's database like the other admin commands (README, "Migrating from another loyalty
// program"). `loyalty member list` is memberListCommand.
func migrateCommands() []*cobra.Command {
	return []*cobra.Command{adjustCommand(), importCommand(), exportCommand()}
}

// memberListCommand is `loyalty member list`: a page of members, optionally filtered.
func memberListCommand() *cobra.Command {
	list := &cobra.Command{
		Use:   "list",
		Short: "List members, filtered by email, name, tier, home store or creation date, a page at a time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var f hub.MemberFilter
			f.Email, _ = cmd.Flags().GetString("email")
			f.Name, _ = cmd.Flags().GetString("name")
			f.Tier, _ = cmd.Flags().GetString("tier")
			f.HomeStore, _ = cmd.Flags().GetString("home-store")
			after, _ := cmd.Flags().GetString("after")
			limit, _ := cmd.Flags().GetInt("limit")
			if v, _ := cmd.Flags().GetString("created-since"); v != "" {
				var err error
				if f.CreatedSince, err = hub.ParseDay("--created-since", v); err != nil {
					return err
				}
			}
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				page, err := h.SearchMembers(ctx, f, after, limit)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), page)
				}
				t := newTable(cmd.OutOrStdout(), "id", "email", "name", "tier", "home store", "balance", "created")
				for _, m := range page.Members {
					t.row(m.ID, m.Email, m.Name, m.Tier, m.HomeStore, m.Balance, m.CreatedAt)
				}
				if err := t.flush(); err != nil {
					return err
				}
				if page.Next != "" {
					tell(cmd, "more members follow: add --after %s for the next page", page.Next)
				}
				return nil
			})
		},
	}
	list.Flags().String("email", "", "the whole email address (any case)")
	list.Flags().String("name", "", "a part of the name (any case)")
	list.Flags().String("tier", "", "a tier id")
	list.Flags().String("home-store", "", "a home store id")
	list.Flags().String("created-since", "", "created at or after this date (2026-11-22) or time (RFC 3339)")
	list.Flags().String("after", "", "the member id after which the page starts (the previous page's last)")
	list.Flags().Int("limit", 100, fmt.Sprintf("members per page (at most %d)", hub.MaxMemberPage))
	jsonFlag(list)
	hubFlags(list)
	return list
}

func adjustCommand() *cobra.Command {
	adjust := &cobra.Command{
		Use:   "adjust",
		Short: "Add points to a member's balance, or take them away, with a reason (ledgered, audited, reversible)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			var req hub.AdjustRequest
			req.MemberID, _ = cmd.Flags().GetString("member")
			req.Points, _ = cmd.Flags().GetInt64("points")
			req.Reason, _ = cmd.Flags().GetString("reason")
			req.AdjustID, _ = cmd.Flags().GetString("adjust-id")
			if req.AdjustID == "" {
				// From what the command says and the day: the same command run again (after a
				// lost answer, a dropped connection) changes nothing twice.
				sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%s\x00%s", req.MemberID, req.Points, req.Reason, time.Now().UTC().Format(time.DateOnly)))
				req.AdjustID = "cli-" + hex.EncodeToString(sum[:8])
			}
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				a, err := h.Adjust(ctx, req)
				if err != nil {
					return err
				}
				what := fmt.Sprintf("member %s: %+d points, balance %d; `loyalty adjust reverse --adjust-id %s --reason …` undoes it",
					a.MemberID, a.Points, a.Balance, a.AdjustID)
				if a.Replayed {
					what = fmt.Sprintf("nothing changed: adjustment %s was already made (%s UTC: member %s %+d points, balance then %d); "+
						"to make a second, equal one, give --adjust-id a new key", a.AdjustID, a.At.Format(time.DateTime), a.MemberID, a.Points, a.Balance)
				}
				return printAdjustment(cmd, a, what)
			})
		},
	}
	adjust.Flags().String("member", "", "member id")
	adjust.Flags().Int64("points", 0, "points to add; negative to take away")
	adjust.Flags().String("reason", "", "why (recorded in the ledger and the audit trail)")
	adjust.Flags().String("adjust-id", "", "idempotency key: the same key again changes nothing (empty: made from the member, points, reason and today's date, so the same command again the same day changes nothing twice; give one to make two equal adjustments in a day)")
	adjust.MarkFlagRequired("member")
	adjust.MarkFlagRequired("points")
	adjust.MarkFlagRequired("reason")
	reverse := &cobra.Command{
		Use:   "reverse",
		Short: "Undo an adjustment by its adjust id (once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("adjust-id")
			reason, _ := cmd.Flags().GetString("reason")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				a, err := h.ReverseAdjustment(ctx, id, reason)
				if err != nil {
					return err
				}
				what := fmt.Sprintf("adjustment %s reversed: member %s %+d points, balance %d", id, a.MemberID, a.Points, a.Balance)
				if a.Replayed {
					what = fmt.Sprintf("nothing changed: adjustment %s was already reversed (%s UTC: member %s %+d points, balance then %d)",
						id, a.At.Format(time.DateTime), a.MemberID, a.Points, a.Balance)
				}
				return printAdjustment(cmd, a, what)
			})
		},
	}
	reverse.Flags().String("adjust-id", "", "the adjust id of the adjustment to undo")
	reverse.Flags().String("reason", "", "why")
	reverse.MarkFlagRequired("adjust-id")
	reverse.MarkFlagRequired("reason")
	jsonFlag(adjust, reverse)
	hubFlags(adjust)
	hubFlags(reverse)
	adjust.AddCommand(reverse)
	return adjust
}

func printAdjustment(cmd *cobra.Command, a hub.Adjustment, what string) error {
	if wantJSON(cmd) {
		// The API says a retry with a header; a script reading --json gets it as a field.
		return writeJSON(cmd.OutOrStdout(), struct {
			hub.Adjustment
			Replayed bool `json:"replayed,omitempty"`
		}{a, a.Replayed})
	}
	return say(cmd, a.DeltaID, what+"; the ledger entry's id follows")
}

// newID returns a random id for a key the operator did not give.
func newID() string { return rand.Text()[:16] }

func importCommand() *cobra.Command {
	imp := group("import", "Import from another loyalty program (on the hub's database)")
	members := &cobra.Command{
		Use:   "members FILE",
		Short: "Import members and their points from a CSV file (email,points or email,total_spent); --dry-run first; exits 1 when rows are bad",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			var o hub.ImportOptions
			o.Mode, _ = cmd.Flags().GetString("mode")
			o.Reason, _ = cmd.Flags().GetString("reason")
			o.DryRun, _ = cmd.Flags().GetBool("dry-run")
			o.PointsPerUnit, _ = cmd.Flags().GetString("points-per-unit")
			o.ImportID, _ = cmd.Flags().GetString("import-id")
			o.BatchSize, _ = cmd.Flags().GetInt("batch")
			errPath, _ := cmd.Flags().GetString("errors")
			errPath = cmp.Or(errPath, strings.TrimSuffix(path, ".csv")+".errors.csv")
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			derived := o.ImportID == ""
			if derived { // the same file is the same import: a re-run skips what it imported
				sum := sha256.New()
				if _, err := io.Copy(sum, f); err != nil {
					return err
				}
				o.ImportID = "file-" + hex.EncodeToString(sum.Sum(nil))[:16]
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return err
				}
			}
			errs := &errorsFile{path: errPath}
			defer errs.close()
			o.RowError = errs.write
			p := newProgress(cmd.ErrOrStderr(), st.Size())
			o.Progress = p.update
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				rep, err := h.Import(ctx, bufio.NewReaderSize(f, 1<<20), o)
				p.done()
				if cerr := errs.close(); err == nil {
					err = cerr
				}
				if err != nil {
					if derived && !o.DryRun && rep.Imported+rep.Skipped > 0 && loyalty.ErrorCode(err) != "" {
						// The import stopped part way: the file fixed has another content, so
						// without the id a run again would import the rows done a second time.
						return loyalty.Errorf(loyalty.ErrorCode(err), "%s (this import's id: --import-id %s)", loyalty.ErrorMessage(err), o.ImportID)
					}
					return err
				}
				if rep.Bad == 0 && !o.DryRun { // a dry run changes nothing
					if err := errs.removeStale(); err != nil {
						return fmt.Errorf("the errors file of an earlier run, %s, could not be removed: %w", errs.path, err)
					}
				}
				return printImport(cmd, rep, errs, derived)
			})
		},
	}
	members.Flags().String("mode", hub.ImportAdd, "add: add the file's points to the balances; set: make the balances the file's points")
	members.Flags().String("reason", "", "recorded on every row's adjustment (required)")
	members.Flags().Bool("dry-run", false, "check every row and report what would happen; change nothing")
	members.Flags().String("points-per-unit", "", "for a total_spent column: points per unit of the program's earn rule (earn.unit_minor minor units), such as 1 or 0.5")
	members.Flags().String("import-id", "", "names the import: running it again skips rows it imported (default: from the file's content)")
	members.Flags().String("errors", "", "where to write the bad rows as CSV (default: FILE.errors.csv beside the file)")
	members.Flags().Int("batch", hub.DefaultImportBatch, "rows per transaction")
	members.MarkFlagRequired("reason")
	jsonFlag(members)
	hubFlags(members)
	imp.AddCommand(members)
	return imp
}

// errorsFile writes an import's bad rows as CSV, created at the first one.
type errorsFile struct {
	path string
	f    *os.File
	w    *hub.ImportErrorsCSV
	n    int
	err  error // why the file could not be opened
}

// openErrorsFile opens the errors file at path. Its reasons quote the rows, members' emails among
// them, so a file is for its owner alone (mode 0600), as exports are, an earlier run's file too
// when this user owns it. What is not a file (--errors /dev/stderr, a pipe) is written to as it
// is, never truncated nor given another mode.
func openErrorsFile(path string) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return os.OpenFile(path, os.O_WRONLY, 0)
	} else if err == nil {
		// An earlier file: made the owner's alone before it is emptied and written, or refused
		// (another user's file, which this one may not make private).
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("%s cannot be made readable by its owner alone (%w): name another file with --errors", path, err)
		}
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
}

func (e *errorsFile) write(r hub.RowError) {
	if e.f == nil {
		if e.err != nil {
			return
		}
		f, err := openErrorsFile(e.path)
		if err != nil {
			e.err = err // close reports it
			return
		}
		e.f, e.w = f, hub.NewImportErrorsCSV(f)
	}
	e.n++
	e.w.Add(r)
}

// removeStale removes the errors file an earlier run of the import left at the path, when this
// run had no bad rows: its lines would be taken for this run's. Only a file that reads as an
// errors file is removed.
func (e *errorsFile) removeStale() error {
	if e.n > 0 || e.f != nil {
		return nil
	}
	if fi, err := os.Stat(e.path); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	b := make([]byte, len(hub.ImportErrorsHeader))
	f, err := os.Open(e.path)
	if err != nil {
		return nil // none: nothing to remove
	}
	_, err = io.ReadFull(f, b)
	f.Close()
	if err != nil || string(b) != hub.ImportErrorsHeader {
		return nil
	}
	return os.Remove(e.path)
}

func (e *errorsFile) close() error {
	if e.f == nil {
		if e.err != nil {
			return fmt.Errorf("cannot write the errors file: %w", e.err)
		}
		if e.n > 0 || e.path == "" {
			return fmt.Errorf("cannot write the errors file %s", e.path)
		}
		return nil
	}
	err := cmp.Or(e.w.Flush(), e.f.Close())
	e.f = nil
	return err
}

// printImport prints an import's report. derived says the import's id was taken from the
// file's content, which fixing its bad rows changes: the way to run it again names the id.
func printImport(cmd *cobra.Command, rep hub.ImportReport, errs *errorsFile, derived bool) error {
	if wantJSON(cmd) {
		if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
			return err
		}
	} else {
		t := newTable(cmd.OutOrStdout(), "import", "mode", "rows", "imported", "members created", "already imported", "bad", "points")
		t.row(rep.ImportID, rep.Mode, rep.Rows, rep.Imported, rep.Created, rep.Skipped, rep.Bad, rep.Points)
		if err := t.flush(); err != nil {
			return err
		}
		if len(rep.IgnoredColumns) > 0 {
			tell(cmd, "columns not read: %s", strings.Join(rep.IgnoredColumns, ", "))
		}
		if rep.DryRun {
			tell(cmd, "dry run: nothing was changed; run it again without --dry-run to import")
		}
	}
	if rep.Bad > 0 {
		// After the report, so that a script sees the counts and still exits 1: an import that
		// left rows behind is not done.
		verb, again := "were not imported", "run the import again with the same --import-id (rows imported already are skipped)"
		switch {
		case rep.DryRun:
			verb, again = "would not be imported", "run it again"
		case derived:
			// Without the id, the fixed file would be another import, and every row imported now
			// would be imported a second time.
			again = "run the import again with --import-id " + rep.ImportID + ": the rows imported already are then skipped"
		}
		return loyalty.Errorf(loyalty.EINVALID, "%d bad rows %s; their line numbers and reasons are in %s: fix them and %s",
			rep.Bad, verb, errs.path, again)
	}
	return nil
}

// progress shows an import's progress on stderr: a bar with the rate and the time left on a
// terminal, a plain line every few seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	size  int64
	start time.Time
	last  time.Time
	rows  int
}

func newProgress(w io.Writer, size int64) *progress {
	p := &progress{w: w, size: size, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(ip hub.ImportProgress) {
	now := time.Now()
	p.rows = ip.Rows
	if !p.tty && now.Sub(p.last) < 5*time.Second {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start).Seconds()
	rate := float64(ip.Rows) / max(elapsed, 1e-3)
	frac := 1.0
	if p.size > 0 {
		frac = min(float64(ip.Bytes)/float64(p.size), 1)
	}
	left := "-"
	if frac > 0 && frac < 1 {
		left = (time.Duration(elapsed*(1-frac)/frac) * time.Second).Round(time.Second).String()
	}
	if p.tty {
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %d rows, %.0f rows/s, %s left ", strings.Repeat("#", n), strings.Repeat(" ", width-n), 100*frac, ip.Rows, rate, left)
		return
	}
	fmt.Fprintf(p.w, "import: %d rows read (%.0f%%), %.0f rows/s, %s left\n", ip.Rows, 100*frac, rate, left)
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func exportCommand() *cobra.Command {
	export := &cobra.Command{
		Use:       "export members|ledger|conflicts|rejections|budgets",
		Short:     "Export members, the ledger, conflicts, rejections or budgets and leases as CSV or JSON lines, streamed",
		Args:      cobra.ExactArgs(1),
		ValidArgs: hub.Exports,
		RunE: func(cmd *cobra.Command, args []string) error {
			var o hub.ExportOptions
			o.Format, _ = cmd.Flags().GetString("format")
			out, _ := cmd.Flags().GetString("output")
			for _, fl := range []struct {
				name string
				t    *time.Time
			}{{"from", &o.From}, {"to", &o.To}} {
				if v, _ := cmd.Flags().GetString(fl.name); v != "" {
					var err error
					if *fl.t, err = hub.ParseDay("--"+fl.name, v); err != nil {
						return err
					}
				}
			}
			if err := hub.CheckExport(args[0], o); err != nil {
				return err
			}
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) (err error) {
				w := cmd.OutOrStdout()
				if out != "" {
					f, ferr := newPrivateFile(out, "output") // not err: the deferred call reads the result's
					if ferr != nil {
						return ferr
					}
					defer func() {
						if cerr := f.Close(); err == nil {
							err = cerr
						}
						if err != nil {
							os.Remove(out) // no half export left behind (a file this run created)
							return
						}
						tell(cmd, "%s exported to %s", args[0], out)
					}()
					w = f
				}
				bw := bufio.NewWriterSize(w, 1<<20)
				if err := h.Export(ctx, bw, args[0], o); err != nil {
					return err
				}
				return bw.Flush()
			})
		},
	}
	export.Flags().String("format", hub.FormatCSV, "csv or jsonl")
	export.Flags().String("from", "", "the ledger: from this date (2026-11-01) or time, event times at or after it")
	export.Flags().String("to", "", "the ledger: to this date or time, event times before it")
	export.Flags().String("output", "", "write to this new file (created with mode 0600) instead of stdout")
	hubFlags(export)
	return export
}

// newPrivateFile creates path for an export, readable by its owner alone (it holds members'
// personal data), and never opens one that exists: a flag naming the database, or its key
// file, would empty it. flag is the flag that named the file, for the refusal.
func newPrivateFile(path, flag string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, loyalty.Errorf(loyalty.EINVALID, "--%s %s exists: name a new file", flag, path)
	}
	return f, err
}
