package ws_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// serve starts a websocket server on 127.0.0.1 whose connections go to accepted.
func serve(t *testing.T, opts ws.Options) (url string, accepted chan lsync.Conn) {
	t.Helper()
	accepted = make(chan lsync.Conn, 1)
	up := &ws.Upgrader{Options: opts}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		accepted <- c
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), accepted
}

func dial(t *testing.T, url string, opts ws.Options) lsync.Conn {
	t.Helper()
	c, err := (&ws.Dialer{Options: opts}).Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTripInOrder(t *testing.T) {
	url, accepted := serve(t, ws.Options{})
	c := dial(t, url, ws.Options{})
	s := <-accepted
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 50 {
		if err := c.Write(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		b, err := s.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, []byte{byte(i)}) {
			t.Fatalf("message %d = %v: out of order", i, b)
		}
	}
}

func TestOversizedMessageEndsConnection(t *testing.T) {
	url, accepted := serve(t, ws.Options{ReadLimit: 1024})
	c := dial(t, url, ws.Options{})
	s := <-accepted
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, bytes.Repeat([]byte("x"), 4096)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Read(ctx)
	if code := loyalty.ErrorCode(err); code != loyalty.ETOOLARGE {
		t.Fatalf("server read: %v, want ETOOLARGE", err)
	}
	// The sender learns why: the close frame says the message was too big.
	_, err = c.Read(ctx)
	if code := loyalty.ErrorCode(err); code != loyalty.ETOOLARGE {
		t.Fatalf("client read: %v, want ETOOLARGE", err)
	}
}

// TestSlowPeerIsDisconnected: a peer that never reads fills the send queue; the writer gives up
// on it instead of blocking the session forever.
func TestSlowPeerIsDisconnected(t *testing.T) {
	url, accepted := serve(t, ws.Options{Queue: 4, WriteTimeout: 200 * time.Millisecond})
	dial(t, url, ws.Options{}) // never reads
	s := <-accepted
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := bytes.Repeat([]byte("y"), 256<<10)
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = s.Write(ctx, big)
	}
	if err == nil {
		t.Fatal("writes to a peer that never reads never failed")
	}
}

func TestCloseIsIdempotentAndEndsRead(t *testing.T) {
	url, accepted := serve(t, ws.Options{})
	c := dial(t, url, ws.Options{})
	s := <-accepted
	s.Close()
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Read(ctx); err == nil {
		t.Fatal("read from a closed peer succeeded")
	}
	if err := s.Write(ctx, []byte("late")); err == nil {
		t.Fatal("write after close succeeded")
	}
}

// TestPingKeepsIdleConnectionAlive: with no data either way, pings and pongs keep extending
// both sides' read deadlines. Time passing is the scenario; the test does not sleep for it but
// waits until each side has heard its peer later than two read deadlines after both were set,
// which it can only do if pings extended them (a side whose deadline expired hears nothing more).
// The hub's end reads only inside Read, on its caller's goroutine: like the hub's session, the
// test keeps one Read waiting on it.
func TestPingKeepsIdleConnectionAlive(t *testing.T) {
	const interval = 100 * time.Millisecond
	const silence = interval * 5 / 2 // each side's read deadline after the last frame it heard
	opts := ws.Options{PingInterval: interval}
	url, accepted := serve(t, opts)
	c := dial(t, url, opts)
	s := <-accepted
	defer s.Close()
	set := time.Now() // both connections exist: their first read deadlines are before set+silence
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type read struct {
		b   []byte
		err error
	}
	reads := make(chan read, 1)
	go func() {
		b, err := s.Read(ctx)
		reads <- read{b, err}
	}()
	for name, conn := range map[string]lsync.Conn{"client": c, "server": s} {
		heard := conn.(lsync.Hearer)
		waitUntil(t, name+" to hear its peer after two read deadlines", func() (bool, error) {
			return heard.LastHeard().After(set.Add(2 * silence)), conn.(interface{ Err() error }).Err()
		})
	}
	if err := c.Write(ctx, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if r := <-reads; r.err != nil || string(r.b) != "still here" {
		t.Fatalf("idle connection died: %q, %v", r.b, r.err)
	}
}

// waitUntil polls cond until it holds. It fails the test at once if cond reports an error, and
// after 10 seconds (a hang) otherwise. The poll interval only paces the checks.
func waitUntil(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond) // paces the checks; nothing waits for time itself
	defer tick.Stop()
	for {
		ok, err := cond()
		switch {
		case ok:
			return
		case err != nil:
			t.Fatalf("waiting for %s: %v", what, err)
		case time.Now().After(deadline):
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// TestCloseFlushesQueuedMessages: a message written just before Close (the hub's error frame
// refusing a session) still reaches the peer.
func TestCloseFlushesQueuedMessages(t *testing.T) {
	url, accepted := serve(t, ws.Options{})
	c := dial(t, url, ws.Options{})
	s := <-accepted
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 20 {
		if err := s.Write(ctx, []byte(`{"type":"error"}`)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		b, err := c.Read(ctx)
		if err != nil || string(b) != `{"type":"error"}` {
			t.Fatalf("last message before close: %q, %v", b, err)
		}
		c.Close()
		c = dial(t, url, ws.Options{})
		s = <-accepted
	}
	s.Close()
}

// TestHubReadEndsWithItsContext: the hub's end reads on its caller's goroutine; a Read whose
// context is done returns at once, and the connection can still say why it ends (the hub's
// ESUPERSEDED goodbye) before it closes.
func TestHubReadEndsWithItsContext(t *testing.T) {
	url, accepted := serve(t, ws.Options{})
	c := dial(t, url, ws.Options{})
	s := <-accepted
	defer s.Close()
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(rctx)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Read: %v, want its context's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return when its context was done")
	}
	ctx, cancelWait := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelWait()
	if err := s.Write(ctx, []byte("goodbye")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if b, err := c.Read(ctx); err != nil || string(b) != "goodbye" {
		t.Fatalf("client read %q, %v, want the goodbye", b, err)
	}
	if _, err := c.Read(ctx); err == nil {
		t.Fatal("the connection stayed open after Close")
	}
}
