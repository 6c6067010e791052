package qr_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
	"github.com/loyalty-edge-sync/loyalty/qr/qrtest"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestVerify(t *testing.T) {
	k := qrtest.Key(t)
	other := qrtest.Key(t)
	member := qr.Claims{Type: qr.TypeMember, Member: "m1", IssuedAt: now.Unix(), Expires: now.Add(time.Hour).Unix()}
	good := qrtest.Sign(t, k, member)
	v := qr.Verifier{Keys: []qr.PublicKey{k.Public()}, Now: func() time.Time { return now }}

	got, err := v.Verify(good)
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	want := member
	want.KeyID = k.ID
	if got != want {
		t.Errorf("claims: got %+v, want %+v", got, want)
	}

	parts := strings.Split(good, ".")
	forged := qr.Claims{Type: qr.TypeMember, Member: "m2", IssuedAt: now.Unix()}
	body, _ := base64.RawURLEncoding.DecodeString(parts[2])
	altered := strings.Replace(string(body), `"m1"`, `"m2"`, 1)
	for name, tc := range map[string]struct {
		token string
		want  string // part of the message
	}{
		"altered payload":   {parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString([]byte(altered)) + "." + parts[3], "altered"},
		"altered signature": {alterSignature(t, good), "altered"},
		"truncated":         {good[:len(good)/2], ""},
		"missing signature": {strings.Join(parts[:3], "."), "cut short"},
		"unknown key":       {qrtest.Sign(t, other, forged), "unknown key"},
		"other key, same kid": {func() string {
			o := other
			o.ID = k.ID
			return qrtest.Sign(t, o, forged)
		}(), "altered"},
		"expired":    {qrtest.Sign(t, k, qr.Claims{Type: qr.TypeMember, Member: "m1", Expires: now.Add(-time.Second).Unix()}), "expired"},
		"not ours":   {"https://example.com/promo", "not a loyalty"},
		"empty":      {"", "not a loyalty"},
		"too long":   {strings.Repeat("A", qr.MaxTokenLength+1), "too long"},
		"wrong type": {qrtest.Sign(t, k, qr.Claims{Type: qr.TypeVoucher, Member: "m1"}), "no voucher id"},
	} {
		_, err := v.Verify(tc.token)
		if code := loyalty.ErrorCode(err); code != loyalty.EINVALID {
			t.Errorf("%s: code %q, want EINVALID", name, code)
			continue
		}
		if !strings.Contains(loyalty.ErrorMessage(err), tc.want) {
			t.Errorf("%s: message %q does not say %q", name, loyalty.ErrorMessage(err), tc.want)
		}
	}
}

func TestVerify_RetiredKey(t *testing.T) {
	k := qrtest.Key(t)
	token := qrtest.Sign(t, k, qr.Claims{Type: qr.TypeMember, Member: "m1"})
	pub := k.Public()
	pub.NotAfter = now.Add(time.Hour)
	v := qr.Verifier{Keys: []qr.PublicKey{pub}, Now: func() time.Time { return now }}
	if _, err := v.Verify(token); err != nil {
		t.Fatalf("before retirement: %v", err)
	}
	v.Now = func() time.Time { return now.Add(2 * time.Hour) }
	if _, err := v.Verify(token); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Fatalf("after retirement: %v, want EINVALID", err)
	}
}

func TestSign_Rejects(t *testing.T) {
	k := qrtest.Key(t)
	if _, err := qr.Sign(k, qr.Claims{Type: "x", Member: "m1"}); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("unknown type: %v", err)
	}
	k.ID = "a.b"
	if _, err := qr.Sign(k, qr.Claims{Type: qr.TypeMember, Member: "m1"}); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("dotted key id: %v", err)
	}
}

