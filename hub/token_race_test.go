package hub_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// rotatingHub is the hub as the sync server sees it, with a hook run right after a successful
// Authenticate: between a session's token check and its claim.
type rotatingHub struct {
	*hub.Hub
	after func(store string)
}

func (r rotatingHub) Authenticate(ctx context.Context, store, token string) error {
	err := r.Hub.Authenticate(ctx, store, token)
	if err == nil {
		r.after(store)
	}
	return err
}

// TestSessions_TokenReplacedWhileConnecting: an operator replaces a store's token (through
// another hub process) while a connection with the old token is between its check and its claim.
// The rotation's event finds no session to end yet; the claim must refuse the session, or it
// would take the new token for the session's own, and no renewal would ever end it.
func TestSessions_TokenReplacedWhileConnecting(t *testing.T) {
	ctx := context.Background()
	a := openHub(t)
	b := otherHub(t, a)
	createStore(t, a, "s9")
	old := tokenOf(t, "s9")
	log := slog.New(slog.DiscardHandler)
	rotated := false
	heard := make(chan string, 4)
	s := lsync.NewServer(rotatingHub{Hub: a, after: func(store string) {
		if rotated {
			return
		}
		rotated = true
		if _, err := b.RotateStoreToken(ctx, store); err != nil {
			t.Error(err)
			return
		}
		// a hears of the rotation before the session registers: its Disconnect finds nothing,
		// and only the claim can end the session.
		select {
		case <-heard:
		case <-time.After(biTimeout): // a safety net: turns a hang into a failure
			t.Error("hub a never heard of the rotation")
		}
	}})
	s.Logger = log
	a.OnChange = s.NotifyStores
	a.OnTokenRotated = func(store string) { s.Disconnect(store); heard <- store }
	up := &ws.Upgrader{}
	srv := &hub.Server{Hub: a, Sync: s, Addr: "127.0.0.1:0", AdminKey: biAdminKey, Logger: log, Upgrade: up.Upgrade}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	run(t, a)

	d := websocket.Dialer{HandshakeTimeout: biTimeout}
	c, resp, err := d.Dial(srv.SyncURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Cleanup(func() { c.Close() })
	wsSend(t, c, wsHello("s9", old))
	wsMustNext(t, c, lsync.TypeWelcome) // sent before the claim
	m, err := wsNext(t, c)
	if err != nil {
		t.Fatalf("the connection ended (%v) without saying why", err)
	}
	if m.Type != lsync.TypeError || m.Error.Code != loyalty.EUNAUTHORIZED {
		t.Fatalf("after the welcome: %+v, want an EUNAUTHORIZED error", m)
	}
	if _, err := wsNext(t, c); err == nil {
		t.Error("the session goes on after its token was replaced")
	}
	if !rotated {
		t.Fatal("the token was never replaced")
	}
	if err := a.Store.View(ctx, func(tx hub.Tx) error {
		row, err := tx.Session(ctx, "s9")
		if err == nil && row.Owner != "" {
			t.Errorf("s9's session row is held by %q after a refused claim", row.Owner)
		} else if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			err = nil
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
