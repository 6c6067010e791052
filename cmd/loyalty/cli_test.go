package main

// Tests of the command line as a newcomer meets it: what each command prints and where, and the
// errors that must say what to fix. Each runs the real root command in this process.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty/internal/seal"
)

// run executes `loyalty args…` and returns its stdout, its stderr and its error.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := rootCommand()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// mustRun is run that fails the test on an error.
func mustRun(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := run(t, args...)
	if err != nil {
		t.Fatalf("loyalty %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr)
	}
	return stdout, stderr
}

// initHubDB makes a new hub database with `loyalty init` in a folder of t's own, and returns
// its path.
func initHubDB(t *testing.T) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "hub.db")
	mustRun(t, "init", "--database", db)
	return db
}

// TestCLI_AdminCommandsRefuseAMissingDatabase: a wrong --database (or running from another
// folder) used to create a new, empty hub and report success, printing a token the running hub
// had never heard of. Now it is an error naming the path and `loyalty init`, and nothing is created.
func TestCLI_AdminCommandsRefuseAMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "hub.db")
	for _, args := range [][]string{
		{"store", "add", "--id", "s1"},
		{"store", "list"},
		{"member", "add", "--id", "m1"},
		{"budgets"},
		{"apikey", "list"},
	} {
		_, _, err := run(t, append(args, "--database", db)...)
		if !errors.Is(err, errNoDatabase) || !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "loyalty init") {
			t.Errorf("loyalty %s on a missing database: %v, want an error naming %s and loyalty init", strings.Join(args, " "), err, db)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused admin command left files behind: %v", entries)
	}

	// A missing folder says so, instead of SQLite's "unable to open database file (14)".
	_, _, err := run(t, "init", "--database", filepath.Join(dir, "no-such-folder", "hub.db"))
	if err == nil || !strings.Contains(err.Error(), "does not exist: create it") {
		t.Errorf("init in a missing folder: %v", err)
	}

	// The agent's replica too.
	ac := DefaultAgentConfig()
	ac.StoreID, ac.Token, ac.Listen, ac.Database = "s1", "t", "127.0.0.1:0", filepath.Join(dir, "no-such-folder", "agent.db")
	am := &AgentMain{Config: ac, Logger: slog.New(slog.DiscardHandler)}
	if err := am.Open(context.Background()); err == nil {
		am.Close()
		t.Error("the agent started with its database in a missing folder")
	} else if !strings.Contains(err.Error(), "does not exist: create it") {
		t.Errorf("agent database in a missing folder: %v", err)
	}

	// loyalty init makes one; then the admin commands work, and a second init refuses.
	mustRun(t, "init", "--database", db)
	if _, _, err := run(t, "init", "--database", db); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second init: %v, want already exists", err)
	}
	mustRun(t, "store", "list", "--database", db)
}

