package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/clock"
)

// TestEightHourOutage: a store cut off from the hub for eight hours keeps redeeming a budgeted
// reward within its lease, and stops redeeming an unbudgeted reward once that reward's offline
// validity (4h here) has passed; another store stays online throughout. Once the link heals, the
// hub takes every offline redemption, the budget counts each once, every balance matches the
// receipts, and no conflict is listed. The hub and both agents are real processes built with the
// fakeclock tag: they share one clock, which the test moves an hour at a time.
func TestEightHourOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	clockFile := filepath.Join(t.TempDir(), "clock")
	ahead := func(d time.Duration) {
		t.Helper()
		tmp := clockFile + ".new"
		if err := os.WriteFile(tmp, []byte(d.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, clockFile); err != nil {
			t.Fatal(err)
		}
	}
	shared := []string{clock.Env + "=" + clockFile}
	w, links := newWorldOf(t, binary(t, "fakeclock"), shared, shared, "a", "b")
	api := w.api()

	const limit = 60 // a new store's lease is a quarter of it (leases.share): 15 coffees
	p := loyalty.DefaultProgram()
	p.Budgets = []loyalty.Budget{{ID: "coffee-campaign", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: limit}}
	for i := range p.Rewards {
		if p.Rewards[i].ID == "five-off" {
			p.Rewards[i].OfflineValidity = loyalty.Duration(4 * time.Hour) // no budget: only its offline validity bounds it
		}
	}
	if s := call(t, "PUT", api+"/v1/program", w.key, p, nil); s != 200 {
		t.Fatalf("program: HTTP %d", s)
	}
	for i := range 8 {
		w.member(fmt.Sprintf("m%d", i), 5000)
	}
	for _, id := range []string{"a", "b"} {
		w.startAgent(id)
		w.waitAgentUp(id)
		eventually(t, 10*time.Second, id+" lease", func() (bool, string) {
			st := w.status(id)
			return len(st.Leases) == 1 && st.Leases[0].Granted > 0, fmt.Sprintf("%+v", st.Leases)
		})
		for _, m := range w.members { // the till has seen every member before the outage
			call(t, "POST", "http://"+w.addrs[id]+"/v1/scan", "", agent.ScanRequest{QR: w.tokens[m]}, nil)
		}
	}
	links["a"].Cut()
	eventually(t, 10*time.Second, "a offline", func() (bool, string) { return !w.status("a").Online, "online" })
	lease := w.status("a").Leases[0]
	t.Logf("store a went offline holding %d of %d coffees, usable until %s", lease.Granted, limit, lease.ValidUntil.Format(time.RFC3339))

	coffees := 0
	for h := 1; h <= 8; h++ {
		ahead(time.Duration(h) * time.Hour)
		m := fmt.Sprintf("m%d", h-1)
		r, s := w.redeemOnce("a", m, "coffee")
		if s != 200 || r.CheckedBy != loyalty.CheckedByStore || !r.Offline {
			t.Fatalf("hour %d offline: coffee answered HTTP %d %+v; the store's lease should cover it", h, s, r)
		}
		coffees++
		if r, s := w.redeemOnce("b", m, "coffee"); s != 200 || r.CheckedBy != loyalty.CheckedByHub {
			t.Fatalf("hour %d at the connected store: coffee answered HTTP %d %+v", h, s, r)
		}
		coffees++
		// The connected store's sale reaches the hub within the hour, as it would in a store: a
		// pull it sent just before the sale and the hub took after the clock moved an hour would
		// otherwise mark it synced after the sale, less the hour the hub allows for delays.
		eventually(t, 10*time.Second, "b's coffee acknowledged", func() (bool, string) {
			st := w.status("b")
			return st.Outbox == 0, fmt.Sprintf("outbox %d", st.Outbox)
		})
		switch {
		case h < 4:
			if r, s := w.redeemOnce("a", m, "five-off"); s != 200 {
				t.Fatalf("hour %d offline, within its offline validity: five-off answered HTTP %d %+v", h, s, r)
			}
		case h > 4: // at exactly 4h the store may be a moment either side of the bound
			code, msg := w.refusal("a", m, "five-off")
			if code != loyalty.EBUDGET || !strings.Contains(msg, "offline for more than 4h") {
				t.Fatalf("hour %d offline, past five-off's offline validity of 4h: %s %q", h, code, msg)
			}
		}
	}
	if st := w.status("a"); st.Online || st.Outbox == 0 {
		t.Fatalf("store a after 8h cut off: online %v, outbox %d", st.Online, st.Outbox)
	}

	links["a"].Heal()
	eventually(t, 30*time.Second, "store a synced", func() (bool, string) {
		st := w.status("a")
		return st.Online && st.Outbox == 0, fmt.Sprintf("online %v, outbox %d, last error %q", st.Online, st.Outbox, st.LastError)
	})
	var conflicts []hub.Conflict
	if s := call(t, "GET", api+"/v1/conflicts", w.key, nil, &conflicts); s != 200 {
		t.Fatalf("conflicts: HTTP %d", s)
	}
	if len(conflicts) != 0 {
		t.Errorf("after an 8h outage within the store's lease, the hub lists conflicts: %+v", conflicts)
	}
	b := w.budgets()[0]
	if b.Spent != int64(coffees) || b.Spent+b.Outstanding > b.Limit {
		t.Errorf("budget after healing: spent %d (receipts %d), outstanding %d, limit %d", b.Spent, coffees, b.Spent, b.Limit)
	}
	for _, m := range w.members {
		var v hub.MemberView
		if s := call(t, "GET", api+"/v1/members/"+m, w.key, nil, &v); s != 200 {
			t.Fatalf("member %s: HTTP %d", m, s)
		}
		if v.Balance != w.expected[m] {
			t.Errorf("member %s: hub balance %d, receipts add up to %d", m, v.Balance, w.expected[m])
		}
	}
	for id := range w.approved {
		if !w.inLedger(id) {
			t.Errorf("approved delta %s missing at the hub", id)
		}
	}
}

// refusal redeems reward for member at store once, expects a refusal, and returns its error code
// and message.
func (w *world) refusal(store, member, reward string) (string, string) {
	w.t.Helper()
	w.order++
	body, _ := json.Marshal(loyalty.RedeemRequest{OrderID: fmt.Sprintf("%s-%d", store, w.order), QR: w.tokens[member], RewardID: reward})
	resp, err := httpClient(w.t).Post("http://"+w.addrs[store]+"/v1/redeem", "application/json", bytes.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error *loyalty.Error `json:"error"`
	}
	if resp.StatusCode == http.StatusOK || json.Unmarshal(b, &e) != nil || e.Error == nil {
		w.t.Fatalf("redeem %s at %s: expected a refusal, got HTTP %d %s", reward, store, resp.StatusCode, b)
	}
	return e.Error.Code, e.Error.Message
}
