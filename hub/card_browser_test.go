package hub_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/webtest"
)

// TestCardInABrowser opens a member's card link in headless Chromium, with JavaScript on and
// off, screenshots the page at a phone's and a desktop's width (webtest.Screenshots: card-*.png
// into $LOYALTY_TEST_SCREENSHOTS) and decodes the QR code of the desktop SCREENSHOT with an
// independent reader (zbarimg) to the member's token. It also opens a link that does not work.
func TestCardInABrowser(t *testing.T) {
	c := openCardHub(t)
	cardSetup(t, c.Hub)
	l := c.link(t, akAdminKey, "m1", "")
	want, err := c.Hub.CardQR(context.Background(), strings.TrimPrefix(l.URLPath, hub.CardPathPrefix)) // the hub's clock stands still: the token the page shows
	if err != nil {
		t.Fatal(err)
	}
	zbar(t) // skip before starting a browser when there is no reader
	ctx := webtest.Browser(t)
	for _, noScript := range []bool{false, true} {
		tab := webtest.Incognito(t, ctx, noScript)
		webtest.Navigate(t, tab, c.URL+l.URLPath)
		webtest.WaitText(t, tab, "#balance", "150")
		webtest.WaitText(t, tab, "#next", "to reach Gold")
		webtest.WaitText(t, tab, "#history", "Purchase of 300.00 EUR online")
		if title := webtest.Get(t, tab, chromedp.Title()); title != "Your loyalty card" {
			t.Errorf("title %q", title)
		}
		name := "card"
		if noScript {
			name = "card-noscript"
		}
		shot := webtest.Screenshots(t, tab, name)
		if got := decodeQR(t, shot); got != want {
			t.Fatalf("the QR code of the screenshot (JavaScript off: %v) decodes to %q, want %q", noScript, got, want)
		}
		checkMemberToken(t, c.Hub, want, "m1")
		// The keyboard reaches the skip link, then the code's download link.
		webtest.Do(t, tab, chromedp.KeyEvent("\t"), chromedp.KeyEvent("\t"))
		if id := webtest.Get(t, tab, chromedp.Evaluate[string]("document.activeElement.id")); id != "qr-png" {
			t.Errorf("the second Tab is on #%s, want #qr-png", id)
		}
	}
	tab := webtest.Incognito(t, ctx, true)
	webtest.Navigate(t, tab, c.URL+l.URLPath[:len(l.URLPath)-3]+"abc")
	webtest.WaitText(t, tab, "#gone", "This card link does not work")
	if body := webtest.Text(t, tab, "main"); strings.Contains(body, "expired") || strings.Contains(body, "revoked") {
		t.Errorf("the page says why the link does not work: %q", body)
	}
	webtest.Screenshots(t, tab, "card-gone")
}
