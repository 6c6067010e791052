package agent_test

import (
	"context"
	"fmt"
	"strings"
	gosync "sync"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// hubLink is the agent's sync client cut down to the seam the agent uses: a lookup goes straight
// to a real hub's Subscribe handler and its member copy into the real replica, as the websocket
// session does; online can be switched off.
type hubLink struct {
	h       *hub.Hub
	store   *agentsqlite.Store
	id      string
	mu      gosync.Mutex
	online  bool
	lookups int // calls of Lookup
}

func (l *hubLink) Kick() {}
func (l *hubLink) Status() lsync.Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return lsync.Status{Online: l.online}
}
func (l *hubLink) setOnline(on bool) { l.mu.Lock(); l.online = on; l.mu.Unlock() }
func (l *hubLink) Refresh(ctx context.Context) error {
	return loyalty.Errorf(loyalty.EUNAVAILABLE, "not in this test")
}
func (l *hubLink) Subscribe(ctx context.Context, member string) (*loyalty.Member, error) {
	m, _, err := l.Lookup(ctx, member, "", "")
	return m, err
}
func (l *hubLink) Lookup(ctx context.Context, member, voucher, code string) (*loyalty.Member, *lsync.Standing, error) {
	if !l.Status().Online {
		return nil, nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
	}
	l.mu.Lock()
	l.lookups++
	l.mu.Unlock()
	m, st, err := l.h.Subscribe(ctx, l.id, lsync.Subscribe{Member: member, Voucher: voucher, QR: code})
	if err != nil {
		return nil, nil, err
	}
	return m, st, l.store.ApplyMember(ctx, m)
}

// onlinePair is a sync pair whose agent is connected to the hub through a hubLink.
func onlinePair(t *testing.T, edit func(*loyalty.Program)) (*syncPair, *hubLink) {
	t.Helper()
	p := loyalty.DefaultProgram()
	edit(&p)
	sp := openSyncPair(t, p)
	if _, _, err := sp.hub.CreateStore(context.Background(), "s2", "Store 2"); err != nil {
		t.Fatal(err)
	}
	link := &hubLink{h: sp.hub, store: sp.store, id: "s1", online: true}
	sp.agent.Sync = link
	return sp, link
}

// fundAt gives m1 points at the hub, online, as the web shop does, without the store hearing.
func fundAt(t *testing.T, h *hub.Hub, order string, amount int64) {
	t.Helper()
	if _, err := h.Earn(context.Background(), loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: loyalty.Money(amount), Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
}

// Finding 4: a connected store enforces a per-member limit with what the member did elsewhere.
// The member redeemed today's one five-off online; the store, online, refuses a second one, and
// says on its receipts that it checked with the hub. Offline it can only know its own
// redemptions: it approves, and says so.
func TestOnline_MemberLimitCountsOtherChannels(t *testing.T) {
	sp, link := onlinePair(t, func(p *loyalty.Program) {
		p.MemberLimits = []loyalty.MemberLimit{{Reward: "five-off", Period: loyalty.PeriodDay, Max: 1}}
	})
	ctx := context.Background()
	fundAt(t, sp.hub, "web-e", 100000)
	if _, err := sp.hub.Redeem(ctx, loyalty.RedeemRequest{OrderID: "web-r", MemberID: "m1", RewardID: "five-off"}); err != nil {
		t.Fatal(err)
	}
	_, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r1", MemberID: "m1", RewardID: "five-off"})
	if loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("a second five-off today, online: %v; want EBUDGET", err)
	}
	t.Logf("refusal: %v", err)
	rc, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r2", MemberID: "m1", RewardID: "coffee"})
	if err != nil || rc.CheckedBy != loyalty.CheckedByHub {
		t.Fatalf("a coffee (no limit), online: %+v, %v; want approved and checked by the hub", rc, err)
	}
	link.setOnline(false)
	rc, err = sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r3", MemberID: "m1", RewardID: "five-off"})
	if err != nil || rc.CheckedBy != loyalty.CheckedByStore || !rc.Offline {
		t.Fatalf("a five-off offline (the store knows of none today): %+v, %v; want approved on the store's records", rc, err)
	}
	// This store's own offline five-off counts once it is back online, before it is synced.
	link.setOnline(true)
	if _, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r4", MemberID: "m1", RewardID: "five-off"}); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("a five-off online after one offline here and one online: %v; want EBUDGET", err)
	}
}

