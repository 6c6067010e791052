package hub_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestErase_LateStorePushWithTheErasedCountry: a store offline since before an erasure pushes
// its queued sale for the member afterwards, stamped with the country it saw the member in.
// docs/API.md promises such a sale is applied like any offline sale; the erased member has no
// country, and the claim, which changes nothing here, must not reject it. Neither the ledger nor
// a rejection keeps that country, and a redelivery is still a duplicate.
func TestErase_LateStorePushWithTheErasedCountry(t *testing.T) {
	a := openAKHub(t)
	h, ctx := a.Hub, context.Background()
	a.mustDo(t, akAdminKey, "PATCH", "/v1/members/m1", `{"country":"NZ"}`, http.StatusOK, nil)
	// Made at store s1 before the erasure, while it was offline.
	late := earn("s1", "m1", 4000)
	late.Country = "NZ"
	bad := redeem("s1", "m1", "no-such-reward", 10)
	bad.Country = "NZ"

	a.mustDo(t, akAdminKey, "POST", "/v1/members/m1/erase", "", http.StatusOK, nil)

	ack := pushOK(t, h, "s1", late, bad)
	if ack.Results[0].Status != lsync.StatusApplied {
		t.Errorf("the late earn was %+v, want it applied (the member id still works)", ack.Results[0])
	}
	var v hub.MemberView
	a.mustDo(t, akAdminKey, "GET", "/v1/members/m1?ledger=100", "", http.StatusOK, &v)
	if !v.Erased {
		t.Fatalf("member m1 is not erased: %+v", v)
	}
	for _, e := range v.Ledger {
		if e.Country != "" {
			t.Errorf("erased member m1: ledger entry %s (pushed after the erasure) carries country %q", e.ID, e.Country)
		}
	}
	rej, err := h.Rejections(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rej {
		if r.Delta.Member == "m1" && r.Delta.Country != "" {
			t.Errorf("erased member m1: rejected delta %s (pushed after the erasure) carries country %q", r.Delta.ID, r.Delta.Country)
		}
	}
	// A redelivery of the late delta is still recognised as a duplicate (its hash is its own).
	if ack := pushOK(t, h, "s1", late); ack.Results[0].Status != lsync.StatusDuplicate {
		t.Errorf("redelivery of the late delta: %+v, want duplicate", ack.Results[0])
	}
}
