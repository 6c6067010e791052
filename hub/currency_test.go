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

// TestCurrencies_ReferralMinimumInProgramCurrency: referral.min_amount is in the program's
// currency, like every amount in the program, and a sale in another currency is read at its rate.
// 2,500 yen is more than 2000 minor units but worth 16.66 EUR here: no bonus. 17.00 GBP is fewer
// than 2000 minor units but worth 20.40 EUR: the bonus is paid.
func TestCurrencies_ReferralMinimumInProgramCurrency(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		// EUR: 1 point per euro. JPY: 1 point per 150 yen. GBP: 1.2 points per pound.
		p.Earn.Currencies = []loyalty.CurrencyRate{{Currency: "JPY", PointsPerUnit: 1, UnitMinor: 150}, {Currency: "GBP", PointsPerUnit: 6, UnitMinor: 500}}
		p.Referral = &loyalty.Referral{Give: 50, Get: 100, MinAmount: 2000} // 20.00 EUR
	})
	syncStores(t, h)
	for _, m := range []loyalty.Member{{ID: "ann"}, {ID: "bea", ReferredBy: "ann", HomeStore: "s1"}} {
		if _, err := h.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	sale := func(currency string, amount, points int64) loyalty.Delta {
		d := earn("s1", "bea", amount)
		d.Currency, d.Points, d.RuleVersion = currency, points, 2
		return d
	}
	pushOK(t, h, "s1", sale("JPY", 2500, 16))
	if a := balance(t, h, "ann"); a != 0 {
		t.Fatalf("after a purchase of 2,500 yen (16.66 EUR): the referrer has %d points, want 0", a)
	}
	pushOK(t, h, "s1", sale("GBP", 1700, 20))
	if a, b := balance(t, h, "ann"), balance(t, h, "bea"); a != 100 || b != 16+20+50 {
		t.Errorf("after a purchase of 17.00 GBP (20.40 EUR): ann %d (want 100), bea %d (want 86)", a, b)
	}
	mustCheck(t, h)
}
