package agent_test

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/qr"
	"github.com/loyalty-edge-sync/loyalty/qr/qrtest"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestTillYenSaleAndRefund: a euro program that also earns in yen. The till reads a yen sale's
// amount, and a partial refund's amount of that sale, in yen, which have no decimals, and shows
// them as the receipt does. Before, "300,000" yen was refused and "3000" read as 300,000 yen: a
// partial refund took back the whole sale.
func TestTillYenSaleAndRefund(t *testing.T) {
	ctx := context.Background()
	st, err := agentsqlite.Open(ctx, filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ta := &posAgent{Store: st, Sync: &offlineSyncer{}, Clock: newManualClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)), Key: qrtest.Key(t)}
	prog := loyalty.DefaultProgram()
	prog.Earn.Currencies = []loyalty.CurrencyRate{{Currency: "JPY", PointsPerUnit: 1, UnitMinor: 150}}
	if err := st.ApplyChanges(ctx, &lsync.Changes{Cursor: 10, Program: &prog, Keys: []qr.PublicKey{ta.Key.Public()},
		Members: []loyalty.Member{{ID: "alice", Name: "Alice", Version: 5}}}); err != nil {
		t.Fatal(err)
	}
	ta.Agent = agent.New("s1", st, ta.Sync)
	ta.Agent.Logger, ta.Agent.Now = biLogger, ta.Clock.Now
	ta.HTTP = agent.NewServer(ta.Agent, "127.0.0.1:0")
	ta.HTTP.Logger, ta.HTTP.POSToken = biLogger, tillToken
	if err := ta.HTTP.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ta.HTTP.Close() })
	b := newTillBrowser(t, ta.HTTP.URL())
	b.signIn(t, tillToken)
	page := b.scan(t, ta.memberQR(t, "alice"))
	order := hidden(t, page, "earn_order")
	status, got := b.post(t, "/earn", url.Values{"qr": {hidden(t, page, "qr")}, "earn_order": {order}, "amount": {"300,000"}, "currency": {"JPY"}})
	if status != 200 || balance(t, got) != "2,000" || !strings.Contains(got, "300,000 JPY") {
		t.Fatalf("a sale of 300,000 JPY: %d, balance %s, want 2,000 points and the amount on the receipt", status, balance(t, got))
	}
	status, got = b.post(t, "/refund", url.Values{"order": {order}, "refund_id": {hidden(t, got, "refund_id")}, "refund_amount": {"3,000"}})
	if status != 200 || balance(t, got) != "1,980" || !strings.Contains(got, "3,000 JPY") {
		t.Errorf("3,000 JPY given back: %d, balance %s; want 20 points taken back, 1,980 left, and the amount on the receipt", status, balance(t, got))
	}
	// A sale without a member card in yen, from the page's own currency list.
	if !strings.Contains(got, `<select id="sale_currency" name="currency">`) {
		t.Fatalf("the sale form offers no currency:\n%s", got)
	}
	status, got = b.post(t, "/sale", url.Values{"sale_order": {hidden(t, got, "sale_order")}, "sale_amount": {"2,500"}, "currency": {"JPY"}})
	if status != 200 || !strings.Contains(got, "2,500 JPY") {
		t.Errorf("a sale of 2,500 JPY without a member: %d\n%.2000s", status, got)
	}
}
