package sync_test

import (
	"context"
	"testing"

	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// A notify that comes while a pull is on its way costs another pull only if the pull's answer
// does not reach the change it announced: in a reconnect storm every store hears of its own push
// while it pulls, and a pull per notify would double the hub's reads.
func TestClient_NotifyCoveredByThePullInFlight(t *testing.T) {
	c, h := pipe()
	d := oneDialer{conn: make(chan lsync.Conn, 1)}
	d.conn <- c
	a := newAgentFake(0)
	cl := lsync.NewClient("pipe://", "s1", "secret", d, a)
	cl.Logger = quiet
	run(t, cl)
	if m := rvRead(t, h); m.Type != lsync.TypeHello {
		t.Fatalf("got %s, want hello", m.Type)
	}
	rvSend(t, h, &lsync.Message{Type: lsync.TypeWelcome, Welcome: &lsync.Welcome{Version: 2, Store: "s1", HeartbeatMillis: 3_600_000}})
	pulled := func(cursor int64) uint64 {
		t.Helper()
		m := rvRead(t, h)
		if m.Type != lsync.TypePull || m.Pull.Cursor != cursor {
			t.Fatalf("the hub got %s %+v, want a pull from cursor %d", m.Type, m.Pull, cursor)
		}
		return m.ID
	}
	answer := func(id uint64, cursor int64) {
		rvSend(t, h, &lsync.Message{Type: lsync.TypeChanges, ID: id, Changes: &lsync.Changes{Cursor: cursor}})
	}
	notify := func(cursor int64) {
		rvSend(t, h, &lsync.Message{Type: lsync.TypeNotify, Notify: &lsync.Notify{Cursor: cursor}})
	}
	// nothingMore checks that the client, having applied the answer up to cursor, sends no other
	// pull: the next thing the hub hears is a lookup asked for after that. (The session sends the
	// pull an answer calls for before it takes another call.)
	nothingMore := func(what string, cursor int64) {
		t.Helper()
		eventually(t, "the answer applied", func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.cursor == cursor
		})
		go cl.Subscribe(context.Background(), "m9")
		if m := rvRead(t, h); m.Type != lsync.TypeSubscribe {
			t.Fatalf("%s: the hub got %s, want no pull before the lookup", what, m.Type)
		}
	}

	id := pulled(0)
	notify(5)     // while the first pull is on its way
	answer(id, 7) // which reaches version 7
	nothingMore("a notify of version 5, answered up to 7", 7)

	notify(9)
	id = pulled(7)
	notify(12)     // while that pull is on its way
	answer(id, 10) // which does not reach 12
	id = pulled(10)
	answer(id, 12)
	nothingMore("a notify of version 12, answered up to 12", 12)

	// A notify of a version no answer reaches (a hub process ahead of its database) costs one
	// pull more, not a pull after every answer.
	notify(13)
	id = pulled(12)
	notify(99)
	answer(id, 13)
	id = pulled(13)
	answer(id, 14)
	nothingMore("a notify of version 99, answered up to 14 by a pull sent after it", 14)
}
