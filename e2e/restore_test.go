package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/pgtest"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
)

// TestRestoreDrill is the restore drill of the README ("Backup and restore"), with real
// processes: back the hub up while it runs, keep selling at two stores and online, lose the hub,
// sell on offline, restore the backup, start the hub. Every sale a store approved reaches the
// restored hub exactly once (the agents send again what it lost), the online channel replays its
// calls since the backup and each is applied once, and balances, ledgers and the stores agree.
func TestRestoreDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	w, _ := newWorld(t, nil, "a", "b")
	backup := filepath.Join(w.dir, "backup.db")
	restoreDrill(t, w, drill{
		backup: func() {
			w.mustAdmin("backup", "backup", "--to", backup)
			if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("the backup holds members' data: mode %v (%v), want 0600", fi.Mode().Perm(), err)
			}
		},
		refused: func() (int, string) { return w.admin("restore-while-running", "restore", "--from", backup) },
		refusal: "stop it first",
		restore: func() { w.mustAdmin("restore", "restore", "--from", backup) },
	})
}

// TestRestoreDrillPostgres is the drill with the hub on PostgreSQL, as the README's "Backup and
// restore" says: pg_dump while the hub runs; then pg_restore into a new database, which loyalty
// restore marks restored, carrying over from the old one (--replaced) what it knew of revoked
// credentials; and the hub started on the new database.
func TestRestoreDrillPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	database := postgresDatabase(t)
	dump, restore := postgresTool(t, "pg_dump"), postgresTool(t, "pg_restore")
	w, _ := newWorldOn(t, database, []string{"LOYALTY_KEYS_KEK=" + seal.Generate()}, "a", "b")
	file := filepath.Join(w.dir, "backup.dump")
	restored := pgtest.Database(t, "loyalty_e2e_restored_", "")
	restoreDrill(t, w, drill{
		backup:  func() { runTool(t, dump, "--format=custom", "--file="+file, "--dbname="+database) },
		refused: func() (int, string) { return w.admin("restore-while-running", "restore") },
		refusal: "stop every hub process on it first",
		restore: func() {
			runTool(t, restore, "--no-owner", "--exit-on-error", "--dbname="+restored, file)
			w.database = restored
			w.mustAdmin("restore", "restore", "--replaced", database)
		},
	})
}

// drill is what a restore drill does that depends on the database: take a backup while the hub
// runs, try a restore while it runs (refused, saying refusal: its exit code and output), and
// restore.
type drill struct {
	backup  func()
	refused func() (int, string)
	refusal string
	restore func()
}

