package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Group commit. In synchronous FULL every commit waits for an fsync, and the single writer
// connection commits one transaction at a time, so concurrent callers of Update each wait for an
// fsync of their own, in turn: the commits, not the work, bound the rate. With group commit the
// writer runs the queued Update calls one after the other in one transaction, each in its own
// savepoint (but the first), and commits once: one fsync for the group. It never waits for a
// group to fill: it begins with the first caller queued, takes in whoever queues while the
// transaction is open, and commits as soon as nobody of its kind (below) is waiting (or the
// group is maxGroup).
//
// The writer is the caller that finds nobody writing: it runs one group on its own goroutine,
// its own call first, then hands what is queued to a writer goroutine, which runs groups until
// the queue is empty. So a caller alone runs at once, on its own goroutine, in a transaction of
// its own, as without group commit. Every other function runs on its caller's goroutine while
// the writer waits for it, so a panic (or a test's t.FailNow) happens where it would without
// group commit, with its stack. What a caller gets is what it would get alone, after the callers
// before it in its group:
//   - a function that fails (or panics) is rolled back to its savepoint alone; its caller gets its
//     error and the others go on. The group's first function has no savepoint (nothing ran before
//     it): if it fails, the transaction is rolled back, and the calls queued behind it go in the
//     next group;
//   - every caller is answered after the commit returned; a failed commit fails every caller of
//     the group, those whose functions failed too (what those saw was never committed);
//   - a caller whose context ends before its turn is dropped without running; once its function
//     has started, the caller gets the group's outcome whatever its context does (Tx.stmtCtx);
//   - the Tx.AfterCommit functions of the callers whose parts committed run after the commit, in
//     order, before anyone is answered and before the next group begins.
//
// Lazy calls (Lazy) are grouped apart from durable ones: a group is all lazy or all durable, and
// a lazy group commits in synchronous NORMAL, without waiting for the disk. A group is of the kind
// of the call queued first and takes the calls of its kind in queue order, passing over the
// others, which keep their places: the next group begins with the earliest of them. A call so
// waits for at most one group of the other kind, of up to maxGroup calls, some of which may have
// queued after it. (Taking only an unbroken run of one kind made a queue in which both kinds
// alternate, as at an agent whose acknowledgements (lazy) arrive while its tills write (durable),
// a group of one call each.) Calls queued at the same time have no order between them that a
// caller could rely on, so none is lost by this. In
// WAL mode a commit is a prefix of the log: a crash of the machine may lose the newest lazy
// groups, never a durable group nor anything before it, and the next durable commit's fsync makes
// the lazy groups before it durable too. A process crash loses nothing either way.

// maxGroup bounds a group, so that a burst of calls does not make the first of them wait for the
// functions of hundreds of others before their commit.
const maxGroup = 64

// errAbandoned is what the writer sees of a function that panicked or ended its goroutine: its
// savepoint is rolled back and the panic goes on in its caller.
var errAbandoned = errors.New("sqlitedb: the transaction function did not return")

var errClosed = errors.New("sqlitedb: the database is closed")

// groupCall is one Update waiting for its group, or in it.
type groupCall struct {
	ctx     context.Context
	fn      func(*Tx) error
	lazy    bool  // Lazy(ctx): its commit need not wait for the disk
	taken   bool  // the writer took it: it is answered (guarded by groupCommit.mu)
	dropped bool  // its caller gave up before that (guarded by groupCommit.mu)
	tx      *Tx   // its part of the transaction, while and after fn runs
	err     error // what fn returned (writer only)

	turn chan *Tx   // the writer to the caller: run fn now, in this transaction
	ran  chan error // the caller to the writer: what fn returned
	done chan error // the writer to the caller: the outcome (buffered: a caller that panicked is gone)
}

// groupCommit runs the Update calls of a DB opened with Options.GroupCommit.
type groupCommit struct {
	db      *DB
	mu      sync.Mutex
	queue   []*groupCall
	writing bool // a writer runs: a leading caller, or the goroutine it handed over to
	closed  bool
	lazy    bool           // the writer connection is in synchronous NORMAL (writer only)
	noSync  bool           // Options.NoSync: the connection stays in synchronous OFF
	wg      sync.WaitGroup // the writer, waited for by close

	test struct { // set by this package's tests only
		queued func()          // a caller has been queued
		commit func(calls int) // a group of calls whose functions ran is about to commit
	}
}