// TestCLI_OneOutputStyle: a token alone on stdout with its explanation on stderr; tables by
// default and JSON with --json; empty lists are [] (never null).
func TestCLI_OneOutputStyle(t *testing.T) {
	db := initHubDB(t)

	out, errOut := mustRun(t, "store", "add", "--id", "s1", "--name", "Main Street", "--database", db)
	token := strings.TrimSpace(out)
	if strings.ContainsAny(token, " \n") || len(token) < 20 {
		t.Errorf("store add stdout = %q, want the token alone", out)
	}
	if !strings.Contains(errOut, "LOYALTY_TOKEN") || strings.Contains(errOut, token) {
		t.Errorf("store add stderr = %q, want the explanation without the token", errOut)
	}

	out, _ = mustRun(t, "store", "list", "--database", db)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], "s1 ") || !strings.Contains(lines[1], "Main Street") {
		t.Errorf("store list table:\n%s", out)
	}
	out, _ = mustRun(t, "store", "list", "--json", "--database", db)
	var stores []map[string]any
	if err := json.Unmarshal([]byte(out), &stores); err != nil || len(stores) != 1 || stores[0]["id"] != "s1" {
		t.Errorf("store list --json = %s (%v)", out, err)
	}

	for _, args := range [][]string{{"budgets", "--json"}, {"apikey", "list", "--json"}, {"audit", "--json", "--limit", "1"}} {
		out, _ = mustRun(t, append(args, "--database", db)...)
		if strings.TrimSpace(out) == "null" {
			t.Errorf("loyalty %s printed null, want a JSON list", strings.Join(args, " "))
		}
	}
	if out, _ = mustRun(t, "budgets", "--json", "--database", db); strings.TrimSpace(out) != "[]" {
		t.Errorf("budgets --json with no budgets = %q, want []", out)
	}

	// A failed command prints nothing on stdout, with or without --json.
	for _, args := range [][]string{{"member", "show", "--id", "nobody"}, {"member", "show", "--id", "nobody", "--json"}} {
		out, _, err := run(t, append(args, "--database", db)...)
		if err == nil || !strings.HasPrefix(formatError(err), "ENOTFOUND: ") || out != "" {
			t.Errorf("loyalty %s: stdout %q, error %v; want nothing on stdout and ENOTFOUND", strings.Join(args, " "), out, err)
		}
	}

	out, errOut = mustRun(t, "member", "add", "--id", "m1", "--name", "Ann", "--database", db)
	if strings.TrimSpace(out) != "m1" || !strings.Contains(errOut, "member m1 added") {
		t.Errorf("member add: stdout %q, stderr %q", out, errOut)
	}
	out, _ = mustRun(t, "member", "qr", "--id", "m1", "--database", db)
	if qrTok := strings.TrimSpace(out); strings.ContainsAny(qrTok, " \n") || qrTok == "" {
		t.Errorf("member qr stdout = %q, want the token alone", out)
	}
	out, _ = mustRun(t, "program", "set", "--file", "../../configs/program.yaml", "--database", db)
	if strings.TrimSpace(out) != "2" {
		t.Errorf("program set stdout = %q, want the new version alone", out)
	}
	out, _ = mustRun(t, "program", "show", "--database", db)
	if !strings.Contains(out, "program version 2") || !strings.Contains(out, "REWARD") {
		t.Errorf("program show:\n%s", out)
	}
}

// TestCLI_UnknownCommandsAreNamed: `loyalty member import` used to print the help and exit 0,
// and an unknown subcommand given a flag was reported as an unknown flag.
func TestCLI_UnknownCommandsAreNamed(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"member", "import"}, []string{`unknown command "import" for "loyalty member"`, "add, card-link, erase, export, list, qr, show, update"}},
		{[]string{"member", "import", "--file", "x.csv"}, []string{`unknown command "import"`}},
		{[]string{"stor", "add", "--id", "s1"}, []string{`unknown command "stor" for "loyalty"`, `did you mean "store"`}},
		{[]string{"keys", "rotat"}, []string{`did you mean "rotate"`}},
	} {
		_, _, err := run(t, c.args...)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("loyalty %s: %v, want %q", strings.Join(c.args, " "), err, w)
			}
		}
	}
	// A group alone still prints its help, and succeeds.
	if out, _ := mustRun(t, "member"); !strings.Contains(out, "Available Commands") {
		t.Errorf("loyalty member printed:\n%s", out)
	}
}

// TestCLI_HubBindsItsPortFirst: a hub whose port is taken fails before it creates, locks or
// migrates a database, and says what to do.
func TestCLI_HubBindsItsPortFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	cfg := DefaultHubConfig()
	cfg.Listen, cfg.Database, cfg.AdminAPIKey = ln.Addr().String(), filepath.Join(dir, "hub.db"), "0123456789abcdef"
	m := &HubMain{Config: cfg, Logger: slog.New(slog.DiscardHandler)}
	err = m.Open(context.Background())
	if err == nil {
		m.Close()
		t.Fatal("the hub started on a port in use")
	}
	if !strings.Contains(err.Error(), "the port is in use") || !strings.Contains(err.Error(), "listen") {
		t.Errorf("port in use: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the hub that could not listen left files behind: %v", entries)
	}
}

