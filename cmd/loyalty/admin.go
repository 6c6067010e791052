package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

func protocolVersions() []int { return lsync.Versions }

// withHub opens the hub's database from the hub configuration (the same file, env and flags
// as `loyalty hub`), runs fn and closes it. It works whether or not the hub is running: SQLite
// in WAL mode takes one writer at a time, and the running hub notices the change within its
// poll interval and tells the agents.
func withHub(cmd *cobra.Command, fn func(ctx context.Context, h *hub.Hub) error) error {
	var cfg HubConfig
	if err := loadConfig(cmd, DefaultHubConfig(), &cfg); err != nil {
		return err
	}
	ctx := hub.WithActor(cmd.Context(), hub.CLIActor) // admin changes are audited as key id "cli"
	s, err := hubsqlite.Open(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer s.Close()
	h := hub.New(s)
	h.MemberTokenTTL, h.VoucherTokenTTL = cfg.QR.MemberTTL, cfg.QR.VoucherTTL
	if h.KEK, err = openKEK(ctx, cfg, s, nil); err != nil {
		return err
	}
	if err := h.Init(ctx); err != nil {
		return err
	}
	return fn(ctx, h)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func adminCommands() []*cobra.Command {
	store := &cobra.Command{Use: "store", Short: "Manage stores (on the hub's database)"}
	add := &cobra.Command{
		Use:   "add",
		Short: "Register a store and print its token (shown once)",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			name, _ := cmd.Flags().GetString("name")
			tz, _ := cmd.Flags().GetString("timezone")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				_, token, err := h.CreateStoreIn(ctx, id, name, tz)
				if err != nil {
					return err
				}
				fmt.Printf("store %s registered. Its token (shown once; give it to the agent as LOYALTY_TOKEN):\n%s\n", id, token)
				return nil
			})
		},
	}
	token := &cobra.Command{
		Use:   "token",
		Short: "Issue a new token for a store; the old one stops working",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				t, err := h.RotateStoreToken(ctx, id)
				if err == nil {
					fmt.Println(t)
				}
				return err
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List stores",
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				s, err := h.Stores(ctx)
				if err != nil {
					return err
				}
				return printJSON(s)
			})
		},
	}
	zone := &cobra.Command{
		Use:   "zone",
		Short: "Set a store's time zone (campaign days and hours are read in it); its agent learns it at its next sync",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			tz, _ := cmd.Flags().GetString("timezone")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				if err := h.SetStoreZone(ctx, id, tz); err != nil {
					return err
				}
				fmt.Printf("store %s is in time zone %s\n", id, cmp.Or(tz, "UTC"))
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{add, token, zone} {
		c.Flags().String("id", "", "store id (letters, digits, . _ -)")
		c.MarkFlagRequired("id")
	}
	add.Flags().String("name", "", "display name")
	for _, c := range []*cobra.Command{add, zone} {
		c.Flags().String("timezone", "", "the store's IANA time zone, such as Europe/Berlin (default UTC)")
	}
	for _, c := range []*cobra.Command{add, token, list, zone} {
		hubFlags(c)
	}
	store.AddCommand(add, token, list, zone)

	member := &cobra.Command{Use: "member", Short: "Manage members (on the hub's database)"}
	madd := &cobra.Command{
		Use:   "add",
		Short: "Add a member and print it",
		RunE: func(cmd *cobra.Command, args []string) error {
			var m loyalty.Member
			m.ID, _ = cmd.Flags().GetString("id")
			m.Email, _ = cmd.Flags().GetString("email")
			m.Name, _ = cmd.Flags().GetString("name")
			m.HomeStore, _ = cmd.Flags().GetString("home-store")
			m.Country, _ = cmd.Flags().GetString("country")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				out, err := h.CreateMember(ctx, m)
				if err != nil {
					return err
				}
				return printJSON(out)
			})
		},
	}
	madd.Flags().String("id", "", "member id (generated if empty)")
	madd.Flags().String("email", "", "email address")
	madd.Flags().String("name", "", "name")
	madd.Flags().String("home-store", "", "store whose replica should hold this member")
	madd.Flags().String("country", "", "ISO 3166 two-letter country, for campaign segments")
	mshow := &cobra.Command{
		Use:   "show",
		Short: "Print a member with their ledger",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				v, err := h.Member(ctx, id, 100)
				if err != nil {
					return err
				}
				return printJSON(v)
			})
		},
	}
	mqr := &cobra.Command{
		Use:   "qr",
		Short: "Print a member's signed QR token; with --png, write the QR code as a PNG file",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			out, _ := cmd.Flags().GetString("png")
			size, _ := cmd.Flags().GetInt("size")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				token, err := h.MemberToken(ctx, id)
				if err != nil {
					return err
				}
				if out != "" {
					png, err := qr.PNG(token, size)
					if err != nil {
						return err
					}
					if err := os.WriteFile(out, png, 0o644); err != nil {
						return err
					}
				}
				fmt.Println(token)
				return nil
			})
		},
	}
	mqr.Flags().String("png", "", "write the QR code to this PNG file")
	mqr.Flags().Int("size", qr.DefaultPNGSize, "PNG width and height in pixels")
	for _, c := range []*cobra.Command{mshow, mqr} {
		c.Flags().String("id", "", "member id")
		c.MarkFlagRequired("id")
	}
	for _, c := range []*cobra.Command{madd, mshow, mqr} {
		hubFlags(c)
	}
	member.AddCommand(madd, mshow, mqr)

	program := &cobra.Command{Use: "program", Short: "Show or publish the loyalty program"}
	pshow := &cobra.Command{
		Use:   "show",
		Short: "Print the current program",
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				p, err := h.Program(ctx)
				if err != nil {
					return err
				}
				return printJSON(p)
			})
		},
	}
	pset := &cobra.Command{
		Use:   "set",
		Short: "Publish a new program version from a file (YAML or JSON; see configs/program.yaml)",
		RunE: func(cmd *cobra.Command, args []string) error {
			file, _ := cmd.Flags().GetString("file")
			p, err := readProgram(file)
			if err != nil {
				return err
			}
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				out, err := h.SetProgram(ctx, p)
				if err != nil {
					return err
				}
				return printJSON(out)
			})
		},
	}
	pset.Flags().String("file", "", "program file")
	pset.MarkFlagRequired("file")
	hubFlags(pshow)
	hubFlags(pset)
	program.AddCommand(pshow, pset)

	keys := &cobra.Command{Use: "keys", Short: "Manage QR signing keys"}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Create a new signing key; older keys keep verifying until retired",
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				k, err := h.RotateKey(ctx)
				if err != nil {
					return err
				}
				return printJSON(k)
			})
		},
	}
	retire := &cobra.Command{
		Use:   "retire",
		Short: "Stop accepting tokens signed by a key after a time",
		RunE: func(cmd *cobra.Command, args []string) error {
			kid, _ := cmd.Flags().GetString("kid")
			after, _ := cmd.Flags().GetDuration("after")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				return h.RetireKey(ctx, kid, time.Now().Add(after))
			})
		},
	}
	retire.Flags().String("kid", "", "key id")
	retire.Flags().Duration("after", 0, "grace period before tokens signed with it are refused")
	retire.MarkFlagRequired("kid")
	hubFlags(rotate)
	hubFlags(retire)
	keys.AddCommand(rotate, retire)
	keys.AddCommand(kekCommands()...)

	check := &cobra.Command{
		Use:   "check",
		Short: "Verify that every member's balance equals the sum of their ledger",
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				r, err := h.Check(ctx)
				if err != nil {
					return err
				}
				printJSON(r)
				if len(r.Mismatches) > 0 {
					return fmt.Errorf("%d balances do not match their ledger", len(r.Mismatches))
				}
				return nil
			})
		},
	}
	hubFlags(check)
	budgets := &cobra.Command{
		Use:   "budgets",
		Short: "Show every budget: limit, spent, quota leased to stores",
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				b, err := h.Budgets(ctx)
				if err != nil {
					return err
				}
				return printJSON(b)
			})
		},
	}
	hubFlags(budgets)
	writeoff := &cobra.Command{
		Use:   "writeoff",
		Short: "Return the expired, unsettled quota of a store that will not come back",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				n, err := h.WriteOff(ctx, id)
				if err != nil {
					return err
				}
				h.RecordAudit(ctx, hub.AuditStoreWriteOff, id, hub.WriteOffDetail(n)) // WriteOff runs its own transaction: audited right after
				fmt.Printf("store %s: quota returned to its budgets:\n", id)
				return printJSON(n)
			})
		},
	}
	writeoff.Flags().String("id", "", "store id")
	writeoff.MarkFlagRequired("id")
	hubFlags(writeoff)
	store.AddCommand(writeoff)
	return append(append([]*cobra.Command{store, member, program, keys, check, budgets}, accessCommands()...), backupCommands()...)
}

