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
	const n = 16
	var wg gosync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("race-%d", i), Voucher: v})
		}()
	}
	wg.Wait()
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
		t.Errorf("%d of %d concurrent uses of one voucher were accepted, want exactly 1", ok, n)
	}
}

func TestHostile_ConcurrentRedemptionsNeverOverdraw(t *testing.T) {
	ta := newTestAgent(t) // m1 has 120 points; coffee costs 50
	ctx := context.Background()
	tok := ta.token(t, "m1")
	const n = 16
	var wg gosync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = ta.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("c-%d", i), QR: tok, RewardID: "coffee"})
		}()
	}
	wg.Wait()
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