// TestCLI_ConfigErrorsSayWhatToFix covers each message a newcomer used to get wrong.
func TestCLI_ConfigErrorsSayWhatToFix(t *testing.T) {
	dir := t.TempDir()
	hubErr := func(t *testing.T, yaml string, env ...string) error {
		t.Helper()
		file := filepath.Join(dir, "hub.yaml")
		os.WriteFile(file, []byte(yaml), 0o644)
		for i := 0; i+1 < len(env); i += 2 {
			t.Setenv(env[i], env[i+1])
		}
		var h HubConfig
		if err := loadConfig(cmdWith(t, hubCommand, "--config", file), DefaultHubConfig(), &h); err != nil {
			return err
		}
		return h.Validate()
	}
	for _, c := range []struct {
		name, yaml string
		env        []string
		want       string
	}{
		{"typo", "listn: 127.0.0.1:1\n", nil, `unknown key "listn" (did you mean "listen"?)`},
		{"nested typo", "sync:\n  heartbeet: 1s\n", nil, `did you mean "sync.heartbeat"?`},
		{"agent key in the hub's file", "store_id: s1\n", nil, "setting of the other command"},
		{"duration without a unit", "sync:\n  heartbeat: 10\n", nil, "10 has no unit"},
		{"bad duration", "", []string{"LOYALTY_LEASES_TTL", "15 minutes"}, `LOYALTY_LEASES_TTL): "15 minutes" is not a duration`},
		{"number with a separator", "", []string{"LOYALTY_SYNC_MAX_BATCH", "1,000"}, `"1,000" is not a whole number`},
		{"whole number with a fraction", "sync:\n  max_batch: 500.9\n", nil, `sync.max_batch (LOYALTY_SYNC_MAX_BATCH): 500.9 is not a whole number`}, // was read as 500
		{"missing admin key", "", nil, "admin_api_key is required"},
		{"short admin key", "admin_api_key: short\n", nil, "at least 16 characters, got 5"},
		{"listen without a host part", "admin_api_key: 0123456789abcdef\nlisten: \"8080\"\n", nil, "listen must be host:port"},
		{"negative member code lifetime", "admin_api_key: 0123456789abcdef\n", []string{"LOYALTY_QR_MEMBER_TTL", "-1h"}, "qr.member_ttl must be at least 1m"},
		{"voucher code already expired", "admin_api_key: 0123456789abcdef\n", []string{"LOYALTY_QR_VOUCHER_TTL", "1ns"}, "qr.voucher_ttl must be at least 1m"},
		{"a key-encryption key that is none", "admin_api_key: 0123456789abcdef\n", []string{"LOYALTY_KEYS_KEK", "abc"}, "keys.kek:"},
		{"a certificate that is not there", "admin_api_key: 0123456789abcdef\ntls:\n  cert_file: /nonexistent/hub.crt\n  key_file: /nonexistent/hub.key\n", nil, "tls.cert_file: stat"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := hubErr(t, c.yaml, c.env...); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v, want %q", err, c.want)
			}
		})
	}
	if _, _, err := run(t, "hub", "--config", filepath.Join(dir, "nope.yaml")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing config file: %v", err)
	}

	// --check-config checks the store id as the hub will.
	t.Setenv("LOYALTY_TOKEN", "secret")
	if _, _, err := run(t, "agent", "--check-config", "--store-id", "bad id"); err == nil || !strings.Contains(err.Error(), "store_id") {
		t.Errorf("agent --check-config --store-id 'bad id': %v", err)
	}
	// It says a database's folder is missing, with the mkdir, as a start would, for both
	// commands; and it opens no database: none is made where the folder exists.
	t.Setenv("LOYALTY_ADMIN_API_KEY", "check-config-admin-key-0123")
	for cmd, flags := range map[string][]string{"agent": {"--store-id", "s1"}, "hub": nil} {
		missing := filepath.Join(dir, "no-such-folder", cmd+".db")
		if _, _, err := run(t, append([]string{cmd, "--check-config", "--database", missing}, flags...)...); err == nil || !strings.Contains(err.Error(), "mkdir -p "+filepath.Dir(missing)) {
			t.Errorf("%s --check-config with a database in a missing folder: %v", cmd, err)
		}
		there := filepath.Join(dir, cmd+".db")
		if _, _, err := run(t, append([]string{cmd, "--check-config", "--database", there}, flags...)...); err != nil {
			t.Errorf("%s --check-config: %v", cmd, err)
		}
		if _, err := os.Stat(there); !os.IsNotExist(err) {
			t.Errorf("%s --check-config made or opened the database: %v", cmd, err)
		}
	}
}

