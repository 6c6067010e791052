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
// any store or channel: two hub-made earn deltas, once. They are charged to the program's
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
	var bonuses []loyalty.Delta
	for _, bonus := range []struct {
		member string
		points int64
	}{{m.ID, p.Referral.Give}, {m.ReferredBy, p.Referral.Get}} {
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
	if err := a.tx.SetReferralPaid(ctx, m.ID); err != nil {
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
