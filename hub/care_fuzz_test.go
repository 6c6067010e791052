package hub

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzMemberPatch decodes any JSON as a member update and applies it to a member with details:
// whatever it accepts is within the bounds, and applying it twice changes nothing the second time.
func FuzzMemberPatch(f *testing.F) {
	for _, s := range []string{
		`{"email":" A@B.C ","name":"Ada","country":"GB","birthday":"1990-07-14","attributes":{"k":"v","x.y":null}}`,
		`{"email":null,"name":"","attributes":null}`,
		`{"attributes":{"k":""}}`,
		`{"birthday":"02-29"}`,
		`{"attributes":{"K":"v"}}`,
		`{"name":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	today := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	old := Profile{Email: "old@example.org", Name: "Old", Country: "DE", Birthday: "01-02", Attributes: map[string]string{"a": "1", "b": "2"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var p MemberPatch
		if json.Unmarshal(body, &p) != nil {
			return
		}
		n, changed, err := p.apply(old, today)
		if err != nil {
			if len(old.Attributes) != 2 || old.Attributes["a"] != "1" {
				t.Fatalf("a refused update changed the old profile: %+v", old)
			}
			return
		}
		if len(n.Attributes) > MaxAttributes || n.Attributes != nil && len(n.Attributes) == 0 {
			t.Fatalf("%d attributes", len(n.Attributes))
		}
		for k, v := range n.Attributes {
			if !attributeKey.MatchString(k) || v == "" || !utf8.ValidString(v) || utf8.RuneCountInString(v) > MaxAttributeValue {
				t.Fatalf("attribute %q = %q", k, v)
			}
		}
		for _, c := range []struct {
			v     string
			check func(string) error
		}{{n.Email, validEmail}, {n.Name, validName}, {n.Country, validCountry}} {
			if c.v != "" && c.check(c.v) != nil {
				t.Fatalf("accepted %q: %v", c.v, c.check(c.v))
			}
		}
		again, more, err := p.apply(n, today)
		if err != nil || len(more) > 0 {
			t.Fatalf("applied twice: %v, changed %v (first %v) → %+v", err, more, changed, again)
		}
	})
}
