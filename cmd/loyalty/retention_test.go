package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/agent"
)

// TestConfig_Retention: replica.evict_after, outbox.retain_acked and pos.results_retention
// have their documented defaults, load from the file and the environment, reach the agent, and
// are checked.
func TestConfig_Retention(t *testing.T) {
	const day = 24 * time.Hour
	if r := DefaultAgentConfig().Retention(); r != (agent.Retention{EvictAfter: 90 * day, RetainAcked: 30 * day, ResultsRetention: 7 * day}) {
		t.Errorf("defaults %+v, want 90, 30 and 7 days", r)
	}
	file := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(file, []byte("store_id: s1\ntoken: t\nreplica:\n  evict_after: 0s\noutbox:\n  retain_acked: 2160h\n"), 0o644)
	t.Setenv("LOYALTY_POS_RESULTS_RETENTION", "48h")
	var a AgentConfig
	if err := loadConfig(cmdWith(t, agentCommand, "--config", file), DefaultAgentConfig(), &a); err != nil {
		t.Fatal(err)
	}
	if r := a.Retention(); r != (agent.Retention{RetainAcked: 90 * day, ResultsRetention: 2 * day}) {
		t.Errorf("from the file and the environment: %+v", r)
	}
	if err := a.Validate(); err != nil {
		t.Errorf("valid retention: %v", err)
	}
	for _, tt := range []struct {
		evict, acked, results time.Duration
		key                   string
	}{
		{time.Hour, 30 * day, day, "replica.evict_after"},
		{0, 12 * time.Hour, time.Hour, "outbox.retain_acked"},
		{0, 30 * day, time.Minute, "pos.results_retention"},
		{0, 7 * day, 8 * day, "at most outbox.retain_acked"},
		{-day, 0, 0, "negative"},
	} {
		c := a
		c.Replica.EvictAfter, c.Outbox.RetainAcked, c.POS.ResultsRetention = tt.evict, tt.acked, tt.results
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("evict_after %s, retain_acked %s, results_retention %s: %v, want an error about %s", tt.evict, tt.acked, tt.results, err, tt.key)
		}
	}
	c := a
	c.Replica.EvictAfter, c.Outbox.RetainAcked, c.POS.ResultsRetention = 0, 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("everything kept for ever: %v", err)
	}
}
