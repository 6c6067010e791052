// The online channel: earn, redeem, vouchers, refunds and actions from e-commerce or a member
// app, each once per order id, decided by the hub itself.

package hub

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// online runs an online-channel operation once per (op, order id): a retry with the same body
// gets the first result; the same order id with a different body is ECONFLICT. Only successful
// results are remembered, so a refused call can be retried after fixing its cause.
func (h *Hub) online(ctx context.Context, op, orderID, part string, req any, fn func(*applier) (any, error), out any) error {
	_, err := h.onlineOnce(ctx, op, orderID, part, req, fn, out)
	return err
}

// onlineOnce is online, and says whether this call ran fn and committed it (fresh) rather than
// answering with the result of an earlier call. The transaction function keeps nothing outside
// the transaction but what its last, committed attempt set: a backend may run it again.
func (h *Hub) onlineOnce(ctx context.Context, op, orderID, part string, req any, fn func(*applier) (any, error), out any) (fresh bool, err error) {
	c, err := newOnlineCall(op, orderID, part, req, fn)
	if err != nil {
		return false, err
	}
	return h.callOnline(ctx, c, out)
}

// callOnline runs c in a transaction of its own and unmarshals its answer into out.
func (h *Hub) callOnline(ctx context.Context, c onlineCall, out any) (fresh bool, err error) {
	var resp []byte
	err = h.update(ctx, func(tx Tx) error {
		var err error
		fresh, resp, err = h.runOnline(ctx, tx, c, nil)
		return err
	})
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(resp, out); err != nil {
		return fresh, err
	}
	if r, ok := out.(interface{ SetReplayed() }); ok && !fresh {
		r.SetReplayed() // a retry's answer: nothing was done this time (Idempotent-Replayed)
	}
	return fresh, nil
}

// onlineCall is one online request under its idempotency key: op and the key of the order or
// of one part of it (loyalty.PartKey), and the hash of the request, which a retry must match.
type onlineCall struct {
	op, orderID, hash string
	part              string // the call's part of the order (loyalty.PartKey), "" for none
	key, legacy       string // legacy: the part's key as versions before PartKey kept it
	fn                func(*applier) (any, error)
}

// callerOrderID refuses an online caller's order id of the form the hub keeps for its own awards
// (loyalty.HubOrderID). Under one, a caller's action would take the key of a member's birthday
// or sign-up award, so that the hub never made it, and a caller's order would share the award's
// entries, so that reversing the order took the award back too. The sign-up action under the
// member's own order id is the one call that may use one (Action).
func callerOrderID(id string) error {
	if loyalty.HubOrderID(id) {
		return loyalty.Errorf(loyalty.EINVALID, "order ids beginning with %q or %q belong to the hub's own sign-up and birthday awards; "+
			"use another order id (an award is taken back with an adjustment)", "signup-", loyalty.ActionBirthday+"-<year>-")
	}
	return nil
}

// newOnlineCall checks orderID and keys the call: the order, or its part if part is not empty.
func newOnlineCall(op, orderID, part string, req any, fn func(*applier) (any, error)) (onlineCall, error) {
	if err := loyalty.ValidateOrderID(orderID); err != nil {
		return onlineCall{}, err
	}
	c := onlineCall{op: op, orderID: orderID, part: part, key: loyalty.PartKey(orderID, part), hash: loyalty.RequestHash(req), fn: fn}
	if part != "" {
		c.legacy = loyalty.LegacyPartKey(orderID, part)
	}
	return c, nil
}

// runOnline runs c in tx: the answer saved for its key if it ran before (with the same request),
// or fn, whose answer it saves, marshalled, as resp (fresh). cur, if not nil, is the current
// program as tx reads it, parsed once for several calls in one transaction; fn does not change it.
func (h *Hub) runOnline(ctx context.Context, tx Tx, c onlineCall, cur *loyalty.Program) (fresh bool, resp []byte, err error) {
	if prev, found, err := c.answered(ctx, tx); err != nil || found {
		return false, prev, err
	}
	a := h.newApplier(tx)
	a.cur = cur
	if resp, err = a.call(ctx, c); err != nil {
		return false, nil, err
	}
	if _, err := a.finish(ctx); err != nil {
		return false, nil, err
	}
	return true, resp, nil
}

