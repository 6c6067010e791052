package postgres

import (
	"context"
	"errors"
	"fmt"
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
// database restarting, say). A serving hub process uses Serve, which watches for that.
func (s *Store) Hold(ctx context.Context, exclusive bool) (release func(), err error) {
	c, err := s.takeLock(ctx, exclusive)
	if err != nil {
		return nil, err
	}
	return func() { closeConn(c) }, nil
}

// takeLock takes the serving lock on a connection of its own, taken out of the pool.
func (s *Store) takeLock(ctx context.Context, exclusive bool) (*pgx.Conn, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	q := `SELECT pg_try_advisory_lock_shared($1)`
	if exclusive {
		q = `SELECT pg_try_advisory_lock($1)`
	}
	// The connection leaves the pool: no transaction of the pool's may run on it meanwhile, and
	// closing the store does not wait for it. Closing it gives the lock back, with its session.
	c := conn.Hijack()
	var ok bool
	if err := c.QueryRow(ctx, q, int64(servingLock)).Scan(&ok); err != nil || !ok {
		closeConn(c) // granted or not (a query cancelled late may have been), the lock goes with it
		if err == nil {
			err = ErrServing
		}
		return nil, err
	}
	return c, nil
}

// Serving is a hub process's shared hold on the serving lock (Serve).
type Serving struct {
	lost chan error
	stop chan struct{}
	done chan struct{}
}

// Serve takes the serving lock shared, for a hub process that serves, and keeps it: every
// interval it checks that the connection holding it is alive. A connection that broke (the
// database restarted, a proxy dropped it) took the lock with its session; Serve tells warn and
// takes the lock again on a new connection, trying again every interval while the database
// cannot be reached. If a restore holds the lock by then, Lost reports ErrServing: the process
// must stop serving, since the database it started on is being replaced. Like Hold, it returns
// ErrServing at once if a restore holds the lock.
func (s *Store) Serve(ctx context.Context, interval time.Duration, warn func(error)) (*Serving, error) {
	c, err := s.takeLock(ctx, false)
	if err != nil {
		return nil, err
	}
	v := &Serving{lost: make(chan error, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go v.watch(s, c, interval, warn)
	return v, nil
}

// Lost delivers ErrServing once if the lock was lost to a restore, and is closed once Close has
// given the lock back.
func (v *Serving) Lost() <-chan error { return v.lost }

// Close gives the lock back and stops watching it.
func (v *Serving) Close() {
	close(v.stop)
	<-v.done
}

func (v *Serving) watch(s *Store, c *pgx.Conn, interval time.Duration, warn func(error)) {
	defer close(v.done)
	defer close(v.lost)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-v.stop:
			if c != nil {
				closeConn(c)
			}
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(interval, time.Second))
		if c != nil {
			if err := c.Ping(ctx); err != nil {
				closeConn(c) // whatever is left of its session, and the lock if it still held it
				c = nil
				warn(fmt.Errorf("the connection holding the serving lock broke (%w); taking the lock again", err))
			}
		}
		if c == nil {
			var err error
			switch c, err = s.takeLock(ctx, false); {
			case errors.Is(err, ErrServing):
				cancel()
				v.lost <- err
				<-v.stop
				return
			case err != nil:
				warn(fmt.Errorf("taking the serving lock again: %w (trying again in %s)", err, interval))
			}
		}
		cancel()
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Close(ctx)
}
