package agent_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

const day = 24 * time.Hour

// scopeLink is a hubLink that also takes members out of the store's scope at the hub, as the
// sync client does in a version 2 session.
type scopeLink struct {
	*hubLink
	unsubscribed [][]string // every unsubscribe the hub took, in order
	maxBatch     int        // the welcome's max_batch the link reports (0: none), refusing more as the hub does
}

func (l *scopeLink) Status() lsync.Status {
	st := l.hubLink.Status()
	st.MaxBatch = l.maxBatch
	return st
}

func (l *scopeLink) Unsubscribe(ctx context.Context, members []string) error {
	if !l.Status().Online {
		return loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
	}
	if l.maxBatch > 0 && len(members) > l.maxBatch {
		return loyalty.Errorf(loyalty.ETOOLARGE, "%d members in one unsubscribe, max_batch is %d", len(members), l.maxBatch)
	}
	if err := l.h.Unsubscribe(ctx, l.id, members); err != nil {
		return err
	}
	l.unsubscribed = append(l.unsubscribed, members)
	return nil
}

// clockedPair is a hub and a store agent on real SQLite files, on one test clock that the test
// moves: the hub's, the replica's and the agent's. The agent reaches the hub through a scopeLink
// (lookups, unsubscribes); pushes and pulls are the test's (syncPair).
type clockedPair struct {
	*syncPair
	link  *scopeLink
	clock *time.Time
}

func openClockedPair(t *testing.T, p loyalty.Program, r agent.Retention) *clockedPair {
	t.Helper()
	ctx := context.Background()
	clock := now
	nowFn := func() time.Time { return clock }
	hs, err := hubsqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	h := hub.New(hs)
	h.KEK, h.Logger, h.Now = seal.NewRandom(), biLogger, nowFn
	if err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.CreateStore(ctx, "s1", "Store 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.SetProgram(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m1", Name: "Ann", HomeStore: "s1"}); err != nil {
		t.Fatal(err)
	}
	as, err := agentsqlite.Open(ctx, filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	as.Now, as.Logger = nowFn, biLogger
	t.Cleanup(func() { as.Close() })
	link := &scopeLink{hubLink: &hubLink{h: h, store: as, id: "s1", online: true}}
	a := agent.New("s1", as, link)
	a.Logger, a.Now, a.Retention = biLogger, nowFn, r
	cp := &clockedPair{syncPair: &syncPair{hub: h, store: as, agent: a}, link: link, clock: &clock}
	cp.pull(t)
	return cp
}

// at moves the test clock to d after the start.
func (cp *clockedPair) at(d time.Duration) { *cp.clock = now.Add(d) }

func (cp *clockedPair) maintain(t *testing.T) {
	t.Helper()
	if err := cp.agent.Maintain(context.Background()); err != nil {
		t.Fatalf("maintain: %v", err)
	}
}

func (cp *clockedPair) status(t *testing.T) agent.Status {
	t.Helper()
	st, err := cp.agent.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// inReplica reports whether the replica holds a copy of member.
func (cp *clockedPair) inReplica(t *testing.T, member string) bool {
	t.Helper()
	var m loyalty.Member
	err := cp.store.View(context.Background(), func(tx agent.Tx) error {
		var err error
		m, err = tx.Member(context.Background(), member)
		return err
	})
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return false
	} else if err != nil {
		t.Fatal(err)
	}
	return m.Version > 0
}

