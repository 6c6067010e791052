package hub_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
)

// TestVoucher_BudgetCountsTheMostItGives: a voucher is counted toward its reward's budgets when
// it is bought, before its order exists, so it counts the most it can give, whatever order_amount
// the buyer sends: the value of an amount_off, a percent_off's max_value. Bought with an
// order_amount of 1, 5.00-off vouchers charged a discount budget 1 cent each, and ten were
// given against a budget of two. A percent_off without a max_value under a discount budget, and
// any reward under an order_value budget, would count what the buyer claims: not sold as
// vouchers.
func TestVoucher_BudgetCountsTheMostItGives(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Rewards = append(p.Rewards,
			loyalty.Reward{ID: "tenpct", Name: "10 % off", PointsCost: 10, Kind: "percent_off", Value: 10, MaxValue: 300},
			loyalty.Reward{ID: "halfoff", Name: "50 % off", PointsCost: 10, Kind: "percent_off", Value: 50},
			loyalty.Reward{ID: "bag", Name: "Tote bag", PointsCost: 10, Kind: "free_product"})
		p.Budgets = []loyalty.Budget{
			{ID: "five", Metric: loyalty.MetricDiscount, Reward: "five-off", Limit: 1000},
			{ID: "pct", Metric: loyalty.MetricDiscount, Reward: "tenpct", Limit: 10000},
			{ID: "half", Metric: loyalty.MetricDiscount, Reward: "halfoff", Limit: 10000},
			{ID: "bags", Metric: loyalty.MetricOrderValue, Reward: "bag", Limit: 100000},
		}
	})
	fund(t, h, "m1", 5000)
	issued := 0
	for i := range 4 {
		v, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("APP-%d", i), MemberID: "m1", RewardID: "five-off", OrderAmount: 1})
		if loyalty.ErrorCode(err) == loyalty.EBUDGET {
			continue
		} else if err != nil {
			t.Fatalf("voucher %d: %v", i, err)
		}
		issued++
		if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("WEB-%d", i), Voucher: v.Voucher.Token, OrderAmount: 3000}); err != nil {
			t.Fatalf("use of voucher %d: %v", i, err)
		}
	}
	if _, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "APP-pct", MemberID: "m1", RewardID: "tenpct", OrderAmount: 100}); err != nil {
		t.Fatal(err)
	}
	spent := budgetsSpent(t, h)
	if issued != 2 || spent["five"] != 1000 || spent["pct"] != 300 {
		t.Fatalf("%d five-off vouchers of a budget of two (bought with an order_amount of 1), budgets spent %v; want 2, five 1000, pct 300 (its max_value)",
			issued, spent)
	}
	for reward, says := range map[string]string{"halfoff": "max_value", "bag": "order value"} {
		_, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "APP-" + reward, MemberID: "m1", RewardID: reward, OrderAmount: 5000})
		if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), says) {
			t.Errorf("a voucher for %s: %v, want EINVALID saying %q", reward, err, says)
		}
	}
	// Redeemed on an order, they count that order, as before.
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "WEB-half", MemberID: "m1", RewardID: "halfoff", OrderAmount: 1000}); err != nil {
		t.Fatal(err)
	}
	if spent := budgetsSpent(t, h)["half"]; spent != 500 {
		t.Errorf("50 %% off a 10.00 order counted %d, want 500", spent)
	}
}

// setReward changes the reward id of p with set.
func setReward(p *loyalty.Program, id string, set func(*loyalty.Reward)) {
	for i := range p.Rewards {
		if p.Rewards[i].ID == id {
			set(&p.Rewards[i])
		}
	}
}

// budgetsSpent is what each budget has spent, by budget id.
func budgetsSpent(t *testing.T, h *hub.Hub) map[string]int64 {
	t.Helper()
	bs, err := h.Budgets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	spent := map[string]int64{}
	for _, b := range bs {
		spent[b.ID] = b.Spent
	}
	return spent
}

// TestVoucher_MinOrderWhereUsed: a reward's min_order holds for the order a voucher is used on,
// not for its purchase, which has no order. A 5.00-off for orders of 50.00 was bought with an
// order_amount of 50.00 and taken online on an order of 1.00. Refused, the voucher stays usable.
func TestVoucher_MinOrderWhereUsed(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) { setReward(p, "five-off", func(r *loyalty.Reward) { r.MinOrder = 5000 }) })
	fund(t, h, "m1", 500)
	v, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "APP-1", MemberID: "m1", RewardID: "five-off"})
	if err != nil {
		t.Fatalf("a voucher bought without an order amount: %v", err)
	}
	for _, amount := range []loyalty.Money{0, 100, 4999} {
		_, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("WEB-%d", amount), Voucher: v.Voucher.Token, OrderAmount: amount})
		if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "at least 5000") {
			t.Fatalf("the voucher on an order of %d: %v, want EINVALID naming the minimum", amount, err)
		}
	}
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "WEB-ok", Voucher: v.Voucher.Token, OrderAmount: 5000}); err != nil {
		t.Fatalf("the voucher on an order of 50.00: %v", err)
	}
}

