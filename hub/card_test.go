package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// cardHub is a hub (openHub: stores s1, s2, members m1, m2) behind its HTTP handler, with a
// clock the test moves (for link expiry).
type cardHub struct {
	*akHub
	now atomic.Int64 // unix nanoseconds
}

func openCardHub(t *testing.T) *cardHub {
	t.Helper()
	h := openHub(t)
	c := &cardHub{}
	c.now.Store(t0.UnixNano())
	h.Now = func() time.Time { return time.Unix(0, c.now.Load()).UTC() }
	sync := lsync.NewServer(h)
	sync.Logger = slog.New(slog.DiscardHandler)
	srv := &hub.Server{Hub: h, Sync: sync, AdminKey: akAdminKey, Logger: slog.New(slog.DiscardHandler)}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	c.akHub = &akHub{Hub: h, URL: ts.URL}
	return c
}

func (c *cardHub) advance(d time.Duration) { c.now.Add(int64(d)) }

// link makes a card link for member through the API with key and returns it.
func (c *cardHub) link(t *testing.T, key, member, body string) hub.CardLink {
	t.Helper()
	var l hub.CardLink
	c.mustDo(t, key, "POST", "/v1/members/"+member+"/card-links", body, http.StatusCreated, &l)
	if l.MemberID != member || !strings.HasPrefix(l.URLPath, "/m/") || l.ExpiresAt.IsZero() {
		t.Fatalf("card link %+v", l)
	}
	return l
}

// page fetches path without any key and returns the status, headers and body.
func (c *cardHub) page(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(c.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// cardSetup gives m1 a history: a program with tiers by spend, 300 points earned online on a
// purchase of 300.00 EUR, a voucher for a coffee bought with 50, and 100 spent on 5.00 EUR off:
// balance 150.
func cardSetup(t *testing.T, h *hub.Hub) {
	t.Helper()
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
			{ID: "bronze", Name: "Bronze", Threshold: 0, Multiplier: 1000},
			{ID: "silver", Name: "Silver", Threshold: 20000, Multiplier: 1000},
			{ID: "gold", Name: "Gold", Threshold: 100000, Multiplier: 1000},
		}}
	})
	if _, err := h.UpdateMember(ctx, "m1", hub.MemberPatch{Name: hub.Text{Set: true, Value: "Ann <b>Quill</b>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "WEB-ORDER-77", MemberID: "m1", Amount: 30000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "WEB-VOUCHER-78", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	r, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "WEB-REDEEM-79", MemberID: "m1", RewardID: "five-off"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Balance != 150 {
		t.Fatalf("balance %d after the setup, want 150", r.Balance)
	}
}

// TestCard_Page: the page a valid link opens shows the member's card in words, with their QR
// code, served with headers that keep the link to itself, and without internal ids.
func TestCard_Page(t *testing.T) {
	c := openCardHub(t)
	cardSetup(t, c.Hub)
	l := c.link(t, akAdminKey, "m1", "")
	if want := t0.Add(hub.CardLinkDefaultTTL); !l.ExpiresAt.Equal(want) {
		t.Errorf("default expiry %v, want %v (30 days)", l.ExpiresAt, want)
	}
	status, hdr, body := c.page(t, l.URLPath)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", l.URLPath, status, body)
	}
	for _, want := range []string{
		`<meta name="robots" content="noindex, nofollow">`,
		"Hello, Ann &lt;b&gt;Quill&lt;/b&gt;", // escaped, never markup
		`<div class="value" id="balance">150</div>`,
		"Spend 700.00 EUR more", "to reach Gold", `value="30"`, // 300.00 of 1,000.00 EUR
		"Free coffee", "5.00 EUR off", "100 more points for Tote bag",
		"Your vouchers", // the coffee voucher
		"Purchase of 300.00 EUR online", "Reward: 5.00 EUR off online", "&#43;300", "-100",
		`href="` + l.URLPath + `/qr.png"`,
		"<svg", "<path", "This link works until 22 Dec 2026",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the card does not show %q", want)
		}
	}
	if !regexp.MustCompile(`(?s)id="vouchers-h".*<li>Free coffee`).MatchString(body) {
		t.Error("the coffee voucher is not listed")
	}
	for _, secret := range []string{"WEB-ORDER-77", "WEB-VOUCHER-78", "WEB-REDEEM-79", "<b>", "LES1."} {
		if strings.Contains(body, secret) {
			t.Errorf("the card shows %q (an internal id, markup or a token in the clear)", secret)
		}
	}
	for name, want := range map[string]string{
		"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Robots-Tag": "noindex, nofollow",
	} {
		if got := hdr.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	// The PNG of the same link.
	status, hdr, pngBody := c.page(t, l.URLPath+"/qr.png")
	if status != http.StatusOK || hdr.Get("Content-Type") != "image/png" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("qr.png: %d %v", status, hdr)
	}
	if _, err := png.Decode(strings.NewReader(pngBody)); err != nil {
		t.Fatalf("qr.png is no PNG: %v", err)
	}
}

