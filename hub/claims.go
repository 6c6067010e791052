package hub

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// verified is what checkClaims established about a store's delta.
type verified struct {
	loc *time.Location // the store's registered time zone
	// country is the member's, when the earn claims another one: a store that has not synced
	// since the member's country changed (or was erased) stamps the one it saw. The sale stands
	// if its points do not depend on which (applier.check); otherwise the claim cannot be
	// verified and the delta is rejected.
	country *string
	// floor is the earliest event time the hub accepts from the store now (floor): a claim about
	// the member holds if it held at some time from then to the event.
	floor time.Time
}

// checkClaims verifies what a store says about a delta instead of believing it (docs/PROTOCOL.md,
// "What the hub verifies"):
//
//   - the event time lies between the store's floor (its last flushed pull, less Claims.Backdate,
//     and no earlier than Claims.MaxOffline ago) and the hub's clock plus Claims.MaxFuture;
//   - the rule version was sent to the store, was published by the event time, and had not been
//     replaced before the store's floor (an older version that pays more cannot be chosen);
//   - an earn's tier is one the member held in the hub's history between the floor and the event
//     time plus Claims.MaxFuture (a stale tier the store had is accepted, if the store holds the
//     member; a tier reached a moment after the event, by the store's estimate of the hub's
//     clock, is accepted as a rule version published then is) or "" (a
//     member the store did not know), and its country is the member's or "", or one the member
//     had after the floor, claimed by a store that holds them (a store that has not pulled the
//     change yet), or another one that does not change the sale's points (a store that has not
//     seen the member's erasure yet, or a country from before the floor);
//   - campaigns are read in the store's registered time zone, whatever the delta says;
//   - a redemption says the order amount where its budgets depend on it;
//   - every budget the delta spends under its rule version names a lease of this store for that
//     budget, granted by the event time, not expired at it, not settled, and not overdrawn.
//
// A delta that fails is rejected: no balance or budget moves, and the store and operators see
// it in their rejection lists.
func (a *applier) checkClaims(ctx context.Context, store string, d *loyalty.Delta) (*verified, error) {
	info, err := a.storeInfo(ctx, store)
	if err != nil {
		return nil, err
	}
	floor, err := a.floor(ctx, info)
	if err != nil {
		return nil, err
	}
	now, at := a.Now(), d.EventTime()
	switch {
	case at.After(now.Add(a.Claims.MaxFuture)):
		return nil, loyalty.Errorf(loyalty.EINVALID, "this change is dated %s, after the hub's clock (%s) by more than %s: the store's clock is wrong",
			at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), a.Claims.MaxFuture)
	case at.Before(floor):
		return nil, loyalty.Errorf(loyalty.EINVALID, "this change is dated %s, before this store's last complete sync (less %s) or more than %s ago: a change made then would have been delivered then",
			at.UTC().Format(time.RFC3339), a.Claims.Backdate, a.Claims.MaxOffline)
	}
	if d.Kind == loyalty.KindEarn || d.Kind == loyalty.KindRedeem {
		if err := a.checkVersion(ctx, info, d.RuleVersion, floor, at); err != nil {
			return nil, err
		}
	}
	// A store registered before stores had zones ("") is read in the zone its agent was
	// configured with, as before, until an operator registers its zone.
	loc, err := time.LoadLocation(cmp.Or(info.TimeZone, d.TimeZone))
	if err != nil {
		return nil, loyalty.Errorf(loyalty.EINVALID, "unknown time zone %q", cmp.Or(info.TimeZone, d.TimeZone))
	}
	v := &verified{loc: loc, floor: floor}
	if d.Kind == loyalty.KindEarn {
		m := a.members[d.Member]
		// Not the member's country: a store that has not synced since it changed, or since the
		// member was erased (who has none), stamps the one it saw. A country the member had after
		// the store's floor is verified: the store may not have pulled the change. Otherwise
		// the sale stands if its points do not depend on the country (check); an erased
		// member's is not kept (applier.forget).
		if d.Country != "" && d.Country != m.Country {
			had, err := a.hadCountry(ctx, store, m.ID, d.Country, floor)
			if err != nil {
				return nil, err
			}
			if !had {
				v.country = &m.Country
			}
		}
		p, err := a.program(ctx, d.RuleVersion)
		if err != nil {
			return nil, err
		}
		// A tier the rule version does not have (dropped or renamed since the store's copy was
		// made) earns as no tier, and no campaign or reward of the version names it
		// (Program.Validate): it claims no more than "" does, which needs no check.
		if d.Tier != "" && p.HasTier(d.Tier) {
			held, err := a.tiersHeld(ctx, m, p, floor, at)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(held, d.Tier) {
				return nil, loyalty.Errorf(loyalty.EINVALID, "the member was not in tier %q when this sale happened, nor when the store last synced", d.Tier)
			}
			// A stale tier is a copy the store kept: one that does not hold the member has none
			// (it stamps "").
			if d.Tier != m.Tier {
				if in, err := a.holds(ctx, store, m.ID); err != nil {
					return nil, err
				} else if !in {
					return nil, loyalty.Errorf(loyalty.EINVALID, "this store does not hold the member, so it cannot have had them in tier %q", d.Tier)
				}
			}
		}
	}
	if err := a.checkLeases(ctx, store, d, at); err != nil {
		return nil, err
	}
	return v, nil
}

