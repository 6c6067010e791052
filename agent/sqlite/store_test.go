package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/qr"
	"github.com/loyalty-edge-sync/loyalty/qr/qrtest"
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

// TestKeysCacheFollowsChanges: the signing keys are read once and kept; a pull that brings a new
// key or a key's revocation replaces them once committed, and a read in a transaction that rolls
// back leaves the cache empty.
func TestKeysCacheFollowsChanges(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := func() []qr.PublicKey {
		t.Helper()
		var ks []qr.PublicKey
		if err := s.View(ctx, func(tx agent.Tx) error {
			var err error
			ks, err = tx.Keys(ctx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(ks, func(a, b qr.PublicKey) int { return strings.Compare(a.ID, b.ID) })
		return ks
	}
	a, b := qrtest.Key(t), qrtest.Key(t)
	if err := s.ApplyChanges(ctx, &lsync.Changes{Cursor: 1, Keys: []qr.PublicKey{a.Public()}}); err != nil {
		t.Fatal(err)
	}
	s.keys.Store(nil) // as in a new process

	refused := errors.New("refused")
	if err := s.Update(ctx, func(tx agent.Tx) error {
		if _, err := tx.Keys(ctx); err != nil {
			return err
		}
		return refused
	}); !errors.Is(err, refused) {
		t.Fatal(err)
	}
	if got := s.keys.Load(); got != nil {
		t.Errorf("a rolled-back transaction filled the cache with %d keys", len(*got))
	}
	if ks := keys(); len(ks) != 1 || ks[0].ID != a.ID || !ks[0].NotAfter.IsZero() {
		t.Fatalf("keys: %+v, want %s alone, current", ks, a.ID)
	}
	if s.keys.Load() == nil {
		t.Fatal("a committed read left the cache empty")
	}

	// The hub revokes a and issues b.
	revoked := a.Public()
	revoked.NotAfter = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if err := s.ApplyChanges(ctx, &lsync.Changes{Cursor: 2, Keys: []qr.PublicKey{revoked, b.Public()}}); err != nil {
		t.Fatal(err)
	}
	ks := keys()
	if len(ks) != 2 {
		t.Fatalf("keys after the rotation: %+v, want 2", ks)
	}
	for _, k := range ks {
		switch k.ID {
		case a.ID:
			if !k.NotAfter.Equal(revoked.NotAfter) {
				t.Errorf("revoked key %s: not after %v, want %v", k.ID, k.NotAfter, revoked.NotAfter)
			}
		case b.ID:
			if !k.NotAfter.IsZero() {
				t.Errorf("new key %s: not after %v, want none", k.ID, k.NotAfter)
			}
		default:
			t.Errorf("unknown key %s", k.ID)
		}
	}
}
