package agent

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	gosync "sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
)

// Server serves the POS-facing JSON API (docs/API.md). It is meant for loopback: the POS runs on
// the same machine or store LAN. Set POSToken to require "Authorization: Bearer <token>".
//
// Any web page open in a browser on the store's PC can send requests to the POS API, so the
// server answers only requests that name it, in the Host header, by a name a web page cannot
// point at it (see AllowedHosts), and takes only bodies declared as JSON. Open refuses to listen
// beyond loopback without a POSToken unless InsecureLAN is set (see CheckExposure).
type Server struct {
	Agent    *Agent
	Addr     string
	POSToken string
	// AllowedHosts are further names (or IP addresses) the POS may call the API by, such as the
	// store PC's LAN name. Always accepted: localhost, loopback addresses and the host of Addr
	// when it is a specific name or address; when Addr is on all interfaces (0.0.0.0, ::, or no
	// host), also this machine's own addresses. Ports and case do not matter.
	AllowedHosts []string
	// InsecureLAN lets Open listen beyond loopback without a POSToken, with a warning in the log.
	InsecureLAN bool
	Logger      *slog.Logger
	// Metrics receives the latency of each POS call (metrics.go); nil: none is measured.
	Metrics Metrics

	ln          net.Listener
	srv         *http.Server
	wrongAPI    wrongTokens // wrong POS tokens this minute in the API's Authorization header
	wrongSignIn wrongTokens // and typed at the till page's sign-in
}

// wrongTokens counts the wrong POS tokens of the last minute, per address and in all, of the
// API or of the till page's sign-in: apart, so that a cashier's typos at the till never close the
// API to the POS software on the same machine.
//
// An address with maxWrongTokens wrong tokens in the minute is refused, its right token too,
// until the minute is over: a guessed token costs a minute per few tries, and one device sending
// wrong tokens does not lock the devices at other addresses out. maxAllSignInFailures bounds them
// from every address together (a guesser with many addresses), for sign-ins only: the POS's own
// calls, with the right token, are never refused for what other addresses did. Sessions already
// open go on working. At most maxTrackedAddresses addresses are counted a minute.
type wrongTokens struct {
	mu    gosync.Mutex
	start time.Time
	fails map[string]int
	all   int
}

const (
	maxWrongTokens       = 10
	maxAllSignInFailures = 100
	maxTrackedAddresses  = 4096
)

// throttled reports whether the address of r has had too many wrong tokens this minute, and
// whether every address together has; failed records a wrong token from it first.
func (g *wrongTokens) throttled(r *http.Request, now time.Time, failed bool) (fromAddr, fromAll bool) {
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.start) >= time.Minute || now.Before(g.start) || g.fails == nil {
		g.start, g.fails, g.all = now, map[string]int{}, 0
	}
	if failed {
		if _, known := g.fails[addr]; known || len(g.fails) < maxTrackedAddresses {
			g.fails[addr]++
		}
		g.all++
	}
	return g.fails[addr] >= maxWrongTokens, g.all >= maxAllSignInFailures
}

// NewServer returns a Server for a on addr.
func NewServer(a *Agent, addr string) *Server {
	return &Server{Agent: a, Addr: addr, Logger: slog.Default()}
}

// CheckExposure refuses a POS API reachable from other machines without a POS token: addr
// (host:port) whose host is not localhost or a loopback address, when token is empty. Anything
// on the store's network, or any web page in a browser there, could then award and redeem
// points. insecureLAN overrides the refusal, for a network the operator vouches for.
func CheckExposure(addr, token string, insecureLAN bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen %q is not a valid host:port for the POS API (for example 127.0.0.1:8081): %w", addr, err)
	}
	if isLoopbackHost(host) || token != "" || insecureLAN {
		return nil
	}
	where := "on all network interfaces"
	if host != "" && !isUnspecified(host) {
		where = "on " + host + ", which is not loopback"
	}
	return fmt.Errorf("refusing to serve the POS API %s (listen %s) without a POS token: any device on the "+
		"network, or any web page open in a browser there, could award and redeem points. Either keep it on "+
		"this machine (listen: 127.0.0.1:PORT; LOYALTY_LISTEN, --listen), or set a token that the POS must send "+
		"(pos_token; LOYALTY_POS_TOKEN, --pos-token), or, on a network you control, accept the risk "+
		"(pos_insecure_lan: true; LOYALTY_POS_INSECURE_LAN=true, --pos-insecure-lan)", where, addr)
}

