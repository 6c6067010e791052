// Giving back what an expiry should not have taken (loyalty.ExpiryReplay): the trigger in apply,
// the replay of a member's expiries, and the expire delta of positive points that gives back.

package hub

import (
	"context"
	"slices"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// The reasons the hub's expire deltas carry. An expiry written before this version carries none:
// the replay keeps it as it was written (loyalty.ExpiryEntry.Rule nil), since an operator may
// have set its member right by hand meanwhile, with an adjustment the replay cannot tell apart.
const (
	ReasonExpired   = "expired"           // the expiry job took points
	ReasonGivenBack = "expiry given back" // a replay gave back what expiries took too much
)

// maxReplays is how many times one transaction replays one member's expiries as their changes
// are applied; the member's further changes that call for it are replayed once, when the
// transaction ends (giveBackDeferred). A push of hundreds of late changes for one member costs
// at most maxReplays + 1 replays, not hundreds, each a pass over the member's whole ledger.
const maxReplays = 16

// expireBack gives back what the member's expiries took that they should not have, now that d
// is applied, and returns how many points. Only two kinds of change can make an expiry wrong:
//
//   - one dated at or before the member's last expiry (Schedule.ExpiredAt): a store that was
//     offline, its sale or redemption reaching the hub late. From a store, it counts only with
//     the member's code as the store scanned it (proven: Delta.Presence, codeProvesLate):
//     a sale a store invents, dated before an expiry, would otherwise bring back points it never
//     paid for. The hub's own changes and the online channel's are dated by the hub.
//   - one that takes points back from a lot dated at or before the last expiry (a refund, a
//     positive adjustment's reversal): the lot's points may have expired already.
//
// Any other change costs a comparison. It runs before d's conflicts are judged, so that a late
// redemption paid for by expired points is no overdraft.
func (a *applier) expireBack(ctx context.Context, store string, d loyalty.Delta, proven bool) (int64, error) {
	sc := a.schedules[d.Member]
	if sc.ExpiredAt.IsZero() || d.Kind == loyalty.KindExpire || d.Kind == loyalty.KindTier {
		return 0, nil
	}
	late := a.lateForExpiry(d) && (proven || store == loyalty.HubStore || store == loyalty.OnlineStore)
	if !late {
		if d.Reverses == "" || d.Points >= 0 {
			return 0, nil
		}
		orig, err := a.tx.Delta(ctx, d.Reverses)
		if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			return 0, nil
		} else if err != nil {
			return 0, err
		}
		if !loyalty.IsLot(orig.Kind, orig.Points, orig.Reverses) || orig.EventTime().UTC().Truncate(time.Millisecond).After(sc.ExpiredAt) {
			return 0, nil
		}
	}
	if a.replayed == nil {
		a.replayed = make(map[string]*memberReplay)
	}
	r := a.replayed[d.Member]
	if r != nil && r.count >= maxReplays {
		r.deferred = true
		return 0, nil
	}
	return a.giveBack(ctx, d.Member)
}

// memberReplay is a member's ledger as the replay reads it, kept for the transaction: read once
// (giveBack), then each change apply makes added to it (noteReplay).
type memberReplay struct {
	entries  []loyalty.ExpiryEntry
	count    int  // replays made in this transaction
	deferred bool // a change called for one past maxReplays: replayed when the transaction ends
}

// giveBack replays member's expiries and gives back what they took too much: expire deltas of
// positive points, and the member's balance raised by as much.
func (a *applier) giveBack(ctx context.Context, member string) (int64, error) {
	r := a.replayed[member]
	if r == nil {
		r = &memberReplay{}
		proofs, err := a.tx.LateProofs(ctx, member)
		if err != nil {
			return 0, err
		}
		for after := int64(0); ; {
			page, err := a.tx.LedgerAfter(ctx, member, after, ledgerReadPage)
			if err != nil {
				return 0, err
			}
			for _, e := range page {
				x, err := a.replayEntry(ctx, e.Delta, e.ReceivedAt, proofs[e.ID])
				if err != nil {
					return 0, err
				}
				r.entries = append(r.entries, x)
			}
			if len(page) < ledgerReadPage {
				break
			}
			after = page[len(page)-1].Seq
		}
		a.replayed[member] = r
	}
	r.count++
	r.deferred = false
	// What is given back is at most what the expiries took; a balance is still bounded.
	back := min(loyalty.ExpiryReplay(r.entries), max(loyalty.MaxBalance-a.balances[member], 0))
	if back <= 0 {
		return 0, nil
	}
	p, err := a.current(ctx)
	if err != nil {
		return 0, err
	}
	now := a.now()
	for rest := back; rest > 0; {
		n := min(rest, loyalty.MaxPoints)
		g := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: member, Kind: loyalty.KindExpire,
			Points: n, RuleVersion: p.Version, OccurredAt: now, Reason: ReasonGivenBack}
		g.Normalize()
		if _, _, err := a.insert(ctx, g, g.Hash()); err != nil {
			return 0, err
		}
		a.noteChange(g)
		r.entries = append(r.entries, loyalty.ExpiryEntry{ID: g.ID, Kind: g.Kind, Points: g.Points, At: g.EventTime()})
		rest -= n
	}
	bal := a.balances[member] + back
	a.balances[member] = bal
	if !a.changed[member] {
		a.changed[member] = true
		a.order = append(a.order, member)
	}
	a.emit(EventExpiryReversed, map[string]any{"member_id": member, "points": back, "balance": bal,
		"occurred_at": now.UTC().Truncate(time.Millisecond)}, member, "back", now.UTC().Format(time.RFC3339Nano), a.lastGiveBack(member))
	return back, nil
}

