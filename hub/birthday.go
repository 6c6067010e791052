package hub

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
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
	awarded := 0
	alone := false // a batch was refused: the rest of this sweep goes one award at a time
	for _, day := range days {
		for after := ""; ; {
			var ms []loyalty.Member
			err := h.Store.View(ctx, func(tx Tx) error {
				var err error
				ms, err = tx.BirthdayMembers(ctx, day, after, 200)
				return err
			})
			if err != nil {
				return awarded, err
			}
			if len(ms) == 0 {
				break
			}
			due, err := h.dueBirthdays(ctx, ms, now, zones)
			if err != nil {
				return awarded, err
			}
			for len(due) > 0 {
				batch := due[:min(birthdayBatch, len(due))]
				n, err := h.awardBirthdays(ctx, batch, &alone)
				awarded += n
				if err != nil {
					return awarded, err
				}
				due = due[len(batch):]
			}
			after = ms[len(ms)-1].ID
		}
	}
	return awarded, nil
}

// birthdayBatch is how many birthday awards share a write transaction and its commit. An award
// costs about 0.2 ms of writer time on SQLite and 0.5 to 0.65 ms on PostgreSQL (docs/SCALING.md),
// so a batch holds the writer for about 10 ms, or 25 to 35 ms on PostgreSQL: a push waits no
// longer than that for it, and the commit's wait for the disk is shared by 50.
const birthdayBatch = 50

// birthday is a member's birthday award that is due.
type birthday struct {
	req  loyalty.ActionRequest // keyed birthday-<year>-<member id>
	year int
}

// dueBirthdays returns the awards of ms that are due at now and were not made yet; zones caches
// the stores' time zones.
func (h *Hub) dueBirthdays(ctx context.Context, ms []loyalty.Member, now time.Time, zones map[string]*time.Location) ([]birthday, error) {
	var due []birthday
	for _, m := range ms {
		loc, err := h.homeZone(ctx, m.HomeStore, zones)
		if err != nil {
			return nil, err
		}
		if year, ok := loyalty.BirthdayDue(m.Birthday, loc, m.CreatedAt, now); ok {
			key := loyalty.BirthdayOrderID(year, m.ID)
			due = append(due, birthday{req: loyalty.ActionRequest{OrderID: key, MemberID: m.ID, Action: loyalty.ActionBirthday}, year: year})
		}
	}
	if len(due) == 0 {
		return nil, nil
	}
	// Awarded already by an earlier sweep? A read is enough to skip them on the hourly sweeps of
	// the catch-up days, without a write transaction.
	var todo []birthday
	err := h.Store.View(ctx, func(tx Tx) error {
		todo = nil
		for _, b := range due {
			_, _, found, err := tx.Idempotent(ctx, "action", b.req.OrderID)
			if err != nil {
				return err
			}
			if !found {
				todo = append(todo, b)
			}
		}
		return nil
	})
	return todo, err
}

// awardBirthdays makes the awards of bs in one transaction, one commit for them all, with one
// applier (runOnlineAll), and returns how many it made. Another hub process may award one
// between dueBirthdays' read and this transaction: its key makes the award here answer that one
// (not fresh, not counted). If an award is refused (a used-up budget, say), nothing of the batch
// is kept and each is made alone instead, so that a refusal costs only its own award; *alone is
// then set, and later batches of the sweep, which a used-up budget would refuse as well, go one
// at a time from the start. A storage failure is returned as it is.
func (h *Hub) awardBirthdays(ctx context.Context, bs []birthday, alone *bool) (int, error) {
	if *alone {
		return h.awardEach(ctx, bs)
	}
	calls := make([]onlineCall, len(bs))
	for i, b := range bs {
		c, err := h.actionCall(ctx, b.req)
		if err != nil {
			return 0, err
		}
		calls[i] = c
	}
	made := 0
	err := h.update(ctx, func(tx Tx) error {
		p, _, err := tx.Program(ctx) // parsed once for the batch
		if err != nil {
			return err
		}
		made, err = h.runOnlineAll(ctx, tx, calls, &p)
		return err
	})
	switch loyalty.ErrorCode(err) {
	case "":
		return made, nil
	case loyalty.EINTERNAL:
		return 0, fmt.Errorf("birthday points: %w", err)
	}
	*alone = true
	return h.awardEach(ctx, bs)
}

// awardEach makes the awards of bs one at a time, each in a transaction of its own.
func (h *Hub) awardEach(ctx context.Context, bs []birthday) (int, error) {
	made := 0
	for _, b := range bs {
		ok, err := h.awardBirthday(ctx, b)
		if err != nil {
			return made, err
		}
		if ok {
			made++
		}
	}
	return made, nil
}

// awardBirthday makes one award in a transaction of its own and says whether this call made it.
// Only a storage failure is an error: a refusal is logged, and the award is tried again at the
// next sweep within the grace days.
func (h *Hub) awardBirthday(ctx context.Context, b birthday) (bool, error) {
	_, fresh, err := h.action(ctx, b.req)
	switch loyalty.ErrorCode(err) {
	case "":
		return fresh, nil
	case loyalty.EINTERNAL:
		return false, fmt.Errorf("birthday points for member %s: %w", b.req.MemberID, err)
	}
	h.Logger.Info("no birthday points", slog.String("member", b.req.MemberID), slog.Int("year", b.year), slog.String("reason", loyalty.ErrorMessage(err)))
	return false, nil
}

// birthdayDays returns the birthdays ("MM-DD") that can be due at now in some time zone: the UTC
// dates from BirthdayGraceDays and a day before now (zones up to 12 hours behind UTC started the
// day later) to a day after it (zones up to 14 hours ahead started it earlier). 29 February goes
// with 28 February: it is celebrated then in other years. BirthdayDue decides for each member.
// Each day is listed once (in a leap year 29 February can come as itself and with 28 February):
// the sweep pages through each day's members.
func birthdayDays(now time.Time) []string {
	now = now.UTC()
	var out []string
	add := func(day string) {
		if !slices.Contains(out, day) {
			out = append(out, day)
		}
	}
	for d := -loyalty.BirthdayGraceDays - 1; d <= 1; d++ {
		day := now.AddDate(0, 0, d).Format("01-02")
		add(day)
		if day == "02-28" {
			add("02-29")
		}
	}
	return out
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