// isLoopbackHost reports whether a listen host is localhost or a loopback address.
func isLoopbackHost(host string) bool {
	host = canonicalHost(host)
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

func isUnspecified(host string) bool {
	a, err := netip.ParseAddr(canonicalHost(host))
	return err == nil && a.Unmap().IsUnspecified()
}

// canonicalHost lower-cases a host, drops one trailing dot and IPv6 brackets and zone.
func canonicalHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if i := strings.IndexByte(h, '%'); i >= 0 && strings.Contains(h, ":") {
		h = h[:i] // an IPv6 zone (fe80::1%eth0)
	}
	return h
}

// hostOnly returns the host of a Host header or an AllowedHosts entry, without its port.
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") { // [v6] or [v6]:port
		if i := strings.IndexByte(h, ']'); i > 0 {
			return canonicalHost(h[:i+1])
		}
		return canonicalHost(h)
	}
	if strings.Count(h, ":") == 1 { // name:port or v4:port; a bare v6 address has more colons
		h = h[:strings.IndexByte(h, ':')]
	}
	return canonicalHost(h)
}

// hostPolicy decides which Host headers the POS API answers to, against DNS rebinding: a web
// page on a domain its owner re-points at 127.0.0.1 reaches the API with the browser's blessing
// as same-origin, but still sends its own domain as Host.
type hostPolicy struct {
	names map[string]bool
	addrs map[netip.Addr]bool
	// anyLocal: listening on all interfaces, so this machine's own addresses are accepted too.
	anyLocal bool
}

func newHostPolicy(listen string, extra []string) *hostPolicy {
	p := &hostPolicy{names: map[string]bool{"localhost": true}, addrs: map[netip.Addr]bool{}}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	if host == "" || isUnspecified(host) {
		p.anyLocal = true
	} else {
		p.add(host)
	}
	for _, h := range extra {
		p.add(hostOnly(strings.TrimSpace(h)))
	}
	return p
}

func (p *hostPolicy) add(host string) {
	host = canonicalHost(host)
	if a, err := netip.ParseAddr(host); err == nil {
		p.addrs[a.Unmap()] = true
	} else if host != "" {
		p.names[host] = true
	}
}

// allows reports whether the API answers a request with this Host header.
func (p *hostPolicy) allows(r *http.Request) bool {
	host := hostOnly(r.Host)
	a, err := netip.ParseAddr(host)
	if err != nil {
		return p.names[host]
	}
	a = a.Unmap()
	if a.IsLoopback() || p.addrs[a] {
		return true
	}
	if !p.anyLocal || a.IsUnspecified() {
		return false
	}
	// An address of this machine: first the one the request came in on, then every interface's
	// (read per request, so an address from DHCP after start-up counts).
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil && ap.Addr().Unmap().WithZone("") == a {
			return true
		}
	}
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ifa := range ifas {
		if n, ok := ifa.(*net.IPNet); ok {
			if ia, ok := netip.AddrFromSlice(n.IP); ok && ia.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// Open binds the port (an error if it is in use) and starts serving. It refuses an address
// beyond loopback without a POSToken unless InsecureLAN is set (CheckExposure).
func (s *Server) Open() error {
	if err := CheckExposure(s.Addr, s.POSToken, s.InsecureLAN); err != nil {
		return err
	}
	if CheckExposure(s.Addr, s.POSToken, false) != nil {
		s.logger().Warn("INSECURE: the POS API is reachable from the network WITHOUT a POS token (pos_insecure_lan is set): "+
			"any device on the network can award and redeem points. Set pos_token, or listen on 127.0.0.1",
			slog.String("listen", s.Addr))
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("pos api listen: %w", err)
	}
	s.ln = ln
	// A request's body within ReadTimeout (a till's form, a POS call: a few kilobytes), and an
	// idle keep-alive connection closed after IdleTimeout: a device on the store's network that
	// opens connections and leaves them, or trickles a body, does not use up the agent's files.
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go s.srv.Serve(ln)
	return nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
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

// Handler returns the API's routes, behind the Host check and the POS token, and the cashier's
// till pages (cashier.go), behind the Host check and their own sign-in.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.routes(mux)
	pages := s.pageRoutes(mux) // cashier.go
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		jsonapi.Error(w, r, s.logger(), loyalty.Errorf(loyalty.ENOTFOUND, "no such endpoint %s %s; see docs/API.md", r.Method, r.URL.Path))
	})
	return s.instrument(mux, s.checkHost(newHostPolicy(s.Addr, s.AllowedHosts), pagesOr(mux, pages, s.auth(mux)))) // metrics.go
}

