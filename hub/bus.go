// Events between the hub processes on one database: what each must tell the others so that
// agents connected to any of them hear of a change at once (a program change, a kill switch, a
// key rotation, a lease revoked, a member's balance), and so that a store has one live session
// across all of them (sessions.go).
//
// A transaction publishes its events (Tx.Publish); they are delivered when, and only if, it
// commits, to every process listening on the database (Store.Listen), in commit order. On
// PostgreSQL that is NOTIFY on the channel loyalty_changes and a connection of each process
// that LISTENs to it; on SQLite, which one process uses, it is a list of listeners in memory.
// Every hub process runs Hub.Start, which listens, and listens again whenever the connection
// fails: it may have missed events meanwhile, so it then tells every agent connected to it to
// pull (they pull only if the hub has something newer than they have) and checks every session
// it holds against the database.

package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Event kinds.
const (
	// EventReset is delivered by Store.Listen when it starts listening (again): events published
	// before then are lost to this listener, so anything may have changed.
	EventReset = "reset"
	// EventChange: a change agents must see committed, at change version Version.
	EventChange = "change"
	// EventSession: the session of Store that started at Started, from the agent at Remote, was
	// claimed by hub process Owner; any other session of the store, on any process, ends.
	EventSession = "session"
	// EventToken: Store's token was replaced (by hub process Owner): its live session ends,
	// wherever it is.
	EventToken = "token"
)

// Event is what a hub process tells the others on the same database (bus.go).
type Event struct {
	Kind    string
	Version int64 // EventChange
	Store   string
	Owner   string
	Remote  string
	Started time.Time // EventSession
}

// eventWire is an Event as it travels (a NOTIFY payload: at most 8000 bytes; store ids are at
// most 64 characters).
type eventWire struct {
	Kind    string `json:"k"`
	Version int64  `json:"v,omitempty"`
	Store   string `json:"s,omitempty"`
	Owner   string `json:"o,omitempty"`
	Remote  string `json:"r,omitempty"`
	Started int64  `json:"t,omitempty"` // unix nanoseconds
}

// Encode returns ev as text, for a Store that carries events as text (ParseEvent reads it).
func (ev Event) Encode() string {
	w := eventWire{Kind: ev.Kind, Version: ev.Version, Store: ev.Store, Owner: ev.Owner, Remote: ev.Remote}
	if !ev.Started.IsZero() {
		w.Started = ev.Started.UnixNano()
	}
	b, _ := json.Marshal(w) // strings and numbers only: it cannot fail
	return string(b)
}

// ParseEvent reads an event written by Event.Encode. A kind it does not know (from a newer hub
// version on the same database) is returned as it is; the hub ignores it.
func ParseEvent(s string) (Event, error) {
	var w eventWire
	if err := json.Unmarshal([]byte(s), &w); err != nil || w.Kind == "" {
		return Event{}, fmt.Errorf("not a hub event: %q", s)
	}
	ev := Event{Kind: w.Kind, Version: w.Version, Store: w.Store, Owner: w.Owner, Remote: w.Remote}
	if w.Started != 0 {
		ev.Started = time.Unix(0, w.Started).UTC()
	}
	return ev, nil
}

// Start starts, in goroutines of wg, what keeps this hub process in step with the others on its
// database until ctx ends: one listens for their events (changes agents must see, sessions taken
// over, tokens replaced), the other renews the store sessions this process holds every
// SessionTTL/3 (RenewSessions). It returns at once, the goroutines started. cmd/loyalty's hub
// starts it for as long as it serves.
func (h *Hub) Start(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { h.listen(ctx) })
	wg.Go(func() {
		t := time.NewTicker(h.sessionTTL() / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := h.RenewSessions(ctx); err != nil && ctx.Err() == nil {
					h.Logger.Warn("renew the stores' sync sessions this hub holds", slog.Any("err", err))
				}
			}
		}
	})
}

