package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
)

// maxIdleConnBytes is the most memory the hub may hold per idle connected agent (issue: an idle
// agent must cost the hub at most 20 KB), as loyalty bench measures it.
const maxIdleConnBytes = 20 << 10

// TestIdleConnBytes measures, as loyalty bench does (idleConnBytes), the hub's memory per idle
// agent with 200 agents connected, each having said hello and pulled, and holds it to the limit.
// The measurement waits for what it measures (every session registered, every one ended); it
// collects garbage before each snapshot, and takes the larger of several ways of counting
// (connCost), so a busy machine can only make the figure larger, never pass a regression. An
// idle session holds one goroutine: its reader. Under the race detector the figure is only
// logged: its runtime's stacks and heap are not the hub's.
func TestIdleConnBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("connects 200 agents")
	}
	ctx := context.Background()
	const agents = 200
	hc := DefaultHubConfig()
	hc.Listen, hc.Database, hc.AdminAPIKey = "127.0.0.1:0", filepath.Join(t.TempDir(), "hub.db"), rand.Text()
	hc.HTTP.MaxSyncSessions, hc.HTTP.MaxConnections = agents+100, agents+1000
	quiet := slog.New(slog.DiscardHandler)
	hm := &HubMain{Config: hc, Logger: quiet}
	if err := hm.Open(ctx); err != nil {
		t.Fatal(err)
	}
	stores := make([]stormStore, agents)
	for i := range stores {
		stores[i].id = fmt.Sprintf("idle-%05d", i)
		var err error
		if _, stores[i].token, err = hm.Hub.CreateStore(ctx, stores[i].id, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := hm.Close(); err != nil { // the measured hub is idleConnBytes' own, on the same database
		t.Fatal(err)
	}
	bytes, goroutines, err := idleConnBytes(ctx, hc, stores, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hub memory per idle agent: %d bytes, %.2f goroutines (%d agents)", bytes, goroutines, agents)
	if bytes > maxIdleConnBytes && !raceEnabled {
		t.Errorf("the hub holds %d bytes per idle agent, over the limit of %d", bytes, maxIdleConnBytes)
	}
	// One goroutine each (the session's reader): the measurement waits for every session to be
	// idle (sync.Server.Busy), so a busy machine leaves no worker or writer running in it.
	if goroutines >= 1.5 {
		t.Errorf("the hub holds %.2f goroutines per idle agent, want 1 (the session's reader)", goroutines)
	}
}
