package loyalty

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Points expiry per earned lot, first in first out (Expiry mode "lot").
//
// Every credit of a member is a lot: an earn (a sale, an action, a referral bonus) or an
// operator's positive adjustment (not the reversal of a negative one: IsLot), less what refunds
// of that earn took back since (a refunded
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

// IsLot reports whether a ledger entry of kind, points and reverses is a lot: an earn, or a
// positive adjustment that is no reversal. The reversal of a negative adjustment gives back
// points a debit took: it undoes the debit, as a refunded redemption does, and the points are as
// old as the lots they came from (a new lot would have kept them from expiring as long again).
func IsLot(kind Kind, points int64, reverses string) bool {
	return kind == KindEarn || kind == KindAdjust && points > 0 && reverses == ""
}

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

// Giving back what an expiry should not have taken.
//
// The hourly sweep expires what the hub knows when it runs. A change can reach the hub after an
// expiry it predates (a store that was offline), or take back points an expiry already took (a
// refund of a sale whose lot had expired). Then the expiry took too much: the member would lose
// the points twice, or be short by what the late redemption spent of the expired lot. The hub
// replays each expiry it wrote with what it knows now (ExpiryReplay), and gives back the
// difference with an expire delta of positive points. It never takes more this way: points that
// should expire and have not are the next sweep's.

// ExpiryEntry is one ledger entry of a member, as the replay of their expiries reads it.
type ExpiryEntry struct {
	ID       string
	Reverses string
	Kind     Kind
	Points   int64
	At       time.Time // the event time
	// Known, when after At, is when the hub learned of the change, and the replay counts it from
	// then only: a store's change that reached the hub late without proof that it happened then.
	// An expiry's Known is when its sweep read the balances (its received time): what the hub had
	// counted by then, the replay counts at the expiry.
	Known time.Time
	// Rule is the expiry rule an expiry (kind expire, negative points) was written under; nil
	// for one not to be replayed (written before give-backs, or under a rule no longer known):
	// the replay keeps what that expiry took.
	Rule *Expiry
}

