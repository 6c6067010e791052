package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
)

// TestCLI_ImportAdjustExport: `loyalty import members` writes the bad rows beside the file, shows
// plain progress lines when stderr is no terminal, imports nothing twice when run again; an
// adjustment and its reversal; the members exported with their balances.
func TestCLI_ImportAdjustExport(t *testing.T) {
	db := initHubDB(t)
	dir := filepath.Dir(db)
	file := filepath.Join(dir, "old.csv")
	if err := os.WriteFile(file, []byte("email,points\nann@example.com,120\na@b.c,52,620\nbob@example.com,\"52,620\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Bad rows make the command fail after its report, so that a script notices: in a dry run too.
	out, errOut, err := run(t, "import", "members", file, "--reason", "migration", "--dry-run", "--database", db)
	if !strings.Contains(errOut, "import: 3 rows read (100%)") || !strings.Contains(errOut, "dry run: nothing was changed") {
		t.Errorf("dry run stderr:\n%s", errOut)
	}
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "2 bad rows would not be imported") || !strings.Contains(out, "IMPORTED") {
		t.Errorf("dry run: %v\nstdout: %s", err, out)
	}
	errs, err := os.ReadFile(filepath.Join(dir, "old.errors.csv"))
	if err != nil || !strings.HasPrefix(string(errs), "line,code,reason\n3,EINVALID,") || !strings.Contains(string(errs), "write 52620, without one") {
		t.Fatalf("errors file: %q, %v", errs, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "old.errors.csv")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the errors file, which quotes members' emails: %v, %v; want mode 0600", fi, err)
	}
	var rep struct{ Imported, Skipped, Bad int }
	for i, want := range []struct{ imported, skipped int }{{1, 0}, {0, 1}} {
		out, _, err := run(t, "import", "members", file, "--reason", "migration", "--json", "--database", db)
		if err == nil || !strings.Contains(err.Error(), "2 bad rows were not imported") {
			t.Errorf("run %d with bad rows: %v", i+1, err)
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Imported != want.imported || rep.Skipped != want.skipped || rep.Bad != 2 {
			t.Fatalf("run %d: %s (%v)", i+1, out, err)
		}
	}
	// The file fixed has another content: run with the id the refusal names, it imports the fixed
	// row and skips the one imported before (without it, ann's 120 points would come again).
	_, _, err = run(t, "import", "members", file, "--reason", "migration", "--database", db)
	id := regexp.MustCompile(`run the import again with --import-id (file-[0-9a-f]{16}): the rows imported already are then skipped`).FindStringSubmatch(fmt.Sprint(err))
	if id == nil {
		t.Fatalf("the refusal does not name the import's id: %v", err)
	}
	if err := os.WriteFile(file, []byte("email,points\nann@example.com,120\nbob@example.com,52620\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = mustRun(t, "import", "members", file, "--reason", "migration", "--import-id", id[1], "--json", "--database", db)
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Imported != 1 || rep.Skipped != 1 || rep.Bad != 0 {
		t.Fatalf("the fixed file's run: %s (%v)", out, err)
	}
	// A run with no bad rows leaves no errors file of an earlier run to mislead.
	if _, err := os.Stat(filepath.Join(dir, "old.errors.csv")); !os.IsNotExist(err) {
		t.Errorf("the earlier run's errors file is still there after a clean run: %v", err)
	}
	var page struct {
		Members []struct {
			ID      string `json:"id"`
			Balance int64  `json:"balance"`
		} `json:"members"`
	}
	out, _ = mustRun(t, "member", "list", "--email", "ANN@example.com", "--json", "--database", db)
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Members) != 1 || page.Members[0].Balance != 120 {
		t.Fatalf("member list: %s (%v)", out, err)
	}
	ann := page.Members[0].ID
	mustRun(t, "adjust", "--member", ann, "--points", "30", "--reason", "goodwill", "--adjust-id", "g1", "--database", db)
	for i := range 2 {
		_, said := mustRun(t, "adjust", "reverse", "--adjust-id", "g1", "--reason", "wrong member", "--database", db)
		if again := strings.Contains(said, "nothing changed: adjustment g1 was already reversed"); again != (i == 1) || !strings.Contains(said, "-30 points") {
			t.Errorf("adjust reverse, run %d, said: %s", i+1, said)
		}
	}
	if _, _, err := run(t, "adjust", "reverse", "--adjust-id", "g1", "--reason", "again, otherwise", "--database", db); err == nil || !strings.Contains(err.Error(), "already reversed") {
		t.Errorf("a second reversal: %v", err)
	}
	// With --json, a script reads whether the answer was a retry's.
	for i := range 2 {
		out, _ := mustRun(t, "adjust", "--member", ann, "--points", "1", "--reason", "rounding", "--adjust-id", "j1", "--json", "--database", db)
		if again := strings.Contains(out, `"replayed": true`) || strings.Contains(out, `"replayed":true`); again != (i == 1) || !strings.Contains(out, `"adjust_id"`) {
			t.Errorf("adjust --json, run %d: %s", i+1, out)
		}
	}
	// Without --adjust-id, the same command run twice (its answer lost, say) adjusts once.
	for i := range 2 {
		_, said := mustRun(t, "adjust", "--member", ann, "--points", "5", "--reason", "late parcel", "--database", db)
		if again := strings.Contains(said, "nothing changed: adjustment cli-"); again != (i == 1) || !strings.Contains(said, "+5 points") {
			t.Errorf("adjust, run %d, said: %s", i+1, said)
		}
	}
	out, _ = mustRun(t, "export", "members", "--database", db)
	if !strings.HasPrefix(out, "member_id,email,name,balance,tier") || !strings.Contains(out, ann+",ann@example.com,,126,") {
		t.Errorf("export:\n%s", out)
	}
	if _, _, err := run(t, "export", "people", "--database", db); err == nil || !strings.Contains(err.Error(), "no export") {
		t.Errorf("export people: %v", err)
	}
	// --output makes a new file, for its owner alone, and never overwrites one: naming the
	// database emptied it.
	csvFile := filepath.Join(filepath.Dir(db), "members.csv")
	mustRun(t, "export", "members", "--output", csvFile, "--database", db)
	if fi, err := os.Stat(csvFile); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() < int64(len("member_id")) {
		t.Errorf("the export file: %v, %v; want members' data, mode 0600", fi, err)
	}
	before, _ := os.Stat(db)
	if _, _, err := run(t, "export", "members", "--output", db, "--database", db); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("export onto the database: %v, want a refusal", err)
	}
	if after, err := os.Stat(db); err != nil || after.Size() != before.Size() {
		t.Errorf("the database after an export onto it: %v, %v (was %d bytes)", after, err, before.Size())
	}
	mustRun(t, "store", "list", "--database", db)
}

// `loyalty keys list` names the key that signs and the others with when their codes are refused,
// so that an operator retires the old key, not the one `rotate` just printed (refused); retire
// needs --after, a grace period or 0s.
func TestCLI_KeysListAndRetire(t *testing.T) {
	db := initHubDB(t)
	out, _ := mustRun(t, "keys", "list", "--json", "--database", db)
	var keys []struct {
		Kid     string `json:"kid"`
		Signing bool   `json:"signing"`
	}
	if err := json.Unmarshal([]byte(out), &keys); err != nil || len(keys) != 1 || !keys[0].Signing {
		t.Fatalf("keys list --json: %s (%v)", out, err)
	}
	old := keys[0].Kid
	next, _ := mustRun(t, "keys", "rotate", "--database", db)
	next = strings.TrimSpace(next)
	if _, _, err := run(t, "keys", "retire", "--kid", old, "--database", db); err == nil || !strings.Contains(err.Error(), `"after" not set`) {
		t.Errorf("retire without --after: %v", err)
	}
	if _, _, err := run(t, "keys", "retire", "--kid", next, "--after", "720h", "--database", db); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("retiring the key that signs: %v", err)
	}
	mustRun(t, "keys", "retire", "--kid", old, "--after", "720h", "--database", db)
	out, _ = mustRun(t, "keys", "list", "--database", db)
	if !regexp.MustCompile(next+` +signs new codes`).MatchString(out) || !regexp.MustCompile(old+` +verifies the codes it signed until 20`).MatchString(out) {
		t.Errorf("keys list:\n%s", out)
	}
}

// `loyalty backup --to` into a folder that does not exist says so, with the mkdir, instead of
// SQLite's "unable to open database file (14)"; onto a file that exists, EDUPLICATE.
func TestCLI_BackupToAMissingFolder(t *testing.T) {
	db := initHubDB(t)
	dir := filepath.Dir(db)
	to := filepath.Join(dir, "nodir", "hub-backup.db")
	if _, _, err := run(t, "backup", "--to", to, "--database", db); loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "mkdir -p "+filepath.Dir(to)) {
		t.Errorf("backup into a missing folder: %v", err)
	}
	if _, _, err := run(t, "backup", "--to", db, "--database", db); loyalty.ErrorCode(err) != loyalty.EDUPLICATE {
		t.Errorf("backup onto a file that exists: %v", err)
	}
}

