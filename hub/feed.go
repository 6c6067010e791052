// The change feed: pulls that keep a store's replica current, and subscriptions that put a
// member in a store's scope with their standing (online means exact).

package hub

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Pull implements lsync.Handler. It reads one snapshot: the members in store's scope changed
// after cursor, the program and the keys if they changed, and the cursor to resume from. It
// reads first (readFirst), in a read-only snapshot; only when the store's bookkeeping must change
// (a rule version received or sent, the flushed floor moved, a lease granted, renewed or settled)
// does it run again as a write, which shares a transaction with other sessions' writes of the same
// moment (group commit, group.go).
func (h *Hub) Pull(ctx context.Context, store string, req lsync.Pull) (*lsync.Changes, error) {
	var ch *lsync.Changes
	pull := func(ctx context.Context, tx Tx) (err error) {
		ch, err = h.pull(ctx, tx, store, req)
		return err
	}
	err := h.readFirst(ctx, func(tx Tx) error { return pull(ctx, tx) }, func() error {
		return h.grouped(ctx, nil, pull, func(ctx context.Context) error {
			return h.Store.Update(ctx, func(tx Tx) error { return pull(ctx, tx) })
		})
	})
	if err != nil {
		return nil, err
	}
	return ch, nil
}

// pull is Pull in tx. It reads what it needs first at once (Tx.PullHead), and writes the store's
// bookkeeping only where it changes.
func (h *Hub) pull(ctx context.Context, tx Tx, store string, req lsync.Pull) (*lsync.Changes, error) {
	cursor, limit := req.Cursor, req.Limit
	ch := &lsync.Changes{} // a retried transaction starts over
	err := func() error {
		head, err := tx.PullHead(ctx, store, cursor, limit)
		if err != nil {
			return err
		}
		upTo := head.Version
		if ch.Members = head.Members; len(ch.Members) == limit {
			ch.More = true
			upTo = ch.Members[len(ch.Members)-1].Version
		}
		p := head.Program
		if head.ProgramVersion > cursor && head.ProgramVersion <= upTo {
			ch.Program = &p
		}
		for _, k := range head.Keys {
			if k.Version > cursor && k.Version <= upTo {
				ch.Keys = append(ch.Keys, k.PublicKey)
			}
		}
		ch.Cursor = max(upTo, cursor)
		// This pull shows the store received the answer to its previous one; the current program
		// goes to a store that was never sent it, whatever cursor the store names (the first
		// time it was sent counts).
		if head.Unreceived {
			if err := tx.ProgramsReceived(ctx, store, h.Now()); err != nil {
				return err
			}
		}
		if ch.Program == nil && !ch.More && len(head.Sent) == 0 {
			ch.Program = &p
		}
		if ch.Program != nil && (len(head.Sent) == 0 || head.Sent[0].Version != p.Version) {
			if err := tx.MarkProgramSent(ctx, store, p.Version, h.Now()); err != nil {
				return err
			}
		}
		if !ch.More {
			if err := h.markFlushed(ctx, tx, head.Store, req.Flushed); err != nil {
				return err
			}
			ch.TimeZone = head.Store.TimeZone // "" for a store registered before zones were: its agent keeps its own
			a := h.newApplier(tx)
			a.cur = &p // read above, in this snapshot: not read and decoded again
			ch.Leases, err = a.leases(ctx, store, head.Leases, req.Flushed)
			return err
		}
		return nil
	}()
	return ch, err
}

// Unsubscribe implements lsync.Unsubscriber: the store evicted members from its replica, and the
// change feed stops carrying them to it, in one transaction. A member comes back into the scope
// as always: the store subscribes to them again (a scan while online), or pushes a delta of
// theirs. Members not in the scope, or unknown, are left as they are.
func (h *Hub) Unsubscribe(ctx context.Context, store string, members []string) error {
	for _, m := range members {
		if !loyalty.ValidText(m, loyalty.MaxIDLength) {
			return loyalty.Errorf(loyalty.EINVALID, "member id is not valid text of at most %d characters", loyalty.MaxIDLength)
		}
	}
	return h.Store.Update(ctx, func(tx Tx) error {
		for _, m := range members {
			if err := tx.Unsubscribe(ctx, store, m); err != nil {
				return err
			}
		}
		return nil
	})
}

