package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

func protocolVersions() []int { return lsync.Versions }

// withHub opens the hub's existing database from the hub configuration (the same file, env and
// flags as `loyalty hub`), runs fn and closes it. It works whether or not the hub is running:
// SQLite in WAL mode takes one writer at a time, PostgreSQL runs each change in a serializable
// transaction, and the running hub notices the change within its poll interval and tells the
// agents. A database that does not exist is an error (openHub): `loyalty init` makes one.
func withHub(cmd *cobra.Command, fn func(ctx context.Context, h *hub.Hub) error) error {
	var cfg HubConfig
	if err := loadConfig(cmd, DefaultHubConfig(), &cfg); err != nil {
		return err
	}
	return withHubConfig(cmd, cfg, fn)
}

// withHubConfig is withHub with the configuration loaded. On SQLite it holds the database's lock
// shared while it runs, as a hub does: loyalty restore, which takes it exclusively, then refuses
// to replace the database under it (what it wrote would go with the replaced file), and it
// refuses while a restore runs.
func withHubConfig(cmd *cobra.Command, cfg HubConfig, fn func(ctx context.Context, h *hub.Hub) error) error {
	if !isPostgresURL(cfg.Database) {
		if _, err := os.Stat(cfg.Database); err == nil { // a missing database is refused below, saying so
			unlock, err := lockDatabase(cfg.Database, false)
			if err != nil {
				return err
			}
			defer unlock()
		}
	}
	return withHubLocked(cmd, cfg, fn)
}

