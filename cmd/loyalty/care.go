package main

import (
	"context"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// careCommands are member care's commands: loyalty member update, erase and export (hub/care.go).
func careCommands() []*cobra.Command {
	update := &cobra.Command{
		Use:   "update ID",
		Short: "Change a member's email, name, country, birthday or attributes (only the flags given)",
		Long: `Change the member's details that the flags given name; the others stay as they are.
An empty value clears a field (--name ""). --attr key=value sets an attribute, --attr key= removes
it, --clear-attributes removes them all first. The change is audited as key id "cli".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p hub.MemberPatch
			for _, f := range []struct {
				flag string
				dst  *hub.Text
			}{{"email", &p.Email}, {"name", &p.Name}, {"country", &p.Country}, {"birthday", &p.Birthday}} {
				if cmd.Flags().Changed(f.flag) {
					v, _ := cmd.Flags().GetString(f.flag)
					*f.dst = hub.Text{Set: true, Value: v}
				}
			}
			p.Attributes.Clear, _ = cmd.Flags().GetBool("clear-attributes")
			attrs, _ := cmd.Flags().GetStringArray("attr")
			for _, kv := range attrs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return loyalty.Errorf(loyalty.EINVALID, "--attr %q: write key=value, or key= to remove the attribute", kv)
				}
				if p.Attributes.Set == nil {
					p.Attributes.Set = map[string]*string{}
				}
				p.Attributes.Set[k] = &v
			}
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				v, err := h.UpdateMember(ctx, args[0], p)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), v)
				}
				tell(cmd, "member %s updated; stores that hold them receive the email, name and country at their next sync", v.ID)
				return nil
			})
		},
	}
	update.Flags().String("email", "", "email address (\"\" clears it)")
	update.Flags().String("name", "", "name (\"\" clears it)")
	update.Flags().String("country", "", "ISO 3166 two-letter country (\"\" clears it)")
	update.Flags().String("birthday", "", "MM-DD or YYYY-MM-DD (\"\" clears it; kept at the hub only)")
	update.Flags().StringArray("attr", nil, "key=value sets an attribute, key= removes it (repeatable; kept at the hub only)")
	update.Flags().Bool("clear-attributes", false, "remove every attribute (before --attr)")

	erase := &cobra.Command{
		Use:   "erase ID --yes",
		Short: "Erase a member's personal data (GDPR): email, name, country, birthday, attributes",
		Long: `Erase the member's personal data for good: their email, name, country, birthday and
attributes, and the country their deltas carry. The member id stays as a pseudonym, with the ledger,
balance and tier, so that the books stay right; the stores drop the personal fields at their next
sync and refuse the member's QR codes from then on. Take an export first if the member asked for one
(loyalty member export). There is no undo: --yes is required.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if yes, _ := cmd.Flags().GetBool("yes"); !yes {
				return loyalty.Errorf(loyalty.EINVALID, "erasing member %s cannot be undone; run it again with --yes to erase", args[0])
			}
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				v, err := h.EraseMember(ctx, args[0])
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), v)
				}
				tell(cmd, "member %s erased; their ledger and balance of %d points stay under the id; stores drop the personal fields at their next sync", v.ID, v.Balance)
				return nil
			})
		},
	}
	erase.Flags().Bool("yes", false, "erase: there is no undo")

	export := &cobra.Command{
		Use:   "export ID",
		Short: "Write everything the hub holds about a member as one JSON document (GDPR access request)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, _ := cmd.Flags().GetString("out")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				var w io.Writer = cmd.OutOrStdout()
				var f *os.File
				var ferr error
				open := func() {}
				if out != "" {
					// The file is created only once the member is found (newPrivateFile).
					open = func() { f, ferr = newPrivateFile(out, "out") }
					w = writerFunc(func(b []byte) (int, error) {
						if f == nil {
							return 0, ferr
						}
						return f.Write(b)
					})
				}
				err := h.ExportMember(ctx, args[0], w, open)
				if f != nil {
					if cerr := f.Close(); err == nil {
						err = cerr
					}
					if err != nil {
						os.Remove(out) // no half export left behind (a file this run created)
					}
				}
				if err == nil && out != "" {
					tell(cmd, "member %s exported to %s", args[0], out)
				}
				return err
			})
		},
	}
	export.Flags().String("out", "", "write to this new file (created with mode 0600) instead of stdout")
	jsonFlag(update, erase)
	cmds := []*cobra.Command{update, erase, export}
	for _, c := range cmds {
		hubFlags(c)
	}
	return cmds
}

// writerFunc is a function as an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