// TestCard_LinksThatDoNotWork: a tampered, expired, revoked or huge link, one of an erased
// member, one signed for another purpose or by another hub, all answer the same 404 page, which
// does not say which it was; a link made after a revocation works.
func TestCard_LinksThatDoNotWork(t *testing.T) {
	c := openCardHub(t)
	ctx := context.Background()
	old := c.link(t, akAdminKey, "m1", `{"ttl_hours":48}`)
	if want := t0.Add(48 * time.Hour); !old.ExpiresAt.Equal(want) {
		t.Errorf("expiry %v, want %v", old.ExpiresAt, want)
	}
	_, _, gone := c.page(t, "/m/x")
	if !strings.Contains(gone, "This card link does not work") || !strings.Contains(gone, `content="noindex, nofollow"`) {
		t.Fatalf("the 404 page: %s", gone)
	}
	notWorking := func(name, path string) {
		t.Helper()
		status, _, body := c.page(t, path)
		if status != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", name, status)
		}
		if body != gone {
			t.Errorf("%s: the 404 page differs from the others, so it tells why:\n%s", name, body)
		}
		if status, _, _ := c.page(t, path+"/qr.png"); status != http.StatusNotFound && !strings.HasSuffix(path, "/") {
			t.Errorf("%s: qr.png %d, want 404", name, status)
		}
	}
	if status, _, _ := c.page(t, old.URLPath); status != http.StatusOK {
		t.Fatalf("the new link: %d", status)
	}
	token := strings.TrimPrefix(old.URLPath, "/m/")
	// Tampered: every character changed in turn.
	for i := range token {
		b := []byte(token)
		b[i] ^= 1
		if b[i] == '/' || b[i] == '?' || b[i] == '#' || b[i] == '%' {
			continue
		}
		status, _, body := c.page(t, "/m/"+string(b))
		if status != http.StatusNotFound || body != gone {
			t.Fatalf("a link changed at %d: %d", i, status)
		}
	}
	key, err := c.Hub.WebKey("cards")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := web.NewSigner(key)
	exp := t0.Add(time.Hour)
	// The hub's own key and format work (the checks below fail for their one reason only)...
	if status, _, _ := c.page(t, "/m/"+signer.Sign("card", "0 m1", exp)); status != http.StatusOK {
		t.Fatalf("a value signed as a card link: %d", status)
	}
	notWorking("other purpose", "/m/"+signer.Sign("session", "0 m1", exp))
	otherHub, _ := web.NewSigner(bytes.Repeat([]byte("k"), 32))
	notWorking("other key", "/m/"+otherHub.Sign("card", "0 m1", exp))
	notWorking("unknown member", "/m/"+signer.Sign("card", "0 nobody", exp))
	notWorking("no epoch", "/m/"+signer.Sign("card", "m1", exp))
	notWorking("future epoch", "/m/"+signer.Sign("card", "1 m1", exp))
	notWorking("huge", "/m/"+strings.Repeat("A", 5000))
	notWorking("just over the bound", "/m/"+signer.Sign("card", "0 m1 "+strings.Repeat("x", hub.MaxCardToken), exp))
	notWorking("line break in the signature", "/m/"+token[:len(token)-5]+"%0A"+token[len(token)-5:])
	notWorking("empty", "/m/")
	notWorking("more after the token", old.URLPath+"/x")

	// Expired: a second before its end it works, at its end it does not.
	c.advance(48*time.Hour - time.Second)
	if status, _, _ := c.page(t, old.URLPath); status != http.StatusOK {
		t.Fatalf("a second before expiry: %d", status)
	}
	c.advance(time.Second)
	notWorking("expired", old.URLPath)

	// Revoked: the links made before stop; one made after works.
	before := c.link(t, akAdminKey, "m1", "")
	var rev hub.CardRevocation
	c.mustDo(t, akAdminKey, "POST", "/v1/members/m1/card-links/revoke", "", http.StatusOK, &rev)
	if rev.MemberID != "m1" || rev.RevokedAt.IsZero() {
		t.Errorf("revocation %+v", rev)
	}
	notWorking("revoked", before.URLPath)
	after := c.link(t, akAdminKey, "m1", "")
	if status, _, _ := c.page(t, after.URLPath); status != http.StatusOK {
		t.Fatalf("a link made after the revocation: %d", status)
	}
	// Revoked twice: the link of the first epoch stays dead.
	c.mustDo(t, akAdminKey, "POST", "/v1/members/m1/card-links/revoke", "", http.StatusOK, nil)
	notWorking("revoked again", after.URLPath)
	notWorking("revoked, first epoch", before.URLPath)

	// Another member's link is theirs only, and the erasure of m2 ends m2's.
	m2 := c.link(t, akAdminKey, "m2", "")
	if status, _, _ := c.page(t, m2.URLPath); status != http.StatusOK {
		t.Fatalf("m2's link: %d", status)
	}
	if _, err := c.Hub.EraseMember(ctx, "m2"); err != nil {
		t.Fatal(err)
	}
	notWorking("erased member", m2.URLPath)
	status, body := c.do(t, akAdminKey, "POST", "/v1/members/m2/card-links", "")
	jsonapitest.AssertError(t, status, body, http.StatusNotFound, loyalty.ENOTFOUND)

	// Every link made and revoked is in the audit trail, and never the link itself.
	audit, err := c.Hub.Audit(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var made, revoked int
	for _, e := range audit {
		switch e.Action {
		case hub.AuditCardLink:
			made++
		case hub.AuditCardRevoke:
			revoked++
		}
		if strings.Contains(e.Detail, "/m/") || strings.Contains(e.Detail, token[:20]) {
			t.Errorf("audit entry %+v holds the link", e)
		}
	}
	if made != 4 || revoked != 2 {
		t.Errorf("audit: %d links made, %d revocations; want 4 and 2", made, revoked)
	}
}