// hadCountry reports whether store may not have heard yet that member's country is no longer
// country: the store holds the member (one that does not stamps no country), and country was
// replaced after the store's floor, as a stale tier must have been held (tiersHeld). The floor's
// Claims.Backdate also covers what the store sold between its last complete sync's start, which
// the floor may be, and the moment its answer reached it.
func (a *applier) hadCountry(ctx context.Context, store, member, country string, floor time.Time) (bool, error) {
	past, err := a.tx.PastCountries(ctx, member, floor)
	if err != nil || !slices.ContainsFunc(past, func(c PastCountry) bool { return c.Country == country }) {
		return false, err
	}
	return a.holds(ctx, store, member)
}

// floor returns the earliest event time the hub accepts from a store now: the later of its
// registration and its last flushed pull (or the start of its last session with a pull: the whole
// outbox goes out before a session's first pull), less Claims.Backdate for clock error, and never
// earlier than Claims.MaxOffline ago.
func (a *applier) floor(ctx context.Context, info StoreInfo) (time.Time, error) {
	f := later(info.CreatedAt, info.FlushedAt).Add(-a.Claims.Backdate)
	return later(f, a.Now().Add(-a.Claims.MaxOffline)), nil
}

// markFlushed records, at a store's last page of changes, what the pull proves: everything the
// store had made was pushed before it if it says so (flushed), and in any case everything it had
// made before its session started. info is the store as read in tx; nothing is written unless
// the floor moves by more than Tx.MarkFlushed may lag (a minute), so most pulls write nothing.
func (h *Hub) markFlushed(ctx context.Context, tx Tx, info StoreInfo, flushed bool) error {
	at := time.Time{}
	if flushed {
		at = h.Now()
	} else {
		h.healthMu.Lock()
		at = h.started[info.ID]
		h.healthMu.Unlock()
	}
	if at.IsZero() || !info.FlushedAt.Before(at.Add(-time.Minute)) {
		return nil
	}
	return tx.MarkFlushed(ctx, info.ID, at)
}

