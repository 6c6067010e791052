// Pushes: a store's deltas deduplicated and applied exactly once, in one transaction per batch
// (apply.go), or quarantined when the hub cannot take them; batches pushed at the same moment by
// several stores share one transaction and one commit (group commit, group.go).

package hub

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Push implements lsync.Handler: the batch is applied in one transaction, which it may share with
// other stores' batches and other sessions' writes made at the same moment (group commit,
// group.go), and the Ack comes after that transaction committed. If the shared transaction
// fails, the batch is applied alone; if that fails, its deltas are applied one at a time, and one
// that fails on its own twice is set aside as a rejection (EINTERNAL) for an operator, so it
// cannot stall the store's outbox behind it. The rejection keeps the whole delta: nothing is lost.
func (h *Hub) Push(ctx context.Context, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	if len(deltas) == 0 {
		return h.pushAlone(ctx, store, deltas)
	}
	var ack *lsync.Ack
	err := h.grouped(ctx, len(deltas), func(ctx context.Context, tx Tx) error {
		var err error
		ack, err = h.applyBatch(ctx, tx, store, deltas)
		return err
	}, func(ctx context.Context) error {
		var err error
		ack, err = h.pushAlone(ctx, store, deltas)
		return err
	})
	if err != nil {
		return nil, err
	}
	h.countAck(ack) // metrics.go
	return ack, nil
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
	a.deferInserts() // the batch's new deltas go into the ledger together (batch.go)
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
	if ack.Balances, err = a.finish(ctx); err != nil { // finish inserts what is pending first
		return nil, err
	}
	for i, r := range ack.Results {
		if r.Status == lsync.StatusApplied && r.Seq == 0 {
			ack.Results[i].Seq = a.inserted[r.DeltaID].Seq
		}
	}
	return ack, nil
}