// The store's own unsynced redemptions count on top of the hub's: one offline five-off not yet
// pushed, then online the limit of one is reached, though the hub has counted none.
func TestOnline_MemberLimitCountsThisStoresUnsyncedRedemptions(t *testing.T) {
	sp, link := onlinePair(t, func(p *loyalty.Program) {
		p.MemberLimits = []loyalty.MemberLimit{{Reward: "", Period: loyalty.PeriodDay, Max: 2}}
	})
	ctx := context.Background()
	fundAt(t, sp.hub, "web-e", 100000)
	sp.pull(t)
	link.setOnline(false)
	if _, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r1", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	link.setOnline(true)
	if _, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r2", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatalf("the day's second reward: %v", err)
	}
	sp.push(t) // both at the hub now; the member copy comes with the next lookup
	if _, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r3", MemberID: "m1", RewardID: "coffee"}); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("the day's third reward, limit 2: %v; want EBUDGET", err)
	}
	// A reversed redemption gives its place back, before the reversal is synced.
	if _, err := sp.agent.Reverse(ctx, loyalty.ReverseRequest{OrderID: "r2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r5", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatalf("a reward after one of the day's two was refunded: %v", err)
	}
	if cs := conflictList(t, sp.hub); len(cs) != 0 {
		t.Errorf("conflicts after exact online checks: %+v", cs)
	}
}

// Finding 4: an earn cap counts the member's points from every store and channel of the day.
func TestOnline_EarnCapCountsOtherStores(t *testing.T) {
	sp, _ := onlinePair(t, func(p *loyalty.Program) {
		p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 100}}
	})
	ctx := context.Background()
	fundAt(t, sp.hub, "web-e", 8000) // 80 points online today
	rc, err := sp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "e1", MemberID: "m1", Amount: 5000, Currency: "EUR"})
	if err != nil || rc.Points != 20 || rc.CheckedBy != loyalty.CheckedByHub {
		t.Fatalf("earn of 50 with 80 of the day's 100 earned online: %+v, %v; want 20 points, checked by the hub", rc, err)
	}
	// Unsynced: the store's own 20 count on top of the hub's 80.
	if rc, err := sp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "e2", MemberID: "m1", Amount: 5000, Currency: "EUR"}); err != nil || rc.Points != 0 {
		t.Fatalf("earn with the day's cap reached: %+v, %v; want 0 points", rc, err)
	}
	sp.push(t)
	if cs := conflictList(t, sp.hub); len(cs) != 0 {
		t.Errorf("conflicts: %+v; an exact cap breaks nothing", cs)
	}
}

// Finding 4: a voucher used online (or at another store) is refused at a connected store.
func TestOnline_VoucherUsedElsewhereIsRefused(t *testing.T) {
	sp, link := onlinePair(t, func(p *loyalty.Program) {})
	ctx := context.Background()
	fundAt(t, sp.hub, "web-e", 100000)
	vr, err := sp.hub.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "v1", MemberID: "m1", RewardID: "five-off"})
	if err != nil {
		t.Fatal(err)
	}
	vr2, err := sp.hub.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "v2", MemberID: "m1", RewardID: "five-off"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.hub.Redeem(ctx, loyalty.RedeemRequest{OrderID: "web-use", Voucher: vr.Voucher.Token}); err != nil {
		t.Fatal(err)
	}
	sp.pull(t) // the store has the voucher keys and the member
	_, err = sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "u1", Voucher: vr.Voucher.Token})
	if loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Fatalf("a voucher already used online, at a connected store: %v; want ECONFLICT", err)
	}
	t.Logf("refusal: %v", err)
	rc, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "u2", Voucher: vr2.Voucher.Token})
	if err != nil || rc.CheckedBy != loyalty.CheckedByHub {
		t.Fatalf("an unused voucher: %+v, %v; want approved, checked by the hub", rc, err)
	}
	link.setOnline(false)
	if _, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "u3", Voucher: vr2.Voucher.Token}); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Fatalf("the voucher this store used, again offline: %v; want ECONFLICT", err)
	}
}

