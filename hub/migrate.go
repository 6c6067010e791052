// Migration in and out: member search, manual adjustments (this file), CSV imports (import.go)
// and streamed exports (export.go).

package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// MigrateTx is the storage of member search, bulk imports and exports: coarse reads and writes of
// many rows at once.
type MigrateTx interface {
	// SearchMembers returns up to limit members that match f, in id order after the given id.
	SearchMembers(ctx context.Context, f MemberFilter, after string, limit int) ([]loyalty.Member, error)
	// MembersByEmail returns the members whose email is one of emails (lower case, as stored),
	// with their job schedule, by email, in one read.
	MembersByEmail(ctx context.Context, emails []string) (map[string]ScheduledMember, error)
	// InsertMembers adds new members at once, each as InsertMember would (due for a tier review
	// at once), in a few statements. The caller checked that no id nor email is taken; if one
	// is, it returns an error and inserts none.
	InsertMembers(ctx context.Context, ms []loyalty.Member) error
	// ImportedMembers returns which of members hold an adjust delta of the import importID (rule
	// RuleImport, order id importID), in one read.
	ImportedMembers(ctx context.Context, importID string, members []string) (map[string]bool, error)
	// LedgerPage returns up to limit ledger entries with a sequence number after after and an
	// event time in [from, to), in sequence order. A zero from or to has no bound.
	LedgerPage(ctx context.Context, from, to time.Time, after int64, limit int) ([]LedgerEntry, error)
	// ConflictsPage returns up to limit conflicts with an id after after, oldest first.
	ConflictsPage(ctx context.Context, after int64, limit int) ([]Conflict, error)
}

// MemberFilter selects members (SearchMembers). Empty fields select every member.
type MemberFilter struct {
	Email        string    // the whole address, any case
	Name         string    // a part of the name, any case
	Tier         string    // a tier id
	HomeStore    string    // a store id
	CreatedSince time.Time // created at or after
}

// MinNameSearch is the fewest characters of a name the names' index finds: it holds their
// trigrams (three characters in a row). A shorter text (a name such as 王芳, or Li) is looked for
// in every member's name.
const MinNameSearch = 3

// MaxMemberPage is the most members one page of SearchMembers returns.
const MaxMemberPage = 1000

// MemberPage is a page of a member search: the members, and the id to pass as after for the
// next page ("" when this page is the last).
type MemberPage struct {
	Members []loyalty.Member `json:"members"`
	Next    string           `json:"next,omitempty"`
}

// SearchMembers returns up to limit members that match f, in id order, after member id after.
func (h *Hub) SearchMembers(ctx context.Context, f MemberFilter, after string, limit int) (MemberPage, error) {
	out := MemberPage{Members: []loyalty.Member{}}
	if limit < 1 || limit > MaxMemberPage {
		return out, loyalty.Errorf(loyalty.EINVALID, "limit must be a whole number from 1 to %d", MaxMemberPage)
	}
	f.Email = strings.ToLower(strings.TrimSpace(f.Email))
	for _, v := range []string{f.Email, f.Name, f.Tier, f.HomeStore, after} {
		if !storableKey(v) && v != "" || len(v) > 254 {
			return out, loyalty.Errorf(loyalty.EINVALID, "search values must be UTF-8 of at most 254 bytes")
		}
	}
	err := h.Store.View(ctx, func(tx Tx) error {
		ms, err := tx.SearchMembers(ctx, f, after, limit+1)
		if err != nil {
			return err
		}
		if len(ms) > limit {
			ms = ms[:limit]
			out.Next = ms[limit-1].ID
		}
		out.Members = append(out.Members[:0], ms...)
		return nil
	})
	return out, err
}

// AdjustRequest is a manual adjustment of a member's balance (Hub.Adjust).
type AdjustRequest struct {
	// AdjustID is the caller's idempotency key: the same key again returns the first result, the
	// same key with a different request is ECONFLICT.
	AdjustID string `json:"adjust_id"`
	MemberID string `json:"member_id"`
	Points   int64  `json:"points"` // added to the balance; negative takes points away
	Reason   string `json:"reason"` // required: why, for the ledger and the audit trail
}

// Adjustment is an applied adjustment, or the reversal of one.
type Adjustment struct {
	AdjustID string    `json:"adjust_id"`
	DeltaID  string    `json:"delta_id"` // the adjust delta in the member's ledger
	MemberID string    `json:"member_id"`
	Points   int64     `json:"points"`
	Balance  int64     `json:"balance"` // the member's balance right after it
	Reason   string    `json:"reason"`
	KeyID    string    `json:"key_id"`             // the API key that made it ("cli" for the command line)
	Reverses string    `json:"reverses,omitempty"` // a reversal: the delta id of the adjustment it undoes
	At       time.Time `json:"at"`
	// Replayed is true when the answer repeats the first one under this adjust_id (a retry):
	// nothing changed this time, and Balance is the balance right after the first. Over HTTP it
	// is the header Idempotent-Replayed, the body the first answer's.
	Replayed bool `json:"-"`
}

