// Pushes: a store's deltas deduplicated and applied exactly once, in one transaction per batch
// (apply.go), or quarantined when the hub cannot take them; batches pushed at the same moment by
// several stores share one transaction and one commit (group commit).

package hub

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Group commit. Every push transaction ends with a commit that waits for the disk (an fsync on
// SQLite, a WAL flush on PostgreSQL), and on SQLite one writer commits one transaction at a time:
// when many stores push at once (a reconnect storm), the commits, not the work, bound the rate.
// So Push queues its batch, and the first caller that finds nobody leading leads: it takes the
// queued batches, up to maxGroupBatches and maxGroupDeltas deltas, applies them one after the
// other in one transaction, each batch with its own applier exactly as it would alone (the later
// batches see what the earlier ones wrote), commits once, and answers each caller with its own
// Ack, after the commit. It never waits for a group to fill: a caller alone is applied at once,
// alone. When the leader's own group is done and more batches are queued, a goroutine goes on
// leading until the queue is empty, so that the leader's caller is not kept waiting for others'.
//
// If the shared transaction fails, every batch of the group is applied again alone, as Push always
// did: in a transaction of its own, falling back to one delta at a time and setting aside a delta
// that cannot be applied (pushAlone). One bad batch costs the others a second try, never their
// deltas. The transaction function keeps nothing from an attempt that did not commit (a
// PostgreSQL retry runs it again from the start), and OnChange hears of the group's commit once,
// with the newest version.
const (
	maxGroupBatches = 64
	maxGroupDeltas  = 5000
)

// pushGroups is the queue of pushes waiting for a group, and whether one is being led.
type pushGroups struct {
	mu      sync.Mutex
	queue   []*pushCall
	leading bool

	test struct { // set by tests only (export_test.go)
		queued    func(waiting int)         // a push has been queued behind waiting-1 others
		committed func(batches, deltas int) // a group's transaction committed
	}
}

// pushCall is one Push waiting for its group, or in it.
type pushCall struct {
	ctx    context.Context
	store  string
	deltas []loyalty.Delta
	taken  bool // a leader took it: it will be answered (guarded by pushGroups.mu)
	done   chan pushAnswer
}

type pushAnswer struct {
	ack *lsync.Ack
	err error
}

// Push implements lsync.Handler: the batch is applied in one transaction, which it may share with
// other stores' batches pushed at the same moment (group commit, above), and the Ack comes after
// that transaction committed. If the transaction fails, the batch is applied alone; if that
// fails, its deltas are applied one at a time, and one that fails on its own twice is set aside as
// a rejection (EINTERNAL) for an operator, so it cannot stall the store's outbox behind it. The
// rejection keeps the whole delta: nothing is lost.
func (h *Hub) Push(ctx context.Context, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	if len(deltas) == 0 {
		return h.pushAlone(ctx, store, deltas)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &pushCall{ctx: ctx, store: store, deltas: deltas, done: make(chan pushAnswer, 1)}
	g := &h.pushes
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
		h.leadPushes()
	}
	select {
	case a := <-c.done: // answered already: the group was this caller's to lead
		return a.ack, a.err
	default:
	}
	select {
	case a := <-c.done:
		return a.ack, a.err
	case <-ctx.Done():
		g.mu.Lock()
		if !c.taken { // not started: it never will be
			for i, q := range g.queue {
				if q == c {
					g.queue = append(g.queue[:i], g.queue[i+1:]...)
					break
				}
			}
		}
		g.mu.Unlock()
		// Taken, its deltas may still be applied: the store, which sends them again, is told they
		// were duplicates.
		return nil, ctx.Err()
	}
}

// leadPushes runs one group, the caller's own first in it, then hands what is queued to a
// goroutine that leads until the queue is empty.
func (h *Hub) leadPushes() {
	h.runPushGroup(h.takePushGroup())
	g := &h.pushes
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.leading = false
		return
	}
	go func() {
		for h.runPushGroup(h.takePushGroup()) {
		}
	}()
}

// takePushGroup takes the next group from the queue: at least one push, up to maxGroupBatches and
// maxGroupDeltas deltas. It answers the pushes whose callers gave up on the way. With the queue
// empty it returns nil and ends the leading.
func (h *Hub) takePushGroup() []*pushCall {
	g := &h.pushes
	g.mu.Lock()
	defer g.mu.Unlock()
	var group []*pushCall
	n := 0
	for len(g.queue) > 0 && len(group) < maxGroupBatches {
		c := g.queue[0]
		if len(group) > 0 && n+len(c.deltas) > maxGroupDeltas {
			break
		}
		g.queue[0] = nil
		g.queue = g.queue[1:]
		if c.ctx.Err() != nil {
			c.done <- pushAnswer{err: c.ctx.Err()}
			continue
		}
		c.taken = true
		group = append(group, c)
		n += len(c.deltas)
	}
	if len(group) == 0 && len(g.queue) == 0 {
		g.leading = false
	}
	return group
}