// --errors naming what is not a file (a pipe here; /dev/stderr, /dev/null) is written to as it
// is: never given mode 0600, which run as root on /dev/null broke it for every other user.
func TestCLI_ImportErrorsToAPipe(t *testing.T) {
	db := initHubDB(t)
	dir := filepath.Dir(db)
	pipe := filepath.Join(dir, "errors.pipe")
	if err := syscall.Mkfifo(pipe, 0o644); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	read := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(pipe) // until the import closes its end
		read <- string(b)
	}()
	file := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(file, []byte("email,points\nok@example.com,5\nnot-an-email,5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "import", "members", file, "--reason", "migration", "--errors", pipe, "--database", db)
	if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "1 bad rows were not imported") {
		t.Errorf("import: %v", err)
	}
	if got := <-read; !strings.HasPrefix(got, "line,code,reason\n3,EINVALID,") {
		t.Errorf("the pipe read %q", got)
	}
	if fi, err := os.Stat(pipe); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("the pipe after the import: %v, %v; want its mode 0644 left alone", fi, err)
	}
}

// A dry run changes nothing: not an earlier run's errors file either, bad rows or none.
func TestCLI_ImportDryRunKeepsTheErrorsFile(t *testing.T) {
	db := initHubDB(t)
	dir := filepath.Dir(db)
	file, errs := filepath.Join(dir, "in.csv"), filepath.Join(dir, "in.errors.csv")
	if err := os.WriteFile(file, []byte("email,points\nok@example.com,5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(errs, []byte("line,code,reason\n3,EINVALID,an earlier run's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "import", "members", file, "--reason", "migration", "--dry-run", "--database", db)
	if _, err := os.Stat(errs); err != nil {
		t.Errorf("the dry run removed the earlier run's errors file: %v", err)
	}
	mustRun(t, "import", "members", file, "--reason", "migration", "--database", db)
	if _, err := os.Stat(errs); !os.IsNotExist(err) {
		t.Errorf("a clean run left the earlier run's errors file: %v", err)
	}
}

// TestCLI_ExportOutputRemovedOnFailure: an export to --output that fails after making its file
// removes it, and does not say it exported. Before, the file was left half written, with the
// line "members exported to …" beside the error.
func TestCLI_ExportOutputRemovedOnFailure(t *testing.T) {
	db := initHubDB(t)
	mustRun(t, "member", "add", "--id", "m1", "--database", db)
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE members SET balance = 'not a number' WHERE id = 'm1'`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	file := filepath.Join(filepath.Dir(db), "members.csv")
	_, said, err := run(t, "export", "members", "--output", file, "--database", db)
	if err == nil {
		t.Fatal("the export of a member whose balance is not a number succeeded")
	}
	if _, serr := os.Stat(file); serr == nil {
		t.Errorf("the failed export (%v) left %s behind", err, file)
	}
	if strings.Contains(said, "exported to") {
		t.Errorf("the failed export said %q", said)
	}
}
