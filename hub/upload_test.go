package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestImport_UploadDeadlines: an import's file is read under an idle deadline, http.read_timeout
// for each read rather than from the request's start. A file that keeps arriving is read whole
// however long it takes; one that stops arriving is cut off with a coded answer that says what
// to do, and the rows of its whole batches stay imported.
func TestImport_UploadDeadlines(t *testing.T) {
	h := openHub(t)
	const idle = time.Second
	reads := make(chan struct{}, 1)
	srv := &hub.Server{Hub: h, Sync: lsync.NewServer(h), Addr: "127.0.0.1:0", AdminKey: akAdminKey, Logger: slog.New(slog.DiscardHandler),
		Limits: hub.Limits{ReadHeaderTimeout: idle, ReadTimeout: idle}}
	srv.SetUploadHook(func() {
		select {
		case reads <- struct{}{}:
		default:
		}
	})
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	type answer struct {
		status int
		body   []byte
		err    error
	}
	// upload posts what is written to the returned pipe as an import's file.
	upload := func(importID string) (*io.PipeWriter, chan answer) {
		pr, pw := io.Pipe()
		out := make(chan answer, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "POST", "http://"+srv.ListenAddr()+"/v1/imports?reason=migrated&import_id="+importID, pr)
			if err != nil {
				out <- answer{err: err}
				return
			}
			req.Header.Set("Content-Type", "text/csv")
			req.Header.Set("Authorization", "Bearer "+akAdminKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			out <- answer{resp.StatusCode, b, err}
		}()
		return pw, out
	}
	rows := func(prefix string, n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s%d@example.com,%d\n", prefix, i, i+1)
		}
		return b.String()
	}

	// A steady file that takes longer than the timeout in all: each part is sent once the server
	// has read the one before, so that no read waits long, until the upload has lasted twice the
	// timeout.
	pw, done := upload("steady")
	start := time.Now()
	sent := 0
	for part := 0; part == 0 || time.Since(start) < 2*idle; part++ {
		head := ""
		if part == 0 {
			head = "email,points\n"
		}
		if _, err := io.WriteString(pw, head+rows(fmt.Sprint("p", part, "-"), 5)); err != nil {
			t.Fatalf("part %d: %v", part, err)
		}
		sent += 5
		select {
		case <-reads: // the server read it, or part of it
		case a := <-done:
			t.Fatalf("the server answered after %s, before the file's end: %d %s %v", time.Since(start).Round(time.Millisecond), a.status, a.body, a.err)
		}
	}
	pw.Close()
	a := <-done
	if a.err != nil || a.status != http.StatusOK {
		t.Fatalf("a steady upload of %s: %d %s %v; want it imported", time.Since(start).Round(time.Millisecond), a.status, a.body, a.err)
	}
	var rep hub.ImportReport
	if err := json.Unmarshal(a.body, &rep); err != nil || rep.Imported != sent {
		t.Fatalf("report %s (%v): want %d rows imported", a.body, err, sent)
	}

	// A file that stops arriving: the server answers once nothing came for the timeout.
	pw, done = upload("stalled")
	if _, err := io.WriteString(pw, "email,points\n"+rows("d", 10)); err != nil {
		t.Fatal(err)
	}
	a = <-done // the pipe stays open: the client sends nothing more
	pw.Close()
	var e struct{ Error loyalty.Error }
	if a.err != nil || a.status != http.StatusRequestTimeout || json.Unmarshal(a.body, &e) != nil || e.Error.Code != loyalty.EINVALID ||
		!strings.Contains(e.Error.Message, "stopped arriving") || !strings.Contains(e.Error.Message, "same import id") {
		t.Fatalf("a stalled upload: %d %s %v; want 408 EINVALID saying it stopped and to send it again", a.status, a.body, a.err)
	}
}
