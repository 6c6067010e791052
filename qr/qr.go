// Package qr mints and verifies the signed member and voucher tokens that loyalty QR codes carry,
// and renders them as PNG.
//
// Only the hub holds private keys (Signer). Agents verify tokens offline with public keys alone
// (Verifier), so no secret that could mint points lives on a point of sale.
//
// A token is printable ASCII:
//
//	LES1.<kid>.<payload>.<signature>
//
// where payload is the base64url (unpadded) JSON of Claims, and signature is the base64url Ed25519
// signature of the bytes "LES1.<kid>.<payload>". The key id (kid) names the signing key so keys can
// rotate: a retired key keeps verifying the tokens it signed until its NotAfter.
package qr

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// Prefix starts every token of this format version.
const Prefix = "LES1"

// MaxTokenLength is the longest token Verify accepts; real tokens are about 200 characters.
const MaxTokenLength = loyalty.MaxPresenceLength

// Token types.
const (
	TypeMember  = "m"
	TypeVoucher = "v"
)

// Claims is what a token asserts.
type Claims struct {
	Type     string `json:"t"`           // TypeMember or TypeVoucher
	Member   string `json:"m"`           // member id
	Voucher  string `json:"v,omitempty"` // voucher id, for vouchers
	Reward   string `json:"r,omitempty"` // reward the voucher is for
	IssuedAt int64  `json:"iat"`         // unix seconds
	Expires  int64  `json:"exp"`         // unix seconds
	KeyID    string `json:"-"`           // the key that signed it, set by Authentic
}

// PublicKey is a verification key as replicated to agents.
type PublicKey struct {
	ID       string            `json:"kid"`
	Key      ed25519.PublicKey `json:"key"`                // JSON: base64
	NotAfter time.Time         `json:"not_after,omitzero"` // zero: no end
}

// PrivateKey is a hub signing key.
type PrivateKey struct {
	ID       string
	Key      ed25519.PrivateKey
	NotAfter time.Time
}

// NewKey generates a signing key with a random id.
func NewKey() (PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("generate key: %w", err)
	}
	id := strings.ToLower(rand.Text()[:8])
	return PrivateKey{ID: "k" + id, Key: priv}, nil
}

// Public returns the verification half of k.
func (k PrivateKey) Public() PublicKey {
	return PublicKey{ID: k.ID, Key: k.Key.Public().(ed25519.PublicKey), NotAfter: k.NotAfter}
}

// Sign returns a token for c, signed with k.
func Sign(k PrivateKey, c Claims) (string, error) {
	if c.Type != TypeMember && c.Type != TypeVoucher {
		return "", loyalty.Errorf(loyalty.EINVALID, "unknown token type %q", c.Type)
	}
	if strings.Contains(k.ID, ".") || k.ID == "" {
		return "", loyalty.Errorf(loyalty.EINVALID, "key id %q must be non-empty and contain no dots", k.ID)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("marshal claims: %w", err)
	}
	signed := Prefix + "." + k.ID + "." + base64.RawURLEncoding.EncodeToString(b)
	sig := ed25519.Sign(k.Key, []byte(signed))
	token := signed + "." + base64.RawURLEncoding.EncodeToString(sig)
	if len(token) > MaxTokenLength { // no till would take it (Authentic)
		return "", loyalty.Errorf(loyalty.EINVALID, "the ids in this code make it %d characters, more than a QR code holds here (%d)", len(token), MaxTokenLength)
	}
	return token, nil
}

// Verifier checks tokens against a set of public keys.
type Verifier struct {
	Keys []PublicKey
	Now  func() time.Time
}

// Verify checks a token's format, signature, key and expiry, and returns its claims. Every
// failure is EINVALID with a message a cashier can act on.
func (v *Verifier) Verify(token string) (Claims, error) {
	c, err := v.Authentic(token)
	if err != nil {
		return c, err
	}
	return c, v.Current(c)
}

