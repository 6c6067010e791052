// Qualifying totals: how a storage backend answers Tx.Qualifying from running totals per member
// and UTC day (its member_qualifying table), which it keeps as deltas are inserted, instead of
// summing the member's history.

package hub

import (
	"math"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

// DayMS is a UTC day in milliseconds: the day totals are kept per member and UTC day.
const DayMS = 24 * 60 * 60 * 1000

// FloorDay returns the start of the UTC day holding ms (Unix milliseconds), in milliseconds.
func FloorDay(ms int64) int64 { return ms - ((ms%DayMS)+DayMS)%DayMS }

// DayTotals is what a member's qualifying events of a set of days or of a span of time add up
// to: their sales (earns with no rule), less those reversed in full and less what partial refunds
// gave back, in order amounts (Amount: the spend basis) and in points (Points); and the event time
// of the earliest of the sales not reversed in full (First, Unix milliseconds; 0: none).
type DayTotals struct {
	Amount, Points, First int64
}

// Add adds o to t.
func (t *DayTotals) Add(o DayTotals) {
	t.Amount += o.Amount
	t.Points += o.Points
	t.First = earliestMS(t.First, o.First)
}

func earliestMS(a, b int64) int64 {
	if a == 0 || b != 0 && b < a {
		return b
	}
	return a
}

// QualifyingWindow is a qualifying window [since, until) cut into what a backend reads: the whole
// days inside it from the day totals, the part of a day at its start from the ledger, and the
// day at its end from the day totals less the part of that day from until on, read from the
// ledger (at a rolling window's end, the events dated later than the hub's clock: almost always
// none). The same reads give the earliest event dated at or after until (Qualification.Next):
// the rest of until's day from the ledger, the days after it from the day totals. Every range is
// [from, to) in Unix milliseconds; an empty one has from == to.
type QualifyingWindow struct {
	Until   int64    // the window's end (math.MaxInt64: none)
	Days    [2]int64 // whole days, from the day totals: day >= Days[0] AND day < Days[1]
	Head    [2]int64 // the part of a day at the start, from the ledger
	EndDay  int64    // a day whose totals count less Tail, if HasEnd
	HasEnd  bool
	Tail    [2]int64 // from until to the end of its day, from the ledger
	After   int64    // days from this one on give Next (math.MaxInt64: none)
	NoAfter bool     // no Next: the window has no end
	// From is the first day any of Days, EndDay and After needs: the day totals from it on,
	// in one range, are all a backend reads of them.
	From int64
}

// NewQualifyingWindow cuts the window [since, until) (a zero until: no end; as
// loyalty.TierRules.WindowBounds gives it) for a backend with day totals.
func NewQualifyingWindow(since, until time.Time) QualifyingWindow {
	s, u := unixms.Of(since), unixms.Until(until)
	w := QualifyingWindow{Until: u}
	startDay := FloorDay(s)
	if startDay != s {
		startDay += DayMS // the first whole day
	}
	if u == math.MaxInt64 {
		w.Days = [2]int64{startDay, math.MaxInt64}
		w.Head = [2]int64{s, startDay}
		w.After, w.NoAfter = math.MaxInt64, true
		w.From = startDay
		return w
	}
	endDay := FloorDay(u)
	switch {
	case u <= s: // empty
	case startDay > endDay: // within one day
		w.Head = [2]int64{s, u}
	default:
		w.Days = [2]int64{startDay, endDay}
		w.Head = [2]int64{s, startDay}
		w.EndDay, w.HasEnd = endDay, u > endDay
	}
	w.After = endDay
	if u > endDay {
		w.Tail = [2]int64{u, endDay + DayMS}
		w.After = endDay + DayMS
	}
	w.From = w.After
	if w.HasEnd {
		w.From = w.EndDay
	}
	if w.Days[0] < w.Days[1] {
		w.From = w.Days[0]
	}
	return w
}

// Qualification puts together what a backend read for one member: days, the totals of the whole
// days; head, of the head's events; end, the totals of EndDay; tail, of the tail's events; after,
// the totals of the days from After on (only First counts).
func (w QualifyingWindow) Qualification(basis string, days, head, end, tail, after DayTotals) Qualification {
	var in DayTotals
	in.Add(days)
	in.Add(head)
	if w.HasEnd {
		in.Amount += end.Amount - tail.Amount
		in.Points += end.Points - tail.Points
		if end.First < w.Until { // the day's earliest sale is in the window
			in.First = earliestMS(in.First, end.First)
		}
	}
	q := Qualification{Total: in.Amount, First: unixms.Time(in.First)}
	if basis == loyalty.BasisPoints {
		q.Total = in.Points
	}
	if !w.NoAfter {
		q.Next = unixms.Time(earliestMS(tail.First, after.First))
	}
	return q
}
