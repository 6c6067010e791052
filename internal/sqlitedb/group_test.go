package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
)

// These tests never wait for time to pass: a blocking first function holds the writer (hold),
// and the queued hook says when a caller is in the queue behind it. Those queued join the held
// function's transaction once it returns, so the groups they make are known in advance.

var groupSchema = fstest.MapFS{"0001_init.sql": {Data: []byte(`CREATE TABLE t (caller TEXT PRIMARY KEY);
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
`)}}

type groupTest struct {
	t      *testing.T
	db     *DB
	queued chan struct{}

	mu       sync.Mutex
	commits  []int       // the size of every group committed (or attempted), in order
	atCommit func(n int) // runs on the writer just before a commit, if set
}

func newGroupTest(t *testing.T) *groupTest {
	t.Helper()
	db, err := OpenWith(context.Background(), filepath.Join(t.TempDir(), "g.db"), groupSchema, Options{GroupCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	gt := &groupTest{t: t, db: db, queued: make(chan struct{}, 1000)}
	db.group.test.queued = func() { gt.queued <- struct{}{} }
	db.group.test.commit = func(n int) {
		gt.mu.Lock()
		gt.commits = append(gt.commits, n)
		at := gt.atCommit
		gt.mu.Unlock()
		if at != nil {
			at(n)
		}
	}
	return gt
}

// waitQueued returns once n more callers are in the queue.
func (gt *groupTest) waitQueued(n int) {
	for range n {
		<-gt.queued
	}
}

// hold starts an Update whose function blocks until release is called, then inserts 'hold' and
// returns result; hold returns once that function runs: every Update from then on queues
// behind it. done has the Update's error.
func (gt *groupTest) hold(result error) (release func(), done <-chan error) {
	running, unblock := make(chan struct{}), make(chan struct{})
	res := make(chan error, 1)
	go func() {
		res <- gt.db.Update(context.Background(), func(tx *Tx) error {
			close(running)
			<-unblock
			if _, err := tx.ExecContext(context.Background(), `INSERT INTO t (caller) VALUES ('hold')`); err != nil {
				return err
			}
			return result
		})
	}()
	gt.waitQueued(1)
	<-running
	return func() { close(unblock) }, res
}

// start runs Update(fn) in a goroutine and returns once it is queued. The result channel
// carries its error, or a panicked error if fn panicked.
func (gt *groupTest) start(ctx context.Context, fn func(*Tx) error) <-chan error {
	res := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				res <- fmt.Errorf("panicked: %v", p)
			}
		}()
		res <- gt.db.Update(ctx, fn)
	}()
	gt.waitQueued(1)
	return res
}

func (gt *groupTest) commitSizes() []int {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	return slices.Clone(gt.commits)
}

// has reports whether caller's row is committed, as a new reader sees it.
func (gt *groupTest) has(caller string) bool {
	gt.t.Helper()
	var n int
	if err := gt.db.R.QueryRow(`SELECT COUNT(*) FROM t WHERE caller = ?`, caller).Scan(&n); err != nil {
		gt.t.Fatal(err)
	}
	return n == 1
}

func insert(caller string) func(*Tx) error {
	return func(tx *Tx) error {
		_, err := tx.ExecContext(context.Background(), `INSERT INTO t (caller) VALUES (?)`, caller)
		return err
	}
}

