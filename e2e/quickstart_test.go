package e2e_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/internal/pgtest"
)

// TestQuickstart runs the README's quickstart as it stands: the shell block between the
// quickstart markers, in bash, with `set -e`, in a folder that holds the repository (the same
// commands build the binary and read configs/). Only the ports change, in the block and in the
// copies of configs/, to free ones, so the test never collides with a server on 8080 or 8081.
// It checks what the README says the reader will see, and that nothing is left in the work tree
// but the binary the first command builds.
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs the README's quickstart")
	}
	ports := freePorts(t, 2)
	out := runReadmeBlock(t, "quickstart", readmeBlock(t, "quickstart"), strings.NewReplacer("8080", ports[0], "8081", ports[1]))
	for _, want := range []string{
		`"points":12,"balance":112`,   // step 4's receipt, as the README says
		"balance: 112 points",         // step 5: loyalty member show at head office
		"A-1001",                      // the sale in the hub's ledger
		`"id":"m1"`, `"balance":112,`, // and through the hub's API
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the quickstart's output lacks %q", want)
		}
	}
}

// TestQuickstartPostgres runs the README's second quickstart as it stands, as TestQuickstart runs
// the first: two hub processes on one PostgreSQL database, the first killed between two sales.
// The block's database URL becomes a new database on the server named by LOYALTY_TEST_POSTGRES,
// dropped at the end, and its ports 8080, 8081 and 8082 free ones.
func TestQuickstartPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs the README's PostgreSQL quickstart")
	}
	if pgtest.Server() == "" {
		t.Skipf("SKIPPED: the README's PostgreSQL quickstart needs a server to create a database on: "+
			"%s='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' go test ./e2e/ -run TestQuickstartPostgres", pgtest.Env)
	}
	const readerDatabase = "postgres://postgres@localhost:5432/loyalty?sslmode=disable"
	block := readmeBlock(t, "quickstart-postgres")
	if !strings.Contains(block, readerDatabase) {
		t.Fatalf("the PostgreSQL quickstart no longer names %s: change the test with it, so that it never runs on a reader's database", readerDatabase)
	}
	database := postgresDatabase(t)
	ports := freePorts(t, 3)
	out := runReadmeBlock(t, "quickstart-postgres", block, strings.NewReplacer(
		readerDatabase, database, "8080", ports[0], "8081", ports[1], "8082", ports[2]))
	for _, want := range []string{
		`"points":12,"balance":112`, // step 5's receipt, through hub A
		`"points":20,"balance":132`, // step 6's receipt, hub A dead
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the PostgreSQL quickstart's output lacks %q", want)
		}
	}
	// Step 7 prints last: Ann's account through hub B's API, with both sales.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, `"id":"m1"`) || !strings.Contains(last, `"balance":132,`) {
		t.Errorf("hub B's API does not show Ann's balance of 132: %s", last)
	}
}

// readmeBlock returns the README's shell block between <!-- name:begin … --> and
// <!-- name:end -->.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	q := regexp.QuoteMeta(name)
	m := regexp.MustCompile("(?s)<!-- " + q + ":begin[^>]*-->\\s*```sh\\n(.*?)```\\s*<!-- " + q + ":end -->").FindSubmatch(readme)
	if m == nil {
		t.Fatalf("README.md has no %s block between <!-- %s:begin --> and <!-- %s:end -->", name, name, name)
	}
	return string(m[1])
}

// runReadmeBlock runs block, the README's shell block called name, as it stands, in bash with
// `set -e`, in a folder that looks like the repository: its entries linked, configs/ copied
// (the same commands build the binary and read configs/). ports is applied to the block and to the
// copies of configs/ (the ports, and anything else the test must change). The environment holds
// PATH, HOME, a TMPDIR of the test's, the Go toolchain's settings and PostgreSQL's client ones
// (PG*), never a LOYALTY_* variable: only what the block sets. Every process the block starts is
// killed with it. It fails t if the block fails, reports an error on stderr, or leaves anything
// in the work tree but the binary; it returns the block's stdout.
func runReadmeBlock(t *testing.T, name, block string, ports *strings.Replacer) string {
	t.Helper()
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI (apt-get install %s)", tool, tool)
			}
			t.Skipf("SKIPPED: %s is not installed; the quickstart needs it (apt-get install %s)", tool, tool)
		}
	}
	script := ports.Replace(block)

	// A folder that looks like the repository: its entries linked, configs/ copied with the ports.
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	linked := map[string]bool{"configs": true}
	for _, e := range entries {
		if e.Name() == ".git" || e.Name() == "configs" || e.Name() == "loyalty" {
			continue
		}
		if err := os.Symlink(filepath.Join(repo, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
		linked[e.Name()] = true
	}
	os.Mkdir(filepath.Join(dir, "configs"), 0o755)
	for _, f := range []string{"hub.yaml", "agent.yaml", "program.yaml"} {
		b, err := os.ReadFile(filepath.Join(repo, "configs", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "configs", f), []byte(ports.Replace(string(b))), 0o644)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + t.TempDir()}
	for _, kv := range os.Environ() { // the Go toolchain's and PostgreSQL's settings, never a LOYALTY_* one
		if strings.HasPrefix(kv, "GO") || strings.HasPrefix(kv, "XDG_CACHE_HOME=") || strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the hubs and agent it starts die with it
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t.Cleanup(func() {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	err = cmd.Run()
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("the %s block failed: %v", name, err)
	}
	if strings.Contains(stderr.String(), "error") {
		t.Errorf("the %s block reported an error on stderr", name)
	}
	// The work tree holds nothing new but the binary: files and logs went to $W.
	after, _ := os.ReadDir(dir)
	for _, e := range after {
		if !linked[e.Name()] && e.Name() != "loyalty" {
			t.Errorf("the %s block left %s in the work tree", name, e.Name())
		}
	}
	return stdout.String()
}

// freePorts returns n different ports that were free a moment ago, each a string.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0") // held until all are taken: no port twice
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		ports = append(ports, port)
	}
	return ports
}
