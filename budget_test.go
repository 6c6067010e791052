package loyalty_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// TestOrderConsumption: an order counts once. A second reward on an order spends nothing more of
// an order_value budget, a larger amount only what it adds; discounts on one order count at most
// the order's amount; a gift card counts its value; a first reward counts as Consumption does.
func TestOrderConsumption(t *testing.T) {
	p := loyalty.DefaultProgram()
	p.Rewards = append(p.Rewards,
		loyalty.Reward{ID: "ten-pct", Name: "10% off", PointsCost: 150, Kind: "percent_off", Value: 10},
		loyalty.Reward{ID: "card", Name: "Gift card", PointsCost: 500, Kind: "gift_card", Value: 1000})
	orders := loyalty.Budget{ID: "orders", Metric: loyalty.MetricOrderValue, Limit: 9_000}
	discount := loyalty.Budget{ID: "discount", Metric: loyalty.MetricDiscount, Limit: 9_000}
	redeem := func(reward string, amount int64) *loyalty.Delta {
		return &loyalty.Delta{Kind: loyalty.KindRedeem, Reward: reward, Amount: amount, OrderID: "A-1"}
	}
	for _, tt := range []struct {
		name    string
		b       loyalty.Budget
		d       *loyalty.Delta
		counted int64
		want    int64
	}{
		{"first reward on an order", orders, redeem("five-off", 2_000), 0, 2_000},
		{"second reward, same amount", orders, redeem("coffee", 2_000), 2_000, 0},
		{"second reward, larger amount", orders, redeem("coffee", 2_500), 2_000, 500},
		{"second reward, smaller amount", orders, redeem("coffee", 1_500), 2_000, 0},
		{"first discount", discount, redeem("five-off", 600), 0, 500},
		{"second discount, capped by the order", discount, redeem("ten-pct", 600), 500, 60},
		{"second discount past the order", discount, redeem("five-off", 600), 600, 0},
		{"gift card counts its value", discount, redeem("card", 600), 600, 1_000},
		{"no order amount: the reward's value", discount, redeem("five-off", 0), 500, 500},
	} {
		if got := tt.b.OrderConsumption(&p, tt.d, tt.counted); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	earn := &loyalty.Delta{Kind: loyalty.KindEarn, Points: 30, OrderID: "A-1"}
	points := loyalty.Budget{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: 100}
	if got := points.OrderConsumption(&p, earn, 30); got != 30 {
		t.Errorf("an earn counts its points whatever its order counted: %d", got)
	}
}

// TestBudgetLeaseDurations: a budget's lease_ttl and expected_outage are durations with a unit,
// 1m to 720h, or left out.
func TestBudgetLeaseDurations(t *testing.T) {
	var b loyalty.Budget
	if err := json.Unmarshal([]byte(`{"id":"b","metric":"redemptions","limit":5,"lease_ttl":"12h","expected_outage":"90m"}`), &b); err != nil {
		t.Fatal(err)
	}
	if time.Duration(b.LeaseTTL) != 12*time.Hour || time.Duration(b.ExpectedOutage) != 90*time.Minute {
		t.Fatalf("parsed %+v", b)
	}
	if err := json.Unmarshal([]byte(`{"id":"b","metric":"redemptions","limit":5,"lease_ttl":12}`), &b); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Fatalf("a bare number: %v, want EINVALID", err)
	}
	for _, tt := range []struct {
		ttl, outage time.Duration
		bad         string
	}{
		{0, 0, ""},
		{12 * time.Hour, 8 * time.Hour, ""},
		{30 * time.Second, 0, "lease_ttl must be 1m to 720h"},
		{0, 721 * time.Hour, "expected_outage must be 1m to 720h"},
	} {
		p := loyalty.DefaultProgram()
		p.Budgets = []loyalty.Budget{{ID: "b", Metric: loyalty.MetricRedemptions, Limit: 5,
			LeaseTTL: loyalty.Duration(tt.ttl), ExpectedOutage: loyalty.Duration(tt.outage)}}
		err := p.Validate()
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%s/%s: %v", tt.ttl, tt.outage, err)
		case tt.bad != "" && (loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), tt.bad)):
			t.Errorf("%s/%s: %v, want EINVALID %q", tt.ttl, tt.outage, err, tt.bad)
		}
	}
}

// TestCarryOver: what a reversed redemption frees goes first to the order's standing redemptions
// that the order spared, as far as it spared each and has not given them already, and the rest
// back to the budget.
func TestCarryOver(t *testing.T) {
	for _, tt := range []struct {
		name    string
		freed   int64
		others  []loyalty.OrderCharge
		back    int64
		carried []int64
	}{
		{"alone on its order", 2000, nil, 2000, []int64{}},
		{"order_value: the second takes the order over", 2000, []loyalty.OrderCharge{{Amount: 0, Spared: 2000}}, 0, []int64{2000}},
		{"order_value: a larger second one had paid its difference", 2000, []loyalty.OrderCharge{{Amount: 500, Spared: 2000}}, 0, []int64{2000}},
		{"order_value: a smaller second one", 2500, []loyalty.OrderCharge{{Amount: 0, Spared: 1500}}, 1000, []int64{1500}},
		{"discount capped at a 10.00 order: 5.00 off, then 8.00 off charged 5.00", 500, []loyalty.OrderCharge{{Amount: 500, Spared: 300}}, 200, []int64{300}},
		{"the first of two others takes it all", 2000, []loyalty.OrderCharge{{Spared: 2000}, {Spared: 2000}}, 0, []int64{2000, 0}},
		{"one already carried what it was spared", 2000, []loyalty.OrderCharge{{Spared: 2000, Carried: 2000}, {Spared: 2000}}, 0, []int64{0, 2000}},
		{"nothing spared: all back", 700, []loyalty.OrderCharge{{Amount: 700}}, 700, []int64{0}},
		{"nothing freed", 0, []loyalty.OrderCharge{{Spared: 2000}}, 0, []int64{0}},
	} {
		back, carried := loyalty.CarryOver(tt.freed, tt.others)
		if back != tt.back || !slices.Equal(carried, tt.carried) {
			t.Errorf("%s: back %d, carried %v; want %d, %v", tt.name, back, carried, tt.back, tt.carried)
		}
		var sum int64
		for _, c := range carried {
			sum += c
		}
		if back+sum != tt.freed {
			t.Errorf("%s: %d back and %d carried of %d freed", tt.name, back, sum, tt.freed)
		}
	}
}
