package hub_test

import (
	"context"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestCurrencies_StoreAndOnline: a program that earns in EUR and GBP. A store's GBP sale is
// recomputed by the hub at the GBP rate and applied; one claiming more points, one in a currency
// the program does not earn in, and one under an older rule version without GBP are rejected. The
// online channel earns in GBP the same way and refuses USD with a message naming the currencies.
func TestCurrencies_StoreAndOnline(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Earn.Currencies = []loyalty.CurrencyRate{{Currency: "GBP", PointsPerUnit: 6, UnitMinor: 500}} // 1.2 points per pound
		p.CategoryRates = []loyalty.CategoryRate{{Category: "coffee", PointsPerUnit: 3}}
	})
	syncStores(t, h)
	gbp := func(amount, points int64, lines ...loyalty.Line) loyalty.Delta {
		d := earn("s1", "m1", amount)
		d.Currency, d.Points, d.RuleVersion, d.Lines = "GBP", points, 2, lines
		return d
	}
	ok := gbp(1299, 15)                                                             // 12.99 × 1.2 = 15.588
	coffee := gbp(1000, 36, loyalty.Line{Category: "coffee", Qty: 2, Amount: 1000}) // 10.00 × 3 × 1.2
	greedy := gbp(1299, 16)                                                         // one point too many
	usd := gbp(1299, 12)                                                            // not a currency of the program
	usd.Currency = "USD"
	old := gbp(1299, 15) // under rule version 1, which earns in EUR only
	old.RuleVersion = 1
	ack := pushOK(t, h, "s1", ok, coffee, greedy, usd, old)
	want := []struct {
		status, code, msg string
	}{
		{lsync.StatusApplied, "", ""},
		{lsync.StatusApplied, "", ""},
		{lsync.StatusRejected, loyalty.EINVALID, "this sale of 1299 minor units of GBP earns 15 points under rule version 2, not 16"},
		{lsync.StatusRejected, loyalty.EINVALID, "this program does not earn points in USD; it earns in EUR, GBP"},
		{lsync.StatusRejected, loyalty.EINVALID, "this program does not earn points in GBP; it earns in EUR"},
	}
	for i, r := range ack.Results {
		if r.Status != want[i].status || r.Code != want[i].code || (want[i].msg != "" && r.Message != want[i].msg) {
			t.Errorf("delta %d: %+v, want %+v", i, r, want[i])
		}
	}
	if b := balance(t, h, "m1"); b != 15+36 {
		t.Errorf("m1: %d points, want 51", b)
	}

	rc, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "WEB-GBP", MemberID: "m2", Amount: 2500, Currency: "GBP"})
	if err != nil || rc.Points != 30 {
		t.Errorf("online 25.00 GBP: %+v, %v; want 30 points", rc, err)
	}
	_, err = h.Earn(ctx, loyalty.EarnRequest{OrderID: "WEB-USD", MemberID: "m2", Amount: 2500, Currency: "USD"})
	if loyalty.ErrorCode(err) != loyalty.EINVALID || loyalty.ErrorMessage(err) != "this program does not earn points in USD; it earns in EUR, GBP" {
		t.Errorf("online USD: %v", err)
	}
	mustCheck(t, h)
}
