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
