package hub_test

import (
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// The kill switch is judged by the program's history, not by the program the hub has when a
// store's redemptions arrive: a redemption made before the reward was switched off (version 2) is
// not a `disabled` conflict, one made while it was off is (the store had not heard), and one made
// after it was switched back on (version 3) is not, whenever each arrives.
func TestKillSwitch_JudgedByTheProgramsHistory(t *testing.T) {
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	fund(t, h, "m1", 1000)
	off := t0.Add(time.Hour)
	now = off
	withProgram(t, h, func(p *loyalty.Program) { p.Rewards[0].Disabled = true }) // version 2: coffee off
	on := t0.Add(2 * time.Hour)
	now = on
	withProgram(t, h, func(p *loyalty.Program) {}) // version 3: coffee on again

	// s1 was offline with version 1 all along, and comes back now.
	now = t0.Add(3 * time.Hour)
	coffee := func(at time.Time) loyalty.Delta {
		d := redeem("s1", "m1", "coffee", 50)
		d.OccurredAt = at
		return d
	}
	before := coffee(off.Add(-5 * time.Second))
	during := coffee(off.Add(30 * time.Minute))
	after := coffee(on.Add(time.Minute))
	for _, d := range []loyalty.Delta{before, during, after} {
		mustApply(t, h, "s1", d)
	}
	cs := conflictsOf(t, h, hub.ConflictDisabled)
	if len(cs) != 1 || cs[0].Deltas[0] != during.ID {
		t.Fatalf("disabled conflicts: %+v; want one, for the coffee redeemed while it was off", cs)
	}
}

// A redemption made seconds before the switch-off that arrives after it is not a conflict, and
// one made after it is, also while the hub's current program still has the reward off.
func TestKillSwitch_RedemptionJustBeforeTheSwitchOff(t *testing.T) {
	h := openHub(t)
	now := t0
	h.Now = func() time.Time { return now }
	fund(t, h, "m1", 1000)
	withProgram(t, h, func(p *loyalty.Program) { p.Rewards[1].Offline = loyalty.OfflineAllow }) // version 2
	syncStores(t, h)
	off := t0.Add(time.Hour)
	now = off
	withProgram(t, h, func(p *loyalty.Program) { p.Rewards[1].Disabled = true }) // version 3: five-off off
	now = off.Add(10 * time.Minute)
	just := redeem("s1", "m1", "five-off", 100)
	just.RuleVersion, just.OccurredAt = 2, off.Add(-3*time.Second)
	late := redeem("s1", "m1", "five-off", 100)
	late.RuleVersion, late.OccurredAt = 2, off.Add(5*time.Minute)
	mustApply(t, h, "s1", just)
	mustApply(t, h, "s1", late)
	if cs := conflictsOf(t, h, hub.ConflictDisabled); len(cs) != 1 || cs[0].Deltas[0] != late.ID {
		t.Errorf("disabled conflicts: %+v; want one, for the five-off redeemed 5 minutes after the switch-off", cs)
	}
}

// SetProgramIf publishes only on the version it was given, so two operators who each switch a
// reward off on the program they read do not undo each other: the later one is told, and its
// switch made again on the new version keeps both.
func TestSetProgramIf_NeverUndoesAnotherChange(t *testing.T) {
	h := openHub(t)
	ctx := t.Context()
	read := func() loyalty.Program {
		p, err := h.Program(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := read(), read() // two operators open the program
	a.Rewards[0].Disabled = true
	if _, err := h.SetProgramIf(ctx, a, a.Version); err != nil {
		t.Fatal(err)
	}
	b.Rewards[1].Disabled = true
	if _, err := h.SetProgramIf(ctx, b, b.Version); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Fatalf("a switch made on an old version: %v, want ECONFLICT", err)
	}
	if p := read(); !p.Rewards[0].Disabled || p.Rewards[1].Disabled {
		t.Fatalf("after the refused publish: reward 0 off %v, reward 1 off %v", p.Rewards[0].Disabled, p.Rewards[1].Disabled)
	}
	b = read()
	b.Rewards[1].Disabled = true
	if _, err := h.SetProgramIf(ctx, b, b.Version); err != nil {
		t.Fatal(err)
	}
	if p := read(); !p.Rewards[0].Disabled || !p.Rewards[1].Disabled {
		t.Fatalf("both switches should hold: reward 0 off %v, reward 1 off %v", p.Rewards[0].Disabled, p.Rewards[1].Disabled)
	}
}
