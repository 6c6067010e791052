package hub_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/webtest"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestDashboardInABrowser drives the dashboard of a running hub in headless Chromium, once with
// JavaScript on and once with it off: sign in with an operator key, find a member by name, see
// their balance and QR code, switch a reward off and see the program say it is off. It saves
// screenshots of each page.
func TestDashboardInABrowser(t *testing.T) {
	th := MustOpenBIHub(t)
	h := th.Hub
	ctx := hub.WithActor(context.Background(), hub.CLIActor)
	for _, id := range []string{"s1", "s2"} {
		if _, _, err := h.CreateStore(ctx, id, "Store "+id); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []loyalty.Member{{ID: "m1", HomeStore: "s1"}, {ID: "m2", HomeStore: "s2"},
		{ID: "ada", Name: "Ada Lovelace", Email: "ada@example.com", HomeStore: "s1"}} {
		if _, err := h.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"s1", "s2"} { // as the stores' agents would, before they push
		if _, err := h.Pull(ctx, id, lsync.Pull{Limit: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	now := th.Clock.Now()
	for _, d := range []loyalty.Delta{earn("s1", "m1", 90000), earn("s1", "ada", 123400), earn("s2", "m2", 45000), redeem("s2", "m2", "coffee", 50)} {
		d.OccurredAt = now
		mustApply(t, h, d.Store, d)
	}
	key, err := h.CreateAPIKey(ctx, "head office", hub.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	base := th.HTTP.URL()

	browser := webtest.Browser(t)
	for i, pass := range []struct {
		noScript bool
		reward   string
	}{{false, "coffee"}, {true, "five-off"}} {
		tab := webtest.Incognito(t, browser, pass.noScript)
		shots := !pass.noScript
		webtest.Navigate(t, tab, base+"/")
		webtest.WaitText(t, tab, "main h1", "Sign in")
		if shots {
			webtest.Screenshots(t, tab, "dashboard-signin")
		}
		webtest.Fill(t, tab, "#key", "lk_wrong")
		webtest.Submit(t, tab, "#signin")
		webtest.WaitText(t, tab, "#signin-error", "not valid")
		webtest.Fill(t, tab, "#key", key.Key)
		webtest.Submit(t, tab, "#signin")
		webtest.WaitText(t, tab, "main h1", "Overview")
		webtest.WaitText(t, tab, "#who", "head office")
		webtest.WaitText(t, tab, "#members-total", fmt.Sprint(3+i)) // and the one each pass imports
		if shots {
			webtest.Screenshots(t, tab, "dashboard-overview")
		}

		// Find the member by name and open their page.
		webtest.Navigate(t, tab, base+"/dash/members")
		webtest.Fill(t, tab, "#q", "lovelace")
		webtest.Submit(t, tab, "#find")
		webtest.WaitText(t, tab, "#results", "Ada Lovelace")
		webtest.Submit(t, tab, `#results a[href="/dash/members/ada"]`)
		webtest.WaitText(t, tab, "main h1", "Member ada")
		webtest.WaitText(t, tab, "#balance", "1,234")
		loaded := webtest.Get(t, tab, chromedp.Evaluate[bool](`document.querySelector("#qr").complete && document.querySelector("#qr").naturalWidth > 100`))
		if !loaded {
			t.Error("the member's QR code image did not load")
		}
		if shots {
			webtest.Screenshots(t, tab, "dashboard-member")
		}

		// Switch a reward off: the program says it is off.
		webtest.Navigate(t, tab, base+"/dash/budgets")
		webtest.Submit(t, tab, "#switch-reward-"+pass.reward)
		webtest.WaitText(t, tab, ".flash", "Switched off")
		webtest.Navigate(t, tab, base+"/dash/program")
		webtest.WaitText(t, tab, "#reward-"+pass.reward, "switched off")
		if shots {
			webtest.Screenshots(t, tab, "dashboard-program")
		}
		p, err := h.Program(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Rewards {
			if r.ID == pass.reward && !r.Disabled {
				t.Errorf("%s is on in the hub's program after the switch", r.ID)
			}
		}

		if shots {
			webtest.Navigate(t, tab, base+"/dash/stores")
			webtest.WaitText(t, tab, "#stores", "s2")
			webtest.Screenshots(t, tab, "dashboard-stores")
			webtest.Navigate(t, tab, base+"/dash/reports")
			webtest.WaitText(t, tab, "#issued", "2,584")
			n := webtest.Get(t, tab, chromedp.Evaluate[int](`document.querySelectorAll("#bars rect.bar").length`))
			if n != 2 {
				t.Errorf("the bar chart has %d bars of points issued, want 2 (one a store)", n)
			}
			webtest.Screenshots(t, tab, "dashboard-reports")
		}
		// Import a file: the page streams the progress, then the result.
		csv := filepath.Join(t.TempDir(), "members.csv")
		if err := os.WriteFile(csv, []byte("member_id,points\nnew-"+pass.reward+",75\nm1,ten\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		webtest.Navigate(t, tab, base+"/dash/imports")
		webtest.Fill(t, tab, "#reason", "migration from the old system")
		webtest.Do(t, tab, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{csv}))
		webtest.Submit(t, tab, "#import")
		webtest.WaitText(t, tab, "#progress", "2 rows read")
		webtest.WaitText(t, tab, "#done", "1 imported")
		webtest.WaitText(t, tab, "#done", "not a whole number")
		if v, err := h.Member(ctx, "new-"+pass.reward, 0); err != nil || v.Balance != 75 {
			t.Errorf("the imported member: %+v, %v", v.Member, err)
		}

		webtest.Submit(t, tab, "#signout")
		webtest.WaitText(t, tab, "main h1", "Sign in")
	}
	// Both switches are in the audit trail under the operator's key.
	entries, err := h.Audit(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	published := 0
	for _, e := range entries {
		if e.Action == hub.AuditProgramPublish && e.KeyID == key.ID {
			published++
		}
	}
	if published != 2 {
		t.Errorf("%d program publications by the operator's key in the audit trail, want 2", published)
	}
}
