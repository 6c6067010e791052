package hub_test

// Adversarial review of the web pages (issue 13): each test fails on the code as reviewed.

import (
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/hub"
)

// TestReviewDashboardImportLargerFile: a CSV file larger than what the multipart reader has
// buffered (a few KiB) is imported whole. streamImport flushes the page's head before it reads
// the file; for HTTP/1.x, net/http then discards the rest of the request body (under 256 KiB
// left: the import reads a closed body, "Something went wrong") or cuts it short (more left:
// the import ends early and the page says "Imported." for a part of the file), unless full
// duplex is enabled (http.ResponseController.EnableFullDuplex) before the first write.
func TestReviewDashboardImportLargerFile(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	for i, rows := range []int{3000, 30000} { // about 40 KiB and 380 KiB
		token := b.csrf("/dash/imports")
		var csv strings.Builder
		csv.WriteString("member_id,points\n")
		for j := range rows {
			fmt.Fprintf(&csv, "imp%d-%05d,10\n", i, j)
		}
		a := b.postFileID("/dash/imports", token, fmt.Sprintf("imp-big-%d", i), csv.String())
		if a.Status != http.StatusOK || !strings.Contains(a.Body, fmt.Sprintf(`id="imported">%d<`, rows)) {
			at := max(0, strings.Index(a.Body, `id="done"`))
			t.Errorf("a %d KiB CSV file through the dashboard: %d, want all %d rows imported; the result reads:\n%.400s",
				csv.Len()>>10, a.Status, rows, a.Body[at:])
		}
	}
}

// postFileID is postFile with an import id of its own.
func (b *dashBrowser) postFileID(path, token, importID, csv string) dashAnswer {
	b.t.Helper()
	var body strings.Builder
	mw := multipart.NewWriter(&body)
	mw.WriteField("csrf", token)
	mw.WriteField("import_id", importID)
	mw.WriteField("mode", "add")
	mw.WriteField("reason", "migration")
	fw, _ := mw.CreateFormFile("file", "members.csv")
	io.WriteString(fw, csv)
	mw.Close()
	req, err := http.NewRequest("POST", b.base+path, strings.NewReader(body.String()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(req)
}

// TestReviewDashboardReasonCountsCharacters: the adjust form takes a reason of up to 200
// characters, as its field says (maxlength="200", "at most 200 characters"); the API takes 500.
// dashboard.go field() compares len(v), bytes, so 120 characters of Greek (240 bytes) are
// refused as "at most 200 characters".
func TestReviewDashboardReasonCountsCharacters(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	token := b.csrf("/dash/members/m1")
	reason := strings.Repeat("αβ", 60) // 120 characters
	a := b.post("/dash/members/m1/adjust", url.Values{"csrf": {token}, "points": {"5"}, "reason": {reason}, "adjust_id": {"dash-greek"}})
	if a.Status != http.StatusSeeOther {
		t.Errorf("a reason of 120 Greek characters: %d, want 303 (adjusted)\n%.600s", a.Status, a.Body[max(0, strings.Index(a.Body, "reason-error")-200):])
	}
}

// TestReviewDashboardCookieSecureOverTLS: a dashboard session (an admin key's power for 8 hours)
// signed in over HTTPS gets a Secure cookie. dashboard.go sets Secure only when the hub itself
// has tls_cert_file and tls_key_file; served over TLS any other way (here a TLS listener in
// front of the handler; in production a TLS-terminating proxy, the usual set-up for
// https://hub.example.com/) the cookie is sent over plain http:// to the same host too.
func TestReviewDashboardCookieSecureOverTLS(t *testing.T) {
	h := openHub(t)
	h.Now = time.Now
	srv := &hub.Server{Hub: h, AdminKey: akAdminKey, Logger: slog.New(slog.DiscardHandler)}
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(ts.Close)
	c := ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest("POST", ts.URL+"/signin", strings.NewReader(url.Values{"key": {akAdminKey}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in over TLS: %d", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "loyalty_dashboard" && !ck.Secure {
			t.Errorf("the dashboard's session cookie, set over HTTPS, is not Secure: %s", resp.Header.Get("Set-Cookie"))
		}
	}
}
