package hub

import (
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
)

// MaxReplays is maxReplays, for the tests of package hub_test.
const MaxReplays = maxReplays

// TestLedgerWords_Expiry: the member's card says an expiry took points, and a give-back returned
// them, in words; never the reason's internal text.
func TestLedgerWords_Expiry(t *testing.T) {
	p := &loyalty.Program{}
	for _, c := range []struct {
		d    loyalty.Delta
		want string
	}{
		{loyalty.Delta{Kind: loyalty.KindExpire, Points: -50, Reason: ReasonExpired}, "Points expired"},
		{loyalty.Delta{Kind: loyalty.KindExpire, Points: 50, Reason: ReasonGivenBack}, "Expired points given back"},
	} {
		if got := ledgerWords(c.d, p, "", "EUR"); got != c.want {
			t.Errorf("%+v: %q, want %q", c.d, got, c.want)
		}
	}
}
