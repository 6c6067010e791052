package e2e_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// TestImportExportRoundTrip imports a 10,000-row CSV file in the email,points format with some
// bad rows through the hub process's API, checks every good member's balance through the API,
// imports the same file again with nothing doubled, and exports the members back to CSV with
// the same balances.
func TestImportExportRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 1))
	w, _ := newWorld(t, nil)

	var file strings.Builder
	file.WriteString("email,points\n")
	want := map[string]int64{} // good rows: email → points
	bad := map[int]string{}    // bad rows: line → what the reason says
	for i := range 10_000 {
		line := i + 2
		email := fmt.Sprintf("Member%05d@Example.com", i)
		points := rng.Int64N(100_000)
		switch rng.IntN(100) {
		case 0:
			fmt.Fprintf(&file, "%s,\"%d,%03d\"\n", email, 1+points/1000, points%1000)
			bad[line] = "thousands separator"
		case 1:
			fmt.Fprintf(&file, "%s,%d,%03d\n", email, 1+points/1000, points%1000)
			bad[line] = "3 columns, the header 2"
		case 2:
			fmt.Fprintf(&file, "member%05d.example.com,%d\n", i, points)
			bad[line] = "not an email address"
		case 3:
			fmt.Fprintf(&file, "%s,-%d\n", email, 1+points)
			bad[line] = "below zero"
		default:
			fmt.Fprintf(&file, "%s,%d\n", email, points)
			want[strings.ToLower(email)] = points
		}
	}

	url := w.api() + "/v1/imports?import_id=legacy-2026&reason=" + "migrated%20from%20the%20old%20program"
	var rep hub.ImportReport
	if s, body := upload(t, url, w.key, file.String(), &rep); s != 200 {
		t.Fatalf("import: HTTP %d: %s", s, body)
	}
	if rep.Rows != 10_000 || rep.Imported != len(want) || rep.Created != len(want) || rep.Bad != len(bad) {
		t.Fatalf("import: %d rows, %d imported, %d created, %d bad; want 10000, %d, %d, %d", rep.Rows, rep.Imported, rep.Created, rep.Bad, len(want), len(want), len(bad))
	}
	for _, e := range rep.Errors {
		if !strings.Contains(e.Reason, bad[e.Line]) || bad[e.Line] == "" {
			t.Errorf("line %d: %q, want a reason with %q", e.Line, e.Reason, bad[e.Line])
		}
	}

	// Every good member's balance, through the API's member list, a page at a time.
	check := func(what string) {
		t.Helper()
		got := map[string]int64{}
		after := ""
		for {
			var page hub.MemberPage
			if s := call(t, "GET", w.api()+"/v1/members?limit=1000&after="+after, w.key, nil, &page); s != 200 {
				t.Fatalf("%s: list members: HTTP %d", what, s)
			}
			for _, m := range page.Members {
				got[m.Email] = m.Balance
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d members, want %d", what, len(got), len(want))
		}
		for email, points := range want {
			if got[email] != points {
				t.Fatalf("%s: %s has %d points, want %d", what, email, got[email], points)
			}
		}
	}
	check("after the import")

	// The same file again: nothing doubled; the bad rows come back as CSV on request.
	s, errorsCSV := upload(t, url+"&errors=csv", w.key, file.String(), nil)
	if s != 200 {
		t.Fatalf("re-import: HTTP %d: %s", s, errorsCSV)
	}
	recs, err := csv.NewReader(strings.NewReader(errorsCSV)).ReadAll()
	if err != nil || len(recs) != len(bad)+1 || strings.Join(recs[0], ",") != "line,code,reason" {
		t.Fatalf("errors CSV of %d records (want %d and a header), %v: %.300s", len(recs), len(bad), err, errorsCSV)
	}
	for _, r := range recs[1:] {
		if line, _ := strconv.Atoi(r[0]); bad[line] == "" || r[1] != loyalty.EINVALID {
			t.Fatalf("errors CSV row %v", r)
		}
	}
	check("after the same import again")

	// Exported back to CSV with the same balances.
	req, _ := http.NewRequest("GET", w.api()+"/v1/exports/members?format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("export: HTTP %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	cr := csv.NewReader(resp.Body)
	header, err := cr.Read()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, c := range header {
		col[c] = i
	}
	for _, c := range []string{"member_id", "email", "balance", "tier"} {
		if _, ok := col[c]; !ok {
			t.Fatalf("export header %v has no %s", header, c)
		}
	}
	n := 0
	for {
		r, err := cr.Read()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		if b, _ := strconv.ParseInt(r[col["balance"]], 10, 64); b != want[r[col["email"]]] {
			t.Fatalf("export: %s has %s points, want %d", r[col["email"]], r[col["balance"]], want[r[col["email"]]])
		}
	}
	if n != len(want) {
		t.Fatalf("export has %d members, want %d", n, len(want))
	}
}

// upload posts a CSV file and decodes a JSON answer into out, if given; it returns the status
// and the body.
func upload(t *testing.T, url, key, file string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader([]byte(file)))
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%v: %.300s", err, b)
		}
	}
	return resp.StatusCode, string(b)
}
