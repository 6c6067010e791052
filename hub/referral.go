// Referrals: the "give X, get X" bonus at a referred member's first qualifying purchase.

package hub

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// referral pays the "give X, get X" bonus at a referred member's first qualifying purchase, from
// any store or channel: two hub-made earn deltas, once, unless that purchase is refunded
// (referralRefunded). They are charged to the program's
// points_issued budgets directly, without a lease (account), so they are paid only when those
// budgets have room for both, as an online call is checked; otherwise the bonus waits for the
// member's next qualifying purchase (docs/BUDGETS.md, "What a budget counts").
func (a *applier) referral(ctx context.Context, d loyalty.Delta) error {
	if d.Kind != loyalty.KindEarn || d.Rule != "" {
		return nil
	}
	m := a.members[d.Member]
	if m.ReferredBy == "" || m.ReferralPaid {
		return nil
	}
	p, err := a.current(ctx)
	if err != nil || p.Referral == nil {
		return err
	}
	// min_amount is in the program's currency, like every amount in the program: a sale in
	// another of earn.currencies is read at its rate, as campaign minimums are. A sale in a
	// currency the program no longer earns in does not qualify.
	if value, err := p.ProgramAmount(d.Amount, d.Currency); err != nil || value < p.Referral.MinAmount {
		return nil
	}
	// A referrer erased since (or gone) gets nothing: their account's codes name no one any more,
	// so the points could never be spent, and nothing new is tied to an account that asked to be
	// forgotten. The referred member still gets theirs.
	get := p.Referral.Get
	if _, err := a.balance(ctx, m.ReferredBy); loyalty.ErrorCode(err) == loyalty.ENOTFOUND || err == nil && a.members[m.ReferredBy].Erased {
		get = 0
	} else if err != nil {
		return err
	}
	var bonuses []loyalty.Delta
	for _, bonus := range []struct {
		member string
		points int64
	}{{m.ID, p.Referral.Give}, {m.ReferredBy, get}} {
		if bonus.points == 0 {
			continue
		}
		bonuses = append(bonuses, loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: bonus.member, Kind: loyalty.KindEarn,
			Rule: loyalty.RuleReferral, Points: bonus.points, Currency: p.Currency, RuleVersion: p.Version, OccurredAt: a.Now(),
			OrderID: "referral-" + m.ID})
	}
	if err := a.fits(ctx, p, bonuses...); loyalty.ErrorCode(err) == loyalty.EBUDGET {
		a.Logger.Info("referral bonus not paid yet: it waits for the member's next qualifying purchase",
			slog.String("member", m.ID), slog.String("reason", loyalty.ErrorMessage(err)))
		return nil
	} else if err != nil {
		return err
	}
	if err := a.tx.SetReferralPaid(ctx, m.ID, d.ID); err != nil {
		return err
	}
	m.ReferralPaid = true
	a.members[m.ID] = m
	for _, b := range bonuses {
		r, err := a.apply(ctx, loyalty.HubStore, b)
		if err != nil {
			return err
		}
		if r.Status != lsync.StatusApplied {
			return fmt.Errorf("referral bonus for %s: %s %s", b.Member, r.Code, r.Message)
		}
	}
	return nil
}

// referralRefunded takes a referred member's referral bonuses back when d, a refund, leaves the
// sale that gave them short of the program's min_amount: refunded in full, or in part down to
// less (read at today's rates, as referral reads a sale). Both bonuses are reversed, as far as
// they stand, and the member's next qualifying purchase gives them again: a purchase returned
// earns no bonus, however often it is made and returned. A partial refund under a program that
// has no referral bonus any more takes them back only when nothing of the sale is left. Bonuses
// given before the hub recorded their sale (ReferralSale "") stay.
func (a *applier) referralRefunded(ctx context.Context, d loyalty.Delta) error {
	if d.Kind != loyalty.KindReverse {
		return nil
	}
	m := a.members[d.Member]
	if m.ReferredBy == "" || !m.ReferralPaid {
		return nil
	}
	sale, err := a.tx.ReferralSale(ctx, m.ID)
	if err != nil || sale != d.Reverses {
		return err
	}
	orig, err := a.tx.Delta(ctx, sale)
	if err != nil {
		return err
	}
	e, err := a.entry(ctx, orig.Delta)
	if err != nil {
		return err
	}
	left := e.Left()
	if !left.None {
		p, err := a.current(ctx)
		if err != nil {
			return err
		}
		if p.Referral == nil {
			return nil
		}
		if value, err := p.ProgramAmount(left.Amount, orig.Currency); err != nil || value >= p.Referral.MinAmount {
			return nil // what is left still qualifies, or cannot be read at today's rates
		}
	}
	if err := a.tx.SetReferralPaid(ctx, m.ID, ""); err != nil {
		return err
	}
	m.ReferralPaid = false
	a.members[m.ID] = m
	bonuses, err := a.orderEntries(ctx, loyalty.HubStore, "referral-"+m.ID)
	if err != nil {
		return err
	}
	for _, b := range loyalty.ToReverse(bonuses) {
		if b.Rule != loyalty.RuleReferral {
			continue
		}
		r := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Member: b.Member, OrderID: b.OrderID, OccurredAt: a.Now()}
		r.Undo(b)
		res, err := a.apply(ctx, loyalty.HubStore, r)
		if err != nil {
			return err
		}
		if res.Status != lsync.StatusApplied {
			return fmt.Errorf("taking back the referral bonus of %s: %s %s", b.Member, res.Code, res.Message)
		}
	}
	a.Logger.Info("referral bonuses taken back: the purchase that gave them was refunded", slog.String("member", m.ID))
	return nil
}