// Finding 7: a member copy the store never refreshed (200 points) does not block a redemption
// the hub's balance (960) covers, while the store is connected.
func TestOnline_StaleCopyDoesNotBlockARedemption(t *testing.T) {
	sp, link := onlinePair(t, func(p *loyalty.Program) {
		p.Rewards = append(p.Rewards, loyalty.Reward{ID: "blender", Name: "Blender", PointsCost: 500, Kind: "free_product"})
	})
	ctx := context.Background()
	fundAt(t, sp.hub, "web-1", 20000)
	sp.pull(t) // the store's copy: 200
	fundAt(t, sp.hub, "web-2", 76000)
	link.setOnline(false)
	if _, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "b0", MemberID: "m1", RewardID: "blender"}); loyalty.ErrorCode(err) != loyalty.EINSUFFICIENT {
		t.Fatalf("offline, with 200 points known: %v; want EINSUFFICIENT", err)
	}
	link.setOnline(true)
	rc, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "b1", MemberID: "m1", RewardID: "blender"})
	if err != nil || rc.Balance != 460 || rc.CheckedBy != loyalty.CheckedByHub {
		t.Fatalf("online, with 960 at the hub: %+v, %v; want approved, balance 460", rc, err)
	}
	s, err := sp.agent.Scan(ctx, agent.ScanRequest{QR: mustToken(t, sp.hub, "m1")})
	if err != nil || s.Balance != 460 {
		t.Errorf("scan after: %+v, %v; want 460", s, err)
	}
}

