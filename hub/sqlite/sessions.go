package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Sessions (hub.Tx): the sessions table of migration 0019. Deadlines are on this machine's clock
// (time.Now), the database's.

const sessionCols = `store, owner, remote, started, deadline`

func scanSession(row interface{ Scan(...any) error }) (hub.Session, error) {
	var s hub.Session
	var started, deadline int64
	err := row.Scan(&s.Store, &s.Owner, &s.Remote, &started, &deadline)
	s.Started, s.Deadline = time.Unix(0, started).UTC(), unixms.Time(deadline)
	return s, err
}

func (t *tx) ClaimSession(ctx context.Context, s hub.Session, ttl time.Duration) (hub.Session, error) {
	row := t.QueryRowContext(ctx, `INSERT INTO sessions (store, owner, remote, started, deadline) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (store) DO UPDATE SET owner = excluded.owner, remote = excluded.remote,
			started = MAX(excluded.started, sessions.started + 1), deadline = excluded.deadline
		RETURNING `+sessionCols,
		s.Store, s.Owner, s.Remote, s.Started.UnixNano(), unixms.Of(time.Now().Add(ttl)))
	return scanSession(row)
}

func (t *tx) sessions(ctx context.Context, q string, args ...any) ([]hub.Session, error) {
	rows, err := t.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hub.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (t *tx) RenewSessions(ctx context.Context, owner string, seen time.Time, ttl time.Duration) ([]hub.Session, error) {
	out, err := t.sessions(ctx, `UPDATE sessions SET deadline = ? WHERE owner = ? RETURNING `+sessionCols,
		unixms.Of(time.Now().Add(ttl)), owner)
	if err != nil || len(out) == 0 {
		return out, err
	}
	_, err = t.ExecContext(ctx, `UPDATE stores SET last_seen = ? WHERE id IN (SELECT store FROM sessions WHERE owner = ?)`,
		unixms.Of(seen), owner)
	return out, err
}

func (t *tx) ReleaseSession(ctx context.Context, store, owner string, started time.Time) (bool, error) {
	res, err := t.ExecContext(ctx, `UPDATE sessions SET owner = '', deadline = 0 WHERE store = ? AND owner = ? AND started = ?`,
		store, owner, started.UnixNano())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (t *tx) ExpireSessions(ctx context.Context) ([]hub.Session, error) {
	now := unixms.Of(time.Now())
	out, err := t.sessions(ctx, `SELECT `+sessionCols+` FROM sessions WHERE owner <> '' AND deadline < ?`, now)
	if err != nil || len(out) == 0 {
		return out, err
	}
	for _, s := range out {
		if _, err := t.ExecContext(ctx, `UPDATE sessions SET owner = '', deadline = 0 WHERE store = ? AND started = ?`,
			s.Store, s.Started.UnixNano()); err != nil {
			return nil, err
		}
		if _, err := t.ExecContext(ctx, `UPDATE stores SET connected = 0 WHERE id = ?`, s.Store); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *tx) LiveSessions(ctx context.Context, stores []string) (map[string]bool, error) {
	out := make(map[string]bool)
	if len(stores) == 0 {
		return out, nil
	}
	list, err := json.Marshal(stores)
	if err != nil {
		return nil, err
	}
	for _, s := range stores { // a store in a list many times is asked for once
		out[s] = false
	}
	live, err := t.Strings(ctx, `SELECT store FROM sessions WHERE store IN (SELECT value FROM json_each(?)) AND owner <> ''`, string(list))
	for _, s := range live {
		out[s] = true
	}
	return out, err
}

func (t *tx) Session(ctx context.Context, store string) (hub.Session, error) {
	s, err := scanSession(t.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE store = ?`, store))
	if errors.Is(err, sql.ErrNoRows) {
		return s, loyalty.Errorf(loyalty.ENOTFOUND, "store %q has had no sync session", store)
	}
	return s, err
}

// Events (hub.Tx.Publish, hub.Store.Listen): one process uses a SQLite hub database, so its
// events go from the committing transaction straight to the listeners in memory.

// Publish implements hub.Tx: ev goes to the store's listeners after the commit.
func (t *tx) Publish(ctx context.Context, ev hub.Event) error {
	if t.bus == nil {
		return loyalty.Errorf(loyalty.EINVALID, "events are published by write transactions")
	}
	t.AfterCommit(func() { t.bus.publish(ev) })
	return nil
}

// bus is the store's listeners.
type bus struct {
	mu        sync.Mutex
	listeners map[*listener]struct{}
}

// listener is one Listen call. Events wait in its queue; one that finds the queue full is
// dropped and the listener told that it fell behind (behind), so that it listens again and
// assumes anything changed, as after a lost connection on PostgreSQL.
type listener struct {
	events chan hub.Event
	behind chan struct{}
}

// listenQueue is how many events may wait for a listener.
const listenQueue = 1024

func (b *bus) publish(ev hub.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for l := range b.listeners {
		select {
		case l.events <- ev:
		default:
			select {
			case l.behind <- struct{}{}:
			default:
			}
		}
	}
}

// Listen implements hub.Store.
func (s *Store) Listen(ctx context.Context, fn func(hub.Event)) error {
	l := &listener{events: make(chan hub.Event, listenQueue), behind: make(chan struct{}, 1)}
	s.bus.mu.Lock()
	if s.bus.listeners == nil {
		s.bus.listeners = map[*listener]struct{}{}
	}
	s.bus.listeners[l] = struct{}{}
	s.bus.mu.Unlock()
	defer func() {
		s.bus.mu.Lock()
		delete(s.bus.listeners, l)
		s.bus.mu.Unlock()
	}()
	fn(hub.Event{Kind: hub.EventReset})
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-l.events:
			fn(ev)
		case <-l.behind:
			return errors.New("sqlite: the listener fell behind the hub's events")
		}
	}
}
