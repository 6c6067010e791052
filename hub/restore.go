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
// credentials and of members' wishes, so a restore never revives them: API keys revoked since
// the backup, signing keys retired since, store tokens rotated since (the newer token stands),
// members erased since (their personal data would come back, and go to the stores that hold
// them) and card links revoked since. It returns what it changed, a line each.
func (h *Hub) CarryOver(ctx context.Context, from *Hub) ([]string, error) {
	out, err := h.carryOverCredentials(ctx, from) // first: a failure with members leaves them carried
	if err != nil {
		return out, err
	}
	members, err := h.carryOverMembers(ctx, from)
	return append(out, members...), err
}

// carryOverCredentials is CarryOver's part for API keys, signing keys and store tokens.
func (h *Hub) carryOverCredentials(ctx context.Context, from *Hub) ([]string, error) {
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
			switch {
			case c.ID != s.ID || c.TokenHash == s.TokenHash:
			case !c.CreatedAt.Equal(s.CreatedAt):
				// Not the same store: a --replaced database of another hub names its own stores
				// with the same ids, and taking its token would lock this store's agent out.
				out = append(out, fmt.Sprintf("store %s left as restored: the replaced database's store of that id was added at another time, so it is not the same store", s.ID))
			default:
				if err := h.Store.Update(ctx, func(tx Tx) error { return tx.SetStoreToken(ctx, s.ID, s.TokenHash) }); err != nil {
					return out, err
				}
				out = append(out, fmt.Sprintf("store %s keeps the token it was given after the backup", s.ID))
			}
		}
	}
	return out, nil
}

// carryOverMembers erases again the members the replaced database erased and the restored one
// has not, and revokes again their card links where the replaced database had revoked more
// often. The candidates are the replaced database's audit entries of erasures and revocations
// (an index of actions), each checked against both databases' members; a member the backup
// does not have (added after it) has nothing to erase or revoke.
func (h *Hub) carryOverMembers(ctx context.Context, from *Hub) ([]string, error) {
	var out []string
	done := map[string]bool{}
	for _, action := range []string{AuditMemberErase, AuditCardRevoke} {
		for before := int64(0); ; {
			page, err := from.AuditPage(ctx, AuditQuery{Action: action, Before: before, Limit: MaxAuditLimit})
			if err != nil {
				return out, err
			}
			for _, e := range page {
				if done[action+" "+e.Target] {
					continue
				}
				done[action+" "+e.Target] = true
				line, err := h.carryOverMember(ctx, from, action, e.Target)
				if err != nil {
					return out, err
				}
				if line != "" {
					out = append(out, line)
				}
			}
			if len(page) < MaxAuditLimit {
				break
			}
			before = page[len(page)-1].Seq
		}
	}
	return out, nil
}

// carryOverMember does carryOverMembers' work for one member and action, and says what it did
// ("" for nothing).
func (h *Hub) carryOverMember(ctx context.Context, from *Hub, action, member string) (string, error) {
	type side struct {
		m     loyalty.Member
		p     Profile
		epoch int64
	}
	read := func(of *Hub) (s side, err error) {
		err = of.Store.View(ctx, func(tx Tx) (err error) {
			if s.m, err = tx.Member(ctx, member); err != nil {
				return err
			}
			if s.p, err = tx.MemberProfile(ctx, member); err != nil {
				return err
			}
			s.epoch, err = tx.CardEpoch(ctx, member)
			return err
		})
		return s, err
	}
	old, err := read(from)
	var cur side
	if err == nil {
		cur, err = read(h)
	}
	switch {
	case loyalty.ErrorCode(err) == loyalty.ENOTFOUND:
		return "", nil // not in one of them: nothing to carry over
	case err == nil && !old.m.CreatedAt.Equal(cur.m.CreatedAt):
		// Not the same member: a --replaced database of another hub (a staging copy) names its
		// own members with the same ids. An erasure cannot be undone, so nothing is done.
		return fmt.Sprintf("member %s left as restored: the replaced database's member of that id was created at another time, so it is not the same member", member), nil
	case err != nil:
		return "", err
	case action == AuditMemberErase && !old.p.ErasedAt.IsZero() && cur.p.ErasedAt.IsZero():
		if _, err := h.EraseMember(ctx, member); err != nil {
			return "", err
		}
		return fmt.Sprintf("member %s erased again (erased on %s, after the backup)", member, old.p.ErasedAt.UTC().Format(time.RFC3339)), nil
	case action == AuditCardRevoke && old.epoch > cur.epoch:
		for range old.epoch - cur.epoch {
			if _, err := h.RevokeCardLinks(ctx, member); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("member %s's card links revoked again (revoked after the backup)", member), nil
	}
	return "", nil
}
