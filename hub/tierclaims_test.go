package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// goldTiers is a program's tiers: base from 0, gold from 100.00 spent for ever.
func goldTiers(p *loyalty.Program) {
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisSpend, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
		{ID: "base", Threshold: 0, Multiplier: 1000}, {ID: "gold", Threshold: 10_000, Multiplier: 2000}}}
}

// welcomeHub is a hub on goldTiers with a campaign of 500 points for the entry tier's members,
// synced with its stores at t0, and its clock.
func welcomeHub(t *testing.T) (*hub.Hub, *time.Time) {
	t.Helper()
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		goldTiers(p)
		p.Campaigns = []loyalty.Campaign{{ID: "welcome", Name: "Reach gold!", Start: t0.Add(-time.Hour), End: t0.Add(30 * 24 * time.Hour),
			Bonus: 500, Segment: loyalty.Segment{Tiers: []string{"base"}}}}
	})
	syncStores(t, h)
	return h, &now
}

// baseMemberHub is a hub on goldTiers (version 2), synced with its stores at t0, where m2 was
// placed in base by a sale a minute later (which is not ledgered), and its clock.
func baseMemberHub(t *testing.T) (*hub.Hub, *time.Time) {
	t.Helper()
	h, now := goldHub(t)
	*now = t0.Add(time.Minute)
	if _, err := h.Earn(context.Background(), loyalty.EarnRequest{OrderID: "first", MemberID: "m2", Amount: 1000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	return h, now
}

// goldHub is a hub on a clock the test moves (from t0), with the gold tiers published and the
// stores synced to them.
func goldHub(t *testing.T) (*hub.Hub, *time.Time) {
	t.Helper()
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, goldTiers)
	syncStores(t, h)
	return h, &now
}

// TestTierClaims_EntryTierOnlyWhenHeld: a store may claim the entry tier for a member only if the
// hub's history leaves room for it between the store's floor and the sale. It was always
// allowed: a store could claim it for a member gold for long, and collect a campaign for the
// entry tier's members.
func TestTierClaims_EntryTierOnlyWhenHeld(t *testing.T) {
	h, now := welcomeHub(t)
	ctx := context.Background()
	*now = t0.Add(10 * time.Minute)
	// m2 is placed in base by a first sale (no ledgered change), m1 reaches gold.
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "first", MemberID: "m2", Amount: 1000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "big", MemberID: "m1", Amount: 20_000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	// A day later s1 has pulled with nothing left to push: its floor is after m1's upgrade.
	*now = t0.Add(24 * time.Hour)
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000, Flushed: true}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Minute)
	gold := earn("s1", "m1", 1000)
	gold.RuleVersion, gold.Tier, gold.Points, gold.OccurredAt = 2, "base", 510, *now
	mustReject(t, h, "s1", gold, loyalty.EINVALID)
	base := earn("s1", "m2", 1000)
	base.RuleVersion, base.Tier, base.Points, base.OccurredAt = 2, "base", 510, *now
	mustApply(t, h, "s1", base)
}

// TestTierClaims_DroppedOrRenamedTier: a member in a tier the program has dropped or renamed
// since earns as one without a tier, online and at a store, until a review places them: every
// earn of theirs was refused ("no tier "gold" in rule version 3"), and an honest store's sale was
// lost.
func TestTierClaims_DroppedOrRenamedTier(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *loyalty.Program)
	}{
		{"dropped", func(p *loyalty.Program) {}},
		{"renamed", func(p *loyalty.Program) {
			goldTiers(p)
			p.Tiers.Tiers[1].ID = "vip"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, now := goldHub(t)
			ctx := context.Background()
			*now = t0.Add(time.Minute)
			if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "big", MemberID: "m1", Amount: 20_000, Currency: "EUR"}); err != nil {
				t.Fatal(err)
			}
			*now = t0.Add(2 * time.Minute)
			withProgram(t, h, tc.edit) // version 3
			syncStores(t, h)
			*now = t0.Add(3 * time.Minute)
			d := earn("s1", "m1", 1000) // as the agent stamps it: its copy's tier, which earns 1x under version 3
			d.RuleVersion, d.Tier, d.Points, d.OccurredAt = 3, "gold", 10, *now
			mustApply(t, h, "s1", d)
			rc, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "small", MemberID: "m1", Amount: 1000, Currency: "EUR"})
			if err != nil || rc.Points < 10 {
				t.Fatalf("an online earn of 10.00 after version 3: %+v, %v; want at least 10 points", rc, err)
			}
		})
	}
}

// TestTierClaims_RenamedEntryTier: a program renames the entry tier, and the hourly review
// ledgers its members' move to the new id; a store that has the new program but not the member's
// move yet sells under the old id, at 1x as its agent computes: accepted. It was rejected, for
// every entry-tier member at every store that had not synced since the review.
func TestTierClaims_RenamedEntryTier(t *testing.T) {
	h, now := baseMemberHub(t)
	ctx := context.Background()
	*now = t0.Add(2 * time.Minute)
	withProgram(t, h, func(p *loyalty.Program) { goldTiers(p); p.Tiers.Tiers[0].ID = "bronze" }) // version 3
	syncStores(t, h)                                                                             // s2 has version 3, and m2 in base
	*now = t0.Add(3 * time.Minute)
	if n, err := h.Requalify(ctx); err != nil || n == 0 {
		t.Fatalf("the review after the rename: %d changed, %v", n, err)
	}
	*now = t0.Add(4 * time.Minute)
	d := earn("s2", "m2", 1000)
	d.RuleVersion, d.Tier, d.Points, d.OccurredAt = 3, "base", 10, *now
	mustApply(t, h, "s2", d)
	// A tier of the version the member never held is refused; one the version does not have
	// earns as no tier, which needs no history.
	x := earn("s2", "m2", 1000)
	x.RuleVersion, x.Tier, x.Points, x.OccurredAt = 3, "gold", 20, *now
	mustReject(t, h, "s2", x, loyalty.EINVALID)
	y := earn("s2", "m2", 1000)
	y.RuleVersion, y.Tier, y.Points, y.OccurredAt = 3, "platinum", 10, *now
	mustApply(t, h, "s2", y)
}