// accessCommands are `loyalty apikey add/list/revoke` (the HTTP API's keys; the QR signing keys
// are `loyalty keys`) and `loyalty audit`.
func accessCommands() []*cobra.Command {
	apikey := &cobra.Command{Use: "apikey", Short: "Manage the hub HTTP API's keys and their scopes (admin, online, report)"}
	add := &cobra.Command{
		Use:   "add",
		Short: "Create an API key with a scope and print it (shown once)",
		Long: `Create an API key for the hub's HTTP API and print it. The key is shown only this once: the hub
keeps its SHA-256 hash. Scopes: admin (every endpoint), online (the web shop or member app: earn,
redeem, reverse, vouchers, actions, reading a member and their QR code, the program), report
(read-only: stores, budgets, conflicts, rejections, check, expiring, program, members, audit).
See docs/API.md for the exact table.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, _ := cmd.Flags().GetString("name")
			scope, _ := cmd.Flags().GetString("scope")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				k, err := h.CreateAPIKey(ctx, name, hub.Scope(scope))
				if err != nil {
					return err
				}
				fmt.Printf("API key %s (%q, scope %s) created. The key (shown once; send it as Authorization: Bearer <key>):\n%s\n",
					k.ID, k.Name, k.Scope, k.Key)
				return nil
			})
		},
	}
	add.Flags().String("name", "", "what the key is for, such as \"web shop\"")
	add.Flags().String("scope", "", "admin, online or report")
	add.MarkFlagRequired("name")
	add.MarkFlagRequired("scope")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the API keys, revoked ones included (never the keys themselves)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				ks, err := h.APIKeys(ctx)
				if err != nil {
					return err
				}
				return printJSON(ks)
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke an API key; a running hub refuses it from its next request",
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				k, err := h.RevokeAPIKey(ctx, id)
				if err != nil {
					return err
				}
				fmt.Printf("API key %s (%q, scope %s) is revoked since %s\n", k.ID, k.Name, k.Scope, k.RevokedAt.Format(time.RFC3339))
				return nil
			})
		},
	}
	revoke.Flags().String("id", "", "the key's id, as loyalty apikey list shows it")
	revoke.MarkFlagRequired("id")
	for _, c := range []*cobra.Command{add, list, revoke} {
		hubFlags(c)
	}
	apikey.AddCommand(add, list, revoke)

	audit := &cobra.Command{
		Use:   "audit",
		Short: "Print the audit trail of admin changes, newest first: when, which key, what, on what",
		RunE: func(cmd *cobra.Command, args []string) error {
			limit, _ := cmd.Flags().GetInt("limit")
			asJSON, _ := cmd.Flags().GetBool("json")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				es, err := h.Audit(ctx, limit)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(es)
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "AT\tKEY\tACTION\tTARGET\tDETAIL")
				for _, e := range es {
					fmt.Fprintf(tw, "%s\t%s (%s)\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.KeyID, e.KeyName, e.Action, e.Target, e.Detail)
				}
				return tw.Flush()
			})
		},
	}
	audit.Flags().Int("limit", 100, fmt.Sprintf("how many entries, newest first (1 to %d)", hub.MaxAuditLimit))
	audit.Flags().Bool("json", false, "print JSON")
	hubFlags(audit)
	return []*cobra.Command{apikey, audit}
}

// readProgram reads a program file through viper, so YAML, TOML and JSON all work.
func readProgram(path string) (loyalty.Program, error) {
	var p loyalty.Program
	v := viper.New()
	v.SetConfigFile(path)
	if err := v.ReadInConfig(); err != nil {
		return p, fmt.Errorf("read program %s: %w", path, err)
	}
	// Round-trip through JSON so the program's json tags are the one schema.
	b, err := json.Marshal(v.AllSettings())
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("program %s: %w", path, err)
	}
	return p, p.Validate()
}
