package hub

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux, admin := http.NewServeMux(), http.NewServeMux()
	s.routes(mux, admin)
	admin.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.ENOTFOUND, "no such endpoint %s %s; see docs/API.md", r.Method, r.URL.Path))
	})
	mux.Handle("/", s.auth(admin))
	s.pageRoutes(mux)               // the web pages (pages.go)
	return s.instrument(mux, admin) // metrics.go
}

// Routes returns the routes of the HTTP API as ServeMux patterns ("METHOD /path/{param}"): open
// ones, served without an API key, and those behind the API key and its scope (Scope.Allows).
// They are listed by running the very registrations Handler serves, so the list cannot differ
// from what is served; e2e/openapi_test.go checks docs/openapi.yaml against it.
func Routes() (open, keyed []string) {
	var o, k patterns
	(&Server{}).routes(&o, &k) // registering builds handlers; none of them runs
	return o, k
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

// routes registers every endpoint: those open without an API key on mux, the others on admin,
// which Handler serves behind the key check.
func (s *Server) routes(mux, admin router) {
	h := s.Hub
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		jsonapi.Write(w, http.StatusOK, map[string]any{"ok": true, "stores_connected": s.Sync.Sessions()})
	})
	mux.HandleFunc("GET /v1/sync", s.serveSync)

	admin.HandleFunc("POST /v1/stores", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID       string `json:"id"`
			Name     string `json:"name"`
			TimeZone string `json:"timezone"`
		}
		if s.decode(w, r, &req) {
			st, token, err := h.CreateStoreIn(r.Context(), req.ID, req.Name, req.TimeZone)
			s.reply(w, r, http.StatusCreated, map[string]any{"store": st, "token": token}, err)
		}
	})
	admin.HandleFunc("GET /v1/stores", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.Stores(r.Context())
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("PUT /v1/stores/{id}/timezone", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TimeZone string `json:"timezone"`
		}
		if s.decode(w, r, &req) {
			err := h.SetStoreZone(r.Context(), r.PathValue("id"), req.TimeZone)
			s.reply(w, r, http.StatusOK, map[string]string{"store": r.PathValue("id"), "timezone": cmp.Or(req.TimeZone, "UTC")}, err)
		}
	})
	admin.HandleFunc("POST /v1/stores/{id}/token", func(w http.ResponseWriter, r *http.Request) {
		token, err := h.RotateStoreToken(r.Context(), r.PathValue("id"))
		s.reply(w, r, http.StatusOK, map[string]string{"store": r.PathValue("id"), "token": token}, err)
	})
	admin.HandleFunc("POST /v1/members", func(w http.ResponseWriter, r *http.Request) {
		// Only these fields: a balance is earned, never set by creating a member.
		var req struct {
			ID        string `json:"id"`
			Email     string `json:"email"`
			Name      string `json:"name"`
			HomeStore string `json:"home_store"`
			Country   string `json:"country"`
			Referred  string `json:"referred_by"` // the referrer's member id (their referral code)
			Birthday  string `json:"birthday"`    // "MM-DD" or "YYYY-MM-DD", for the birthday action
		}
		if s.decode(w, r, &req) {
			out, err := h.CreateMember(r.Context(), loyalty.Member{ID: req.ID, Email: req.Email, Name: req.Name, HomeStore: req.HomeStore,
				Country: req.Country, ReferredBy: req.Referred, Birthday: req.Birthday})
			s.reply(w, r, http.StatusCreated, out, err)
		}
	})
	admin.HandleFunc("GET /v1/members/{id}", func(w http.ResponseWriter, r *http.Request) {
		limit, err := intParam(r, "ledger", 50, 0, 1000)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		out, err := h.Member(r.Context(), r.PathValue("id"), limit)
		s.reply(w, r, http.StatusOK, out.ForScope(ActorFrom(r.Context()).Scope), err)
	})
	admin.HandleFunc("GET /v1/members/{id}/qr", func(w http.ResponseWriter, r *http.Request) {
		token, err := h.MemberToken(r.Context(), r.PathValue("id"))
		s.reply(w, r, http.StatusOK, map[string]string{"member_id": r.PathValue("id"), "token": token}, err)
	})
	admin.HandleFunc("GET /v1/members/{id}/qr.png", func(w http.ResponseWriter, r *http.Request) {
		token, err := h.MemberToken(r.Context(), r.PathValue("id"))
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		size, err := intParam(r, "size", qr.DefaultPNGSize, 128, 2048)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		png, err := qr.PNG(token, size)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	})
	admin.HandleFunc("GET /v1/program", func(w http.ResponseWriter, r *http.Request) {
		p, err := h.Program(r.Context())
		s.reply(w, r, http.StatusOK, p, err)
	})
	admin.HandleFunc("PUT /v1/program", func(w http.ResponseWriter, r *http.Request) {
		var p loyalty.Program
		if s.decode(w, r, &p) {
			out, err := h.SetProgram(r.Context(), p)
			s.reply(w, r, http.StatusOK, out, err)
		}
	})
	admin.HandleFunc("GET /v1/rewards", func(w http.ResponseWriter, r *http.Request) {
		p, err := h.Program(r.Context())
		s.reply(w, r, http.StatusOK, p.Rewards, err)
	})
	admin.HandleFunc("POST /v1/earn", call(s, h.Earn))
	admin.HandleFunc("POST /v1/redeem", call(s, h.Redeem))
	admin.HandleFunc("POST /v1/reverse", call(s, h.Reverse))
	admin.HandleFunc("POST /v1/vouchers", call(s, h.IssueVoucher))
	admin.HandleFunc("POST /v1/actions", call(s, h.Action))
	admin.HandleFunc("GET /v1/conflicts", func(w http.ResponseWriter, r *http.Request) {
		if !onlyParams(w, r, s, "limit", "before") {
			return
		}
		limit, err := intParam(r, "limit", 500, 1, MaxListPage)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		before, err := intParam(r, "before", 0, 1, math.MaxInt)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		out, err := h.ConflictsBefore(r.Context(), int64(before), limit)
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("GET /v1/rejections", func(w http.ResponseWriter, r *http.Request) {
		if !onlyParams(w, r, s, "limit") {
			return
		}
		limit, err := intParam(r, "limit", 500, 1, MaxListPage)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		out, err := h.Rejections(r.Context(), limit)
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("GET /v1/budgets", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.Budgets(r.Context())
		s.reply(w, r, http.StatusOK, out, err)
	})
	s.reportRoutes(admin) // reports_http.go
	admin.HandleFunc("POST /v1/stores/{id}/writeoff", func(w http.ResponseWriter, r *http.Request) {
		n, err := h.WriteOff(r.Context(), r.PathValue("id"))
		s.reply(w, r, http.StatusOK, map[string]any{"store": r.PathValue("id"), "returned": n}, err)
	})
	admin.HandleFunc("GET /v1/expiring", func(w http.ResponseWriter, r *http.Request) {
		if !onlyParams(w, r, s, "after", "limit") {
			return
		}
		limit, err := intParam(r, "limit", 100, 1, MaxExpiringPage)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		page, err := h.ExpiringSoonPage(r.Context(), r.URL.Query().Get("after"), limit)
		s.reply(w, r, http.StatusOK, page, err)
	})
	admin.HandleFunc("GET /v1/check", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.Check(r.Context())
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.Keys(r.Context())
		s.reply(w, r, http.StatusOK, map[string]any{"keys": out}, err)
	})
	admin.HandleFunc("POST /v1/keys/rotate", func(w http.ResponseWriter, r *http.Request) {
		k, err := h.RotateKey(r.Context())
		s.reply(w, r, http.StatusOK, k, err)
	})
	admin.HandleFunc("POST /v1/api-keys", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name  string `json:"name"`
			Scope Scope  `json:"scope"`
		}
		if s.decode(w, r, &req) {
			k, err := h.CreateAPIKey(r.Context(), req.Name, req.Scope)
			s.reply(w, r, http.StatusCreated, k, err)
		}
	})
	admin.HandleFunc("GET /v1/api-keys", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.APIKeys(r.Context())
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("DELETE /v1/api-keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		k, err := h.RevokeAPIKey(r.Context(), r.PathValue("id"))
		s.reply(w, r, http.StatusOK, k, err)
	})
	admin.HandleFunc("GET /v1/audit", func(w http.ResponseWriter, r *http.Request) {
		limit, err := intParam(r, "limit", 100, 1, MaxAuditLimit)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		q := r.URL.Query()
		var before int64
		if v := q.Get("before"); v != "" {
			if before, err = strconv.ParseInt(v, 10, 64); err != nil || before < 1 {
				jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.EINVALID, "before must be an entry's seq, a whole number from 1: the last seq of the page before"))
				return
			}
		}
		out, err := h.AuditPage(r.Context(), AuditQuery{Before: before, Action: q.Get("action"), KeyID: q.Get("key_id"), Limit: limit})
		if ActorFrom(r.Context()).Scope != ScopeAdmin {
			hideWebhookDetails(out)
		}
		s.reply(w, r, http.StatusOK, out, err)
	})
	s.careRoutes(admin)    // carehttp.go
	s.webhookRoutes(admin) // webhooks_http.go
	s.migrateRoutes(admin) // member search, adjustments, imports, exports (migrate_http.go)
	s.cardAPIRoutes(admin) // member card links (card.go)
}

