package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestCountryChangedWhileStoreOffline: a member moves from France to Germany while their store
// is offline. The store's sale stamped with France, and the French members' campaign bonus it
// paid, is what an honest store does: the hub accepts it as made, with its country, instead of
// rejecting the sale. Once the store has pulled the change, a sale stamped France is a claim the
// hub cannot verify. The earlier country is in the member's export, and erasure forgets it.
func TestCountryChangedWhileStoreOffline(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Campaigns = append(p.Campaigns, loyalty.Campaign{ID: "fr-bonus", Name: "FR members", Start: t0.Add(-time.Hour),
			End: t0.Add(24 * time.Hour), Bonus: 25, Segment: loyalty.Segment{Countries: []string{"FR"}}})
	})
	country := func(c string) {
		t.Helper()
		if _, err := h.UpdateMember(ctx, "m1", hub.MemberPatch{Country: hub.Text{Set: true, Value: c}}); err != nil {
			t.Fatal(err)
		}
	}
	country("FR")
	syncStores(t, h) // s1 knows m1 as French

	now = t0.Add(10 * time.Minute)
	country("DE") // while s1 is offline
	now = t0.Add(20 * time.Minute)
	// s2 never held m1: a store without the member stamps no country, so a claim of the old one
	// is not a stale copy.
	other := earn("s2", "m1", 1000)
	other.RuleVersion, other.Points, other.Country, other.OccurredAt = 2, 35, "FR", now
	mustReject(t, h, "s2", other, loyalty.EINVALID)
	offline := earn("s1", "m1", 1000)
	offline.RuleVersion, offline.Points, offline.Country, offline.OccurredAt = 2, 35, "FR", now
	mustApply(t, h, "s1", offline)
	if got := balance(t, h, "m1"); got != 35 {
		t.Errorf("balance %d after the offline sale, want its 35 points", got)
	}
	v, err := h.Member(ctx, "m1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(v.Ledger, func(e hub.LedgerEntry) bool { return e.ID == offline.ID }); i < 0 || v.Ledger[i].Country != "FR" {
		t.Errorf("the ledger does not keep the sale with the country it was made under (FR): %+v", v.Ledger)
	}

	// s1 completes a sync well after the change (more than claims.backdate): it knows m1 is
	// German now.
	now = t0.Add(2 * time.Hour)
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000, Flushed: true}); err != nil {
		t.Fatal(err)
	}
	stale := earn("s1", "m1", 1000)
	stale.RuleVersion, stale.Points, stale.Country, stale.OccurredAt = 2, 35, "FR", now
	if r := mustReject(t, h, "s1", stale, loyalty.EINVALID); !strings.Contains(r.Message, "country") {
		t.Errorf("message %q does not say what was wrong", r.Message)
	}

	past := func() []hub.PastCountry {
		t.Helper()
		var out bytes.Buffer
		if err := h.ExportMember(ctx, "m1", &out, func() {}); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			PastCountries []hub.PastCountry `json:"past_countries"`
		}
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatalf("export: %v", err)
		}
		return doc.PastCountries
	}
	if p := past(); len(p) != 1 || p[0].Country != "FR" || !p[0].Until.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("export's past countries %+v, want FR until %s", p, t0.Add(10*time.Minute))
	}
	if _, err := h.EraseMember(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if p := past(); len(p) != 0 {
		t.Errorf("after erasure the hub still keeps the member's earlier countries: %+v", p)
	}
}

// TestPastCountriesKeptForMaxOffline: the hub's hourly job forgets the countries replaced more
// than claims.max_offline ago (no store can still claim them), and keeps the others.
func TestPastCountriesKeptForMaxOffline(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	h.Claims.MaxOffline = 48 * time.Hour
	for _, c := range []struct {
		day     int
		country string
	}{{0, "FR"}, {1, "DE"}, {2, "AT"}, {3, "CH"}} {
		now = t0.Add(time.Duration(c.day) * 24 * time.Hour)
		if _, err := h.UpdateMember(ctx, "m1", hub.MemberPatch{Country: hub.Text{Set: true, Value: c.country}}); err != nil {
			t.Fatal(err)
		}
	}
	now = t0.Add(4 * 24 * time.Hour)
	if n, err := h.ForgetPastCountries(ctx); err != nil || n != 1 {
		t.Fatalf("forgot %d countries (%v), want 1", n, err)
	}
	var got []string
	err := h.Store.View(ctx, func(tx hub.Tx) error {
		past, err := tx.PastCountries(ctx, "m1", time.Time{})
		for _, p := range past {
			got = append(got, p.Country)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// FR was replaced on day 1, more than 48 hours before day 4; DE on day 2, just not.
	if want := []string{"AT", "DE"}; !slices.Equal(got, want) {
		t.Errorf("past countries %v, want %v (newest first, FR forgotten)", got, want)
	}
}
