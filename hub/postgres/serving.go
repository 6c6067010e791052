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
	take, give := `SELECT pg_try_advisory_lock_shared($1)`, `SELECT pg_advisory_unlock_shared($1)`
	if exclusive {
		take, give = `SELECT pg_try_advisory_lock($1)`, `SELECT pg_advisory_unlock($1)`
	}
	var ok bool
	if err := conn.QueryRow(ctx, take, int64(servingLock)).Scan(&ok); err != nil || !ok {
		conn.Release()
		if err == nil {
			err = ErrServing
		}
		return nil, err
	}
	// The connection leaves the pool: no transaction of the pool's may run on it meanwhile, and
	// closing the store does not wait for it.
	c := conn.Hijack()
	return func() { giveBack(c, give) }, nil
}

// giveBack gives the serving lock back and closes its connection, which would give it back
// anyway.
func giveBack(c *pgx.Conn, give string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Exec(ctx, give, int64(servingLock))
	c.Close(ctx)
}
