package agent_test

// The till page in a real browser (headless Chromium, internal/webtest) against a real agent
// whose sync client runs against a real hub (mustOpenBIHub, badinput_test.go): sign in, scan by
// typing a code into the scan field as a handheld scanner does, ring up a sale, redeem, with
// JavaScript on and off; then the hub goes away, the banner says so, the till goes on; the hub
// comes back and the sales reach it once.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
	"github.com/loyalty-edge-sync/loyalty/internal/webtest"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// scanInto types code into the scan field and presses Enter, as a handheld scanner does, and
// waits for the page that answers.
func scanInto(t *testing.T, tab context.Context, code string) {
	t.Helper()
	rctx, cancel := context.WithTimeout(tab, webtest.Timeout)
	defer cancel()
	if _, err := chromedp.RunResponse(rctx, webtest.Type("#qr", code+kb.Enter)...); err != nil {
		t.Fatalf("scan: %v", err)
	}
}

// waitJS waits until the JavaScript expression js is true on the page (it changes by itself).
func waitJS(t *testing.T, tab context.Context, what, js string) {
	t.Helper()
	rctx, cancel := context.WithTimeout(tab, webtest.Timeout)
	defer cancel()
	for {
		if ok, err := chromedp.Run(rctx, chromedp.Evaluate[bool](js)); err == nil && ok {
			return
		}
		select {
		case <-rctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(50 * time.Millisecond): // the page's script polls the agent; look again shortly
		}
	}
}

// shownPoints reads a balance the page shows ("1,234") as a number.
func shownPoints(t *testing.T, tab context.Context, sel string) int64 {
	t.Helper()
	s := webtest.Text(t, tab, sel)
	n, err := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
	if err != nil {
		t.Fatalf("%s shows %q, not points", sel, s)
	}
	return n
}