// TestCardLinks_API: the bounds of ttl_hours, unknown members, and the scopes: admin and online
// keys make and revoke links, a report key and no key do not, and nothing they were refused
// changed anything.
func TestCardLinks_API(t *testing.T) {
	c := openCardHub(t)
	shop := c.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)
	report := c.newKey(t, akAdminKey, "finance", hub.ScopeReport)

	for _, body := range []string{`{"ttl_hours":0}`, `{}`} {
		if l := c.link(t, shop.Key, "m1", body); !l.ExpiresAt.Equal(t0.Add(30 * 24 * time.Hour)) {
			t.Errorf("%s: expiry %v, want the default", body, l.ExpiresAt)
		}
	}
	if l := c.link(t, shop.Key, "m1", `{"ttl_hours":8784}`); !l.ExpiresAt.Equal(t0.Add(366 * 24 * time.Hour)) {
		t.Errorf("the longest link expires %v", l.ExpiresAt)
	}
	for _, body := range []string{`{"ttl_hours":-1}`, `{"ttl_hours":8785}`, `{"ttl_hours":9223372036854775807}`,
		`{"ttl_hours":1.5}`, `{"ttl_hours":"24"}`, `{"ttl":24}`, `[]`} {
		status, b := c.do(t, shop.Key, "POST", "/v1/members/m1/card-links", body)
		jsonapitest.AssertError(t, status, b, http.StatusBadRequest, loyalty.EINVALID)
	}
	status, b := c.do(t, shop.Key, "POST", "/v1/members/nobody/card-links", "")
	jsonapitest.AssertError(t, status, b, http.StatusNotFound, loyalty.ENOTFOUND)
	status, b = c.do(t, shop.Key, "POST", "/v1/members/nobody/card-links/revoke", "")
	jsonapitest.AssertError(t, status, b, http.StatusNotFound, loyalty.ENOTFOUND)

	l := c.link(t, shop.Key, "m1", "")
	status, b = c.do(t, report.Key, "POST", "/v1/members/m1/card-links", "")
	assertForbidden(t, status, b, hub.ScopeOnline, report.Key)
	status, b = c.do(t, report.Key, "POST", "/v1/members/m1/card-links/revoke", "")
	assertForbidden(t, status, b, hub.ScopeOnline, report.Key)
	for _, path := range []string{"/v1/members/m1/card-links", "/v1/members/m1/card-links/revoke"} {
		status, b = c.do(t, "", "POST", path, "")
		jsonapitest.AssertError(t, status, b, http.StatusUnauthorized, loyalty.EUNAUTHORIZED)
	}
	if status, _, _ := c.page(t, l.URLPath); status != http.StatusOK {
		t.Fatalf("the link after refused revocations: %d", status)
	}
	c.mustDo(t, shop.Key, "POST", "/v1/members/m1/card-links/revoke", "", http.StatusOK, nil)
	if status, _, _ := c.page(t, l.URLPath); status != http.StatusNotFound {
		t.Fatalf("the link after the online key revoked it: %d", status)
	}
	if !hub.ScopeOnline.Allows("POST /v1/members/{id}/card-links") || hub.ScopeReport.Allows("POST /v1/members/{id}/card-links/revoke") {
		t.Error("routeScopes of the card links")
	}
}

