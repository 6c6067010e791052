package hub_test

import (
	"context"
	"flag"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// gatedStore holds the first write transaction, once armed, until released: a push in progress,
// while the test queues others behind it.
type gatedStore struct {
	hub.Store
	armed   chan struct{} // closed by the first Update it holds
	release chan struct{}
	once    *sync.Once
}

func newGatedStore(s hub.Store) gatedStore {
	return gatedStore{Store: s, armed: make(chan struct{}), release: make(chan struct{}), once: &sync.Once{}}
}

func (s gatedStore) Update(ctx context.Context, fn func(hub.Tx) error) error {
	hold := false
	s.once.Do(func() { hold = true })
	if hold {
		close(s.armed)
		<-s.release
	}
	return s.Store.Update(ctx, fn)
}

// pushGroupHub returns a hub with stores p0…p(n-1), synced, members g0…g(n-1) and shared, and hooks that
// report the pushes queued and the groups committed.
func pushGroupHub(t *testing.T, n int) (h *hub.Hub, waiting chan int, groups chan [2]int) {
	t.Helper()
	ctx := context.Background()
	h = openHub(t)
	for i := range n {
		if _, _, err := h.CreateStore(ctx, fmt.Sprintf("p%d", i), ""); err != nil {
			t.Fatal(err)
		}
		if err := pullOnce(ctx, h, fmt.Sprintf("p%d", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("g%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "shared"}); err != nil {
		t.Fatal(err)
	}
	// Rule version 2, sent to p0 only: the other stores' deltas that name it are refused.
	withProgram(t, h, func(*loyalty.Program) {})
	if err := pullOnce(ctx, h, "p0"); err != nil {
		t.Fatal(err)
	}
	waiting, groups = make(chan int, 1000), make(chan [2]int, 100)
	h.SetGroupHooks(func(w int) { waiting <- w }, func(batches, deltas int) { groups <- [2]int{batches, deltas} })
	return h, waiting, groups
}

// sharedVersion is the version of member shared in the first of acks that has it.
func sharedVersion(acks []*lsync.Ack) int64 {
	for _, a := range acks {
		for _, b := range a.Balances {
			if b.Member == "shared" {
				return b.Version
			}
		}
	}
	return 0
}

func pullOnce(ctx context.Context, h *hub.Hub, store string) error {
	_, err := h.Pull(ctx, store, lsync.Pull{Limit: 1000, Flushed: true})
	return err
}

// TestPush_GroupCommit: pushes from several stores queued while another push is being applied
// share one transaction and go in as one batch: each caller is answered once, after the commit,
// with its own results, and the balances of its members as the group left them; a duplicate of another batch of the same group is told
// duplicate with the other's sequence number; a rejected delta is rejected in its batch only; the
// change feed hears of the group's commit once, with the newest version.
func TestPush_GroupCommit(t *testing.T) {
	const n = 8
	ctx := context.Background()
	h, waiting, groups := pushGroupHub(t, n)
	var changes []int64
	var changesMu sync.Mutex
	h.OnChange = func(v int64, _ []string) {
		changesMu.Lock()
		changes = append(changes, v)
		changesMu.Unlock()
	}
	// The stores scanned their members' codes: the acks tell their balances. But p5's sale of
	// shared carries no code: shared is not p5's, and p5's ack tells no balance of theirs.
	sale := func(store, member string, amount int64) loyalty.Delta {
		return scanned(t, h, earn(store, member, amount))
	}
	batches := make([][]loyalty.Delta, n)
	for i := range n {
		store := fmt.Sprintf("p%d", i)
		batches[i] = []loyalty.Delta{sale(store, fmt.Sprintf("g%d", i), int64(100*(i+1))), sale(store, "shared", 100)}
	}
	batches[5][1].Presence = ""
	gate := newGatedStore(h.Store)
	h.Store = gate

	// The first push holds the writer.
	first := make(chan *lsync.Ack, 1)
	go func() {
		ack, err := h.Push(ctx, "s1", []loyalty.Delta{earn("s1", "m1", 1000)})
		if err != nil {
			t.Error(err)
		}
		first <- ack
	}()
	<-gate.armed
	<-waiting // the first push's own queuing

	// n batches queue behind it, one per store: two sales each, of the store's member and of
	// shared; batch 3 also pushes a delta for a member the hub does not know.
	batches[3] = append(batches[3], earn("p3", "nobody", 100))
	type answer struct {
		i   int
		ack *lsync.Ack
		err error
	}
	answers := make(chan answer, n+1)
	for i := range n {
		go func() {
			ack, err := h.Push(ctx, fmt.Sprintf("p%d", i), batches[i])
			answers <- answer{i, ack, err}
		}()
		if got := <-waiting; got != i+1 { // queued behind the i before it (the first push was taken)
			t.Fatalf("push %d queued behind %d others", i, got-1)
		}
	}
	// The same delta as batch 2's first, pushed again by p2 in a batch of its own, queued last.
	go func() {
		ack, err := h.Push(ctx, "p2", []loyalty.Delta{batches[2][0]})
		answers <- answer{n, ack, err}
	}()
	<-waiting
	close(gate.release)
	if ack := <-first; ack == nil || ack.Results[0].Status != lsync.StatusApplied {
		t.Fatalf("first push: %+v", ack)
	}

	// One group of the first push alone, then one of the n+1 queued.
	if g := <-groups; g != [2]int{1, 1} {
		t.Errorf("first group: %d batches, %d deltas; want 1, 1", g[0], g[1])
	}
	if g := <-groups; g != [2]int{n + 1, 2*n + 2} {
		t.Errorf("second group: %d batches, %d deltas; want %d, %d", g[0], g[1], n+1, 2*n+2)
	}
	got := make([]*lsync.Ack, n+1)
	for range n + 1 {
		a := <-answers
		if a.err != nil {
			t.Fatalf("push %d: %v", a.i, a.err)
		}
		if got[a.i] != nil {
			t.Fatalf("push %d answered twice", a.i)
		}
		got[a.i] = a.ack
	}
	select {
	case a := <-answers:
		t.Fatalf("an answer too many: %+v", a)
	case g := <-groups:
		t.Fatalf("a group too many: %v", g)
	default:
	}

	for i := range n {
		ack := got[i]
		if len(ack.Results) != len(batches[i]) {
			t.Fatalf("push %d: %d results for %d deltas", i, len(ack.Results), len(batches[i]))
		}
		for j, r := range ack.Results {
			want := lsync.StatusApplied
			if i == 3 && j == 2 {
				want = lsync.StatusRejected
			}
			if r.DeltaID != batches[i][j].ID || r.Status != want {
				t.Errorf("push %d result %d: %+v, want %s of %s", i, j, r, want, batches[i][j].ID)
			}
		}
		// Each batch's balances are those of its members as the group left them: its member's
		// first sale, and shared after every batch's sale, at the same version in every ack.
		want := map[string]int64{fmt.Sprintf("g%d", i): int64(i + 1), "shared": n}
		if i == 5 {
			delete(want, "shared")
		}
		for _, b := range ack.Balances {
			if w, ok := want[b.Member]; !ok || b.Balance != w || b.Version == 0 {
				t.Errorf("push %d: balance %+v, want %v", i, b, want)
			}
			if b.Member == "shared" && b.Version != sharedVersion(got) {
				t.Errorf("push %d: shared at version %d, another push's ack has %d", i, b.Version, sharedVersion(got))
			}
			delete(want, b.Member)
		}
		if len(want) > 0 {
			t.Errorf("push %d: no balance of %v", i, want)
		}
	}
	dup := got[n]
	if r := dup.Results[0]; r.Status != lsync.StatusDuplicate || r.Seq != got[2].Results[0].Seq || r.Seq == 0 {
		t.Errorf("the same delta again in the same group: %+v, want a duplicate of seq %d", r, got[2].Results[0].Seq)
	}
	if b := balance(t, h, "shared"); b != n {
		t.Errorf("shared's balance %d, want %d", b, n)
	}

	changesMu.Lock()
	defer changesMu.Unlock()
	var v int64
	err := h.Store.View(ctx, func(tx hub.Tx) error {
		var err error
		v, err = tx.CurrentVersion(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[1] != v {
		t.Errorf("OnChange heard %v; want two commits, the group's with the newest version %d", changes, v)
	}
	mustCheck(t, h)
}

// TestPush_GroupCommitFallsBack: a group whose shared transaction fails (a delta the storage
// cannot take) is applied batch by batch: the other stores' batches are applied as if alone, and
// the bad batch's poison delta is set aside while its other deltas are applied.
func TestPush_GroupCommitFallsBack(t *testing.T) {
	const n = 4
	ctx := context.Background()
	h, waiting, groups := pushGroupHub(t, n)
	batches := make([][]loyalty.Delta, n)
	for i := range n {
		store := fmt.Sprintf("p%d", i)
		batches[i] = []loyalty.Delta{earn(store, fmt.Sprintf("g%d", i), 1000), earn(store, fmt.Sprintf("g%d", i), 500)}
	}
	poison := batches[2][1]
	gate, first := holdWriter(h, failingStore{h.Store, poison.ID}, waiting)
	type answer struct {
		i   int
		ack *lsync.Ack
		err error
	}
	answers := make(chan answer, n)
	for i := range n {
		go func() {
			ack, err := h.Push(ctx, fmt.Sprintf("p%d", i), batches[i])
			answers <- answer{i, ack, err}
		}()
		<-waiting
	}
	close(gate.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range n {
		a := <-answers
		if a.err != nil {
			t.Fatalf("push %d: %v", a.i, a.err)
		}
		for j, r := range a.ack.Results {
			want := lsync.StatusApplied
			if batches[a.i][j].ID == poison.ID {
				want = lsync.StatusRejected
			}
			if r.Status != want || r.DeltaID != batches[a.i][j].ID {
				t.Errorf("push %d result %d: %+v, want %s", a.i, j, r, want)
			}
		}
	}
	if g := <-groups; g != [2]int{1, 1} {
		t.Errorf("first group %v", g)
	}
	select {
	case g := <-groups:
		t.Errorf("a group committed together: %v", g)
	default:
	}
	for i := range n {
		want := int64(15)
		if i == 2 {
			want = 10
		}
		if b := balance(t, h, fmt.Sprintf("g%d", i)); b != want {
			t.Errorf("g%d's balance %d, want %d", i, b, want)
		}
	}
	mustCheck(t, h)
}

// TestPush_ConcurrentPushesExactlyOnce: stores pushing at once to two hubs on one database (on
// PostgreSQL, two hub processes: their groups' transactions collide and are retried from the
// start), each store's batches in order as its session sends them, some sent twice: every delta is
// applied exactly once, every push is answered with a result per delta, and the balances are the
// ledger's.
func TestPush_ConcurrentPushesExactlyOnce(t *testing.T) {
	const stores, batches, size, members = 12, 6, 10, 7
	ctx := context.Background()
	h, _, groups := pushGroupHub(t, stores)
	other := hub.New(h.Store)
	other.KEK, other.Logger, other.Now = h.KEK, h.Logger, h.Now
	var mu sync.Mutex
	applied := map[string]int{}
	points := map[string]int64{}
	var wg sync.WaitGroup
	for s := range stores {
		wg.Go(func() {
			store := fmt.Sprintf("p%d", s)
			for b := range batches {
				var ds []loyalty.Delta
				for i := range size {
					ds = append(ds, earn(store, fmt.Sprintf("g%d", (s+b+i)%members), int64(100*(1+i))))
				}
				for try := range 1 + b%2 { // odd batches are sent twice
					to := h
					if (s+b+try)%2 == 1 {
						to = other
					}
					ack, err := to.Push(ctx, store, ds)
					if err != nil {
						t.Errorf("%s batch %d: %v", store, b, err)
						return
					}
					if len(ack.Results) != len(ds) {
						t.Errorf("%s batch %d: %d results for %d deltas", store, b, len(ack.Results), len(ds))
						return
					}
					mu.Lock()
					for i, r := range ack.Results {
						switch {
						case r.DeltaID != ds[i].ID:
							t.Errorf("%s batch %d result %d is of %s, not %s", store, b, i, r.DeltaID, ds[i].ID)
						case r.Status == lsync.StatusApplied:
							applied[r.DeltaID]++
							points[ds[i].Member] += ds[i].Points
						case r.Status != lsync.StatusDuplicate || try == 0:
							t.Errorf("%s batch %d try %d result %d: %+v", store, b, try, i, r)
						}
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(applied) != stores*batches*size {
		t.Errorf("%d deltas applied, want %d", len(applied), stores*batches*size)
	}
	for id, n := range applied {
		if n != 1 {
			t.Errorf("%s applied %d times", id, n)
		}
	}
	for m, p := range points {
		if b := balance(t, h, m); b != p {
			t.Errorf("%s: balance %d, the acks applied %d", m, b, p)
		}
	}
	close(groups)
	together := 0
	for g := range groups {
		if g[0] > 1 {
			together++
		}
	}
	t.Logf("%d groups of more than one batch (on one of the hubs)", together)
	mustCheck(t, h)
}

// nthGate holds the nth write transaction until released.
type nthGate struct {
	hub.Store
	n       int32
	count   *atomic.Int32
	armed   chan struct{}
	release chan struct{}
}

func (s nthGate) Update(ctx context.Context, fn func(hub.Tx) error) error {
	if s.count.Add(1) == s.n {
		close(s.armed)
		<-s.release
	}
	return s.Store.Update(ctx, fn)
}

// TestPush_GroupCommitCallerGivesUpWhileApplied: a store whose session ends while its batch is
// being applied in a group is answered only when the group is done, with what happened (its
// deltas applied), never before: the group writes the call's results after that, and a caller
// that had returned would race with it (and tell its session the push failed when it did not).
func TestPush_GroupCommitCallerGivesUpWhileApplied(t *testing.T) {
	ctx := context.Background()
	h, waiting, _ := pushGroupHub(t, 2)
	gate := nthGate{Store: h.Store, n: 2, count: &atomic.Int32{}, armed: make(chan struct{}), release: make(chan struct{})}
	first := newGatedStore(gate)
	h.Store = first

	type answer struct {
		ack *lsync.Ack
		err error
	}
	firstDone := make(chan answer, 1)
	go func() {
		ack, err := h.Push(ctx, "s1", []loyalty.Delta{earn("s1", "m1", 1000)})
		firstDone <- answer{ack, err}
	}()
	<-first.armed
	<-waiting
	gone, giveUp := context.WithCancel(ctx)
	defer giveUp()
	answers := make(chan answer, 2)
	for i, c := range []context.Context{gone, ctx} {
		go func() {
			ack, err := h.Push(c, fmt.Sprintf("p%d", i), []loyalty.Delta{earn(fmt.Sprintf("p%d", i), fmt.Sprintf("g%d", i), 500)})
			answers <- answer{ack, err}
		}()
		<-waiting
	}
	close(first.release) // the first push commits; the two queued are taken as one group ...
	if a := <-firstDone; a.err != nil {
		t.Fatal(a.err)
	}
	<-gate.armed // ... whose transaction is held here
	giveUp()
	close(gate.release)
	for range 2 {
		a := <-answers
		if a.err != nil || a.ack == nil || len(a.ack.Results) != 1 || a.ack.Results[0].Status != lsync.StatusApplied {
			t.Errorf("a push of the group answered %+v, %v; want its delta applied", a.ack, a.err)
		}
	}
	if b := balance(t, h, "g0"); b != 5 {
		t.Errorf("g0's balance %d, want 5", b)
	}
}

var groupSeed = flag.Uint64("group.seed", 0, "replay TestPush_GroupedAsOneByOne with this seed (0: a new one)")

// TestPush_GroupedAsOneByOne: random batches of several stores, pushed as one group (applied as one
// batch, applyPushes) on one hub and one push after another on a second hub in the same state,
// come out the same: each delta's status and code, every member's balance, the conflicts flagged
// and the deltas set aside. The batches mix sales of shared and own members, redemptions that
// overdraw, refunds of sales made before the group and of sales earlier in the same group, the
// same delta twice, another store's delta id reused, and a member the hub does not know. The test
// hub's program has no tiers: with tiers, a tier change the group's sales cause is worked out once,
// at the group's end, as within one store's batch (push.go, applyPushes). The seed is printed;
// replay a failure with -group.seed.
func TestPush_GroupedAsOneByOne(t *testing.T) {
	rng, _ := seeded(t, *groupSeed, "group.seed")
	const n = 5
	ctx := context.Background()
	grouped, waiting, groups := pushGroupHub(t, n)
	alone, _, _ := pushGroupHub(t, n)
	members := []string{"shared", "g0", "g1", "g2", "g3", "g4"}
	id := 0
	newID := func() string { id++; return fmt.Sprintf("%s-%04d", t.Name()[:8], id) }
	sale := func(store, member string) loyalty.Delta {
		d := biEarn(newID(), store, member, 100*(1+rng.Int64N(40)))
		d.OccurredAt = t0
		return d
	}
	refund := func(of loyalty.Delta) loyalty.Delta {
		r := biReverse(newID(), of.Store, of.Member, of.ID, -of.Points)
		r.OccurredAt = t0
		return r
	}
	// Sales before the group, on both hubs, for the group's refunds.
	before := make([]loyalty.Delta, n)
	for i := range n {
		store := fmt.Sprintf("p%d", i)
		before[i] = sale(store, members[rng.IntN(len(members))])
		for _, h := range []*hub.Hub{grouped, alone} {
			pushOK(t, h, store, before[i])
		}
		<-waiting // grouped's hooks heard of that push: queued, and committed alone
		<-groups
	}
	batches := make([][]loyalty.Delta, n)
	var everyone []loyalty.Delta
	for i := range n {
		store := fmt.Sprintf("p%d", i)
		var b []loyalty.Delta
		for range 2 + rng.IntN(6) {
			var d loyalty.Delta
			switch k := rng.IntN(12); {
			case k < 4:
				d = sale(store, members[rng.IntN(len(members))])
			case k < 6:
				d = biRedeem(newID(), store, members[rng.IntN(len(members))], "coffee", 50)
				d.OccurredAt = t0
			case k == 6:
				d = refund(before[i])
			case k == 7 && len(b) > 0 && b[0].Kind == loyalty.KindEarn:
				d = refund(b[0]) // a sale of this group
			case k == 8 && len(everyone) > 0:
				d = everyone[rng.IntN(len(everyone))] // the same again, or another store's id
				if d.Store != store {
					d.Store = store
				}
			case k == 9:
				d = sale(store, members[rng.IntN(len(members))])
				d.RuleVersion = 2 // sent to p0 only
			case k == 10:
				d = sale(store, members[rng.IntN(len(members))])
				d.RuleVersion = 99 // never published
			default:
				d = sale(store, "nobody")
			}
			b = append(b, d)
		}
		batches[i] = b
		everyone = append(everyone, b...)
	}

	stores := make([]string, n)
	for i := range n {
		stores[i] = fmt.Sprintf("p%d", i)
	}
	acks := pushAsOneGroup(t, grouped, waiting, groups, stores, batches)
	pushOK(t, alone, "s1", earn("s1", "m1", 1000))

	for i := range n {
		one := pushOK(t, alone, fmt.Sprintf("p%d", i), batches[i]...)
		for j, r := range one.Results {
			g := acks[i].Results[j]
			if g.DeltaID != r.DeltaID || g.Status != r.Status || g.Code != r.Code || (g.Status == lsync.StatusApplied) != (g.Seq > 0) {
				t.Errorf("push %d delta %d (%s %s of %s): grouped %+v, alone %+v", i, j, batches[i][j].Kind, batches[i][j].ID,
					batches[i][j].Member, g, r)
			}
		}
	}
	for _, m := range append(members, "m1") {
		if g, a := balance(t, grouped, m), balance(t, alone, m); g != a {
			t.Errorf("%s: balance %d grouped, %d alone", m, g, a)
		}
	}
	summary := func(h *hub.Hub) (conflicts, rejections []string) {
		cs, err := h.Conflicts(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			conflicts = append(conflicts, fmt.Sprint(c.Kind, c.Member, c.Store, c.Deltas, c.Amount))
		}
		rs, err := h.Rejections(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			rejections = append(rejections, fmt.Sprint(r.Delta.ID, r.Store, r.Code))
		}
		slices.Sort(conflicts)
		slices.Sort(rejections)
		return conflicts, rejections
	}
	gc, gr := summary(grouped)
	ac, ar := summary(alone)
	if !slices.Equal(gc, ac) || !slices.Equal(gr, ar) {
		t.Errorf("grouped: conflicts %v, rejections %v\nalone: conflicts %v, rejections %v", gc, gr, ac, ar)
	}
	mustCheck(t, grouped)
	mustCheck(t, alone)
}

// holdWriter puts h on a gate over store and starts a push of s1 that holds the writer until
// the gate is released; it returns once that push is queued (waiting is h's queued hook), with
// the gate and the push's outcome.
func holdWriter(h *hub.Hub, store hub.Store, waiting chan int) (gatedStore, chan error) {
	gate := newGatedStore(store)
	h.Store = gate
	first := make(chan error, 1)
	go func() {
		_, err := h.Push(context.Background(), "s1", []loyalty.Delta{earn("s1", "m1", 1000)})
		first <- err
	}()
	<-gate.armed
	<-waiting
	return gate, first
}

// pushAsOneGroup pushes batches[i] as stores[i], every push queued behind one that holds the
// writer, so that they go in as one group; it returns their acks. waiting and groups are h's
// group hooks (pushGroupHub), with nothing unread in them.
func pushAsOneGroup(t *testing.T, h *hub.Hub, waiting chan int, groups chan [2]int, stores []string, batches [][]loyalty.Delta) []*lsync.Ack {
	t.Helper()
	ctx := context.Background()
	gate, first := holdWriter(h, h.Store, waiting)
	acks := make([]*lsync.Ack, len(stores))
	errs := make(chan error, len(stores))
	for i := range stores {
		go func() {
			var err error
			acks[i], err = h.Push(ctx, stores[i], batches[i])
			errs <- err
		}()
		<-waiting
	}
	close(gate.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range stores {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	h.Store = gate.Store
	<-groups // the first push
	if g := <-groups; g[0] != len(stores) {
		t.Fatalf("the batches went in %d calls of a group, want %d", g[0], len(stores))
	}
	return acks
}

// TestPush_GroupedSaleKeepsToItself: a store's sale without a member (counted apart from the
// ledger) that bears the id of another store's delta in the same group is told applied with no
// ledger position and no balance, as alone: nothing of the other store's delta reaches it.
func TestPush_GroupedSaleKeepsToItself(t *testing.T) {
	h, waiting, groups := pushGroupHub(t, 2)
	e := biEarn("same-id-0001", "p0", "g0", 1000)
	e.OccurredAt = t0
	sale := loyalty.Delta{ID: e.ID, Store: "p1", Kind: loyalty.KindSale, Amount: 1250, Currency: "EUR", OccurredAt: t0, OrderID: "N-1"}
	acks := pushAsOneGroup(t, h, waiting, groups, []string{"p0", "p1"}, [][]loyalty.Delta{{e}, {sale}})
	if r := acks[0].Results[0]; r.Status != lsync.StatusApplied || r.Seq == 0 {
		t.Fatalf("p0's earn: %+v, want applied with its ledger position", r)
	}
	if r := acks[1].Results[0]; r.Status != lsync.StatusApplied || r.Seq != 0 || len(acks[1].Balances) != 0 {
		t.Errorf("p1's sale: %+v, balances %+v; want applied with no ledger position and no balance", r, acks[1].Balances)
	}
}

// TestSessions_ClaimsShareATransaction: sessions claimed while another claim is held before its
// transaction share one transaction; each is answered after it, with its session row the hub's and
// its store written connected in the database. A claim of an unknown store in the group fails the
// shared transaction: it alone is refused (ENOTFOUND), and the others, run again each alone, are
// claimed. Releases queued together share one transaction too, and write every store
// disconnected.
func TestSessions_ClaimsShareATransaction(t *testing.T) {
	const n = 6
	ctx := context.Background()
	h := openHub(t)
	for i := range n {
		createStore(t, h, fmt.Sprintf("c%d", i))
	}
	waiting, groups := make(chan int, 100), make(chan int, 100)
	h.SetBookkeepingHooks(func(w int) { waiting <- w }, func(calls, _ int) { groups <- calls })

	// together claims or releases every session of ss, each queued behind a claim of s1's held
	// before its transaction, and returns their errors.
	together := func(ss []testSession, do func(testSession) error) []error {
		t.Helper()
		gate := newGatedStore(h.Store)
		h.Store = gate
		defer func() { h.Store = gate.Store }()
		first := make(chan error, 1)
		held := newTestSession(t, "s1", "10.0.0.9:9", t0)
		go func() { first <- h.Claim(ctx, held.Session) }()
		receive(t, gate.armed, "s1's claim to reach its transaction")
		receive(t, waiting, "s1's claim to be queued")
		errs := make([]error, len(ss))
		var wg sync.WaitGroup
		for i, s := range ss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = do(s)
			}()
			if got := receive(t, waiting, "a call to be queued"); got != i+1 {
				t.Fatalf("call %d queued behind %d others", i, got-1)
			}
		}
		close(gate.release)
		if err := receive(t, first, "s1's claim"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if g := receive(t, groups, "s1's claim to commit"); g != 1 {
			t.Fatalf("s1's claim committed in a group of %d, want alone", g)
		}
		return errs
	}
	// connected reads whether the database has store connected.
	connected := func(store string) bool {
		t.Helper()
		var s hub.StoreInfo
		if err := h.Store.View(ctx, func(tx hub.Tx) error {
			var err error
			s, err = tx.StoreInfo(ctx, store)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return s.Health.Connected
	}
	claimed := func(what string, s testSession) {
		t.Helper()
		if row := sessionRow(t, h, s.Store); row.Owner != h.ID || row.Remote != s.Remote {
			t.Errorf("%s: %s's session row %+v, want owner %s from %s", what, s.Store, row, h.ID, s.Remote)
		}
		if !connected(s.Store) {
			t.Errorf("%s: %s is not connected in the database", what, s.Store)
		}
	}

	sessions := make([]testSession, n)
	for i := range sessions {
		sessions[i] = newTestSession(t, fmt.Sprintf("c%d", i), fmt.Sprintf("10.0.0.%d:1", i), t0)
	}
	for i, err := range together(sessions, func(s testSession) error { return h.Claim(ctx, s.Session) }) {
		if err != nil {
			t.Fatalf("claim of c%d: %v", i, err)
		}
	}
	if g := receive(t, groups, "the claims to commit"); g != n {
		t.Fatalf("the claims committed in a group of %d, want all %d in one", g, n)
	}
	for _, s := range sessions {
		claimed("after the grouped claims", s)
	}

	together(sessions, func(s testSession) error { h.Release(ctx, s.Session); return nil })
	if g := receive(t, groups, "the releases to commit"); g != n {
		t.Fatalf("the releases committed in a group of %d, want all %d in one", g, n)
	}
	for _, s := range sessions {
		if connected(s.Store) {
			t.Errorf("%s is still connected in the database after its release", s.Store)
		}
	}

	// Claimed again, with an unknown store among them: the group fails, each runs alone.
	again := []testSession{newTestSession(t, "c0", "10.0.1.0:1", t0), newTestSession(t, "c1", "10.0.1.1:1", t0),
		newTestSession(t, "nowhere", "10.0.0.66:1", t0), newTestSession(t, "c2", "10.0.1.2:1", t0)}
	for i, err := range together(again, func(s testSession) error { return h.Claim(ctx, s.Session) }) {
		switch store := again[i].Store; {
		case store == "nowhere" && loyalty.ErrorCode(err) != loyalty.ENOTFOUND:
			t.Errorf("claim of an unknown store: %v, want ENOTFOUND", err)
		case store != "nowhere" && err != nil:
			t.Errorf("claim of %s beside an unknown store's: %v", store, err)
		}
	}
	select { // a group's commit is told before its callers are answered
	case g := <-groups:
		t.Fatalf("a group of %d committed beside an unknown store's claim, want the shared transaction failed", g)
	default:
	}
	for _, s := range again {
		if s.Store != "nowhere" {
			claimed("beside an unknown store's claim", s)
		}
	}
}

// receive returns what ch gives, failing the test if nothing comes within biTimeout (a safety
// net: nothing waits for it to pass).
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(biTimeout):
		t.Fatalf("waited %s for %s", biTimeout, what)
		panic("unreachable")
	}
}

// TestGroupStoreReadsAreTheirReads: what a group of pushes reads at once of its stores
// (Tx.StoresInfo, Tx.ProgramsSentTo) is what the reads of each store return (Tx.StoreInfo,
// Tx.ProgramsSent), on either backend: for a store sent two rule versions, one sent one, one sent
// none, and one that does not exist; and Tx.SubscribeAll puts each store's members in its scope
// at their versions, once, and no member that does not exist.
func TestGroupStoreReadsAreTheirReads(t *testing.T) {
	ctx := context.Background()
	h := openHub(t)
	if _, _, err := h.CreateStore(ctx, "s3", ""); err != nil {
		t.Fatal(err)
	}
	withProgram(t, h, func(p *loyalty.Program) { p.Currency = "USD" })
	if _, err := h.Pull(ctx, "s1", lsync.Pull{Limit: 1000}); err != nil { // s1 is sent version 2; s2 has version 1 only
		t.Fatal(err)
	}
	ids := []string{"s1", "s2", "s3", "nobody"}
	err := h.Store.View(ctx, func(tx hub.Tx) error {
		infos, err := tx.StoresInfo(ctx, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			want, err := tx.StoreInfo(ctx, id)
			got, ok := infos[id]
			switch {
			case loyalty.ErrorCode(err) == loyalty.ENOTFOUND && ok:
				t.Errorf("%s does not exist, but read together: %+v", id, got)
			case err == nil && !reflect.DeepEqual(got, want):
				t.Errorf("%s read together: %+v; alone: %+v", id, got, want)
			case err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND:
				return err
			}
		}
		if len(infos) != 3 {
			t.Errorf("read together: %d stores, want 3", len(infos))
		}
		counts := map[string]int{}
		for _, from := range []int64{0, 1, 2, 3} {
			for _, limit := range []int{-1, 1, 2} { // -1: no limit
				sent, err := tx.ProgramsSentTo(ctx, ids, from, limit)
				if err != nil {
					return err
				}
				for _, id := range ids {
					want, err := tx.ProgramsSent(ctx, id, from, limit)
					if err != nil {
						return err
					}
					if !reflect.DeepEqual(sent[id], want) {
						t.Errorf("%s from %d, %d at most, read together: %+v; alone: %+v", id, from, limit, sent[id], want)
					}
					counts[id] = max(counts[id], len(want))
				}
			}
		}
		if counts["s1"] != 2 || counts["s2"] != 1 || counts["s3"] != 0 {
			t.Errorf("rule versions sent: %v; want 2 to s1, 1 to s2, none to s3", counts)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	err = h.Store.Update(ctx, func(tx hub.Tx) error {
		return tx.SubscribeAll(ctx, map[string][]string{"s3": {"m2", "m1", "nobody", "m1"}, "s2": {"m1"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = h.Store.View(ctx, func(tx hub.Tx) error {
		for _, s := range []struct {
			store, member string
			in            bool
		}{{"s3", "m1", true}, {"s3", "m2", true}, {"s2", "m1", true}, {"s3", "nobody", false}, {"s1", "m2", false}} {
			in, err := tx.Subscribed(ctx, s.store, s.member)
			if err != nil {
				return err
			}
			if in != s.in {
				t.Errorf("%s in %s's scope: %v, want %v", s.member, s.store, in, s.in)
			}
		}
		ms, err := tx.MembersSince(ctx, "s3", 0, 10)
		if err != nil {
			return err
		}
		if len(ms) != 2 {
			t.Fatalf("s3's scope: %+v; want m1 and m2", ms)
		}
		for _, m := range ms {
			want, err := tx.Member(ctx, m.ID)
			if err != nil {
				return err
			}
			if m.Version != want.Version {
				t.Errorf("%s in s3's scope at version %d; the member's is %d", m.ID, m.Version, want.Version)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
