package hub_test

// Adversarial review of the web pages (issue 13): each test fails on the code as reviewed.

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestReviewDashboardImportLargerFile: a CSV file larger than what the multipart reader has
// buffered (a few KiB) is imported whole. streamImport flushes the page's head before it reads
// the file; for HTTP/1.x, net/http then discards (up to 256 KiB) or stops the rest of the request
// body unless full duplex is enabled (http.ResponseController.EnableFullDuplex), so the import
// reads a closed body.
func TestReviewDashboardImportLargerFile(t *testing.T) {
	d := openDashHub(t)
	b := d.browser(t)
	b.signIn(d.Admin.Key)
	token := b.csrf("/dash/imports")
	var csv strings.Builder
	csv.WriteString("member_id,points\n")
	const rows = 3000 // about 40 KiB
	for i := range rows {
		fmt.Fprintf(&csv, "imp-%05d,10\n", i)
	}
	a := b.postFile("/dash/imports", token, csv.String())
	if a.Status != http.StatusOK || !strings.Contains(a.Body, fmt.Sprintf(`id="imported">%d<`, rows)) {
		i := strings.Index(a.Body, `id="done"`)
		if i < 0 {
			i = 0
		}
		t.Errorf("a %d KiB CSV file through the dashboard: %d, want all %d rows imported; the result reads:\n%.1500s",
			csv.Len()>>10, a.Status, rows, a.Body[i:])
	}
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
