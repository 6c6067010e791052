package hub

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
)

// Scope is what an API key may do at the hub's HTTP API.
type Scope string

// The scopes. Which endpoint each one opens is routeScopes.
const (
	// ScopeAdmin opens every endpoint.
	ScopeAdmin Scope = "admin"
	// ScopeOnline is the online channel (the web shop, the member app): earn, redeem, reverse,
	// vouchers, actions, signing a member up, reading a member and their QR code, and the
	// program's catalogue.
	ScopeOnline Scope = "online"
	// ScopeReport reads: stores, budgets, conflicts, rejections, the check, expiring points, the
	// program, members and the audit trail. It changes nothing and cannot print a QR code.
	ScopeReport Scope = "report"
)

// Scopes lists the scopes, most powerful first.
var Scopes = []Scope{ScopeAdmin, ScopeOnline, ScopeReport}

// routeScopes maps each route of the HTTP API (its ServeMux pattern) to the scopes other than
// admin that may call it. Admin keys may call every route. A route missing here is admin-only,
// so a new endpoint is closed to online and report keys until it is added. docs/API.md's scope
// table is this table.
var routeScopes = map[string][]Scope{
	"GET /v1/stores":                {ScopeReport},
	"POST /v1/stores":               nil,
	"PUT /v1/stores/{id}/timezone":  nil,
	"POST /v1/stores/{id}/token":    nil,
	"POST /v1/stores/{id}/writeoff": nil,

	"POST /v1/members":            {ScopeOnline}, // members sign up in the web shop and the app
	"GET /v1/members/{id}":        {ScopeOnline, ScopeReport},
	"GET /v1/members/{id}/qr":     {ScopeOnline}, // a member QR token spends points: not for report keys
	"GET /v1/members/{id}/qr.png": {ScopeOnline},
	"PATCH /v1/members/{id}":      {ScopeOnline}, // members change their details in the web shop and the app
	"POST /v1/members/{id}/erase": nil,           // erasure is an operator's decision
	"GET /v1/members/{id}/export": nil,           // holds everything, voucher codes included

	"POST /v1/members/{id}/card-links":        {ScopeOnline}, // the web shop sends members their card link
	"POST /v1/members/{id}/card-links/revoke": {ScopeOnline},

	"GET /v1/program": {ScopeOnline, ScopeReport},
	"PUT /v1/program": nil,
	"GET /v1/rewards": {ScopeOnline, ScopeReport},

	"POST /v1/earn":     {ScopeOnline},
	"POST /v1/redeem":   {ScopeOnline},
	"POST /v1/reverse":  {ScopeOnline},
	"POST /v1/vouchers": {ScopeOnline},
	"POST /v1/actions":  {ScopeOnline},

	"GET /v1/conflicts":  {ScopeReport},
	"GET /v1/rejections": {ScopeReport},
	"GET /v1/check":      {ScopeReport},
	"GET /v1/budgets":    {ScopeReport},
	"GET /v1/expiring":   {ScopeReport},

	"GET /v1/reports/summary": {ScopeReport},
	"GET /v1/reports/cohorts": {ScopeReport},
	"GET /v1/reports/stores":  {ScopeReport},

	"GET /v1/keys":         nil,
	"POST /v1/keys/rotate": nil,

	"POST /v1/api-keys":        nil,
	"GET /v1/api-keys":         nil,
	"DELETE /v1/api-keys/{id}": nil,
	"GET /v1/audit":            {ScopeReport},

	"POST /v1/webhooks":                    nil,
	"GET /v1/webhooks":                     nil, // URLs often carry the receiver's secret: admin only
	"GET /v1/webhooks/{id}":                nil,
	"PATCH /v1/webhooks/{id}":              nil,
	"DELETE /v1/webhooks/{id}":             nil,
	"GET /v1/webhooks/{id}/deliveries":     nil,
	"POST /v1/webhooks/{id}/replay":        nil,
	"POST /v1/webhooks/{id}/rotate-secret": nil,
	"GET /v1/members":                      {ScopeReport}, // search (migrate_http.go)
	"POST /v1/adjustments":                 nil,
	"POST /v1/adjustments/{id}/reverse":    nil,
	"POST /v1/imports":                     nil,
	"GET /v1/exports/{what}":               {ScopeReport},
}

// Allows reports whether a key of scope s may call the route with this ServeMux pattern.
func (s Scope) Allows(pattern string) bool {
	return s == ScopeAdmin || slices.Contains(routeScopes[pattern], s)
}

func validScope(s Scope) error {
	if !slices.Contains(Scopes, s) {
		return loyalty.Errorf(loyalty.EINVALID, "scope %q is not one of admin, online, report", loyalty.Truncate(string(s), 40))
	}
	return nil
}

// APIKey is an API key as the hub keeps it: never the key itself, only its SHA-256 hash.
type APIKey struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scope     Scope     `json:"scope"`
	Hash      string    `json:"-"` // hex SHA-256 of the key
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"` // the key id that created it ("config", "cli", or an API key's id)
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Actor returns the key as the actor of a request.
func (k APIKey) Actor() Actor { return Actor{KeyID: k.ID, KeyName: k.Name, Scope: k.Scope} }

