package agent_test

// Idempotency keys of the POS API. An order's parts (a reward or voucher redeemed on it, a partial
// refund of it) are keyed by the order id and the part joined by a character no order id holds
// (loyalty.PartKey); they were once joined by "/", which an order id may hold (docs/API.md 2.1),
// so that one order's part could take another order's key.

import (
	"context"
	"database/sql"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/internal/migratetest"
)

// A partial refund of order "INV" with refund_id "2" takes the key that the full reverse of
// the (different) order "INV/2" needs: the void of INV/2 is then refused with ECONFLICT and the
// member keeps the points of a sale that was voided. The reverse direction blocks the refund.
func TestOrderKeys_OrderIDWithSlashIsNotAnotherOrdersPart(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	for _, o := range []string{"INV", "INV/2"} {
		if _, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: o, MemberID: "m1", Amount: 8000, Currency: "EUR"}); err != nil {
			t.Fatalf("earn %s: %v", o, err)
		}
	}
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "INV", RefundID: "2", Amount: 1000}); err != nil {
		t.Fatalf("partial refund of INV: %v", err)
	}
	r, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "INV/2"})
	if err != nil {
		t.Fatalf("full reverse of order INV/2, never reversed before: %v; the partial refund (INV, 2) of another order took its idempotency key", err)
	}
	if r.Points != -80 {
		t.Errorf("reverse of INV/2 took %d points, want -80", r.Points)
	}

	// The other way round: a void of order "X/r1" first blocks refund r1 of order "X".
	for _, o := range []string{"X", "X/r1"} {
		if _, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: o, MemberID: "m1", Amount: 5000, Currency: "EUR"}); err != nil {
			t.Fatalf("earn %s: %v", o, err)
		}
	}
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "X/r1"}); err != nil {
		t.Fatalf("reverse X/r1: %v", err)
	}
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "X", RefundID: "r1", Amount: 1000}); err != nil {
		t.Errorf("partial refund r1 of order X, never refunded before: %v; the void of order X/r1 took its key", err)
	}
}

// Pruning deletes an order's POS keys by "order_id = ?" (agent/sqlite/retention.go), so it
// deletes the keys of whatever other order's refund or redemption is stored under that text.
// Order "A/R1" (a real sale) goes after outbox.retain_acked and takes with it the key of refund
// R1 of order "A", which is kept for longer: the POS's exact retry of that refund is then done a
// second time, and the member loses the refund's points twice.
func TestOrderKeys_PruningAnOrderKeepsOtherOrdersKeys(t *testing.T) {
	clock := now
	ca := newClocked(t, &clock, loyalty.DefaultProgram())
	ca.Retention.RetainAcked = 30 * day
	ctx := context.Background()
	for _, o := range []string{"A", "A/R1"} {
		if _, err := ca.Earn(ctx, loyalty.EarnRequest{OrderID: o, MemberID: "m1", Amount: 8000, Currency: "EUR"}); err != nil {
			t.Fatalf("earn %s: %v", o, err)
		}
	}
	ca.ack(t)
	clock = now.Add(20 * day)
	ca.hear(t, loyalty.DefaultProgram())
	refund := loyalty.ReverseRequest{OrderID: "A", RefundID: "R1", Amount: 1000}
	first, err := ca.Reverse(ctx, refund)
	if err != nil || first.Points != -10 {
		t.Fatalf("refund R1 of A: %+v, %v", first, err)
	}
	ca.ack(t, "A")

	clock = now.Add(30*day + time.Minute) // A/R1 is due, A (changed on day 20) is not
	ca.hear(t, loyalty.DefaultProgram())
	ca.maintain(t)
	if n := ca.orderDeltas(t, "A"); n != 2 {
		t.Fatalf("order A keeps %d deltas, want its earn and its refund", n)
	}
	again, err := ca.Reverse(ctx, refund) // the POS retries the same refund
	if err != nil {
		t.Fatalf("retry of refund R1: %v", err)
	}
	if len(again.Deltas) != 1 || again.Deltas[0] != first.Deltas[0] {
		t.Errorf("an exact retry of refund R1 of order A was done again (delta %v, first %v, %d points): pruning order A/R1 deleted its key",
			again.Deltas, first.Deltas, again.Points)
	}
	if n := ca.orderDeltas(t, "A"); n != 2 {
		t.Errorf("order A now has %d deltas, want 2: the refund was applied twice", n)
	}
}

