package main

// The bench's data at the hub: members in bulk, the preload, the deltas the simulated stores
// push, and the hub's sweeps over all of it.

import (
	"context"
	"fmt"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// memberID is the id of the bench's i-th member.
func memberID(i int) string { return fmt.Sprintf("m%07d", i) }

// createMembers adds n members straight through the hub's Store, thousands per transaction:
// Hub.CreateMember commits each one (and its audit entry) on its own, which would make a chain's
// member base take longer to create than everything the bench measures. Each member is stored as
// CreateMember and the hub's first sweep would leave it, so the sweeps measured later meet a
// steady state: in the tier a member without purchases has, with a change version of its own (a
// store's change feed pages by version). The first inStore members have store as their home
// store, so that store's agent syncs them. Birthdays are spread over the year, and the accounts
// are a year old, as in a member base that has been running. (Before 2026-12-05 their first tier
// review was still due, so the steady sweeps' figure held a review of every member.)
func createMembers(ctx context.Context, s hub.Store, p *loyalty.Program, n int, store string, inStore int) error {
	tier := ""
	if p.Tiers != nil {
		tier = p.Tiers.TierFor(0).ID
	}
	created := time.Now().UTC().AddDate(-1, 0, -30).Truncate(time.Millisecond)
	leapYear := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	const perTx = 5000
	for from := 0; from < n; from += perTx {
		err := s.Update(ctx, func(tx hub.Tx) error {
			for i := from; i < min(from+perTx, n); i++ {
				v, err := tx.NextVersion(ctx)
				if err != nil {
					return err
				}
				m := loyalty.Member{ID: memberID(i), Tier: tier, Version: v, CreatedAt: created,
					Birthday: leapYear.AddDate(0, 0, i%366).Format("01-02")}
				if i < inStore {
					m.HomeStore = store
				}
				if err := tx.InsertMember(ctx, m); err != nil {
					return err
				}
				if m.HomeStore != "" {
					if err := tx.Subscribe(ctx, store, m.ID); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("create members: %w", err)
		}
	}
	// A new member's tier review is due at once (InsertMember), to place them in the entry
	// tier; these are placed already, and with no purchase nothing of theirs can leave a tier
	// window: the hub's first sweep would give them no next review, and neither does this. (It
	// clears every member's review: the bench's database is new, and these are all it holds.)
	err := s.Update(ctx, func(tx hub.Tx) error { return tx.ScheduleAll(ctx, hub.JobTiers, time.Time{}) })
	if err != nil {
		return fmt.Errorf("create members: %w", err)
	}
	return nil
}

// earnDelta is a sale of amount at store to member, with the points the program gives it at at:
// the hub recomputes them and rejects a delta that says otherwise. The tier is left empty (a
// member the store does not know), which the hub accepts whatever the member's tier.
func earnDelta(p *loyalty.Program, store, member string, amount int64, order string, at time.Time) loyalty.Delta {
	d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: store, Member: member, Kind: loyalty.KindEarn, Amount: amount,
		Currency: p.Currency, OrderID: order, RuleVersion: p.Version, OccurredAt: at}
	if d.Currency == "" {
		d.Currency = "EUR"
	}
	res, err := p.ComputeEarn(loyalty.EarnInput{Amount: d.Amount, Currency: d.Currency, At: d.EventTime(), Location: time.UTC})
	if err == nil {
		d.Points = res.Points
	} // else the hub rejects it, and the bench says so
	return d
}

// pullOnce makes store's first sync with the hub, as an agent does when it starts: the hub
// accepts deltas only under rule versions it sent the store, and dated after its last sync.
func pullOnce(ctx context.Context, h *hub.Hub, store string) error {
	_, err := pullFrom(ctx, h, store, 0)
	return err
}

// pullFrom pulls as store from cursor until the store is current, and returns its new cursor.
func pullFrom(ctx context.Context, h *hub.Hub, store string, cursor int64) (int64, error) {
	for more := true; more; {
		ch, err := h.Pull(ctx, store, lsync.Pull{Cursor: cursor, Limit: 500, Flushed: true})
		if err != nil {
			return 0, err
		}
		cursor, more = ch.Cursor, ch.More
	}
	return cursor, nil
}

// syncedBefore brings store to where a store that was syncing before an outage stands when its
// link goes down: current with the hub, and the answer of its last pull confirmed (by the next
// pull, as the agent's next heartbeat does). It returns the store's cursor, from which the store
// goes on when it comes back: a reconnecting agent pulls from the cursor it kept, not from 0.
func syncedBefore(ctx context.Context, h *hub.Hub, store string) (int64, error) {
	cursor, err := pullFrom(ctx, h, store, 0)
	if err != nil {
		return 0, err
	}
	return pullFrom(ctx, h, store, cursor)
}

// pushAll pushes n deltas made by mk through Hub.Push as store, batch at a time, and fails on
// the first delta the hub does not apply: the bench measures applying, not refusing.
func pushAll(ctx context.Context, h *hub.Hub, store string, n, batch int, mk func(int) loyalty.Delta) error {
	ds := make([]loyalty.Delta, 0, batch)
	for i := range n {
		ds = append(ds, mk(i))
		if len(ds) < batch && i < n-1 {
			continue
		}
		ack, err := h.Push(ctx, store, ds)
		if err != nil {
			return err
		}
		for _, res := range ack.Results {
			if res.Status != lsync.StatusApplied {
				return fmt.Errorf("the hub did not apply a bench delta of store %s: %s %s %s", store, res.Status, res.Code, res.Message)
			}
		}
		ds = ds[:0]
	}
	return nil
}

// preload puts n sales in the ledger through the hub's apply path, in batches of 1000 from one
// store, spread round-robin over the members, so that every member has a balance and a history
// when ingest and the sweeps are measured.
func preload(ctx context.Context, h *hub.Hub, p *loyalty.Program, store string, n, members int) error {
	if err := pullOnce(ctx, h, store); err != nil {
		return err
	}
	now := time.Now()
	return pushAll(ctx, h, store, n, 1000, func(i int) loyalty.Delta {
		return earnDelta(p, store, memberID(i%members), int64(100+i%5000), fmt.Sprint("p", i), now)
	})
}

// benchSweeps times the sweeps the hub's background jobs run hourly (HubMain): tier
// requalification, points expiry and birthday points. First as they run now, in the steady state
// the bench's data is in (every sale happened today: nothing has lapsed, and a hub that keeps a
// schedule of who is due finds almost no one). Then as they run sweepDaysAhead later, when every
// member's points and tier window have lapsed, so that the sweeps have every member with a
// purchase to review, downgrade and expire: the sweeps over the member base that the figure is
// about. The set-based baseline runs just before that, at the same time, on the same members.
func benchSweeps(ctx context.Context, hm *HubMain, p *loyalty.Program, r *BenchResult) error {
	db, err := openHubSQL(hm.Config.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := countRows(ctx, db, "members")
	if err != nil {
		return err
	}
	r.SweepMembers = int(n)
	steady, err := sweep(ctx, hm.Hub)
	if err != nil {
		return err
	}
	r.SweepSteadySeconds = steady.total().Seconds()

	r.SweepDaysAhead = sweepDaysAhead(p)
	later := laterHub(hm, time.Duration(r.SweepDaysAhead)*24*time.Hour)
	bare, err := bareRequalify(ctx, db, isPostgresURL(hm.Config.Database), p, later.Now())
	if err != nil {
		return err
	}
	r.BareRequalifySeconds = bare.Seconds()
	due, err := sweep(ctx, later)
	if err != nil {
		return err
	}
	r.SweepSeconds = due.total().Seconds()
	r.RequalifySeconds, r.ExpireSeconds, r.BirthdaySeconds = due.requalify.Seconds(), due.expire.Seconds(), due.birthdays.Seconds()
	r.TiersChanged, r.MembersExpired, r.BirthdaysAwarded = due.tiersChanged, due.membersExpired, due.birthdaysAwarded
	return nil
}

// sweepRun is what one round of the hourly sweeps took and did.
type sweepRun struct {
	requalify, expire, birthdays                   time.Duration
	tiersChanged, membersExpired, birthdaysAwarded int
}

func (s sweepRun) total() time.Duration { return s.requalify + s.expire + s.birthdays }

// sweep runs the hourly sweeps once, one after the other, as the hub's jobs do.
func sweep(ctx context.Context, h *hub.Hub) (s sweepRun, err error) {
	t0 := time.Now()
	if s.tiersChanged, err = h.Requalify(ctx); err != nil {
		return s, fmt.Errorf("requalify: %w", err)
	}
	s.requalify = time.Since(t0)
	t0 = time.Now()
	if s.membersExpired, err = h.ExpirePoints(ctx); err != nil {
		return s, fmt.Errorf("expire points: %w", err)
	}
	s.expire = time.Since(t0)
	t0 = time.Now()
	if s.birthdaysAwarded, err = h.AwardBirthdays(ctx); err != nil {
		return s, fmt.Errorf("birthday points: %w", err)
	}
	s.birthdays = time.Since(t0)
	return s, nil
}

// sweepDaysAhead is how many days after the bench's sales every one of them has left the tier
// window (a year, for rolling_12m and calendar_year) and every point has expired (after_days).
func sweepDaysAhead(p *loyalty.Program) int {
	days := 366
	if p.Expiry != nil {
		days = max(days, p.Expiry.AfterDays+1)
	}
	return days
}

// laterHub returns a hub on hm's database whose clock is ahead by shift, to run the sweeps as
// they will run then. It is a second Hub over the same Store, as a second hub process would be,
// so that hm's own clock never changes under its running sessions and jobs. What the sweeps
// write is dated then: a database kept with --database holds those deltas.
func laterHub(hm *HubMain, shift time.Duration) *hub.Hub {
	h := hub.New(hm.Store)
	h.Logger, h.KEK, h.Lease, h.Claims = hm.Hub.Logger, hm.Hub.KEK, hm.Hub.Lease, hm.Hub.Claims
	h.MemberTokenTTL, h.VoucherTokenTTL = hm.Hub.MemberTokenTTL, hm.Hub.VoucherTokenTTL
	h.OnChange = hm.Sync.NotifyStores
	h.Now = func() time.Time { return time.Now().Add(shift) }
	return h
}
