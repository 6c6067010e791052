package loyalty_test

import (
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// fuzzProgram is the example program's shape: category and product rates (one of them 0), tiers
// up to 3x, a double-points campaign with a fixed bonus, a bonus from 100.00 EUR (at another
// time), and other
// currencies: pounds at 1.2 points, and a currency at the highest rate of the smallest unit.
func fuzzProgram() loyalty.Program {
	p := loyalty.DefaultProgram()
	p.Earn.Currencies = []loyalty.CurrencyRate{{Currency: "GBP", PointsPerUnit: 6, UnitMinor: 500}, {Currency: "XAU", PointsPerUnit: 1000, UnitMinor: 1}}
	p.CategoryRates = []loyalty.CategoryRate{{Category: "coffee", PointsPerUnit: 3}, {SKU: "decaf-250g", PointsPerUnit: 0}, {Category: "big", PointsPerUnit: 1000}}
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisPoints, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
		{ID: "base", Threshold: 0, Multiplier: 1000}, {ID: "gold", Threshold: 100_000, Multiplier: 3000}, {ID: "max", Threshold: 200_000, Multiplier: 10_000}}}
	p.Campaigns = []loyalty.Campaign{
		{ID: "double", Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), Multiplier: 10_000, Bonus: 999_999_999_999},
		{ID: "bonus", Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), Bonus: 50},
		// In 2025, when the others do not run (their bonus passes MaxPoints on any order).
		{ID: "basket", Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC), Bonus: 7, MinAmount: 10_000},
	}
	return p
}

// fuzzCurrencies are the currencies the fuzzer sells in: the program's, two listed ones, and one
// the program does not earn in.
var fuzzCurrencies = []string{"EUR", "GBP", "XAU", "USD"}

// referenceEarn computes an order's points in unbounded math/big arithmetic, the way the
// combination rule is written down: each line's amount × rate / unit rounded down (in another
// currency, amount × rate × its points / (main points × its unit)), summed; times the tier and the
// best campaign multiplier, rounded down once; plus every campaign's bonus (basket's, when it
// runs, only for an order worth 100.00 EUR at the ratio of the rates). It reports whether the
// inputs are within the documented limits.
func referenceEarn(p *loyalty.Program, currency string, amount int64, lines []loyalty.Line, tierMul, campMul, bonus int64, basket bool) (*big.Int, bool) {
	within := amount >= 0 && amount <= loyalty.MaxAmount && len(lines) <= loyalty.MaxLines
	// The currency's rate against the main one: points per unit of it, and its unit.
	cp, cu := p.Earn.PointsPerUnit, p.Earn.UnitMinor
	known := currency == p.Currency
	for _, c := range p.Earn.Currencies {
		if c.Currency == currency {
			cp, cu, known = c.PointsPerUnit, c.UnitMinor, true
		}
	}
	if !known {
		within = false
	}
	if basket {
		value := new(big.Int).Mul(big.NewInt(amount), big.NewInt(cp*p.Earn.UnitMinor))
		value.Quo(value, big.NewInt(cu*p.Earn.PointsPerUnit))
		if value.Cmp(big.NewInt(10_000)) >= 0 {
			bonus += 7
		}
	}
	if len(lines) == 0 {
		lines = []loyalty.Line{{Qty: 1, Amount: amount}}
	}
	sum, base := new(big.Int), new(big.Int)
	for _, l := range lines {
		if l.Amount < 0 || l.Amount > loyalty.MaxAmount || l.Qty < 0 || l.Qty > loyalty.MaxQty {
			within = false
		}
		rate := p.Earn.PointsPerUnit
		for _, c := range p.CategoryRates {
			if c.SKU == "" && c.Category != "" && c.Category == l.Category {
				rate = c.PointsPerUnit
			}
		}
		for _, c := range p.CategoryRates {
			if c.SKU != "" && c.SKU == l.SKU {
				rate = c.PointsPerUnit
			}
		}
		sum.Add(sum, big.NewInt(l.Amount))
		x := new(big.Int).Mul(big.NewInt(l.Amount), big.NewInt(rate))
		x.Mul(x, big.NewInt(cp))
		base.Add(base, x.Quo(x, big.NewInt(p.Earn.PointsPerUnit*cu)))
	}
	if sum.Cmp(big.NewInt(amount)) != 0 {
		within = false
	}
	total := new(big.Int).Mul(base, big.NewInt(tierMul*campMul))
	total.Quo(total, big.NewInt(1_000_000))
	total.Add(total, big.NewInt(bonus))
	return total, within
}

