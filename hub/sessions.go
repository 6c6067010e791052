// Store sessions: authenticating an agent's connection, keeping each store's health (the
// sync.Handler calls that are neither pushes nor pulls), and each store's one live session
// across the hub processes on the database (lsync.SessionOwner).
//
// # One session per store, across hub processes
//
// The sync server keeps one session per store within a process. Across processes the database
// decides: its sessions table holds, per store, the session that is live, the hub process that
// holds it (Hub.ID), its start and a deadline. When a session authenticates, its process claims
// the store's row (Claim), whoever held it: the newest connection wins, as within a process. The
// claim publishes an EventSession; the process that held the store's previous session hears it
// (Start) and ends that session with ESUPERSEDED. Each process renews the rows it holds every
// SessionTTL/3 (RenewSessions), which also catches a takeover whose event it missed; a row whose
// deadline passed (its process died, or lost the database) is ended by whichever process renews
// next, and its store shown disconnected. A stale row never blocks a store: a new session claims
// it anyway. When a session ends, its process releases the row if it still holds it (Release),
// and only then writes the store disconnected: a process whose session was taken over never
// overwrites the health the new owner wrote.
//
// Sessions are told apart by their start (Session.Started), unique per store and later for every
// later session whatever the hubs' clocks say (Tx.ClaimSession): a lease reclaim is confirmed only
// in the session that told it (leases.go), and an event about an older claim is recognised as
// such. Deadlines are on the database's clock, so hub machines whose clocks differ do not end
// each other's sessions.

package hub

import (
	"context"
	"log/slog"
	"maps"
	"slices"
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
	if !s.TokenIs(token) {
		return refused
	}
	return nil
}

