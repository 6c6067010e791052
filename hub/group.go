// Group commit of the sessions' writes: pushes and pulls made at the same moment by many stores
// share one transaction and one commit, and so do their sessions' claims and releases.

package hub

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/loyalty-edge-sync/loyalty"
)

// A write transaction of the hub ends with a commit that waits for the disk (an fsync on SQLite,
// a WAL flush on PostgreSQL), and on SQLite one writer commits one transaction at a time: when
// many stores are in session at once (a reconnect storm: each connects, pushes its backlog and
// pulls, and every push's commit makes every session pull again), the commits, not the work,
// bound the rate. So the sessions' writes (Push and Pull) queue, and the first caller that finds
// nobody leading leads: it takes the queued calls, up to maxGroupCalls and
// maxGroupDeltas pushed deltas, runs them one after the other in one transaction (the later calls
// see what the earlier ones wrote; pushes next to each other go in as one batch, push.go:
// applyPushes), commits once, and answers each caller after the commit. It never waits for a group
// to fill: a caller alone runs at once, alone. When the leader's own group is done and more calls
// are queued, a goroutine goes on leading until the queue is empty, so that the leader's caller
// is not kept waiting for others'.
//
// If the shared transaction fails, every call of the group runs again alone, as it always did (a
// push in a transaction of its own, falling back to one delta at a time and setting aside a delta
// that cannot be applied: pushAlone). One bad batch costs the others a second try, never their
// deltas. The transaction function keeps nothing from an attempt that did not commit (a
// PostgreSQL retry runs it again from the start: each call sets its results afresh), and OnChange
// hears of a group's commit once, with the newest version.
//
// The sessions' bookkeeping (their claims and releases, sessions.go) queues apart, in a group of
// its own kind whose transaction is a Bookkeeping one: on SQLite its commit does not wait for the
// disk, on PostgreSQL it takes no writer lock. Its commits are cheap, but on SQLite each still
// takes the one writer: when a thousand stores reconnect at once, their thousand claims are a few
// transactions (as many as arrive while one runs go in the next), not a thousand between the first
// pushes.
const (
	maxGroupCalls  = 128
	maxGroupDeltas = 5000
)

// groups is the queue of calls waiting for a group, and whether one is being led.
type groups struct {
	mu          sync.Mutex
	queue       []*groupCall
	leading     bool
	bookkeeping bool // the group's transaction is a Bookkeeping one, else the hub's (Hub.update)

	test struct { // set by tests only (export_test.go)
		queued    func(waiting int)       // a call has been queued behind waiting-1 others
		committed func(calls, deltas int) // a group's transaction committed
	}
}

// groupCall is one write waiting for its group, or in it.
type groupCall struct {
	ctx   context.Context
	push  *groupPush                             // a store's push, applied with the pushes next to it (applyPushes); else apply
	apply func(ctx context.Context, tx Tx) error // in a shared transaction, as often as it is attempted
	alone func(ctx context.Context) error        // in a transaction of its own, if the shared one failed
	taken bool                                   // a leader took it: it will be answered (guarded by groups.mu)
	done  chan error
}

// pushed is how many deltas c pushes (0 for a pull), for maxGroupDeltas.
func (c *groupCall) pushed() int {
	if c.push == nil {
		return 0
	}
	return len(c.push.deltas)
}

// grouped runs a session's write in a group (above): push, or else apply, in the group's
// transaction, or alone by itself; it returns once the write has committed (or failed).
func (h *Hub) grouped(ctx context.Context, push *groupPush, apply func(context.Context, Tx) error, alone func(context.Context) error) error {
	return h.inGroup(&h.groups, ctx, push, apply, alone)
}

// bookkept runs apply in a Bookkeeping transaction shared with the other sessions' bookkeeping
// queued at the same moment (above), and in one of its own if the shared one failed; it returns
// once apply's writes have committed (or failed). Like a Store's transaction function, apply may
// run more than once and must set its results afresh each time.
func (h *Hub) bookkept(ctx context.Context, apply func(context.Context, Tx) error) error {
	alone := func(ctx context.Context) error {
		return h.Store.Update(Bookkeeping(ctx), func(tx Tx) error { return apply(ctx, tx) })
	}
	return h.inGroup(&h.bookkeeping, ctx, nil, apply, alone)
}

