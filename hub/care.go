// Member care: updating a member's personal details, and the GDPR pair, exporting everything the
// hub holds about one member and erasing their personal data.

package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
)

// Bounds of a member's attributes: free-form key/value strings an operator keeps on a member.
const (
	MaxAttributes     = 32  // attributes per member
	MaxAttributeValue = 500 // characters of one value
	MaxNameLength     = 200 // characters of a member's name
)

var attributeKey = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// CountryMismatch is why a sale is rejected whose country is not the member's at the hub and
// changes its points. It does not name the country: an erased member's rejections keep it.
// Rejections recorded before it named the country, as OldCountryMismatch matches (a LIKE
// pattern); EraseMember rewrites those of the member to CountryMismatch.
const (
	CountryMismatch    = "the member's country at the hub is not the one this sale was stamped with, and its points depend on it"
	OldCountryMismatch = "the member's country is not %"
)

// CareTx is what member care needs of the storage (a part of Tx).
type CareTx interface {
	// MemberProfile returns what the hub keeps about a member beyond what stores receive: their
	// birthday, attributes and when they were erased. It returns ENOTFOUND.
	MemberProfile(ctx context.Context, id string) (Profile, error)
	// SetMemberProfile writes a member's email (lower case; "" for none), name, country,
	// birthday and attributes, and their change version. It returns ENOTFOUND, or EDUPLICATE
	// if another member has the email.
	SetMemberProfile(ctx context.Context, id string, p Profile, version int64) error
	// EraseMember clears a member's personal data in one statement per table: their email,
	// name, country, birthday and attributes, and the country that their deltas and rejected
	// deltas carry, in the deltas and in the rejections' messages (OldCountryMismatch); it records when (Profile.ErasedAt) and sets the change version. The member's
	// id, balance, tier, ledger and budgets' charges stay. It returns ENOTFOUND.
	EraseMember(ctx context.Context, id string, at time.Time, version int64) error
	// NotePastCountry records that country was member's until until (an update changed it).
	NotePastCountry(ctx context.Context, member, country string, until time.Time) error
	// PastCountries returns the countries member had that ended after since, newest first.
	// EraseMember forgets them all.
	PastCountries(ctx context.Context, member string, since time.Time) ([]PastCountry, error)
	// ForgetPastCountries deletes every member's countries that ended before before, and
	// returns how many.
	ForgetPastCountries(ctx context.Context, before time.Time) (int, error)
	// LedgerAfter returns up to limit of a member's ledger entries with a sequence number after
	// after, oldest first: the member's whole ledger, page by page.
	LedgerAfter(ctx context.Context, member string, after int64, limit int) ([]LedgerEntry, error)
	// MemberRecords returns the rows about a member other than the ledger (MemberRecords).
	MemberRecords(ctx context.Context, member string) (MemberRecords, error)
}

