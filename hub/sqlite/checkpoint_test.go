package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