// MaxListPage is the most entries one page of GET /v1/conflicts or /v1/rejections holds.
const MaxListPage = 1000

// onlyParams answers 400 EINVALID, and returns false, if r's query has a parameter not in names.
func onlyParams(w http.ResponseWriter, r *http.Request, s *Server, names ...string) bool {
	for k := range r.URL.Query() {
		if !slices.Contains(names, k) {
			jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.EINVALID, "%s %s takes %s; %q is none of them",
				r.Method, r.URL.Path, strings.Join(names, ", "), loyalty.Truncate(k, 40)))
			return false
		}
	}
	return true
}

// intParam reads an optional integer query parameter within [lo, hi]. It returns EINVALID.
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, loyalty.Errorf(loyalty.EINVALID, "%s must be a whole number from %d to %d", name, lo, hi)
	}
	return n, nil
}

// auth authenticates every request to routes (401 EUNAUTHORIZED without a valid key), checks
// that the key's scope may call the route it is for (403 EFORBIDDEN; see routeScopes), and
// serves it with the key's Actor in the context, for the audit trail.
func (s *Server) auth(routes *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, err := s.authenticate(r)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		// The pattern routes will serve r with. "" and "/" are no endpoint (a redirect, or the
		// 404 answer), open to any valid key; a pattern missing from routeScopes is admin-only.
		if _, pattern := routes.Handler(r); pattern != "" && pattern != "/" && !actor.Scope.Allows(pattern) {
			jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.EFORBIDDEN,
				"this API key has scope %s; %s needs a key with scope %s; ask an operator for one (loyalty apikey add)",
				actor.Scope, pattern, scopeList(routeScopes[pattern])))
			return
		}
		routes.ServeHTTP(w, r.WithContext(WithActor(r.Context(), actor)))
	})
}

