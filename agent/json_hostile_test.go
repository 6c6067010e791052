package agent_test

// How the POS API reads a JSON body, as a hostile or careless client sends it.

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
)

// docs/API.md 2.1: "an unknown field name [is] refused with EINVALID. Field names are
// case-sensitive". encoding/json matches names case-insensitively, so "AMOUNT" is read as
// amount, and with both spellings in one body the last one wins: a proxy, log or fraud check
// that reads "amount" sees one sale, the agent records another. The body below earns points on
// 1 000 000.00 EUR while its "amount" field says 12.50.
func TestHostile_JSONFieldNamesAreCaseSensitive(t *testing.T) {
	ta := MustOpenPOSAgent(t, "")
	before := ta.state(t)
	for _, body := range []string{
		`{"ORDER_ID":"cs-1","Member_Id":"alice","Amount":1250,"CURRENCY":"EUR"}`,
		`{"order_id":"cs-2","member_id":"alice","amount":1250,"AMOUNT":100000000,"currency":"EUR"}`,
	} {
		status, b := ta.do(t, "/v1/earn", body)
		if status != http.StatusBadRequest {
			t.Errorf("POST /v1/earn %s: %d %s; want 400 EINVALID for a field name that is not the documented one", body, status, b)
			continue
		}
		if code := secCode(b); code != loyalty.EINVALID {
			t.Errorf("code %q, want EINVALID", code)
		}
	}
	assertPOSState(t, ta.state(t), before)
}

func secCode(b []byte) string {
	var eb struct{ Error loyalty.Error }
	json.Unmarshal(b, &eb)
	return eb.Error.Code
}
