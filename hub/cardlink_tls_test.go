package hub_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestDashboard_CardLinkBehindTLSProxy: the member card link the dashboard shows for the
// operator to send (docs/PAGES.md) is the member's only key to their card. Behind a proxy that
// terminates TLS and says so (X-Forwarded-Proto: https, as the session cookie's Secure flag
// already honours), the link is https://, or the member's first request would send the token in
// clear text.
func TestDashboard_CardLinkBehindTLSProxy(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	token := b.csrf("/dash/members/m1")
	a := b.post("/dash/members/m1/card-link", url.Values{"csrf": {token}, "days": {"7"}}, "X-Forwarded-Proto", "https")
	_, rest, ok := strings.Cut(a.Body, `id="card-link" value="`)
	if a.Status != http.StatusOK || !ok {
		t.Fatalf("make a link: %d %s", a.Status, a.Body)
	}
	link, _, _ := strings.Cut(rest, `"`)
	if !strings.HasPrefix(link, "https://") {
		t.Errorf("the browser reached the hub over HTTPS (X-Forwarded-Proto: https), but the card link to send the member is %q", link)
	}
}