// NewAPIKey is a created key with its secret, which is shown only in this answer.
type NewAPIKey struct {
	APIKey
	Key string `json:"key"`
}

// apiKeyPrefix starts every API key, so that a leaked key is recognisable (and secret scanners
// can find it); a bearer credential without it is not looked up.
const apiKeyPrefix = "lk_"

// newAPIKeySecret returns a new API key: the prefix and 256 random bits in base64url.
func newAPIKeySecret() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand: it crashes the program rather than return an error)
	return apiKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// maxKeyName bounds an API key's name.
const maxKeyName = 64

func validKeyName(name string) error {
	if name == "" || utf8.RuneCountInString(name) > maxKeyName || !utf8.ValidString(name) ||
		strings.ContainsFunc(name, unicode.IsControl) || strings.TrimSpace(name) != name {
		return loyalty.Errorf(loyalty.EINVALID,
			"an API key's name is required: 1 to %d characters without control characters or surrounding spaces, such as \"web shop\"", maxKeyName)
	}
	return nil
}

// CreateAPIKey creates an API key with a name and a scope, on behalf of the context's actor,
// and returns it with its secret. The secret is shown only this once: the hub keeps its hash.
// The creation is audited in the same transaction.
func (h *Hub) CreateAPIKey(ctx context.Context, name string, scope Scope) (NewAPIKey, error) {
	if err := validKeyName(name); err != nil {
		return NewAPIKey{}, err
	}
	if err := validScope(scope); err != nil {
		return NewAPIKey{}, err
	}
	secret := newAPIKeySecret()
	k := APIKey{ID: "ak-" + strings.ToLower(rand.Text()[:12]), Name: name, Scope: scope, Hash: hashToken(secret),
		CreatedAt: h.Now().UTC().Truncate(time.Millisecond), CreatedBy: ActorFrom(ctx).KeyID}
	err := h.Store.Update(ctx, func(tx Tx) error {
		if err := tx.InsertAPIKey(ctx, k); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditAPIKeyAdd, k.ID, fmt.Sprintf("name %q, scope %s", k.Name, k.Scope))
	})
	if err != nil {
		return NewAPIKey{}, err
	}
	return NewAPIKey{APIKey: k, Key: secret}, nil
}

// APIKeys lists the API keys, revoked ones included, oldest first. The secrets are not there.
func (h *Hub) APIKeys(ctx context.Context) ([]APIKey, error) {
	out := []APIKey{}
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.APIKeys(ctx)
		return err
	})
	if out == nil {
		out = []APIKey{}
	}
	return out, err
}

// RevokeAPIKey revokes an API key: from the next request on, it is refused. Revoking a revoked
// key changes nothing and returns it as it is. The revocation is audited in its transaction.
func (h *Hub) RevokeAPIKey(ctx context.Context, id string) (APIKey, error) {
	if id == ConfigActor.KeyID {
		return APIKey{}, loyalty.Errorf(loyalty.EINVALID,
			"the bootstrap key is admin_api_key in the hub's configuration: to replace it, set a new admin_api_key and restart the hub")
	}
	var k APIKey
	err := h.Store.Update(ctx, func(tx Tx) error {
		var err error
		if k, err = tx.APIKey(ctx, id); err != nil {
			return err
		}
		if !k.RevokedAt.IsZero() {
			return nil
		}
		k.RevokedAt = h.Now().UTC().Truncate(time.Millisecond)
		if err := tx.RevokeAPIKey(ctx, id, k.RevokedAt); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditAPIKeyRevoke, k.ID, fmt.Sprintf("name %q, scope %s", k.Name, k.Scope))
	})
	return k, err
}

// AuthenticateAPIKey returns the key a request's bearer secret belongs to. An unknown or revoked
// key is EUNAUTHORIZED, with a message that never repeats the key. The lookup is by the SHA-256
// of the secret: a caller cannot learn a stored hash from how long the lookup takes, and the
// hash of a 256-bit random key cannot be guessed.
func (h *Hub) AuthenticateAPIKey(ctx context.Context, secret string) (APIKey, error) {
	if !strings.HasPrefix(secret, apiKeyPrefix) {
		return APIKey{}, errWrongKey
	}
	var k APIKey
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		k, err = tx.APIKeyByHash(ctx, hashToken(secret))
		return err
	})
	switch {
	case loyalty.ErrorCode(err) == loyalty.ENOTFOUND:
		return APIKey{}, errWrongKey
	case err != nil:
		return APIKey{}, err
	case !k.RevokedAt.IsZero():
		return APIKey{}, loyalty.Errorf(loyalty.EUNAUTHORIZED,
			"this API key was revoked; ask the hub's operator for a new one (loyalty apikey add) and send it as Authorization: Bearer <key>")
	}
	return k, nil
}

// errWrongKey answers a request without a bearer key, or with one the hub does not know.
var errWrongKey = loyalty.Errorf(loyalty.EUNAUTHORIZED,
	"missing or wrong API key; send Authorization: Bearer <key> with the hub's admin_api_key or an API key from an operator (loyalty apikey add)")
