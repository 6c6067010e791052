package qr_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// The fuzz tests use fixed keys, so that the tokens they sign are the same on every run and the
// seed corpus in testdata/fuzz can hold them: ed25519 signatures are deterministic.
var (
	fuzzKey     = seededKey("kfuzz001", "loyalty qr fuzz key 1", time.Time{})
	fuzzRetired = seededKey("kfuzz002", "loyalty qr fuzz key 2", now.Add(-24*time.Hour)) // trusted, retired yesterday
	fuzzForger  = seededKey("kforger1", "loyalty qr fuzz forger", time.Time{})           // not trusted
)

func seededKey(id, seed string, notAfter time.Time) qr.PrivateKey {
	s := sha256.Sum256([]byte(seed))
	return qr.PrivateKey{ID: id, Key: ed25519.NewKeyFromSeed(s[:]), NotAfter: notAfter}
}

// fuzzVerifier trusts fuzzKey and fuzzRetired, not fuzzForger.
func fuzzVerifier() *qr.Verifier {
	return &qr.Verifier{Keys: []qr.PublicKey{fuzzKey.Public(), fuzzRetired.Public()}, Now: func() time.Time { return now }}
}

// fuzzSigned returns every token the trusted keys signed for the fuzz tests, with the claims
// Authentic must return for it. These, and only these, may be accepted. testdata/fuzz/FuzzVerify
// holds them (signed-*) and altered copies as seeds: if the keys, the claims or the token format
// change, write the seeds again from the tokens this returns.
func fuzzSigned(tb testing.TB) map[string]qr.Claims {
	tb.Helper()
	signed := map[string]qr.Claims{}
	for _, s := range []struct {
		key qr.PrivateKey
		c   qr.Claims
	}{
		{fuzzKey, qr.Claims{Type: qr.TypeMember, Member: "m1", IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix()}},
		{fuzzKey, qr.Claims{Type: qr.TypeMember, Member: "m1"}}, // no expiry
		{fuzzKey, qr.Claims{Type: qr.TypeVoucher, Member: "m1", Voucher: "v1", Reward: "coffee", IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix()}},
		{fuzzKey, qr.Claims{Type: qr.TypeMember, Member: "m2", IssuedAt: now.Add(-2 * time.Hour).Unix(), Expires: now.Add(-time.Hour).Unix()}}, // expired
		{fuzzRetired, qr.Claims{Type: qr.TypeMember, Member: "m1", IssuedAt: now.Add(-48 * time.Hour).Unix()}},                                 // retired key
	} {
		tok, err := qr.Sign(s.key, s.c)
		if err != nil {
			tb.Fatal(err)
		}
		s.c.KeyID = s.key.ID
		signed[tok] = s.c
	}
	return signed
}

// FuzzVerify feeds arbitrary strings to Verifier.Authentic and Verify, the parsers a POS runs on
// whatever a scanner reads. Run it with
//
//	go test -run '^$' -fuzz '^FuzzVerify$' -fuzztime 60s ./qr/
//
// Neither may panic, every refusal is EINVALID, and a token is accepted only if it is, but for the
// surrounding white space that scanners add, exactly one the trusted keys signed, with exactly
// the claims they signed. So no change to a signed token (a flipped bit, another character, an
// inserted one) is accepted, whether or not it would change the claims. For the signed tokens
// themselves (in the seed corpus) it also tries a change to every byte.
func FuzzVerify(f *testing.F) {
	signed := fuzzSigned(f)
	f.Fuzz(func(t *testing.T, token string) {
		checkOnlySignedAccepted(t, fuzzVerifier(), signed, token, true)
		if _, ok := signed[token]; ok {
			// Every byte changed in turn (its low bit flipped: a different character, and for
			// the signature's last one a neighbour in the alphabet that may share its bits).
			for i := range len(token) {
				b := []byte(token)
				b[i] ^= 1
				checkOnlySignedAccepted(t, fuzzVerifier(), signed, string(b), false)
			}
		}
	})
}

