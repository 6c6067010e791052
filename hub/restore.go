package hub

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// Restoring the hub from a backup (docs/PROTOCOL.md, "Restore"; README, "Backup and restore").
// A backup lacks what the hub did after it was taken: deltas stores pushed, leases it granted
// and refilled, online calls. The restored database gets a new epoch (Restored); agents that meet
// it send again everything they made since their last complete sync in the backup, start their
// change feed over and drop their leases.
//
// What they send again names leases as they were before the restore. For deltas dated in the
// restore window (from the backup less the backdate allowance to a lease's lifetime after the
// restore) the hub tolerates what it lost, within bounds a hostile store cannot stretch: a lease
// it never heard of is adopted once per store and budget, at the size it would have granted; a
// lease the backup has may be spent past its expiry and by one more lease's worth (the lost
// refills). Each is applied and flagged as a restore conflict.

// Epoch implements sync.Handler: the database's epoch, and for store, from when on it sends
// again what was acknowledged if it last saw another epoch (its last flushed pull in this
// database, less the backdate allowance).
func (h *Hub) Epoch(ctx context.Context, store string) (int64, time.Time, error) {
	var e EpochInfo
	var since time.Time
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		if e, err = tx.Epoch(ctx); err != nil {
			return err
		}
		info, err := tx.StoreInfo(ctx, store)
		if err != nil {
			return err
		}
		since = later(info.CreatedAt, info.FlushedAt).Add(-h.Claims.Backdate)
		return nil
	})
	return e.Epoch, since, err
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

// MarkReplaced records that a restore replaced this database with another: a hub refuses to
// start on it (EpochInfo.ReplacedAt).
func (h *Hub) MarkReplaced(ctx context.Context) error {
	return h.Store.Update(ctx, func(tx Tx) error { return tx.MarkReplaced(ctx, h.Now()) })
}

// epoch returns the database's epoch, read once per transaction: every budgeted delta asks.
func (a *applier) epoch(ctx context.Context) (EpochInfo, error) {
	if a.epochInfo == nil {
		e, err := a.tx.Epoch(ctx)
		if err != nil {
			return e, err
		}
		a.epochInfo = &e
	}
	return *a.epochInfo, nil
}

// inRestoreWindow reports whether a delta dated at may have spent from a lease of budget b the hub
// lost when it was restored: it is dated from the backup (less the backdate allowance) to the
// life of a lease of b granted just before the restore (the budget's lease_ttl, else
// leases.ttl) after it.
func (a *applier) inRestoreWindow(ctx context.Context, at time.Time, b *loyalty.Budget) (bool, error) {
	e, err := a.epoch(ctx)
	if err != nil || e.RestoredAt.IsZero() {
		return false, err
	}
	return !at.Before(e.BackupAt.Add(-a.Claims.Backdate)) && at.Before(e.RestoredAt.Add(a.Lease.ttl(b)+a.Lease.Margin)), nil
}

// leaseTarget is a store's share of budget b: leases.share of its limit, at least one unit.
func leaseTarget(p *loyalty.Program, b *loyalty.Budget, cfg LeaseConfig) int64 {
	return max(cfg.Min, int64(float64(b.Limit)*cfg.Share), b.Unit(p))
}

// restoreGrant bounds a lease of b the hub granted store after the backup it was restored from,
// and lost with it: the most it would have granted, the larger of the store's share of the limit
// and what the store's demand before the backup asks for (as size works it out; demand recorded
// since the restore is left out, or the spending being judged would raise its own bound).
func (a *applier) restoreGrant(ctx context.Context, store string, p *loyalty.Program, b *loyalty.Budget) (int64, error) {
	e, err := a.epoch(ctx)
	if err != nil {
		return 0, err
	}
	cfg := a.Lease.withDefaults()
	cut := e.BackupAt.Truncate(time.Hour)
	hours, err := a.tx.Demand(ctx, store, b.ID, cut.Add(-cfg.DemandWindow))
	if err != nil {
		return 0, err
	}
	hours = slices.DeleteFunc(hours, func(h DemandHour) bool { return !h.Hour.Before(cut) })
	demand := int64(math.Ceil(cfg.Headroom * peakDemand(hours, cfg.DemandWindow, cfg.outage(b))))
	return max(leaseTarget(p, b, a.Lease), demand), nil
}

