// Package seal keeps secrets at rest encrypted under a key-encryption key (KEK): AES-256-GCM,
// with the secret's own id as additional data so a sealed value cannot be moved to another row.
// The hub seals its QR signing keys with it, so a copy of the database alone cannot sign.
//
// A KEK is 32 random bytes, written as standard base64 (44 characters). A sealed value names the
// KEK's fingerprint, so opening it with another KEK fails with a message saying which one it needs.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeySize is the length of a KEK in bytes.
const KeySize = 32

// magic starts every sealed value, followed by the KEK's 8-byte fingerprint, the nonce and the
// ciphertext with its tag.
var magic = []byte("LSEAL1")

// Box seals and opens values under one KEK.
type Box struct {
	aead cipher.AEAD
	fp   [8]byte
	root [32]byte // HMAC key of Derive
}

// New returns a Box for a 32-byte KEK.
func New(kek []byte) (*Box, error) {
	if len(kek) != KeySize {
		return nil, fmt.Errorf("a key-encryption key is %d bytes (44 characters of base64), not %d", KeySize, len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	b := &Box{aead: aead}
	sum := sha256.Sum256(append([]byte("loyalty kek fingerprint\x00"), kek...))
	copy(b.fp[:], sum[:])
	m := hmac.New(sha256.New, kek)
	m.Write([]byte("loyalty derived keys"))
	copy(b.root[:], m.Sum(nil))
	return b, nil
}

// Derive returns a 32-byte key for label, derived from the KEK (HMAC-SHA256): every hub process
// given the same KEK derives the same key, and no derived key tells the KEK or another label's
// key. The web pages sign their session cookies and member card links with one. A new KEK
// (loyalty keys rekey) derives new keys, so those sessions and links end with the old KEK.
func (b *Box) Derive(label string) []byte {
	m := hmac.New(sha256.New, b.root[:])
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Parse reads a KEK written as base64.
func Parse(s string) (*Box, error) {
	kek, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("a key-encryption key is 44 characters of base64 (make one with `loyalty keys kek`): %w", err)
	}
	return New(kek)
}

// Generate returns a new random KEK, as base64.
func Generate() string {
	kek := make([]byte, KeySize)
	rand.Read(kek) // never fails (crypto/rand)
	return base64.StdEncoding.EncodeToString(kek)
}

// LoadFile reads a KEK from a file holding its base64.
func LoadFile(path string) (*Box, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	box, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("key-encryption key file %s: %w", path, err)
	}
	return box, nil
}

// CreateFile writes a new random KEK to a file that must not exist yet, readable by its owner only.
func CreateFile(path string) (*Box, error) {
	s := Generate()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return Parse(s)
}

// Fingerprint names the KEK without revealing it: 16 hex digits.
func (b *Box) Fingerprint() string { return hex.EncodeToString(b.fp[:]) }

// Seal encrypts plain, bound to id.
func (b *Box) Seal(plain []byte, id string) []byte {
	nonce := make([]byte, b.aead.NonceSize())
	rand.Read(nonce)
	out := append(append(append([]byte{}, magic...), b.fp[:]...), nonce...)
	return b.aead.Seal(out, nonce, plain, []byte(id))
}

// ErrWrongKey means a value was sealed under another KEK.
var ErrWrongKey = errors.New("sealed with another key-encryption key")

// Open decrypts a value sealed for id.
func (b *Box) Open(sealed []byte, id string) ([]byte, error) {
	fp, ok := FingerprintOf(sealed)
	if !ok {
		return nil, errors.New("not a sealed value")
	}
	if fp != b.Fingerprint() {
		return nil, fmt.Errorf("%w (fingerprint %s; this one is %s)", ErrWrongKey, fp, b.Fingerprint())
	}
	rest := sealed[len(magic)+len(b.fp):]
	n := b.aead.NonceSize()
	if len(rest) < n {
		return nil, errors.New("a sealed value cut short")
	}
	plain, err := b.aead.Open(nil, rest[:n], rest[n:], []byte(id))
	if err != nil {
		return nil, fmt.Errorf("a sealed value that does not open (altered, or moved from another row): %w", err)
	}
	return plain, nil
}

// FingerprintOf returns the fingerprint of the KEK a value was sealed under, if it is sealed.
func FingerprintOf(sealed []byte) (string, bool) {
	if !bytes.HasPrefix(sealed, magic) || len(sealed) < len(magic)+8 {
		return "", false
	}
	return hex.EncodeToString(sealed[len(magic) : len(magic)+8]), true
}

// NewRandom returns a Box for a new random KEK, for tests and throwaway hubs.
func NewRandom() *Box {
	b, err := Parse(Generate())
	if err != nil {
		panic(err) // a generated key always parses
	}
	return b
}
