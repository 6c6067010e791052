package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// What the operator's dashboard (dashboard.go) needs of the hub beyond the JSON API's methods.

// ReviewTx marks conflicts reviewed.
type ReviewTx interface {
	// ResolveConflict clears a conflict's flag: an operator reviewed it. It reports whether the
	// conflict was flagged (false: resolved before); an unknown id is ENOTFOUND.
	ResolveConflict(ctx context.Context, id int64) (bool, error)
}

// AuditConflictResolve is a conflict marked resolved by an operator.
const AuditConflictResolve = "conflict.resolve"

// ResolveConflict marks a conflict reviewed and resolved (its flagged becomes false), on behalf
// of the context's actor, audited in the same transaction. A conflict resolved already is
// EDUPLICATE; an unknown one ENOTFOUND. The conflict itself, and the deltas it names, stay.
func (h *Hub) ResolveConflict(ctx context.Context, id int64) error {
	return h.Store.Update(ctx, func(tx Tx) error {
		was, err := tx.ResolveConflict(ctx, id)
		if err != nil {
			return err
		}
		if !was {
			return loyalty.Errorf(loyalty.EDUPLICATE, "conflict %d was marked resolved before", id)
		}
		return h.audit(ctx, tx, AuditConflictResolve, fmt.Sprint(id), "")
	})
}

// EndDashboardSession signs dashboard session id out for good: its cookie, whose signature holds
// until until, and every copy of it are refused from now on, by every hub process.
func (h *Hub) EndDashboardSession(ctx context.Context, id string, until time.Time) error {
	return h.Store.Update(ctx, func(tx Tx) error { return tx.EndSession(ctx, id, until, h.Now()) })
}

// DashboardSessionEnded reports whether dashboard session id was signed out.
func (h *Hub) DashboardSessionEnded(ctx context.Context, id string) (bool, error) {
	var ended bool
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		ended, err = tx.SessionEnded(ctx, id)
		return err
	})
	return ended, err
}

// APIKeyByID returns an API key by its id, revoked or not (ENOTFOUND if there is none): a
// dashboard session names its key by id, and every request checks the key again.
func (h *Hub) APIKeyByID(ctx context.Context, id string) (APIKey, error) {
	var k APIKey
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		k, err = tx.APIKey(ctx, id)
		return err
	})
	return k, err
}
