// The change feed: pulls that keep a store's replica current, and subscriptions that put a
// member in a store's scope with their standing (online means exact).

package hub

import (
	"context"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Pull implements lsync.Handler. It reads one snapshot: the members in store's scope changed
// after cursor, the program and the keys if they changed, and the cursor to resume from. Its
// writes (what the store was sent and has received, its flushed pull, its leases) share a
// transaction with other sessions' writes of the same moment (group commit, group.go).
func (h *Hub) Pull(ctx context.Context, store string, req lsync.Pull) (*lsync.Changes, error) {
	var ch *lsync.Changes
	pull := func(ctx context.Context, tx Tx) (err error) {
		ch, err = h.pull(ctx, tx, store, req)
		return err
	}
	err := h.grouped(ctx, 0, pull, func(ctx context.Context) error {
		return h.Store.Update(ctx, func(tx Tx) error { return pull(ctx, tx) })
	})
	return ch, err
}

// pull is Pull in tx.
func (h *Hub) pull(ctx context.Context, tx Tx, store string, req lsync.Pull) (*lsync.Changes, error) {
	cursor, limit := req.Cursor, req.Limit
	ch := &lsync.Changes{} // a retried transaction starts over
	err := func() error {
		upTo, err := tx.CurrentVersion(ctx)
		if err != nil {
			return err
		}
		if ch.Members, err = tx.MembersSince(ctx, store, cursor, limit); err != nil {
			return err
		}
		if len(ch.Members) == limit {
			ch.More = true
			upTo = ch.Members[len(ch.Members)-1].Version
		}
		p, pv, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		if pv > cursor && pv <= upTo {
			ch.Program = &p
		}
		keys, err := tx.PublicKeys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.Version > cursor && k.Version <= upTo {
				ch.Keys = append(ch.Keys, k.PublicKey)
			}
		}
		ch.Cursor = max(upTo, cursor)
		// This pull shows the store received the answer to its previous one; the current program
		// goes to a store that was never sent it, whatever cursor the store names.
		if err := tx.ProgramsReceived(ctx, store, h.Now()); err != nil {
			return err
		}
		if ch.Program == nil && !ch.More {
			if sent, err := tx.ProgramsSent(ctx, store, p.Version, 1); err != nil {
				return err
			} else if len(sent) == 0 {
				ch.Program = &p
			}
		}
		if ch.Program != nil {
			if err := tx.MarkProgramSent(ctx, store, ch.Program.Version, h.Now()); err != nil {
				return err
			}
		}
		if !ch.More {
			if err := h.markFlushed(ctx, tx, store, req.Flushed); err != nil {
				return err
			}
			info, err := tx.StoreInfo(ctx, store)
			if err != nil {
				return err
			}
			ch.TimeZone = info.TimeZone // "" for a store registered before zones were: its agent keeps its own
			ch.Leases, err = h.newApplier(tx).leases(ctx, store, req.Flushed)
			return err
		}
		return err
	}()
	return ch, err
}

// Subscribe implements lsync.Handler: the member, in the store's scope from now on, and their
// standing, read in the same transaction so that the standing is exactly what the copy's version
// includes.
func (h *Hub) Subscribe(ctx context.Context, store string, req lsync.Subscribe) (*loyalty.Member, *lsync.Standing, error) {
	if !loyalty.ValidText(req.Voucher, loyalty.MaxIDLength) {
		return nil, nil, loyalty.Errorf(loyalty.EINVALID, "voucher id is not valid text of at most %d characters", loyalty.MaxIDLength)
	}
	var m loyalty.Member
	var st *lsync.Standing
	err := h.Store.Update(ctx, func(tx Tx) error {
		var err error
		if m, err = tx.Member(ctx, req.Member); err != nil {
			return err
		}
		if st, err = h.newApplier(tx).standing(ctx, req.Member, req.Voucher); err != nil {
			return err
		}
		return tx.Subscribe(ctx, store, req.Member)
	})
	if err != nil {
		return nil, nil, err
	}
	return &m, st, nil
}