// call runs a call that has no answer yet on a, and saves its answer under its idempotency key.
func (a *applier) call(ctx context.Context, c onlineCall) ([]byte, error) {
	a.key = ""
	if actor := ActorFrom(ctx); actor != internalActor {
		a.key = actor.KeyID // the hub's own awards (a birthday) name none
	}
	res, err := c.fn(a)
	if err != nil {
		return nil, err
	}
	resp, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return resp, a.tx.SaveIdempotent(ctx, c.op, c.key, c.hash, resp, a.Now())
}

// runOnlineAll runs calls in tx as runOnline runs each, but with one applier for them all: the
// program, the members and the webhook subscriptions are read once, and the changes are written
// together at the end (one update of the members; one insert of the ledger, unless a call reads
// the ledger on its way, such as an action's max_times count, which inserts what waits first).
// The ids of the deltas the calls mint (newDelta) are not looked up in the ledger. It is for
// calls that stand or fall together, the awards of a birthday batch: a refusal fails them all, as
// it fails the transaction. It returns how many calls were made now, not answered from an
// earlier run (found by their idempotency key).
func (h *Hub) runOnlineAll(ctx context.Context, tx Tx, calls []onlineCall, cur *loyalty.Program) (fresh int, err error) {
	a := h.newApplier(tx)
	a.cur, a.minted = cur, make(map[string]bool, len(calls))
	a.deferInserts()
	for _, c := range calls {
		if _, found, err := c.answered(ctx, tx); err != nil {
			return 0, err
		} else if found {
			continue
		}
		if _, err := a.call(ctx, c); err != nil {
			return 0, err
		}
		fresh++
	}
	if _, err := a.finish(ctx); err != nil {
		return 0, err
	}
	return fresh, nil
}

// answered returns the answer an earlier run of the call gave, found by its idempotency key, or
// an idempotency conflict if that run was another request under the same key.
func (c onlineCall) answered(ctx context.Context, tx Tx) (prev []byte, found bool, err error) {
	prevHash, prev, found, err := tx.Idempotent(ctx, c.op, c.key)
	if err == nil && !found && c.legacy != "" {
		prevHash, prev, found, err = tx.LegacyIdempotent(ctx, c.op, c.legacy)
	}
	if err != nil || !found {
		return nil, false, err
	}
	if prevHash != c.hash {
		return nil, true, loyalty.IdempotencyConflict(c.op, c.orderID, c.part)
	}
	return prev, true, nil
}

// applyOnline applies a delta minted by the online channel and fails with the rejection's code
// if it breaks a rule (the online channel can still say no, unlike an offline store). The
// rejection apply recorded is rolled back with the rest of the refused request.
func (a *applier) applyOnline(ctx context.Context, d loyalty.Delta) error {
	if err := a.allow(ctx, d); err != nil {
		return err
	}
	r, err := a.apply(ctx, loyalty.OnlineStore, d)
	if err != nil {
		return err
	}
	if r.Status != lsync.StatusApplied {
		return loyalty.Errorf(r.Code, "%s", r.Message)
	}
	return nil
}

// authentic checks a token's signature with the hub's public keys and its type (want; "": a
// member or a voucher code). Whether it is still current is checked by the returned func, only for
// a new request, so that a retry of a call approved just before the code expired gets its first
// answer.
func (h *Hub) authentic(ctx context.Context, token, want string) (qr.Claims, func() error, error) {
	var c qr.Claims
	var v *qr.Verifier
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		if v, err = h.verifier(ctx, tx); err != nil {
			return err
		}
		c, err = v.Authentic(token)
		return err
	})
	if err == nil && want != "" && c.Type != want {
		if want == qr.TypeMember {
			return c, nil, loyalty.Errorf(loyalty.EINVALID, "this is a voucher code, not a member code")
		}
		return c, nil, loyalty.Errorf(loyalty.EINVALID, "this is a member code, not a voucher")
	}
	return c, func() error { return v.Current(c) }, err
}