// feedHas pulls the change feed to its end and reports whether it carried member.
func (cp *clockedPair) feedHas(t *testing.T, member string) bool {
	t.Helper()
	ctx := context.Background()
	found := false
	for {
		cur, err := cp.store.Cursor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := cp.hub.Pull(ctx, "s1", lsync.Pull{Cursor: cur, Limit: 500, Flushed: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ch.Members {
			found = found || m.ID == member
		}
		if err := cp.store.ApplyChanges(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if !ch.More {
			return found
		}
	}
}

func (cp *clockedPair) hubBalance(t *testing.T, member string) int64 {
	t.Helper()
	m, err := cp.hub.Member(context.Background(), member, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m.Balance
}

// evictOffline runs the store's maintenance, takes the store offline and runs it again a day
// past evict_after (90 days in these tests), and requires member evicted: their unsubscribe then
// waits for the hub.
func (cp *clockedPair) evictOffline(t *testing.T, member string) {
	t.Helper()
	cp.maintain(t)
	cp.link.setOnline(false)
	cp.at(91 * day)
	cp.maintain(t)
	if cp.inReplica(t, member) {
		t.Fatalf("%s not evicted", member)
	}
}

// feedBack brings m back into the replica as a change-feed page the hub sent before the eviction
// would: a copy again, before the hub took the unsubscribe.
func (cp *clockedPair) feedBack(t *testing.T, m loyalty.Member) {
	t.Helper()
	ctx := context.Background()
	cur, err := cp.store.Cursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.store.ApplyChanges(ctx, &lsync.Changes{Cursor: cur, Members: []loyalty.Member{m}}); err != nil {
		t.Fatal(err)
	}
}

// walkIn creates a member of no store's at the hub.
func (cp *clockedPair) walkIn(t *testing.T, id string) {
	t.Helper()
	if _, err := cp.hub.CreateMember(context.Background(), loyalty.Member{ID: id, Name: "Walk-in"}); err != nil {
		t.Fatal(err)
	}
}

// A member not seen at the store for replica.evict_after leaves its replica, and the hub stops
// sending the store their changes. When they come back (a scan while online) they are fetched
// again with the balance the hub has, points earned elsewhere meanwhile included, and the store
// gets their changes again.
func TestMaintain_EvictsMembersNotSeen(t *testing.T) {
	cp := openClockedPair(t, loyalty.DefaultProgram(), agent.Retention{EvictAfter: 90 * day})
	ctx := context.Background()
	if _, err := cp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 2000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	cp.push(t)
	cp.pull(t)

	cp.at(60 * day) // scanned: seen again
	if s, err := cp.agent.Scan(ctx, agent.ScanRequest{QR: mustToken(t, cp.hub, "m1")}); err != nil || !s.Known {
		t.Fatalf("scan: %+v, %v", s, err)
	}
	cp.at(149 * day)
	cp.maintain(t)
	if !cp.inReplica(t, "m1") {
		t.Fatal("m1 evicted 89 days after the store last saw them, with evict_after 90 days")
	}
	cp.at(151 * day)
	cp.maintain(t)
	if cp.inReplica(t, "m1") {
		t.Fatal("m1 still in the replica 91 days after the store last saw them")
	}
	st := cp.status(t)
	if st.Members != 0 || st.EvictedTotal != 1 || st.UnsubscribedTotal != 1 || st.Unsubscribing != 0 {
		t.Errorf("status members %d, evicted_total %d, unsubscribed_total %d, unsubscribing %d; want 0, 1, 1, 0",
			st.Members, st.EvictedTotal, st.UnsubscribedTotal, st.Unsubscribing)
	}
	if len(cp.link.unsubscribed) != 1 || !slices.Equal(cp.link.unsubscribed[0], []string{"m1"}) {
		t.Errorf("unsubscribes at the hub: %v, want [[m1]]", cp.link.unsubscribed)
	}

	// m1 shops online: the hub no longer sends them to this store.
	fundAt(t, cp.hub, "web-1", 5000)
	if cp.feedHas(t, "m1") || cp.inReplica(t, "m1") {
		t.Fatal("the change feed brought the evicted m1 back to the store")
	}
	cp.maintain(t)
	if n := cp.status(t).EvictedTotal; n != 1 {
		t.Errorf("evicted_total %d after another run, want 1", n)
	}

	// m1 comes back to the store: scanned online, fetched with the hub's balance.
	want := cp.hubBalance(t, "m1")
	s, err := cp.agent.Scan(ctx, agent.ScanRequest{QR: mustToken(t, cp.hub, "m1")})
	if err != nil || !s.Known || s.Balance != want || want != 20+50 {
		t.Fatalf("returning member's scan: %+v, %v; want known with the hub's balance %d (20 here, 50 online)", s, err, want)
	}
	fundAt(t, cp.hub, "web-2", 1000)
	if !cp.feedHas(t, "m1") {
		t.Fatal("m1, back in the replica, is not in the change feed again")
	}
	r, err := cp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "o2", MemberID: "m1", Amount: 1000, Currency: "EUR"})
	if err != nil || r.Balance != want+10+10 {
		t.Fatalf("earn after coming back: %+v, %v; want balance %d", r, err, want+20)
	}
	cp.at(200 * day)
	cp.maintain(t)
	if !cp.inReplica(t, "m1") {
		t.Error("m1 evicted 49 days after their last sale")
	}
}

// The outbox never loses anything: a member with a delta the hub has not acknowledged stays in
// the replica, and so does one whose acknowledged delta their copy does not include yet, however
// long ago the store saw them. Once the hub's copy that includes it has arrived, they may go.
// TestMaintain_UnsubscribesWithinMaxBatch: a hub whose max_batch is smaller than a maintenance
// batch (it may be 1) is sent the evicted members that many at a time. Before, the agent sent up
// to 500 ids in one message, which such a hub refuses: the evictions stayed pending for good, and
// the feed kept carrying those members.
func TestMaintain_UnsubscribesWithinMaxBatch(t *testing.T) {
	cp := openClockedPair(t, loyalty.DefaultProgram(), agent.Retention{EvictAfter: 90 * day})
	ctx := context.Background()
	cp.link.maxBatch = 2
	for _, id := range []string{"m2", "m3", "m4", "m5"} {
		if _, err := cp.hub.CreateMember(ctx, loyalty.Member{ID: id, HomeStore: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	cp.pull(t) // home store s1: in its scope
	for i, id := range []string{"m1", "m2", "m3", "m4", "m5"} {
		if _, err := cp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: fmt.Sprintf("o%d", i), MemberID: id, Amount: 2000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	cp.push(t)
	cp.pull(t)
	cp.at(91 * day)
	cp.maintain(t)
	st := cp.status(t)
	if st.EvictedTotal != 5 || st.UnsubscribedTotal != 5 || st.Unsubscribing != 0 {
		t.Errorf("evicted %d, unsubscribed %d, unsubscribing %d; want 5, 5, 0", st.EvictedTotal, st.UnsubscribedTotal, st.Unsubscribing)
	}
	for _, u := range cp.link.unsubscribed {
		if len(u) > 2 {
			t.Errorf("an unsubscribe of %d members, max_batch 2: %v", len(u), u)
		}
	}
}

func TestMaintain_NoEvictionWithUnacknowledgedDeltas(t *testing.T) {
	cp := openClockedPair(t, loyalty.DefaultProgram(), agent.Retention{EvictAfter: 90 * day, RetainAcked: 30 * day})
	ctx := context.Background()
	cp.link.setOnline(false)
	if _, err := cp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 2000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	out, err := cp.store.Pending(ctx, 0, 10)
	if err != nil || len(out) != 1 {
		t.Fatalf("outbox %v, %v", out, err)
	}
	ack, err := cp.hub.Push(ctx, "s1", []loyalty.Delta{out[0].Delta}) // the hub applies it; its ack is not recorded yet
	if err != nil || ack.Results[0].Status != lsync.StatusApplied {
		t.Fatalf("push: %+v, %v", ack, err)
	}

	cp.at(120 * day)
	cp.maintain(t)
	if !cp.inReplica(t, "m1") {
		t.Fatal("m1 evicted with a delta in the outbox")
	}
	if n, err := cp.store.PendingCount(ctx); err != nil || n != 1 {
		t.Fatalf("outbox %d, %v; want the delta still there", n, err)
	}
	if err := cp.store.ApplyAck(ctx, ack); err != nil { // acknowledged, at a version of m1 newer than the store's copy
		t.Fatal(err)
	}
	cp.maintain(t)
	if !cp.inReplica(t, "m1") {
		t.Fatal("m1 evicted with an acknowledged delta that their copy does not include yet")
	}
	s, err := cp.agent.Scan(ctx, agent.ScanRequest{QR: mustToken(t, cp.hub, "m1")})
	if err != nil || s.Balance != 20 {
		t.Fatalf("scan: %+v, %v; want 20", s, err)
	}
	cp.pull(t) // the copy that includes it
	cp.at(211 * day)
	cp.maintain(t)
	if cp.inReplica(t, "m1") {
		t.Fatal("m1 still in the replica 91 days after the scan, with everything synced")
	}
	if st := cp.status(t); st.Unsubscribing != 1 || st.EvictedTotal != 1 {
		t.Errorf("offline: unsubscribing %d, evicted_total %d; want the unsubscribe waiting for the hub", st.Unsubscribing, st.EvictedTotal)
	}
	cp.link.setOnline(true)
	cp.maintain(t)
	if st := cp.status(t); st.Unsubscribing != 0 || st.UnsubscribedTotal != 1 {
		t.Errorf("online again: unsubscribing %d, unsubscribed_total %d; want 0, 1", st.Unsubscribing, st.UnsubscribedTotal)
	}
}

// An evicted member who comes back while the store is offline is served on their signed QR code
// alone, as a member new to the store: what the store recorded, no more. Once online, the sale
// reaches the hub, which puts the member back in the store's scope, and the balance is the
// hub's again.
func TestMaintain_EvictedMemberBackOffline(t *testing.T) {
	cp := openClockedPair(t, loyalty.DefaultProgram(), agent.Retention{EvictAfter: 90 * day})
	ctx := context.Background()
	cp.maintain(t) // at start: m1, who came with the feed, counts as seen from now
	cp.at(91 * day)
	cp.maintain(t)
	if cp.inReplica(t, "m1") {
		t.Fatal("m1 (never seen at the store) not evicted after 91 days")
	}
	cp.link.setOnline(false)
	tok := mustToken(t, cp.hub, "m1")
	s, err := cp.agent.Scan(ctx, agent.ScanRequest{QR: tok})
	if err != nil || s.Known || s.Balance != 0 {
		t.Fatalf("offline scan of the evicted m1: %+v, %v; want unknown, balance 0", s, err)
	}
	if _, err := cp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r1", QR: tok, RewardID: "coffee"}); loyalty.ErrorCode(err) != loyalty.EINSUFFICIENT {
		t.Fatalf("offline redemption of points the store cannot see: %v, want EINSUFFICIENT", err)
	}
	r, err := cp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", QR: tok, Amount: 3000, Currency: "EUR"})
	if err != nil || r.Balance != 30 {
		t.Fatalf("offline earn: %+v, %v; want balance 30 (what the store recorded)", r, err)
	}
	cp.link.setOnline(true)
	cp.push(t)
	if !cp.feedHas(t, "m1") {
		t.Fatal("the hub did not put m1 back in the store's scope when it applied the store's sale")
	}
	s, err = cp.agent.Scan(ctx, agent.ScanRequest{QR: tok})
	if want := cp.hubBalance(t, "m1"); err != nil || !s.Known || s.Balance != want || want != 30 {
		t.Fatalf("scan once synced: %+v, %v; want known with the hub's balance %d", s, err, want)
	}
}

// The unsubscribe races with the store's own calls: a member evicted while offline comes back
// (here, a change-feed page the hub had sent before) before the hub takes the unsubscribe. When
// the hub has answered, the agent subscribes to them again, so the hub keeps sending their
// changes to the store that holds them.
func TestMaintain_MemberBackBeforeTheUnsubscribe(t *testing.T) {
	cp := openClockedPair(t, loyalty.DefaultProgram(), agent.Retention{EvictAfter: 90 * day})
	ctx := context.Background()
	m, err := cp.hub.Member(ctx, "m1", 0)
	if err != nil {
		t.Fatal(err)
	}
	cp.evictOffline(t, "m1")
	if cp.status(t).Unsubscribing != 1 {
		t.Fatal("m1's unsubscribe not waiting")
	}
	cp.feedBack(t, m.Member)
	cp.link.setOnline(true)
	cp.maintain(t)
	if len(cp.link.unsubscribed) != 1 || cp.status(t).Unsubscribing != 0 {
		t.Fatalf("unsubscribes %v: want one, answered", cp.link.unsubscribed)
	}
	if !cp.inReplica(t, "m1") {
		t.Fatal("m1's copy left the replica")
	}
	fundAt(t, cp.hub, "web-1", 1000)
	if !cp.feedHas(t, "m1") {
		t.Fatal("the store holds m1 but the hub no longer sends their changes: the agent did not subscribe again")
	}
}

// The same race for a member who came back by a scan alone (no home here), then had a sale made
// by member id: the hub hands them back only against their code, which the agent no longer has
// (the sale carries none), so it drops their copy rather than keep one the hub no longer updates;
// the sale waits in the outbox all the same, and their next scan here fetches them again.
func TestMaintain_MemberBackByAScanAloneIsDropped(t *testing.T) {
	cp := openClockedPair(t, loyalty.DefaultProgram(), agent.Retention{EvictAfter: 90 * day})
	ctx := context.Background()
	cp.walkIn(t, "m9")
	if _, err := cp.agent.Scan(ctx, agent.ScanRequest{QR: mustToken(t, cp.hub, "m9")}); err != nil {
		t.Fatal(err)
	}
	m, err := cp.hub.Member(ctx, "m9", 0)
	if err != nil || !cp.inReplica(t, "m9") {
		t.Fatalf("m9 after the scan: %+v, %v; in the replica %v", m, err, cp.inReplica(t, "m9"))
	}
	cp.evictOffline(t, "m9")
	cp.feedBack(t, m.Member)
	if _, err := cp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m9", Amount: 3000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	cp.link.setOnline(true)
	cp.maintain(t)
	if cp.inReplica(t, "m9") {
		t.Fatal("the replica keeps a copy of m9 that the hub no longer updates")
	}
	if st := cp.status(t); st.Outbox != 1 {
		t.Errorf("outbox %d after the copy was dropped, want the sale by member id", st.Outbox)
	}
	if _, err := cp.agent.Scan(ctx, agent.ScanRequest{QR: mustToken(t, cp.hub, "m9")}); err != nil || !cp.inReplica(t, "m9") {
		t.Fatalf("m9's next scan: %v; in the replica %v", err, cp.inReplica(t, "m9"))
	}
}

// The same race for a member who came back by a sale made offline from a scan of their code: the
// push brought them back into the store's scope, then the unsubscribe, sent after it, took them
// out again. The sale's code is the reason the hub needs to hand them back: the agent subscribes
// with it, and the hub keeps sending their changes.
func TestMaintain_MemberBackByAScannedSale(t *testing.T) {
	cp := openClockedPair(t, loyalty.DefaultProgram(), agent.Retention{EvictAfter: 90 * day})
	ctx := context.Background()
	cp.walkIn(t, "m9")
	tok := mustToken(t, cp.hub, "m9")
	if _, err := cp.agent.Scan(ctx, agent.ScanRequest{QR: tok}); err != nil {
		t.Fatal(err)
	}
	cp.evictOffline(t, "m9")
	if cp.status(t).Unsubscribing != 2 {
		t.Fatalf("the unsubscribes of m1 and m9 not waiting: %+v", cp.status(t))
	}
	if _, err := cp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", QR: tok, Amount: 3000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	cp.link.setOnline(true)
	cp.push(t) // the sale, with m9's code: back in the scope
	cp.maintain(t)
	if len(cp.link.unsubscribed) != 1 || cp.status(t).Unsubscribing != 0 {
		t.Fatalf("unsubscribes %v: want one, answered", cp.link.unsubscribed)
	}
	cp.pull(t)
	if !cp.inReplica(t, "m9") {
		t.Fatal("m9's copy left the replica")
	}
	if _, err := cp.hub.Earn(ctx, loyalty.EarnRequest{OrderID: "web-9", MemberID: "m9", Amount: 1000, Currency: "EUR"}); err != nil {
		t.Fatal(err) // a change to m9 online
	}
	if !cp.feedHas(t, "m9") {
		t.Fatal("the store holds m9 but the hub no longer sends their changes: the agent did not subscribe again with their code")
	}
}

// The same race, for a member whose newest change here carried a code that has expired since:
// the hub refuses it (EINVALID), and the agent asks without it; with no other reason to hand the
// member back, the hub refuses that too, and the copy is dropped rather than kept stale.
func TestMaintain_MemberBackWithAnExpiredCodeIsDropped(t *testing.T) {
	cp := openClockedPair(t, loyalty.DefaultProgram(), agent.Retention{EvictAfter: 90 * day})
	ctx := context.Background()
	cp.walkIn(t, "m9")
	cp.hub.MemberTokenTTL = 30 * day
	tok := mustToken(t, cp.hub, "m9")
	if _, err := cp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", QR: tok, Amount: 3000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	cp.push(t)
	cp.pull(t)
	m, err := cp.hub.Member(ctx, "m9", 0)
	if err != nil || !cp.inReplica(t, "m9") {
		t.Fatalf("m9 after the sale: %+v, %v; in the replica %v", m, err, cp.inReplica(t, "m9"))
	}
	cp.evictOffline(t, "m9")
	cp.feedBack(t, m.Member)
	cp.link.setOnline(true)
	cp.maintain(t)
	if cp.inReplica(t, "m9") {
		t.Fatal("the replica keeps a copy of m9 that the hub no longer updates")
	}
}

// A program's limits and caps count a member's activity in a period: a member seen in a period
// still running stays in the replica, whatever evict_after says.
func TestMaintain_NoEvictionWithinARunningPeriod(t *testing.T) {
	p := loyalty.DefaultProgram()
	p.MemberLimits = []loyalty.MemberLimit{{Reward: "coffee", Period: loyalty.PeriodMonth, Max: 1}}
	cp := openClockedPair(t, p, agent.Retention{EvictAfter: 2 * day})
	ctx := context.Background()
	// now is Sunday 22 November: the month runs until 1 December.
	if _, err := cp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 1000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	cp.push(t)
	cp.pull(t)
	cp.at(5 * day)
	cp.maintain(t)
	if !cp.inReplica(t, "m1") {
		t.Fatal("m1 evicted within the month of a monthly limit they were seen in")
	}
	cp.at(9*day + time.Hour) // 1 December
	cp.maintain(t)
	if cp.inReplica(t, "m1") {
		t.Fatal("m1 still in the replica once the month is over")
	}
}

// ack records the hub's acknowledgement of the pending deltas of orders (of every one if none),
// at m1's version the replica has (the copy includes them), as a sync does.
func (ca *clockedAgent) ack(t *testing.T, orders ...string) {
	t.Helper()
	ctx := context.Background()
	out, err := ca.store.Pending(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	ack := &lsync.Ack{Balances: []lsync.Balance{{Member: "m1", Balance: 10000, Version: ca.pages}}}
	for _, o := range out {
		if len(orders) > 0 && !slices.Contains(orders, o.Delta.OrderID) {
			continue
		}
		ack.Results = append(ack.Results, lsync.Result{DeltaID: o.Delta.ID, Status: lsync.StatusApplied, Seq: o.Seq})
	}
	if err := ca.store.ApplyAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
}

func (ca *clockedAgent) maintain(t *testing.T) agent.Status {
	t.Helper()
	ctx := context.Background()
	if err := ca.Maintain(ctx); err != nil {
		t.Fatalf("maintain: %v", err)
	}
	st, err := ca.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// orderDeltas counts the deltas the store keeps of an order.
func (ca *clockedAgent) orderDeltas(t *testing.T, order string) int {
	t.Helper()
	var n int
	err := ca.store.View(context.Background(), func(tx agent.Tx) error {
		ds, err := tx.OrderDeltas(context.Background(), order)
		n = len(ds)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Acknowledged deltas go outbox.retain_acked after their order's last change, whole orders at
// a time, with their POS keys; POS answers go pos.results_retention after the call, and a retry
// after that is refused, not done again. Nothing pending ever goes.
func TestMaintain_PrunesAcknowledgedDeltasAndPOSResults(t *testing.T) {
	clock := now
	ca := newClocked(t, &clock, loyalty.DefaultProgram())
	ca.Retention = agent.Retention{RetainAcked: 30 * day, ResultsRetention: 7 * day}
	ctx := context.Background()
	earn := loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 2000, Currency: "EUR"}
	if _, err := ca.Earn(ctx, earn); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Redeem(ctx, loyalty.RedeemRequest{OrderID: "o1", MemberID: "m1", RewardID: "coffee"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Earn(ctx, loyalty.EarnRequest{OrderID: "o2", MemberID: "m1", Amount: 5000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	ca.ack(t)
	if _, err := ca.Earn(ctx, loyalty.EarnRequest{OrderID: "o3", MemberID: "m1", Amount: 1000, Currency: "EUR"}); err != nil {
		t.Fatal(err) // never acknowledged: the store is offline for good
	}
	balance := func() int64 {
		t.Helper()
		s, err := ca.Scan(ctx, agent.ScanRequest{QR: mustSign(t, ca.key, "m1")})
		if err != nil {
			t.Fatal(err)
		}
		return s.Balance
	}
	want := balance() // 10000 synced (the copy includes o1 and o2) + 10 pending

	clock = now.Add(7*day - time.Minute)
	if st := ca.maintain(t); st.PrunedResultsTotal != 0 || st.PrunedDeltasTotal != 0 {
		t.Fatalf("pruned %d results, %d deltas within every retention", st.PrunedResultsTotal, st.PrunedDeltasTotal)
	}
	if r, err := ca.Earn(ctx, earn); err != nil || r.Points != 20 {
		t.Fatalf("a retry within pos.results_retention: %+v, %v; want the first answer", r, err)
	}
	clock = now.Add(7*day + time.Minute)
	if st := ca.maintain(t); st.PrunedResultsTotal != 4 {
		t.Fatalf("pruned_results_total %d, want the 4 answers", st.PrunedResultsTotal)
	}
	_, err := ca.Earn(ctx, earn)
	if loyalty.ErrorCode(err) != loyalty.ECONFLICT || !strings.Contains(err.Error(), "already done") {
		t.Fatalf("a retry after pos.results_retention: %v; want ECONFLICT: done already, not done again", err)
	}
	other := earn
	other.Amount = 9999
	if _, err := ca.Earn(ctx, other); loyalty.ErrorCode(err) != loyalty.ECONFLICT {
		t.Fatalf("another call with the same order id: %v, want ECONFLICT", err)
	}
	// A partial refund of o2 on day 20 keeps the order 30 days from then.
	clock = now.Add(20 * day)
	ca.hear(t, loyalty.DefaultProgram())
	if _, err := ca.Reverse(ctx, loyalty.ReverseRequest{OrderID: "o2", RefundID: "rf1", Amount: 1000}); err != nil {
		t.Fatal(err)
	}
	ca.ack(t, "o2")
	want = balance()

	clock = now.Add(30*day + time.Minute)
	st := ca.maintain(t)
	if st.PrunedDeltasTotal != 2 || ca.orderDeltas(t, "o1") != 0 || ca.orderDeltas(t, "o2") != 2 || ca.orderDeltas(t, "o3") != 1 {
		t.Fatalf("pruned %d deltas; o1 keeps %d, o2 %d, o3 %d: want o1's 2 gone, the refunded o2 and the pending o3 kept",
			st.PrunedDeltasTotal, ca.orderDeltas(t, "o1"), ca.orderDeltas(t, "o2"), ca.orderDeltas(t, "o3"))
	}
	if n, err := ca.store.PendingCount(ctx); err != nil || n != 1 || st.Outbox != 1 {
		t.Fatalf("outbox %d, %v: the pending delta must stay", n, err)
	}
	if got := balance(); got != want {
		t.Errorf("balance %d after pruning, want %d: pruned deltas were in the copy", got, want)
	}
	if _, err := ca.Reverse(ctx, loyalty.ReverseRequest{OrderID: "o1"}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND ||
		!strings.Contains(err.Error(), "outbox.retain_acked") {
		t.Errorf("refund of a pruned order: %v; want ENOTFOUND naming outbox.retain_acked", err)
	}
	if r, err := ca.Reverse(ctx, loyalty.ReverseRequest{OrderID: "o2", RefundID: "rf2", Amount: 1000}); err != nil || r.Points != -10 {
		t.Errorf("refund of the kept o2: %+v, %v", r, err)
	}
	clock = now.Add(80 * day)
	ca.hear(t, loyalty.DefaultProgram())
	ca.ack(t) // everything, o3 included
	if st := ca.maintain(t); st.PrunedDeltasTotal != 2+2+1+1 || st.Outbox != 0 {
		t.Errorf("pruned_deltas_total %d, outbox %d at day 80; want every order gone", st.PrunedDeltasTotal, st.Outbox)
	}
}

// An order that spent a budget lease the store still holds may go (a connected store's lease
// lives on, renewed and refilled at every pull): what it spent goes on counting against the
// lease, so the store never spends more of it than the hub granted.
func TestMaintain_PrunedOrdersStillCountAgainstTheirLease(t *testing.T) {
	clock := now
	p := coffeeBudget()
	lease := func(granted int64) lsync.Lease {
		return lsync.Lease{ID: "L1", Budget: "coffees", Granted: granted, State: "active", TTLMillis: (90 * day).Milliseconds()}
	}
	ca := newClocked(t, &clock, p, lease(3))
	ca.Retention = agent.Retention{RetainAcked: 30 * day}
	for i := range 2 {
		clock = now.Add(time.Duration(i) * time.Minute) // ca.redeem's order id is the time
		if err := ca.redeem("coffee"); err != nil {
			t.Fatal(err)
		}
	}
	ca.ack(t)
	spent := func() int64 {
		var n int64
		err := ca.store.View(context.Background(), func(tx agent.Tx) error {
			var err error
			n, err = tx.LeaseSpent(context.Background(), "L1")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := spent(); n != 2 {
		t.Fatalf("spent %d of L1, want 2", n)
	}
	clock = now.Add(40 * day)
	ca.hear(t, p, lease(3)) // renewed, still 3
	if st := ca.maintain(t); st.PrunedDeltasTotal != 2 {
		t.Fatalf("pruned %d deltas, want the 2 redemptions", st.PrunedDeltasTotal)
	}
	if n := spent(); n != 2 {
		t.Fatalf("spent %d of L1 after pruning, want 2", n)
	}
	if err := ca.redeem("coffee"); err != nil {
		t.Fatalf("the third coffee of 3: %v", err)
	}
	clock = clock.Add(time.Minute)
	if err := ca.redeem("coffee"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("a fourth coffee on a lease of 3, two of them pruned: %v, want EBUDGET", err)
	}
	ca.ack(t)
	clock = now.Add(80 * day)
	ca.hear(t, p, lease(5)) // refilled
	if st := ca.maintain(t); st.PrunedDeltasTotal != 3 || spent() != 3 {
		t.Fatalf("pruned %d deltas, spent %d of L1; want 3 and 3", st.PrunedDeltasTotal, spent())
	}
	ca.hear(t, p) // L1 settled: no longer in the hub's list
	ca.maintain(t)
	if n := spent(); n != 0 {
		t.Errorf("spent %d of the settled L1, want its record gone", n)
	}
}

// Limits and caps count the store's own records offline: no delta they count in a period still
// running is pruned, and none that a lifetime limit counts ever is.
func TestMaintain_KeepsWhatLimitsCount(t *testing.T) {
	p := loyalty.DefaultProgram()
	p.MemberLimits = []loyalty.MemberLimit{{Reward: "coffee", Period: loyalty.PeriodMonth, Max: 1},
		{Reward: "five-off", Period: loyalty.PeriodTotal, Max: 1}}
	clock := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	start := clock
	ca := newClocked(t, &clock, p)
	ca.Retention = agent.Retention{RetainAcked: 25 * day}
	for _, r := range []string{"coffee", "five-off"} {
		if err := ca.redeem(r); err != nil {
			t.Fatal(err)
		}
	}
	ca.ack(t)
	clock = start.Add(29 * day) // 30 December: still December
	ca.hear(t, p)
	if st := ca.maintain(t); st.PrunedDeltasTotal != 0 {
		t.Fatalf("pruned %d deltas a monthly limit counts this month", st.PrunedDeltasTotal)
	}
	if err := ca.redeem("coffee"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("a second coffee in December, offline: %v, want EBUDGET", err)
	}
	clock = start.Add(60 * day)
	ca.hear(t, p)
	st := ca.maintain(t)
	if st.PrunedDeltasTotal != 1 {
		t.Fatalf("pruned %d deltas in January, want the coffee's 1 (the five-off has a lifetime limit)", st.PrunedDeltasTotal)
	}
	if err := ca.redeem("five-off"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Errorf("a second five-off (lifetime limit 1), offline: %v, want EBUDGET", err)
	}
	if err := ca.redeem("coffee"); err != nil {
		t.Errorf("a coffee in January: %v", err)
	}
}

// A scan writes when the member was seen at most once an hour, and only of a member in the
// replica.
func TestMaintain_ScanRecordsSeenMembers(t *testing.T) {
	clock := now
	ca := newClocked(t, &clock, loyalty.DefaultProgram())
	ca.Retention = agent.Retention{EvictAfter: 10 * day}
	ctx := context.Background()
	ca.maintain(t) // stamps m1, which arrived with the feed
	for i := range 3 {
		clock = now.Add(time.Duration(i*9) * day)
		if _, err := ca.Scan(ctx, agent.ScanRequest{QR: mustSign(t, ca.key, "m1")}); err != nil {
			t.Fatal(err)
		}
		ca.maintain(t)
	}
	if st := ca.maintain(t); st.Members != 1 || st.EvictedTotal != 0 {
		t.Fatalf("members %d, evicted %d: m1 was scanned every 9 days", st.Members, st.EvictedTotal)
	}
	if _, err := ca.Scan(ctx, agent.ScanRequest{QR: mustSign(t, ca.key, "m9")}); err != nil { // a stranger: nothing to record
		t.Fatal(err)
	}
	clock = now.Add(28*day + time.Minute)
	if st := ca.maintain(t); st.Members != 0 || st.EvictedTotal != 1 || st.Unsubscribing != 1 {
		t.Fatalf("10 days after the last scan: members %d, evicted %d, unsubscribing %d; want 0, 1, 1 (offline: the unsubscribe waits)",
			st.Members, st.EvictedTotal, st.Unsubscribing)
	}
}

// End to end, over the websocket: the agent's sync client unsubscribes the members maintenance
// evicted, in a version 2 session, and the hub's change feed stops carrying them to the store;
// a member the store keeps is still carried.
func TestMaintain_UnsubscribesOverTheWire(t *testing.T) {
	ctx := context.Background()
	rh := mustOpenBIHub(t)
	_, token, err := rh.Hub.CreateStore(ctx, "s1", "Store 1")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"alice", "bob"} {
		if _, err := rh.Hub.CreateMember(ctx, loyalty.Member{ID: id, HomeStore: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	// The replica's agent time and the agent follow the clock the test moves: days pass.
	var ms atomic.Int64
	ms.Store(time.Now().UnixMilli())
	sa := mustOpenSyncedPOSAgentAt(t, rh, "s1", token, func() time.Time { return time.UnixMilli(ms.Load()) })
	biWaitFor(t, "the agent's first sync", func() bool { return sa.stats(t).Members == 2 })
	if v := sa.Client.Status().Version; v != lsync.Version {
		t.Fatalf("protocol version %d, want %d", v, lsync.Version)
	}
	sa.Agent.Retention = agent.Retention{EvictAfter: 90 * day}
	if err := sa.Agent.Maintain(ctx); err != nil { // both seen from now
		t.Fatal(err)
	}
	ms.Add((80 * day).Milliseconds())
	bobQR, err := rh.Hub.MemberToken(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.Agent.Scan(ctx, agent.ScanRequest{QR: bobQR}); err != nil {
		t.Fatal(err)
	}
	ms.Add((20 * day).Milliseconds())
	if err := sa.Agent.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := sa.Agent.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Members != 1 || st.EvictedTotal != 1 || st.UnsubscribedTotal != 1 || st.Unsubscribing != 0 {
		t.Fatalf("members %d, evicted %d, unsubscribed %d, unsubscribing %d; want alice evicted and unsubscribed, bob kept",
			st.Members, st.EvictedTotal, st.UnsubscribedTotal, st.Unsubscribing)
	}
	for _, id := range []string{"alice", "bob"} {
		if _, err := rh.Hub.Earn(ctx, loyalty.EarnRequest{OrderID: "web-" + id, MemberID: id, Amount: 1000, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	// A refresh returns once the whole change feed up to now is applied.
	biWaitFor(t, "bob's change in the replica", func() bool {
		if err := sa.Client.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		var bob loyalty.Member
		err := sa.Store.View(ctx, func(tx agent.Tx) error {
			var err error
			bob, err = tx.Member(ctx, "bob")
			return err
		})
		return err == nil && bob.Balance == 10
	})
	err = sa.Store.View(ctx, func(tx agent.Tx) error {
		_, err := tx.Member(ctx, "alice")
		return err
	})
	if loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Fatalf("alice after her change at the hub: %v; want her not in the replica (the hub stopped sending her)", err)
	}
}

// TestMaintain_ClockSetWeeksAhead: the till's clock jumps two months ahead (a bad time source)
// and the next ping measures the hub's clock that far behind it. Maintenance then goes by the
// hub's clock: an order made a minute before is kept, and a POS retry of it gets its first
// answer. Before, maintenance took the device's clock: the order and its answer were deleted as
// done with, and the retry earned again.
func TestMaintain_ClockSetWeeksAhead(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	clock := now
	ta.Now = func() time.Time { return clock }
	ta.Retention = agent.Retention{RetainAcked: 30 * day, ResultsRetention: 7 * day, EvictAfter: 30 * day}
	req := loyalty.EarnRequest{OrderID: "o1", MemberID: "m1", Amount: 1000, Currency: "EUR"}
	r, err := ta.Earn(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.store.ApplyAck(ctx, &lsync.Ack{Results: []lsync.Result{{DeltaID: r.Deltas[0], Status: lsync.StatusApplied, Seq: 1}},
		Balances: []lsync.Balance{{Member: "m1", Balance: r.Balance, Version: 6}}}); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(70 * day)
	ta.sync.status = lsync.Status{Sessions: 1, ClockOffset: -70 * day, ClockOffsetMS: (-70 * day).Milliseconds()}
	if err := ta.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(time.Minute) // set right
	ta.sync.status = lsync.Status{Sessions: 1}
	again, err := ta.Earn(ctx, req)
	if err != nil || len(again.Deltas) != 1 || again.Deltas[0] != r.Deltas[0] {
		t.Fatalf("the POS retry of order o1, a minute after it: %+v, %v; want its first answer (delta %s)", again, err, r.Deltas[0])
	}
	if st := ta.MaintenanceStats(); st.PrunedDeltasTotal != 0 || st.PrunedResultsTotal != 0 || st.EvictedTotal != 0 {
		t.Errorf("maintenance under a clock two months ahead pruned %d deltas and %d answers and evicted %d members; want none",
			st.PrunedDeltasTotal, st.PrunedResultsTotal, st.EvictedTotal)
	}
}

// TestMaintain_ClockBehindThenSetRight: the till's clock is two months behind (a flat clock
// battery), the hub's sessions measure it, and the till's sales are dated right on the hub's
// clock; then the clock is set right. An order made a minute before is kept with its answer and
// its member, and a POS retry of it gets its first answer. Before, what was written went by the
// device's clock alone: the order, its answer and the member looked two months old, maintenance
// deleted them, and the retry earned again under a new delta id, which the hub applied.
func TestMaintain_ClockBehindThenSetRight(t *testing.T) {
	ctx := context.Background()
	clock := now.Add(-70 * day) // the device's clock; the true time is now
	ca := newClocked(t, &clock, loyalty.DefaultProgram())
	ca.Sync = &fakeSync{status: lsync.Status{Sessions: 1, ClockOffset: 70 * day, ClockOffsetMS: (70 * day).Milliseconds()}}
	req := loyalty.EarnRequest{OrderID: "o1", QR: mustSign(t, ca.key, "m1"), Amount: 1000, Currency: "EUR"}
	r, err := ca.Earn(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ca.ack(t)                    // applied at the hub, and in the member's copy
	clock = now.Add(time.Minute) // set right, a minute after the sale; the agent restarts
	ca = ca.restart(t, false)
	ca.Sync = &fakeSync{status: lsync.Status{Sessions: 1}} // the new session measures no offset
	ca.Retention = agent.Retention{RetainAcked: 30 * day, ResultsRetention: 7 * day, EvictAfter: 30 * day}
	if err := ca.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := ca.MaintenanceStats(); st.PrunedDeltasTotal != 0 || st.PrunedResultsTotal != 0 || st.EvictedTotal != 0 {
		t.Errorf("maintenance after the clock was set right pruned %d deltas and %d answers and evicted %d members; want none",
			st.PrunedDeltasTotal, st.PrunedResultsTotal, st.EvictedTotal)
	}
	again, err := ca.Earn(ctx, req)
	if err != nil || len(again.Deltas) != 1 || again.Deltas[0] != r.Deltas[0] {
		t.Fatalf("the POS retry of order o1, a minute after it: %+v, %v; want its first answer (delta %s)", again, err, r.Deltas[0])
	}
}
