package hub_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// FuzzExpiringCursor: GET /v1/expiring's after is refused with EINVALID, or is read as a place
// whose cursor is the very text given: no two texts lead to one place, and what a page writes
// is read back as it was.
func FuzzExpiringCursor(f *testing.F) {
	for _, s := range []string{"", "MTgyNTM0NTgwMDAwMDptMDI", "not a cursor", "MA", "MDo", "OngwMQ",
		base64.RawURLEncoding.EncodeToString([]byte("-62135596800000:m1")),
		base64.RawURLEncoding.EncodeToString([]byte("9223372036854775807:m\x00")),
		base64.RawURLEncoding.EncodeToString([]byte("+1:m1")),
		base64.StdEncoding.EncodeToString([]byte("1:m1"))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := hub.ParseExpiringCursor(s)
		if err != nil {
			if loyalty.ErrorCode(err) != loyalty.EINVALID {
				t.Fatalf("%q: %v, want EINVALID", s, err)
			}
			return
		}
		if s == "" {
			if c != (hub.DueCursor{}) {
				t.Fatalf("the empty cursor read as %+v, want the start", c)
			}
			return
		}
		if c.ID == "" || c.Pos != 0 || !c.At.Equal(c.At.Truncate(time.Millisecond)) {
			t.Fatalf("%q read as %+v: want a member id, no position and whole milliseconds", s, c)
		}
		if again := hub.ExpiringCursor(c); again != s {
			t.Fatalf("%q read as %+v, which a page writes as %q", s, c, again)
		}
	})
}
