package sync

import "context"

// Unsynced is what an agent's outbox holds that the hub has not acknowledged yet, as the agent
// counts it: sent with its pings (Ping.Unsynced, protocol version 2 and later, optional) so that
// the hub's reports can show what a store spent offline before it arrives (docs/PROTOCOL.md,
// "Unsynced liability"). The hub bounds what it is told and shows it as reported by the store:
// it is an untrusted claim, never applied to anything.
type Unsynced struct {
	Deltas         int64            `json:"deltas"`              // deltas in the outbox
	PointsEarned   int64            `json:"points_earned"`       // points of the earns among them
	PointsRedeemed int64            `json:"points_redeemed"`     // points of the redemptions among them, as a positive number
	Budgets        map[string]int64 `json:"budgets,omitempty"`   // what they spent of each budget from the store's leases
	OldestAt       int64            `json:"oldest_at,omitempty"` // when the oldest of them was made, agent clock, unix milliseconds
}

// UnsyncedCounter is a ClientHandler that can count its outbox for Unsynced; the client then
// sends the count with every ping. A handler without it sends pings without one, as agents
// before it did.
type UnsyncedCounter interface {
	Unsynced(ctx context.Context) (Unsynced, error)
}