// adoptable reports whether a lease id the hub does not know may be adopted for a store's
// spending from budget b in the restore window: the store holds no lease of b the hub made
// after the restore (one adopted already, or granted since: the store then knows of the
// restore), and x fits the size the hub would have granted.
func (a *applier) adoptable(ctx context.Context, store string, p *loyalty.Program, b *loyalty.Budget, x int64) (bool, error) {
	ls, err := a.tx.Leases(ctx, store)
	if err != nil {
		return false, err
	}
	e, err := a.epoch(ctx)
	if err != nil {
		return false, err
	}
	for _, l := range ls {
		if l.Budget == b.ID && !l.CreatedAt.Before(e.RestoredAt) {
			return false, nil
		}
	}
	grant, err := a.restoreGrant(ctx, store, p, b)
	return x <= grant, err
}

// adopt records a lease the hub granted before it was restored and lost: made at the restore,
// ended at the end of the restore window, sized as the hub would have granted it, and settled at
// the store's next flushed pull like any ended lease.
func (a *applier) adopt(ctx context.Context, store, id string, p *loyalty.Program, b *loyalty.Budget) (Lease, error) {
	e, err := a.epoch(ctx)
	if err != nil {
		return Lease{}, err
	}
	grant, err := a.restoreGrant(ctx, store, p, b)
	if err != nil {
		return Lease{}, err
	}
	l := Lease{ID: id, Store: store, Budget: b.ID, Granted: grant, State: LeaseEnded,
		CreatedAt: e.RestoredAt, ExpiresAt: e.RestoredAt.Add(a.Lease.ttl(b) + a.Lease.Margin)}
	return l, a.putLease(ctx, l, LeaseEvent{Lease: id, Store: store, Budget: b.ID, Kind: "restore", Amount: l.Granted, At: a.Now()})
}

// CarryOver brings into a restored database what the database it replaces knew of revoked
// credentials, so a restore never revives them: API keys revoked since the backup, signing keys
// retired since, and store tokens rotated since (the newer token stands). It returns what it
// changed, a line each.
func (h *Hub) CarryOver(ctx context.Context, from *Hub) ([]string, error) {
	var out []string
	old, err := from.APIKeys(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := h.APIKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range old {
		for _, c := range cur {
			if c.ID == k.ID && !k.RevokedAt.IsZero() && c.RevokedAt.IsZero() {
				if _, err := h.RevokeAPIKey(ctx, k.ID); err != nil {
					return out, err
				}
				out = append(out, fmt.Sprintf("API key %s (%s) revoked again", k.ID, k.Name))
			}
		}
	}
	var oldKeys, curKeys []StoredKey
	var oldStores, curStores []StoreInfo
	if err := from.Store.View(ctx, func(tx Tx) error {
		var err error
		if oldKeys, err = tx.Keys(ctx); err != nil {
			return err
		}
		oldStores, err = tx.Stores(ctx)
		return err
	}); err != nil {
		return out, err
	}
	if err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		if curKeys, err = tx.Keys(ctx); err != nil {
			return err
		}
		curStores, err = tx.Stores(ctx)
		return err
	}); err != nil {
		return out, err
	}
	for _, k := range oldKeys {
		for _, c := range curKeys {
			if c.ID == k.ID && !k.NotAfter.IsZero() && (c.NotAfter.IsZero() || k.NotAfter.Before(c.NotAfter)) {
				if err := h.RetireKey(ctx, k.ID, k.NotAfter); err != nil {
					return out, err
				}
				out = append(out, fmt.Sprintf("signing key %s retired again (from %s)", k.ID, k.NotAfter.Format(time.RFC3339)))
			}
		}
	}
	for _, s := range oldStores {
		for _, c := range curStores {
			if c.ID == s.ID && c.TokenHash != s.TokenHash {
				if err := h.Store.Update(ctx, func(tx Tx) error { return tx.SetStoreToken(ctx, s.ID, s.TokenHash) }); err != nil {
					return out, err
				}
				out = append(out, fmt.Sprintf("store %s keeps the token it was given after the backup", s.ID))
			}
		}
	}
	return out, nil
}
