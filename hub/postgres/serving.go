package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// servingLock is the advisory lock that keeps `loyalty restore` and serving hub processes apart:
// every hub process serving on the database holds it shared, a restore holds it exclusively. It
// is what the file lock beside a SQLite database (hub.db.lock) is to a SQLite hub.
const servingLock = 0x6c6f79616c7472 // "loyaltr"

// ErrServing is Hold's error when the lock is held the other way: exclusively by a restore, or
// shared by a serving hub process (when Hold asked for it exclusively).
var ErrServing = errors.New("the database's serving lock is held")

// Hold takes the database's serving lock (servingLock): shared for a hub process that serves,
// exclusive for a restore. It does not wait: it returns ErrServing if the lock is held the
// other way. The lock is held by a connection kept apart from the pools until release, which
// gives it back; a connection that breaks meanwhile gives it back too, with its session (the
// database restarting, say), so the lock is a guard for operators' mistakes, not a lease.
func (s *Store) Hold(ctx context.Context, exclusive bool) (release func(), err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	take := `SELECT pg_try_advisory_lock_shared($1)`
	if exclusive {
		take = `SELECT pg_try_advisory_lock($1)`
	}
	// The connection leaves the pool: no transaction of the pool's may run on it meanwhile, and
	// closing the store does not wait for it. Closing it gives the lock back, with its session.
	c := conn.Hijack()
	var ok bool
	if err := c.QueryRow(ctx, take, int64(servingLock)).Scan(&ok); err != nil || !ok {
		closeConn(c) // granted or not (a query cancelled late may have been), the lock goes with it
		if err == nil {
			err = ErrServing
		}
		return nil, err
	}
	return func() { closeConn(c) }, nil
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Close(ctx)
}
