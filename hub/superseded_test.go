package hub_test

import (
	"context"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// warnRecorder is a slog.Handler keeping the hub's warnings, for tests that check what it logged.
type warnRecorder struct {
	mu    gosync.Mutex
	warns []slog.Record
}

func (l *warnRecorder) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn
}
func (l *warnRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *warnRecorder) WithGroup(string) slog.Handler      { return l }
func (l *warnRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warns = append(l.warns, r.Clone())
	return nil
}

// attrs returns the attributes of the warnings whose message contains msg.
func (l *warnRecorder) attrs(msg string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.warns {
		if !strings.Contains(r.Message, msg) {
			continue
		}
		m := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
		out = append(out, m)
	}
	return out
}

// TestSecondConnectionForStoreIsExplained: two websocket sessions for one store, as two agents
// sharing a token open them. When the second authenticates, the hub warns with the store, both
// agents' addresses and a hint, and tells the first, before closing it, that another connection
// (named by its address) took over; the second session carries on.
func TestSecondConnectionForStoreIsExplained(t *testing.T) {
	ctx := context.Background()
	th := MustOpenBIHub(t)
	_, token, err := th.Hub.CreateStore(ctx, "s1", "")
	if err != nil {
		t.Fatal(err)
	}
	logs := &warnRecorder{}
	syncSrv := lsync.NewServer(th.Hub)
	syncSrv.Logger = slog.New(logs)
	up := &ws.Upgrader{}
	srv := &hub.Server{Hub: th.Hub, Sync: syncSrv, Addr: "127.0.0.1:0", AdminKey: biAdminKey, Logger: slog.New(slog.DiscardHandler), Upgrade: up.Upgrade}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	open := func() *websocket.Conn {
		t.Helper()
		d := websocket.Dialer{HandshakeTimeout: biTimeout}
		c, resp, err := d.Dial(srv.SyncURL(), nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		resp.Body.Close()
		t.Cleanup(func() { c.Close() })
		wsSend(t, c, wsHello("s1", token))
		wsMustNext(t, c, lsync.TypeWelcome)
		return c
	}
	first := open()
	srvWait(t, "the first session registered", func() (bool, string) {
		return syncSrv.Sessions() == 1, "no session"
	})
	second := open()
	firstAddr, secondAddr := first.LocalAddr().String(), second.LocalAddr().String()

	m, err := wsNext(t, first)
	if err != nil {
		t.Fatalf("the hub closed the first session (%v) without saying why", err)
	}
	if m.Type != lsync.TypeError || m.Error.Code != loyalty.ESUPERSEDED {
		t.Fatalf("first session: got %s %+v, want an error with the code %s", m.Type, m.Error, loyalty.ESUPERSEDED)
	}
	for _, want := range []string{"another connection for store s1", secondAddr, "stop one, or give each its own store id"} {
		if !strings.Contains(m.Error.Message, want) {
			t.Errorf("the error %q does not say %q", m.Error.Message, want)
		}
	}
	if m, err := wsNext(t, first); err == nil {
		t.Errorf("after %s the hub sent a %s message; want the session closed", loyalty.ESUPERSEDED, m.Type)
	}
	wsExpectAlive(t, second)

	warns := logs.attrs("replaced its live sync session")
	if len(warns) != 1 {
		t.Fatalf("hub warnings about a replaced session: %v, want one", warns)
	}
	w := warns[0]
	if w["store"] != "s1" || w["old_remote"] != firstAddr || w["new_remote"] != secondAddr {
		t.Errorf("hub warning %v: want store s1, old_remote %s, new_remote %s", w, firstAddr, secondAddr)
	}
	if h := w["hint"]; !strings.Contains(h, "two agents may be running with store s1's token; stop one, or give each its own store id") {
		t.Errorf("hub warning hint %q: want it to say two agents may share store s1's token and what to do", h)
	}
}
