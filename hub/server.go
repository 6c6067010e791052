package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Server serves the hub's HTTP API (docs/API.md) and the agents' websocket endpoint /v1/sync.
type Server struct {
	Hub      *Hub
	Sync     *lsync.Server
	Addr     string
	AdminKey string // the bootstrap admin key (config admin_api_key); scoped keys are in the database (apikeys.go)
	Logger   *slog.Logger
	// Upgrade turns a request into a sync connection (sync/ws.Upgrader.Upgrade).
	Upgrade func(http.ResponseWriter, *http.Request) (lsync.Conn, error)

	// Limits bound what one client can hold of the server; zero fields take DefaultLimits.
	Limits Limits
	// TLSCertFile and TLSKeyFile, when set (both), make the server serve HTTPS and wss:// with
	// this PEM certificate chain and private key. The files are read again when they change, so
	// a renewed certificate takes effect at the next TLS handshake, without a restart.
	TLSCertFile, TLSKeyFile string
	// Listener, when set, is the bound socket to serve on instead of binding Addr: a hub binds
	// its port before it touches the database, so a port in use fails before anything is created.
	Listener net.Listener

	ln    net.Listener
	conns *limitListener
	certs *certReloader
	lim   Limits
	srv   *http.Server

	uploadHook func() // tests: called after each read of an upload's body that returned data
}

// Limits bound the hub's HTTP server. The timeouts apply to HTTP requests; a sync session, once
// upgraded to a websocket, is governed by the websocket's own deadlines (heartbeat and write
// timeout in sync/ws), never by these.
type Limits struct {
	ReadHeaderTimeout time.Duration // to read a request's line and headers
	ReadTimeout       time.Duration // to read a whole request, body included; an import's file: each read (upload.go)
	WriteTimeout      time.Duration // from the end of the request's headers to the end of the answer
	IdleTimeout       time.Duration // a keep-alive connection waiting for its next request
	MaxHeaderBytes    int           // request line and headers
	// MaxConnections caps open TCP connections: API calls, sync sessions and connections still
	// sending their first request alike. A connection beyond it is closed as soon as it is
	// accepted (clients see the connection closed; agents retry with backoff).
	MaxConnections int
	// MaxSyncSessions caps connected agents: beyond it the websocket upgrade is refused with
	// HTTP 503 and EUNAVAILABLE. It should be below MaxConnections, so the API stays reachable.
	MaxSyncSessions int
}

// DefaultLimits returns production limits: generous for agents and operators on slow links,
// tight enough that a client holding connections open without sending cannot exhaust the hub.
func DefaultLimits() Limits {
	return Limits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		MaxConnections:    10000,
		MaxSyncSessions:   5000,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	orDefault(&l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	orDefault(&l.ReadTimeout, d.ReadTimeout)
	orDefault(&l.WriteTimeout, d.WriteTimeout)
	orDefault(&l.IdleTimeout, d.IdleTimeout)
	orDefault(&l.MaxHeaderBytes, d.MaxHeaderBytes)
	orDefault(&l.MaxConnections, d.MaxConnections)
	orDefault(&l.MaxSyncSessions, d.MaxSyncSessions)
	return l
}

// orDefault sets a setting left zero (or negative) to its default.
func orDefault[T int | int64 | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Open binds the port (an error if it is in use) and starts serving.
func (s *Server) Open() error {
	if s.AdminKey == "" {
		return loyalty.Errorf(loyalty.EINVALID, "an admin API key is required (admin_api_key, or LOYALTY_ADMIN_API_KEY)")
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	s.lim = s.Limits.withDefaults()
	var tlsConf *tls.Config
	if s.TLSCertFile != "" || s.TLSKeyFile != "" {
		if s.TLSCertFile == "" || s.TLSKeyFile == "" {
			return loyalty.Errorf(loyalty.EINVALID, "TLS needs both a certificate file and a key file (tls.cert_file and tls.key_file); set both, or neither to serve plain HTTP")
		}
		s.certs = &certReloader{certFile: s.TLSCertFile, keyFile: s.TLSKeyFile, log: s.Logger}
		if err := s.certs.load(); err != nil {
			return err
		}
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.get}
	}
	ln := s.Listener
	if ln == nil {
		var err error
		if ln, err = Listen(s.Addr); err != nil {
			return err
		}
	}
	s.ln = ln
	s.conns = newLimitListener(ln, s.lim.MaxConnections, s.Logger)
	s.srv = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: s.lim.ReadHeaderTimeout,
		ReadTimeout:       s.lim.ReadTimeout,
		WriteTimeout:      s.lim.WriteTimeout,
		IdleTimeout:       s.lim.IdleTimeout,
		MaxHeaderBytes:    s.lim.MaxHeaderBytes,
		// Failed TLS handshakes (an agent that does not trust the certificate, a port scanner)
		// and similar connection errors.
		ErrorLog: slog.NewLogLogger(s.Logger.Handler(), slog.LevelInfo),
	}
	if tlsConf != nil {
		go s.srv.ServeTLS(s.conns, "", "")
	} else {
		go s.srv.Serve(s.conns)
	}
	return nil
}

// Listen binds the hub's address, saying what to do when it cannot.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("cannot listen on %s: the port is in use (another hub, or another program, is using it): stop it, or set listen (--listen, LOYALTY_LISTEN) to a free port", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s (listen, --listen, LOYALTY_LISTEN): %w", addr, err)
	}
	return ln, nil
}

