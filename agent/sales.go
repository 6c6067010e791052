package agent

import (
	"context"

	"github.com/loyalty-edge-sync/loyalty"
)

// Sale records a sale without a member (POST /v1/sales): the order id, the amount and the
// currency, and nothing about the customer. It is a delta like any other (loyalty.KindSale),
// durable in the outbox before the POS has its answer and synced exactly once; the hub counts it
// for the reports' adoption rate and loyalty-influenced sales. The order id is the idempotency
// key, and an order that earned points for a member at this store is a member's sale already:
// it is refused as a sale without a member (ECONFLICT).
func (a *Agent) Sale(ctx context.Context, req loyalty.SaleRequest) (loyalty.SaleReceipt, error) {
	if err := req.Validate(); err != nil {
		return loyalty.SaleReceipt{}, err
	}
	r, err := a.once(ctx, "sale", req.OrderID, req, func(tx Tx, offline bool) (loyalty.Receipt, error) {
		if _, _, earned, err := tx.PosResult(ctx, "earn", req.OrderID); err != nil {
			return loyalty.Receipt{}, err
		} else if earned {
			return loyalty.Receipt{}, loyalty.Errorf(loyalty.ECONFLICT,
				"order %s earned points for a member: it is counted as a member's sale, not as a sale without a member", req.OrderID)
		}
		d, err := a.newDelta(ctx, tx, "", loyalty.KindSale, req.OrderID, req.Terminal)
		if err != nil {
			return loyalty.Receipt{}, err
		}
		d.Amount, d.Currency = int64(req.Amount), req.Currency
		if err := d.Validate(); err != nil {
			return loyalty.Receipt{}, err
		}
		if err := tx.InsertDelta(ctx, d, a.Now(), nil, offline); err != nil {
			return loyalty.Receipt{}, err
		}
		return loyalty.Receipt{Deltas: []string{d.ID}}, nil
	})
	return loyalty.SaleReceipt{OrderID: r.OrderID, Deltas: r.Deltas, Offline: r.Offline, Replayed: r.Replayed}, err
}