// WasReplayed reports Replayed (jsonapi.MarkReplayed).
func (a Adjustment) WasReplayed() bool { return a.Replayed }

// SetReplayed marks the adjustment as the answer to a retry (callOnline).
func (a *Adjustment) SetReplayed() { a.Replayed = true }

// Idempotency scopes of adjustments and their reversals (Tx.Idempotent).
const (
	scopeAdjust  = "adjust"
	scopeReverse = "adjust.reverse"
)

// Adjust changes a member's balance by req.Points with an adjust delta of the hub, ledgered and
// sent to the stores that hold the member like any change of their balance. It refuses
// (EINVALID) an adjustment that would take the balance below zero, and (EBUDGET) a positive one
// that does not fit a points_issued budget of the program: those points are issued points, and
// are charged to those budgets (docs/BUDGETS.md). It is recorded in the audit trail with the
// key that made it.
func (h *Hub) Adjust(ctx context.Context, req AdjustRequest) (Adjustment, error) {
	var out Adjustment
	switch {
	case req.MemberID == "":
		return out, loyalty.Errorf(loyalty.EINVALID, "member_id is required")
	case req.Points == 0:
		return out, loyalty.Errorf(loyalty.EINVALID, "points is required: a whole number other than 0, negative to take points away")
	case req.Points > loyalty.MaxPoints || req.Points < -loyalty.MaxPoints:
		return out, loyalty.Errorf(loyalty.EINVALID, "%d points is more than one adjustment may carry (at most %d either way)", req.Points, int64(loyalty.MaxPoints))
	}
	if err := validReason(req.Reason); err != nil {
		return out, err
	}
	if err := loyalty.ValidateOrderID(req.AdjustID); err != nil {
		return out, loyalty.Errorf(loyalty.EINVALID, "adjust_id is required: at most %d characters, the idempotency key that makes a retry safe", loyalty.MaxIDLength)
	}
	key := ActorFrom(ctx).KeyID
	_, err := h.onlineOnce(ctx, scopeAdjust, req.AdjustID, "", req, func(a *applier) (any, error) {
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Terminal: key, Member: req.MemberID, Kind: loyalty.KindAdjust,
			Points: req.Points, OrderID: req.AdjustID, Reason: req.Reason, OccurredAt: a.Now()}
		bal, err := a.applyAdjust(ctx, d)
		if err != nil {
			return nil, err
		}
		if err := h.audit(ctx, a.tx, AuditAdjust, req.MemberID, fmt.Sprintf("adjustment %s: %+d points, balance %d; reason: %s",
			req.AdjustID, req.Points, bal, req.Reason)); err != nil {
			return nil, err
		}
		return Adjustment{AdjustID: req.AdjustID, DeltaID: d.ID, MemberID: d.Member, Points: d.Points, Balance: bal, Reason: d.Reason,
			KeyID: key, At: d.OccurredAt.UTC().Truncate(time.Millisecond)}, nil
	}, &out)
	if code := loyalty.ErrorCode(err); code == loyalty.ECONFLICT {
		return out, loyalty.Errorf(loyalty.ECONFLICT, "adjust_id %s was already used for a different adjustment; the first one stands (a new adjustment needs a new adjust_id)", req.AdjustID)
	}
	return out, err
}

// ReverseAdjustment undoes the manual adjustment with this adjust_id with an adjust delta of the
// opposite points that names it (Reverses). An adjustment is reversed once: the same reversal
// again returns the first, one with another reason is ECONFLICT. It refuses (EINVALID) a
// reversal that would take the balance below zero (the points added were spent). A reversed
// positive adjustment gives back to the budgets what it was charged.
func (h *Hub) ReverseAdjustment(ctx context.Context, adjustID, reason string) (Adjustment, error) {
	var out Adjustment
	if err := validReason(reason); err != nil {
		return out, err
	}
	if err := loyalty.ValidateOrderID(adjustID); err != nil {
		return out, loyalty.Errorf(loyalty.EINVALID, "the adjust_id of the adjustment to reverse is required")
	}
	key := ActorFrom(ctx).KeyID
	req := struct {
		AdjustID string `json:"adjust_id"`
		Reason   string `json:"reason"`
	}{adjustID, reason}
	_, err := h.onlineOnce(ctx, scopeReverse, adjustID, "", req, func(a *applier) (any, error) {
		_, first, found, err := a.tx.Idempotent(ctx, scopeAdjust, adjustID)
		if err != nil {
			return nil, err
		} else if !found {
			return nil, loyalty.Errorf(loyalty.ENOTFOUND, "no adjustment has adjust_id %s", adjustID)
		}
		var orig Adjustment
		if err := json.Unmarshal(first, &orig); err != nil {
			return nil, err
		}
		if by, err := a.tx.ReversalOf(ctx, orig.DeltaID); err != nil {
			return nil, err
		} else if by != "" {
			return nil, loyalty.Errorf(loyalty.EDUPLICATE, "adjustment %s was already reversed", adjustID)
		}
		d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.HubStore, Terminal: key, Member: orig.MemberID, Kind: loyalty.KindAdjust,
			Points: -orig.Points, OrderID: adjustID, Reverses: orig.DeltaID, Reason: reason, OccurredAt: a.Now()}
		bal, err := a.applyAdjust(ctx, d)
		if err != nil {
			return nil, err
		}
		if err := h.audit(ctx, a.tx, AuditAdjustReverse, orig.MemberID, fmt.Sprintf("reversal of adjustment %s: %+d points, balance %d; reason: %s",
			adjustID, d.Points, bal, reason)); err != nil {
			return nil, err
		}
		return Adjustment{AdjustID: adjustID, DeltaID: d.ID, MemberID: d.Member, Points: d.Points, Balance: bal, Reason: reason, KeyID: key,
			Reverses: orig.DeltaID, At: d.OccurredAt.UTC().Truncate(time.Millisecond)}, nil
	}, &out)
	if loyalty.ErrorCode(err) == loyalty.ECONFLICT {
		return out, loyalty.Errorf(loyalty.ECONFLICT, "adjustment %s was already reversed with another reason; the first reversal stands", adjustID)
	}
	return out, err
}

