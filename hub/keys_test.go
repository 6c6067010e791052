package hub_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// reopen opens the hub database at path (newDatabase) with kek and initialises it.
func reopen(t *testing.T, path string, kek *seal.Box) (*hub.Hub, error) {
	t.Helper()
	h := hub.New(openStore(t, path))
	h.KEK, h.Logger = kek, slog.New(slog.NewTextHandler(io.Discard, nil))
	return h, h.Init(context.Background())
}

// Finding 1 of the keys issue: the private signing keys sat in clear in the database, so every
// backup could forge member and voucher QR codes. Now the database holds them sealed under a
// key-encryption key kept outside it: its bytes hold no private key, and it does not sign
// without that key.
func TestSigningKeysAreSealed(t *testing.T) {
	ctx := context.Background()
	path := newDatabase(t)
	kek := seal.NewRandom()
	h, err := reopen(t, path, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.RotateKey(ctx); err != nil { // two keys
		t.Fatal(err)
	}
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "m1"}); err != nil {
		t.Fatal(err)
	}
	k, err := h.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	token, err := h.MemberToken(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&qr.Verifier{Keys: []qr.PublicKey{k.Public()}, Now: time.Now}).Verify(token); err != nil {
		t.Fatalf("a token the hub signed with its sealed key does not verify: %v", err)
	}

	// A backup is the database's files (on PostgreSQL, its rows): none holds the private key in
	// any form.
	h.Store.Close()
	raw := storedBytes(t, path)
	for name, secret := range map[string][]byte{"seed": k.Key.Seed(), "private key": k.Key,
		"seed as base64": []byte(base64.StdEncoding.EncodeToString(k.Key.Seed())), "seed as hex": []byte(strings.ToLower(hexOf(k.Key.Seed())))} {
		if bytes.Contains(raw, secret) {
			t.Errorf("the database files hold the signing key's %s", name)
		}
	}

	// Without its key-encryption key the database does not open as a hub that can sign: with
	// another key it does not open at all; with none, tools that do not sign may read it, and
	// signing fails.
	if _, err := reopen(t, path, seal.NewRandom()); err == nil || !strings.Contains(err.Error(), "key-encryption key") {
		t.Errorf("another key-encryption key: Init = %v, want a refusal naming the key-encryption key", err)
	}
	bare, err := reopen(t, path, nil)
	if err != nil {
		t.Fatalf("without a key-encryption key: Init = %v, want a hub that reads but does not sign", err)
	}
	if _, err := bare.MemberToken(ctx, "m1"); err == nil || !strings.Contains(err.Error(), "key-encryption key") {
		t.Errorf("without a key-encryption key: MemberToken = %v, want a refusal naming the key-encryption key", err)
	}
	if _, err := bare.RotateKey(ctx); err == nil {
		t.Error("without a key-encryption key the hub made a signing key")
	}
	h2, err := reopen(t, path, kek)
	if err != nil {
		t.Fatalf("with its own key-encryption key: %v", err)
	}
	if _, err := h2.MemberToken(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// keyedHub opens a new hub database under a new KEK, and returns the hub, where its database
// is, the KEK and the signing key Init made.
func keyedHub(t *testing.T) (*hub.Hub, string, *seal.Box, qr.PrivateKey) {
	t.Helper()
	path := newDatabase(t)
	kek := seal.NewRandom()
	h, err := reopen(t, path, kek)
	if err != nil {
		t.Fatal(err)
	}
	k, err := h.SigningKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h, path, kek, k
}

// A database written before keys were sealed holds its key in clear: the hub seals it at start,
// and the key goes on signing, with the same id.
func TestClearKeyFromAnOlderVersionIsSealed(t *testing.T) {
	ctx := context.Background()
	h, path, kek, k := keyedHub(t)
	h.Store.Close()
	db := openRaw(t, path)
	if _, err := db.Exec(`UPDATE signing_keys SET private_key = ? WHERE kid = ?`, []byte(k.Key), k.ID); err != nil {
		t.Fatal(err)
	}
	db.Close()

	h2, err := reopen(t, path, kek)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := h2.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID != k.ID || !bytes.Equal(k2.Key, k.Key) {
		t.Fatalf("after sealing, the signing key is %s, want the same key %s", k2.ID, k.ID)
	}
	db = openRaw(t, path)
	defer db.Close()
	var stored []byte
	if err := db.QueryRow(`SELECT private_key FROM signing_keys WHERE kid = ?`, k.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if _, sealed := seal.FingerprintOf(stored); !sealed || bytes.Contains(stored, k.Key.Seed()) {
		t.Fatalf("the key is still stored in clear")
	}
}

// Rekey seals every key under a new key-encryption key: the old one no longer opens them.
func TestRekey(t *testing.T) {
	ctx := context.Background()
	path := newDatabase(t)
	old := seal.NewRandom()
	h, err := reopen(t, path, old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	next := seal.NewRandom()
	if n, err := h.Rekey(ctx, next); err != nil || n != 2 {
		t.Fatalf("Rekey = %d, %v; want 2 keys", n, err)
	}
	h.Store.Close()
	if _, err := reopen(t, path, old); err == nil {
		t.Error("the old key-encryption key still opens the signing keys")
	}
	if _, err := reopen(t, path, next); err != nil {
		t.Errorf("the new key-encryption key: %v", err)
	}
}

// The key new codes are signed with is not retired: a key being retired signs nothing from that
// moment, whatever its time, so retiring the key `rotate` had just printed (the obvious mistake)
// left the hub with no key and every member's QR code refused with 404, or signing with an older
// key. The list of keys says which signs and when each other's codes are refused.
func TestSigningKey_RetiringTheOneThatSignsIsRefused(t *testing.T) {
	ctx := hub.WithActor(context.Background(), hub.CLIActor)
	h := openHub(t)
	first, err := h.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next, err := h.RotateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = h.RetireKey(ctx, next.ID, t0.Add(720*time.Hour))
	wantCode(t, err, loyalty.EINVALID, "rotate a new key in first")
	wantCode(t, h.RetireKey(ctx, "nokey", t0), loyalty.ENOTFOUND, "no signing key")
	until := t0.Add(720 * time.Hour).Truncate(time.Millisecond)
	if err := h.RetireKey(ctx, first.ID, until); err != nil {
		t.Fatal(err)
	}
	if k, err := h.SigningKey(ctx); err != nil || k.ID != next.ID {
		t.Fatalf("signing with %v (%v), want %s", k.ID, err, next.ID)
	}
	keys, err := h.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []hub.KeyInfo{{ID: first.ID, NotAfter: until}, {ID: next.ID, Signing: true}}
	if len(keys) != 2 || keys[0].ID != want[0].ID || keys[0].Signing || !keys[0].NotAfter.Equal(until) || keys[1] != want[1] {
		t.Errorf("keys %+v, want %+v", keys, want)
	}
	if _, err := h.MemberToken(ctx, "m1"); err != nil {
		t.Errorf("a member's code after the old key's retirement: %v", err)
	}
}

// A database whose every key was retired (an older version let the signing key be retired) gets
// a new key at the hub's start, as before, and now an entry in the audit trail says so.
func TestSigningKey_MadeAtStartIsAudited(t *testing.T) {
	ctx := context.Background()
	h, path, kek, first := keyedHub(t)
	db := openRaw(t, path)
	if _, err := db.Exec(db.bind(`UPDATE signing_keys SET not_after = ?`), t0.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	h.Store.Close()
	h, err := reopen(t, path, kek)
	if err != nil {
		t.Fatal(err)
	}
	made, err := h.SigningKey(ctx)
	if err != nil || made.ID == first.ID {
		t.Fatalf("the key after every key was retired: %v, %v", made.ID, err)
	}
	entries, err := h.AuditPage(ctx, hub.AuditQuery{Action: hub.AuditSigningKeyRotate, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var details []string
	for _, e := range entries {
		details = append(details, e.Target+": "+e.Detail)
	}
	if len(entries) != 2 || entries[0].Target != made.ID || !strings.Contains(entries[0].Detail, "every QR signing key was retired") ||
		entries[1].Target != first.ID || !strings.Contains(entries[1].Detail, "first QR signing key") {
		t.Errorf("audit entries %q", details)
	}
}

// GET /v1/keys lists the keys as Hub.Keys does, for an admin key.
func TestSigningKey_ListedOnTheAPI(t *testing.T) {
	a := openAKHub(t)
	var rotated qr.PublicKey
	a.mustDo(t, akAdminKey, "POST", "/v1/keys/rotate", "", http.StatusOK, &rotated)
	var got struct{ Keys []hub.KeyInfo }
	a.mustDo(t, akAdminKey, "GET", "/v1/keys", "", http.StatusOK, &got)
	if len(got.Keys) != 2 || got.Keys[0].Signing || !got.Keys[1].Signing || got.Keys[1].ID != rotated.ID {
		t.Errorf("GET /v1/keys: %+v, want two keys, the rotated one %s signing", got.Keys, rotated.ID)
	}
}