func TestGroupCommit_ConcurrentCallersShareOneCommit(t *testing.T) {
	gt := newGroupTest(t)
	release, held := gt.hold(nil)
	const n = 8
	var results []<-chan error
	for i := range n {
		results = append(results, gt.start(context.Background(), insert(fmt.Sprint("c", i))))
	}
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for i, res := range results {
		if err := <-res; err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if got := gt.commitSizes(); !slices.Equal(got, []int{1 + n}) {
		t.Errorf("commits of %v callers, want [%d]: the held caller and the %d queued behind it share one", got, 1+n, n)
	}
	for i := range n {
		if !gt.has(fmt.Sprint("c", i)) {
			t.Errorf("c%d is not committed", i)
		}
	}
}

func TestGroupCommit_FailingFunctionRollsBackAlone(t *testing.T) {
	gt := newGroupTest(t)
	// The first function of a group fails: its transaction is rolled back, and the calls queued
	// behind it make the next group. There b fails and d panics: each is rolled back alone.
	errHold := errors.New("hold refuses")
	release, held := gt.hold(errHold)
	var hooks []string // AfterCommit functions that ran, on the writer
	hook := func(tx *Tx, name string) { tx.AfterCommit(func() { hooks = append(hooks, name) }) }
	errB := errors.New("b refuses")
	a := gt.start(context.Background(), func(tx *Tx) error {
		hook(tx, "a")
		return insert("a")(tx)
	})
	b := gt.start(context.Background(), func(tx *Tx) error {
		hook(tx, "b")
		if err := insert("b")(tx); err != nil {
			return err
		}
		return errB
	})
	d := gt.start(context.Background(), func(tx *Tx) error {
		hook(tx, "d")
		if err := insert("d")(tx); err != nil {
			return err
		}
		panic("d breaks")
	})
	var seen []string
	c := gt.start(context.Background(), func(tx *Tx) error {
		hook(tx, "c")
		// One transaction: a's row, not committed yet, is there; hold's, b's and d's are gone.
		rows, err := tx.QueryContext(context.Background(), `SELECT caller FROM t ORDER BY caller`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			seen = append(seen, s)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return insert("c")(tx)
	})
	release()
	if err := <-held; !errors.Is(err, errHold) {
		t.Errorf("hold: %v, want its own error", err)
	}
	if err := <-a; err != nil {
		t.Errorf("a: %v", err)
	}
	if err := <-b; !errors.Is(err, errB) {
		t.Errorf("b: %v, want its own error", err)
	}
	if err := <-d; err == nil || err.Error() != "panicked: d breaks" {
		t.Errorf("d: %v, want its panic in its caller", err)
	}
	if err := <-c; err != nil {
		t.Errorf("c: %v", err)
	}
	if !slices.Equal(seen, []string{"a"}) {
		t.Errorf("c saw %v in the transaction, want [a]", seen)
	}
	if got := gt.commitSizes(); !slices.Equal(got, []int{4}) {
		t.Errorf("commits of %v callers, want [4]: hold's failure rolled its own transaction back", got)
	}
	for caller, want := range map[string]bool{"hold": false, "a": true, "b": false, "c": true, "d": false} {
		if gt.has(caller) != want {
			t.Errorf("%s committed: %v, want %v", caller, !want, want)
		}
	}
	if !slices.Equal(hooks, []string{"a", "c"}) {
		t.Errorf("AfterCommit ran for %v, want [a c]: those of rolled-back parts never run", hooks)
	}
}

func TestGroupCommit_CommitFailureReachesEveryCaller(t *testing.T) {
	gt := newGroupTest(t)
	release, held := gt.hold(nil)
	var hooks atomic.Int32
	a := gt.start(context.Background(), func(tx *Tx) error {
		tx.AfterCommit(func() { hooks.Add(1) })
		return insert("a")(tx)
	})
	// A child without its parent: the deferred foreign key fails the commit, not the statement.
	orphan := gt.start(context.Background(), func(tx *Tx) error {
		tx.AfterCommit(func() { hooks.Add(1) })
		_, err := tx.ExecContext(context.Background(), `INSERT INTO child (id, parent) VALUES (1, 42)`)
		return err
	})
	refuses := gt.start(context.Background(), func(tx *Tx) error { return errors.New("refused") })
	c := gt.start(context.Background(), insert("c"))
	release()
	for name, res := range map[string]<-chan error{"hold": held, "a": a, "orphan": orphan, "refuses": refuses, "c": c} {
		if err := <-res; err == nil || !strings.HasPrefix(err.Error(), "commit: ") || !strings.Contains(err.Error(), "FOREIGN KEY constraint failed") {
			t.Errorf("%s: %v, want the commit's error", name, err)
		}
	}
	if got := gt.commitSizes(); !slices.Equal(got, []int{5}) {
		t.Errorf("commits of %v callers, want [5]", got)
	}
	if gt.has("hold") || gt.has("a") || gt.has("c") {
		t.Error("a part of a failed commit is in the database")
	}
	if n := hooks.Load(); n != 0 {
		t.Errorf("%d AfterCommit functions ran after a failed commit", n)
	}
	// The writer's connection is left clean: the next caller commits.
	if err := gt.db.Update(context.Background(), insert("after")); err != nil || !gt.has("after") {
		t.Errorf("after a failed commit: %v", err)
	}
}

// TestGroupCommit_LostTransactionFailsTheGroup: a function that ends the shared transaction
// behind the writer's back (here a bare ROLLBACK; in real life SQLite rolling back after some
// errors, which the function then ignores) fails the whole group; nobody is told it committed,
// and the caller queued after it runs in a transaction of its own.
func TestGroupCommit_LostTransactionFailsTheGroup(t *testing.T) {
	gt := newGroupTest(t)
	release, held := gt.hold(nil)
	a := gt.start(context.Background(), insert("a"))
	rogue := gt.start(context.Background(), func(tx *Tx) error {
		_, err := tx.ExecContext(context.Background(), `ROLLBACK`)
		return err
	})
	c := gt.start(context.Background(), insert("c"))
	release()
	for name, res := range map[string]<-chan error{"hold": held, "a": a, "rogue": rogue} {
		if err := <-res; err == nil || !strings.HasPrefix(err.Error(), "group commit: ") {
			t.Errorf("%s: %v, want the group's failure", name, err)
		}
	}
	if err := <-c; err != nil || !gt.has("c") {
		t.Errorf("c, after the lost group: %v", err)
	}
	if gt.has("hold") || gt.has("a") {
		t.Error("a part of a lost transaction is in the database")
	}
	if got := gt.commitSizes(); !slices.Equal(got, []int{1}) {
		t.Errorf("commits of %v callers, want [1]: c alone", got)
	}
}

// unseenCancel is a context that cancel ends in a way its caller's select cannot see (Done never
// closes), so that only the writer notices it, as when it takes a call whose context has just
// ended.
type unseenCancel struct {
	context.Context
	cancelled atomic.Bool
}

func (c *unseenCancel) cancel() { c.cancelled.Store(true) }

func (c *unseenCancel) Err() error {
	if c.cancelled.Load() {
		return context.Canceled
	}
	return nil
}

func TestGroupCommit_CancelledCallerNeverRuns(t *testing.T) {
	gt := newGroupTest(t)
	release, held := gt.hold(nil)
	var ran atomic.Int32
	never := func(tx *Tx) error {
		ran.Add(1)
		return insert("never")(tx)
	}
	// Cancelled while queued: the caller leaves at once.
	ctx, cancel := context.WithCancel(context.Background())
	gone := gt.start(ctx, never)
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	// Cancelled when the writer takes it: dropped there.
	unseen := &unseenCancel{Context: context.Background()}
	dropped := gt.start(unseen, never)
	unseen.cancel()
	after := gt.start(context.Background(), insert("after"))
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := <-dropped; !errors.Is(err, context.Canceled) {
		t.Errorf("caller cancelled before its turn: %v, want context.Canceled", err)
	}
	if err := <-after; err != nil {
		t.Errorf("the caller after them: %v", err)
	}
	if n := ran.Load(); n != 0 || gt.has("never") {
		t.Errorf("a cancelled caller's function ran %d times", n)
	}
	if got := gt.commitSizes(); !slices.Equal(got, []int{2}) {
		t.Errorf("commits of %v callers, want [2]: the cancelled callers are not in the group", got)
	}
}

func TestGroupCommit_NobodyAnsweredBeforeCommit(t *testing.T) {
	gt := newGroupTest(t)
	release, held := gt.hold(nil)
	const n = 6
	answered := make(chan string, n)
	var wg sync.WaitGroup
	var hookRan [n]atomic.Bool
	for i := range n {
		caller := fmt.Sprint("c", i)
		res := gt.start(context.Background(), func(tx *Tx) error {
			tx.AfterCommit(func() { hookRan[i].Store(true) })
			return insert(caller)(tx)
		})
		wg.Go(func() {
			if err := <-res; err != nil {
				t.Errorf("%s: %v", caller, err)
				return
			}
			// Answered: the row must be committed, as any reader sees it, and its
			// AfterCommit function done.
			if !gt.has(caller) {
				t.Errorf("%s was answered before its commit", caller)
			}
			if !hookRan[i].Load() {
				t.Errorf("%s was answered before its AfterCommit function ran", caller)
			}
			answered <- caller
		})
	}
	gt.mu.Lock()
	gt.atCommit = func(size int) {
		if size == 1+n && len(answered) > 0 {
			t.Errorf("%d callers answered before the commit of their group", len(answered))
		}
	}
	gt.mu.Unlock()
	release()
	<-held
	wg.Wait()
	if len(answered) != n {
		t.Errorf("%d of %d callers answered", len(answered), n)
	}
}

func TestGroupCommit_CloseAnswersQueuedCallers(t *testing.T) {
	gt := newGroupTest(t)
	release, held := gt.hold(nil)
	queued := gt.start(context.Background(), insert("queued"))
	closed := make(chan error, 1)
	go func() { closed <- gt.db.Close() }()
	release()
	if err := <-held; err != nil {
		t.Error(err)
	}
	if err := <-queued; err != nil {
		t.Errorf("a caller queued before Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := gt.db.Update(context.Background(), insert("late")); !errors.Is(err, errClosed) {
		t.Errorf("Update after Close: %v", err)
	}
}

// TestAfterCommit_WithoutGroupCommit: the hook runs after a commit, not after a rollback, on the
// path the hub uses too.
func TestAfterCommit_WithoutGroupCommit(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "h.db"), groupSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var committed bool
	err = db.Update(context.Background(), func(tx *Tx) error {
		tx.AfterCommit(func() {
			var n int
			committed = db.R.QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n) == nil && n == 1
		})
		return insert("x")(tx)
	})
	if err != nil || !committed {
		t.Errorf("the hook ran with the row committed: %v (%v)", committed, err)
	}
	err = db.Update(context.Background(), func(tx *Tx) error {
		tx.AfterCommit(func() { t.Error("the hook of a rolled-back transaction ran") })
		return sql.ErrNoRows
	})
	if !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("rolled back: %v", err)
	}
}