// TLS reports whether the server serves HTTPS and wss://.
func (s *Server) TLS() bool { return s.certs != nil }

// URL returns the base URL of the running server (https:// when it serves TLS).
func (s *Server) URL() string {
	if s.TLS() {
		return "https://" + s.ln.Addr().String()
	}
	return "http://" + s.ln.Addr().String()
}

// ListenAddr returns the bound address (host:port), useful when Addr asked for port 0.
func (s *Server) ListenAddr() string { return s.ln.Addr().String() }

// SyncURL returns the websocket URL agents connect to (wss:// when the server serves TLS).
func (s *Server) SyncURL() string {
	if s.TLS() {
		return "wss://" + s.ln.Addr().String() + "/v1/sync"
	}
	return "ws://" + s.ln.Addr().String() + "/v1/sync"
}

// Connections returns the number of open TCP connections the server counts against
// Limits.MaxConnections.
func (s *Server) Connections() int { return int(s.conns.open.Load()) }

// refuseSync answers a sync request with 503 EUNAVAILABLE when Limits.MaxSyncSessions agents
// are connected already. It reports whether it did.
func (s *Server) refuseSync(w http.ResponseWriter, r *http.Request) bool {
	limit := s.lim.MaxSyncSessions
	if limit <= 0 || s.Sync.Sessions() < limit {
		return false
	}
	s.Logger.Warn("sync session refused: the hub serves its maximum of store sessions; raise http.max_sync_sessions if the chain has more stores",
		slog.String("remote", r.RemoteAddr), slog.Int("max_sync_sessions", limit))
	w.Header().Set("Retry-After", "30")
	jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.EUNAVAILABLE,
		"the hub already serves its maximum of %d store sessions (http.max_sync_sessions); the agent retries with backoff", limit))
	return true
}

// Close ends agent sessions and stops the server: it stops taking connections and waits for the
// requests under way to finish, as long as an answer may take (Limits.WriteTimeout), then closes
// the connections of those still running, with a warning, and returns: their handlers see their
// requests' contexts end, and a write they make after the caller closes the database fails, its
// transaction undone whole. It is safe to call more than once.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	s.Sync.Close() // hijacked websocket connections are not tracked by Shutdown
	grace := s.lim.WriteTimeout
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.Logger.Warn("requests still under way at shutdown were cut off: they had run longer than an answer may take (http.write_timeout)",
			slog.Duration("grace", grace))
		err = s.srv.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// limitListener caps open connections: past max, a new connection is closed as soon as it is
