// Package qrtest mints QR signing keys and tokens for tests, including the forged, altered and
// damaged tokens that every verifier must refuse.
package qrtest

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/qr"
)

// Key returns a new signing key.
func Key(tb testing.TB) qr.PrivateKey {
	tb.Helper()
	k, err := qr.NewKey()
	if err != nil {
		tb.Fatalf("new key: %v", err)
	}
	return k
}

// Sign returns a token for c signed with k.
func Sign(tb testing.TB, k qr.PrivateKey, c qr.Claims) string {
	tb.Helper()
	tok, err := qr.Sign(k, c)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return tok
}

// Alter re-encodes a token's payload with fn applied and keeps the original signature.
func Alter(tb testing.TB, token string, fn func(*qr.Claims)) string {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 4 {
		tb.Fatalf("token %q has %d parts, want 4", token, len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		tb.Fatalf("decode payload: %v", err)
	}
	var c qr.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		tb.Fatalf("decode claims: %v", err)
	}
	fn(&c)
	b, _ = json.Marshal(c)
	parts[2] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// Refused returns, by name, member tokens for member that a verifier trusting key must refuse:
// forged by another key (with an unknown and with the same key id), altered (member, expiry),
// cut short, not a token, too long, of another format. good is a valid member token for member
// signed by key; now is the verifier's clock.
func Refused(tb testing.TB, key qr.PrivateKey, good, member string, now time.Time) map[string]string {
	tb.Helper()
	claims := qr.Claims{Type: qr.TypeMember, Member: member, IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix()}
	sameKid := Key(tb)
	sameKid.ID = key.ID
	parts := strings.Split(good, ".")
	return map[string]string{
		"forged unknown key": Sign(tb, Key(tb), claims),
		"forged same kid":    Sign(tb, sameKid, claims),
		"altered member":     Alter(tb, good, func(c *qr.Claims) { c.Member = "bob" }),
		"altered expiry":     Alter(tb, good, func(c *qr.Claims) { c.Expires += 3600 }),
		"truncated":          good[:len(good)-6],
		"truncated at dot":   strings.Join(parts[:3], "."),
		"not a token":        "hello",
		"too long":           good + strings.Repeat("A", qr.MaxTokenLength),
		"wrong prefix":       "LES2" + strings.TrimPrefix(good, qr.Prefix),
	}
}