// authenticate returns who sent r: the bootstrap key admin_api_key (compared in constant time),
// or an API key of the hub's database that is not revoked.
func (s *Server) authenticate(r *http.Request) (Actor, error) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || secret == "" {
		return Actor{}, errWrongKey
	}
	return s.authenticateSecret(r.Context(), secret)
}

// authenticateSecret returns whose key secret is (authenticate; the dashboard's sign-in).
func (s *Server) authenticateSecret(ctx context.Context, secret string) (Actor, error) {
	// Compared as hashes, so the time taken does not tell the bootstrap key's length either.
	given, want := sha256.Sum256([]byte(secret)), sha256.Sum256([]byte(s.AdminKey))
	if s.AdminKey != "" && subtle.ConstantTimeCompare(given[:], want[:]) == 1 {
		return ConfigActor, nil
	}
	k, err := s.Hub.AuthenticateAPIKey(ctx, secret)
	if err != nil {
		return Actor{}, err
	}
	return k.Actor(), nil
}

// scopeList names the scopes a route's routeScopes entry allows, for a message: "admin", or
// "report (or admin)".
func scopeList(scopes []Scope) string {
	var names []string
	for _, sc := range scopes {
		names = append(names, string(sc))
	}
	if len(names) == 0 {
		return string(ScopeAdmin)
	}
	return strings.Join(names, " or ") + " (or admin)"
}

func (s *Server) serveSync(w http.ResponseWriter, r *http.Request) {
	if s.refuseSync(w, r) { // at http.max_sync_sessions: 503 EUNAVAILABLE (server.go)
		return
	}
	conn, err := s.Upgrade(w, r)
	if err != nil {
		s.Logger.Info("websocket upgrade failed", slog.String("remote", r.RemoteAddr), slog.Any("err", err))
		return
	}
	// The session goes on without this handler, whose goroutine and request are let go: an idle
	// agent then costs the hub its connection and the session's one reader goroutine.
	remote := r.RemoteAddr
	s.Sync.Start(context.WithoutCancel(r.Context()), conn, func(err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			s.Logger.Info("agent session ended", slog.String("remote", remote), slog.Any("err", err))
		}
	})
}

func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := jsonapi.Decode(w, r, v); err != nil {
		jsonapi.Error(w, r, s.Logger, err)
		return false
	}
	return true
}

func (s *Server) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		jsonapi.Error(w, r, s.Logger, err)
		return
	}
	jsonapi.Write(w, status, v)
}

// call adapts a JSON-in, JSON-out hub call to an HTTP handler.
func call[Req, Resp any](s *Server, fn func(context.Context, Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if s.decode(w, r, &req) {
			resp, err := fn(r.Context(), req)
			jsonapi.MarkReplayed(w.Header(), resp)
			s.reply(w, r, http.StatusOK, resp, err)
		}
	}
}