// validReason checks an adjustment's reason.
func validReason(reason string) error {
	if strings.TrimSpace(reason) == "" || !loyalty.ValidText(reason, loyalty.MaxReasonLength) {
		return loyalty.Errorf(loyalty.EINVALID, "reason is required: why the balance changes, at most %d characters", loyalty.MaxReasonLength)
	}
	return nil
}

// applyAdjust applies one adjust delta of the hub, a manual adjustment or its reversal, and
// returns the member's new balance: the one place where an adjustment changes a balance. It
// refuses a balance below zero; a positive adjustment is charged to the program's points_issued
// budgets (EBUDGET when it does not fit), the reversal of one gives back what that charged.
func (a *applier) applyAdjust(ctx context.Context, d loyalty.Delta) (int64, error) {
	bal, err := a.balance(ctx, d.Member)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return 0, loyalty.Errorf(loyalty.ENOTFOUND, "member %s is not known to the hub", d.Member)
	} else if err != nil {
		return 0, err
	}
	below := func(to int64) error {
		return loyalty.Errorf(loyalty.EINVALID, "this adjustment would take member %s's balance to %d; their balance is %d points, and an adjustment never takes it below zero",
			d.Member, to, bal)
	}
	// A reversal's points may have expired already: the expiry gives them back as the reversal
	// is applied (expireBack), so its balance is judged after.
	if bal+d.Points < 0 && d.Reverses == "" {
		return 0, below(bal + d.Points)
	}
	p, err := a.current(ctx)
	if err != nil {
		return 0, err
	}
	var charges []Charge
	switch {
	case d.Points > 0 && d.Reverses == "":
		for _, b := range p.Budgets {
			if b.Metric != loyalty.MetricPointsIssued {
				continue
			}
			spent, out, err := a.usage(ctx, b.ID)
			if err != nil {
				return 0, err
			}
			if spent+out+d.Points > b.Limit {
				return 0, a.usedUp(ctx, &b, spent, out, d.Points)
			}
			charges = append(charges, Charge{Delta: d.ID, Budget: b.ID, Amount: d.Points})
		}
	case d.Reverses != "":
		cs, err := a.tx.Charges(ctx, d.Reverses)
		if err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
			return 0, err
		}
		for _, c := range cs {
			charges = append(charges, Charge{Delta: d.ID, Budget: c.Budget, Amount: -c.Amount})
		}
	}
	r, err := a.apply(ctx, loyalty.HubStore, d)
	if err != nil {
		return 0, err
	}
	if r.Status != lsync.StatusApplied {
		return 0, loyalty.Errorf(r.Code, "%s", r.Message)
	}
	if to := a.balances[d.Member]; to < 0 {
		return 0, below(to) // the caller's transaction is rolled back
	}
	for _, c := range charges {
		if err := a.tx.AddBudgetSpent(ctx, c.Budget, c.Amount); err != nil {
			return 0, err
		}
		if err := a.tx.InsertCharge(ctx, c); err != nil {
			return 0, err
		}
		if b := budgetByID(p, c.Budget); b != nil && c.Amount > 0 {
			// budget.threshold and budget.exhausted, as for any spending: an adjustment that takes
			// a budget to its limit is the last thing that can, and finance must hear of it.
			spent, _, err := a.usage(ctx, c.Budget)
			if err != nil {
				return 0, err
			}
			a.emitBudget(c.Budget, spent, b.Limit)
		}
	}
	return a.balances[d.Member], nil
}