// Seen implements lsync.Handler. Health is kept in memory and written to the store when a
// store connects or disconnects, so heartbeats from thousands of stores cost no writes; what
// pings change (outbox, clock offset) is written when the session is renewed. For a session
// claimed through Claim, the claim, the renewals and Release write it, and Seen only keeps it in
// memory.
func (h *Hub) Seen(ctx context.Context, store string, s lsync.Health) error {
	h.healthMu.Lock()
	prev, known := h.health[store]
	cur := Health{Connected: s.Connected, LastSeen: s.At, ClockOffsetMS: s.ClockOffsetMS, Outbox: s.Outbox}
	if !s.Connected || !s.Ping { // a connect or a disconnect measures nothing: a ping's zeros are news
		cur.ClockOffsetMS, cur.Outbox = prev.ClockOffsetMS, prev.Outbox
	}
	if cur.Unsynced = boundUnsynced(s.Unsynced, cur.ClockOffsetMS, s.At); cur.Unsynced == nil {
		cur.Unsynced = prev.Unsynced // connects and disconnects say nothing of the outbox
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
	_, claimed := h.live[store]
	h.healthMu.Unlock()
	if claimed || known && prev.Connected == cur.Connected {
		return nil
	}
	return h.Store.Update(Bookkeeping(ctx), func(tx Tx) error {
		if cur.Unsynced != nil {
			if err := tx.SetStoreUnsynced(ctx, store, *cur.Unsynced); err != nil {
				return err
			}
		}
		return tx.SetStoreHealth(ctx, store, cur)
	})
}

// liveSession is a store's session this process claimed.
type liveSession struct {
	sess      *lsync.Session
	started   time.Time // its start, as the database keeps it (Session.Started)
	written   Health    // its store's health as last written to the database
	tokenHash string    // the store's token hash when it was claimed: a session outlives no rotation
}

// pendingClaim is a claim of this process in progress: the newest claim of the same store by
// another process heard meanwhile (claimedElsewhere), to be compared once the claim commits.
type pendingClaim struct {
	newest Event
}

var _ lsync.SessionOwner = (*Hub)(nil)

// Claim implements lsync.SessionOwner: it makes s the store's live session in the database,
// taking over from any session of the store on any hub process, marks the store connected, and
// publishes the takeover so that the process holding the previous session ends it.
func (h *Hub) Claim(ctx context.Context, s *lsync.Session) error {
	store := s.Store
	p := &pendingClaim{}
	h.healthMu.Lock()
	h.pending[store] = p
	h.healthMu.Unlock()
	start := s.Start
	if start.IsZero() {
		start = h.Now()
	}
	now := h.Now()
	var row Session
	var written Health
	var tokenHash string
	err := h.bookkept(ctx, func(ctx context.Context, tx Tx) error {
		info, err := tx.StoreInfo(ctx, store)
		if err != nil {
			return err
		}
		// The token the agent authenticated with must still be the store's: one replaced since
		// (after the check, before this claim) would otherwise be taken for the session's own,
		// and the session would outlive its rotation.
		if !info.TokenIs(s.Token) {
			return loyalty.Errorf(loyalty.EUNAUTHORIZED, "store %q: its token was replaced while it connected; the agent must connect with the new one", store)
		}
		tokenHash = info.TokenHash
		if row, err = tx.ClaimSession(ctx, Session{Store: store, Owner: h.ID, Remote: s.Remote, Started: start}, h.sessionTTL()); err != nil {
			return err
		}
		written = info.Health
		written.Connected, written.LastSeen = true, now
		if err := tx.SetStoreHealth(ctx, store, written); err != nil {
			return err
		}
		return tx.Publish(ctx, Event{Kind: EventSession, Store: store, Owner: h.ID, Remote: s.Remote, Started: row.Started})
	})
	h.healthMu.Lock()
	defer h.healthMu.Unlock()
	if h.pending[store] == p {
		delete(h.pending, store)
	}
	if err != nil {
		return err
	}
	if p.newest.Started.After(row.Started) {
		// Another process claimed the store after this claim, and its event came before this
		// claim was registered: this session is over already. The release is the other's.
		return lsync.Superseded(store, p.newest.Remote)
	}
	h.live[store] = &liveSession{sess: s, started: row.Started, written: written, tokenHash: tokenHash}
	h.started[store] = row.Started
	cur := h.health[store]
	cur.Connected, cur.LastSeen = true, now
	h.health[store] = cur
	return nil
}

// Release implements lsync.SessionOwner: if this process still holds s's row, it ends it and
// writes the store disconnected. A session another process took over leaves the row, and the
// store's health, to its new owner.
func (h *Hub) Release(ctx context.Context, s *lsync.Session) {
	h.healthMu.Lock()
	l := h.live[s.Store]
	if l == nil || l.sess != s {
		h.healthMu.Unlock()
		return
	}
	delete(h.live, s.Store)
	hl := h.health[s.Store]
	hl.Connected, hl.LastSeen = false, h.Now()
	h.health[s.Store] = hl
	delete(h.started, s.Store)
	h.healthMu.Unlock()
	err := h.bookkept(ctx, func(ctx context.Context, tx Tx) error {
		held, err := tx.ReleaseSession(ctx, s.Store, h.ID, l.started)
		if err != nil || !held {
			return err
		}
		return tx.SetStoreHealth(ctx, s.Store, hl)
	})
	if err != nil {
		// The row stays this process's until its next renewal finds no session behind it.
		h.Logger.Warn("release a store's sync session", slog.String("store", s.Store), slog.Any("err", err))
	}
}

// claimedElsewhere acts on an EventSession: a session of this process that started before the
// claimed one is over. The event may come from this process's own claim, or be older than the
// session held here: then there is nothing to do.
func (h *Hub) claimedElsewhere(ev Event) {
	h.healthMu.Lock()
	if p := h.pending[ev.Store]; p != nil && ev.Started.After(p.newest.Started) {
		p.newest = ev
	}
	l := h.live[ev.Store]
	h.healthMu.Unlock()
	if l != nil && l.started.Before(ev.Started) {
		h.Logger.Warn("another hub process took over a store's sync session; ending it here",
			slog.String("store", ev.Store), slog.String("old_remote", l.sess.Remote), slog.String("new_remote", ev.Remote),
			slog.String("new_owner", ev.Owner))
		l.sess.End(lsync.Superseded(ev.Store, ev.Remote))
	}
}

// RenewSessions renews, in one transaction, the rows of every store session this process
// holds, and writes what pings changed of their health; it ends the local sessions whose row
// another process took over, or ended because this one did not renew it in time; it releases
// rows this process holds without a session behind them (a Release that failed); and it ends
// the sessions of other processes whose deadline passed, marking their stores disconnected.
// It also ends the sessions whose store's token was replaced since they were claimed: the
// rotation's event ends them at once (EventToken), but a process whose event connection was down
// then would not hear it. Start calls it every SessionTTL/3, and when the hub listens again.
func (h *Hub) RenewSessions(ctx context.Context) error {
	h.healthMu.Lock()
	held := maps.Clone(h.live)
	health := make(map[string]Health, len(held))
	for store := range held {
		health[store] = h.health[store]
	}
	h.healthMu.Unlock()
	now := h.Now()
	type lost struct {
		l   *liveSession
		row Session // the store's session now: another's, or ended
	}
	var gone, rotated []lost
	var owned []Session
	written := map[string]Health{}
	err := h.Store.Update(Bookkeeping(ctx), func(tx Tx) error {
		gone, rotated, written = gone[:0], rotated[:0], map[string]Health{} // a retried transaction starts over
		var err error
		if owned, err = tx.RenewSessions(ctx, h.ID, now, h.sessionTTL()); err != nil {
			return err
		}
		var infos map[string]StoreInfo
		if len(held) > 0 {
			if infos, err = tx.StoresInfo(ctx, slices.Collect(maps.Keys(held))); err != nil {
				return err
			}
		}
		mine := make(map[string]time.Time, len(owned))
		for _, r := range owned {
			mine[r.Store] = r.Started
		}
		for store, l := range held {
			if started, ok := mine[store]; ok && started.Equal(l.started) {
				if infos[store].TokenHash != l.tokenHash {
					rotated = append(rotated, lost{l: l})
					continue
				}
				if hl := health[store]; hl.Connected && (hl.Outbox != l.written.Outbox || hl.ClockOffsetMS != l.written.ClockOffsetMS ||
					!sameUnsynced(hl.Unsynced, l.written.Unsynced)) {
					hl.LastSeen = now
					if err := tx.SetStoreHealth(ctx, store, hl); err != nil {
						return err
					}
					if hl.Unsynced != nil && !sameUnsynced(hl.Unsynced, l.written.Unsynced) {
						if err := tx.SetStoreUnsynced(ctx, store, *hl.Unsynced); err != nil {
							return err
						}
					}
					written[store] = hl
				}
				continue
			}
			row, err := tx.Session(ctx, store)
			if err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
				return err
			}
			gone = append(gone, lost{l, row})
		}
		_, err = tx.ExpireSessions(ctx)
		return err
	})
	if err != nil {
		return err
	}
	h.healthMu.Lock()
	for store, hl := range written {
		if l := h.live[store]; l == held[store] && l != nil {
			l.written = hl
		}
	}
	var orphans []Session
	for _, r := range owned {
		if l, p := h.live[r.Store], h.pending[r.Store]; p == nil && (l == nil || !l.started.Equal(r.Started)) {
			orphans = append(orphans, r)
		}
	}
	h.healthMu.Unlock()
	for _, r := range rotated {
		h.Logger.Warn("a store's token was replaced while this hub held its sync session; ending it",
			slog.String("store", r.l.sess.Store), slog.String("remote", r.l.sess.Remote))
		r.l.sess.End(loyalty.Errorf(loyalty.EUNAUTHORIZED, "this store's token was replaced; connect again with the new one"))
	}
	for _, g := range gone {
		if g.row.Owner != "" {
			h.Logger.Warn("another hub process took over a store's sync session; ending it here",
				slog.String("store", g.l.sess.Store), slog.String("new_remote", g.row.Remote), slog.String("new_owner", g.row.Owner))
			g.l.sess.End(lsync.Superseded(g.l.sess.Store, g.row.Remote))
			continue
		}
		h.Logger.Warn("this hub did not renew a store's sync session in time (it lost touch with its database?) and another hub process ended it; "+
			"ending it here: the agent connects again", slog.String("store", g.l.sess.Store))
		g.l.sess.End(loyalty.Errorf(loyalty.EUNAVAILABLE, "the hub lost this store's sync session (it could not renew it in time); connect again"))
	}
	// A row this process holds for a session it no longer has (claimed and ended between the
	// snapshot and now is impossible: a session's claim is pending until it is live, and its
	// row is released when it ends; what is left is a failed Release).
	for _, r := range orphans {
		err := h.Store.Update(Bookkeeping(ctx), func(tx Tx) error {
			held, err := tx.ReleaseSession(ctx, r.Store, h.ID, r.Started)
			if err != nil || !held {
				return err
			}
			info, err := tx.StoreInfo(ctx, r.Store)
			if err != nil {
				return err
			}
			info.Health.Connected = false
			return tx.SetStoreHealth(ctx, r.Store, info.Health)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
