package hub_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
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

// TestErase_RejectionMessagesNameNoCountry: a sale whose stamped country is not the member's and
// changes its points is rejected with a message that does not name the country, so an erased
// member's rejections keep none: neither one pushed after the erasure nor one recorded before it
// by an older hub, whose message named it and which the erasure rewrites.
func TestErase_RejectionMessagesNameNoCountry(t *testing.T) {
	a := openAKHub(t)
	h, ctx := a.Hub, context.Background()
	withProgram(t, h, func(p *loyalty.Program) {
		p.Campaigns = append(p.Campaigns, loyalty.Campaign{ID: "nz", Name: "NZ members", Start: t0.Add(-time.Hour),
			End: t0.Add(24 * time.Hour), Bonus: 10, Segment: loyalty.Segment{Countries: []string{"NZ"}}})
	})
	syncStores(t, h)
	before := earn("s1", "m1", 4000)
	before.RuleVersion, before.Points, before.Country = 2, 50, "NZ"
	if r := mustReject(t, h, "s1", before, loyalty.EINVALID); r.Message != hub.CountryMismatch {
		t.Errorf("rejected with %q, want %q", r.Message, hub.CountryMismatch)
	}
	// An older hub named the country in the message.
	db := openRaw(t, whereOf(t, h.Store))
	if _, err := db.Exec(`UPDATE rejections SET message = ? WHERE delta_id = ?`,
		`the member's country is not "NZ", and this sale's points depend on it`, before.ID); err != nil {
		t.Fatal(err)
	}
	a.mustDo(t, akAdminKey, "POST", "/v1/members/m1/erase", "", http.StatusOK, nil)
	after := earn("s1", "m1", 4000)
	after.RuleVersion, after.Points, after.Country = 2, 50, "NZ"
	mustReject(t, h, "s1", after, loyalty.EINVALID)

	rej, err := h.Rejections(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, r := range rej {
		if r.Delta.ID != before.ID && r.Delta.ID != after.ID {
			continue
		}
		seen++
		if strings.Contains(r.Message, "NZ") || r.Delta.Country != "" {
			t.Errorf("erased member m1: the rejection of %s keeps their country: %q, delta country %q", r.Delta.ID, r.Message, r.Delta.Country)
		}
	}
	if seen != 2 {
		t.Errorf("found %d of the two rejections", seen)
	}
}