// update runs fn in a group and returns once the group's transaction has committed or failed.
func (g *groupCommit) update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &groupCall{ctx: ctx, fn: fn, lazy: isLazy(ctx), turn: make(chan *Tx, 1), ran: make(chan error, 1), done: make(chan error, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return errClosed
	}
	g.queue = append(g.queue, c) // first in the queue if nobody writes: the writer ends on an empty one
	lead := !g.writing
	if lead {
		g.writing = true
		g.wg.Add(1)
	}
	g.mu.Unlock()
	if g.test.queued != nil {
		g.test.queued()
	}
	if lead {
		g.lead(c)
		return <-c.done
	}
	ctxDone := ctx.Done()
	for {
		select {
		case t := <-c.turn:
			c.run(t)
		case err := <-c.done:
			return err
		case <-ctxDone:
			g.mu.Lock()
			drop := !c.taken
			c.dropped = drop
			g.mu.Unlock()
			if drop {
				return ctx.Err()
			}
			ctxDone = nil // in a group already: the writer answers it
		}
	}
}

// run runs the caller's function and hands its result to the writer, also when it panics or
// ends the goroutine.
func (c *groupCall) run(t *Tx) {
	err := errAbandoned
	defer func() { c.ran <- err }()
	err = c.fn(t)
}

// lead runs the group that own, first in the queue, begins, on own's goroutine; then a writer
// goroutine takes over what is queued. It hands over also when own's function panics (before any
// other function of its group has run: own is first).
func (g *groupCommit) lead(own *groupCall) {
	defer func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if len(g.queue) == 0 {
			g.writing = false
			g.wg.Done()
			return
		}
		go g.write() // with the leader's count in wg
	}()
	g.group(own)
	g.db.wStmts.prepareWanted(context.Background())
}

// write runs groups until the queue is empty.
func (g *groupCommit) write() {
	defer g.wg.Done()
	for g.group(nil) {
		// Outside any transaction, as inTx does: queries seen for the first time get prepared.
		g.db.wStmts.prepareWanted(context.Background())
	}
}

// next takes the next call from the queue, answering those whose contexts have ended on the
// way. With the queue empty it returns nil, and if last, ends the writer. With only, it takes the
// first call whose laziness is *only, passing over the others, which keep their places; nil if
// there is none.
func (g *groupCommit) next(last bool, only *bool) *groupCall {
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			if last {
				g.writing = false
			}
			g.mu.Unlock()
			return nil
		}
		i := 0
		for only != nil && i < len(g.queue) && g.queue[i].lazy != *only {
			i++
		}
		if i == len(g.queue) {
			g.mu.Unlock()
			return nil
		}
		c := g.queue[i]
		if i == 0 {
			g.queue[0] = nil
			g.queue = g.queue[1:]
		} else {
			g.queue = slices.Delete(g.queue, i, i+1)
		}
		c.taken = !c.dropped
		g.mu.Unlock()
		if c.taken && !dropIfDone(c) {
			return c
		}
	}
}

// group runs one group in one transaction, commits it and answers its callers. own is the
// leading caller's call, run on this goroutine; nil in the writer goroutine, which group ends
// (reporting false) when there is nobody to run.
func (g *groupCommit) group(own *groupCall) bool {
	c := g.next(own == nil, nil)
	if c == nil {
		return false
	}
	ctx := context.Background() // the transaction is everyone's: no caller's context ends it
	if err := g.setLazy(ctx, c.lazy); err != nil {
		answer([]*groupCall{c}, err)
		return true
	}
	tx, err := g.db.W.BeginTx(ctx, nil)
	if err != nil {
		answer([]*groupCall{c}, fmt.Errorf("begin: %w", err))
		return true
	}
	defer tx.Rollback() // after a commit, a no-op
	// The first function runs without a savepoint: nothing ran before it, so if it fails the
	// transaction is rolled back whole and the calls queued behind it go in the next group. A
	// caller alone, the usual case at a quiet store, so costs two statements fewer.
	if c.err = g.call(c, own, &Tx{Tx: tx, cache: g.db.wStmts, shared: true}); c.err != nil {
		tx.Rollback()
		c.done <- c.err
		return true
	}
	ran := []*groupCall{c}
	for lazy := c.lazy; len(ran) < maxGroup; {
		if c = g.next(false, &lazy); c == nil {
			break
		}
		ran = append(ran, c)
		if err := g.savepoint(ctx, tx, c, own); err != nil {
			answer(ran, fmt.Errorf("group commit: %w", err))
			return true
		}
	}
	g.commitAndAnswer(tx, ran)
	return true
}

