package hub

import (
	"context"
	"log/slog"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Sales without a member (loyalty.KindSale): a store's POS reports them through its agent, which
// syncs them like any delta, and the hub counts them, once, for the reports' adoption rate and
// loyalty-influenced sales (docs/REPORTS.md). They are kept apart from the ledger, in a table of
// their own: they change no balance, budget or member, and carry no personal data.

// Sale is a counted sale without a member.
type Sale struct {
	ID         string // the delta id: deduplication, as for the ledger
	Store      string
	OrderID    string // at most one sale per order at a store
	Amount     int64
	Currency   string
	EventAt    time.Time // the delta's event time
	ReceivedAt time.Time
	Hash       string
}

// SalesTotal is the sales without a member of a range in one currency (at one store, by store).
type SalesTotal struct {
	Store    string `json:"-"`
	Currency string `json:"currency"`
	Count    int64  `json:"count"`
	Amount   int64  `json:"amount"`
}

// maxSaleAge bounds how long after it happened a sale is still counted: a store offline longer
// than that has its old sales refused (and kept at the store as rejected) rather than rewrite
// reports that were read long ago. A sale dated ahead of the hub's clock by more than
// MaxClockSkew is refused too.
const maxSaleAge = 400 * 24 * time.Hour

// applySale counts a sale without a member pushed by store (validated by identity): applied
// once, a duplicate on a later delivery, and refused if its id or its order was used for
// another sale.
func (a *applier) applySale(ctx context.Context, store string, d loyalty.Delta, hash string) (lsync.Result, error) {
	// A sale the hub rejected stays rejected, as any delta does (rejectedBefore); one it counted
	// has another digest than a rejected one under its id, and is answered below.
	if e, err := a.rejectedBefore(ctx, store, d.ID, hash); err != nil {
		return lsync.Result{}, err
	} else if e != nil {
		return lsync.Result{DeltaID: d.ID, Status: lsync.StatusRejected, Code: e.Code, Message: e.Message}, nil
	}
	at, now := d.EventTime(), a.Now()
	if at.After(now.Add(MaxClockSkew)) || at.Before(now.Add(-maxSaleAge)) {
		// A sale counted already, sent again after its ack was lost, is a duplicate however old
		// it is by now: its store must not mark as rejected what the hub counted.
		if prev, found, err := a.tx.SaleHash(ctx, d.ID); err != nil {
			return lsync.Result{}, err
		} else if found && prev == hash {
			return lsync.Result{DeltaID: d.ID, Status: lsync.StatusDuplicate}, nil
		}
		return a.reject(ctx, store, d, hash, loyalty.Errorf(loyalty.EINVALID,
			"a sale dated %s is not counted: it is ahead of the hub's clock or older than 400 days", at.UTC().Format(time.RFC3339)))
	}
	s := Sale{ID: d.ID, Store: store, OrderID: d.OrderID, Amount: d.Amount, Currency: d.Currency, EventAt: at, ReceivedAt: now, Hash: hash}
	inserted, err := a.tx.InsertSale(ctx, s)
	if err != nil || inserted {
		return lsync.Result{DeltaID: d.ID, Status: lsync.StatusApplied}, err
	}
	prev, found, err := a.tx.SaleHash(ctx, d.ID)
	switch {
	case err != nil:
		return lsync.Result{}, err
	case found && prev == hash:
		return lsync.Result{DeltaID: d.ID, Status: lsync.StatusDuplicate}, nil
	case found:
		a.Logger.Warn("delta id reused for different content", slog.String("store", store), slog.String("delta", d.ID))
		return a.reject(ctx, store, d, hash, loyalty.Errorf(loyalty.EDUPLICATE,
			"delta id %s was already used for a different change; this one was not applied", d.ID))
	}
	return a.reject(ctx, store, d, hash, loyalty.Errorf(loyalty.EDUPLICATE,
		"order %s was already counted as a sale at this store; this one was not counted", d.OrderID))
}
