package e2e_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
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
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI (apt-get install %s)", tool, tool)
			}
			t.Skipf("SKIPPED: %s is not installed; the quickstart needs it (apt-get install %s)", tool, tool)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- quickstart:begin[^>]*-->\\s*```sh\\n(.*?)```\\s*<!-- quickstart:end -->").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no quickstart block between <!-- quickstart:begin --> and <!-- quickstart:end -->")
	}
	hubPort, agentPort := portOf(t, freePort(t)), portOf(t, freePort(t))
	ports := strings.NewReplacer("8080", hubPort, "8081", agentPort)
	script := ports.Replace(string(m[1]))

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
	for _, kv := range os.Environ() { // the Go toolchain's settings, never a LOYALTY_* one
		if strings.HasPrefix(kv, "GO") || strings.HasPrefix(kv, "XDG_CACHE_HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the hub and agent it starts die with it
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t.Cleanup(func() {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	err = cmd.Run()
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("the quickstart failed: %v", err)
	}

	out := stdout.String()
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
	if strings.Contains(stderr.String(), "error") {
		t.Errorf("the quickstart reported an error on stderr")
	}
	// The work tree holds nothing new but the binary: files and logs went to $W.
	after, _ := os.ReadDir(dir)
	for _, e := range after {
		if !linked[e.Name()] && e.Name() != "loyalty" {
			t.Errorf("the quickstart left %s in the work tree", e.Name())
		}
	}
}

// portOf returns the port of a host:port address.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("no port in %q", addr)
	}
	return addr[i+1:]
}