// verifier returns a verifier of the codes the hub signed, with every key it holds, retired or
// not (a retired key verifies what it signed until its end).
func (h *Hub) verifier(ctx context.Context, tx Tx) (*qr.Verifier, error) {
	keys, err := tx.PublicKeys(ctx)
	if err != nil {
		return nil, err
	}
	v := &qr.Verifier{Now: h.Now}
	for _, k := range keys {
		v.Keys = append(v.Keys, k.PublicKey)
	}
	return v, nil
}

// memberOf resolves the member of an online request from a QR token or an id. Whether the
// member exists is checked inside the request's transaction, as is whether the code is current.
func (h *Hub) memberOf(ctx context.Context, token, id string) (string, func() error, error) {
	if token != "" {
		c, current, err := h.authentic(ctx, token, qr.TypeMember)
		if err == nil { // an erased member's codes name no one any more (care.go)
			err = h.Store.View(ctx, func(tx Tx) error { return refuseErased(ctx, tx, c.Member) })
		}
		return c.Member, current, err
	}
	if id == "" {
		return "", nil, loyalty.Errorf(loyalty.EINVALID, "member_id or qr is required")
	}
	return id, func() error { return nil }, nil
}

func (a *applier) newDelta(orderID, member string, kind loyalty.Kind, terminal string) loyalty.Delta {
	d := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: loyalty.OnlineStore, Terminal: terminal, Member: member,
		Kind: kind, OrderID: orderID, OccurredAt: a.Now(), Key: a.key}
	if a.minted != nil {
		a.minted[d.ID] = true
	}
	return d
}

// Earn awards points for an online sale.
func (h *Hub) Earn(ctx context.Context, req loyalty.EarnRequest) (loyalty.Receipt, error) {
	var out loyalty.Receipt
	if err := req.Validate(); err != nil {
		return out, err
	}
	if err := callerOrderID(req.OrderID); err != nil {
		return out, err
	}
	member, current, err := h.memberOf(ctx, req.QR, req.MemberID)
	if err != nil {
		return out, err
	}
	req.QR, req.MemberID = "", member // a retry with a refreshed code is the same request
	err = h.online(ctx, "earn", req.OrderID, "", req, func(a *applier) (any, error) {
		if err := current(); err != nil {
			return nil, err
		}
		if _, err := a.balance(ctx, member); err != nil {
			return nil, err
		}
		m := a.members[member]
		p, err := a.current(ctx)
		if err != nil {
			return nil, err
		}
		d := a.newDelta(req.OrderID, member, loyalty.KindEarn, req.Terminal)
		loc, zone := p.OnlineLocation() // campaign days and hours, as a store's are in its zone
		res, err := p.ComputeEarn(loyalty.EarnInput{Member: m, Amount: int64(req.Amount), Currency: req.Currency, Lines: req.Lines,
			At: d.EventTime(), Location: loc})
		if err != nil {
			return nil, err
		}
		pts, err := a.capEarn(ctx, p, member, loyalty.RulePurchase, res.Points)
		if err != nil {
			return nil, err
		}
		d.Points, d.Amount, d.Currency, d.RuleVersion = pts, int64(req.Amount), req.Currency, p.Version
		d.Lines, d.Tier, d.Country, d.TimeZone, d.Punches, d.PunchRewards = req.Lines, m.Tier, m.Country, zone, res.Punches, res.PunchRewards
		if err := a.applyOnline(ctx, d); err != nil {
			return nil, err
		}
		var rewards []loyalty.Reward
		for _, id := range res.PunchRewards {
			if c, ok := p.PunchCard(id); ok {
				if r, err := p.Reward(c.Reward); err == nil {
					rewards = append(rewards, r)
				}
			}
		}
		return loyalty.Receipt{OrderID: req.OrderID, Member: member, Deltas: []string{d.ID}, Points: pts, Balance: a.balances[member],
			Earn: &res, PunchRewards: rewards}, nil
	}, &out)
	return out, err
}