func conflictList(t *testing.T, h *hub.Hub) []hub.Conflict {
	t.Helper()
	cs, err := h.Conflicts(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func (l *hubLink) lookupCount() int { l.mu.Lock(); defer l.mu.Unlock(); return l.lookups }

// A connected store asks the hub before an earn only when the hub's figures can change its
// points: a member it does not hold, an earn cap on purchases, a punch card the sale's lines may
// punch. Otherwise its copy decides, with no round trip, and the receipt says so.
func TestOnline_EarnAsksTheHubOnlyWhenItsFiguresCount(t *testing.T) {
	ctx := context.Background()
	var qr string // "": m1, in the store's replica from its first sync
	earn := func(t *testing.T, sp *syncPair, link *hubLink, order string, lines []loyalty.Line) (loyalty.Receipt, bool) {
		t.Helper()
		before := link.lookupCount()
		req := loyalty.EarnRequest{OrderID: order, MemberID: "m1", Amount: 1000, Currency: "EUR", Lines: lines}
		if qr != "" {
			req.MemberID, req.QR = "", qr
		}
		rc, err := sp.agent.Earn(ctx, req)
		if err != nil {
			t.Fatalf("earn %s: %v", order, err)
		}
		asked := link.lookupCount() > before
		if want := map[bool]string{true: loyalty.CheckedByHub, false: loyalty.CheckedByStore}[asked]; rc.CheckedBy != want {
			t.Errorf("earn %s: checked by %q, but the hub was asked: %v", order, rc.CheckedBy, asked)
		}
		return rc, asked
	}
	t.Run("plain program", func(t *testing.T) {
		sp, link := onlinePair(t, func(*loyalty.Program) {})
		if _, err := sp.hub.CreateMember(ctx, loyalty.Member{ID: "m9", HomeStore: "s2"}); err != nil {
			t.Fatal(err)
		}
		qr = mustToken(t, sp.hub, "m9") // another store's member, scanned
		defer func() { qr = "" }()
		if _, asked := earn(t, sp, link, "o1", nil); !asked {
			t.Error("the first earn of a member the store does not hold did not ask the hub")
		}
		rc, asked := earn(t, sp, link, "o2", nil)
		if asked {
			t.Error("an earn of a member the store holds, with no cap nor punch card, asked the hub")
		}
		if rc.Points != 10 || rc.Balance != 20 {
			t.Errorf("the second earn: %+v; want 10 points and a balance of 20", rc)
		}
	})
	t.Run("purchase cap", func(t *testing.T) {
		sp, link := onlinePair(t, func(p *loyalty.Program) {
			p.EarnCaps = []loyalty.EarnCap{{Rule: loyalty.RulePurchase, Period: loyalty.PeriodDay, MaxPoints: 100}}
		})
		earn(t, sp, link, "o1", nil)
		if _, asked := earn(t, sp, link, "o2", nil); !asked {
			t.Error("an earn under a cap on purchases did not ask the hub")
		}
	})
	t.Run("punch cards", func(t *testing.T) {
		sp, link := onlinePair(t, func(p *loyalty.Program) {
			p.PunchCards = []loyalty.PunchCard{{ID: "espresso", Name: "Espresso card", SKU: "espresso", Buy: 5, Reward: "coffee"}}
		})
		earn(t, sp, link, "o1", nil)
		if _, asked := earn(t, sp, link, "o2", nil); asked {
			t.Error("an earn without lines asked the hub although no punch card can count it")
		}
		if _, asked := earn(t, sp, link, "o3", []loyalty.Line{{SKU: "espresso", Qty: 1, Amount: 1000}}); !asked {
			t.Error("an earn whose lines punch a card did not ask the hub")
		}
		// Lines that punch no card (a card counts a SKU, or a category): the store's copy decides,
		// with no round trip the cashier waits for.
		groceries := []loyalty.Line{{SKU: "bread", Category: "bakery", Qty: 2, Amount: 600}, {SKU: "milk", Qty: 1, Amount: 400}}
		if _, asked := earn(t, sp, link, "o4", groceries); asked {
			t.Error("an earn whose lines punch no card asked the hub")
		}
		if _, asked := earn(t, sp, link, "o5", []loyalty.Line{{SKU: "espresso", Amount: 1000}}); asked {
			t.Error("an earn whose card's line has no units (it punches nothing) asked the hub")
		}
	})
	t.Run("punch card by category", func(t *testing.T) {
		sp, link := onlinePair(t, func(p *loyalty.Program) {
			p.PunchCards = []loyalty.PunchCard{{ID: "coffee", Name: "Coffee card", Category: "coffee", Buy: 5, Reward: "coffee"}}
		})
		earn(t, sp, link, "o1", nil)
		if _, asked := earn(t, sp, link, "o2", []loyalty.Line{{SKU: "espresso", Qty: 1, Amount: 1000}}); asked {
			t.Error("an earn whose line is not in the card's category asked the hub")
		}
		if _, asked := earn(t, sp, link, "o3", []loyalty.Line{{SKU: "latte", Category: "coffee", Qty: 1, Amount: 1000}}); !asked {
			t.Error("an earn whose line is in the card's category did not ask the hub")
		}
	})
}

// A member the replica holds but the hub does not count as the store's (the hub's scope lost
// them, as a restored hub does): the hub would refuse a redemption of their points, so the till
// refuses it at once and asks for the member's code, and nothing is recorded. Scanned, the
// member is the store's again, and the redemption goes through. A sale needs no scope.
func TestOnline_RedemptionOfAMemberTheHubDoesNotCountAsTheStores(t *testing.T) {
	sp, _ := onlinePair(t, func(p *loyalty.Program) {})
	ctx := context.Background()
	if _, err := sp.hub.CreateMember(ctx, loyalty.Member{ID: "m9", HomeStore: "s2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.hub.Earn(ctx, loyalty.EarnRequest{OrderID: "web-9", MemberID: "m9", Amount: 20000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.agent.Scan(ctx, agent.ScanRequest{QR: mustToken(t, sp.hub, "m9")}); err != nil { // in the replica and the scope
		t.Fatal(err)
	}
	if err := sp.hub.Unsubscribe(ctx, "s1", []string{"m9"}); err != nil {
		t.Fatal(err)
	}
	_, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r1", MemberID: "m9", RewardID: "coffee"})
	if loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED || !strings.Contains(err.Error(), "scan the member's QR code") {
		t.Fatalf("a redemption by id of a member the hub does not count as the store's: %v; want EUNAUTHORIZED asking for the code", err)
	}
	if _, err := sp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "e1", MemberID: "m9", Amount: 1000, Currency: "EUR"}); err != nil {
		t.Errorf("a sale to them: %v", err)
	}
	if err := sp.hub.Unsubscribe(ctx, "s1", []string{"m9"}); err != nil { // the sale's lookup brought them back: out again
		t.Fatal(err)
	}
	rc, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r2", QR: mustToken(t, sp.hub, "m9"), RewardID: "coffee"})
	if err != nil || rc.CheckedBy != loyalty.CheckedByHub {
		t.Fatalf("the same redemption with the member's code: %+v, %v", rc, err)
	}
}

// TestVoucher_MinOrderAtTheTill: a reward's min_order holds for the order a voucher is used on,
// at the till too, online and offline: the purchase had no order to check it against.
func TestVoucher_MinOrderAtTheTill(t *testing.T) {
	sp, link := onlinePair(t, func(p *loyalty.Program) {
		for i := range p.Rewards {
			if p.Rewards[i].ID == "five-off" {
				p.Rewards[i].MinOrder = 5000
			}
		}
	})
	ctx := context.Background()
	fundAt(t, sp.hub, "web-e", 100000)
	vr, err := sp.hub.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: "v1", MemberID: "m1", RewardID: "five-off"})
	if err != nil {
		t.Fatal(err)
	}
	sp.pull(t) // the store has the voucher keys and the program
	for _, online := range []bool{true, false} {
		link.setOnline(online)
		_, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: fmt.Sprintf("small-%v", online), Voucher: vr.Voucher.Token, OrderAmount: 100})
		if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "at least 5000") {
			t.Fatalf("online %v: the voucher on an order of 1.00: %v, want EINVALID naming the minimum", online, err)
		}
	}
	if _, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "big", Voucher: vr.Voucher.Token, OrderAmount: 5000}); err != nil {
		t.Fatalf("the voucher on an order of 50.00, offline: %v", err)
	}
}