// withHubLocked is withHubConfig without taking the database's lock: its caller holds it.
func withHubLocked(cmd *cobra.Command, cfg HubConfig, fn func(ctx context.Context, h *hub.Hub) error) error {
	ctx := hub.WithActor(cmd.Context(), hub.CLIActor) // admin changes are audited as key id "cli"
	// A code the hub would refuse to make is not made here either.
	if err := cfg.checkQR(); err != nil {
		return err
	}
	s, err := openHub(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := refuseReplaced(ctx, s, cfg.Database); err != nil {
		slog.Warn(err.Error()) // an admin command may still read it, or carry over by hand
	}
	h := hub.New(s)
	h.MemberTokenTTL, h.VoucherTokenTTL = cfg.QR.MemberTTL, cfg.QR.VoucherTTL
	if h.KEK, err = openKEK(ctx, cfg, s, nil); err != nil {
		return err
	}
	if h.KEK != nil {
		// A key that opens none of the database's signing keys (an old file left after a rekey)
		// is no reason to refuse an admin command: it goes on as without one, so that an API key
		// can still be revoked, a backup taken.
		need, err := sealedUnder(ctx, s)
		if err != nil {
			return err
		}
		if need != "" && need != h.KEK.Fingerprint() {
			slog.Warn(fmt.Sprintf("the key-encryption key given (fingerprint %s) is not the one this database's signing keys are sealed under "+
				"(fingerprint %s); going on without one: commands that sign QR codes or seal keys will fail", h.KEK.Fingerprint(), need))
			h.KEK = nil
		}
	}
	if err := h.Init(ctx); err != nil {
		return err
	}
	return fn(ctx, h)
}

func adminCommands() []*cobra.Command {
	cmds := []*cobra.Command{storeCommands(), memberCommands(), programCommands(), keysCommands(), checkCommand(), budgetsCommand(), reportCommand()}
	cmds = append(cmds, accessCommands()...)
	cmds = append(cmds, webhookCommands())
	cmds = append(cmds, migrateCommands()...) // adjust, import, export (migrate.go)
	return append(cmds, backupCommands()...)
}

func storeCommands() *cobra.Command {
	store := group("store", "Manage stores (on the hub's database)")
	add := &cobra.Command{
		Use:   "add",
		Short: "Register a store and print its token (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			name, _ := cmd.Flags().GetString("name")
			tz, _ := cmd.Flags().GetString("timezone")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				st, token, err := h.CreateStoreIn(ctx, id, name, tz)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), struct {
						hub.StoreInfo
						Token string `json:"token"`
					}{st, token})
				}
				return say(cmd, token, fmt.Sprintf("store %s registered (time zone %s). Its token, shown once: give it to the store's agent as LOYALTY_TOKEN",
					id, cmp.Or(st.TimeZone, "UTC")))
			})
		},
	}
	token := &cobra.Command{
		Use:   "token",
		Short: "Issue a new token for a store and print it (shown once); the old one stops working",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				t, err := h.RotateStoreToken(ctx, id)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), map[string]string{"id": id, "token": t})
				}
				return say(cmd, t, fmt.Sprintf("store %s has a new token, shown once: give it to the store's agent as LOYALTY_TOKEN; the old one no longer connects", id))
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List stores with their sync health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				ss, err := h.Stores(ctx)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), ss)
				}
				t := newTable(cmd.OutOrStdout(), "id", "name", "time zone", "connected", "last seen", "outbox", "clock offset")
				for _, st := range ss {
					t.row(st.ID, st.Name, cmp.Or(st.TimeZone, "UTC"), st.Health.Connected, st.Health.LastSeen, st.Health.Outbox,
						(time.Duration(st.Health.ClockOffsetMS) * time.Millisecond).String())
				}
				return t.flush()
			})
		},
	}
	zone := &cobra.Command{
		Use:   "zone",
		Short: "Set a store's time zone (campaign days and hours are read in it); its agent learns it at its next sync",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			tz, _ := cmd.Flags().GetString("timezone")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				if err := h.SetStoreZone(ctx, id, tz); err != nil {
					return err
				}
				tell(cmd, "store %s is in time zone %s; its agent uses it from its next sync", id, cmp.Or(tz, "UTC"))
				return nil
			})
		},
	}
	writeoff := &cobra.Command{
		Use:   "writeoff",
		Short: "Return the expired, unsettled quota of a store that will not come back",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				n, err := h.WriteOff(ctx, id)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), n)
				}
				tell(cmd, "store %s: its expired quota is returned to its budgets", id)
				t := newTable(cmd.OutOrStdout(), "budget", "returned")
				for _, b := range slices.Sorted(maps.Keys(n)) {
					t.row(b, n[b])
				}
				return t.flush()
			})
		},
	}
	for _, c := range []*cobra.Command{add, token, zone, writeoff} {
		c.Flags().String("id", "", "store id (letters, digits, . _ -)")
		c.MarkFlagRequired("id")
	}
	add.Flags().String("name", "", "display name")
	for _, c := range []*cobra.Command{add, zone} {
		c.Flags().String("timezone", "", "the store's IANA time zone, such as Europe/Berlin (default UTC)")
	}
	jsonFlag(add, token, list, writeoff)
	for _, c := range []*cobra.Command{add, token, list, zone, writeoff} {
		hubFlags(c)
		store.AddCommand(c)
	}
	return store
}