// Redeem spends points on a reward, or uses a voucher, online. Unlike an offline store, the
// online channel refuses a redemption the balance cannot cover (EINSUFFICIENT) or a voucher that
// was already used or cancelled (ECONFLICT).
func (h *Hub) Redeem(ctx context.Context, req loyalty.RedeemRequest) (loyalty.Receipt, error) {
	var out loyalty.Receipt
	if err := loyalty.ValidateOrderID(req.OrderID); err != nil {
		return out, err
	} else if err := callerOrderID(req.OrderID); err != nil {
		return out, err
	}
	if req.Voucher != "" {
		c, current, err := h.authentic(ctx, req.Voucher, qr.TypeVoucher)
		if err != nil {
			return out, err
		}
		req.Voucher = c.Voucher
		err = h.online(ctx, "redeem", req.OrderID, c.Voucher, req, func(a *applier) (any, error) {
			if err := current(); err != nil {
				return nil, err
			}
			return a.useVoucher(ctx, req, c)
		}, &out)
		return out, err
	}
	if req.RewardID == "" {
		return out, loyalty.Errorf(loyalty.EINVALID, "reward_id or voucher is required")
	}
	member, current, err := h.memberOf(ctx, req.QR, req.MemberID)
	if err != nil {
		return out, err
	}
	req.QR, req.MemberID = "", member
	// Each reward on an order is its own idempotent call: an order may carry stackable rewards.
	err = h.online(ctx, "redeem", req.OrderID, req.RewardID, req, func(a *applier) (any, error) {
		if err := current(); err != nil {
			return nil, err
		}
		p, err := a.current(ctx)
		if err != nil {
			return nil, err
		}
		if err := a.stacks(ctx, p, loyalty.OnlineStore, req.OrderID, req.RewardID); err != nil {
			return nil, err
		}
		d, r, err := a.payReward(ctx, req, member, false)
		if err != nil {
			return nil, err
		}
		return loyalty.Receipt{OrderID: req.OrderID, Member: member, Deltas: []string{d.ID}, Points: d.Points, Balance: a.balances[member], Reward: &r}, nil
	}, &out)
	return out, err
}

// payReward applies a redeem delta for req.RewardID if the member can afford it: a redemption on
// the order req names, or, with voucher, the purchase of a voucher, whose order is not known
// until it is used. A purchase records no order amount, whatever the caller sent: its budgets
// count the most the voucher can give (Program.CheckVoucher), and the reward's min_order is
// checked where the voucher is used.
func (a *applier) payReward(ctx context.Context, req loyalty.RedeemRequest, member string, voucher bool) (loyalty.Delta, loyalty.Reward, error) {
	p, err := a.current(ctx)
	if err != nil {
		return loyalty.Delta{}, loyalty.Reward{}, err
	}
	r, err := p.Reward(req.RewardID)
	if err != nil {
		return loyalty.Delta{}, r, err
	}
	bal, err := a.balance(ctx, member)
	if err != nil {
		return loyalty.Delta{}, r, err
	}
	if bal < r.PointsCost {
		return loyalty.Delta{}, r, loyalty.Errorf(loyalty.EINSUFFICIENT, "member %s has %d points; %s costs %d", member, bal, r.Name, r.PointsCost)
	}
	if err := r.ForTier(a.members[member].Tier); err != nil {
		return loyalty.Delta{}, r, err
	}
	if voucher {
		if err := p.CheckVoucher(r.ID); err != nil {
			return loyalty.Delta{}, r, err
		}
		req.OrderAmount = 0
	} else if err := r.FitsOrder(int64(req.OrderAmount)); err != nil {
		return loyalty.Delta{}, r, err
	} else if err := p.CheckOrderAmount(r.ID, int64(req.OrderAmount)); err != nil {
		return loyalty.Delta{}, r, err
	}
	d := a.newDelta(req.OrderID, member, loyalty.KindRedeem, req.Terminal)
	d.Points, d.Reward, d.RuleVersion, d.Amount = -r.PointsCost, r.ID, p.Version, int64(req.OrderAmount)
	return d, r, a.applyOnline(ctx, d)
}