// zbar returns the zbarimg binary, or skips (fails in CI) without it.
func zbar(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("zbarimg")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("zbarimg is required in CI (apt-get install zbar-tools)")
		}
		t.Skip("SKIPPED: zbarimg not installed (apt-get install zbar-tools); the QR codes were not checked with an independent reader")
	}
	return p
}

// decodeQR reads the one QR code of a PNG with zbarimg.
func decodeQR(t *testing.T, pngBytes []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qr.png")
	if err := os.WriteFile(path, pngBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(zbar(t), "--quiet", "--raw", path).Output()
	if err != nil {
		t.Fatalf("zbarimg found no QR code in %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

// rasterSVG draws the page's inline SVG QR code (its viewBox and path, as the page writes them)
// into a PNG of scale pixels a module, with a parser of its own: what a browser would show.
func rasterSVG(t *testing.T, body string, scale int) []byte {
	t.Helper()
	m := regexp.MustCompile(`<svg[^>]*viewBox="0 0 (\d+) (\d+)"[^>]*>.*?<path fill="#000" d="([^"]*)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no inline SVG QR code in the page")
	}
	n, _ := strconv.Atoi(m[1])
	img := image.NewGray(image.Rect(0, 0, n*scale, n*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	cmd := regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`)
	all := cmd.FindAllStringSubmatch(m[3], -1)
	if len(all) == 0 || len(cmd.ReplaceAllString(m[3], "")) != 0 {
		t.Fatalf("the SVG path is not made of module runs: %.200s", m[3])
	}
	for _, r := range all {
		x, _ := strconv.Atoi(r[1])
		y, _ := strconv.Atoi(r[2])
		w, _ := strconv.Atoi(r[3])
		for py := y * scale; py < (y+1)*scale; py++ {
			for px := x * scale; px < (x+w)*scale; px++ {
				img.SetGray(px, py, color.Gray{})
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestCard_QRDecodes: the inline SVG and the PNG of the card decode, with an independent reader
// (zbarimg), to the member's QR token, which a store's verifier accepts for the member.
func TestCard_QRDecodes(t *testing.T) {
	c := openCardHub(t)
	ctx := context.Background()
	l := c.link(t, akAdminKey, "m1", "")
	want, err := c.Hub.CardQR(ctx, strings.TrimPrefix(l.URLPath, hub.CardPathPrefix)) // the clock stands still: the very token the page signs
	if err != nil {
		t.Fatal(err)
	}
	_, _, body := c.page(t, l.URLPath)
	if got := decodeQR(t, rasterSVG(t, body, 6)); got != want {
		t.Errorf("the inline SVG decodes to %q, want %q", got, want)
	}
	_, _, pngBody := c.page(t, l.URLPath+"/qr.png")
	got := decodeQR(t, []byte(pngBody))
	if got != want {
		t.Errorf("qr.png decodes to %q, want %q", got, want)
	}
	checkMemberToken(t, c.Hub, got, "m1")
}

// checkMemberToken checks that token is a member token for member that verifies with the hub's
// public keys, as a store would check it.
func checkMemberToken(t *testing.T, h *hub.Hub, token, member string) qr.Claims {
	t.Helper()
	var keys []qr.PublicKey
	err := h.Store.View(context.Background(), func(tx hub.Tx) error {
		vks, err := tx.PublicKeys(context.Background())
		for _, k := range vks {
			keys = append(keys, k.PublicKey)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	v := &qr.Verifier{Keys: keys, Now: h.Now}
	cl, err := v.Verify(token)
	if err != nil || cl.Type != qr.TypeMember || cl.Member != member {
		t.Fatalf("the decoded token %q: %+v, %v; want a member token of %s", token, cl, err, member)
	}
	return cl
}

// TestCard_JSONFields: the link's JSON answer has exactly the documented fields.
func TestCard_JSONFields(t *testing.T) {
	c := openCardHub(t)
	status, b := c.do(t, akAdminKey, "POST", "/v1/members/m1/card-links", `{"ttl_hours":24}`)
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil || status != http.StatusCreated {
		t.Fatalf("%d %s", status, b)
	}
	if fmt.Sprint(len(got)) != "3" || got["member_id"] != "m1" || got["expires_at"] != "2026-11-23T10:00:00Z" {
		t.Errorf("answer %s", b)
	}
}

// TestCard_WithoutKEK: a hub without its key-encryption key makes no card links and shows no
// card (503, saying to try again), rather than signing with a weak key.
func TestCard_WithoutKEK(t *testing.T) {
	h := openHub(t)
	h.KEK = nil // before the server exists
	srv := &hub.Server{Hub: h, Sync: lsync.NewServer(h), AdminKey: akAdminKey, Logger: slog.New(slog.DiscardHandler)}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	c := &cardHub{akHub: &akHub{Hub: h, URL: ts.URL}}
	status, b := c.do(t, akAdminKey, "POST", "/v1/members/m1/card-links", "")
	jsonapitest.AssertError(t, status, b, http.StatusServiceUnavailable, loyalty.EUNAVAILABLE)
	status, _, body := c.page(t, "/m/MCBtMQ.1796580113.9H2AUWrjxqwtDoalkA6Y4Yy5EQdZJygLsvBgXB6Zdb4")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "cannot be shown right now") || strings.Contains(body, "kek") {
		t.Errorf("the card without a KEK: %d %s", status, body)
	}
}

// TestCard_OpenVouchersOnly: the card lists the vouchers the member may still use, the oldest 20
// of them: not one used, nor one whose purchase was refunded (voided), nor one expired.
func TestCard_OpenVouchersOnly(t *testing.T) {
	c := openCardHub(t)
	h, ctx := c.Hub, context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "WEB-BIG", MemberID: "m1", Amount: 200_000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	issue := func(order string) hub.VoucherReceipt {
		t.Helper()
		r, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: order, MemberID: "m1", RewardID: "coffee"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Issued a day apart, so that each shows its own expiry date on the card.
	old := issue("V-OLD")
	now = now.Add(24 * time.Hour)
	used := issue("V-USED")
	now = now.Add(24 * time.Hour)
	voided := issue("V-VOIDED")
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "USE-1", Voucher: used.Voucher.Token}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "V-VOIDED"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(24 * time.Hour)
	open := issue("V-00")
	for i := 1; i < 25; i++ {
		issue(fmt.Sprintf("V-%02d", i))
	}
	now = old.Voucher.ExpiresAt // the first one's last moment has passed; the others' not
	l := c.link(t, akAdminKey, "m1", "")
	status, _, body := c.page(t, l.URLPath)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", l.URLPath, status, body)
	}
	list := body[strings.Index(body, `id="vouchers-h"`):]
	list = list[:strings.Index(list, "</ul>")]
	until := func(v hub.VoucherReceipt) string { return "until " + v.Voucher.ExpiresAt.UTC().Format("2 Jan 2006") }
	if n := strings.Count(list, "<li>"); n != 20 || strings.Count(list, until(open)) != 20 {
		t.Errorf("the card lists %d vouchers, %d of them until %s; want 20 of the 25 open ones:\n%s",
			n, strings.Count(list, until(open)), open.Voucher.ExpiresAt, list)
	}
	for what, v := range map[string]hub.VoucherReceipt{"expired": old, "used": used, "voided": voided} {
		if strings.Contains(list, until(v)) {
			t.Errorf("the card lists the %s voucher (%s)", what, until(v))
		}
	}
}

// TestCard_ZoneAndCurrency: the card shows days in the member's home store's time zone, and
// amounts with their currency's decimals: a purchase at 01:00 in Auckland is on that day, not on
// the day before as in UTC, and 2,500 yen are not "25.00 JPY".
func TestCard_ZoneAndCurrency(t *testing.T) {
	c := openCardHub(t)
	h, ctx := c.Hub, context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Earn.Currencies = []loyalty.CurrencyRate{{Currency: "JPY", PointsPerUnit: 1, UnitMinor: 150}}
	})
	if _, _, err := h.CreateStoreIn(ctx, "akl", "Auckland", "Pacific/Auckland"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "kiri", HomeStore: "akl"}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 30, 0, 0, time.UTC) // 23 November, 01:30 in Auckland
	h.Now = func() time.Time { return now }
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "WEB-JPY", MemberID: "kiri", Amount: 2500, Currency: "JPY"}); err != nil {
		t.Fatal(err)
	}
	l := c.link(t, akAdminKey, "kiri", "")
	status, _, body := c.page(t, l.URLPath)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", l.URLPath, status, body)
	}
	if !strings.Contains(body, "<td>23 Nov 2026</td><td>Purchase of 2,500 JPY") {
		t.Errorf("the card's history does not show the purchase of 2,500 JPY on 23 Nov 2026:\n%s", body[strings.Index(body, `id="history-h"`):])
	}
}

// TestCard_QREndsWithTheLink: the member code a card link shows (on the page and as qr.png)
// expires with the link at the latest, so that a code read off a forwarded link that was then
// revoked does not stay good at the till for qr.member_ttl (two years) more. A member code made
// for an operator keeps qr.member_ttl.
func TestCard_QREndsWithTheLink(t *testing.T) {
	c := openCardHub(t)
	ctx := context.Background()
	l := c.link(t, akAdminKey, "m1", `{"ttl_hours":24}`)
	token := strings.TrimPrefix(l.URLPath, hub.CardPathPrefix)
	card, err := c.Hub.Card(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	png, err := c.Hub.CardQR(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := c.Hub.MemberToken(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	claims := func(token string) qr.Claims { t.Helper(); return checkMemberToken(t, c.Hub, token, "m1") }
	for name, code := range map[string]string{"the page's": card.QR, "qr.png's": png} {
		if exp := claims(code).Expires; exp != l.ExpiresAt.Unix() {
			t.Errorf("%s code expires at %v, want the link's expiry %v", name, time.Unix(exp, 0).UTC(), l.ExpiresAt)
		}
	}
	if exp, want := claims(plain).Expires, c.Hub.Now().Add(c.Hub.MemberTokenTTL).Unix(); exp != want || c.Hub.MemberTokenTTL < 24*time.Hour {
		t.Errorf("GET /v1/members/{id}/qr's code expires at %v, want %v (qr.member_ttl %v)", time.Unix(exp, 0).UTC(), time.Unix(want, 0).UTC(), c.Hub.MemberTokenTTL)
	}
}
