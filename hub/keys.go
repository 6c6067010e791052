package hub

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// The QR signing keys' private halves are stored sealed under the hub's key-encryption key
// (KEK, internal/seal): the database, and so every backup of it, holds no key that can sign a
// member or voucher token. The KEK lives outside the database (keys.kek_file or keys.kek); the
// hub opens a key only to sign with it.

// sealKey seals a new key under the hub's KEK.
func (h *Hub) sealKey(k qr.PrivateKey) StoredKey {
	return StoredKey{ID: k.ID, Public: k.Key.Public().(ed25519.PublicKey), Sealed: h.KEK.Seal(k.Key.Seed(), k.ID), NotAfter: k.NotAfter}
}

// openKey opens a stored key with the hub's KEK.
func (h *Hub) openKey(s StoredKey) (qr.PrivateKey, error) {
	if h.KEK == nil {
		return qr.PrivateKey{}, fmt.Errorf("the hub has no key-encryption key to open its signing keys with: set keys.kek_file (or keys.kek)")
	}
	seed, err := h.KEK.Open(s.Sealed, s.ID)
	if err != nil {
		return qr.PrivateKey{}, fmt.Errorf("signing key %s: %w: give the hub the key-encryption key it was sealed with (keys.kek_file or keys.kek)", s.ID, err)
	}
	if len(seed) != ed25519.SeedSize {
		return qr.PrivateKey{}, fmt.Errorf("signing key %s: a sealed seed of %d bytes", s.ID, len(seed))
	}
	k := ed25519.NewKeyFromSeed(seed)
	if !bytes.Equal(k.Public().(ed25519.PublicKey), s.Public) {
		return qr.PrivateKey{}, fmt.Errorf("signing key %s: its sealed half does not match its public half", s.ID)
	}
	return qr.PrivateKey{ID: s.ID, Key: k, NotAfter: s.NotAfter}, nil
}

// signingKey returns the current signing key, opened.
func (h *Hub) signingKey(ctx context.Context, tx Tx) (qr.PrivateKey, error) {
	s, err := tx.SigningKey(ctx)
	if err != nil {
		return qr.PrivateKey{}, err
	}
	return h.openKey(s)
}

// sealKeys seals keys an older version stored in clear, and checks that every key opens with
// the hub's KEK: a hub given the wrong KEK fails at start, not at the first scan.
func (h *Hub) sealKeys(ctx context.Context, tx Tx) error {
	keys, err := tx.Keys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if _, sealed := seal.FingerprintOf(k.Sealed); !sealed && len(k.Sealed) == ed25519.PrivateKeySize {
			priv := ed25519.PrivateKey(bytes.Clone(k.Sealed))
			if !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()).Public().(ed25519.PublicKey), k.Public) {
				return loyalty.Errorf(loyalty.EINVALID, "signing key %s is stored in clear and does not match its public half: the database was tampered with", k.ID)
			}
			if err := tx.ResealKey(ctx, k.ID, h.KEK.Seal(priv.Seed(), k.ID)); err != nil {
				return err
			}
			h.Logger.Info("sealed a signing key stored in clear by an older version", "key", k.ID)
			continue
		}
		if _, err := h.openKey(k); err != nil {
			return loyalty.Errorf(loyalty.EINVALID, "%v", err)
		}
	}
	return nil
}

// Rekey seals every signing key under a new KEK and makes it the hub's. It returns how many
// keys it resealed. Keep the old KEK until the new one is in place wherever the hub starts.
func (h *Hub) Rekey(ctx context.Context, next *seal.Box) (int, error) {
	n := 0
	err := h.Store.Update(ctx, func(tx Tx) error {
		keys, err := tx.Keys(ctx)
		if err != nil {
			return err
		}
		n = 0
		for _, s := range keys {
			k, err := h.openKey(s)
			if err != nil {
				return loyalty.Errorf(loyalty.EINVALID, "%v", err)
			}
			if err := tx.ResealKey(ctx, s.ID, next.Seal(k.Key.Seed(), s.ID)); err != nil {
				return err
			}
			n++
		}
		return h.resealWebhookSecrets(ctx, tx, next) // webhooks.go
	})
	if err == nil {
		h.KEK = next
	}
	return n, err
}

// SigningKey returns the current signing key, opened: for tools and tests that sign tokens the
// hub itself would not (expired ones, say).
func (h *Hub) SigningKey(ctx context.Context) (qr.PrivateKey, error) {
	var k qr.PrivateKey
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		k, err = h.signingKey(ctx, tx)
		return err
	})
	return k, err
}

// WebKey returns the key the web pages sign with for label ("sessions", "cards"): derived from
// the hub's KEK, so every hub process of a chain signs and checks alike, and nothing of it is
// in the database. A new KEK (Rekey) makes new keys: dashboard sessions and member card links
// made under the old KEK end.
func (h *Hub) WebKey(label string) ([]byte, error) {
	if h.KEK == nil {
		return nil, fmt.Errorf("the hub has no key-encryption key to derive its web keys from: set keys.kek_file (or keys.kek)")
	}
	return h.KEK.Derive("web\x00" + label), nil
}
