package hub_test

import (
	"context"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// BenchmarkHeartbeatPull measures the pull an agent makes on every heartbeat when nothing is
// new for it: the hub's most frequent call (5,000 stores every 10 s are 500 a second). The store
// runs the example program (configs/program.yaml: two budgets, so the pull renews two leases)
// and has pulled before. Beside it, in the same run, the baseline: a bare read-only snapshot that
// reads the change version, the least a pull can do. Then the same after a sale: a pull that
// carries the member who bought, the pull that follows every push, beside a bare snapshot after
// the same write.
func BenchmarkHeartbeatPull(b *testing.B) {
	ctx := context.Background()
	h := openHub(b)
	if _, err := h.SetProgram(ctx, readExampleProgram(b)); err != nil {
		b.Fatal(err)
	}
	var cursor int64
	pull := func() {
		ch, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: cursor, Limit: 500, Flushed: true})
		if err != nil {
			b.Fatal(err)
		}
		if cursor = ch.Cursor; len(ch.Leases) == 0 {
			b.Fatalf("the pull carried no leases: %+v", ch)
		}
	}
	pull()
	pull() // confirms the first answer: from here on, nothing is new
	b.Run("pull", func(b *testing.B) {
		for range b.N {
			pull()
		}
	})
	snapshot := func() {
		err := h.Store.View(ctx, func(tx hub.Tx) error {
			_, err := tx.CurrentVersion(ctx)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("bare-snapshot", func(b *testing.B) {
		for range b.N {
			snapshot()
		}
	})

	// A pull right after a sale of one of the store's members, as every push is followed by
	// (untimed: the push), and beside it a bare snapshot right after a write. On SQLite a read
	// that begins after another connection's commit starts with an empty page cache (SQLite drops
	// a reader's cache when the database has changed), so both read their pages again.
	p, err := h.Program(ctx)
	if err != nil {
		b.Fatal(err)
	}
	sale := func() {
		d := earn("s1", "m1", 1299)
		d.RuleVersion = p.Version
		if _, err := h.Push(ctx, "s1", []loyalty.Delta{d}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("pull-after-a-sale", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			sale()
			b.StartTimer()
			ch, err := h.Pull(ctx, "s1", lsync.Pull{Cursor: cursor, Limit: 500, Flushed: true})
			if err != nil {
				b.Fatal(err)
			}
			if len(ch.Members) != 1 {
				b.Fatalf("the pull after a sale carried %d members, want the one that bought", len(ch.Members))
			}
			cursor = ch.Cursor
		}
	})
	b.Run("bare-snapshot-after-a-sale", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			sale()
			b.StartTimer()
			snapshot()
		}
	})
}
