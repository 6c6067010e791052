package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// TestCheckpointEmptiesTheWAL: after Checkpoint the WAL file is empty, and what was written before
// it is read back from the database file.
func TestCheckpointEmptiesTheWAL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(ctx, func(tx hub.Tx) error {
		for i := range 200 {
			v, err := tx.NextVersion(ctx)
			if err != nil {
				return err
			}
			if err := tx.InsertMember(ctx, loyalty.Member{ID: fmt.Sprintf("m%03d", i), Version: v}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-wal"); err != nil {
		t.Fatal(err)
	} else if fi.Size() == 0 {
		t.Fatal("the WAL is empty after a write; want pages in it")
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-wal"); err != nil {
		t.Fatal(err)
	} else if fi.Size() != 0 {
		t.Fatalf("the WAL after Checkpoint: %d bytes; want none", fi.Size())
	}
	err = s.View(ctx, func(tx hub.Tx) error {
		ms, err := tx.Members(ctx, "", 1000)
		if err == nil && len(ms) != 200 {
			t.Errorf("%d members in the database file, want 200", len(ms))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointUnderAReader: a reader that still uses the WAL keeps Checkpoint from emptying it,
// and Checkpoint says so; once the reader is gone, it empties the WAL. (With a context that ends,
// as the hub's erasure gives it, the driver interrupts SQLite's wait for the reader: this test
// returns in a tenth of a second, not after the connection's busy timeout of 10 s.)
func TestCheckpointUnderAReader(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	insert := func(id string) {
		t.Helper()
		err := s.Update(ctx, func(tx hub.Tx) error {
			v, err := tx.NextVersion(ctx)
			if err != nil {
				return err
			}
			return tx.InsertMember(ctx, loyalty.Member{ID: id, Version: v})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	insert("m1")
	reading, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- s.View(ctx, func(tx hub.Tx) error {
			_, err := tx.Member(ctx, "m1") // a snapshot that reads the WAL's pages
			close(reading)
			<-release
			return err
		})
	}()
	<-reading
	insert("m2") // pages the reader's snapshot does not have: the WAL cannot start over under it
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = s.Checkpoint(short)
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatal("Checkpoint emptied the WAL under a reader that still used it")
	}
	if err := s.Checkpoint(ctx); err != nil { // the reader is gone
		t.Fatal(err)
	}
}