// lastGiveBack is the id of the newest give-back delta in member's replay: a webhook event's key.
func (a *applier) lastGiveBack(member string) string {
	es := a.replayed[member].entries
	return es[len(es)-1].ID
}

// giveBackDeferred replays, once each, the members whose changes called for a replay past
// maxReplays in this transaction (expireBack). Their changes' conflicts were judged without it.
func (a *applier) giveBackDeferred(ctx context.Context) error {
	var members []string
	for m, r := range a.replayed {
		if r.deferred {
			members = append(members, m)
		}
	}
	slices.Sort(members)
	for _, m := range members {
		if _, err := a.giveBack(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// replayEntry is a ledger entry as the replay of expiries reads it. A store's change counts from
// when the hub received it, unless it came with proof that it happened when it says (proven:
// ProveLate): a store can date an invented sale before an expiry. An expiry the expiry job wrote
// carries the rule it was written under; one without ReasonExpired (written before give-backs,
// or under a rule version the hub no longer has) is kept as written.
func (a *applier) replayEntry(ctx context.Context, d loyalty.Delta, received time.Time, proven bool) (loyalty.ExpiryEntry, error) {
	x := loyalty.ExpiryEntry{ID: d.ID, Reverses: d.Reverses, Kind: d.Kind, Points: d.Points, At: d.EventTime()}
	if d.Store != loyalty.HubStore && d.Store != loyalty.OnlineStore && !proven {
		x.Known = received
	}
	if d.Kind == loyalty.KindExpire && d.Points < 0 && d.Reason == ReasonExpired {
		// The job dates its expiries when its run starts, and reads each batch's balances when
		// the batch's transaction does (the expiry's received time): the changes the hub had
		// counted by then, the replay counts too.
		x.Known = received
		p, err := a.program(ctx, d.RuleVersion)
		if err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
			return x, err
		} else if err == nil {
			x.Rule = p.Expiry
		}
	}
	return x, nil
}

// noteReplay adds a change apply made to its member's ledger as giveBack read it in this
// transaction, if it did.
func (a *applier) noteReplay(ctx context.Context, d loyalty.Delta, proven bool) error {
	r := a.replayed[d.Member]
	if r == nil {
		return nil
	}
	x, err := a.replayEntry(ctx, d, a.Now(), proven)
	r.entries = append(r.entries, x)
	return err
}

// ledgerReadPage is how many ledger entries giveBack reads at a time.
const ledgerReadPage = 1000

// codeProvesLate reports whether d, a store's change dated at or before its member's last
// expiry, proves that it happened when it says: it carries the member's code (codeShows), issued
// before the change (a code shown later proves no earlier visit) and at most Claims.MaxOffline
// before it (a code a store kept from an old visit proves nothing of a new one). The hub's clock
// issued the code and the store's clock dated the change: they may differ by Claims.MaxFuture.
func (a *applier) codeProvesLate(ctx context.Context, store string, d *loyalty.Delta) (bool, error) {
	if ok, err := a.codeShows(ctx, store, d); !ok || err != nil {
		return false, err
	}
	issued, at := time.Unix(a.scannedCodes[d.Presence].IssuedAt, 0), d.EventTime()
	return !issued.After(at.Add(a.Claims.MaxFuture)) && !issued.Before(at.Add(-a.Claims.MaxOffline)), nil
}

// lateForExpiry reports whether d is dated at or before its member's last expiry.
func (a *applier) lateForExpiry(d loyalty.Delta) bool {
	at := a.schedules[d.Member].ExpiredAt
	return !at.IsZero() && !d.EventTime().UTC().Truncate(time.Millisecond).After(at)
}
