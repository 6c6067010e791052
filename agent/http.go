package agent

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
)

// Server serves the POS-facing JSON API (docs/API.md). It is meant for loopback: the POS runs on
// the same machine or store LAN. Set POSToken to require "Authorization: Bearer <token>".
type Server struct {
	Agent    *Agent
	Addr     string
	POSToken string
	Logger   *slog.Logger

	ln  net.Listener
	srv *http.Server
}

// NewServer returns a Server for a on addr.
func NewServer(a *Agent, addr string) *Server {
	return &Server{Agent: a, Addr: addr, Logger: slog.Default()}
}

// Open binds the port (an error if it is in use) and starts serving.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("pos api listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln)
	return nil
}

// URL returns the base URL of the running server.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the server, letting calls in progress finish. It is safe to call more than once.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/scan", handle(s, s.Agent.Scan))
	mux.HandleFunc("POST /v1/earn", handle(s, s.Agent.Earn))
	mux.HandleFunc("POST /v1/redeem", handle(s, s.Agent.Redeem))
	mux.HandleFunc("POST /v1/reverse", handle(s, s.Agent.Reverse))
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Agent.Status(r.Context())
		s.reply(w, r, st, err)
	})
	mux.HandleFunc("GET /v1/rejected", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.Agent.Rejected(r.Context(), 100)
		s.reply(w, r, out, err)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.ENOTFOUND, "no such endpoint %s %s; see docs/API.md", r.Method, r.URL.Path))
	})
	return s.auth(mux)
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.POSToken != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+s.POSToken)) != 1 {
			jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.EUNAUTHORIZED, "missing or wrong POS token (Authorization: Bearer ...)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		jsonapi.Error(w, r, s.Logger, err)
		return
	}
	jsonapi.Write(w, http.StatusOK, v)
}

// handle adapts a JSON-in, JSON-out agent call to an HTTP handler.
func handle[Req, Resp any](s *Server, fn func(context.Context, Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := jsonapi.Decode(w, r, &req); err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		resp, err := fn(r.Context(), req)
		s.reply(w, r, resp, err)
	}
}
