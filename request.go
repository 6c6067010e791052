package loyalty

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
)

// Money is an amount in integer minor units (cents). Its JSON form must be a whole, non-negative
// number: 1250 means 12.50 EUR. 12.5, -3, "12" and 1e3 are refused with EINVALID.
type Money int64

// UnmarshalJSON implements json.Unmarshaler with messages a POS developer can act on.
func (m *Money) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if s == "null" {
		return Errorf(EINVALID, "amount is required, in minor units (1250 for 12.50)")
	}
	if strings.HasPrefix(s, `"`) {
		return Errorf(EINVALID, "amount must be a JSON number of minor units (1250 for 12.50), not a string")
	}
	if strings.ContainsAny(s, ".eE") {
		return Errorf(EINVALID, "amount %s is not a whole number: send minor units (1250 for 12.50)", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return Errorf(EINVALID, "amount %s is not a whole number of minor units", s)
	}
	if n < 0 {
		return Errorf(EINVALID, "amount cannot be negative; use /v1/reverse for a refund")
	}
	if n > MaxAmount {
		return Errorf(EINVALID, "amount %d is larger than the maximum of %d minor units", n, int64(MaxAmount))
	}
	*m = Money(n)
	return nil
}

// EarnRequest awards points for a sale. OrderID is the idempotency key.
type EarnRequest struct {
	OrderID  string `json:"order_id"`
	Terminal string `json:"terminal,omitempty"`
	QR       string `json:"qr,omitempty"`        // the scanned member token; or
	MemberID string `json:"member_id,omitempty"` // a member id typed in or known to the POS
	Amount   Money  `json:"amount"`
	Currency string `json:"currency"`
	Lines    []Line `json:"lines,omitempty"` // optional: for category rates and punch cards; they must add up to amount
}

// RedeemRequest spends points on a reward, or uses a voucher. OrderID is the idempotency key.
type RedeemRequest struct {
	OrderID  string `json:"order_id"`
	Terminal string `json:"terminal,omitempty"`
	QR       string `json:"qr,omitempty"`
	MemberID string `json:"member_id,omitempty"`
	RewardID string `json:"reward_id,omitempty"`
	Voucher  string `json:"voucher,omitempty"` // a scanned voucher token, instead of QR and RewardID
	// OrderAmount is the order total the reward is used on, in minor units (for order_value budgets).
	OrderAmount Money `json:"order_amount,omitempty"`
}

// ActionRequest awards an action rule's points (a review, a social follow, a custom event).
// OrderID is the idempotency key: the id of the event in the system that reports it.
type ActionRequest struct {
	OrderID  string `json:"order_id"`
	MemberID string `json:"member_id"`
	Action   string `json:"action"`
}

// ReverseRequest undoes everything an order earned and redeemed (a void or a full refund), or,
// with a RefundID, refunds part of its sale: Amount of money given back, and optionally the Lines
// given back (adding up to Amount), which take their punch-card units back too. A partial refund
// takes back the sale's share of the points; rewards redeemed on the order stand. Each partial
// refund of an order is its own idempotent call, keyed by the order id and the refund id.
type ReverseRequest struct {
	OrderID  string `json:"order_id"`
	Terminal string `json:"terminal,omitempty"`
	RefundID string `json:"refund_id,omitempty"`
	Amount   Money  `json:"amount,omitempty"`
	Lines    []Line `json:"lines,omitempty"`
}

// Validate checks a reverse request and fills a partial refund's amount from its lines. It
// returns EINVALID.
func (r *ReverseRequest) Validate() error {
	if err := ValidateOrderID(r.OrderID); err != nil {
		return err
	}
	if r.RefundID == "" {
		if r.Amount != 0 || len(r.Lines) > 0 {
			return Errorf(EINVALID, "a partial refund needs a refund_id (your id of this refund, so a retry is not refunded twice); without amount and lines the whole order is reversed")
		}
		return nil
	}
	if !ValidText(r.RefundID, MaxIDLength) {
		return Errorf(EINVALID, "refund_id must be at most %d characters of UTF-8 text without NUL (U+0000)", MaxIDLength)
	}
	if r.Amount == 0 && len(r.Lines) > 0 && len(r.Lines) <= MaxLines {
		for _, l := range r.Lines {
			if l.Amount > 0 && l.Amount <= MaxAmount {
				r.Amount += Money(l.Amount) // at most MaxLines × MaxAmount: no overflow
			}
		}
	}
	if r.Amount <= 0 {
		return Errorf(EINVALID, "a partial refund needs the amount given back, in minor units (or the lines given back)")
	}
	if r.Amount > MaxAmount {
		return Errorf(EINVALID, "amount %d is larger than the maximum of %d minor units", r.Amount, int64(MaxAmount))
	}
	return checkRefundLines(Delta{Amount: int64(r.Amount), Lines: r.Lines})
}

