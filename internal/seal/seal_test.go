package seal

import (
	"bytes"
	"testing"
)

func TestDerive(t *testing.T) {
	a, _ := New(bytes.Repeat([]byte{1}, KeySize))
	a2, _ := New(bytes.Repeat([]byte{1}, KeySize))
	b, _ := New(bytes.Repeat([]byte{2}, KeySize))
	if !bytes.Equal(a.Derive("web"), a2.Derive("web")) {
		t.Error("two boxes of one KEK derive different keys")
	}
	if bytes.Equal(a.Derive("web"), a.Derive("card")) || bytes.Equal(a.Derive("web"), b.Derive("web")) {
		t.Error("different labels or KEKs derive the same key")
	}
	if len(a.Derive("web")) != 32 {
		t.Error("a derived key is not 32 bytes")
	}
}