// runPushGroup applies a group and answers its pushes; it reports whether there was one. A panic
// in the hub's code is answered as an internal error to every push of the group, logged with its
// stack, rather than left to end the leader's goroutine with every caller waiting.
func (h *Hub) runPushGroup(group []*pushCall) bool {
	if len(group) == 0 {
		return false
	}
	answered := false
	defer func() {
		if p := recover(); p != nil {
			h.Logger.Error("a push panicked", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			if !answered {
				for _, c := range group {
					c.done <- pushAnswer{err: loyalty.Errorf(loyalty.EINTERNAL, "the hub failed to apply this push")}
				}
			}
		}
	}()
	answers := h.pushGroup(group)
	answered = true
	for i, c := range group {
		c.done <- answers[i]
	}
	return true
}

// pushGroup applies the pushes of a group in one transaction and returns their answers; if that
// fails, it applies each alone.
func (h *Hub) pushGroup(group []*pushCall) []pushAnswer {
	answers := make([]pushAnswer, len(group))
	if len(group) == 1 {
		c := group[0]
		answers[0].ack, answers[0].err = h.pushAlone(c.ctx, c.store, c.deltas)
		h.pushCommitted(1, len(c.deltas), answers[0].err)
		return answers
	}
	// The transaction is everyone's: no caller's context ends it.
	ctx := context.WithoutCancel(group[0].ctx)
	var acks []*lsync.Ack
	deltas := 0
	err := h.update(ctx, func(tx Tx) error {
		acks, deltas = make([]*lsync.Ack, len(group)), 0 // from scratch on every attempt
		for i, c := range group {
			ack, err := h.applyBatch(ctx, tx, c.store, c.deltas)
			if err != nil {
				return fmt.Errorf("store %s: %w", c.store, err)
			}
			acks[i] = ack
			deltas += len(c.deltas)
		}
		return nil
	})
	if err == nil {
		h.pushCommitted(len(group), deltas, nil)
		for i := range group {
			answers[i].ack = acks[i]
		}
		return answers
	}
	h.Logger.Warn("a group of pushes failed together; applying each alone", slog.Int("batches", len(group)), slog.Any("err", err))
	for i, c := range group {
		answers[i].ack, answers[i].err = h.pushAlone(c.ctx, c.store, c.deltas)
	}
	return answers
}

// pushCommitted tells a test that a group's transaction committed.
func (h *Hub) pushCommitted(batches, deltas int, err error) {
	if f := h.pushes.test.committed; f != nil && err == nil {
		f(batches, deltas)
	}
}

// pushAlone applies one store's batch in a transaction of its own; if that fails, one delta at a
// time (Push).
func (h *Hub) pushAlone(ctx context.Context, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	ack, err := h.push(ctx, store, deltas)
	if err == nil || len(deltas) == 0 || ctx.Err() != nil {
		return ack, err
	}
	h.Logger.Warn("a push failed; applying its deltas one at a time", slog.String("store", store), slog.Any("err", err))
	ack = &lsync.Ack{Results: make([]lsync.Result, 0, len(deltas)), Balances: []lsync.Balance{}}
	for _, d := range deltas {
		one, err := h.push(ctx, store, []loyalty.Delta{d})
		if err != nil && ctx.Err() == nil {
			one, err = h.push(ctx, store, []loyalty.Delta{d})
		}
		if err != nil && ctx.Err() == nil {
			h.Logger.Error("delta set aside: it cannot be applied", slog.String("store", store), slog.String("delta", d.ID), slog.Any("err", err))
			one, err = h.quarantine(ctx, store, d)
		}
		if err != nil {
			return nil, err // storage is down: the store retries the whole push later
		}
		ack.Results = append(ack.Results, one.Results...)
		ack.Balances = append(ack.Balances, one.Balances...)
	}
	return ack, nil
}

// quarantine records a delta that cannot be applied as a rejection, in a transaction of its own.
func (h *Hub) quarantine(ctx context.Context, store string, d loyalty.Delta) (*lsync.Ack, error) {
	var r lsync.Result
	err := h.update(ctx, func(tx Tx) error {
		var err error
		r, err = h.newApplier(tx).reject(ctx, store, d, loyalty.Errorf(loyalty.EINTERNAL,
			"the hub could not apply this change (an internal error; the details are in the hub's log); it is set aside for an operator"))
		return err
	})
	return &lsync.Ack{Results: []lsync.Result{r}, Balances: []lsync.Balance{}}, err
}

// push applies one store's batch in a transaction of its own.
func (h *Hub) push(ctx context.Context, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	var ack *lsync.Ack
	err := h.update(ctx, func(tx Tx) error {
		var err error
		ack, err = h.applyBatch(ctx, tx, store, deltas)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ack, nil
}

// applyBatch applies one store's batch in tx, with an applier of its own, and returns its Ack.
func (h *Hub) applyBatch(ctx context.Context, tx Tx, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	a := h.newApplier(tx)
	ack := &lsync.Ack{Results: make([]lsync.Result, 0, len(deltas))}
	if err := a.prepare(ctx, deltas); err != nil {
		return nil, err
	}
	for _, d := range deltas {
		r, err := a.apply(ctx, store, d)
		if err != nil {
			return nil, fmt.Errorf("delta %s: %w", d.ID, err)
		}
		ack.Results = append(ack.Results, r)
	}
	var err error
	ack.Balances, err = a.finish(ctx)
	return ack, err
}
