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

// reportBacklog tells the hub, at a session's start and before the outbox goes out, what the
// outbox holds: a ping with the handler's count, if it counts and the outbox is not empty. The
// hub then sees a store's offline backlog at once, while a long catch-up is still being pushed,
// rather than at the first heartbeat. Hubs of every version answer pings.
func (s *clientSession) reportBacklog(ctx context.Context) error {
	c, ok := s.Handler.(UnsyncedCounter)
	if !ok {
		return nil
	}
	u, err := c.Unsynced(ctx)
	if err != nil || u.Deltas == 0 {
		return err
	}
	st := s.Status()
	ping := &Ping{SentAt: unixMilli(s.Now()), ClockOffsetMS: st.ClockOffset.Milliseconds(), Outbox: u.Deltas, Unsynced: &u}
	return s.send(ctx, &Message{Type: TypePing, Ping: ping})
}