func (a *applier) useVoucher(ctx context.Context, req loyalty.RedeemRequest, c qr.Claims) (any, error) {
	v, err := a.tx.Voucher(ctx, c.Voucher)
	if err != nil {
		return nil, err
	}
	if !v.VoidedAt.IsZero() {
		return nil, loyalty.Errorf(loyalty.ECONFLICT, "voucher %s was cancelled: the order that bought it was refunded", v.ID)
	}
	uses, err := a.tx.VoucherUses(ctx, v.ID)
	if err != nil {
		return nil, err
	}
	if len(uses) > 0 {
		return nil, loyalty.Errorf(loyalty.ECONFLICT, "voucher %s was already used", v.ID)
	}
	p, err := a.current(ctx)
	if err != nil {
		return nil, err
	}
	// min_order holds for the order the voucher is used on (its purchase had none).
	if r, err := p.Reward(v.Reward); err == nil {
		if err := r.FitsOrder(int64(req.OrderAmount)); err != nil {
			return nil, err
		}
	}
	// A voucher's reward stacks as a redemption of it would, whichever came first on the order.
	if err := a.stacks(ctx, p, loyalty.OnlineStore, req.OrderID, v.Reward); err != nil {
		return nil, err
	}
	d := a.newDelta(req.OrderID, v.Member, loyalty.KindRedeem, req.Terminal)
	d.Voucher, d.Reward, d.RuleVersion, d.Amount = v.ID, v.Reward, p.Version, int64(req.OrderAmount)
	if err := a.applyOnline(ctx, d); err != nil {
		return nil, err
	}
	rc := loyalty.Receipt{OrderID: req.OrderID, Member: v.Member, Deltas: []string{d.ID}, Balance: a.balances[v.Member]}
	if r, err := p.Reward(v.Reward); err == nil {
		rc.Reward = &r
	}
	return rc, nil
}

// VoucherReceipt is the answer to IssueVoucher.
type VoucherReceipt struct {
	loyalty.Receipt
	Voucher Voucher `json:"voucher"`
}

// IssueVoucher spends a member's points on a reward now and returns a signed single-use voucher
// token that any store can accept offline.
func (h *Hub) IssueVoucher(ctx context.Context, req loyalty.RedeemRequest) (VoucherReceipt, error) {
	var out VoucherReceipt
	if err := loyalty.ValidateOrderID(req.OrderID); err != nil {
		return out, err
	} else if err := callerOrderID(req.OrderID); err != nil {
		return out, err
	}
	if req.RewardID == "" || req.Voucher != "" {
		return out, loyalty.Errorf(loyalty.EINVALID, "a voucher is bought with reward_id (and member_id or qr)")
	}
	member, current, err := h.memberOf(ctx, req.QR, req.MemberID)
	if err != nil {
		return out, err
	}
	req.QR, req.MemberID = "", member
	fresh, err := h.onlineOnce(ctx, "voucher", req.OrderID, "", req, func(a *applier) (any, error) {
		if err := current(); err != nil {
			return nil, err
		}
		d, r, err := a.payReward(ctx, req, member, true)
		if err != nil {
			return nil, err
		}
		k, err := a.signingKey(ctx, a.tx)
		if err != nil {
			return nil, err
		}
		now := a.Now().UTC().Truncate(time.Millisecond)
		v := Voucher{ID: voucherID(req.OrderID), Member: member, Reward: r.ID, DeltaID: d.ID,
			CreatedAt: now, ExpiresAt: now.Add(a.VoucherTokenTTL)}
		if v.Token, err = qr.Sign(k, qr.Claims{Type: qr.TypeVoucher, Member: member, Voucher: v.ID, Reward: r.ID,
			IssuedAt: now.Unix(), Expires: v.ExpiresAt.Unix()}); err != nil {
			return nil, err
		}
		if err := a.tx.InsertVoucher(ctx, v); err != nil {
			return nil, err
		}
		a.emit(EventVoucherIssued, map[string]any{"voucher_id": v.ID, "member_id": v.Member, "reward_id": v.Reward, "delta_id": v.DeltaID,
			"order_id": req.OrderID, "created_at": v.CreatedAt, "expires_at": v.ExpiresAt}, v.ID)
		return VoucherReceipt{Receipt: loyalty.Receipt{OrderID: req.OrderID, Member: member, Deltas: []string{d.ID},
			Points: d.Points, Balance: a.balances[member], Reward: &r}, Voucher: v}, nil
	}, &out)
	if err == nil && !fresh {
		err = h.sameBuyer(ctx, req.OrderID, out.Voucher.DeltaID)
	}
	if err != nil {
		return VoucherReceipt{}, err
	}
	return out, nil
}

