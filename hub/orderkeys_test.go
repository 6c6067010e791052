package hub_test

import (
	"context"
	"maps"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/migratetest"
)

// The online channel keys an order's parts (a reward redeemed on it, a partial refund of it) by
// the order id and the part joined by a character no order id holds (loyalty.PartKey): a refund
// of order INV is not the void of order INV/2, whichever comes first.
func TestOrderKeys_OnlineOrderIDWithSlashIsNotAnotherOrdersPart(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	for _, o := range []string{"INV", "INV/2", "X", "X/r1"} {
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: o, MemberID: "m1", Amount: 8000, Currency: "EUR"}); err != nil {
			t.Fatalf("earn %s: %v", o, err)
		}
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "INV", RefundID: "2", Amount: 1000}); err != nil {
		t.Fatalf("partial refund 2 of INV: %v", err)
	}
	if r, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "INV/2"}); err != nil || r.Points != -80 {
		t.Errorf("void of order INV/2 after refund 2 of INV: %+v, %v; want its 80 points taken back", r, err)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "X/r1"}); err != nil {
		t.Fatalf("void of X/r1: %v", err)
	}
	if r, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "X", RefundID: "r1", Amount: 1000}); err != nil || r.Points != -10 {
		t.Errorf("refund r1 of order X after the void of X/r1: %+v, %v; want 10 points taken back", r, err)
	}
}

// A part key kept before PartKey ("o1/coffee", marked legacy by the migration) still answers an
// exact retry sent across the upgrade, so the reward is not redeemed twice; an unmarked key of
// that shape is a newer order's and answers nothing but its own order.
func TestOrderKeys_OnlineRetryAcrossTheUpgradeFindsTheOldKey(t *testing.T) {
	for _, legacy := range []bool{true, false} {
		h := openHub(t)
		ctx := context.Background()
		if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 80000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		req := loyalty.RedeemRequest{OrderID: "o1", MemberID: "m1", RewardID: "coffee"}
		first, err := h.Redeem(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		db := openRaw(t, whereOf(t, h.Store))
		res, err := db.Exec(`UPDATE idempotency SET key = 'o1/coffee', legacy = ? WHERE scope = 'redeem'`, legacy)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("rewrote %d keys as an earlier version kept them, want 1", n)
		}
		again, err := h.Redeem(ctx, req)
		answered := err == nil && len(again.Deltas) == 1 && again.Deltas[0] == first.Deltas[0]
		if legacy && !answered {
			t.Errorf("the retry across the upgrade did not get its first answer (%v, %v)", again.Deltas, err)
		}
		if !legacy && answered {
			t.Errorf("an unmarked key o1/coffee, a newer order's, answered the redemption of coffee on order o1")
		}
	}
}

// TestOrderKeys_MigrationRewritesOldPartKeys runs the part-key migrations' statements on keys as
// an earlier version kept them (on the backend the suite runs on): a part key whose answer names
// its order is rewritten to PartKey, an order's own key holding "/" is left as it is.
func TestOrderKeys_MigrationRewritesOldPartKeys(t *testing.T) {
	h := openHub(t)
	db := openRaw(t, whereOf(t, h.Store))
	for _, r := range [][3]string{
		{"reverse", "INV/2", `{"order_id":"INV","points":-10}`}, // refund 2 of order INV
		{"reverse", "X/r1", `{"order_id":"X/r1","points":-50}`}, // the void of order X/r1
		{"redeem", "o1/coffee", `{"order_id":"o1"}`},            // coffee on order o1
		{"earn", "E/1", `{"order_id":"E/1"}`},                   // an earn: never a part
	} {
		if _, err := db.Exec(`INSERT INTO idempotency (scope, key, hash, response, at) VALUES (?, ?, 'h', ?, 1)`, r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	files := []string{"sqlite/migrations/0028_part_keys.sql", "sqlite/migrations/0029_part_keys_rewritten.sql"}
	if db.postgres {
		files = []string{"postgres/migrations/0012_part_keys.sql", "postgres/migrations/0013_part_keys_rewritten.sql"}
	}
	migratetest.Rerun(t, db.DB, files...)
	got := map[string]bool{}
	rows, err := db.DB.Query(`SELECT scope || ' ' || key, legacy FROM idempotency`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var legacy bool
		if err := rows.Scan(&k, &legacy); err != nil {
			t.Fatal(err)
		}
		got[k] = legacy
	}
	rows.Close()
	want := map[string]bool{"reverse " + loyalty.PartKey("INV", "2"): false, "reverse X/r1": false,
		"redeem " + loyalty.PartKey("o1", "coffee"): false, "earn E/1": false}
	if !maps.Equal(got, want) {
		t.Errorf("keys after the migrations: %v, want %v", got, want)
	}
}
