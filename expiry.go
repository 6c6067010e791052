package loyalty

import (
	"slices"
	"time"
)

// Points expiry per earned lot, first in first out (Expiry mode "lot").
//
// Every credit of a member is a lot: an earn (a sale, an action, a referral bonus) or an
// operator's positive adjustment, less what refunds of that earn took back since (a refunded
// sale is no lot, a partly refunded one a smaller lot). A lot expires AfterDays days after it
// was earned (its event time), unless it was spent first; every debit (a redemption, an
// earlier expiry, a negative adjustment, the reversal of a redemption's refund) spends the
// oldest lots first.
//
// That needs no record of which lot paid for what. Debits take the oldest lots first, so what a
// member still holds is always their newest points: at time T the balance is made of the lots
// that have not expired by T, newest first, as far as it goes. Whatever the balance holds beyond
// the points of those lots is older than all of them and has expired:
//
//	due(T) = max(0, balance − Σ points of the lots that expire after T)
//
// This is the same as "the points of the lots expired by T, less every debit so far (earlier
// expiries included)", because the balance is all lots less all debits. An expiry delta of
// due(T) leaves the balance equal to those lots (or below), so running it again at the same time
// expires nothing: the sweep is idempotent, and two sweeps racing in serialized transactions
// expire once.
//
// Points spent between a lot's expiry instant and the sweep that writes its expiry (the hub
// sweeps hourly) were spent, not expired: the sweep uses the balance it finds. An offline store's
// redemption that arrives after the expiry it predates can leave an overdraft, recorded as a
// conflict like any other; later expiries are that much smaller, so the member loses no more in
// total.

// Lot is the points of one earn, net of the refunds of that earn, and when it was earned.
type Lot struct {
	Points   int64     `json:"points"`
	EarnedAt time.Time `json:"earned_at"`
}

// ExpiringPoints are points that expire at At unless spent before.
type ExpiringPoints struct {
	Points int64     `json:"points"`
	At     time.Time `json:"at"`
}

// LotExpiresAt returns when a lot earned at t expires: AfterDays whole days later (days of 24
// hours: the instant, in UTC, AfterDays days on).
func (e *Expiry) LotExpiresAt(t time.Time) time.Time {
	return t.UTC().AddDate(0, 0, e.AfterDays)
}

// LotsSince returns the earliest earn time of a lot that has not expired at now: the hub reads
// only the lots earned at or after it, because older ones no longer count (see due above).
func (e *Expiry) LotsSince(now time.Time) time.Time {
	return now.UTC().AddDate(0, 0, -e.AfterDays)
}

// LotExpiry computes first-in first-out expiry at now for a member with balance and lots
// (the lots earned at or after LotsSince(now) suffice; older or non-positive ones are ignored).
// due is what expires now; upcoming is what expires later if the member neither earns nor spends
// again, one entry per expiry instant, oldest first: each lot's points as far as the balance left
// after due still holds them. The entries of upcoming add up to the balance left after due.
func (e *Expiry) LotExpiry(lots []Lot, balance int64, now time.Time) (due int64, upcoming []ExpiringPoints) {
	if balance <= 0 {
		return 0, nil
	}
	var live []ExpiringPoints // the lots that have not expired at now, with their expiry instants
	for _, l := range lots {
		if at := e.LotExpiresAt(l.EarnedAt); l.Points > 0 && at.After(now) {
			live = append(live, ExpiringPoints{Points: l.Points, At: at})
		}
	}
	slices.SortStableFunc(live, func(a, b ExpiringPoints) int { return a.At.Compare(b.At) })
	// Sums saturate just above the largest balance: they are only compared with a balance, and a
	// long list of large lots cannot overflow.
	var keep int64
	for _, l := range live {
		keep = addSat(keep, l.Points)
	}
	due = max(0, balance-keep)
	// The balance left is held by the newest lots: walk them newest first, each holding its
	// points as far as what is left of the balance goes; the oldest held one may be held in part.
	left := balance - due
	for i := len(live) - 1; i >= 0 && left > 0; {
		at := live[i].At
		var held int64
		for ; i >= 0 && live[i].At.Equal(at) && left > 0; i-- {
			n := min(live[i].Points, left)
			held += n
			left -= n
		}
		for i >= 0 && live[i].At.Equal(at) { // left ran out within this instant
			i--
		}
		upcoming = append(upcoming, ExpiringPoints{Points: held, At: at})
	}
	slices.Reverse(upcoming)
	return due, upcoming
}

// addSat adds two non-negative numbers, saturating just above MaxBalance.
func addSat(a, b int64) int64 {
	const limit = MaxBalance + 1
	return min(min(a, limit)+min(b, limit), limit)
}