// Profile is a member's personal details as member care reads and writes them.
type Profile struct {
	Email      string            `json:"email,omitempty"`
	Name       string            `json:"name,omitempty"`
	Country    string            `json:"country,omitempty"`
	Birthday   string            `json:"birthday,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	ErasedAt   time.Time         `json:"erased_at,omitzero"`
}

// PastCountry is a country a member had until an update changed it. The hub keeps it for
// claims.max_offline, to verify the sales of a store that had not pulled the change yet.
type PastCountry struct {
	Country string    `json:"country"`
	Until   time.Time `json:"until"`
}

// MemberRecords is what the hub keeps about a member besides the member row and the ledger.
type MemberRecords struct {
	// Referred are the members this member referred (their referral code was used).
	Referred []string `json:"referred"`
	// PastCountries are the member's earlier countries the hub still keeps, newest first.
	PastCountries []PastCountry `json:"past_countries"`
	Vouchers      []Voucher     `json:"vouchers"`
	Conflicts     []Conflict    `json:"conflicts"`
	Rejections    []Rejection   `json:"rejections"`
	Audit         []AuditEntry  `json:"audit"`
}

// Text is an optional text field of a MemberPatch: Set when the field was in the request. JSON
// null and "" both clear the field.
type Text struct {
	Set   bool
	Value string
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Text) UnmarshalJSON(b []byte) error {
	t.Set = true
	if string(b) == "null" {
		t.Value = ""
		return nil
	}
	return json.Unmarshal(b, &t.Value)
}

// Attributes is the attributes field of a MemberPatch: a JSON merge patch (RFC 7396) of the
// member's attributes. A key with a string sets it; a key with null or "" removes it; the field
// itself null removes them all (Clear).
type Attributes struct {
	Clear bool
	Set   map[string]*string
}

// UnmarshalJSON implements json.Unmarshaler.
func (a *Attributes) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		a.Clear, a.Set = true, nil
		return nil
	}
	return json.Unmarshal(b, &a.Set)
}

// MemberPatch is a partial update of a member (PATCH /v1/members/{id}): the fields given are
// changed and the others left as they are.
type MemberPatch struct {
	Email      Text       `json:"email"`
	Name       Text       `json:"name"`
	Country    Text       `json:"country"`
	Birthday   Text       `json:"birthday"`
	Attributes Attributes `json:"attributes"`
}

// apply returns p applied to the profile old, with the names of the fields it changed, after
// checking every field. It returns EINVALID.
func (p MemberPatch) apply(old Profile, today time.Time) (Profile, []string, error) {
	n := old
	n.Attributes = maps.Clone(old.Attributes)
	var changed []string
	set := func(name string, t Text, dst *string, check func(string) error) error {
		if !t.Set {
			return nil
		}
		if t.Value != "" {
			if err := check(t.Value); err != nil {
				return err
			}
		}
		if *dst != t.Value {
			changed = append(changed, name)
		}
		*dst = t.Value
		return nil
	}
	email := strings.ToLower(strings.TrimSpace(p.Email.Value))
	p.Email.Value = email
	p.Country.Value = countryCode(p.Country.Value)
	for _, f := range []struct {
		name  string
		t     Text
		dst   *string
		check func(string) error
	}{
		{"email", p.Email, &n.Email, validEmail},
		{"name", p.Name, &n.Name, validName},
		{"country", p.Country, &n.Country, validCountry},
		{"birthday", p.Birthday, &n.Birthday, func(s string) error { return loyalty.ValidateBirthday(s, today) }},
	} {
		if err := set(f.name, f.t, f.dst, f.check); err != nil {
			return old, nil, err
		}
	}
	if p.Attributes.Clear && len(n.Attributes) > 0 {
		for _, k := range slices.Sorted(maps.Keys(n.Attributes)) {
			changed = append(changed, "attributes."+k)
		}
		n.Attributes = nil
	}
	for _, k := range slices.Sorted(maps.Keys(p.Attributes.Set)) {
		if !attributeKey.MatchString(k) {
			return old, nil, loyalty.Errorf(loyalty.EINVALID, "attribute key %q must be 1 to 64 lower-case letters, digits, dots, dashes or underscores, starting with a letter", loyalty.Truncate(k, 70))
		}
		v := p.Attributes.Set[k]
		if v == nil || *v == "" {
			if _, ok := n.Attributes[k]; ok {
				delete(n.Attributes, k)
				changed = append(changed, "attributes."+k)
			}
			continue
		}
		if !utf8.ValidString(*v) || utf8.RuneCountInString(*v) > MaxAttributeValue || strings.ContainsFunc(*v, unicode.IsControl) {
			return old, nil, loyalty.Errorf(loyalty.EINVALID, "attribute %s must be at most %d characters of text without control characters", k, MaxAttributeValue)
		}
		if n.Attributes == nil {
			n.Attributes = map[string]string{}
		}
		if n.Attributes[k] != *v {
			n.Attributes[k] = *v
			changed = append(changed, "attributes."+k)
		}
	}
	if len(n.Attributes) > MaxAttributes {
		return old, nil, loyalty.Errorf(loyalty.EINVALID, "a member may have at most %d attributes; this update would leave %d", MaxAttributes, len(n.Attributes))
	}
	if len(n.Attributes) == 0 {
		n.Attributes = nil
	}
	return n, changed, nil
}

// mayChange refuses what only an operator may change: the online channel (the member app, the
// web shop) sets a member's details, but a birthday only once (a birthday moved to today would
// pay the birthday action again) and never the attributes, which are the operator's notes.
func mayChange(a Actor, old Profile, changed []string) error {
	if a.Scope == ScopeAdmin || a == internalActor {
		return nil
	}
	for _, f := range changed {
		switch {
		case f == "birthday" && old.Birthday != "":
			return loyalty.Errorf(loyalty.EFORBIDDEN, "a member's birthday, once set, is changed by an operator only (an API key with scope admin)")
		case strings.HasPrefix(f, "attributes."):
			return loyalty.Errorf(loyalty.EFORBIDDEN, "a member's attributes are the operator's notes: they are changed with an API key with scope admin only")
		}
	}
	return nil
}

func validEmail(s string) error {
	if !strings.Contains(s, "@") || len(s) > 254 || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsSpace) || strings.ContainsFunc(s, unicode.IsControl) {
		return loyalty.Errorf(loyalty.EINVALID, "email %q is not an email address", loyalty.Truncate(s, 260))
	}
	return nil
}

// validName checks a member's name, saying which of its rules a name breaks: a name from a file
// in another encoding than UTF-8 (Windows-1252, say) is no text, and one with a line break is
// one a spreadsheet cell held on two lines.
func validName(s string) error {
	switch {
	case !utf8.ValidString(s):
		return loyalty.Errorf(loyalty.EINVALID, "name is not UTF-8 text: a file from a spreadsheet must be saved as CSV UTF-8")
	case strings.ContainsAny(s, "\r\n"):
		return loyalty.Errorf(loyalty.EINVALID, "name holds a line break: write it on one line")
	case strings.ContainsFunc(s, unicode.IsControl):
		return loyalty.Errorf(loyalty.EINVALID, "name holds a control character (such as a tab): leave it out")
	case utf8.RuneCountInString(s) > MaxNameLength:
		return loyalty.Errorf(loyalty.EINVALID, "name must be at most %d characters", MaxNameLength)
	}
	return nil
}

func validCountry(s string) error {
	if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
		return loyalty.Errorf(loyalty.EINVALID, "country must be an ISO 3166 two-letter code such as DE, got %q", loyalty.Truncate(s, 20))
	}
	return nil
}

// countryCode returns a country as stored, in upper case: an import, the API and the command
// line all take "de" for DE. Anything else is left as given, for validCountry to name.
func countryCode(s string) string {
	if len(s) == 2 && isASCIILetter(s[0]) && isASCIILetter(s[1]) {
		return strings.ToUpper(s)
	}
	return s
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// storeFields are the fields of a Profile that stores hold (loyalty.Member's, in their replicas):
// a change of one of them gives the member a new change version, so that stores pull it.
var storeFields = []string{"email", "name", "country"}

// UpdateMember changes the fields of a member that p gives and returns the member as stored.
// Stores receive the email, name and country; the birthday and the attributes stay at the hub.
// A change of what stores hold gives the member a new change version, so that the stores that
// hold them pull it. An erased member's details cannot be set again (EINVALID). It returns
// ENOTFOUND, EINVALID, or EDUPLICATE when another member has the email.
func (h *Hub) UpdateMember(ctx context.Context, id string, p MemberPatch) (MemberView, error) {
	today := h.Now().UTC().AddDate(0, 0, 1) // a day of slack: time zones ahead of UTC
	err := h.update(ctx, func(tx Tx) error {
		m, err := tx.Member(ctx, id)
		if err != nil {
			return err
		}
		old, err := tx.MemberProfile(ctx, id)
		if err != nil {
			return err
		}
		if !old.ErasedAt.IsZero() {
			return loyalty.Errorf(loyalty.EINVALID, "member %s was erased on %s; their personal data cannot be set again (sign them up as a new member)",
				id, old.ErasedAt.UTC().Format(time.DateOnly))
		}
		n, changed, err := p.apply(old, today)
		if err != nil || len(changed) == 0 {
			return err
		}
		if err := mayChange(ActorFrom(ctx), old, changed); err != nil {
			return err
		}
		v := m.Version
		if slices.ContainsFunc(changed, func(f string) bool { return slices.Contains(storeFields, f) }) {
			if v, err = tx.NextVersion(ctx); err != nil {
				return err
			}
		}
		if err := tx.SetMemberProfile(ctx, id, n, v); err != nil {
			return err
		}
		if old.Country != "" && n.Country != old.Country {
			// A store that has not pulled this change yet stamps its sales with the old country,
			// which the hub accepts while a store may stay offline (checkClaims).
			if err := tx.NotePastCountry(ctx, id, old.Country, h.Now()); err != nil {
				return err
			}
		}
		// The names of the fields, never their values: the trail must not keep personal data.
		return h.audit(ctx, tx, AuditMemberUpdate, id, "changed "+strings.Join(changed, ", "))
	})
	if err != nil {
		return MemberView{}, err
	}
	return h.Member(ctx, id, 0)
}

// EraseMember erases a member's personal data (GDPR article 17): their email, name, country,
// birthday and attributes, at the hub at once and in the stores that hold them at their next
// pull. The member's id stays, as the pseudonym their ledger, balance, tier, vouchers and
// budgets' charges keep pointing to, so that balances and liability stay right; their member
// QR codes are refused from then on. The audit trail records who erased the member, not what was
// erased. A member erased already is EDUPLICATE; an unknown one ENOTFOUND.
func (h *Hub) EraseMember(ctx context.Context, id string) (MemberView, error) {
	at := h.Now().UTC().Truncate(time.Millisecond)
	err := h.update(ctx, func(tx Tx) error {
		p, err := tx.MemberProfile(ctx, id)
		if err != nil {
			return err
		}
		if !p.ErasedAt.IsZero() {
			return loyalty.Errorf(loyalty.EDUPLICATE, "member %s was already erased on %s", id, p.ErasedAt.UTC().Format(time.RFC3339))
		}
		v, err := tx.NextVersion(ctx) // the stores that hold the member pull the erased copy
		if err != nil {
			return err
		}
		if err := tx.EraseMember(ctx, id, at, v); err != nil {
			return err
		}
		if err := eraseFromEvents(ctx, tx, id); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditMemberErase, id, "personal data erased")
	})
	if err != nil {
		return MemberView{}, err
	}
	if c, ok := h.Store.(Checkpointer); ok {
		wait, cancel := context.WithTimeout(ctx, EraseCheckpointWait)
		if err := c.Checkpoint(wait); err != nil {
			h.Logger.Warn("the write-ahead log still holds pages from before an erasure, until it is written over", slog.Any("err", err))
		}
		cancel()
	}
	return h.Member(ctx, id, 0)
}

// ForgetPastCountries deletes the members' replaced countries that ended more than
// claims.max_offline ago: no store can still claim them (checkClaims). The hub runs it hourly.
// It returns how many it deleted.
func (h *Hub) ForgetPastCountries(ctx context.Context) (int, error) {
	var n int
	err := h.update(ctx, func(tx Tx) (err error) {
		n, err = tx.ForgetPastCountries(ctx, h.Now().Add(-h.Claims.MaxOffline))
		return err
	})
	return n, err
}

// erased reports, inside a transaction, whether member was erased (false for an unknown one).
func erased(ctx context.Context, tx Tx, member string) (bool, error) {
	p, err := tx.MemberProfile(ctx, member)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return false, nil
	}
	return !p.ErasedAt.IsZero(), err
}

// refuseErased returns ENOTFOUND if member was erased: their QR codes no longer name anyone.
func refuseErased(ctx context.Context, tx Tx, member string) error {
	if gone, err := erased(ctx, tx, member); err != nil || !gone {
		return err
	}
	return loyalty.Errorf(loyalty.ENOTFOUND, "this member code belongs to an account whose personal data was erased; it is no longer accepted")
}

// exportPage is how many ledger entries an export reads per transaction.
var exportPage = 1000

// MemberExport is the head of a member's export: everything but the ledger, which
// ExportMember streams after it.
type MemberExport struct {
	ExportedAt time.Time         `json:"exported_at"`
	Member     loyalty.Member    `json:"member"`
	Attributes map[string]string `json:"attributes"`
	ErasedAt   time.Time         `json:"erased_at,omitzero"`
	MemberRecords
}

// ExportMember writes everything the hub holds about a member as one JSON object to w (GDPR
// article 15 and 20): the member with their birthday and attributes, the members they referred,
// the earlier countries the hub still keeps, their vouchers, conflicts, rejected deltas and the
// audit entries about them, and last their whole ledger, oldest first, read and written a page
// at a time so that a long ledger needs neither one long transaction nor its size in memory.
// before is called once the member is found, before anything is written (an HTTP handler sets
// its headers there). An error before that (ENOTFOUND) means nothing was written; an error after
// it leaves w with a truncated document, which no JSON parser accepts.
func (h *Hub) ExportMember(ctx context.Context, id string, w io.Writer, before func()) error {
	var head MemberExport
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		if head.Member, err = tx.Member(ctx, id); err != nil {
			return err
		}
		p, err := tx.MemberProfile(ctx, id)
		if err != nil {
			return err
		}
		head.Member.Birthday, head.Attributes, head.ErasedAt = p.Birthday, p.Attributes, p.ErasedAt
		if head.MemberRecords, err = tx.MemberRecords(ctx, id); err != nil {
			return err
		}
		head.PastCountries, err = tx.PastCountries(ctx, id, time.Time{})
		return err
	})
	if err != nil {
		return err
	}
	head.ExportedAt = h.Now().UTC().Truncate(time.Millisecond)
	if head.Attributes == nil {
		head.Attributes = map[string]string{}
	}
	b, err := json.Marshal(head)
	if err != nil {
		return err
	}
	if before != nil {
		before()
	}
	// The head's closing brace gives way to the ledger's array.
	if _, err := fmt.Fprintf(w, "%s,\"ledger\":[", b[:len(b)-1]); err != nil {
		return err
	}
	var after int64
	first := true
	for {
		var page []LedgerEntry
		err := h.Store.View(ctx, func(tx Tx) error {
			var err error
			page, err = tx.LedgerAfter(ctx, id, after, exportPage)
			return err
		})
		if err != nil {
			return err
		}
		for _, e := range page {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if !first {
				b = append([]byte{','}, b...)
			}
			first = false
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		if len(page) < exportPage {
			break
		}
		after = page[len(page)-1].Seq
	}
	_, err = io.WriteString(w, "]}\n")
	return err
}