func memberCommands() *cobra.Command {
	member := group("member", "Manage members (on the hub's database)")
	add := &cobra.Command{
		Use:   "add",
		Short: "Add a member and print their id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var m loyalty.Member
			m.ID, _ = cmd.Flags().GetString("id")
			m.Email, _ = cmd.Flags().GetString("email")
			m.Name, _ = cmd.Flags().GetString("name")
			m.HomeStore, _ = cmd.Flags().GetString("home-store")
			m.Country, _ = cmd.Flags().GetString("country")
			m.Birthday, _ = cmd.Flags().GetString("birthday")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				out, err := h.CreateMember(ctx, m)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), out)
				}
				if out.Signup != nil && out.Signup.Refused != nil {
					tell(cmd, "warning: no sign-up points for member %s: %s; give them later with POST /v1/actions (action signup)", out.ID, out.Signup.Refused.Error())
				}
				return say(cmd, out.ID, fmt.Sprintf("member %s added, with %d points; `loyalty member qr --id %s` prints their QR code", out.ID, out.Balance, out.ID))
			})
		},
	}
	add.Flags().String("id", "", "member id (generated if empty)")
	add.Flags().String("email", "", "email address")
	add.Flags().String("name", "", "name")
	add.Flags().String("home-store", "", "store whose replica should hold this member")
	add.Flags().String("country", "", "ISO 3166 two-letter country, for campaign segments")
	add.Flags().String("birthday", "", "MM-DD or YYYY-MM-DD, for the program's birthday action (kept at the hub only)")
	show := &cobra.Command{
		Use:   "show",
		Short: "Print a member with their newest ledger entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			limit, _ := cmd.Flags().GetInt("limit")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				v, err := h.Member(ctx, id, limit)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), v)
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "member %s: %s <%s>, tier %s, home store %s\nbalance: %d points\n\n",
					v.ID, cmp.Or(v.Name, "-"), cmp.Or(v.Email, "-"), cmp.Or(v.Tier, "-"), cmp.Or(v.HomeStore, "-"), v.Balance)
				t := newTable(w, "occurred", "store", "kind", "points", "order", "reward")
				for _, e := range v.Ledger {
					t.row(e.OccurredAt, e.Store, string(e.Kind), e.Points, e.OrderID, cmp.Or(e.Reward, e.Voucher))
				}
				return t.flush()
			})
		},
	}
	show.Flags().Int("limit", 100, "how many ledger entries, newest first")
	qrc := &cobra.Command{
		Use:   "qr",
		Short: "Print a member's signed QR token; with --png, also write the QR code as a PNG file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			out, _ := cmd.Flags().GetString("png")
			size, _ := cmd.Flags().GetInt("size")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				token, err := h.MemberToken(ctx, id)
				if err != nil {
					return err
				}
				what := fmt.Sprintf("member %s's QR token: a cashier's scanner reads it from the member's card or app", id)
				if out != "" {
					png, err := qr.PNG(token, size)
					if err != nil {
						return err
					}
					if err := os.WriteFile(out, png, 0o600); err != nil {
						return err
					}
					what += fmt.Sprintf("; the QR code is in %s", out)
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), map[string]string{"id": id, "qr": token, "png": out})
				}
				return say(cmd, token, what)
			})
		},
	}
	qrc.Flags().String("png", "", "write the QR code to this PNG file")
	qrc.Flags().Int("size", qr.DefaultPNGSize, "PNG width and height in pixels")
	for _, c := range []*cobra.Command{show, qrc} {
		c.Flags().String("id", "", "member id")
		c.MarkFlagRequired("id")
	}
	jsonFlag(add, show, qrc)
	for _, c := range []*cobra.Command{add, show, qrc} {
		hubFlags(c)
		member.AddCommand(c)
	}
	member.AddCommand(careCommands()...)   // update, erase, export: care.go
	member.AddCommand(memberListCommand()) // migrate.go
	member.AddCommand(cardLinkCommand())   // card.go
	return member
}

func programCommands() *cobra.Command {
	program := group("program", "Show or publish the loyalty program")
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the current program: a summary, or all of it with --json",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				p, err := h.Program(ctx)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), p)
				}
				return printProgram(cmd, p)
			})
		},
	}
	set := &cobra.Command{
		Use:   "set",
		Short: "Publish a new program version from a file (YAML or JSON; see configs/program.yaml) and print its version",
		Args:  cobra.NoArgs,
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
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), out)
				}
				return say(cmd, fmt.Sprint(out.Version), fmt.Sprintf("published program version %d from %s; connected stores receive it within seconds, the others at their next sync", out.Version, file))
			})
		},
	}
	set.Flags().String("file", "", "program file")
	set.MarkFlagRequired("file")
	jsonFlag(show, set)
	for _, c := range []*cobra.Command{show, set} {
		hubFlags(c)
		program.AddCommand(c)
	}
	return program
}