// accepted, so a flood of idle connections cannot take every file descriptor. (It refuses
// rather than waits, so the caller learns at once and the accept loop never stalls.)
type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused atomic.Int64 // since the last warning
	lastLog atomic.Int64 // unix nanoseconds of the last warning
	log     *slog.Logger
}

func newLimitListener(ln net.Listener, limit int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: int64(limit), log: log}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		c.Close()
		// One warning a minute at most: a flood must not flood the log too.
		n, now := l.refused.Add(1), time.Now().UnixNano()
		if last := l.lastLog.Load(); now-last > int64(time.Minute) && l.lastLog.CompareAndSwap(last, now) {
			l.refused.Add(-n)
			l.log.Warn("connections refused: the hub has its maximum of open connections; raise http.max_connections if they are legitimate",
				slog.Int64("max_connections", l.max), slog.Int64("refused", n))
		}
	}
}

// countedConn gives its slot back once, when it is closed (a hijacked websocket included).
type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// certReloader hands the TLS stack the current certificate. At every handshake it reads the two
// files again and, when they changed and parse as a matching pair, switches to them; a pair that
// does not (one file replaced, the other not yet) is logged once and the last good pair is kept.
// Reading two small files is cheap beside the handshake itself.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu              sync.Mutex
	cert            *tls.Certificate
	certPEM, keyPEM []byte // what cert was made from
	badCert, badKey []byte // the last pair that failed, already logged
	badRead         string // the last read error, already logged
}

func (r *certReloader) load() error {
	cb, kb, err := r.read()
	if err != nil {
		return fmt.Errorf("hub TLS: %w: set tls.cert_file and tls.key_file to readable PEM files", err)
	}
	c, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return fmt.Errorf("hub TLS: tls.cert_file %s and tls.key_file %s: %w: give the PEM certificate (chain) and its own private key", r.certFile, r.keyFile, err)
	}
	r.cert, r.certPEM, r.keyPEM = &c, cb, kb
	r.logLoaded("TLS certificate loaded")
	return nil
}

func (r *certReloader) read() (cert, key []byte, err error) {
	cert, err = os.ReadFile(r.certFile)
	if err != nil {
		return nil, nil, err
	}
	key, err = os.ReadFile(r.keyFile)
	return cert, key, err
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cb, kb, err := r.read()
	if err != nil {
		if err.Error() != r.badRead {
			r.badRead = err.Error()
			r.log.Warn("cannot read the TLS certificate files; still serving the previous certificate", slog.Any("err", err))
		}
		return r.cert, nil
	}
	r.badRead = ""
	switch {
	case bytes.Equal(cb, r.certPEM) && bytes.Equal(kb, r.keyPEM):
		return r.cert, nil
	case bytes.Equal(cb, r.badCert) && bytes.Equal(kb, r.badKey):
		return r.cert, nil
	}
	c, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		r.badCert, r.badKey = cb, kb
		r.log.Warn("the TLS certificate files changed but do not hold a matching certificate and key (yet); still serving the previous certificate",
			slog.String("cert_file", r.certFile), slog.String("key_file", r.keyFile), slog.Any("err", err))
		return r.cert, nil
	}
	r.cert, r.certPEM, r.keyPEM, r.badCert, r.badKey = &c, cb, kb, nil, nil
	r.logLoaded("TLS certificate reloaded")
	return r.cert, nil
}

func (r *certReloader) logLoaded(msg string) {
	leaf := r.cert.Leaf
	if leaf == nil {
		r.log.Info(msg, slog.String("cert_file", r.certFile))
		return
	}
	level := slog.LevelInfo
	if time.Now().After(leaf.NotAfter) {
		msg, level = msg+", but it has EXPIRED: agents will refuse it; replace tls.cert_file and tls.key_file", slog.LevelWarn
	}
	r.log.Log(context.Background(), level, msg, slog.String("cert_file", r.certFile), slog.String("subject", leaf.Subject.String()),
		slog.Any("dns_names", leaf.DNSNames), slog.Any("ip_addresses", leaf.IPAddresses), slog.Time("not_after", leaf.NotAfter))
}
