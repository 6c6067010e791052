package hub_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// The change feed must not skip a change when writers commit concurrently (PostgreSQL with
// several hub processes; on SQLite the single writer makes it so). Writers push earns to members
// at once while a store pulls page after page; when they are done and the store has caught up,
// the last copy it received of each member must be the member's final state. A version drawn by a
// transaction that commits after a pull has moved the cursor past it would be lost for good.
func TestFeed_ConcurrentWritersNeverSkipAChange(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	const members, writers, pushes = 12, 4, 30
	for i := range members {
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("x%d", i), HomeStore: "s1"}); err != nil {
			t.Fatal(err)
		}
	}
	seed := rand.Uint64()
	if s, err := strconv.ParseUint(os.Getenv("FEED_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (the same pushes again with FEED_SEED=%d; their interleaving is the machine's)", seed, seed)

	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range pushes {
				d := earn("s1", fmt.Sprintf("x%d", rng.IntN(members)), int64(100*(1+rng.IntN(9))))
				if _, err := h.Push(ctx, "s1", []loyalty.Delta{d}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); done.Store(true) }()

	last := map[string]loyalty.Member{}
	var cursor int64
	pull := func() *lsync.Changes {
		ch, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: cursor, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ch.Members {
			if m.Version <= cursor || m.Version > ch.Cursor {
				t.Fatalf("member %s version %d outside (%d, %d]", m.ID, m.Version, cursor, ch.Cursor)
			}
			if prev, ok := last[m.ID]; ok && m.Version <= prev.Version {
				t.Fatalf("member %s came again at version %d after %d", m.ID, m.Version, prev.Version)
			}
			last[m.ID] = m
		}
		cursor = ch.Cursor
		return ch
	}
	pulls := 0
	for !done.Load() {
		pull()
		pulls++
	}
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	for pull().More {
	}
	t.Logf("%d pulls while %d writers pushed %d earns", pulls, writers, writers*pushes)
	for i := range members {
		id := fmt.Sprintf("x%d", i)
		v, err := h.Member(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := v.Member
		if got := last[id]; got.Version != want.Version || got.Balance != want.Balance {
			t.Errorf("member %s: the store's last copy is version %d balance %d; the hub has version %d balance %d",
				id, got.Version, got.Balance, want.Version, want.Balance)
		}
	}
}

// A heartbeat pull with nothing new, and a lookup of a member the store holds already, read a
// snapshot and take no write transaction; the first pull, a new member and a moved flushed floor
// still write.
func TestFeed_PullsAndLookupsReadUnlessSomethingChanges(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := t0
	h.Now = func() time.Time { return now }
	var updates atomic.Int64
	h.Store = countingStore{h.Store, &updates} // jobs_test.go
	writes := func(what string, want bool, f func() error) {
		t.Helper()
		before := updates.Load()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := updates.Load() > before; got != want {
			t.Errorf("%s: took a write transaction %v, want %v", what, got, want)
		}
	}
	var cursor int64
	pull := func() error {
		ch, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: cursor, Limit: 100, Flushed: true})
		if err == nil {
			cursor = ch.Cursor
		}
		return err
	}
	writes("a flushed pull a minute after the last one", true, func() error { now = now.Add(2 * time.Minute); return pull() })
	writes("a pull with nothing new", false, pull)
	writes("another pull with nothing new", false, pull)
	codes := map[string]string{}
	for _, m := range []string{"m1", "m2"} {
		var err error
		if codes[m], err = h.MemberToken(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	subscribe := func(member string) func() error {
		return func() error {
			m, st, err := h.Subscribe(ctx, "s1", lsync.Subscribe{Member: member, QR: codes[member]})
			if err == nil && (m.ID != member || st == nil) {
				return fmt.Errorf("subscribe %s: %+v %+v", member, m, st)
			}
			return err
		}
	}
	writes("looking up m1, in s1's scope", false, subscribe("m1"))
	writes("looking up m2, not in s1's scope yet", true, subscribe("m2"))
	writes("looking up m2 again", false, subscribe("m2"))
	if _, _, err := h.Subscribe(ctx, "s1", lsync.Subscribe{Member: "nobody"}); loyalty.ErrorCode(err) != loyalty.EUNAUTHORIZED {
		t.Errorf("looking up an unknown member without a code: %v, want EUNAUTHORIZED", err)
	}
	writes("a flushed pull a minute on: the floor moves", true, func() error { now = now.Add(2 * time.Minute); return pull() })
	writes("and right after, nothing new", false, pull)
	var again *lsync.Changes
	writes("a pull from 0 (a rebuilt replica) of the program s1 was sent before", false, func() (err error) {
		again, err = h.Pull(ctx, "s1", lsync.Pull{Cursor: 0, Limit: 100, Flushed: true})
		return err
	})
	if again.Program == nil {
		t.Errorf("the pull from 0 carried no program; a rebuilt replica needs it")
	}
	if _, err := h.SetProgram(ctx, anotherProgram(t, h)); err != nil {
		t.Fatal(err)
	}
	writes("a pull from 0 after a new program, never sent to s1", true, func() error {
		_, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: 0, Limit: 100, Flushed: true})
		return err
	})
}