// ExpiryReplay returns how many of the points a member's expiries took they should not have,
// given the member's whole ledger as it stands (entries, in any order): each expiry is replayed
// at its time, under its rule, with every change dated up to that time, lots at what refunds
// left of them. An expiry in mode lot takes, as the sweep does, what the balance holds beyond
// the lots that have not expired yet; one in mode inactivity takes the whole balance, if no
// earn or redemption is dated within after_days before it. Whatever the replay takes less than
// the expiries did, net of what was given back before, is the answer (0 when nothing is owed).
//
// A lot is an earn or a positive adjustment that reverses nothing (IsLot); a reversal that names one reduces it
// (at the lot's time: points refunded after they expired are the expiry's, not the member's
// newer points). Every other change but tier changes and expiries counts at its own time.
func ExpiryReplay(entries []ExpiryEntry) int64 {
	// An expiry is judged at its time (at) with what the hub had counted when it was written
	// (seen, in milliseconds: its Known, when the sweep's batch read the balances, if later).
	type instant struct {
		at   time.Time
		seen int64
		rule *Expiry
		took int64
	}
	var instants []instant
	var written int64 // taken, net of what was given back
	for _, e := range entries {
		if e.Kind == KindExpire {
			p := min(max(e.Points, -MaxPoints), MaxPoints) // as a delta carries at most
			written = satAdd(written, -p)
			if p < 0 {
				instants = append(instants, instant{e.At, max(e.At.UnixMilli(), e.Known.UnixMilli()), e.Rule, -p})
			}
		}
	}
	if written <= 0 || len(instants) == 0 {
		return 0
	}
	isLot := func(e ExpiryEntry) bool { return IsLot(e.Kind, e.Points, e.Reverses) }
	lotCount := 0
	for _, e := range entries {
		if isLot(e) {
			lotCount++
		}
	}
	lotOf := make(map[string]int, lotCount)
	for i, e := range entries {
		if isLot(e) && e.ID != "" {
			lotOf[e.ID] = i
		}
	}
	// Times in milliseconds (the ledger's precision): at is the event time, from the time from
	// which the hub counts the change (the later of the event time and Known).
	type item struct {
		from, at, points int64
		rank             int // a lot's place in the order of event times (the tree below)
	}
	fromOf := func(e ExpiryEntry) int64 {
		if e.Known.After(e.At) {
			return e.Known.UnixMilli()
		}
		return e.At.UnixMilli()
	}
	net := make([]int64, len(entries)) // each lot's points less its reversals', by its index
	others, active := make([]item, 0, len(entries)-lotCount), make([]item, 0, len(entries))
	for i, e := range entries {
		p := min(max(e.Points, -MaxPoints), MaxPoints)
		switch {
		case e.Kind == KindExpire || e.Kind == KindTier:
			continue
		case isLot(e):
			net[i] = satAdd(net[i], p) // reversals listed before it may have counted already
		default:
			if j, ok := lotOf[e.Reverses]; ok && e.Reverses != "" && j != i {
				net[j] = satAdd(net[j], p) // at the lot's time, from when the hub counts the lot
			} else {
				others = append(others, item{from: fromOf(e), points: p})
			}
		}
		if e.Kind == KindEarn || e.Kind == KindRedeem {
			active = append(active, item{from: fromOf(e), at: e.At.UnixMilli()})
		}
	}
	lots := make([]item, 0, lotCount)
	for i, e := range entries {
		if isLot(e) {
			lots = append(lots, item{from: fromOf(e), at: e.At.UnixMilli(), points: net[i]})
		}
	}
	// The lots by event time, each with its rank: a Fenwick tree over the ranks sums what the
	// counted lots earned before a time.
	slices.SortFunc(lots, func(a, b item) int { return cmp.Compare(a.at, b.at) })
	ats := make([]int64, len(lots))
	for i := range lots {
		lots[i].rank, ats[i] = i, lots[i].at
	}
	tree := make([]int64, len(lots)+1)
	add := func(rank int, n int64) {
		for i := rank + 1; i < len(tree); i += i & -i {
			tree[i] = satAdd(tree[i], n)
		}
	}
	sumBelow := func(count int) int64 { // the counted lots among the first count by event time
		var s int64
		for i := count; i > 0; i -= i & -i {
			s = satAdd(s, tree[i])
		}
		return s
	}
	byFrom := func(a, b item) int { return cmp.Compare(a.from, b.from) }
	slices.SortStableFunc(lots, byFrom)
	slices.SortFunc(others, byFrom)
	slices.SortFunc(active, byFrom)
	// An expiry written at one instant in several deltas (each at most MaxPoints) is one sweep's:
	// those of the same time, seen at the same time under the same rule are one. The order of the
	// others does not depend on the entries' (rules compared by what they say).
	ruleKey := func(r *Expiry) (int, int) {
		if r == nil {
			return 0, 0
		}
		if r.Mode == ExpiryLot {
			return 1, r.AfterDays
		}
		return 2, r.AfterDays
	}
	byInstant := func(a, b instant) int {
		am, ad := ruleKey(a.rule)
		bm, bd := ruleKey(b.rule)
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.seen, b.seen), cmp.Compare(am, bm), cmp.Compare(ad, bd))
	}
	slices.SortStableFunc(instants, byInstant)
	merged := instants[:0]
	for _, x := range instants {
		if n := len(merged); n > 0 && byInstant(merged[n-1], x) == 0 {
			merged[n-1].took = satAdd(merged[n-1].took, x.took)
			continue
		}
		merged = append(merged, x)
	}
	// The instants in order, counting the changes the hub counts by each: what the lots and the
	// other changes add up to, the lots' points still held, the last earn or redemption.
	var li, oi, ai int
	var lotSum, heldSum, otherSum, taken int64
	last := int64(math.MinInt64)
	for _, x := range merged {
		// The instants are in order of time, and seen grows with it but for a batch that read
		// before another's time: counting up to the largest seen so far keeps the passes one-way.
		s := x.seen
		for ; li < len(lots) && lots[li].from <= s; li++ {
			lotSum = satAdd(lotSum, lots[li].points)
			heldSum = satAdd(heldSum, max(lots[li].points, 0))
			add(lots[li].rank, max(lots[li].points, 0))
		}
		for ; oi < len(others) && others[oi].from <= s; oi++ {
			otherSum = satAdd(otherSum, others[oi].points)
		}
		for ; ai < len(active) && active[ai].from <= s; ai++ {
			last = max(last, active[ai].at)
		}
		balance := satAdd(satAdd(lotSum, otherSum), -taken)
		var due int64
		switch {
		case x.rule == nil:
			due = x.took
		case x.rule.Mode == ExpiryLot:
			// The lots that have not expired at x.at: those earned after LotsSince(x.at).
			since, _ := slices.BinarySearch(ats, x.rule.LotsSince(x.at).UnixMilli()+1)
			due = max(0, satAdd(balance, -satAdd(heldSum, -sumBelow(since))))
		default:
			if ai > 0 && !x.at.Before(x.rule.ExpiresAt(time.UnixMilli(last).UTC())) {
				due = max(0, balance)
			}
		}
		taken = satAdd(taken, due)
	}
	return max(0, satAdd(written, -taken))
}

// satLimit bounds the replay's sums (satAdd): 4·10¹⁸, so that two of them add up without overflow.
const satLimit = 4_000_000_000_000_000_000

// satAdd adds two numbers of at most satLimit each, saturating at ±satLimit: a hostile ledger's
// sums cannot wrap around.
func satAdd(a, b int64) int64 {
	return min(max(a+b, -satLimit), satLimit)
}
