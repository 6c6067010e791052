package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
)

// Every command prints in one style (README, "Commands"):
//
//   - data goes to stdout: a table for people by default, JSON with --json;
//   - a value a script captures (a token, a key, an id) goes to stdout alone on its line, and what
//     it is and what to do with it goes to stderr, so TOKEN=$(loyalty store add …) captures only
//     the token while the person at the terminal still reads the explanation;
//   - confirmations, advice and warnings go to stderr.

// jsonFlag gives commands that print data a --json flag.
func jsonFlag(cmds ...*cobra.Command) {
	for _, c := range cmds {
		c.Flags().Bool("json", false, "print JSON instead of a table")
	}
}

// wantJSON reports whether --json was given.
func wantJSON(cmd *cobra.Command) bool {
	b, _ := cmd.Flags().GetBool("json")
	return b
}

// printJSON writes v to stdout as indented JSON (writeJSON).
func printJSON(v any) error { return writeJSON(os.Stdout, v) }

// writeJSON writes v to w as indented JSON; a nil list is [].
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(jsonapi.EmptyList(v))
}

// say prints value alone on its line on stdout, after explaining it on stderr.
func say(cmd *cobra.Command, value, explanation string) error {
	tell(cmd, "%s", explanation)
	_, err := fmt.Fprintln(cmd.OutOrStdout(), value)
	return err
}

// tell writes a line for the person at the terminal to stderr.
func tell(cmd *cobra.Command, format string, args ...any) {
	fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...)
}

// table writes aligned columns to stdout under a header row in capitals.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	fmt.Fprintln(t.tw, strings.ToUpper(strings.Join(headers, "\t")))
	return t
}

// row adds a row; times print in RFC 3339 (UTC as the hub keeps them), a zero time as "-".
func (t *table) row(cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		switch v := c.(type) {
		case time.Time:
			s[i] = "-"
			if !v.IsZero() {
				s[i] = v.UTC().Format(time.RFC3339)
			}
		case string:
			s[i] = loyalty.Printable(v) // ids a store chose, a webhook receiver's answer: never escape sequences
			if v == "" {
				s[i] = "-"
			}
		default:
			s[i] = fmt.Sprint(v)
		}
	}
	fmt.Fprintln(t.tw, strings.Join(s, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// group makes a command that only holds subcommands. Given an argument that is not one of them,
// it says so (cobra alone would print the help and succeed, or report the subcommand's flags as
// unknown flags); given none, it prints its help.
func group(use, short string) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	c.Args = cobra.ArbitraryArgs
	c.FParseErrWhitelist.UnknownFlags = true // `loyalty member import --file x` names "import", not --file
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		return unknownCommand(cmd, args[0])
	}
	return c
}

// unknownCommand is the error for `loyalty <parent> <name>` where name is not a subcommand.
func unknownCommand(parent *cobra.Command, name string) error {
	var names []string
	for _, c := range parent.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	msg := fmt.Sprintf("unknown command %q for %q", name, parent.CommandPath())
	if s := closest(name, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return fmt.Errorf("%s; its commands are: %s (see `%s --help`)", msg, strings.Join(names, ", "), parent.CommandPath())
}
