package hub

import (
	"context"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// standing counts what only the hub knows about a member now: their redemptions and earnings in
// the current period of each per-member limit and earn cap of the program, at every store and
// online, and the state of one of their vouchers. A connected store decides with it, so that
// being online means being exact (docs/PROTOCOL.md, "Online means exact").
func (a *applier) standing(ctx context.Context, member, voucher string) (*lsync.Standing, error) {
	p, err := a.current(ctx)
	if err != nil {
		return nil, err
	}
	now := a.Now()
	st := &lsync.Standing{At: now.UnixMilli(), RuleVersion: p.Version}
	for _, l := range p.MemberLimits {
		from, to := loyalty.PeriodBounds(l.Period, now)
		n, err := a.tx.MemberRedemptions(ctx, member, l.Reward, from, to)
		if err != nil {
			return nil, err
		}
		st.Redemptions = append(st.Redemptions, lsync.Usage{Reward: l.Reward, Period: l.Period, Used: n})
	}
	for _, c := range p.EarnCaps {
		from, to := loyalty.PeriodBounds(c.Period, now)
		n, err := a.tx.MemberEarned(ctx, member, ruleColumn(c.Rule), from, to)
		if err != nil {
			return nil, err
		}
		st.Earned = append(st.Earned, lsync.Usage{Rule: c.Rule, Period: c.Period, Used: n})
	}
	if voucher != "" {
		if st.Voucher, err = a.voucherState(ctx, member, voucher); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// voucherState is the state of one of member's vouchers. A voucher of another member is
// "unknown": a store learns nothing about vouchers it was not shown.
func (a *applier) voucherState(ctx context.Context, member, id string) (string, error) {
	v, err := a.tx.Voucher(ctx, id)
	switch {
	case loyalty.ErrorCode(err) == loyalty.ENOTFOUND || err == nil && v.Member != member:
		return lsync.VoucherUnknown, nil
	case err != nil:
		return "", err
	case !v.VoidedAt.IsZero():
		return lsync.VoucherCancelled, nil
	}
	uses, err := a.tx.VoucherUses(ctx, id)
	if err != nil {
		return "", err
	}
	if len(uses) > 0 {
		return lsync.VoucherUsed, nil
	}
	return lsync.VoucherUnused, nil
}
