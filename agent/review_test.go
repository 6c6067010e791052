package agent_test

// Adversarial review of the till page (issue 13): each test fails on the code as reviewed.

import (
	"net/url"
	"strings"
	"testing"
)

// TestReviewTillQuantityTooLongIsRefused: a line's quantity of more than 10 characters (a
// scanner's barcode typed into the wrong field) is refused with nothing recorded, as a quantity
// of 8 to 10 digits is. cashier.go earn() drops field()'s refusal of the quantity
// (qtyRaw, _ := field(...)), reads the quantity as empty, i.e. 1, and records the sale.
func TestReviewTillQuantityTooLongIsRefused(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "alice"))
	before := ta.state(t)
	form := url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {hidden(t, page, "earn_order")},
		"line_sku_1": {"mug"}, "line_qty_1": {"40012345678901"}, "line_amount_1": {"10.00"}}
	status, body := b.post(t, "/earn", form)
	if status != 400 || strings.Contains(body, `id="receipt"`) {
		t.Errorf("a 14-digit quantity: %d, receipt shown: %v; want 400 and nothing recorded", status, strings.Contains(body, `id="receipt"`))
	}
	assertPOSState(t, ta.state(t), before)
}

// TestReviewTillAmountAsReceiptShowsIt: docs/PAGES.md says amounts are typed "as web.Money
// shows them"; the receipt shows a sale of 1234.56 as "1,234.56 EUR". Typed back as shown for a
// partial refund, cashier.go money() turns the comma into the decimal point ("1.234.56") and
// refuses it: "type an amount like 12.99". The same happens to the total the page fills in itself
// (v.Form["amount"] = web.Money(sum)) when an earn by lines is refused and sent again.
func TestReviewTillAmountAsReceiptShowsIt(t *testing.T) {
	ta := MustOpenPOSAgent(t, tillToken)
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "alice"))
	order := hidden(t, page, "earn_order")
	status, got := b.post(t, "/earn", url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {order}, "amount": {"1234.56"}})
	if status != 200 || !strings.Contains(got, "1,234.56 EUR") {
		t.Fatalf("earn 1234.56: %d, the receipt does not show 1,234.56 EUR\n%s", status, got)
	}
	status, got = b.post(t, "/refund", url.Values{"order": {order}, "refund_id": {hidden(t, got, "refund_id")}, "refund_amount": {"1,000.00"}})
	if status != 200 {
		t.Errorf("a partial refund typed as the receipt writes amounts (1,000.00): %d, want 200\n%.400s", status,
			got[strings.Index(got, `<main`):])
	}
}