// TestOnline_RedeemRetryAfterScopeLossGetsTheFirstAnswer: a redemption by member id, approved
// (offline here) and so spent in the outbox, is retried unchanged after the hub stopped counting
// the member as the store's (a restore from an older backup, or a race with an eviction): the
// retry gets its first answer. A new redemption by id is refused until the member's code is
// scanned. Before, the hub's refusal was checked ahead of the order's stored answer: the retry
// was refused, though its points were spent.
func TestOnline_RedeemRetryAfterScopeLossGetsTheFirstAnswer(t *testing.T) {
	sp, link := onlinePair(t, func(p *loyalty.Program) {})
	ctx := context.Background()
	if _, err := sp.hub.CreateMember(ctx, loyalty.Member{ID: "m9", HomeStore: "s2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.hub.Earn(ctx, loyalty.EarnRequest{OrderID: "web-9", MemberID: "m9", Amount: 20000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.agent.Scan(ctx, agent.ScanRequest{QR: mustToken(t, sp.hub, "m9")}); err != nil {
		t.Fatal(err)
	}
	link.setOnline(false)
	req := loyalty.RedeemRequest{OrderID: "r1", MemberID: "m9", RewardID: "coffee"}
	first, err := sp.agent.Redeem(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	link.setOnline(true)
	if err := sp.hub.Unsubscribe(ctx, "s1", []string{"m9"}); err != nil {
		t.Fatal(err)
	}
	again, err := sp.agent.Redeem(ctx, req) // the POS lost the answer and retries, unchanged
	if err != nil || len(again.Deltas) != 1 || again.Deltas[0] != first.Deltas[0] || !again.Replayed {
		t.Fatalf("retry of an approved redemption: %+v, %v; want the first answer (delta %s)", again, err, first.Deltas[0])
	}
	_, err = sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r2", MemberID: "m9", RewardID: "coffee"})
	if loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED || !strings.Contains(err.Error(), "scan the member's QR code") {
		t.Errorf("a new redemption by id: %v; want EUNAUTHORIZED, scan the member's QR code", err)
	}
}
