package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Server serves the hub's HTTP API (docs/API.md) and the agents' websocket endpoint /v1/sync.
type Server struct {
	Hub      *Hub
	Sync     *lsync.Server
	Addr     string
	AdminKey string // required on every /v1 call except /v1/sync, as "Authorization: Bearer <key>"
	Logger   *slog.Logger
	// Upgrade turns a request into a sync connection (sync/ws.Upgrader.Upgrade).
	Upgrade func(http.ResponseWriter, *http.Request) (lsync.Conn, error)

	ln  net.Listener
	srv *http.Server
}

// Open binds the port (an error if it is in use) and starts serving.
func (s *Server) Open() error {
	if s.AdminKey == "" {
		return loyalty.Errorf(loyalty.EINVALID, "an admin API key is required (admin_api_key, or LOYALTY_ADMIN_API_KEY)")
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("hub listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln)
	return nil
}

// URL returns the base http URL of the running server.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// ListenAddr returns the bound address (host:port), useful when Addr asked for port 0.
func (s *Server) ListenAddr() string { return s.ln.Addr().String() }

// SyncURL returns the websocket URL agents connect to.
func (s *Server) SyncURL() string { return "ws://" + s.ln.Addr().String() + "/v1/sync" }

// Close ends agent sessions and stops the server. It is safe to call more than once.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	s.Sync.Close() // hijacked websocket connections are not tracked by Shutdown
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