// printProgram writes a program's summary: what a cashier's customers earn, and the rewards.
func printProgram(cmd *cobra.Command, p loyalty.Program) error {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "program version %d, currency %s: %d points per %d minor units spent\n", p.Version, cmp.Or(p.Currency, "-"), p.Earn.PointsPerUnit, p.Earn.UnitMinor)
	fmt.Fprintf(w, "%d budgets, %d member limits, %d earn caps, %d category rates, %d campaigns, %d punch cards, %d actions; tiers %t, expiry %t, referral %t\n\n",
		len(p.Budgets), len(p.MemberLimits), len(p.EarnCaps), len(p.CategoryRates), len(p.Campaigns), len(p.PunchCards), len(p.Actions),
		p.Tiers != nil, p.Expiry != nil, p.Referral != nil)
	t := newTable(w, "reward", "name", "points", "kind", "value", "offline", "switched off")
	for _, r := range p.Rewards {
		t.row(r.ID, r.Name, r.PointsCost, r.Kind, r.Value, cmp.Or(r.Offline, "allow"), r.Disabled)
	}
	if err := t.flush(); err != nil {
		return err
	}
	tell(cmd, "the whole program: loyalty program show --json")
	return nil
}

func keysCommands() *cobra.Command {
	keys := group("keys", "Manage QR signing keys and the key that seals them")
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Create a new signing key and print its id; older keys keep verifying until retired",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				k, err := h.RotateKey(ctx)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), k)
				}
				return say(cmd, k.ID, "new QR codes are signed with this key; agents receive its public half at their next sync. Retire the old one later with `loyalty keys retire --kid OLD --after 720h`")
			})
		},
	}
	retire := &cobra.Command{
		Use:   "retire",
		Short: "Stop accepting tokens signed by a key after a time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			kid, _ := cmd.Flags().GetString("kid")
			after, _ := cmd.Flags().GetDuration("after")
			at := time.Now().Add(after)
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				if err := h.RetireKey(ctx, kid, at); err != nil {
					return err
				}
				tell(cmd, "codes signed with key %s are refused from %s", kid, at.UTC().Format(time.RFC3339))
				return nil
			})
		},
	}
	retire.Flags().String("kid", "", "key id (loyalty keys list)")
	retire.Flags().Duration("after", 0, "grace period before tokens signed with it are refused, such as 720h (0s: at once, for a key that leaked)")
	retire.MarkFlagRequired("kid")
	retire.MarkFlagRequired("after")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the QR signing keys: the one new codes are signed with, and when each other one's codes are refused",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				ks, err := h.Keys(ctx)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), ks)
				}
				t := newTable(cmd.OutOrStdout(), "kid", "state")
				now := time.Now()
				for _, k := range ks {
					state := "verifies the codes it signed"
					switch {
					case k.Signing:
						state = "signs new codes"
					case !k.NotAfter.IsZero() && k.NotAfter.After(now):
						state = "verifies the codes it signed until " + k.NotAfter.UTC().Format(time.RFC3339)
					case !k.NotAfter.IsZero():
						state = "retired: its codes are refused since " + k.NotAfter.UTC().Format(time.RFC3339)
					}
					t.row(k.ID, state)
				}
				return t.flush()
			})
		},
	}
	jsonFlag(rotate, list)
	hubFlags(rotate)
	hubFlags(retire)
	hubFlags(list)
	keys.AddCommand(list, rotate, retire)
	keys.AddCommand(kekCommands()...)
	return keys
}

func checkCommand() *cobra.Command {
	check := &cobra.Command{
		Use:   "check",
		Short: "Verify that every member's balance equals the sum of their ledger, and the tiers' running totals and the members' lots agree with it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				r, err := h.Check(ctx)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					err = writeJSON(cmd.OutOrStdout(), r)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "%d members, %d points in all; differences from the ledger (balances, tier totals, lots): %d\n", r.Members, r.Points, len(r.Mismatches))
					for _, m := range r.Mismatches {
						fmt.Fprintln(cmd.OutOrStdout(), "  "+m)
					}
				}
				if err == nil && len(r.Mismatches) > 0 {
					err = fmt.Errorf("%d mismatches with the ledger", len(r.Mismatches))
				}
				return err
			})
		},
	}
	jsonFlag(check)
	hubFlags(check)
	return check
}

