package main

import (
	"fmt"
	"time"

	"github.com/loyalty-edge-sync/loyalty/agent"
)

// What a store agent keeps and for how long (agent.Retention; README, "Operations").

// AgentReplicaConfig says when members leave the agent's replica.
type AgentReplicaConfig struct {
	// EvictAfter: a member not seen at the store (scanned, or named by a sale, redemption or
	// refund) for this long leaves the replica and the store's scope at the hub. 0: never.
	EvictAfter time.Duration `mapstructure:"evict_after"`
}

// AgentOutboxConfig says how long acknowledged deltas stay in the agent's ledger.
type AgentOutboxConfig struct {
	// RetainAcked: an order whose deltas the hub acknowledged goes this long after its last
	// change, with its POS keys: the store's refund window. 0: kept for ever.
	RetainAcked time.Duration `mapstructure:"retain_acked"`
}

// AgentPOSConfig says how long the agent keeps its answers to POS calls.
type AgentPOSConfig struct {
	// ResultsRetention: the answer to a POS call goes this long after the call; a retry after
	// that is refused (ECONFLICT) while the order is kept. 0: as long as the order.
	ResultsRetention time.Duration `mapstructure:"results_retention"`
}

// Default retention: members 90 days, acknowledged orders 30 days (the hub's claims.max_offline:
// a restored hub cannot take back anything older), POS answers 7 days.
var (
	defaultReplica = AgentReplicaConfig{EvictAfter: 90 * 24 * time.Hour}
	defaultOutbox  = AgentOutboxConfig{RetainAcked: 30 * 24 * time.Hour}
	defaultPOS     = AgentPOSConfig{ResultsRetention: 7 * 24 * time.Hour}
)

// Retention returns what the agent keeps, for agent.Agent.
func (c AgentConfig) Retention() agent.Retention {
	return agent.Retention{EvictAfter: c.Replica.EvictAfter, RetainAcked: c.Outbox.RetainAcked, ResultsRetention: c.POS.ResultsRetention}
}

// validateRetention reports the first problem with the retention settings.
func (c AgentConfig) validateRetention() error {
	const day = 24 * time.Hour
	switch r := c.Retention(); {
	case r.EvictAfter < 0 || r.RetainAcked < 0 || r.ResultsRetention < 0:
		return fmt.Errorf("replica.evict_after, outbox.retain_acked and pos.results_retention cannot be negative (0: keep)")
	case r.EvictAfter != 0 && r.EvictAfter < day:
		return fmt.Errorf("replica.evict_after must be 0 (never evict) or at least 24h, got %s", r.EvictAfter)
	case r.RetainAcked != 0 && r.RetainAcked < day:
		return fmt.Errorf("outbox.retain_acked must be 0 (keep for ever) or at least 24h (it is also how long the store can refund an order), got %s", r.RetainAcked)
	case r.ResultsRetention != 0 && r.ResultsRetention < time.Hour:
		return fmt.Errorf("pos.results_retention must be 0 (as long as the order) or at least 1h, got %s", r.ResultsRetention)
	case r.RetainAcked != 0 && r.ResultsRetention > r.RetainAcked:
		return fmt.Errorf("pos.results_retention (%s) must be at most outbox.retain_acked (%s): a POS answer goes with its order at the latest",
			r.ResultsRetention, r.RetainAcked)
	}
	return nil
}