// Receipt is the answer to an earn, redeem or reverse: what changed and the balance after it.
type Receipt struct {
	OrderID string   `json:"order_id"`
	Member  string   `json:"member_id"`
	Deltas  []string `json:"delta_ids"`
	Points  int64    `json:"points"`            // net points of this call: positive earned, negative spent
	Balance int64    `json:"balance"`           // balance after the call as this side sees it
	Reward  *Reward  `json:"reward,omitempty"`  // for a redemption: what the POS must apply
	Offline bool     `json:"offline,omitempty"` // answered by a store agent that could not reach the hub
	// CheckedBy says, on a store's receipt, whose figures the member's balance, punch cards,
	// per-member limits, earn caps and voucher were checked against: CheckedByHub (the store was
	// online and the hub answered within its lookup timeout) or CheckedByStore (the store's own
	// records: offline, or the hub was slow). The hub's own receipts leave it out.
	CheckedBy string `json:"checked_by,omitempty"`
	// Earn is how an earn's points were made up (base, tier, campaigns), and PunchRewards the
	// punch cards the order filled: free rewards the POS gives now.
	Earn         *EarnResult `json:"earn,omitempty"`
	PunchRewards []Reward    `json:"punch_rewards,omitempty"`
	// Replayed is true on the answer to a retry (the same order id and body again): the first
	// answer, and nothing was done this time. A POS, or the till, must not give the reward or
	// the punch card's free product again for it. Over HTTP it is the header
	// Idempotent-Replayed (jsonapi.MarkReplayed), so that the body stays the first answer's.
	Replayed bool `json:"-"`
}

// WasReplayed reports Replayed (jsonapi.MarkReplayed).
func (r Receipt) WasReplayed() bool { return r.Replayed }

// SetReplayed marks the receipt as the answer to a retry.
func (r *Receipt) SetReplayed() { r.Replayed = true }

// Who checked a store's receipt (Receipt.CheckedBy).
const (
	CheckedByHub   = "hub"
	CheckedByStore = "store"
)

// ValidateOrderID checks an idempotency key. It returns EINVALID.
func ValidateOrderID(id string) error {
	if id == "" {
		return Errorf(EINVALID, "order_id is required: it is the idempotency key that makes retries safe")
	} else if !ValidText(id, MaxIDLength) {
		return Errorf(EINVALID, "order_id must be at most %d characters of UTF-8 text without NUL (U+0000)", MaxIDLength)
	} else if strings.Contains(id, partSeparator) {
		// Only this one: an order id of an earlier version that holds another control
		// character must still be refundable.
		return Errorf(EINVALID, "order_id must not hold the control character U+001F (unit separator)")
	}
	return nil
}

// PartKey is the idempotency key of one part of an order: a reward or voucher redeemed on it, or
// one partial refund of it. The order id and the part are joined by a control character that no
// order id holds (ValidateOrderID), so a part's key is never another order's key. Without a part
// it is the order id.
func PartKey(orderID, part string) string {
	if part == "" {
		return orderID
	}
	return orderID + partSeparator + part
}

// PartKeyRange is where the keys of an order's parts sort, byte by byte: from ≤ key < to.
func PartKeyRange(orderID string) (from, to string) {
	return orderID + partSeparator, orderID + string(rune(partSeparator[0]+1))
}

const partSeparator = "\x1f" // ASCII unit separator

// LegacyPartKey is the key versions before PartKey kept for a part of an order, "order/part",
// which an order id holding "/" could share. Looked up when PartKey finds nothing, so that a
// retry sent across an upgrade still gets the answer given before it.
func LegacyPartKey(orderID, part string) string { return orderID + "/" + part }

// Validate checks an earn request's fields that need no lookup. It returns EINVALID.
func (r *EarnRequest) Validate() error {
	if err := ValidateOrderID(r.OrderID); err != nil {
		return err
	}
	if r.Amount <= 0 {
		return Errorf(EINVALID, "amount is required: the sale total in minor units (1299 for 12.99), more than 0")
	}
	return ValidateCurrency(r.Currency)
}

// IdempotencyConflict is the error for an order id reused with a different request body; part
// is the call's part of the order (PartKey: a reward, a voucher, a refund id), "" for none.
func IdempotencyConflict(op, orderID, part string) error {
	if op == "reverse" && part != "" {
		return Errorf(ECONFLICT, "refund %s of order %s was already made with a different amount or lines; the first refund stands. "+
			"Resend it unchanged, or give another refund of the order a new refund_id", part, orderID)
	}
	if op == "reverse" {
		return Errorf(ECONFLICT, "order %s was already reversed by a different request; the first reversal stands", orderID)
	}
	return Errorf(ECONFLICT, "order %s already has a different %s request: a retry must send the same body, a new sale needs a new order id", orderID, op)
}

// RequestHash returns a digest of a request body, to tell a retry (same body) from a different
// request that reuses its idempotency key.
func RequestHash(v any) string {
	b, _ := json.Marshal(v) // request types have plain fields only
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
