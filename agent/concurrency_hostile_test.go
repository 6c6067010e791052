package agent_test

// Two tills racing with the same voucher, or for the same points: the serialised writer (one
// transaction per POS call, group commit or not) keeps a voucher single-use and a balance from
// going below zero under concurrency.

import (
	"context"
	"fmt"
	gosync "sync"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

func TestHostile_ConcurrentVoucherUseOnce(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	v, err := qr.Sign(ta.key, qr.Claims{Type: qr.TypeVoucher, Member: "m1", Voucher: "v-race", Reward: "coffee"})
	if err != nil {
		t.Fatal(err)
	}
	errs := tills(func(i int) error {
		_, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("race-%d", i), Voucher: v})
		return err
	})
	ok := 0
	for i, err := range errs {
		switch loyalty.ErrorCode(err) {
		case "":
			ok++
		case loyalty.ECONFLICT:
		default:
			t.Errorf("till %d: %v", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent uses of one voucher were accepted, want exactly 1", ok, len(errs))
	}
}

func TestHostile_ConcurrentRedemptionsNeverOverdraw(t *testing.T) {
	ta := newTestAgent(t) // m1 has 120 points; coffee costs 50
	ctx := context.Background()
	tok := ta.token(t, "m1")
	errs := tills(func(i int) error {
		_, err := ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("c-%d", i), QR: tok, RewardID: "coffee"})
		return err
	})
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if loyalty.ErrorCode(err) != loyalty.EINSUFFICIENT {
			t.Errorf("unexpected refusal: %v", err)
		}
	}
	if s := ta.scan(t, "m1"); ok != 2 || s.Balance != 20 {
		t.Errorf("%d coffees accepted, balance %d; want 2 and 20", ok, s.Balance)
	}
}

// tills runs call(i) for 16 tills at once and returns their errors, in till order.
func tills(call func(i int) error) []error {
	errs := make([]error, 16)
	var wg gosync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = call(i) })
	}
	wg.Wait()
	return errs
}