// Subscribe implements lsync.Handler: the member, in the store's scope from now on, and their
// standing, read in the same transaction so that the standing is exactly what the copy's version
// includes. For a member already in the scope (every online sale of a known member asks) it is a
// read-only snapshot (readFirst).
//
// A member's copy holds personal data, and a store in whose scope they are may spend their points
// (apply.go), so the hub hands a member only to a store with a reason to hold them: one that
// holds them already, their home store, or one that scanned their code: req.QR, a current member
// or voucher code of theirs, signed by the hub (a store evicting and taking a member back, racing
// with its own unsubscribe, sends the code its last change of theirs carried). Any other request
// is refused alike, whether the member exists or not, so that a store cannot list the members by
// guessing ids.
func (h *Hub) Subscribe(ctx context.Context, store string, req lsync.Subscribe) (*loyalty.Member, *lsync.Standing, error) {
	if !loyalty.ValidText(req.Voucher, loyalty.MaxIDLength) {
		return nil, nil, loyalty.Errorf(loyalty.EINVALID, "voucher id is not valid text of at most %d characters", loyalty.MaxIDLength)
	}
	// A code that proves nothing (expired by the hub's clock, signed by a retired key) leaves
	// the other reasons: a store asking about a member it holds is answered anyway.
	scanned, codeErr := h.scanned(ctx, req)
	var m loyalty.Member
	var st *lsync.Standing
	subscribe := func(tx Tx) error {
		if !scanned {
			if err := mayHold(ctx, tx, store, req.Member); err != nil {
				return cmp.Or(codeErr, err)
			}
		}
		var err error
		if m, err = tx.Member(ctx, req.Member); err != nil {
			return err
		}
		if st, err = h.newApplier(tx).standing(ctx, req.Member, req.Voucher); err != nil {
			return err
		}
		return tx.Subscribe(ctx, store, req.Member)
	}
	err := h.readFirst(ctx, subscribe, func() error { return h.Store.Update(ctx, subscribe) })
	if err != nil {
		return nil, nil, err
	}
	return &m, st, nil
}

// scanned reports whether req carries a code of its member that proves the member was at the
// store's till: a member or voucher code signed by the hub, still current. A code that is not
// one is EINVALID; a code of another member, EUNAUTHORIZED.
func (h *Hub) scanned(ctx context.Context, req lsync.Subscribe) (bool, error) {
	if req.QR == "" {
		return false, nil
	}
	c, current, err := h.authentic(ctx, req.QR, "")
	if err == nil {
		err = current()
	}
	if err != nil {
		return false, err
	}
	if c.Member != req.Member {
		return false, loyalty.Errorf(loyalty.EUNAUTHORIZED, "the scanned code is not member %s's", req.Member)
	}
	return true, nil
}

// mayHold checks, for a subscription without a scanned code, that store has a reason to hold
// member (Subscribe): in its scope already, or its home store's member. (A change the store made
// for the member is no reason: a store can invent a sale. One it made with the member's code
// brought the member into its scope: apply.)
func mayHold(ctx context.Context, tx Tx, store, member string) error {
	if in, err := tx.Subscribed(ctx, store, member); in || err != nil {
		return err
	}
	if m, err := tx.Member(ctx, member); err == nil && m.HomeStore == store {
		return nil
	} else if err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		return err
	}
	return loyalty.Errorf(loyalty.EUNAUTHORIZED, "store %s does not hold member %s; send the member's scanned QR code to fetch them", store, member)
}

// errWrites is how a read-first pass (readFirst) says that its transaction has something to write.
var errWrites = errors.New("the transaction has something to write")

// readFirst runs fn in a read-only snapshot, where the writes of the feed's bookkeeping are
// checked instead of made (probe), and runs write (fn in a write transaction) only if one of them
// would change something. Most pulls and subscriptions change nothing, so they keep off the
// single writer (SQLite) and out of serialization conflicts (PostgreSQL). fn must start over on
// each run, as any transaction function must. An error a caller can act on (an unknown member)
// is the answer; any other error of the read-only pass (a write the probe does not know, which
// the read-only snapshot refuses) sends fn to the write transaction, where it recurs if real.
func (h *Hub) readFirst(ctx context.Context, fn func(Tx) error, write func() error) error {
	err := h.Store.View(ctx, func(tx Tx) error { return fn(probe{tx}) })
	if err == nil || ctx.Err() != nil || !errors.Is(err, errWrites) && loyalty.ErrorCode(err) != loyalty.EINTERNAL {
		return err
	}
	return write()
}

// probe is a read-only Tx for readFirst: each write of the feed's bookkeeping checks whether it
// would change anything, and stops the pass with errWrites if it would.
type probe struct{ Tx }

func (p probe) Subscribe(ctx context.Context, store, member string) error {
	return p.unless(p.Subscribed(ctx, store, member))
}

// ProgramsReceived, MarkFlushed and MarkProgramSent are called only when they change something
// (pull).
func (probe) ProgramsReceived(context.Context, string, time.Time) error { return errWrites }

func (probe) MarkFlushed(context.Context, string, time.Time) error { return errWrites }

func (p probe) WatchSince(ctx context.Context, store, budget string, _ time.Time) (time.Time, error) {
	since, err := p.Watched(ctx, store, budget)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return time.Time{}, errWrites
	}
	return since, err
}

func (probe) MarkProgramSent(context.Context, string, int64, time.Time) error { return errWrites }

func (probe) PutLease(context.Context, Lease, LeaseEvent) error { return errWrites }

// unless is errWrites unless nothing would change (done), or err.
func (probe) unless(done bool, err error) error {
	if err == nil && !done {
		return errWrites
	}
	return err
}
