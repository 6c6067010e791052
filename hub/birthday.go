package hub

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// AwardBirthdays awards the program's birthday action (an action rule with the id "birthday") to
// every member whose birthday it is, read in their home store's time zone (UTC without one), as
// an ordinary action: an earn delta of store online with rule "birthday", under the action's
// max_times, earn caps and budgets. Each award's idempotency key is birthday-<year>-<member id>,
// so a member gets it once a year however often the sweep runs, and however many hub processes
// run it at once. A hub that was down on the day catches up for loyalty.BirthdayGraceDays days.
// An award the program refuses (a used-up budget) is logged and tried again at the next sweep
// within those days. The hub runs it hourly, beside the points expiry; it returns how many
// members it awarded. Without a birthday action it does nothing.
func (h *Hub) AwardBirthdays(ctx context.Context) (int, error) {
	p, err := h.Program(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := p.Action(loyalty.ActionBirthday); err != nil {
		return 0, nil
	}
	now := h.Now()
	days := birthdayDays(now)
	zones := map[string]*time.Location{}
	awarded, after := 0, ""
	for {
		var ms []loyalty.Member
		err := h.Store.View(ctx, func(tx Tx) error {
			var err error
			ms, err = tx.BirthdayMembers(ctx, days, after, 200)
			return err
		})
		if err != nil || len(ms) == 0 {
			return awarded, err
		}
		for _, m := range ms {
			ok, err := h.awardBirthday(ctx, m, now, zones)
			if err != nil {
				return awarded, err
			}
			if ok {
				awarded++
			}
		}
		after = ms[len(ms)-1].ID
	}
}

// birthdayDays returns the birthdays ("MM-DD") that can be due at now in some time zone: the UTC
// dates from BirthdayGraceDays and a day before now (zones up to 12 hours behind UTC started the
// day later) to a day after it (zones up to 14 hours ahead started it earlier). 29 February goes
// with 28 February: it is celebrated then in other years. BirthdayDue decides for each member.
func birthdayDays(now time.Time) []string {
	now = now.UTC()
	var out []string
	for d := -loyalty.BirthdayGraceDays - 1; d <= 1; d++ {
		day := now.AddDate(0, 0, d).Format("01-02")
		out = append(out, day)
		if day == "02-28" {
			out = append(out, "02-29")
		}
	}
	return out
}

// awardBirthday awards m's birthday if it is due at now and was not awarded yet; zones caches the
// stores' time zones. Only a storage failure is an error: a refusal is logged.
func (h *Hub) awardBirthday(ctx context.Context, m loyalty.Member, now time.Time, zones map[string]*time.Location) (bool, error) {
	loc, err := h.homeZone(ctx, m.HomeStore, zones)
	if err != nil {
		return false, err
	}
	year, due := loyalty.BirthdayDue(m.Birthday, loc, m.CreatedAt, now)
	if !due {
		return false, nil
	}
	key := fmt.Sprintf("%s-%d-%s", loyalty.ActionBirthday, year, m.ID)
	// Awarded already by an earlier sweep? A read is enough to skip it on the hourly sweeps of
	// the catch-up days, without a write transaction.
	var found bool
	if err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		_, _, found, err = tx.Idempotent(ctx, "action", key)
		return err
	}); err != nil || found {
		return false, err
	}
	// Another hub process may award it between that read and this call: the key makes the
	// second call answer the first award, and fresh says which call made it.
	_, fresh, err := h.action(ctx, loyalty.ActionRequest{OrderID: key, MemberID: m.ID, Action: loyalty.ActionBirthday})
	switch loyalty.ErrorCode(err) {
	case "":
		return fresh, nil
	case loyalty.EINTERNAL:
		return false, fmt.Errorf("birthday points for member %s: %w", m.ID, err)
	}
	h.Logger.Info("no birthday points", slog.String("member", m.ID), slog.Int("year", year), slog.String("reason", loyalty.ErrorMessage(err)))
	return false, nil
}

// homeZone returns the time zone of a member's home store: UTC without a home store, or for a
// store without a zone or with one this system cannot load.
func (h *Hub) homeZone(ctx context.Context, store string, zones map[string]*time.Location) (*time.Location, error) {
	if store == "" {
		return time.UTC, nil
	}
	if loc, ok := zones[store]; ok {
		return loc, nil
	}
	var info StoreInfo
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		info, err = tx.StoreInfo(ctx, store)
		return err
	})
	if err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		return nil, err
	}
	loc, lerr := time.LoadLocation(info.TimeZone) // "" is UTC
	if lerr != nil {
		loc = time.UTC
	}
	zones[store] = loc
	return loc, nil
}