// TestTierClaims_RenamedEntryTierThenAnotherVersion: the entry tier is renamed, and another
// version follows before the review moves the member: a store with the newest version and the
// member's copy in the old id sells at 1x, before or after the review. It was refused: the old
// id was the entry tier of neither version the hub looked at.
func TestTierClaims_RenamedEntryTierThenAnotherVersion(t *testing.T) {
	for _, reviewFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "review after the sale", true: "review before the sale"}[reviewFirst], func(t *testing.T) {
			h, now := baseMemberHub(t)
			ctx := context.Background()
			*now = t0.Add(2 * time.Minute)
			bronze := func(p *loyalty.Program) { goldTiers(p); p.Tiers.Tiers[0].ID = "bronze" }
			withProgram(t, h, bronze) // version 3
			*now = t0.Add(3 * time.Minute)
			withProgram(t, h, func(p *loyalty.Program) { bronze(p); p.Tiers.Tiers[0].Name = "Bronze" }) // version 4
			syncStores(t, h)                                                                            // s2 has version 4, and m2 in base
			review := func() {
				t.Helper()
				if n, err := h.Requalify(ctx); err != nil || n == 0 {
					t.Fatalf("the review: %d changed, %v", n, err)
				}
			}
			*now = t0.Add(4 * time.Minute)
			if reviewFirst {
				review()
			}
			*now = t0.Add(5 * time.Minute)
			d := earn("s2", "m2", 1000)
			d.RuleVersion, d.Tier, d.Points, d.OccurredAt = 4, "base", 10, *now
			if !reviewFirst {
				*now = t0.Add(6 * time.Minute)
				review()
			}
			mustApply(t, h, "s2", d)
		})
	}
}

// TestTierClaims_RestoredBeforePlacement: a hub restored from a backup taken before a member's
// placement in the entry tier (which is not ledgered) has them in no tier, while a store that
// pulled the placement sends its sale stamped with it again: accepted, since the member's total
// places them there. It was refused, and a rejection is final.
func TestTierClaims_RestoredBeforePlacement(t *testing.T) {
	h, now := goldHub(t)
	ctx := context.Background()
	*now = t0.Add(10 * time.Minute)
	if _, err := h.Restored(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := h.Member(ctx, "m2", 0); err != nil || m.Tier != "" {
		t.Fatalf("m2 at the restored hub: %+v, %v; want no tier (the backup was taken before the placement)", m, err)
	}
	d := earn("s2", "m2", 1000) // the store's copy: base, as the lost placement sent it
	d.RuleVersion, d.Tier, d.Points, d.OccurredAt = 2, "base", 10, t0.Add(2*time.Minute)
	mustApply(t, h, "s2", d)
}

// TestTierClaims_EntryTierOfAMemberNeverInIt: a member whose first placement was straight into
// gold never held the entry tier; a store that does not hold them (its agent would stamp "")
// claims it, and the entry tier's campaign with it: refused.
func TestTierClaims_EntryTierOfAMemberNeverInIt(t *testing.T) {
	h, now := welcomeHub(t)
	ctx := context.Background()
	*now = t0.Add(10 * time.Minute)
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "big", MemberID: "m1", Amount: 20_000, Currency: "EUR"}); err != nil {
		t.Fatal(err) // from no tier to gold, ledgered
	}
	*now = t0.Add(time.Hour)
	forged := earn("s2", "m1", 1000)
	forged.RuleVersion, forged.Tier, forged.Points, forged.OccurredAt = 2, "base", 510, *now
	mustReject(t, h, "s2", forged, loyalty.EINVALID)
}

// TestTierClaims_UpgradeAMomentAfterTheSale: a store dates its changes on the hub's clock as it
// estimates it from a round trip, which under load may run behind the hub's by as much as the
// round trip took. A sale made just after the store heard of a member's upgrade can then be dated
// just before the upgrade. The store's claim is honest and stands within the clock error the hub
// allows a store (claims.max_future, as for a rule version published a moment after the sale);
// it was rejected, and the member's sale lost. Beyond it, the claim is not the store's to make.
func TestTierClaims_UpgradeAMomentAfterTheSale(t *testing.T) {
	h, now := goldHub(t)
	ctx := context.Background()
	*now = t0.Add(10 * time.Minute)
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "big", MemberID: "m1", Amount: 20_000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	upgraded := *now
	*now = now.Add(50 * time.Millisecond)
	sale := earn("s1", "m1", 1000)
	sale.RuleVersion, sale.Tier, sale.Points, sale.OccurredAt = 2, "gold", 20, upgraded.Add(-200*time.Millisecond)
	mustApply(t, h, "s1", sale)

	far := earn("s1", "m1", 1000)
	far.RuleVersion, far.Tier, far.Points, far.OccurredAt = 2, "gold", 20, upgraded.Add(-h.Claims.MaxFuture-time.Second)
	mustReject(t, h, "s1", far, loyalty.EINVALID)
}
