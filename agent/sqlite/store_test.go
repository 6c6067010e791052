package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestProgramCacheOnlyFromCommits: the cached program changes only once a transaction has
// committed. Under group commit a write transaction can be rolled back after it read the program
// (its function failed, or the shared commit did), and may have read one written before it in its
// group that is never committed.
func TestProgramCacheOnlyFromCommits(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := loyalty.DefaultProgram()
	if err := s.ApplyChanges(ctx, &lsync.Changes{Cursor: 1, Program: &p}); err != nil {
		t.Fatal(err)
	}
	if got := s.program.Load(); got == nil || got.Version != p.Version {
		t.Fatalf("after ApplyChanges the cache holds %v, want version %d", got, p.Version)
	}

	s.program.Store(nil) // as in a new process
	refused := errors.New("refused")
	err = s.Update(ctx, func(tx agent.Tx) error {
		if _, err := tx.Program(ctx); err != nil {
			return err
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatal(err)
	}
	if got := s.program.Load(); got != nil {
		t.Errorf("a rolled-back transaction filled the cache with version %d", got.Version)
	}
	if err := s.Update(ctx, func(tx agent.Tx) error { _, err := tx.Program(ctx); return err }); err != nil {
		t.Fatal(err)
	}
	if got := s.program.Load(); got == nil || got.Version != p.Version {
		t.Errorf("after a committed read the cache holds %v, want version %d", got, p.Version)
	}

}