// checkVersion checks that rule version v can have been the store's at event time at: the hub
// sent it to the store, it was published by then, and the store had not received a newer one more
// than Claims.Backdate before it (received: the store pulled again after the answer that carried
// it, which it does only once it has that answer).
func (a *applier) checkVersion(ctx context.Context, info StoreInfo, v int64, floor, at time.Time) error {
	// Both reads are kept for the transaction: a pushed batch's deltas share a few rule versions.
	pub, ok := a.published[v]
	if !ok {
		_, pub.at, pub.err = a.tx.ProgramPublished(ctx, v)
		if pub.err == nil || loyalty.ErrorCode(pub.err) == loyalty.ENOTFOUND {
			if a.published == nil {
				a.published = make(map[int64]publishedAt)
			}
			a.published[v] = pub
		}
	}
	published, err := pub.at, pub.err
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return loyalty.Errorf(loyalty.ENOTFOUND, "rule version %d does not exist", v)
	} else if err != nil {
		return err
	}
	key := sentKey{info.ID, v}
	sent, ok := a.sent[key]
	if !ok {
		if sent, err = a.tx.ProgramsSent(ctx, info.ID, v, 2); err != nil {
			return err
		}
		if a.sent == nil {
			a.sent = make(map[sentKey][]SentProgram)
		}
		a.sent[key] = sent
	}
	switch {
	case len(sent) == 0 || sent[0].Version != v:
		return loyalty.Errorf(loyalty.EINVALID, "rule version %d was never sent to this store", v)
	case published.After(at.Add(a.Claims.MaxFuture)):
		return loyalty.Errorf(loyalty.EINVALID, "rule version %d was published after this change happened", v)
	case len(sent) == 2 && !sent[1].Received.IsZero() && at.After(sent[1].Received.Add(a.Claims.Backdate)):
		return loyalty.Errorf(loyalty.EINVALID, "rule version %d was replaced: this store had received version %d before this change happened", v, sent[1].Version)
	}
	return nil
}

// tiersHeld returns the tiers of program p a member held at some time between from and a store's
// event time to, by the hub's history of tier deltas, counting changes up to Claims.MaxFuture after
// to, as checkVersion counts a rule version's publication: a store dates its changes on the hub's
// clock as it estimates it from a round trip, which under load runs behind by as much as half the
// trip, so a sale made just after the store heard of an upgrade may be dated just before it. What a
// hostile store gains by it is a combination within that window: a tier the member reaches (or
// drops to) up to Claims.MaxFuture after the sale's date, with what held at that date (a campaign
// that ended in between, a rule version replaced since), as a rule version's leeway allows already;
// it can bring the upgrade about itself, with a sale it makes up, whose points it could have made
// up anyway. A member is placed in p's entry tier without a ledgered change, so it may be held
// before the member's first change, or, by a member never changed and not placed yet, if their
// qualifying total places them in it now (the hub places them on their next change; a restore from
// a backup forgets a placement since). A member whose last change before from put them in another
// tier did not hold it: counting the entry tier always let a store claim it for any member, and
// with it a campaign for the entry tier's members.
func (a *applier) tiersHeld(ctx context.Context, m loyalty.Member, p *loyalty.Program, from, to time.Time) ([]string, error) {
	if p.Tiers == nil || len(p.Tiers.Tiers) == 0 {
		return nil, nil
	}
	entry := p.Tiers.Tiers[0].ID
	const history = 100 // tier changes are rare; a window holds far fewer than this
	all, err := a.tx.TierChanges(ctx, m.ID, to.Add(a.Claims.MaxFuture), history)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		ever, err := a.tx.TierChanges(ctx, m.ID, a.Now().Add(a.Claims.MaxFuture), 1)
		switch {
		case err != nil:
			return nil, err
		case len(ever) > 0:
			return []string{entry}, nil // changed only after to and its leeway: in the entry tier until then
		case m.Tier != "":
			return []string{m.Tier}, nil // never changed: as placed, or as created
		}
		start, end := p.Tiers.WindowBounds(to) // the event's window, not the leeway's: a year's last minutes are that year's
		q, err := a.tx.Qualifying(ctx, m.ID, p.Tiers.Basis, start, end)
		if err != nil || p.Tiers.TierFor(q.Total).ID != entry {
			return nil, err
		}
		return []string{entry}, nil // not placed yet, and the entry tier is theirs
	}
	var held []string
	for _, c := range all { // newest first, none after to and its leeway
		held = append(held, c.Tier)
		if !c.At.After(from) {
			return held, nil // the tier the member had at from
		}
	}
	if len(all) < history {
		held = append(held, entry) // every change came after from: before the first, the entry tier
	}
	return held, nil
}