// voucherID is the id of the voucher bought by the online order orderID: made from the order id,
// so that the online channel's resend of the purchase after a restore from a backup older than it
// (README, "Backup and restore") makes the voucher the member holds again, not another one. The
// member's code, signed with the voucher's id, is then honoured as before, and the resend leaves
// no second voucher paid for once. An order buys one voucher at most (its idempotency key is kept
// for good), so no two vouchers share an id; an id gives nothing without the signed code.
func voucherID(orderID string) string {
	sum := sha256.Sum256([]byte("voucher\x1f" + orderID))
	return "v" + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:10]))
}

// sameBuyer refuses a retry of a voucher's purchase by another API key than the one that bought
// it (recorded on its delta as Delta.Key): the retry's answer holds the voucher's code, which
// spends what it paid for, and an online key can read any member's ledger, so it could write
// any purchase's body again.
func (h *Hub) sameBuyer(ctx context.Context, orderID, delta string) error {
	caller := ActorFrom(ctx).KeyID
	if ActorFrom(ctx) == internalActor {
		caller = ""
	}
	return h.Store.View(ctx, func(tx Tx) error {
		e, err := tx.Delta(ctx, delta)
		if err != nil {
			return err
		}
		switch {
		case e.Key == caller:
			return nil
		case e.Key == "":
			// Bought before deltas named their key: no one can tell the buyer's retry from another's.
			return loyalty.Errorf(loyalty.ECONFLICT, "order %s bought its voucher before the hub recorded which API key buys: "+
				"its code is not shown again; if the member has not got it, refund the order with POST /v1/reverse and buy again",
				loyalty.Truncate(orderID, 60))
		}
		return loyalty.Errorf(loyalty.ECONFLICT, "order %s bought a voucher with another API key: only that key is shown its code again",
			loyalty.Truncate(orderID, 60))
	})
}

// Reverse undoes every earn and redeem of an online order that is not reversed yet. Refunding the
// purchase of a voucher cancels the voucher; if it was used already, the refund is refused.
func (h *Hub) Reverse(ctx context.Context, req loyalty.ReverseRequest) (loyalty.Receipt, error) {
	var out loyalty.Receipt
	if err := req.Validate(); err != nil {
		return out, err
	}
	err := h.online(ctx, "reverse", req.OrderID, req.RefundID, req, func(a *applier) (any, error) {
		es, err := a.orderEntries(ctx, loyalty.OnlineStore, req.OrderID)
		if err != nil {
			return nil, err
		}
		// The hub's own awards are taken back with an adjustment, never by reversing an order
		// that holds one: its order id is the hub's (callerOrderID), or a caller's that shares it
		// from before the hub kept those ids.
		for _, e := range es {
			if e.Rule == loyalty.ActionSignup || e.Rule == loyalty.ActionBirthday {
				return nil, loyalty.Errorf(loyalty.EINVALID, "order %s holds the hub's own %s award, which is not reversed; take it back with an adjustment",
					loyalty.Truncate(req.OrderID, 60), e.Rule)
			}
		}
		if req.RefundID != "" {
			return a.refundPart(ctx, req, es)
		}
		rc := loyalty.Receipt{OrderID: req.OrderID, Deltas: []string{}}
		for _, e := range loyalty.ToReverse(es) {
			if err := a.voidVoucherOf(ctx, e.ID); err != nil {
				return nil, err
			}
			d := a.newDelta(req.OrderID, e.Member, loyalty.KindReverse, req.Terminal)
			d.Undo(e)
			if err := a.applyOnline(ctx, d); err != nil {
				return nil, err
			}
			rc.Member, rc.Points = e.Member, rc.Points+d.Points
			rc.Deltas = append(rc.Deltas, d.ID)
			rc.Balance = a.balances[e.Member]
		}
		if len(rc.Deltas) == 0 {
			return nil, loyalty.Errorf(loyalty.ENOTFOUND, "online order %s has nothing left to reverse", req.OrderID)
		}
		return rc, nil
	}, &out)
	return out, err
}