// Authentic checks that a token is well formed and signed by a known key, whether or not it is
// still current. A POS retry of a call approved before the code expired is still the same call.
func (v *Verifier) Authentic(token string) (Claims, error) {
	token = strings.TrimSpace(token)
	if len(token) > MaxTokenLength {
		return Claims{}, loyalty.Errorf(loyalty.EINVALID, "this is not a loyalty QR code (too long)")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 4 || parts[0] != Prefix {
		return Claims{}, loyalty.Errorf(loyalty.EINVALID, "this is not a loyalty QR code, or it was cut short; scan it again")
	}
	kid, payload, sigText := parts[1], parts[2], parts[3]
	key := v.key(kid)
	if key == nil {
		return Claims{}, loyalty.Errorf(loyalty.EINVALID,
			"QR code signed by unknown key %q: it is forged, or this store has not synced the newest keys", kid)
	}
	// The signature must be in the one text Sign writes for it: the decoder skips line breaks
	// and the spare low bits of the last character, so other texts decode to the same bytes, and
	// a token that is not, character for character, the one the hub signed must not verify.
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil || len(sig) != ed25519.SignatureSize || base64.RawURLEncoding.EncodeToString(sig) != sigText ||
		len(key.Key) != ed25519.PublicKeySize || !ed25519.Verify(key.Key, []byte(Prefix+"."+kid+"."+payload), sig) {
		return Claims{}, loyalty.Errorf(loyalty.EINVALID, "QR code is altered or damaged (signature check failed); do not accept it")
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Claims{}, loyalty.Errorf(loyalty.EINVALID, "QR code payload is damaged")
	}
	var c Claims
	if err := json.Unmarshal(b, &c); err != nil || c.Member == "" || (c.Type != TypeMember && c.Type != TypeVoucher) {
		return Claims{}, loyalty.Errorf(loyalty.EINVALID, "QR code payload is not a member or voucher token")
	}
	// Like the signature, the payload must be the one text Sign writes for its claims: the
	// decoder takes other texts for the same claims (fields missing or twice, unknown fields,
	// other escapes), and what verifies must be what the hub signed, byte for byte.
	if canon, err := json.Marshal(c); err != nil || !bytes.Equal(canon, b) {
		return Claims{}, loyalty.Errorf(loyalty.EINVALID, "QR code payload is not in the form the hub writes; do not accept it")
	}
	if c.Type == TypeVoucher && c.Voucher == "" {
		return Claims{}, loyalty.Errorf(loyalty.EINVALID, "voucher QR code has no voucher id")
	}
	c.KeyID = kid
	return c, nil
}

// Current checks that authentic claims are still valid now: not expired, and their key not retired.
func (v *Verifier) Current(c Claims) error {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	return v.CurrentAt(c, now)
}

// CurrentAt checks that authentic claims were valid at now: not expired, and their key not
// retired. The hub asks it of the code a store scanned for a change, at the change's time.
func (v *Verifier) CurrentAt(c Claims, now time.Time) error {
	if key := v.key(c.KeyID); key == nil {
		return loyalty.Errorf(loyalty.EINVALID, "QR code signed by unknown key %q", c.KeyID)
	} else if !key.NotAfter.IsZero() && now.After(key.NotAfter) {
		return loyalty.Errorf(loyalty.EINVALID, "QR code signed with key %q, which was retired on %s; ask the member for a fresh code",
			c.KeyID, key.NotAfter.UTC().Format(time.DateOnly))
	}
	if c.Expires != 0 && now.Unix() >= c.Expires {
		return loyalty.Errorf(loyalty.EINVALID, "QR code expired on %s; ask the member to refresh it in the app",
			time.Unix(c.Expires, 0).UTC().Format(time.DateOnly))
	}
	return nil
}

func (v *Verifier) key(kid string) *PublicKey {
	for i := range v.Keys {
		if v.Keys[i].ID == kid {
			return &v.Keys[i]
		}
	}
	return nil
}
