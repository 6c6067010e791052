package e2e_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// Real processes: a store reports sales without a member and makes member sales while its link
// to the hub is cut; after the link heals, the hub's reports count each exactly once (the POS
// retried every call, the agent pushed after reconnecting), and the store reports its outbox.
func TestReports_SalesThroughAnOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	w, links := newWorld(t, nil, "s1")
	w.startAgent("s1")
	w.waitAgentUp("s1")
	w.member("m1", 0)
	w.member("m2", 0)

	var members, others, otherAmount int64
	nonMember := func(amount int64) {
		t.Helper()
		w.order++
		var first, again loyalty.SaleReceipt
		body := loyalty.SaleRequest{OrderID: fmt.Sprintf("N-%d", w.order), Amount: loyalty.Money(amount), Currency: "EUR"}
		if s := call(t, "POST", "http://"+w.addrs["s1"]+"/v1/sales", "", body, &first); s != 200 {
			t.Fatalf("POST /v1/sales: HTTP %d", s)
		}
		if s := call(t, "POST", "http://"+w.addrs["s1"]+"/v1/sales", "", body, &again); s != 200 || again.Deltas[0] != first.Deltas[0] {
			t.Fatalf("POST /v1/sales retried: HTTP %d %+v, want %+v", s, again, first)
		}
		others++
		otherAmount += amount
	}
	member := func() {
		t.Helper()
		w.sale("s1") // sent twice, as a POS retries
		members++
	}
	nonMember(1250)
	member()
	eventually(t, 20*time.Second, "the online sales at the hub", func() (bool, string) {
		st := w.status("s1")
		return st.Outbox == 0, fmt.Sprintf("outbox %d", st.Outbox)
	})

	links["s1"].Cut()
	eventually(t, 20*time.Second, "the store offline", func() (bool, string) {
		return !w.status("s1").Online, "still online"
	})
	for i := range 3 {
		nonMember(int64(100 * (i + 1)))
		member()
	}
	if st := w.status("s1"); st.Outbox != 6 {
		t.Fatalf("outbox %d offline, want the 6 sales", st.Outbox)
	}
	links["s1"].Heal()
	eventually(t, 30*time.Second, "the outbox at the hub", func() (bool, string) {
		st := w.status("s1")
		return st.Online && st.Outbox == 0, fmt.Sprintf("online %t, outbox %d", st.Online, st.Outbox)
	})

	day := time.Now().UTC()
	q := "?from=" + day.Add(-24*time.Hour).Format(time.DateOnly) + "&to=" + day.Add(48*time.Hour).Format(time.DateOnly)
	var sum hub.SummaryReport
	if s := call(t, "GET", w.api()+"/v1/reports/summary"+q, w.key, nil, &sum); s != 200 {
		t.Fatalf("summary: HTTP %d", s)
	}
	if len(sum.Adoption) != 1 {
		t.Fatalf("adoption %+v, want EUR only", sum.Adoption)
	}
	a := sum.Adoption[0]
	if a.NonMemberSales != others || a.NonMemberAmount != otherAmount || a.MemberPurchases != members {
		t.Errorf("adoption %+v: want %d sales without a member of %d in all, and %d member purchases, each counted once",
			a, others, otherAmount, members)
	}
	if want := float64(members) / float64(members+others); a.AdoptionRate == nil || *a.AdoptionRate != want {
		t.Errorf("adoption rate %v, want %v", a.AdoptionRate, want)
	}
	// The store reported its outbox with its pings: now empty.
	eventually(t, 20*time.Second, "the store's report of its outbox", func() (bool, string) {
		var st hub.StoresReport
		call(t, "GET", w.api()+"/v1/reports/stores"+q, w.key, nil, &st)
		if len(st.Stores) != 1 || st.Stores[0].Unsynced == nil {
			return false, fmt.Sprintf("%+v", st.Stores)
		}
		u := st.Stores[0].Unsynced
		return u.ReportedBy == "store" && u.Deltas == 0 && st.Stores[0].BacklogAgeMS == 0, fmt.Sprintf("%+v", *u)
	})
}