// A change notifies the stores it concerns, not the whole chain: a sale the stores that hold its
// member, a store's setting that store, a new member their home store; the program every store.
func TestFeed_ChangesNotifyOnlyTheStoresTheyConcern(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	type note struct {
		v      int64
		stores []string // nil: every store
	}
	var notes []note
	h.OnChange = func(v int64, stores []string) { notes = append(notes, note{v, slices.Sorted(slices.Values(stores))}) }
	told := func(what string, want []string) {
		t.Helper()
		if len(notes) != 1 {
			t.Fatalf("%s: %d notifications %+v, want 1", what, len(notes), notes)
		}
		if got := notes[0].stores; (got == nil) != (want == nil) || !slices.Equal(got, want) {
			t.Errorf("%s notified %q (nil: every store), want %q", what, got, want)
		}
		notes = nil
	}
	pushOK(t, h, "s1", earn("s1", "m1", 500))
	told("a sale of s1's member at s1", []string{"s1"})
	hold(t, h, "s2", "m1")
	notes = nil // a subscription answers with the member: nothing for others to pull
	pushOK(t, h, "s1", earn("s1", "m1", 700))
	told("a sale of a member both stores hold", []string{"s1", "s2"})
	if err := h.SetStoreZone(ctx, "s2", "Europe/Berlin"); err != nil {
		t.Fatal(err)
	}
	told("s2's time zone", []string{"s2"})
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m3", HomeStore: "s2"}); err != nil {
		t.Fatal(err)
	}
	told("a new member of s2", []string{"s2"})
	withProgram(t, h, func(*loyalty.Program) {})
	told("a new program", nil)
}

// A change another process made (an admin command, another hub process on the database) is
// noticed by the periodic read of the change version, which tells only the stores it concerns,
// as the hub's own commits do, and tells nobody when nothing changed: were every store told,
// every agent of the chain would pull after each poll while sales flow.
func TestFeed_NoticeChangesTellsOnlyTheStoresTheyConcern(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	other := hub.New(h.Store) // a second process on the same database
	other.Now, other.Logger, other.KEK = h.Now, h.Logger, h.KEK
	pushOK(t, h, "s1", earn("s1", "m1", 500))
	var notes [][]string
	h.OnChange = func(v int64, stores []string) {
		if stores != nil {
			stores = slices.Sorted(slices.Values(stores))
		}
		notes = append(notes, stores)
	}
	notice := func(what string, want ...[]string) {
		t.Helper()
		notes = nil
		if err := h.NoticeChanges(ctx); err != nil {
			t.Fatal(err)
		}
		if len(notes) != len(want) {
			t.Fatalf("%s: notifications %q, want %q", what, notes, want)
		}
		for i := range want {
			if (notes[i] == nil) != (want[i] == nil) || !slices.Equal(notes[i], want[i]) {
				t.Errorf("%s notified %q (nil: every store), want %q", what, notes[i], want[i])
			}
		}
	}
	notice("nothing new since the hub's own commit")
	if ack, err := other.Push(ctx, "s2", []loyalty.Delta{earn("s2", "m2", 900)}); err != nil || ack.Results[0].Status != lsync.StatusApplied {
		t.Fatalf("the other process's push: %+v, %v", ack, err)
	}
	notice("a sale of s2's member made by another process", []string{"s2"})
	notice("the same version again")
	if _, err := other.SetProgram(ctx, anotherProgram(t, other)); err != nil {
		t.Fatal(err)
	}
	notice("a new program from another process", nil)

	// The database went back behind what this process told (a failover to a standby that lacked
	// the newest commits): every store is told the database's version, and changes are reported
	// from there on.
	h.SetNotified(1 << 40)
	notice("a database behind what was told", nil)
	notes = nil
	pushOK(t, h, "s1", earn("s1", "m1", 500))
	if len(notes) != 1 || !slices.Equal(notes[0], []string{"s1"}) {
		t.Errorf("a sale after the database went back notified %q, want s1", notes)
	}
}

// A commit of the hub's own that lands between the poll's read of the change version and its
// comparison with what the hub told is no sign that the database went back: it must not have
// every agent of the chain pull.
func TestFeed_NoticeChangesRacingAnOwnCommit(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	pushOK(t, h, "s1", earn("s1", "m1", 500))
	var notes [][]string
	h.OnChange = func(v int64, stores []string) { notes = append(notes, stores) }
	racing := &viewThen{Store: h.Store}
	racing.then = func() { pushOK(t, h, "s1", earn("s1", "m1", 700)) }
	h.Store = racing
	if err := h.NoticeChanges(ctx); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || notes[0] == nil || !slices.Equal(notes[0], []string{"s1"}) {
		t.Errorf("notifications %q (nil: every store), want the sale's alone, to s1", notes)
	}
}

// viewThen is a Store whose first View runs then once it has read.
type viewThen struct {
	hub.Store
	then func()
}

func (s *viewThen) View(ctx context.Context, fn func(hub.Tx) error) error {
	err := s.Store.View(ctx, fn)
	if then := s.then; then != nil {
		s.then = nil
		then()
	}
	return err
}

// anotherProgram returns h's current program in another currency: a new rule version.
func anotherProgram(t *testing.T, h *hub.Hub) loyalty.Program {
	t.Helper()
	p, err := h.Program(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Currency = "USD"
	return p
}