// checkLeases checks the leases a store's delta spends from, for the budgets of its rule version.
// A budget the delta's rule version did not have does not count the delta at all (account): an
// honest store that had not heard of the budget yet could not have had a lease of it.
func (a *applier) checkLeases(ctx context.Context, store string, d *loyalty.Delta, at time.Time) error {
	if d.Kind != loyalty.KindEarn && d.Kind != loyalty.KindRedeem {
		return nil // a reversal gives quota back
	}
	p, err := a.program(ctx, d.RuleVersion)
	if err != nil {
		return err
	}
	for _, b := range p.BudgetsFor(d) {
		restore, err := a.inRestoreWindow(ctx, at, &b)
		if err != nil {
			return err
		}
		// The delta must fit the lease as if it were alone on its order, as the store's agent
		// checks it (docs/BUDGETS.md, "An order counts once"): what its order already spent
		// lowers what account charges it, never whether it needs a lease. Skipping the check
		// when the order had counted already let a store spend a budget with no lease at all,
		// by naming one order again and again.
		x := b.Consumption(p, d, nil)
		if x <= 0 {
			continue
		}
		id := d.Leases[b.ID]
		if id == "" {
			return loyalty.Errorf(loyalty.EBUDGET, "this change spends budget %s without naming the store's lease for it", b.ID)
		}
		l, err := a.tx.Lease(ctx, id)
		if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			// A lease granted after the backup the hub was restored from is adopted once
			// (account does it), at most as large as the hub would have granted.
			if ok, err := a.adoptable(ctx, store, p, &b, x); err != nil {
				return err
			} else if restore && ok {
				continue
			}
			return loyalty.Errorf(loyalty.EBUDGET, "this change spends budget %s from a lease the hub never granted this store", b.ID)
		} else if err != nil {
			return err
		}
		// In the restore window the backup's figures for a lease are older than the store's: its
		// renewals, and one lease's worth of refills, may have been lost. (A lease adopted at the
		// restore was sized as the hub grants: no more.)
		// Granted by the event time give or take the store's clock error, as for a tier
		// (tiersHeld): a store's first spend from a lease just granted can be dated a moment
		// before the grant. leases.margin may be 0; Claims.MaxFuture is at least a minute.
		active := !at.Before(l.CreatedAt.Add(-max(a.Lease.Margin, a.Claims.MaxFuture))) && !at.After(l.ExpiresAt)
		granted := l.Granted
		if restore {
			e, err := a.epoch(ctx)
			if err != nil {
				return err
			}
			active = true
			if l.CreatedAt.Before(e.RestoredAt) {
				more, err := a.restoreGrant(ctx, store, p, &b)
				if err != nil {
					return err
				}
				granted += more
			}
		}
		switch {
		case l.Store != store || l.Budget != b.ID:
			return loyalty.Errorf(loyalty.EBUDGET, "this change spends budget %s from a lease the hub never granted this store", b.ID)
		case l.State == LeaseSettled:
			return loyalty.Errorf(loyalty.EBUDGET, "this change spends budget %s from a lease that was already settled", b.ID)
		case !active:
			return loyalty.Errorf(loyalty.EBUDGET, "this change spends budget %s from a lease that was not active when it happened", b.ID)
		case l.Consumed+x > granted:
			return loyalty.Errorf(loyalty.EBUDGET, "this change overdraws the store's lease of budget %s (%d + %d of %d)", b.ID, l.Consumed, x, l.Granted)
		}
	}
	return nil
}

// storeInfo returns a store's record, read once per transaction.
func (a *applier) storeInfo(ctx context.Context, store string) (StoreInfo, error) {
	if s, ok := a.stores[store]; ok {
		return s, nil
	}
	s, err := a.tx.StoreInfo(ctx, store)
	if err != nil {
		return s, err
	}
	a.stores[store] = s
	return s, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