// setLazy puts the writer connection in synchronous NORMAL for a lazy group, FULL for a durable
// one (SQLite takes the setting only outside a transaction). The writer pool has one connection.
func (g *groupCommit) setLazy(ctx context.Context, lazy bool) error {
	if lazy == g.lazy || g.noSync {
		return nil
	}
	if err := setSynchronous(ctx, g.db.W, lazy); err != nil {
		return err
	}
	g.lazy = lazy
	return nil
}

// setSynchronous puts the connection behind x in synchronous NORMAL (lazy) or FULL. x is the
// writer pool, whose one connection it is, or a connection held from it.
func setSynchronous(ctx context.Context, x interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, lazy bool) error {
	level := "FULL"
	if lazy {
		level = "NORMAL"
	}
	if _, err := x.ExecContext(ctx, `PRAGMA synchronous = `+level); err != nil {
		return fmt.Errorf("synchronous %s: %w", level, err)
	}
	return nil
}

// savepoint runs c's function in a savepoint of tx, rolled back if the function fails. An error
// is the transaction's, lost for the whole group: a savepoint the function's failure took with it
// (SQLite rolls the whole transaction back after some errors, such as a full disk) is not there
// to roll back to or release.
func (g *groupCommit) savepoint(ctx context.Context, tx *sql.Tx, c, own *groupCall) error {
	sp := &Tx{Tx: tx, cache: g.db.wStmts}
	if _, err := sp.ExecContext(ctx, `SAVEPOINT group_call`); err != nil {
		return err
	}
	if c.err = g.call(c, own, &Tx{Tx: tx, cache: g.db.wStmts, shared: true}); c.err != nil {
		if _, err := sp.ExecContext(ctx, `ROLLBACK TO group_call`); err != nil {
			return err
		}
	}
	_, err := sp.ExecContext(ctx, `RELEASE group_call`)
	return err
}

// call runs c's function in t and returns its error: here if c is own, the leading caller's,
// else on c's caller's goroutine.
func (g *groupCommit) call(c, own *groupCall, t *Tx) error {
	c.tx = t
	if c == own {
		c.run(t)
	} else {
		c.turn <- t
	}
	return <-c.ran
}

// commitAndAnswer commits the transaction of calls whose functions ran, runs the AfterCommit
// functions of those that succeeded, and answers every call: with its own result once the
// commit returned, with the commit's error if it failed.
func (g *groupCommit) commitAndAnswer(tx *sql.Tx, calls []*groupCall) {
	if g.test.commit != nil {
		g.test.commit(len(calls))
	}
	if err := tx.Commit(); err != nil {
		answer(calls, fmt.Errorf("commit: %w", err))
		return
	}
	for _, c := range calls {
		if c.err == nil {
			for _, f := range c.tx.after {
				f()
			}
		}
	}
	for _, c := range calls {
		c.done <- c.err
	}
}

// close refuses new calls and waits until the writer has answered those queued.
func (g *groupCommit) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// answer gives every call the same outcome.
func answer(calls []*groupCall, err error) {
	for _, c := range calls {
		c.done <- err
	}
}

// dropIfDone answers a call whose context has ended before its function ran, and reports so.
func dropIfDone(c *groupCall) bool {
	err := c.ctx.Err()
	if err != nil {
		c.done <- err
	}
	return err != nil
}

type lazyKey struct{}

// Lazy marks an Update whose commit need not wait for the disk: what it writes can be had again
// if a crash of the machine loses it (an acknowledgement the agent would be sent again, a page of
// the change feed it would pull again, a sync session's bookkeeping). With Options.GroupCommit
// lazy calls are grouped apart; without it, a lazy Update commits in synchronous NORMAL on the
// writer connection, set for its transaction only (DB.lazyUpdate).
func Lazy(ctx context.Context) context.Context { return context.WithValue(ctx, lazyKey{}, true) }

func isLazy(ctx context.Context) bool { lazy, _ := ctx.Value(lazyKey{}).(bool); return lazy }
