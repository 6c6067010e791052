package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// Sessions (hub.Tx): the sessions table of migration 0003. Deadlines are on the database
// server's clock, which every hub process shares whatever its own machine's clock says.

const sessionCols = `store, owner, remote, started, deadline`

// dbNow is the database server's clock in unix milliseconds.
const dbNow = `(extract(epoch FROM clock_timestamp()) * 1000)::bigint`

func scanSession(row pgx.Row) (hub.Session, error) {
	var s hub.Session
	var started, deadline int64
	err := row.Scan(&s.Store, &s.Owner, &s.Remote, &started, &deadline)
	s.Started, s.Deadline = time.Unix(0, started).UTC(), unixms.Time(deadline)
	return s, err
}

func (t *tx) ClaimSession(ctx context.Context, s hub.Session, ttl time.Duration) (hub.Session, error) {
	return scanSession(t.queryRow(ctx, `INSERT INTO sessions AS s (store, owner, remote, started, deadline)
		VALUES ($1, $2, $3, $4, `+dbNow+` + $5)
		ON CONFLICT (store) DO UPDATE SET owner = excluded.owner, remote = excluded.remote,
			started = GREATEST(excluded.started, s.started + 1), deadline = excluded.deadline
		RETURNING `+sessionCols,
		s.Store, s.Owner, s.Remote, s.Started.UnixNano(), ttl.Milliseconds()))
}

func (t *tx) sessions(ctx context.Context, q string, args ...any) ([]hub.Session, error) {
	var out []hub.Session
	err := t.each(ctx, q, args, func(rows pgx.Rows) error {
		s, err := scanSession(rows)
		out = append(out, s)
		return err
	})
	return out, err
}

func (t *tx) RenewSessions(ctx context.Context, owner string, seen time.Time, ttl time.Duration) ([]hub.Session, error) {
	out, err := t.sessions(ctx, `UPDATE sessions SET deadline = `+dbNow+` + $1 WHERE owner = $2 RETURNING `+sessionCols,
		ttl.Milliseconds(), owner)
	if err != nil || len(out) == 0 {
		return out, err
	}
	_, err = t.exec(ctx, `UPDATE store_health SET last_seen = $1 WHERE store IN (SELECT store FROM sessions WHERE owner = $2)`,
		unixms.Of(seen), owner)
	return out, err
}

func (t *tx) ReleaseSession(ctx context.Context, store, owner string, started time.Time) (bool, error) {
	tag, err := t.exec(ctx, `UPDATE sessions SET owner = '', deadline = 0 WHERE store = $1 AND owner = $2 AND started = $3`,
		store, owner, started.UnixNano())
	return tag.RowsAffected() > 0, err
}

func (t *tx) ExpireSessions(ctx context.Context) ([]hub.Session, error) {
	// The old rows, returned as they were: the UPDATE's RETURNING gives the new ones.
	out, err := t.sessions(ctx, `SELECT `+sessionCols+` FROM sessions WHERE owner <> '' AND deadline < `+dbNow+` FOR UPDATE`)
	if err != nil || len(out) == 0 {
		return out, err
	}
	stores := make([]string, len(out))
	for i, s := range out {
		stores[i] = s.Store
	}
	if _, err := t.exec(ctx, `UPDATE sessions SET owner = '', deadline = 0 WHERE store = ANY($1)`, stores); err != nil {
		return nil, err
	}
	_, err = t.exec(ctx, `UPDATE store_health SET connected = false WHERE store = ANY($1)`, stores)
	return out, err
}

func (t *tx) LiveSessions(ctx context.Context, stores []string) (map[string]bool, error) {
	out := make(map[string]bool, len(stores))
	for _, s := range stores {
		out[s] = false
	}
	if len(stores) == 0 {
		return out, nil
	}
	err := t.each(ctx, `SELECT store FROM sessions WHERE store = ANY($1) AND owner <> ''`, []any{stores}, func(rows pgx.Rows) error {
		var s string
		err := rows.Scan(&s)
		out[s] = true
		return err
	})
	return out, err
}

func (t *tx) Session(ctx context.Context, store string) (hub.Session, error) {
	s, err := scanSession(t.queryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE store = $1`, store))
	return s, notFound(err, "store %q has had no sync session", store)
}

// Events (hub.Tx.Publish, hub.Store.Listen): NOTIFY and LISTEN on one channel of the database.

// channel is the channel hub processes NOTIFY their events on and LISTEN to.
const channel = "loyalty_changes"

// Publish implements hub.Tx with pg_notify: PostgreSQL delivers the notification to every
// connection listening on the database when the transaction commits, and drops it if it does not.
func (t *tx) Publish(ctx context.Context, ev hub.Event) error {
	_, err := t.exec(ctx, `SELECT pg_notify($1, $2)`, channel, ev.Encode())
	return err
}

// listenCheck is how long Listen waits for a notification before it pings its connection: a
// connection lost without a word (a cable pulled, a firewall forgetting it) shows only when
// something is sent on it.
const listenCheck = 15 * time.Second

// Listen implements hub.Store: it takes a connection from the pool for itself (the pool opens
// another in its place), LISTENs on it, and delivers each notification until ctx ends or the
// connection fails; the connection is closed when it returns.
func (s *Store) Listen(ctx context.Context, fn func(hub.Event)) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: connect to %s to listen: %w", s.name, err)
	}
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	// Named, so that it is told apart from the pool's connections in pg_stat_activity.
	if _, err := conn.Exec(ctx, `SET application_name = 'loyalty hub events'`); err != nil {
		return fmt.Errorf("postgres: listen on %s: %w", s.name, err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+channel); err != nil {
		return fmt.Errorf("postgres: listen on %s: %w", s.name, err)
	}
	fn(hub.Event{Kind: hub.EventReset})
	for {
		wctx, cancel := context.WithTimeout(ctx, listenCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if ev, err := hub.ParseEvent(n.Payload); err == nil {
				fn(ev)
			}
		case errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, listenCheck)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("postgres: the listening connection to %s: %w", s.name, err)
			}
		default:
			return fmt.Errorf("postgres: the listening connection to %s: %w", s.name, err)
		}
	}
}