// TestPNG_DecodesWithZbar renders a token and reads it back with an independent QR reader.
// CI installs zbar-tools; elsewhere the test is skipped with a loud reason if zbarimg is missing.
func TestPNG_DecodesWithZbar(t *testing.T) {
	zbar, err := exec.LookPath("zbarimg")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("zbarimg is required in CI (apt-get install zbar-tools)")
		}
		t.Skip("SKIPPED: zbarimg not installed (apt-get install zbar-tools); the PNG was not checked with an independent reader")
	}
	k := qrtest.Key(t)
	token := qrtest.Sign(t, k, qr.Claims{Type: qr.TypeMember, Member: "member-with-a-long-id-0123456789", IssuedAt: now.Unix(), Expires: now.Add(2 * 365 * 24 * time.Hour).Unix()})
	png, err := qr.PNG(token, 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "member.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(zbar, "--quiet", "--raw", path).Output()
	if err != nil {
		t.Fatalf("zbarimg: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != token {
		t.Fatalf("decoded %q, want %q", got, token)
	}
}

// TestAuthenticIgnoresExpiry: an expired code is still authentic (a POS retry of a call approved
// before it expired is the same call) but no longer current.
func TestAuthenticIgnoresExpiry(t *testing.T) {
	k := qrtest.Key(t)
	token := qrtest.Sign(t, k, qr.Claims{Type: qr.TypeMember, Member: "m1", Expires: now.Add(-time.Minute).Unix()})
	v := qr.Verifier{Keys: []qr.PublicKey{k.Public()}, Now: func() time.Time { return now }}
	c, err := v.Authentic(token)
	if err != nil || c.Member != "m1" || c.KeyID != k.ID {
		t.Fatalf("Authentic: %+v, %v", c, err)
	}
	if err := v.Current(c); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("Current: %v, want EINVALID", err)
	}
	if _, err := v.Authentic(alterSignature(t, token)); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("Authentic of an altered token: %v, want EINVALID", err)
	}
}

// alterSignature returns token with one bit of its signature flipped. (Overwriting the last
// characters with "AA" left the token as it was whenever it already ended that way, and a new last
// character may differ only in spare bits that do not change the signature.)
func alterSignature(t *testing.T, token string) string {
	t.Helper()
	i := strings.LastIndex(token, ".") + 1
	sig, err := base64.RawURLEncoding.DecodeString(token[i:])
	if err != nil || len(sig) == 0 {
		t.Fatalf("token %q has no signature to alter: %v", token, err)
	}
	sig[len(sig)/2] ^= 0x10
	altered := token[:i] + base64.RawURLEncoding.EncodeToString(sig)
	if altered == token {
		t.Fatal("altering the signature left the token as it was")
	}
	return altered
}

// TestAuthentic_PayloadAsTheHubWritesIt: a token signed by a trusted key whose payload holds the
// claims of a member in another text than Sign writes (a field left out, an unknown field, the
// fields in another order, other escapes) is refused: what verifies is what the hub signed. And
// Sign refuses claims whose code would be longer than any till takes.
func TestAuthentic_PayloadAsTheHubWritesIt(t *testing.T) {
	k, err := qr.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	v := &qr.Verifier{Keys: []qr.PublicKey{k.Public()}}
	good, err := qr.Sign(k, qr.Claims{Type: qr.TypeMember, Member: "m<1", IssuedAt: 100, Expires: 200})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Authentic(good); err != nil {
		t.Fatalf("the hub's own token: %v", err)
	}
	for _, payload := range []string{
		`{"t":"m","m":"m\u003c1","iat":100}`,
		`{"t":"m","m":"m\u003c1","iat":100,"exp":200,"x":1}`,
		`{"m":"m\u003c1","t":"m","iat":100,"exp":200}`,
		`{"t":"m","m":"m<1","iat":100,"exp":200}`,
		`{"t":"m", "m":"m\u003c1","iat":100,"exp":200}`,
	} {
		signed := qr.Prefix + "." + k.ID + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
		token := signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(k.Key, []byte(signed)))
		if _, err := v.Authentic(token); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("payload %s: %v, want EINVALID", payload, err)
		}
	}
	if _, err := qr.Sign(k, qr.Claims{Type: qr.TypeMember, Member: strings.Repeat("\x01", 200)}); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("a code longer than a till takes: %v, want EINVALID", err)
	}
}
