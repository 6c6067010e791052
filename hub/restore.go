package hub

import (
	"context"
	"time"
)

// Restoring the hub from a backup (docs/PROTOCOL.md, "Restore"; README, "Restore from a
// backup"). A backup lacks what the hub applied after it was taken: deltas stores pushed, leases
// it granted, online calls. The restored database gets a new epoch (Restored); agents that meet
// it send again everything they made since their last complete sync in the backup, start their
// change feed over and drop their leases. Deltas spent from a lease the backup never saw are
// applied and flagged as restore conflicts, for a short window after the restore: they happened
// under quota the hub had really granted.

// Epoch implements sync.Handler: the database's epoch, and for store, from when on it sends
// again what was acknowledged if it last saw another epoch (its last flushed pull in this
// database, less the backdate allowance).
func (h *Hub) Epoch(ctx context.Context, store string) (int64, time.Time, error) {
	var epoch int64
	var since time.Time
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		if epoch, _, err = tx.Epoch(ctx); err != nil {
			return err
		}
		info, err := tx.StoreInfo(ctx, store)
		if err != nil {
			return err
		}
		since = later(info.CreatedAt, info.FlushedAt).Add(-h.Claims.Backdate)
		return nil
	})
	return epoch, since, err
}

// Restored marks the database as restored from a backup now: it draws a new epoch, which every
// agent notices at its next connection. Run it once on the restored file, before the hub starts.
func (h *Hub) Restored(ctx context.Context) (int64, error) {
	var epoch int64
	err := h.update(ctx, func(tx Tx) error {
		var err error
		epoch, err = tx.NewEpoch(ctx, h.Now())
		return err
	})
	return epoch, err
}

// lostLease reports whether a lease id the hub does not know may be one it granted before it was
// restored from a backup: the delta spending it is dated before the restore plus the longest a
// store may spend a lease.
func (a *applier) lostLease(ctx context.Context, at time.Time) (bool, error) {
	_, restored, err := a.tx.Epoch(ctx)
	if err != nil || restored.IsZero() {
		return false, err
	}
	return at.Before(restored.Add(a.Lease.TTL + a.Lease.Margin)), nil
}
