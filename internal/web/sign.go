package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Signer makes and checks values that only the holder of its key could have made: session
// cookies, CSRF tokens, member card links. A signed value reads
// base64url(purpose-free payload) "." expiry-unix "." base64url(HMAC-SHA256(key, purpose|payload|expiry)),
// so a value signed for one purpose (a session) is never accepted for another (a card link).
type Signer struct {
	key []byte
}

// NewSigner returns a Signer with key, which must hold at least 32 random bytes; several
// processes sharing one key accept each other's values.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < 32 {
		return nil, errors.New("web: a signing key needs at least 32 bytes")
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// ErrBadSignature is returned for a value that was not signed by this key for this purpose,
// is malformed, or has expired.
var ErrBadSignature = errors.New("web: not a valid signed value, or it has expired")

// maxSigned bounds a value Verify looks at, so a huge cookie costs nothing.
const maxSigned = 1024

// Sign returns payload signed for purpose, valid until expires.
func (s *Signer) Sign(purpose, payload string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	enc := base64.RawURLEncoding.EncodeToString([]byte(payload))
	return enc + "." + exp + "." + base64.RawURLEncoding.EncodeToString(s.mac(purpose, enc, exp))
}

// Verify returns the payload of a value Sign made for purpose that has not expired at now.
func (s *Signer) Verify(purpose, signed string, now time.Time) (payload string, expires time.Time, err error) {
	if len(signed) > maxSigned {
		return "", time.Time{}, ErrBadSignature
	}
	enc, rest, ok := strings.Cut(signed, ".")
	exp, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return "", time.Time{}, ErrBadSignature
	}
	// The signature must be the one text Sign writes (the decoder skips line breaks and the
	// spare bits of the last character): a changed value is never accepted.
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || base64.RawURLEncoding.EncodeToString(got) != sig || !hmac.Equal(got, s.mac(purpose, enc, exp)) {
		return "", time.Time{}, ErrBadSignature
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return "", time.Time{}, ErrBadSignature
	}
	expires = time.Unix(unix, 0)
	if !now.Before(expires) {
		return "", time.Time{}, ErrBadSignature
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", time.Time{}, ErrBadSignature
	}
	return string(raw), expires, nil
}

func (s *Signer) mac(purpose, enc, exp string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(enc))
	m.Write([]byte{0})
	m.Write([]byte(exp))
	return m.Sum(nil)
}

// Key derives a signing key for the pages from a secret the process already has (the POS
// token, a key from the database), so that restarting, or several processes, agree on it
// without a new setting. label keeps keys derived from one secret for different uses apart.
func Key(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("loyalty web key\x00" + label))
	return m.Sum(nil)
}
