package hub_test

import (
	"context"
	"testing"

	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// BenchmarkHeartbeatPull measures the pull an agent makes on every heartbeat when nothing is
// new for it: the hub's most frequent call (5,000 stores every 10 s are 500 a second). The store
// runs the example program (configs/program.yaml: two budgets, so the pull renews two leases)
// and has pulled before. Beside it, in the same run, the baseline: a bare read-only snapshot that
// reads the change version, the least a pull can do.
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
	b.Run("bare-snapshot", func(b *testing.B) {
		for range b.N {
			err := h.Store.View(ctx, func(tx hub.Tx) error {
				_, err := tx.CurrentVersion(ctx)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