// TestVoucher_RetryByAnotherKey: a retry of a voucher's purchase answers its code only to the
// API key that bought it. Another online key reads the purchase in the member's ledger and could
// write its body again; it is refused with ECONFLICT, without the code.
func TestVoucher_RetryByAnotherKey(t *testing.T) {
	a := openAKHub(t)
	shop := a.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)
	app := a.newKey(t, akAdminKey, "member app", hub.ScopeOnline)
	fund(t, a.Hub, "m1", 500)
	body := `{"order_id":"SHOP-77","terminal":"web","member_id":"m1","reward_id":"five-off","order_amount":4200}`
	var bought, again hub.VoucherReceipt
	a.mustDo(t, shop.Key, "POST", "/v1/vouchers", body, http.StatusOK, &bought)
	a.mustDo(t, shop.Key, "POST", "/v1/vouchers", body, http.StatusOK, &again)
	if bought.Voucher.Token == "" || again.Voucher.Token != bought.Voucher.Token {
		t.Fatalf("the buyer's retry: %+v, want the first answer %+v", again.Voucher, bought.Voucher)
	}
	for _, key := range []string{app.Key, akAdminKey} {
		status, b := a.do(t, key, "POST", "/v1/vouchers", body)
		jsonapitest.AssertError(t, status, b, http.StatusConflict, loyalty.ECONFLICT)
		if strings.Contains(string(b), bought.Voucher.Token) || strings.Contains(string(b), bought.Voucher.ID) {
			t.Fatalf("another key's retry answered %s", b)
		}
	}
}

// TestVoucher_PurchaseSharesNoOrder: a voucher bought under an order id does not spare a
// redemption on that order, nor take over what one frees: it was counted the most it can give,
// before any order. A 10 % voucher (at most 3.00) bought under SHOP-1 let a 5.00-off on SHOP-1's
// 6.00 be counted 3.00, and a 5.00-off on an order of 3.00 nothing.
func TestVoucher_PurchaseSharesNoOrder(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		setReward(p, "five-off", func(r *loyalty.Reward) { r.Stackable = true })
		p.Rewards = append(p.Rewards,
			loyalty.Reward{ID: "tenpct", Name: "10 % off", PointsCost: 10, Kind: "percent_off", Value: 10, MaxValue: 300, Stackable: true})
		p.Budgets = []loyalty.Budget{{ID: "disc", Metric: loyalty.MetricDiscount, Limit: 100000}}
	})
	fund(t, h, "m1", 5000)
	want := int64(0)
	spent := func(what string, add int64) {
		t.Helper()
		want += add
		if got := budgetsSpent(t, h)["disc"]; got != want {
			t.Fatalf("%s: budget spent %d, want %d", what, got, want)
		}
	}
	if _, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "SHOP-1", MemberID: "m1", RewardID: "tenpct", OrderAmount: 600}); err != nil {
		t.Fatal(err)
	}
	spent("the voucher", 300)
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "SHOP-1", MemberID: "m1", RewardID: "five-off", OrderAmount: 600}); err != nil {
		t.Fatal(err)
	}
	spent("5.00 off an order of 6.00 under the voucher's order id", 500)
	if _, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "SHOP-2", MemberID: "m1", RewardID: "five-off"}); err != nil {
		t.Fatal(err)
	}
	spent("a 5.00-off voucher", 500)
	if _, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: "SHOP-2", MemberID: "m1", RewardID: "five-off", OrderAmount: 300}); err != nil {
		t.Fatal(err)
	}
	spent("5.00 off an order of 3.00 under that voucher's order id", 300)
	// Refunding the redemption gives back its own count; the voucher keeps its.
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "SHOP-1", RefundID: "", Terminal: ""}); err != nil {
		t.Fatal(err)
	}
	spent("SHOP-1 refunded: the voucher and the 5.00 off", -800)
}

// TestVoucher_RetryOfAPurchaseWithoutItsKey: a purchase recorded before deltas named their API
// key cannot tell its buyer's retry from another key's: the code is not shown again, and the
// refusal says how the member gets a voucher all the same.
func TestVoucher_RetryOfAPurchaseWithoutItsKey(t *testing.T) {
	a := openAKHub(t)
	shop := a.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)
	fund(t, a.Hub, "m1", 500)
	body := `{"order_id":"SHOP-78","terminal":"web","member_id":"m1","reward_id":"five-off"}`
	var bought hub.VoucherReceipt
	a.mustDo(t, shop.Key, "POST", "/v1/vouchers", body, http.StatusOK, &bought)
	forget := `UPDATE deltas SET body = json_remove(body, '$.key_id') WHERE id = ?`
	if onPostgres() {
		forget = `UPDATE deltas SET body = (body::jsonb - 'key_id')::text WHERE id = $1`
	}
	if _, err := openRaw(t, whereOf(t, a.Hub.Store)).Exec(forget, bought.Voucher.DeltaID); err != nil {
		t.Fatal(err)
	}
	status, b := a.do(t, shop.Key, "POST", "/v1/vouchers", body)
	jsonapitest.AssertError(t, status, b, http.StatusConflict, loyalty.ECONFLICT)
	if !strings.Contains(string(b), "POST /v1/reverse") || strings.Contains(string(b), bought.Voucher.Token) {
		t.Fatalf("the retry of a purchase without its key: %s; want the way to a voucher, and no code", b)
	}
}