// FuzzComputeEarn checks the earn computation against the math/big reference: inside the limits
// both agree exactly; outside them, or past MaxPoints, the computation refuses with EINVALID and
// never answers with a wrapped-around number.
func FuzzComputeEarn(f *testing.F) {
	// The crafted orders of the overflow report: they "added up" after wrapping around in int64.
	f.Add(int64(1000), "coffee", "", int64(6148914707903183872), "", "decaf-250g", int64(9223372036854775807), "", "decaf-250g", int64(3074457328951592937), uint8(0), false, uint8(0))
	f.Add(int64(2), "", "", int64(9223372036854775807), "", "", int64(9223372036854775807), "", "", int64(4), uint8(0), false, uint8(0))
	f.Add(int64(1299), "coffee", "", int64(1000), "", "", int64(299), "", "", int64(0), uint8(1), true, uint8(0))
	f.Add(int64(loyalty.MaxAmount), "", "", int64(loyalty.MaxAmount), "", "", int64(0), "", "", int64(0), uint8(2), true, uint8(0))
	f.Add(int64(loyalty.MaxAmount), "big", "", int64(loyalty.MaxAmount), "", "", int64(0), "", "", int64(0), uint8(2), true, uint8(0))
	f.Add(int64(500), "", "decaf-250g", int64(500), "", "", int64(0), "", "", int64(0), uint8(0), false, uint8(0))
	// Other currencies: pounds on each side of the basket minimum (83.34 GBP is worth 100.00 EUR
	// at the rates' ratio, 83.33 GBP 99.99), the most a line at the highest rate of the smallest
	// unit can earn and one minor unit more, and a currency the program does not earn in.
	f.Add(int64(8334), "coffee", "", int64(8334), "", "", int64(0), "", "", int64(0), uint8(1), false, uint8(1))
	f.Add(int64(8333), "", "", int64(8333), "", "", int64(0), "", "", int64(0), uint8(0), false, uint8(1))
	f.Add(int64(1_000_000), "big", "", int64(1_000_000), "", "", int64(0), "", "", int64(0), uint8(0), false, uint8(2))
	f.Add(int64(1_000_001), "big", "", int64(1_000_001), "", "", int64(0), "", "", int64(0), uint8(0), false, uint8(2))
	f.Add(int64(1000), "", "", int64(1000), "", "", int64(0), "", "", int64(0), uint8(0), false, uint8(3))
	f.Fuzz(func(t *testing.T, amount int64, cat1, sku1 string, a1 int64, cat2, sku2 string, a2 int64, cat3, sku3 string, a3 int64, tier uint8, inCampaign bool, cur uint8) {
		p := fuzzProgram()
		currency := fuzzCurrencies[int(cur)%len(fuzzCurrencies)]
		tiers := []string{"base", "gold", "max", "unknown"}
		m := loyalty.Member{Tier: tiers[int(tier)%len(tiers)]}
		lines := []loyalty.Line{{SKU: sku1, Category: cat1, Qty: 1, Amount: a1}, {SKU: sku2, Category: cat2, Qty: 1, Amount: a2}, {SKU: sku3, Category: cat3, Qty: 1, Amount: a3}}
		for len(lines) > 0 && lines[len(lines)-1].Amount == 0 && lines[len(lines)-1].Category == "" && lines[len(lines)-1].SKU == "" {
			lines = lines[:len(lines)-1]
		}
		at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		tierMul, campMul, bonus := int64(1000), int64(1000), int64(0)
		switch m.Tier {
		case "gold":
			tierMul = 3000
		case "max":
			tierMul = 10_000
		}
		if inCampaign {
			at = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
			campMul, bonus = 10_000, 999_999_999_999+50
		}
		got, err := p.ComputeEarn(loyalty.EarnInput{Member: m, Amount: amount, Currency: currency, Lines: lines, At: at})
		want, within := referenceEarn(&p, currency, amount, lines, tierMul, campMul, bonus, !inCampaign)
		for _, l := range lines {
			if !loyalty.ValidText(l.SKU, loyalty.MaxIDLength) || !loyalty.ValidText(l.Category, loyalty.MaxIDLength) {
				within = false
			}
		}
		fits := want.IsInt64() && want.Int64() <= loyalty.MaxPoints
		switch {
		case within && fits:
			if err != nil {
				t.Fatalf("%d %s lines %+v: refused (%v), reference earns %s", amount, currency, lines, err, want)
			}
			if got.Points != want.Int64() {
				t.Fatalf("%d %s lines %+v tier %s: %d points, reference %s", amount, currency, lines, m.Tier, got.Points, want)
			}
		case err == nil:
			t.Fatalf("%d %s lines %+v: answered %d points; want EINVALID (within limits %v, reference %s)", amount, currency, lines, got.Points, within, want)
		case loyalty.ErrorCode(err) != loyalty.EINVALID:
			t.Fatalf("%d %s lines %+v: code %s, want EINVALID", amount, currency, lines, loyalty.ErrorCode(err))
		}
		if err == nil && (got.Points < 0 || got.Points > loyalty.MaxPoints) {
			t.Fatalf("points %d out of bounds", got.Points)
		}
	})
}