func budgetsCommand() *cobra.Command {
	budgets := &cobra.Command{
		Use:   "budgets",
		Short: "Show every budget: limit, spent, quota leased to stores, available",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				bs, err := h.Budgets(ctx)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), bs)
				}
				t := newTable(cmd.OutOrStdout(), "budget", "metric", "reward", "limit", "spent", "leased", "available", "leases")
				for _, b := range bs {
					t.row(b.ID, b.Metric, cmp.Or(b.Reward, "(all)"), b.Limit, b.Spent, b.Outstanding, b.Available, len(b.Leases))
				}
				return t.flush()
			})
		},
	}
	jsonFlag(budgets)
	hubFlags(budgets)
	return budgets
}

// accessCommands are `loyalty apikey add/list/revoke` (the HTTP API's keys; the QR signing keys
// are `loyalty keys`) and `loyalty audit`.
func accessCommands() []*cobra.Command {
	apikey := group("apikey", "Manage the hub HTTP API's keys and their scopes (admin, online, report)")
	add := &cobra.Command{
		Use:   "add",
		Short: "Create an API key with a scope and print it (shown once)",
		Long: `Create an API key for the hub's HTTP API and print it. The key is shown only this once: the hub
keeps its SHA-256 hash. Scopes: admin (every endpoint), online (the web shop or member app: earn,
redeem, reverse, vouchers, actions, reading a member and their QR code, the program), report
(read-only: stores, budgets, conflicts, rejections, check, expiring, program, members, audit).
See docs/API.md for the exact table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, _ := cmd.Flags().GetString("name")
			scope, _ := cmd.Flags().GetString("scope")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				k, err := h.CreateAPIKey(ctx, name, hub.Scope(scope))
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), k)
				}
				return say(cmd, k.Key, fmt.Sprintf("API key %s (%q, scope %s) created. The key, shown once: send it as Authorization: Bearer <key>", k.ID, k.Name, k.Scope))
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
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				ks, err := h.APIKeys(ctx)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), ks)
				}
				t := newTable(cmd.OutOrStdout(), "id", "name", "scope", "created", "created by", "revoked")
				for _, k := range ks {
					t.row(k.ID, k.Name, string(k.Scope), k.CreatedAt, k.CreatedBy, k.RevokedAt)
				}
				return t.flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke an API key; a running hub refuses it from its next request",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				k, err := h.RevokeAPIKey(ctx, id)
				if err != nil {
					return err
				}
				tell(cmd, "API key %s (%q, scope %s) is revoked since %s", k.ID, k.Name, k.Scope, k.RevokedAt.Format(time.RFC3339))
				return nil
			})
		},
	}
	revoke.Flags().String("id", "", "the key's id, as loyalty apikey list shows it")
	revoke.MarkFlagRequired("id")
	jsonFlag(add, list)
	for _, c := range []*cobra.Command{add, list, revoke} {
		hubFlags(c)
		apikey.AddCommand(c)
	}

	audit := &cobra.Command{
		Use:   "audit",
		Short: "Print the audit trail of admin changes, newest first: when, which key, what, on what",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			limit, _ := cmd.Flags().GetInt("limit")
			before, _ := cmd.Flags().GetInt64("before")
			action, _ := cmd.Flags().GetString("action")
			key, _ := cmd.Flags().GetString("key")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				es, err := h.AuditPage(ctx, hub.AuditQuery{Before: before, Action: action, KeyID: key, Limit: limit})
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), es)
				}
				t := newTable(cmd.OutOrStdout(), "seq", "at", "key", "action", "target", "detail")
				for _, e := range es {
					t.row(e.Seq, e.At, fmt.Sprintf("%s (%s)", e.KeyID, e.KeyName), e.Action, e.Target, e.Detail)
				}
				return t.flush()
			})
		},
	}
	audit.Flags().Int("limit", 100, fmt.Sprintf("how many entries, newest first (1 to %d)", hub.MaxAuditLimit))
	audit.Flags().Int64("before", 0, "only entries older than this seq: the last seq of the page before")
	audit.Flags().String("action", "", "only entries of this action (member.add), or of this family (member.*)")
	audit.Flags().String("key", "", "only entries made with this key id (an API key's ak-…, config, cli or internal)")
	jsonFlag(audit)
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