// inGroup queues a call in g, and returns once it has committed (or failed).
func (h *Hub) inGroup(g *groups, ctx context.Context, push *groupPush, apply func(context.Context, Tx) error, alone func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &groupCall{ctx: ctx, push: push, apply: apply, alone: alone, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c) // first in the queue if nobody leads: a leader ends on an empty one
	lead := !g.leading
	g.leading = true
	waiting := len(g.queue)
	g.mu.Unlock()
	if g.test.queued != nil {
		g.test.queued(waiting)
	}
	if lead {
		h.lead(g)
	}
	select {
	case err := <-c.done: // answered already: the group was this caller's to lead
		return err
	default:
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		g.mu.Lock()
		taken := c.taken
		if !taken { // not started: it never will be
			for i, q := range g.queue {
				if q == c {
					g.queue = append(g.queue[:i], g.queue[i+1:]...)
					break
				}
			}
		}
		g.mu.Unlock()
		if !taken {
			return ctx.Err()
		}
		// Taken, it runs to its end (one transaction at most) and its caller waits for that:
		// the call writes its results into its caller's variables, which nothing may touch
		// once the caller has returned, and the caller is told what really happened.
		return <-c.done
	}
}

// lead runs one group, the caller's own call first in it, then hands what is queued to a
// goroutine that leads until the queue is empty.
func (h *Hub) lead(g *groups) {
	h.runGroup(g, g.take())
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.leading = false
		return
	}
	go func() {
		for h.runGroup(g, g.take()) {
		}
	}()
}

// take takes the next group from the queue: at least one call, up to maxGroupCalls and
// maxGroupDeltas pushed deltas. It answers the calls whose callers gave up on the way. With the
// queue empty it returns nil and ends the leading.
func (g *groups) take() []*groupCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	var group []*groupCall
	n := 0
	for len(g.queue) > 0 && len(group) < maxGroupCalls {
		c := g.queue[0]
		if len(group) > 0 && n+c.pushed() > maxGroupDeltas {
			break
		}
		g.queue[0] = nil
		g.queue = g.queue[1:]
		if err := c.ctx.Err(); err != nil {
			c.done <- err
			continue
		}
		c.taken = true
		group = append(group, c)
		n += c.pushed()
	}
	if len(group) == 0 && len(g.queue) == 0 {
		g.leading = false
	}
	return group
}

// runGroup runs a group and answers its calls; it reports whether there was one. A panic in the
// hub's code is answered to every call of the group as an internal error, and logged with its
// stack, rather than left to end the leader's goroutine with every caller waiting.
func (h *Hub) runGroup(g *groups, group []*groupCall) bool {
	if len(group) == 0 {
		return false
	}
	answered := false
	defer func() {
		if p := recover(); p != nil {
			h.Logger.Error("a session's write panicked", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			if !answered {
				for _, c := range group {
					c.done <- loyalty.Errorf(loyalty.EINTERNAL, "the hub failed to apply this change")
				}
			}
		}
	}()
	errs := h.runTogether(g, group)
	answered = true
	for i, c := range group {
		c.done <- errs[i]
	}
	return true
}

// runTogether runs the calls of a group in one transaction and returns their errors; if that
// fails, it runs each alone.
func (h *Hub) runTogether(g *groups, group []*groupCall) []error {
	errs := make([]error, len(group))
	deltas := 0
	for _, c := range group {
		deltas += c.pushed()
	}
	if len(group) == 1 {
		c := group[0]
		if errs[0] = c.alone(c.ctx); errs[0] == nil {
			g.committed(1, deltas)
		}
		return errs
	}
	// The transaction is everyone's: no caller's context ends it.
	ctx := context.WithoutCancel(group[0].ctx)
	update := h.update
	if g.bookkeeping {
		ctx = Bookkeeping(ctx)
		update = h.Store.Update
	}
	err := update(ctx, func(tx Tx) error {
		for i := 0; i < len(group); {
			if group[i].push == nil {
				if err := group[i].apply(ctx, tx); err != nil {
					return fmt.Errorf("call %d of %d in a group: %w", i+1, len(group), err)
				}
				i++
				continue
			}
			// The pushes next to each other go in as one batch (push.go: applyPushes).
			j := i + 1
			for j < len(group) && group[j].push != nil {
				j++
			}
			pushes := make([]*groupPush, 0, j-i)
			for _, c := range group[i:j] {
				pushes = append(pushes, c.push)
			}
			if err := h.applyPushes(ctx, tx, pushes); err != nil {
				return fmt.Errorf("calls %d to %d of %d in a group: %w", i+1, j, len(group), err)
			}
			i = j
		}
		return nil
	})
	if err == nil {
		g.committed(len(group), deltas)
		return errs
	}
	h.Logger.Warn("a group of writes failed together; running each alone", slog.Int("calls", len(group)), slog.Any("err", err))
	for i, c := range group {
		errs[i] = c.alone(c.ctx)
	}
	return errs
}

// committed tells a test that a group's transaction committed.
func (g *groups) committed(calls, deltas int) {
	if f := g.test.committed; f != nil {
		f(calls, deltas)
	}
}