// Routes returns the routes of the POS API as ServeMux patterns ("METHOD /path"). They are
// listed by running the very registrations Handler serves, so the list cannot differ from what
// is served; e2e/openapi_test.go checks docs/openapi.yaml against it.
func Routes() []string {
	var p patterns
	(&Server{}).routes(&p) // registering builds handlers; none of them runs
	return p
}

// router is what routes registers on: a ServeMux, or patterns to list them.
type router interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// patterns is a router that only records the patterns registered on it.
type patterns []string

func (p *patterns) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	*p = append(*p, pattern)
}

// routes registers every endpoint of the POS API on mux.
func (s *Server) routes(mux router) {
	mux.HandleFunc("POST /v1/scan", handle(s, s.Agent.Scan))
	mux.HandleFunc("POST /v1/earn", handle(s, s.Agent.Earn))
	mux.HandleFunc("POST /v1/redeem", handle(s, s.Agent.Redeem))
	mux.HandleFunc("POST /v1/reverse", handle(s, s.Agent.Reverse))
	mux.HandleFunc("POST /v1/sales", handle(s, s.Agent.Sale)) // a sale without a member (sales.go)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Agent.Status(r.Context())
		s.reply(w, r, st, err)
	})
	mux.HandleFunc("GET /v1/rejected", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.Agent.Rejected(r.Context(), 100)
		s.reply(w, r, out, err)
	})
}

// checkHost refuses a request whose Host header does not name this agent (DNS rebinding).
func (s *Server) checkHost(p *hostPolicy, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !p.allows(r) {
			host := hostOnly(r.Host)
			if len(host) > 100 {
				host = host[:100] + "..."
			}
			s.logger().Warn("refused a POS API request for a host name this agent does not answer to; if the POS uses it, add it to pos_allowed_hosts",
				slog.String("host", host), slog.String("remote", r.RemoteAddr), slog.String("path", r.URL.Path))
			jsonapi.Error(w, r, s.logger(), jsonapi.WithStatus(http.StatusForbidden, loyalty.Errorf(loyalty.EUNAUTHORIZED,
				"this agent does not answer to the host name %q: call it as localhost or 127.0.0.1, or have the operator "+
					"add the name to pos_allowed_hosts (LOYALTY_POS_ALLOWED_HOSTS) in the agent's configuration", host)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.POSToken == "" {
			next.ServeHTTP(w, r)
			return
		}
		// A request without a token guesses nothing (a browser's favicon, a page's link): only
		// tokens sent count, and are refused from an address that sent too many wrong ones.
		got := r.Header.Get("Authorization")
		if got == "" {
			jsonapi.Error(w, r, s.logger(), loyalty.Errorf(loyalty.EUNAUTHORIZED, "missing or wrong POS token (Authorization: Bearer ...)"))
			return
		}
		if throttled, _ := s.wrongAPI.throttled(r, time.Now(), false); throttled {
			w.Header().Set("Retry-After", "60")
			jsonapi.Error(w, r, s.logger(), jsonapi.WithStatus(http.StatusTooManyRequests, loyalty.Errorf(loyalty.EUNAUTHORIZED,
				"too many wrong POS tokens came from this address in the last minute; wait a minute, then call with the right one")))
			return
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+s.POSToken)) != 1 {
			s.wrongAPI.throttled(r, time.Now(), true)
			jsonapi.Error(w, r, s.logger(), loyalty.Errorf(loyalty.EUNAUTHORIZED, "missing or wrong POS token (Authorization: Bearer ...)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		jsonapi.Error(w, r, s.logger(), err)
		return
	}
	jsonapi.Write(w, http.StatusOK, v)
}

// handle adapts a JSON-in, JSON-out agent call to an HTTP handler.
func handle[Req, Resp any](s *Server, fn func(context.Context, Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := jsonapi.Decode(w, r, &req); err != nil {
			jsonapi.Error(w, r, s.logger(), err)
			return
		}
		resp, err := fn(r.Context(), req)
		jsonapi.MarkReplayed(w.Header(), resp)
		s.reply(w, r, resp, err)
	}
}
