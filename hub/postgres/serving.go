package postgres

import (
	"context"
	"errors"
	"log/slog"
	"sync"
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

// ErrRestored is what Serving.Lost delivers when the database was marked restored (its epoch
// changed) while the hub process could not reach it.
var ErrRestored = errors.New("the database was restored")

// Hold takes the database's serving lock (servingLock): shared for a hub process that serves,
// exclusive for a restore. It does not wait: it returns ErrServing if the lock is held the
// other way. The lock is held by a connection of its own, apart from the pools, until release,
// which gives it back; a connection that breaks meanwhile gives it back too, with its session
// (the database restarting, say). A serving hub process uses Serve, which watches for that.
func (s *Store) Hold(ctx context.Context, exclusive bool) (release func(), err error) {
	c, err := s.takeLock(ctx, exclusive)
	if err != nil {
		return nil, err
	}
	return func() { closeConn(c) }, nil
}

// takeLock takes the serving lock on a new connection of its own, made with the pool's settings
// but not taken from it: a pool with every connection busy does not keep the lock from being
// taken, and no transaction of the pool's ever runs on it. Closing it gives the lock back, with
// its session.
func (s *Store) takeLock(ctx context.Context, exclusive bool) (*pgx.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	q := `SELECT pg_try_advisory_lock_shared($1)`
	if exclusive {
		q = `SELECT pg_try_advisory_lock($1)`
	}
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

// epochOn reads the database's epoch (Tx.Epoch) on c.
func epochOn(ctx context.Context, c *pgx.Conn) (int64, error) {
	var e int64
	err := c.QueryRow(ctx, `SELECT value FROM counters WHERE name = 'epoch'`).Scan(&e)
	return e, err
}

// Serving is a hub process's shared hold on the serving lock (Serve).
type Serving struct {
	lost  chan error
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

// Serve takes the serving lock shared, for a hub process that serves, and keeps it: every
// interval it checks that the connection holding it is alive. A connection that broke (the
// database restarted, a proxy dropped it) took the lock with its session; Serve logs it and
// takes the lock again on a new connection, trying again every interval while the database
// cannot be reached (a warning on the first failure, then once a minute or when the error
// changes). Lost then reports ErrServing if a restore holds the lock, or ErrRestored if the
// database's epoch changed meanwhile (a restore came and went while this process could not
// reach the database): either way the process must stop serving, since what it knows of the
// database no longer holds. Like Hold, Serve returns ErrServing at once if a restore holds the
// lock.
func (s *Store) Serve(ctx context.Context, interval time.Duration, log *slog.Logger) (*Serving, error) {
	c, err := s.takeLock(ctx, false)
	if err != nil {
		return nil, err
	}
	epoch, err := epochOn(ctx, c)
	if err != nil {
		closeConn(c)
		return nil, err
	}
	v := &Serving{lost: make(chan error, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go v.watch(s, c, epoch, interval, log)
	return v, nil
}

// Lost delivers ErrServing or ErrRestored once if the lock was lost to a restore, and is closed
// once Close has given the lock back.
func (v *Serving) Lost() <-chan error { return v.lost }

// Close gives the lock back and stops watching it. It may be called more than once.
func (v *Serving) Close() {
	v.close.Do(func() { close(v.stop) })
	<-v.done
}

// lockTimeout bounds each check of the lock's connection, and each try to take the lock again:
// a server slow to answer under load is not taken for a broken connection.
const lockTimeout = 10 * time.Second

func (v *Serving) watch(s *Store, c *pgx.Conn, epoch int64, interval time.Duration, log *slog.Logger) {
	defer close(v.done)
	defer close(v.lost)
	t := time.NewTicker(interval)
	defer t.Stop()
	var said string      // the last warning logged
	var saidAt time.Time // when
	warn := func(msg string, err error) {
		if line := msg + ": " + err.Error(); line != said || time.Since(saidAt) >= time.Minute {
			log.Warn(msg, slog.Any("err", err))
			said, saidAt = line, time.Now()
		}
	}
	for {
		select {
		case <-v.stop:
			if c != nil {
				closeConn(c)
			}
			return
		case <-t.C:
		}
		if c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
			err := c.Ping(ctx)
			cancel()
			if err == nil {
				continue
			}
			closeConn(c) // whatever is left of its session, and the lock if it still held it
			c = nil
			warn("the connection holding the serving lock broke; taking the lock again", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
		c2, err := s.takeLock(ctx, false)
		var now int64
		if err == nil {
			if now, err = epochOn(ctx, c2); err != nil {
				closeConn(c2)
			}
		}
		cancel()
		switch {
		case errors.Is(err, ErrServing):
			v.lost <- err
		case err == nil && now != epoch:
			closeConn(c2)
			v.lost <- ErrRestored
		case err != nil:
			warn("taking the serving lock again", err)
			continue
		default:
			c, said = c2, ""
			log.Info("the serving lock is held again")
			continue
		}
		<-v.stop
		return
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Given back before the connection closes: the server ends a closed connection's session a
	// moment later, and a restore (or a hub) trying the lock meanwhile would find it still held.
	// On a broken connection this fails, and the session's end gives the lock back.
	uctx, ucancel := context.WithTimeout(ctx, 2*time.Second)
	c.Exec(uctx, `SELECT pg_advisory_unlock_all()`)
	ucancel()
	c.Close(ctx)
}