// refundPart takes back a partial refund's share of an online order's sale, under the program
// version the sale was made under (its punch cards).
func (a *applier) refundPart(ctx context.Context, req loyalty.ReverseRequest, es []loyalty.OrderEntry) (any, error) {
	i := slices.IndexFunc(es, func(e loyalty.OrderEntry) bool { return e.Kind == loyalty.KindEarn && e.Rule == "" })
	if i < 0 {
		return nil, loyalty.Errorf(loyalty.ENOTFOUND, "online order %s has no sale with points to refund", req.OrderID)
	}
	e := es[i]
	p, err := a.program(ctx, e.RuleVersion)
	if err != nil {
		return nil, err
	}
	d := a.newDelta(req.OrderID, e.Member, loyalty.KindReverse, req.Terminal)
	if err := d.RefundPart(e, loyalty.Refund{Amount: int64(req.Amount), Lines: req.Lines}, p.PunchCardsOf()); err != nil {
		return nil, err
	}
	if err := a.applyOnline(ctx, d); err != nil {
		return nil, err
	}
	return loyalty.Receipt{OrderID: req.OrderID, Member: e.Member, Deltas: []string{d.ID}, Points: d.Points, Balance: a.balances[e.Member]}, nil
}

// orderEntries reads an order's deltas at one store (OnlineStore for the online channel), each
// with the reversals that undid it since, in whole or in part.
func (a *applier) orderEntries(ctx context.Context, store, orderID string) ([]loyalty.OrderEntry, error) {
	ds, err := a.tx.OrderDeltas(ctx, store, orderID)
	if err != nil {
		return nil, err
	}
	out := make([]loyalty.OrderEntry, 0, len(ds))
	for _, d := range ds {
		e, err := a.entry(ctx, d.Delta)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// entry is d with the reversals that undid it since.
func (a *applier) entry(ctx context.Context, d loyalty.Delta) (loyalty.OrderEntry, error) {
	rs, err := a.tx.Reversals(ctx, d.ID)
	if err != nil {
		return loyalty.OrderEntry{}, err
	}
	e := loyalty.OrderEntry{Delta: d}
	for _, r := range rs {
		e.Reversals = append(e.Reversals, r.Delta)
	}
	return e, nil
}

// voidVoucherOf cancels the voucher that delta paid for, if any, before the payment is refunded.
func (a *applier) voidVoucherOf(ctx context.Context, delta string) error {
	v, err := a.tx.VoucherPaidBy(ctx, delta)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return nil
	} else if err != nil {
		return err
	}
	uses, err := a.tx.VoucherUses(ctx, v.ID)
	if err != nil {
		return err
	}
	if len(uses) > 0 {
		return loyalty.Errorf(loyalty.ECONFLICT, "voucher %s bought by this order was already used, so its points cannot be refunded", v.ID)
	}
	return a.tx.VoidVoucher(ctx, v.ID, a.Now())
}

// Action awards an action rule's points: a review, a social follow, a newsletter, or a custom
// event. It is refused with EBUDGET once the member had it max_times in the rule's period, and
// reduced by the earn caps that name the action. Two actions are the hub's own, and have no
// max_times to hold them: the birthday action, which only the hub's birthday job awards
// (AwardBirthdays), and the sign-up action, awarded once per member with the order id
// loyalty.SignupOrderID (by CreateMember, or by a caller giving it later, after a refusal).
// Otherwise a caller with an online key could award either again and again under new order ids.
func (h *Hub) Action(ctx context.Context, req loyalty.ActionRequest) (loyalty.Receipt, error) {
	switch {
	case req.Action == loyalty.ActionBirthday:
		return loyalty.Receipt{}, loyalty.Errorf(loyalty.EFORBIDDEN,
			"the hub awards the birthday action itself, on each member's birthday; give other points with an adjustment")
	case req.Action == loyalty.ActionSignup && req.OrderID != loyalty.SignupOrderID(req.MemberID):
		return loyalty.Receipt{}, loyalty.Errorf(loyalty.EINVALID,
			"the signup action is awarded once per member, with the order id %s", loyalty.SignupOrderID(req.MemberID))
	case req.Action != loyalty.ActionSignup:
		if err := callerOrderID(req.OrderID); err != nil {
			return loyalty.Receipt{}, err
		}
	}
	out, _, err := h.action(ctx, req)
	return out, err
}

// action is Action, and says whether this call made the award (fresh) rather than answering a
// retry of one made before, by this process or another.
func (h *Hub) action(ctx context.Context, req loyalty.ActionRequest) (out loyalty.Receipt, fresh bool, err error) {
	c, err := h.actionCall(ctx, req)
	if err != nil {
		return out, false, err
	}
	fresh, err = h.callOnline(ctx, c, &out)
	return out, fresh && err == nil, err
}

// actionCall checks an action request and returns the online call that awards it.
func (h *Hub) actionCall(ctx context.Context, req loyalty.ActionRequest) (onlineCall, error) {
	if err := loyalty.ValidateOrderID(req.OrderID); err != nil {
		return onlineCall{}, err
	}
	if req.MemberID == "" || req.Action == "" {
		return onlineCall{}, loyalty.Errorf(loyalty.EINVALID, "member_id and action are required")
	}
	return newOnlineCall("action", req.OrderID, "", req, func(a *applier) (any, error) {
		if _, err := a.balance(ctx, req.MemberID); err != nil {
			return nil, err
		}
		p, err := a.current(ctx)
		if err != nil {
			return nil, err
		}
		act, err := p.Action(req.Action)
		if err != nil {
			return nil, err
		}
		if act.MaxTimes > 0 {
			from, to := loyalty.PeriodBounds(act.Period, a.Now()) // the award's event time is now
			n, err := a.tx.RuleCount(ctx, req.MemberID, act.ID, from, to)
			if err != nil {
				return nil, err
			}
			if n >= act.MaxTimes {
				return nil, loyalty.Errorf(loyalty.EBUDGET, "member %s already had %s %d time(s) %s; the limit is %d",
					req.MemberID, act.ID, n, loyalty.PeriodName(act.Period), act.MaxTimes)
			}
		}
		pts, err := a.capEarn(ctx, p, req.MemberID, act.ID, act.Points)
		if err != nil {
			return nil, err
		}
		d := a.newDelta(req.OrderID, req.MemberID, loyalty.KindEarn, "")
		d.Points, d.Rule, d.RuleVersion, d.Currency = pts, act.ID, p.Version, p.Currency
		if err := a.applyOnline(ctx, d); err != nil {
			return nil, err
		}
		return loyalty.Receipt{OrderID: req.OrderID, Member: req.MemberID, Deltas: []string{d.ID}, Points: pts, Balance: a.balances[req.MemberID]}, nil
	})
}

// stacks checks p's stacking rule against the rewards already redeemed on an order of store (and
// not refunded): online, and as the store's agent did for a store's redemption.
func (a *applier) stacks(ctx context.Context, p *loyalty.Program, store, orderID, reward string) error {
	es, err := a.orderEntries(ctx, store, orderID)
	if err != nil {
		return err
	}
	return p.Stacks(reward, loyalty.StandingRewards(es))
}