// checkOnlySignedAccepted checks that v accepts token only as one of the signed tokens. It
// checks Verify as well if alsoVerify, or if Authentic accepted the token.
func checkOnlySignedAccepted(t *testing.T, v *qr.Verifier, signed map[string]qr.Claims, token string, alsoVerify bool) {
	t.Helper()
	c, err := v.Authentic(token)
	if err != nil {
		if code := loyalty.ErrorCode(err); code != loyalty.EINVALID {
			t.Fatalf("Authentic(%q) refused with %s, want EINVALID: %v", token, code, err)
		}
		if c != (qr.Claims{}) {
			t.Fatalf("Authentic(%q) refused but returned claims %+v", token, c)
		}
		if !alsoVerify {
			return
		}
	} else {
		want, ok := signed[strings.TrimSpace(token)]
		if !ok {
			t.Fatalf("Authentic accepted a token the trusted keys never signed: %q (claims %+v)", token, c)
		}
		if c != want {
			t.Fatalf("Authentic(%q) = %+v, want the signed claims %+v", token, c, want)
		}
	}
	vc, verr := v.Verify(token)
	if verr != nil {
		if code := loyalty.ErrorCode(verr); code != loyalty.EINVALID {
			t.Fatalf("Verify(%q) refused with %s, want EINVALID: %v", token, code, verr)
		}
		return
	}
	if err != nil || vc != c {
		t.Fatalf("Verify(%q) accepted %+v where Authentic said %+v, %v", token, vc, c, err)
	}
	if v.Current(vc) != nil {
		t.Fatalf("Verify(%q) accepted claims that are not current: %+v", token, vc)
	}
}

// FuzzParse fuzzes what is behind the signature check, which FuzzVerify cannot reach without the
// private key: the key id and the payload, signed here with the trusted key. Run it with
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 60s ./qr/
//
// Authentic must not panic, must refuse with EINVALID, and what it accepts must be a well-formed
// claim of a known type from the key it names, that signs and verifies again to the same claims.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, kid string, payload []byte) {
		signedPart := qr.Prefix + "." + kid + "." + base64.RawURLEncoding.EncodeToString(payload)
		token := signedPart + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(fuzzKey.Key, []byte(signedPart)))
		pub := fuzzKey.Public()
		pub.ID = kid
		v := &qr.Verifier{Keys: []qr.PublicKey{pub}, Now: func() time.Time { return now }}
		c, err := v.Authentic(token)
		if err != nil {
			if code := loyalty.ErrorCode(err); code != loyalty.EINVALID {
				t.Fatalf("Authentic refused kid %q payload %q with %s, want EINVALID: %v", kid, payload, code, err)
			}
			return
		}
		switch {
		case strings.Contains(kid, "."):
			t.Fatalf("accepted a key id with a dot: %q", kid)
		case c.KeyID != kid:
			t.Fatalf("claims name key %q, signed by %q", c.KeyID, kid)
		case c.Member == "":
			t.Fatalf("accepted claims without a member: %+v from %q", c, payload)
		case c.Type != qr.TypeMember && c.Type != qr.TypeVoucher:
			t.Fatalf("accepted claims of type %q: %+v from %q", c.Type, c, payload)
		case c.Type == qr.TypeVoucher && c.Voucher == "":
			t.Fatalf("accepted a voucher without a voucher id: %+v from %q", c, payload)
		}
		// What was accepted is what the hub would sign for those claims.
		k := fuzzKey
		k.ID = kid
		unsigned := c
		unsigned.KeyID = ""
		if kid == "" { // Sign refuses an empty key id; nothing else may stop it
			return
		}
		again, err := qr.Sign(k, unsigned)
		if err != nil {
			t.Fatalf("accepted claims %+v do not sign again: %v", c, err)
		}
		c2, err := v.Authentic(again)
		if err != nil || c2 != c {
			t.Fatalf("accepted claims %+v from %q; signed again they verify as %+v, %v", c, payload, c2, err)
		}
	})
}

// TestVerify_SignatureIsCanonical: the base64 of a signature has spare bits in its last
// character, and the decoder skips line breaks; a token whose signature text differs from the
// one the hub made is not the token the hub made, even when it decodes to the same bytes.
func TestVerify_SignatureIsCanonical(t *testing.T) {
	v := fuzzVerifier()
	for tok := range fuzzSigned(t) {
		if _, err := v.Authentic(tok); err != nil {
			t.Fatalf("signed token refused: %v", err)
		}
		i := strings.LastIndex(tok, ".") + 1
		sig := tok[i:]
		var variants []string
		for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
			if string(c) != sig[len(sig)-1:] {
				variants = append(variants, tok[:len(tok)-1]+string(c))
			}
		}
		variants = append(variants,
			tok[:i]+sig[:40]+"\n"+sig[40:], tok[:i]+sig[:40]+"\r\n"+sig[40:], tok[:i]+"\r"+sig, tok+"=", tok+"==",
			tok[:i]+base64.URLEncoding.EncodeToString(mustDecode(t, sig)), // padded
			tok[:i]+base64.StdEncoding.EncodeToString(mustDecode(t, sig)), // other alphabet, padded
		)
		for _, alt := range variants {
			if _, err := v.Authentic(alt); err == nil {
				t.Errorf("accepted %q, a different text for the signature of %q", alt, tok)
			}
		}
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