// The keys of an order's redemptions ("o1/coffee") and partial refunds ("o1/rf1") are never
// deleted with the order: "DELETE FROM pos_requests WHERE order_id = ?" matches only the plain
// order id. docs/API.md 3.3 says the key goes with the order's deltas after outbox.retain_acked;
// instead every redemption and partial refund leaves a row in the replica for ever.
func TestOrderKeys_PruningAnOrderTakesItsPartsKeys(t *testing.T) {
	clock := now
	ca := newClocked(t, &clock, loyalty.DefaultProgram())
	ca.Retention = agent.Retention{RetainAcked: 30 * day, ResultsRetention: 7 * day}
	ctx := context.Background()
	if _, err := ca.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 8000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Redeem(ctx, loyalty.RedeemRequest{OrderID: "o1", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Reverse(ctx, loyalty.ReverseRequest{OrderID: "o1", RefundID: "rf1", Amount: 1000}); err != nil {
		t.Fatal(err)
	}
	ca.ack(t)
	clock = now.Add(31 * day)
	ca.hear(t, loyalty.DefaultProgram())
	if st := ca.maintain(t); st.PrunedDeltasTotal != 3 {
		t.Fatalf("pruned %d deltas, want o1's 3", st.PrunedDeltasTotal)
	}
	db, err := sql.Open("sqlite", "file:"+ca.path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT op || ' ' || order_id FROM pos_requests`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var left []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		left = append(left, s)
	}
	if len(left) != 0 {
		t.Errorf("order o1 was pruned, but its POS keys %q are still kept", left)
	}
	// What the POS sees: order o1 is forgotten (its reverse is ENOTFOUND), yet a redemption
	// on it is refused as already done.
	if _, err := ca.Redeem(ctx, loyalty.RedeemRequest{OrderID: "o1", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Errorf("redeem on the forgotten order o1: %v", err)
	}
}

// A part key kept before PartKey ("o1/coffee", marked legacy by the migration) still answers an
// exact retry sent across the upgrade: the reward is not given twice. An unmarked key of that
// shape is a newer order's, and is not taken for the part.
func TestOrderKeys_RetryAcrossTheUpgradeFindsTheOldKey(t *testing.T) {
	for _, legacy := range []int{1, 0} {
		clock := now
		ca := newClocked(t, &clock, loyalty.DefaultProgram())
		ctx := context.Background()
		if _, err := ca.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 8000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		req := loyalty.RedeemRequest{OrderID: "o1", MemberID: "m1", RewardID: "coffee"}
		first, err := ca.Redeem(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		// As an earlier version kept it.
		db, err := sql.Open("sqlite", "file:"+ca.path)
		if err != nil {
			t.Fatal(err)
		}
		res, err := db.Exec(`UPDATE pos_requests SET order_id = 'o1/coffee', legacy = ? WHERE op = 'redeem'`, legacy)
		db.Close()
		if n, _ := res.RowsAffected(); err != nil || n != 1 {
			t.Fatalf("rewriting the key as an earlier version kept it: %d rows, %v", n, err)
		}
		again, err := ca.Redeem(ctx, req)
		answered := err == nil && len(again.Deltas) == 1 && again.Deltas[0] == first.Deltas[0] // the first answer
		if legacy == 1 && !answered {
			t.Errorf("the retry across the upgrade did not get its first answer (%v, %v): the reward was redeemed again or refused", again.Deltas, err)
		}
		if legacy == 0 && answered {
			t.Errorf("an unmarked key o1/coffee, a newer order's, answered the redemption of coffee on order o1")
		}
	}
}

// TestOrderKeys_MigrationRewritesOldPartKeys runs the part-key migrations' statements on keys as
// an earlier version kept them: a part key whose kept answer names its order is rewritten to
// PartKey, an order's own key holding "/" is left as it is, and only a key whose answer was
// dropped stays legacy.
func TestOrderKeys_MigrationRewritesOldPartKeys(t *testing.T) {
	clock := now
	ca := newClocked(t, &clock, loyalty.DefaultProgram())
	db, err := sql.Open("sqlite", "file:"+ca.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, r := range [][3]string{
		{"reverse", "INV/2", `{"order_id":"INV","points":-10}`}, // refund 2 of order INV
		{"reverse", "X/r1", `{"order_id":"X/r1","points":-50}`}, // the void of order X/r1
		{"redeem", "o1/coffee", ``},                             // its answer dropped
		{"earn", "E/1", `{"order_id":"E/1"}`},                   // an earn: never a part
	} {
		if _, err := db.Exec(`INSERT INTO pos_requests (op, order_id, hash, response, at) VALUES (?, ?, 'h', ?, 1)`, r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	migratetest.Rerun(t, db, "sqlite/migrations/0009_part_keys.sql", "sqlite/migrations/0010_part_keys_rewritten.sql")
	got := map[string]int{}
	rows, err := db.Query(`SELECT op || ' ' || order_id, legacy FROM pos_requests`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var legacy int
		if err := rows.Scan(&k, &legacy); err != nil {
			t.Fatal(err)
		}
		got[k] = legacy
	}
	rows.Close()
	want := map[string]int{"reverse " + loyalty.PartKey("INV", "2"): 0, "reverse X/r1": 0, "redeem o1/coffee": 1, "earn E/1": 0}
	if !maps.Equal(got, want) {
		t.Errorf("keys after the migrations: %v, want %v", got, want)
	}
}

// TestOrderKeys_RefundIDReusedForAnotherAmount: a refund id sent again with another amount is
// refused, and the refusal says the refund id was used, not that the order was reversed: the
// order can still be refunded, in full or under a new refund id. Before, it said "order o1 was
// already reversed".
func TestOrderKeys_RefundIDReusedForAnotherAmount(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	if _, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 8000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "o1", RefundID: "R-1", Amount: 750}); err != nil {
		t.Fatal(err)
	}
	_, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "o1", RefundID: "R-1", Amount: 1000})
	if loyalty.ErrorCode(err) != loyalty.ECONFLICT || !strings.Contains(err.Error(), "refund R-1 of order o1 was already made with a different amount") ||
		strings.Contains(err.Error(), "already reversed") {
		t.Fatalf("refund id R-1 reused with another amount: %v; want ECONFLICT naming the refund id, not a reversed order", err)
	}
	if _, err := ta.Reverse(ctx, loyalty.ReverseRequest{OrderID: "o1", RefundID: "R-2", Amount: 1000}); err != nil {
		t.Errorf("another refund of o1 under a new refund id: %v", err)
	}
}
