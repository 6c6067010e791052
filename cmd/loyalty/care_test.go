package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty/hub"
)

func TestCLI_MemberCare(t *testing.T) {
	db := initHubDB(t)
	dir := filepath.Dir(db)
	mustRun(t, "member", "add", "--id", "m1", "--name", "Ann", "--email", "ann@example.org", "--database", db)

	out, _ := mustRun(t, "member", "update", "m1", "--name", "Ann Lee", "--birthday", "07-14", "--attr", "tag=vip", "--attr", "shoe=38",
		"--json", "--database", db)
	var v struct {
		Name, Email, Birthday string
		Attributes            map[string]string
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Name != "Ann Lee" || v.Email != "ann@example.org" || v.Birthday != "07-14" ||
		v.Attributes["tag"] != "vip" || v.Attributes["shoe"] != "38" {
		t.Fatalf("member update --json = %s (%v)", out, err)
	}
	out, _ = mustRun(t, "member", "update", "m1", "--attr", "shoe=", "--email", "", "--json", "--database", db)
	v.Email, v.Attributes = "", nil
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Email != "" || len(v.Attributes) != 1 {
		t.Fatalf("member update removing an attribute and the email = %s (%v)", out, err)
	}
	if _, _, err := run(t, "member", "update", "m1", "--attr", "novalue", "--database", db); err == nil || !strings.Contains(err.Error(), "key=value") {
		t.Errorf("--attr without =: %v", err)
	}

	file := filepath.Join(dir, "m1.json")
	mustRun(t, "member", "export", "m1", "--out", file, "--database", db)
	b, err := os.ReadFile(file)
	var exp map[string]any
	if err != nil || json.Unmarshal(b, &exp) != nil || exp["member"].(map[string]any)["name"] != "Ann Lee" || exp["ledger"] == nil {
		t.Fatalf("export file %s: %v", b, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode %v, want 0600", fi.Mode().Perm())
	}
	// --out names a new file: one that exists is refused and left as it was, the database
	// above all (it was emptied, then removed when the export failed), and another export's file
	// too (it kept its mode, 0644, with the member's data in it).
	for _, existing := range []string{db, file} {
		before, _ := os.ReadFile(existing)
		if _, _, err := run(t, "member", "export", "m1", "--out", existing, "--database", db); err == nil ||
			!strings.HasPrefix(formatError(err), "EINVALID") || !strings.Contains(err.Error(), "name a new file") {
			t.Errorf("export over %s: %v; want EINVALID, name a new file", filepath.Base(existing), err)
		}
		if after, err := os.ReadFile(existing); err != nil || string(after) != string(before) {
			t.Errorf("%s after an export over it: %d bytes, %v; want it as it was (%d bytes)", filepath.Base(existing), len(after), err, len(before))
		}
	}
	missing := filepath.Join(dir, "nobody.json")
	if _, _, err := run(t, "member", "export", "nobody", "--out", missing, "--database", db); err == nil {
		t.Error("export of an unknown member succeeded")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("export of an unknown member left a file: %v", err)
	}

	if _, _, err := run(t, "member", "erase", "m1", "--database", db); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("erase without --yes: %v", err)
	}
	if out, _ := mustRun(t, "member", "show", "--id", "m1", "--json", "--database", db); !strings.Contains(out, "Ann Lee") {
		t.Fatalf("erase without --yes erased: %s", out)
	}
	_, errOut := mustRun(t, "member", "erase", "m1", "--yes", "--database", db)
	if !strings.Contains(errOut, "erased") {
		t.Errorf("erase stderr %q", errOut)
	}
	out, _ = mustRun(t, "member", "show", "--id", "m1", "--json", "--database", db)
	if strings.Contains(out, "Ann") || !strings.Contains(out, `"erased": true`) {
		t.Errorf("member after the erasure: %s", out)
	}
	if _, _, err := run(t, "member", "erase", "m1", "--yes", "--database", db); err == nil || !strings.HasPrefix(formatError(err), "EDUPLICATE") {
		t.Errorf("a second erasure: %v, want EDUPLICATE", err)
	}
	out, _ = mustRun(t, "audit", "--json", "--database", db)
	if !strings.Contains(out, `"member.erase"`) || !strings.Contains(out, `"cli"`) || strings.Contains(out, "Ann") {
		t.Errorf("audit trail after the erasure: %s", out)
	}
}

// TestCLI_RestoreKeepsErasuresAndCardRevocations: a member erased after the backup stays erased
// after `loyalty restore` (their name and email would come back, and go to the stores that hold
// them), and a card link revoked after the backup stays revoked; the restore says so. A member
// erased before the backup, and one revoked before it, change nothing.
func TestCLI_RestoreKeepsErasuresAndCardRevocations(t *testing.T) {
	db := initHubDB(t)
	backup := filepath.Join(filepath.Dir(db), "backup.db")
	mustRun(t, "member", "add", "--id", "m1", "--name", "Ann Secret", "--email", "ann@example.org", "--database", db)
	mustRun(t, "member", "add", "--id", "m2", "--name", "Bo Early", "--database", db)
	mustRun(t, "member", "erase", "m2", "--yes", "--database", db) // before the backup
	out, _ := mustRun(t, "member", "card-link", "m1", "--json", "--database", db)
	var link struct {
		URLPath string `json:"url_path"`
	}
	if err := json.Unmarshal([]byte(out), &link); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "backup", "--to", backup, "--database", db)

	// After the backup: the member's forwarded card link is revoked, then they ask to be erased.
	mustRun(t, "member", "card-link", "m1", "--revoke", "--database", db)
	mustRun(t, "member", "erase", "m1", "--yes", "--database", db)

	_, said := mustRun(t, "restore", "--from", backup, "--database", db)
	if !strings.Contains(said, "member m1 erased again") || !strings.Contains(said, "member m1's card links revoked again") || strings.Contains(said, "m2") {
		t.Errorf("restore said %q; want m1 erased again and their card links revoked again, and nothing of m2", said)
	}
	if out, _ := mustRun(t, "member", "show", "--id", "m1", "--json", "--database", db); strings.Contains(out, "Ann Secret") || strings.Contains(out, "ann@example.org") {
		t.Errorf("the restore brought back the personal data of a member erased after the backup: %s", out)
	}
	ctx := context.Background()
	cfg := DefaultHubConfig()
	cfg.Database = db
	s, err := openHub(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := hub.New(s)
	if h.KEK, err = openKEK(ctx, cfg, s, nil); err != nil {
		t.Fatal(err)
	}
	if epoch, err := func() (n int64, err error) {
		err = s.View(ctx, func(tx hub.Tx) (err error) { n, err = tx.CardEpoch(ctx, "m1"); return err })
		return n, err
	}(); err != nil || epoch != 1 {
		t.Errorf("m1's card epoch after the restore: %d, %v; want 1, as before it", epoch, err)
	}
	if c, err := h.Card(ctx, strings.TrimPrefix(link.URLPath, hub.CardPathPrefix)); err == nil {
		t.Errorf("a card link revoked after the backup works again after the restore: card of %q, balance %d", c.Name, c.Balance)
	}
}