// Lazy calls commit in groups of their own, in synchronous NORMAL; durable calls never share a
// group with them and always commit in FULL. A group takes the calls of its kind past those of the
// other kind, which keep their order and go next.
func TestGroupCommit_LazyCallsCommitApart(t *testing.T) {
	gt := newGroupTest(t)
	release, held := gt.hold(nil) // durable
	levels := map[string]int{}
	var mu sync.Mutex
	call := func(name string, lazy bool) <-chan error {
		ctx := context.Background()
		if lazy {
			ctx = Lazy(ctx)
		}
		return gt.start(ctx, func(tx *Tx) error {
			var level int // not a cached statement: SQLite reads the level when it prepares one
			if err := tx.Tx.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&level); err != nil {
				return err
			}
			mu.Lock()
			levels[name] = level
			mu.Unlock()
			return insert(name)(tx)
		})
	}
	results := []<-chan error{call("l1", true), call("l2", true), call("d1", false), call("d2", false), call("l3", true)}
	release()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for i, res := range results {
		if err := <-res; err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if got := gt.commitSizes(); !slices.Equal(got, []int{3, 3}) {
		t.Errorf("commits of %v callers, want [3 3]: hold (durable) with d1+d2, then l1+l2+l3", got)
	}
	const normal, full = 1, 2
	want := map[string]int{"l1": normal, "l2": normal, "d1": full, "d2": full, "l3": normal}
	for name, level := range want {
		if levels[name] != level {
			t.Errorf("%s ran in synchronous %d, want %d", name, levels[name], level)
		}
		if !gt.has(name) {
			t.Errorf("%s is not committed", name)
		}
	}
	// Back to durable: a caller alone after the lazy group commits in FULL.
	var level int
	if err := gt.db.Update(context.Background(), func(tx *Tx) error {
		return tx.Tx.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&level)
	}); err != nil || level != full {
		t.Errorf("a durable call after a lazy group: synchronous %d (%v), want %d", level, err, full)
	}
}