// TestCraftedOverflowOrders is finding 1 of the authority review: lines whose amounts wrap around
// in int64 "added up" to the order amount and earned 500,000,000 points.
func TestCraftedOverflowOrders(t *testing.T) {
	p := fuzzProgram()
	for name, lines := range map[string][]loyalty.Line{
		"wraps to 1000":              {{Category: "coffee", Qty: 1, Amount: 6148914707903183872}, {SKU: "decaf-250g", Qty: 1, Amount: 9223372036854775807}, {SKU: "decaf-250g", Qty: 1, Amount: 3074457328951592937}},
		"MaxInt64 twice plus 4 is 2": {{Qty: 1, Amount: 9223372036854775807}, {Qty: 1, Amount: 9223372036854775807}, {Qty: 1, Amount: 4}},
	} {
		amount := int64(1000)
		if name == "MaxInt64 twice plus 4 is 2" {
			amount = 2
		}
		res, err := p.ComputeEarn(loyalty.EarnInput{Amount: amount, Currency: "EUR", Lines: lines})
		if loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("%s: got %d points, err %v; want EINVALID", name, res.Points, err)
		}
	}
	// The documented maximum amount earns at the default rate.
	d := loyalty.DefaultProgram()
	res, err := d.ComputeEarn(loyalty.EarnInput{Amount: loyalty.MaxAmount, Currency: "EUR"})
	if err != nil || res.Points != loyalty.MaxAmount/100 {
		t.Errorf("the maximum amount: %d points, %v; want %d", res.Points, err, int64(loyalty.MaxAmount/100))
	}
}

// TestIDLimitsCountCharacters is finding 5 of the authority review: order ids were measured in
// bytes although the API says characters, and invalid UTF-8 was silently repaired, merging two
// different ids into one.
func TestIDLimitsCountCharacters(t *testing.T) {
	if err := loyalty.ValidateOrderID(strings.Repeat("é", loyalty.MaxIDLength)); err != nil {
		t.Errorf("128 two-byte characters: %v, want accepted", err)
	}
	if err := loyalty.ValidateOrderID(strings.Repeat("é", loyalty.MaxIDLength+1)); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("129 characters: %v, want EINVALID", err)
	}
	for _, id := range []string{"X-\xff\xfe", "X-\xfe\xff"} {
		if err := loyalty.ValidateOrderID(id); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("order id %q: %v, want EINVALID", id, err)
		}
	}
	// The separator of an order's part keys (loyalty.PartKey): no order id holds it, so a part's
	// key is never another order's. "/" and other control characters are fine.
	if err := loyalty.ValidateOrderID("A\x1fb"); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("an order id holding U+001F: %v, want EINVALID", err)
	}
	for _, id := range []string{"INV/2026/0001", "A B", "Bestellung-ä", "tab\t", "line\nbreak"} {
		if err := loyalty.ValidateOrderID(id); err != nil {
			t.Errorf("order id %q: %v, want accepted", id, err)
		}
	}
	if a, b := loyalty.PartKey("A", "2"), loyalty.PartKey("A/2", ""); a == b {
		t.Errorf("refund 2 of order A and order A/2 share the key %q", a)
	}
	from, to := loyalty.PartKeyRange("A")
	for _, k := range []string{loyalty.PartKey("A", "x"), loyalty.PartKey("A", "")} {
		if in := k >= from && k < to; in != (k != "A") {
			t.Errorf("key %q in A's part range [%q, %q): %v", k, from, to, in)
		}
	}
	if k := loyalty.PartKey("AB", "x"); k >= from && k < to {
		t.Errorf("a part of order AB, %q, is in A's part range", k)
	}
	d := loyalty.Delta{ID: "d1", Store: "s1", Member: "m1", Kind: loyalty.KindEarn, Currency: "EUR", OccurredAt: time.Now(), Points: loyalty.MaxPoints}
	if err := d.Validate(); err != nil {
		t.Errorf("the most points a delta may carry: %v", err)
	}
	d.Points++
	if err := d.Validate(); loyalty.ErrorCode(err) != loyalty.EINVALID || strings.Contains(loyalty.ErrorMessage(err), "d1") {
		t.Errorf("one point more: %v, want EINVALID naming no delta id", err)
	}
}
