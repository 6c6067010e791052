package agent_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/loyalty-edge-sync/loyalty/internal/webtest"
)

// TestReviewTillBackButtonEarnsOnce: docs/PAGES.md says "the back button and a second send carry
// the same id ... nothing is earned twice". In Chromium, the page before the receipt is the
// answer to POST /scan served with Cache-Control: no-store: Back shows ERR_CACHE_MISS, the
// cashier reloads (the browser sends the scan form again), and the till renders the member's
// card with a fresh earn_order. The same sale sent again from it is earned a second time.
func TestReviewTillBackButtonEarnsOnce(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	base := ta.HTTP.URL()
	tab := webtest.Incognito(t, webtest.Browser(t), true) // JavaScript off: the core flow
	webtest.Navigate(t, tab, base+"/")
	webtest.Fill(t, tab, "#token", tillToken)
	webtest.Submit(t, tab, "#signin")
	webtest.Fill(t, tab, "#qr", ta.memberQR(t, "alice"))
	webtest.Submit(t, tab, "#scan")
	webtest.WaitText(t, tab, "#member-title", "Alice")
	before := ta.state(t).Stats.Outbox
	webtest.Fill(t, tab, "#amount", "12.99")
	webtest.Submit(t, tab, "#earn")
	webtest.WaitText(t, tab, "#receipt", "Points earned")

	// Back (ERR_CACHE_MISS: the page is not kept), then Reload: the browser sends the scan again.
	chromedp.Run(tab, chromedp.NavigateBack())
	if _, err := chromedp.Run(tab, chromedp.Reload()); err != nil {
		t.Fatalf("reload after back: %v", err)
	}
	webtest.WaitText(t, tab, "#member-title", "Alice")
	webtest.Fill(t, tab, "#amount", "12.99")
	webtest.Submit(t, tab, "#earn")
	webtest.WaitText(t, tab, "#receipt", "Points earned")
	if got := ta.state(t).Stats.Outbox; got != before+1 {
		t.Errorf("one sale sent again after Back and Reload: outbox %d, want %d (earned twice)", got, before+1)
	}
}
