package loyalty

// KindSale is a sale without a member (docs/API.md, "POST /v1/sales"): the POS reports it so that
// reports can tell members' share of all sales (adoption rate, loyalty-influenced sales). It
// carries the order id, the amount and the currency, and nothing about the customer: no member,
// no points, no lines. The hub counts it and applies it to no balance or budget.
const KindSale Kind = "sale"

// SaleRequest reports a sale without a member. OrderID is the idempotency key: a retry returns
// the first answer, and an order that earned points for a member is not also a sale.
type SaleRequest struct {
	OrderID  string `json:"order_id"`
	Terminal string `json:"terminal,omitempty"`
	Amount   Money  `json:"amount"`
	Currency string `json:"currency"`
}

// SaleReceipt answers a SaleRequest: the order, the delta that carries the sale to the hub, and
// whether the store was offline (the sale then reaches the hub when the store is back).
type SaleReceipt struct {
	OrderID string   `json:"order_id"`
	Deltas  []string `json:"delta_ids"`
	Offline bool     `json:"offline,omitempty"`
	// Replayed: the answer to a retry, as Receipt.Replayed.
	Replayed bool `json:"-"`
}

// WasReplayed reports Replayed (jsonapi.MarkReplayed).
func (r SaleReceipt) WasReplayed() bool { return r.Replayed }

// Validate checks a sale report.
func (r *SaleRequest) Validate() error {
	if err := ValidateOrderID(r.OrderID); err != nil {
		return err
	}
	if !ValidText(r.Terminal, MaxIDLength) {
		return Errorf(EINVALID, "terminal must be UTF-8 text of at most %d characters, without NUL (U+0000)", MaxIDLength)
	}
	if r.Amount <= 0 || r.Amount > MaxAmount {
		return Errorf(EINVALID, "amount is required: the sale total in minor units (1299 for 12.99), 1 to %d", int64(MaxAmount))
	}
	return ValidateCurrency(r.Currency)
}

// validateSale checks the shape of a KindSale delta: an order, an amount and a currency, and
// nothing that belongs to a member.
func (d *Delta) validateSale() error {
	switch {
	case d.Member != "":
		return Errorf(EINVALID, "a sale without a member names no member")
	case d.Points != 0:
		return Errorf(EINVALID, "a sale without a member carries no points")
	case d.OrderID == "":
		return Errorf(EINVALID, "a sale without a member names its order")
	case d.Amount <= 0:
		return Errorf(EINVALID, "a sale without a member has an amount of more than 0 minor units")
	case d.Reward != "" || d.Voucher != "" || d.Reverses != "" || d.Rule != "" || d.Tier != "" || d.Country != "" ||
		len(d.Lines) > 0 || len(d.Leases) > 0 || len(d.Punches) > 0 || len(d.PunchRewards) > 0:
		return Errorf(EINVALID, "a sale without a member carries only its order, amount and currency")
	}
	return ValidateCurrency(d.Currency)
}