// listen listens for the database's events until ctx ends, again after every failure, waiting
// from 100ms up to 5s between attempts.
func (h *Hub) listen(ctx context.Context) {
	const first, most = 100 * time.Millisecond, 5 * time.Second
	wait := first
	for {
		listening := false
		err := h.Store.Listen(ctx, func(ev Event) {
			listening = listening || ev.Kind == EventReset
			h.event(ctx, ev)
		})
		if ctx.Err() != nil {
			return
		}
		if listening {
			wait = first
		}
		h.Logger.Warn("stopped hearing of changes and session takeovers from other hub processes; listening again",
			slog.Any("err", err), slog.Duration("in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, most)
	}
}

// event acts on one event from the database.
func (h *Hub) event(ctx context.Context, ev Event) {
	switch ev.Kind {
	case EventReset:
		// Events may have been lost while nothing listened: every connected agent is told the
		// newest version (it pulls if it has less), and every session held here is checked.
		var v int64
		err := h.Store.View(ctx, func(tx Tx) error {
			var err error
			v, err = tx.CurrentVersion(ctx)
			return err
		})
		if err == nil {
			h.changed(ctx, v, true)
		} else if ctx.Err() == nil {
			h.Logger.Warn("read the change version after listening again", slog.Any("err", err))
		}
		if err := h.RenewSessions(ctx); err != nil && ctx.Err() == nil {
			h.Logger.Warn("check the stores' sync sessions this hub holds", slog.Any("err", err))
		}
	case EventChange:
		h.changed(ctx, ev.Version, false)
	case EventSession:
		h.claimedElsewhere(ev)
	case EventToken:
		if ev.Owner != h.ID && h.OnTokenRotated != nil {
			h.OnTokenRotated(ev.Store)
		}
	}
}

// NoticeChanges reads the change version and tells OnChange of the changes it was not told of
// yet: those of other processes on the database (admin commands, other hub processes), which
// reach a hub on SQLite only this way. As for the hub's own commits, only the stores the changes
// concern are named (changed): a poll that named every store would have every agent of the
// chain pull after each poll while sales flow.
func (h *Hub) NoticeChanges(ctx context.Context) error {
	// What this process had told before the read: a commit of its own between the read and the
	// comparison tells a later version, which is no sign that the database went back.
	told := h.notified.Load()
	var v int64
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		v, err = tx.CurrentVersion(ctx)
		return err
	})
	if err != nil {
		return err
	}
	// Below what this process told already, the database went back: every store is told its
	// version, as when the hub starts listening again.
	h.changed(ctx, v, v < told)
	return nil
}

// changed tells OnChange that the change feed reached version v, unless it was told v or a
// later version already (by this process's own commit, or by the event of it); force tells it
// anyway, for every store. Otherwise it names the stores the versions since the last report
// concern, so that only their agents pull: a sale notifies the stores holding its member, not
// the whole chain. Every version up to v has committed when v has (the change feed's ordering,
// docs/PROTOCOL.md), so the range is complete when it is read.
func (h *Hub) changed(ctx context.Context, v int64, force bool) {
	var old int64
	for {
		old = h.notified.Load()
		if v <= old && !force {
			return
		}
		// Forced, v may be lower: the database's version after it went back (a failover to a
		// standby that lacked the newest commits), and what follows is reported from there.
		if v == old || h.notified.CompareAndSwap(old, v) {
			break
		}
	}
	if h.OnChange == nil {
		return
	}
	var stores []string // nil: everyone
	if !force && old > 0 && v > old {
		err := h.Store.View(ctx, func(tx Tx) error {
			var all bool
			var err error
			if stores, all, err = tx.ChangedStores(ctx, old, v, maxNotified); all {
				stores = nil
			} else if stores == nil {
				stores = []string{} // nobody's scope changed
			}
			return err
		})
		if err != nil && ctx.Err() == nil {
			h.Logger.Warn("find the stores a change concerns; notifying every store", slog.Any("err", err))
		}
		if err != nil {
			stores = nil
		}
	}
	h.OnChange(v, stores)
}

// maxNotified is how many stores changed tells by name; beyond, it tells every store.
const maxNotified = 1000
