package sync

import (
	"context"
	"time"
)

// SessionOwner is implemented by a Handler that keeps each store's one live session across
// several hub processes on one database (hub.Hub). The Server alone keeps one session per store
// within itself (register); a SessionOwner extends that to every Server on the database: when a
// store's session starts on one, its session on any other is ended, with ESUPERSEDED as here.
// See docs/PROTOCOL.md, "One session per store, across hubs".
type SessionOwner interface {
	// Claim makes s its store's live session everywhere, taking over from any other session of
	// the store (the newest connection wins). The Server calls it once the session has
	// authenticated and has replaced the store's earlier session on this Server, if any, and
	// before it handles any of the agent's messages. An error ends the session.
	//
	// The owner ends s (Session.End) when another session, on any hub process, takes the store
	// over, or when it can no longer keep the claim.
	Claim(ctx context.Context, s *Session) error
	// Release is called once a session whose Claim succeeded has ended (after Seen with Connected
	// false), before another session of the store on this Server is claimed.
	Release(ctx context.Context, s *Session)
}

// Session is a live hub-side session as a SessionOwner sees it.
type Session struct {
	Store  string
	Remote string    // the agent's network address (a proxy's, behind one)
	Start  time.Time // when it started, on the Server's clock
	// Token is the token the agent authenticated with (Handler.Authenticate): the claim checks
	// that it is still the store's, so that a token replaced while the session opened (after its
	// check, before its claim) ends the session as it ends the sessions already claimed.
	Token string
	// End ends the session; a cause with the code ESUPERSEDED (Superseded) is sent to the
	// agent first. It may be called more than once, and after the session ended.
	End func(cause error)
}

// claim hands ss to the Handler's Claim if it is a SessionOwner. It returns the Session to
// release when ss ends, nil if there is nothing to release.
func (s *Server) claim(ctx context.Context, ss *serverSession) (*Session, error) {
	o, ok := s.Handler.(SessionOwner)
	if !ok {
		return nil, nil
	}
	sess := &Session{Store: ss.store, Remote: ss.remote, Start: s.Now(), Token: ss.token, End: ss.cancel}
	if err := o.Claim(ctx, sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// release hands a claimed session back to the Handler once it has ended.
func (s *Server) release(ctx context.Context, sess *Session) {
	if sess != nil {
		s.Handler.(SessionOwner).Release(ctx, sess)
	}
}