func TestTillInABrowser(t *testing.T) {
	ctx := context.Background()
	rh := mustOpenBIHub(t)
	_, storeToken, err := rh.Hub.CreateStore(ctx, "s1", "Main Street")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rh.Hub.CreateMember(ctx, loyalty.Member{ID: "ann", Name: "Ann Example", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rh.Hub.Earn(ctx, loyalty.EarnRequest{OrderID: "web-1", MemberID: "ann", Amount: 20000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	annQR, err := rh.Hub.MemberToken(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	sa := mustOpenSyncedPOSAgent(t, rh, "s1", storeToken)
	biWaitFor(t, "the agent's first sync", func() bool { st := sa.stats(t); return st.Members == 1 && st.ProgramVersion >= 1 })
	// The till page on a POS listener with a token, beside the one the helper opened.
	pos := agent.NewServer(sa.Agent, "127.0.0.1:0")
	pos.Logger, pos.POSToken = biLogger, tillToken
	if err := pos.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pos.Close() })
	base := pos.URL()

	browser := webtest.Browser(t)
	tabs := map[bool]context.Context{}
	var balance int64 = 200
	for _, noScript := range []bool{false, true} {
		tab := webtest.Incognito(t, browser, noScript)
		tabs[noScript] = tab
		webtest.Navigate(t, tab, base+"/")
		webtest.WaitText(t, tab, "h1", "Sign in")
		if !noScript {
			webtest.Screenshots(t, tab, "cashier-signin")
		}
		webtest.Fill(t, tab, "#token", "wrong")
		webtest.Submit(t, tab, "#signin")
		webtest.WaitText(t, tab, ".flash.error", "not this till's token")
		webtest.Fill(t, tab, "#token", tillToken)
		webtest.Submit(t, tab, "#signin")
		webtest.WaitText(t, tab, "#scan-title", "Scan the member's card")
		if !noScript { // the script puts the cursor in the scan field
			waitJS(t, tab, "the scan field to have the focus", `document.activeElement && document.activeElement.id === "qr"`)
		}

		scanInto(t, tab, annQR)
		webtest.WaitText(t, tab, "#member-title", "Ann Example")
		if got := shownPoints(t, tab, "#balance"); got != balance {
			t.Fatalf("JS off %v: the card shows %d points, want %d", noScript, got, balance)
		}
		if !noScript {
			waitJS(t, tab, "the amount field to have the focus", `document.activeElement && document.activeElement.id === "amount"`)
			webtest.Screenshots(t, tab, "cashier-member")
		}

		webtest.Fill(t, tab, "#amount", "12.99")
		webtest.Submit(t, tab, "#earn")
		balance += 12
		webtest.WaitText(t, tab, "#receipt-points", "+12")
		webtest.WaitText(t, tab, "#receipt-balance", web.Group(balance))
		webtest.WaitText(t, tab, "#balance", web.Group(balance)) // the card below, as it is now
		if !noScript {
			webtest.Screenshots(t, tab, "cashier-receipt")
		}

		webtest.Submit(t, tab, `button[name=reward][value=coffee]`)
		balance -= 50
		webtest.WaitText(t, tab, "#receipt-title", "Reward redeemed")
		webtest.WaitText(t, tab, "#receipt-balance", web.Group(balance))
		webtest.WaitText(t, tab, "#receipt", "the product, free")
	}
	biWaitFor(t, "the hub to have the till's sales", func() bool {
		m, err := rh.Hub.Member(ctx, "ann", 0)
		return err == nil && m.Balance == balance && sa.stats(t).Outbox == 0
	})

	// The hub goes away: the banner says so, on the page that polls (JS on) and on the next
	// page (JS off); the till goes on earning and redeeming.
	addr := rh.HTTP.ListenAddr()
	rh.HTTP.Close()
	biWaitFor(t, "the agent to notice the hub is gone", func() bool { return !sa.Client.Status().Online })
	waitJS(t, tabs[false], "the offline banner", `!document.getElementById("offline").hidden && document.getElementById("offline").innerText.includes("OFFLINE")`)
	off := tabs[true]
	scanInto(t, off, annQR)
	webtest.WaitText(t, off, "#offline", "OFFLINE: this store cannot reach head office")
	webtest.WaitText(t, off, "#offline", "Last in touch with head office at ")
	webtest.Fill(t, off, "#amount", "30.00")
	webtest.Submit(t, off, "#earn")
	balance += 30
	webtest.WaitText(t, off, "#receipt-balance", web.Group(balance))
	webtest.WaitText(t, off, "#receipt", "Saved at this store while offline")
	webtest.WaitText(t, off, "#offline", "1 change is waiting to be sent")
	webtest.Submit(t, off, `button[name=reward][value=coffee]`)
	balance -= 50
	webtest.WaitText(t, off, "#receipt-balance", web.Group(balance))
	webtest.WaitText(t, off, "#offline", "2 changes are waiting to be sent")
	webtest.Screenshots(t, off, "cashier-offline")

	// The hub is back at the same address: the banner goes, and the hub has each sale once.
	back := &hub.Server{Hub: rh.Hub, Sync: lsync.NewServer(rh.Hub), Addr: addr, AdminKey: "admin", Logger: biLogger, Upgrade: (&ws.Upgrader{}).Upgrade}
	back.Sync.Logger = biLogger
	rh.Hub.OnChange = back.Sync.NotifyStores
	if err := back.Open(); err != nil {
		t.Fatalf("reopen the hub at %s: %v", addr, err)
	}
	t.Cleanup(func() { back.Close() })
	biWaitFor(t, "the offline sales to reach the hub", func() bool {
		m, err := rh.Hub.Member(ctx, "ann", 0)
		return err == nil && m.Balance == balance && sa.stats(t).Outbox == 0
	})
	waitJS(t, tabs[false], "the offline banner to go", `document.getElementById("offline").hidden`)
	webtest.Navigate(t, off, base+"/")
	if txt := webtest.Get(t, off, chromedp.Evaluate[bool](`document.getElementById("offline").hidden`)); !txt {
		t.Error("JS off: the offline banner is still shown after the hub came back")
	}
	scanInto(t, off, annQR)
	if got := shownPoints(t, off, "#balance"); got != balance {
		t.Errorf("after the sync the card shows %d, the hub %d", got, balance)
	}

	// The camera: Linux Chromium has no BarcodeDetector, so the page gets one that reads Ann's
	// code from a blank camera. Where there is none, there is no camera button.
	tab := tabs[false]
	webtest.Navigate(t, tab, base+"/")
	if n := webtest.Get(t, tab, chromedp.Evaluate[int](`document.querySelectorAll("#camera").length`)); n != 0 {
		t.Errorf("a camera button without a barcode detector")
	}
	fake := fmt.Sprintf(`window.BarcodeDetector = class { detect() { return Promise.resolve([{rawValue: %q}]); } };
navigator.mediaDevices.getUserMedia = () => { const c = document.createElement("canvas"); c.width = c.height = 8; c.getContext("2d").fillRect(0, 0, 8, 8); return Promise.resolve(c.captureStream()); };`, annQR)
	if _, err := chromedp.Call(tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: fake}); err != nil {
		t.Fatal(err)
	}
	webtest.Navigate(t, tab, base+"/")
	webtest.Do(t, tab, chromedp.Click(chromedp.CSS("#camera")))
	webtest.WaitText(t, tab, "#member-title", "Ann Example")
	if got := shownPoints(t, tab, "#balance"); got != balance {
		t.Errorf("scanned by the camera: the card shows %d, want %d", got, balance)
	}
}