// TestCLI_UnknownEnvironmentVariablesWarned: a LOYALTY_* typo is named, with the nearest
// setting; variables of the other command (one shell often starts both) are not.
func TestCLI_UnknownEnvironmentVariablesWarned(t *testing.T) {
	var w bytes.Buffer
	warnUnknownEnv(&w, []string{"LOYALTY_ADMIN_KEY=x", "LOYALTY_TOKEN=t", "LOYALTY_ADMIN_API_KEY=k", "LOYALTY_LISTN=1", "PATH=/bin", "LOYALTY_ZZZZZZZZZZZZ=1"})
	got := w.String()
	for _, want := range []string{
		"LOYALTY_ADMIN_KEY is not a loyalty setting and is ignored (did you mean LOYALTY_ADMIN_API_KEY?)",
		"LOYALTY_LISTN is not a loyalty setting and is ignored (did you mean LOYALTY_LISTEN?)",
		"LOYALTY_ZZZZZZZZZZZZ is not a loyalty setting and is ignored\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings:\n%s\nwant %q", got, want)
		}
	}
	if strings.Contains(got, "LOYALTY_TOKEN ") || strings.Contains(got, "PATH") || strings.Count(got, "\n") != 3 {
		t.Errorf("warned about a variable that is fine:\n%s", got)
	}

	// And through a command: the warning reaches stderr.
	t.Setenv("LOYALTY_DATABSE", "x.db")
	_, errOut, _ := run(t, "store", "list", "--database", filepath.Join(t.TempDir(), "hub.db"))
	if !strings.Contains(errOut, "did you mean LOYALTY_DATABASE?") {
		t.Errorf("stderr of a command run with LOYALTY_DATABSE set:\n%s", errOut)
	}
}

// TestCLI_AdminCommandsCheckCodeLifetimes: a command that signs codes refuses the lifetimes the
// hub refuses; before, a negative member_ttl made a code that never expired.
func TestCLI_AdminCommandsCheckCodeLifetimes(t *testing.T) {
	db := initHubDB(t)
	mustRun(t, "member", "add", "--id", "m1", "--database", db)
	t.Setenv("LOYALTY_QR_MEMBER_TTL", "-1h")
	if _, _, err := run(t, "member", "qr", "--id", "m1", "--database", db); err == nil || !strings.Contains(err.Error(), "qr.member_ttl") {
		t.Errorf("member qr with qr.member_ttl -1h: %v, want a refusal naming the setting", err)
	}
}

// TestCLI_AdminCommandsGoOnWithAnotherKEK: a key-encryption key that opens none of the database's
// signing keys (an old file left beside it after a rekey) is set aside with a warning, as a
// missing one is: an API key can still be listed and revoked, a store added. Before, every admin
// command failed.
func TestCLI_AdminCommandsGoOnWithAnotherKEK(t *testing.T) {
	db := initHubDB(t)
	dir := filepath.Dir(db)
	other := filepath.Join(dir, "other.kek")
	if err := os.WriteFile(other, []byte(seal.Generate()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOYALTY_KEYS_KEK_FILE", other)
	for _, args := range [][]string{{"apikey", "list"}, {"store", "add", "--id", "s9"}, {"store", "list"}} {
		if _, stderr, err := run(t, append(args, "--database", db)...); err != nil {
			t.Errorf("loyalty %s with another key-encryption key: %v\n%s", strings.Join(args, " "), err, stderr)
		}
	}
	if _, _, err := run(t, "member", "add", "--id", "m1", "--database", db); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "member", "qr", "--id", "m1", "--database", db); err == nil {
		t.Error("a member's QR code was signed without the key that opens the signing key")
	}
}

// TestCLI_AdminCommandsHoldTheDatabase: on SQLite an admin command holds the database's lock
// shared, as a hub does, so that it and loyalty restore (or keys rekey), which takes the lock
// exclusively, refuse each other. Before, a restore replaced the database under a running import,
// whose rows went with the replaced file.
func TestCLI_AdminCommandsHoldTheDatabase(t *testing.T) {
	db := initHubDB(t)
	unlock, err := lockDatabase(db, true) // a restore running
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "store", "add", "--id", "s9", "--database", db); err == nil || !strings.Contains(err.Error(), "being restored") {
		t.Errorf("an admin command during a restore: %v, want a refusal", err)
	}
	unlock()
	shared, err := lockDatabase(db, false) // an admin command, or a hub, running
	if err != nil {
		t.Fatal(err)
	}
	defer shared()
	if _, _, err := run(t, "restore", "--from", db, "--database", db); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("a restore while an admin command runs: %v, want a refusal", err)
	}
	mustRun(t, "store", "list", "--database", db) // admin commands share the lock
}
