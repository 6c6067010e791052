package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
	"github.com/loyalty-edge-sync/loyalty/internal/webtest"
)

// TestPagesInABrowser is the web pages' story, in headless Chromium against real hub and agent
// processes. At the till page, a cashier signs in, scans a member by typing their QR token into
// the scan field, rings up a sale and sees the new balance; the hub stops, the till says so in a
// banner and still earns and redeems, with JavaScript off; the hub comes back and the till
// shows it synced. At the hub, an operator signs in, finds the member with the till's balance
// and switches a reward off, and the till refuses it. The member's card link shows a QR code
// that an independent reader (zbarimg) decodes, from a screenshot, to the member's token.
// Every page is saved at phone and desktop width into LOYALTY_TEST_SCREENSHOTS when it is set.
func TestPagesInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary, runs processes and a browser")
	}
	zbar, err := exec.LookPath("zbarimg")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("zbarimg is missing: apt-get install zbar-tools")
		}
		t.Skip("the member card's QR is read with zbarimg: apt-get install zbar-tools (.ci/run does)")
	}
	browser := webtest.Browser(t, webtest.IgnoreCertErrors) // the hub's certificate is from a throwaway CA

	const posToken = "till-token-of-the-test"
	w, _ := newWorld(t, nil, "a")
	w.env["a"] = append(w.env["a"], "LOYALTY_POS_TOKEN="+posToken)
	w.member("m1", 5000)
	w.startAgent("a")
	till := "http://" + w.addrs["a"]
	status := func() agent.Status {
		var st agent.Status
		call(t, "GET", till+"/v1/status", posToken, nil, &st)
		return st
	}
	eventually(t, 20*time.Second, "the till up with the program", func() (bool, string) {
		return status().ProgramVersion > 0, "not ready"
	})
	hubBalance := func() int64 {
		var m struct {
			Balance int64 `json:"balance"`
		}
		call(t, "GET", w.api()+"/v1/members/m1", w.key, nil, &m)
		return m.Balance
	}

	// The till, JavaScript on: sign in, scan by typing the token (as a handheld scanner does),
	// ring up a sale, see the new balance.
	tab := webtest.Incognito(t, browser, false)
	webtest.Navigate(t, tab, till+"/")
	webtest.Screenshots(t, tab, "cashier-signin")
	webtest.Fill(t, tab, "#token", posToken)
	webtest.Submit(t, tab, "#signin")
	webtest.Fill(t, tab, "#qr", w.tokens["m1"])
	webtest.Submit(t, tab, "#scan")
	before := pointsIn(t, tab, "#balance")
	if before != hubBalance() {
		t.Fatalf("the till shows %d points, the hub %d", before, hubBalance())
	}
	webtest.Screenshots(t, tab, "cashier-member")
	webtest.Fill(t, tab, "#amount", "250.00")
	webtest.Submit(t, tab, "#earn")
	earned := pointsIn(t, tab, "#receipt-points")
	online := pointsIn(t, tab, "#receipt-balance")
	if earned <= 0 || online != before+earned {
		t.Fatalf("after a sale the receipt says %+d points and a balance of %d, from %d", earned, online, before)
	}
	webtest.Screenshots(t, tab, "cashier-receipt")
	eventually(t, 30*time.Second, "the sale at the hub", func() (bool, string) {
		return hubBalance() == online, fmt.Sprintf("hub %d, till %d", hubBalance(), online)
	})

	// The hub stops. With JavaScript off, the till shows the offline banner, and still earns and
	// redeems.
	w.hub.stop(syscall.SIGTERM)
	noJS := webtest.Incognito(t, browser, true)
	webtest.Navigate(t, noJS, till+"/")
	webtest.Fill(t, noJS, "#token", posToken)
	webtest.Submit(t, noJS, "#signin")
	eventually(t, 60*time.Second, "the till's offline banner", func() (bool, string) {
		webtest.Navigate(t, noJS, till+"/")
		return shown(t, noJS, "#offline") && strings.Contains(webtest.Text(t, noJS, "#offline"), "OFFLINE"), webtest.Text(t, noJS, "#offline")
	})
	webtest.Fill(t, noJS, "#qr", w.tokens["m1"])
	webtest.Submit(t, noJS, "#scan")
	if got := pointsIn(t, noJS, "#balance"); got != online {
		t.Fatalf("offline, the till shows %d points, not %d", got, online)
	}
	webtest.Fill(t, noJS, "#amount", "100.00")
	webtest.Submit(t, noJS, "#earn")
	offlineEarn := pointsIn(t, noJS, "#receipt-balance")
	if offlineEarn <= online {
		t.Fatalf("an offline sale left the balance at %d (was %d)", offlineEarn, online)
	}
	webtest.Submit(t, noJS, `#redeem-form button[value="coffee"]`)
	webtest.WaitText(t, noJS, "#receipt", "coffee")
	final := pointsIn(t, noJS, "#receipt-balance")
	if final >= offlineEarn {
		t.Fatalf("a coffee redeemed offline left the balance at %d (was %d)", final, offlineEarn)
	}
	webtest.WaitText(t, noJS, "#offline", "2 changes are waiting")
	webtest.Screenshots(t, noJS, "cashier-offline")

	// The hub is back: the till shows it synced, and the hub has the offline sale and coffee.
	w.startHub()
	eventually(t, 60*time.Second, "the till synced", func() (bool, string) {
		webtest.Navigate(t, noJS, till+"/")
		return !shown(t, noJS, "#offline") && status().Outbox == 0, webtest.Text(t, noJS, "#offline")
	})
	if got := hubBalance(); got != final {
		t.Fatalf("after the till synced the hub has %d points, the till %d", got, final)
	}

	// The operator's dashboard: sign in, find the member, see the same balance.
	op := webtest.Incognito(t, browser, false)
	webtest.Navigate(t, op, w.api()+"/")
	webtest.Screenshots(t, op, "dashboard-signin")
	webtest.Fill(t, op, "#key", w.key)
	webtest.Submit(t, op, "#signin")
	webtest.Screenshots(t, op, "dashboard-overview")
	webtest.Navigate(t, op, w.api()+"/dash/members")
	webtest.Fill(t, op, "#q", "m1")
	webtest.Submit(t, op, "#find")
	if loc := webtest.Get(t, op, chromedp.Location()); !strings.HasSuffix(loc, "/dash/members/m1") { // an exact id opens the member
		t.Fatalf("searching for the member's id led to %s", loc)
	}
	if got := pointsIn(t, op, "#balance"); got != final {
		t.Fatalf("the dashboard shows %d points, the till %d", got, final)
	}
	webtest.Screenshots(t, op, "dashboard-member")

	// The till has the member's card open with the coffee on offer; the operator switches the
	// coffee off; the cashier presses it and is refused.
	webtest.Fill(t, tab, "#qr", w.tokens["m1"])
	webtest.Submit(t, tab, "#scan")
	webtest.Get(t, tab, chromedp.Text(chromedp.CSS(`#redeem-form button[value="coffee"]`)))
	version := status().ProgramVersion
	webtest.Navigate(t, op, w.api()+"/dash/budgets")
	webtest.Submit(t, op, "#switch-reward-coffee")
	webtest.WaitText(t, op, "#switches", "off")
	webtest.Screenshots(t, op, "dashboard-budgets")
	eventually(t, 30*time.Second, "the till has the new program", func() (bool, string) {
		v := status().ProgramVersion
		return v > version, fmt.Sprintf("program version %d", v)
	})
	webtest.Submit(t, tab, `#redeem-form button[value="coffee"]`)
	webtest.WaitText(t, tab, ".flash.error", "")
	refusal := webtest.Text(t, tab, ".flash.error")
	if pointsIn(t, tab, "#balance") != final {
		t.Fatalf("a refused coffee changed the balance: %s", webtest.Text(t, tab, "#balance"))
	}
	t.Logf("the till refused the switched-off coffee: %q", refusal)
	var r loyalty.Receipt
	if s := call(t, "POST", till+"/v1/redeem", posToken, loyalty.RedeemRequest{OrderID: "after-switch", QR: w.tokens["m1"], RewardID: "coffee"}, &r); s != http.StatusUnprocessableEntity {
		t.Fatalf("the POS API redeemed the switched-off coffee: HTTP %d", s)
	}

	// The member's card: the QR code on the screen is the member's token.
	var link struct {
		URLPath string `json:"url_path"`
	}
	if s := call(t, "POST", w.api()+"/v1/members/m1/card-links", w.key, map[string]int{"ttl_hours": 24}, &link); s != http.StatusCreated {
		t.Fatalf("card link: HTTP %d", s)
	}
	card := webtest.Incognito(t, browser, false)
	webtest.Navigate(t, card, w.api()+link.URLPath)
	webtest.WaitText(t, card, "main", web.Group(final))
	shot := filepath.Join(t.TempDir(), "card.png")
	if err := os.WriteFile(shot, webtest.Screenshots(t, card, "card"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(zbar, "-q", "--raw", shot).Output()
	if err != nil {
		t.Fatalf("zbarimg found no QR code in the card's screenshot: %v", err)
	}
	// The hub signs a new token for each showing, so the decoded one is not the earlier one's
	// text: it must be a token of this member that the store accepts, as at the till.
	got := strings.TrimSpace(string(out))
	var scanned agent.ScanResult
	if s := call(t, "POST", till+"/v1/scan", posToken, agent.ScanRequest{QR: got}, &scanned); s != http.StatusOK || scanned.Member.ID != "m1" {
		t.Fatalf("the card's QR code reads %q, which the till scans as HTTP %d member %q, not the member m1", got, s, scanned.Member.ID)
	}
}

// pointsIn reads the number of points shown in the element sel ("1,234" is 1234).
func pointsIn(t *testing.T, tab context.Context, sel string) int64 {
	t.Helper()
	text := webtest.Text(t, tab, sel)
	n, err := strconv.ParseInt(strings.NewReplacer(",", "", "+", "", " ", "").Replace(text), 10, 64)
	if err != nil {
		t.Fatalf("%s shows %q, not a number of points", sel, text)
	}
	return n
}

// shown reports whether the element sel is on the page and not hidden.
func shown(t *testing.T, tab context.Context, sel string) bool {
	t.Helper()
	return webtest.Get(t, tab, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && !e.hidden; })()`, sel)))
}
