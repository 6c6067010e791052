package sqlitedb_test

import (
	"context"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

// synchronous returns the writer connection's synchronous level as tx sees it (1 NORMAL, 2 FULL;
// -1 if it cannot be read, reported with t.Error, as it may run on another goroutine).
func synchronous(t *testing.T, tx *sqlitedb.Tx) int {
	t.Helper()
	level := -1
	if err := tx.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&level); err != nil {
		t.Error(err)
	}
	return level
}

// TestLazyUpdateWithoutGroupCommit: a Lazy Update on a database without group commit commits in
// synchronous NORMAL, and only it: a durable Update that waits for it meanwhile runs in FULL, and
// so does every Update after it.
func TestLazyUpdateWithoutGroupCommit(t *testing.T) {
	ctx := context.Background()
	schema := fstest.MapFS{"0001_init.sql": {Data: []byte("CREATE TABLE t (x TEXT);")}}
	db, err := sqlitedb.Open(ctx, filepath.Join(t.TempDir(), "lazy.db"), schema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	inLazy, release := make(chan struct{}), make(chan struct{})
	lazyDone := make(chan int, 1)
	go func() {
		var level int
		err := db.Update(sqlitedb.Lazy(ctx), func(tx *sqlitedb.Tx) error {
			level = synchronous(t, tx)
			close(inLazy)
			<-release
			_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES ('lazy')`)
			return err
		})
		if err != nil {
			t.Error(err)
		}
		lazyDone <- level
	}()
	<-inLazy
	durableDone := make(chan int, 1)
	go func() {
		var level int
		err := db.Update(ctx, func(tx *sqlitedb.Tx) error {
			level = synchronous(t, tx)
			_, err := tx.ExecContext(ctx, `INSERT INTO t (x) VALUES ('durable')`)
			return err
		})
		if err != nil {
			t.Error(err)
		}
		durableDone <- level
	}()
	close(release)
	if level := <-lazyDone; level != 1 {
		t.Errorf("the lazy Update ran in synchronous %d, want 1 (NORMAL)", level)
	}
	if level := <-durableDone; level != 2 {
		t.Errorf("the durable Update that waited for it ran in synchronous %d, want 2 (FULL)", level)
	}
	var after int
	if err := db.Update(ctx, func(tx *sqlitedb.Tx) error { after = synchronous(t, tx); return nil }); err != nil {
		t.Fatal(err)
	}
	if after != 2 {
		t.Errorf("an Update after the lazy one ran in synchronous %d, want 2 (FULL)", after)
	}
	var n int
	if err := db.R.QueryRow(`SELECT COUNT(*) FROM t`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d rows (%v), want both committed", n, err)
	}
}
