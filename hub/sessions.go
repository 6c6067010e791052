// Store sessions: authenticating an agent's connection and keeping each store's health (the
// sync.Handler calls that are neither pushes nor pulls).

package hub

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Authenticate implements lsync.Handler. Tokens are stored as SHA-256 hashes and compared in
// constant time.
func (h *Hub) Authenticate(ctx context.Context, store, token string) error {
	var s StoreInfo
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		s, err = tx.StoreInfo(ctx, store)
		return err
	})
	refused := loyalty.Errorf(loyalty.EUNAUTHORIZED,
		"store %q: unknown store or wrong token; check the agent's token (an operator can issue a new one with `loyalty store token --id %s`)", store, store)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return refused
	} else if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(s.TokenHash)) != 1 {
		return refused
	}
	return nil
}

// Seen implements lsync.Handler. Health is kept in memory and written to the store when a
// store connects or disconnects, so heartbeats from thousands of stores cost no writes.
func (h *Hub) Seen(ctx context.Context, store string, s lsync.Health) error {
	h.healthMu.Lock()
	prev, known := h.health[store]
	cur := Health{Connected: s.Connected, LastSeen: s.At, ClockOffsetMS: s.ClockOffsetMS, Outbox: s.Outbox}
	if !s.Connected || s.ClockOffsetMS == 0 && s.Outbox == 0 {
		cur.ClockOffsetMS, cur.Outbox = prev.ClockOffsetMS, prev.Outbox
	}
	cur.ClockSkewed = time.Duration(max(cur.ClockOffsetMS, -cur.ClockOffsetMS))*time.Millisecond > MaxClockSkew
	if cur.ClockSkewed && !prev.ClockSkewed {
		h.Logger.Warn("store clock is far off the hub's; its event times are corrected by the measured offset",
			slog.String("store", store), slog.Int64("clock_offset_ms", cur.ClockOffsetMS))
	}
	h.health[store] = cur
	if s.Connected && !prev.Connected {
		h.started[store] = s.At
	} else if !s.Connected {
		delete(h.started, store)
	}
	h.healthMu.Unlock()
	if known && prev.Connected == cur.Connected {
		return nil
	}
	// A storm of connections writes its health changes in few transactions (group.go).
	write := func(ctx context.Context, tx Tx) error { return tx.SetStoreHealth(ctx, store, cur) }
	return h.grouped(ctx, 0, write, func(ctx context.Context) error {
		return h.Store.Update(ctx, func(tx Tx) error { return write(ctx, tx) })
	})
}