func restoreDrill(t *testing.T, w *world, d drill) {
	api := w.api()
	for i := range 4 {
		w.member(fmt.Sprintf("m%d", i), 1000)
	}
	for _, id := range []string{"a", "b"} {
		w.startAgent(id)
		w.waitAgentUp(id)
	}
	online := func(order, member string) loyalty.Receipt {
		t.Helper()
		var r loyalty.Receipt
		if s := call(t, "POST", api+"/v1/earn", w.key, loyalty.EarnRequest{OrderID: order, MemberID: member, Amount: 2500, Currency: "EUR"}, &r); s != 200 {
			t.Fatalf("online earn %s: HTTP %d", order, s)
		}
		return r
	}
	synced := func(what string) {
		t.Helper()
		for _, id := range []string{"a", "b"} {
			eventually(t, 30*time.Second, id+" "+what, func() (bool, string) {
				st := w.status(id)
				return st.Online && st.Outbox == 0, fmt.Sprintf("online %v, outbox %d, last error %q", st.Online, st.Outbox, st.LastError)
			})
		}
	}
	// The web shop's key, made before the backup and revoked after it, must stay revoked.
	var shop struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if s := call(t, "POST", api+"/v1/api-keys", w.key, map[string]string{"name": "web shop", "scope": "online"}, &shop); s != 201 {
		t.Fatalf("create an API key: HTTP %d", s)
	}

	// Before the backup.
	for range 3 {
		w.sale("a")
		w.sale("b")
	}
	web1 := online("web-1", "m0")
	w.record(web1)
	synced("synced before the backup")
	d.backup()

	// After the backup: acknowledged by the hub, then lost with it.
	var lost []loyalty.Receipt
	for range 3 {
		lost = append(lost, w.sale("a"), w.sale("b"))
	}
	w.redeem("a")
	web2 := online("web-2", "m1")
	w.record(web2)
	if s := call(t, "DELETE", api+"/v1/api-keys/"+shop.ID, w.key, nil, nil); s != 200 {
		t.Fatalf("revoke the web shop's key: HTTP %d", s)
	}
	synced("synced after the backup")
	// A restore does not replace a database a hub has open.
	if code, out := d.refused(); code == 0 || !strings.Contains(out, d.refusal) {
		t.Fatalf("restore with the hub running: exit %d, %s; want a refusal saying to stop the hub", code, out)
	}
	// Nor does a rekey seal its keys under a new key-encryption key: the running hub would seal
	// what it makes next under the old one, and neither would open the database.
	kek := filepath.Join(w.dir, "next.kek")
	if err := os.WriteFile(kek, []byte(seal.Generate()), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := w.admin("rekey-while-running", "keys", "rekey", "--new-kek-file", kek); code == 0 || !strings.Contains(out, d.refusal) {
		t.Fatalf("rekey with the hub running: exit %d, %s; want a refusal saying to stop the hub", code, out)
	}

	// The hub is lost; the stores sell on offline.
	if code := w.hub.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("hub exited %d", code)
	}
	eventually(t, 20*time.Second, "a offline", func() (bool, string) { return !w.status("a").Online, "still online" })
	offline := []loyalty.Receipt{w.sale("a"), w.sale("a")}
	for _, r := range offline {
		if !r.Offline {
			t.Fatalf("a sale with the hub down was not offline: %+v", r)
		}
	}

	d.restore()
	w.startHub()
	if s := call(t, "GET", api+"/v1/members/m0", shop.Key, nil, nil); s != 401 {
		t.Errorf("the web shop's key, revoked after the backup, answers HTTP %d after the restore; want 401", s)
	}

	// The online channel replays every call since the backup (and, harmlessly, one before it).
	if again := online("web-1", "m0"); again.Deltas[0] != web1.Deltas[0] {
		t.Errorf("web-1 replayed: a new delta %v, want the answer the backup had %v", again.Deltas, web1.Deltas)
	}
	if again := online("web-2", "m1"); again.Points != web2.Points {
		t.Errorf("web-2 replayed: %d points, want %d", again.Points, web2.Points)
	}

	// Every store delta approved, lost or made offline, reaches the restored hub's ledger once.
	ledger := func() (map[string]int, map[string]int64) {
		seen, balances := map[string]int{}, map[string]int64{}
		for _, m := range w.members {
			var v hub.MemberView
			if s := call(t, "GET", api+"/v1/members/"+m+"?ledger=1000", w.key, nil, &v); s != 200 {
				t.Fatalf("member %s: HTTP %d", m, s)
			}
			balances[m] = v.Balance
			for _, e := range v.Ledger {
				seen[e.ID]++
			}
		}
		return seen, balances
	}
	eventually(t, 60*time.Second, "every store delta at the restored hub", func() (bool, string) {
		seen, _ := ledger()
		for _, r := range append(lost, offline...) {
			for _, id := range r.Deltas {
				if seen[id] == 0 {
					return false, "missing " + r.OrderID
				}
			}
		}
		return true, ""
	})
	synced("synced with the restored hub")
	seen, balances := ledger()
	for _, m := range w.members {
		if balances[m] != w.expected[m] {
			t.Errorf("member %s: balance %d at the restored hub, want %d (the sum of every receipt)", m, balances[m], w.expected[m])
		}
	}
	for _, r := range append(lost, offline...) {
		for _, id := range r.Deltas {
			if seen[id] != 1 {
				t.Errorf("delta %s (order %s) is in the restored hub's ledger %d times, want once", id, r.OrderID, seen[id])
			}
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("delta %s is in the ledger %d times", id, n)
		}
	}
	var rejections []hub.Rejection
	call(t, "GET", api+"/v1/rejections", w.key, nil, &rejections)
	if len(rejections) != 0 {
		t.Errorf("the restored hub rejected what the stores sent again: %+v", rejections)
	}
	var check hub.CheckReport
	if s := call(t, "GET", api+"/v1/check", w.key, nil, &check); s != 200 || len(check.Mismatches) != 0 {
		t.Errorf("check: HTTP %d, %+v", s, check)
	}
	for _, id := range []string{"a", "b"} {
		if st := w.status(id); st.Rejected != 0 {
			t.Errorf("store %s holds %d rejected deltas", id, st.Rejected)
		}
	}
	// The stores see the restored hub's balances.
	for _, m := range w.members {
		eventually(t, 20*time.Second, "store a sees "+m, func() (bool, string) {
			var s struct {
				Balance int64 `json:"balance"`
			}
			call(t, "POST", "http://"+w.addrs["a"]+"/v1/scan", "", map[string]string{"qr": w.tokens[m]}, &s)
			return s.Balance == w.expected[m], fmt.Sprintf("balance %d, want %d", s.Balance, w.expected[m])
		})
	}
}

// postgresTool returns the path of a PostgreSQL client program (pg_dump, pg_restore); without it
// the test is skipped, saying what to install.
func postgresTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIPPED: needs %s on the PATH (Debian: apt-get install postgresql-client): %v", name, err)
	}
	return path
}

// runTool runs a program to its end, and fails t with its output if it fails.
func runTool(t *testing.T, path string, args ...string) {
	t.Helper()
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(path), args, err, out)
	}
}
