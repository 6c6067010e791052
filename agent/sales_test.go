package agent_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
)

// A sale without a member, through the POS API: written to the outbox as a sale delta (order,
// amount, currency, no member, no points) before the POS has its answer; a retry returns the
// first answer and writes nothing; the same order with another body, an order that earned for a
// member, and malformed bodies are refused with codes.
func TestSale_POSCall(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	base := ta.HTTP.URL()
	ctx := context.Background()
	body := `{"order_id":"N-1","amount":1299,"currency":"EUR","terminal":"till-2"}`
	status, first := posDo(t, base, "POST", "/v1/sales", body, "")
	if status != http.StatusOK {
		t.Fatalf("POST /v1/sales: %d %s", status, first)
	}
	var r loyalty.SaleReceipt
	if err := json.Unmarshal(first, &r); err != nil || len(r.Deltas) != 1 || !r.Offline || r.OrderID != "N-1" {
		t.Fatalf("receipt %s (%v): want one delta, offline", first, err)
	}
	if string(first) != `{"order_id":"N-1","delta_ids":["`+r.Deltas[0]+`"],"offline":true}`+"\n" {
		t.Errorf("receipt %s: want the order, the delta and offline only", first)
	}
	if status, again := posDo(t, base, "POST", "/v1/sales", body, ""); status != http.StatusOK || string(again) != string(first) {
		t.Errorf("retry: %d %s, want the first answer %s", status, again, first)
	}
	out, err := ta.Store.Pending(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("%d deltas in the outbox, want 1", len(out))
	}
	d := out[0].Delta
	if d.ID != r.Deltas[0] || d.Kind != loyalty.KindSale || d.Member != "" || d.Points != 0 || d.Amount != 1299 || d.Currency != "EUR" ||
		d.OrderID != "N-1" || d.Terminal != "till-2" || d.Store != "s1" {
		t.Errorf("outbox delta %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("the outbox delta does not validate: %v", err)
	}
	u, err := ta.Store.Unsynced(ctx)
	if err != nil || u.Deltas != 1 || u.PointsEarned != 0 || u.PointsRedeemed != 0 {
		t.Errorf("unsynced %+v, %v: want the sale counted as a delta, with no points", u, err)
	}

	// The member's card was scanned for order E-1: it is a member's sale, not one without a member.
	if _, err := ta.Agent.Earn(ctx, loyalty.EarnRequest{OrderID: "E-1", QR: ta.memberQR(t, "alice"), Amount: 500, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		body, code string
		status     int
	}{
		{`{"order_id":"N-1","amount":1300,"currency":"EUR"}`, loyalty.ECONFLICT, http.StatusConflict},
		{`{"order_id":"E-1","amount":500,"currency":"EUR"}`, loyalty.ECONFLICT, http.StatusConflict},
		{`{"order_id":"N-2","amount":0,"currency":"EUR"}`, loyalty.EINVALID, http.StatusBadRequest},
		{`{"order_id":"N-2","amount":-5,"currency":"EUR"}`, loyalty.EINVALID, http.StatusBadRequest},
		{`{"order_id":"N-2","amount":1000000000001,"currency":"EUR"}`, loyalty.EINVALID, http.StatusBadRequest},
		{`{"order_id":"N-2","amount":10,"currency":"EURO"}`, loyalty.EINVALID, http.StatusBadRequest},
		{`{"amount":10,"currency":"EUR"}`, loyalty.EINVALID, http.StatusBadRequest},
		{`{"order_id":"N-2","amount":10,"currency":"EUR","member_id":"alice"}`, loyalty.EINVALID, http.StatusBadRequest},
	} {
		status, b := posDo(t, base, "POST", "/v1/sales", c.body, "")
		var eb struct{ Error loyalty.Error }
		if status != c.status || json.Unmarshal(b, &eb) != nil || eb.Error.Code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.body, status, b, c.status, c.code)
		}
	}
	if n, err := ta.Store.PendingCount(ctx); err != nil || n != 2 {
		t.Errorf("outbox %d, %v; want the sale and the earn only", n, err)
	}
}
