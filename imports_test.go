package loyalty_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/loyalty-edge-sync/loyalty"

// TestImportDirection keeps the README's architecture true: imports point inward. Domain packages
// use no storage, transport or configuration library; agent and hub never import each other;
// nothing imports cmd; only cmd uses viper and cobra. Dependencies are transitive (go list
// -deps), so an indirect import counts too.
func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		deps[f[0]] = f[1:]
	}
	if len(deps) < 10 {
		t.Fatalf("go list found only %d packages", len(deps))
	}
	domain := []string{module, module + "/sync", module + "/agent", module + "/hub", module + "/qr"}
	adapters := []string{"database/sql", "modernc.org/sqlite", "github.com/jackc/pgx/v5", "github.com/gorilla/websocket", "github.com/spf13/viper", "github.com/spf13/cobra",
		"github.com/prometheus/client_golang/prometheus", "github.com/chromedp/chromedp"}
	for _, pkg := range domain {
		if _, ok := deps[pkg]; !ok {
			t.Errorf("domain package %s not found", pkg)
		}
		for _, d := range deps[pkg] {
			for _, a := range adapters {
				if d == a {
					t.Errorf("domain package %s depends on %s; put that in an adapter package", pkg, a)
				}
			}
		}
	}
	under := func(pkg, root string) bool { return pkg == root || strings.HasPrefix(pkg, root+"/") }
	for pkg, ds := range deps {
		for _, d := range ds {
			switch {
			case under(pkg, module+"/agent") && under(d, module+"/hub"):
				t.Errorf("%s imports %s: agent and hub never import each other", pkg, d)
			case under(pkg, module+"/hub") && under(d, module+"/agent"):
				t.Errorf("%s imports %s: agent and hub never import each other", pkg, d)
			case under(d, module+"/cmd"):
				t.Errorf("%s imports %s: nothing imports cmd", pkg, d)
			case (d == "github.com/spf13/viper" || d == "github.com/spf13/cobra") && !under(pkg, module+"/cmd"):
				t.Errorf("%s depends on %s: only cmd reads configuration", pkg, d)
			}
		}
	}
}
