package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
)

// TestMemberQRFromBinary: the PNG that `loyalty member qr --png` writes decodes with an
// independent reader (zbarimg) to the token text, and that text verifies at an agent while the
// hub is down.
func TestMemberQRFromBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	zbar, err := exec.LookPath("zbarimg")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("zbarimg is required in CI (apt-get install zbar-tools)")
		}
		t.Skip("SKIPPED: zbarimg not installed (apt-get install zbar-tools)")
	}
	bin, dir := binary(t), t.TempDir()
	db := filepath.Join(dir, "hub.db")
	admin := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append(args, "--database", db)...).Output()
		if err != nil {
			t.Fatalf("loyalty %v: %v", args, err)
		}
		return string(out)
	}
	admin("init")
	token := strings.TrimSpace(admin("store", "add", "--id", "s1")) // stdout holds the token alone
	admin("member", "add", "--id", "m1", "--name", "Ann", "--home-store", "s1")
	png := filepath.Join(dir, "m1.png")
	printed := strings.TrimSpace(admin("member", "qr", "--id", "m1", "--png", png))

	decoded, err := exec.Command(zbar, "--quiet", "--raw", png).Output()
	if err != nil {
		t.Fatalf("zbarimg: %v", err)
	}
	if got := strings.TrimSpace(string(decoded)); got != printed {
		t.Fatalf("zbarimg read %q, the command printed %q", got, printed)
	}

	w := &world{t: t, bin: bin, dir: dir, key: "0123456789abcdef0123", hubAddr: freePort(t), agents: map[string]*proc{},
		addrs: map[string]string{"s1": freePort(t)}, env: map[string][]string{}}
	w.startHub()
	w.env["s1"] = w.agentEnv("s1", token, w.hubAddr)
	w.startAgent("s1")
	w.waitAgentUp("s1")
	if code := w.hub.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("hub exited %d", code)
	}
	eventually(t, 10*time.Second, "agent offline", func() (bool, string) { return !w.status("s1").Online, "still online" })

	var s agent.ScanResult
	if status := call(t, "POST", "http://"+w.addrs["s1"]+"/v1/scan", "", agent.ScanRequest{QR: string(decoded)}, &s); status != 200 {
		t.Fatalf("scan of the decoded QR with the hub down: HTTP %d", status)
	}
	if s.Member.ID != "m1" || !s.Offline || s.Member.Name != "Ann" {
		t.Errorf("scan: %+v", s)
	}
	var r loyalty.Receipt
	if status := call(t, "POST", "http://"+w.addrs["s1"]+"/v1/earn", "", loyalty.EarnRequest{OrderID: "o1", QR: string(decoded), Amount: 1000, Currency: "EUR"}, &r); status != 200 || !r.Offline || r.Points != 10 {
		t.Errorf("offline earn with the decoded QR: HTTP %d %+v", status, r)
	}
	altered := strings.Replace(string(decoded), "LES1.", "LES1.x", 1)
	if status := call(t, "POST", "http://"+w.addrs["s1"]+"/v1/scan", "", agent.ScanRequest{QR: altered}, nil); status != 400 {
		t.Errorf("altered QR: HTTP %d, want 400", status)
	}
}
