package loyalty

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind is what a ledger delta does to a member's balance.
type Kind string

// Delta kinds.
const (
	KindEarn    Kind = "earn"    // points for a sale; Points >= 0
	KindRedeem  Kind = "redeem"  // points spent on a reward, or a voucher used; Points <= 0
	KindReverse Kind = "reverse" // undoes an earlier earn or redeem (refund, void); Points = -original
	KindAdjust  Kind = "adjust"  // an operator's correction or a migration; only the hub mints these
	KindTier    Kind = "tier"    // a tier change (0 points), minted by the hub
	KindExpire  Kind = "expire"  // points that expired (negative), minted by the hub
)

// Limits on sizes and numbers that every side enforces the same way. They bound every
// computation with money and points, so none can overflow an int64: an order of MaxLines lines of
// MaxAmount at the highest rate, tier and campaign multipliers is still far below 2^63, and
// anything over MaxPoints is refused before it reaches a balance.
const (
	MaxIDLength = 128                   // delta, member, store, order, reward and voucher ids, in characters
	MaxAmount   = 1_000_000_000_000     // largest sale or line amount in minor units (10 billion of a 2-decimal currency)
	MaxPoints   = 1_000_000_000_000     // largest absolute points value of one delta
	MaxBalance  = 1_000_000_000_000_000 // largest balance a member may reach
	MaxLines    = 1000                  // most lines in one order
	MaxQty      = 1_000_000             // most units on one order line
)

// AddSaturating adds a and b, giving math.MaxInt64 or math.MinInt64 where the sum would
// overflow. Totals over many rows use it: each term is bounded (MaxPoints, MaxBalance), but
// millions of them are not.
func AddSaturating(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}

// ValidText reports whether s is valid UTF-8 of at most max characters (runes), without NUL
// (U+0000). Invalid UTF-8 is refused rather than repaired: JSON decoding would turn different
// invalid ids into the same one. NUL is refused because PostgreSQL cannot store it in text: a
// change holding one, approved at a till, could never be applied at a hub on PostgreSQL.
func ValidText(s string, max int) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && utf8.RuneCountInString(s) <= max
}

// Printable returns s with every control character (escape sequences, line breaks, tabs) and
// every byte of invalid UTF-8 replaced by "?": for text from outside (a store's ids, a webhook
// receiver's answer) shown on an operator's terminal, where an escape sequence could rewrite
// the screen or a line break fake a row.
func Printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	s = strings.ToValidUTF8(s, "?")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

func validID(id string) bool { return id != "" && ValidText(id, MaxIDLength) }

// validIDs reports whether every id is validID.
func validIDs(ids []string) bool {
	for _, id := range ids {
		if !validID(id) {
			return false
		}
	}
	return true
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidateID checks the id an operator gives a store or a member: 1 to 64 letters, digits, dots,
// dashes or underscores, starting with a letter or digit, so it reads the same in a URL, a file
// name, a log line and a spreadsheet. what names the thing in the message ("store", "member").
func ValidateID(what, id string) error {
	if !namePattern.MatchString(id) {
		return Errorf(EINVALID, "%s id %q must be 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit", what, Truncate(id, 70))
	}
	return nil
}

// Truncate returns s, or its first n bytes (whole UTF-8 characters) and "…" if it is longer: what
// a message quotes of a value it refuses, which may be any length (a cell of an imported file).
func Truncate(s string, n int) string {
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

// OnlineStore is the store id of deltas made through the hub's online API (e-commerce, member
// app). HubStore is the store id of deltas the hub makes itself (tier changes). No real store may
// use either.
const (
	OnlineStore = "online"
	HubStore    = "hub"
)

// Delta is one immutable ledger entry. It is minted where it happened (a store's agent or the
// hub's online API) with a globally unique id, written durably there first, and applied by the hub
// exactly once however often it is delivered.
type Delta struct {
	ID          string    `json:"id"`
	Store       string    `json:"store"`
	Terminal    string    `json:"terminal,omitempty"`
	Member      string    `json:"member"`
	Kind        Kind      `json:"kind"`
	Points      int64     `json:"points"`             // signed effect on the balance
	Amount      int64     `json:"amount,omitempty"`   // sale amount in integer minor units (cents)
	Currency    string    `json:"currency,omitempty"` // ISO 4217 code of Amount
	Reward      string    `json:"reward,omitempty"`
	Voucher     string    `json:"voucher,omitempty"`
	OrderID     string    `json:"order_id,omitempty"`
	Reverses    string    `json:"reverses,omitempty"` // id of the delta a reverse undoes
	RuleVersion int64     `json:"rule_version,omitempty"`
	OccurredAt  time.Time `json:"occurred_at"` // device clock where it happened, UTC, millisecond precision
	// ClockOffsetMS is the hub clock minus the device clock as last measured where the delta was
	// made; OccurredAt plus it is the event time that period limits use.
	ClockOffsetMS int64 `json:"clock_offset_ms,omitempty"`
	// Leases names, per budget id, the quota lease a store spent this delta from.
	Leases map[string]string `json:"leases,omitempty"`

	// What an earn was computed from, so the hub can compute it again: the order lines, the rule
	// ("" for purchases, or an action id), and the member's tier and country and the store's time
	// zone as the store saw them. Punches are the punch card units the order added; PunchRewards
	// the cards it filled (free rewards given at the till).
	Lines        []Line           `json:"lines,omitempty"`
	Rule         string           `json:"rule,omitempty"`
	Tier         string           `json:"tier,omitempty"`
	Country      string           `json:"country,omitempty"`
	TimeZone     string           `json:"tz,omitempty"`
	Punches      map[string]int64 `json:"punches,omitempty"`
	PunchRewards []string         `json:"punch_rewards,omitempty"`

	// Reason is why an operator adjusted a balance (an adjust delta, made by the hub: docs/API.md,
	// "Adjustments"); its Terminal is then the API key id that made it.
	Reason string `json:"reason,omitempty"`
	// Key is the API key that made a change of the online channel (the hub sets it from the
	// caller's credential; a caller's Terminal is only its word): which of the web shop's and the
	// app's keys earned, redeemed or reversed. Stores never set it.
	Key string `json:"key_id,omitempty"`

	// Presence is the member's signed QR code as the store scanned it for this change: the proof
	// that the member was at the store, which alone (or the member's home store) brings a member
	// into a store's replica scope through a push (docs/PROTOCOL.md, "Replica scope"). It is not
	// part of the change: Hash leaves it out, and the hub checks it and never keeps it.
	Presence string `json:"presence,omitempty"`
}

// MaxPresenceLength bounds Delta.Presence, and so the QR tokens qr.Verify accepts
// (qr.MaxTokenLength): real ones are about 200 characters.
const MaxPresenceLength = 1024

// MaxReasonLength is the longest reason of an adjustment, in characters.
const MaxReasonLength = 500

// EventTime is when the delta happened on the hub's clock: the device time corrected by the
// clock offset measured at the store's last handshake or heartbeat.
func (d *Delta) EventTime() time.Time {
	return d.OccurredAt.Add(time.Duration(d.ClockOffsetMS) * time.Millisecond)
}

// NewDeltaID returns a new globally unique delta id, time-ordered: "d", then the time in Unix
// milliseconds in 10 characters, a sequence number within the millisecond in 2, and 70 random
// bits in 14, all in an alphabet that sorts as its values do (digits, then capital letters
// without I, L, O and U): 27 characters, as long as the random ids of earlier versions ("d" and
// 26 characters of base32), which stay valid (a delta id is any text Validate accepts).
//
// Ids made later sort after earlier ones, so that the ledger's unique index on ids takes each new
// one at its end, where the pages being written already are, rather than at a random place. Ids
// made in one process are in strict order: within a millisecond the sequence number counts up
// (after 1,024 ids it borrows the next millisecond), and a clock that steps back does not take
// them back. The random part keeps them unpredictable: a store that guessed another's next id
// could push it first and have the other's refused as a reuse.
func NewDeltaID() string {
	idClock.Lock()
	ms := max(time.Now().UnixMilli(), idClock.ms)
	if ms == idClock.ms {
		idClock.seq++
		if idClock.seq == 1<<10 {
			ms, idClock.seq = ms+1, 0
		}
	} else {
		idClock.seq = 0
	}
	idClock.ms = ms
	seq := idClock.seq
	idClock.Unlock()
	var b [27]byte
	b[0] = 'd'
	putSortable(b[1:11], uint64(ms))
	putSortable(b[11:13], uint64(seq))
	rand.Read(b[13:27])
	for i := 13; i < 27; i++ {
		b[i] = sortableDigits[b[i]&31] // 5 random bits each
	}
	return string(b[:])
}

// idClock is NewDeltaID's last millisecond and sequence number within it.
var idClock struct {
	sync.Mutex
	ms  int64
	seq int
}

// sortableDigits are the digits of NewDeltaID's base 32, in the order of their values and bytes.
const sortableDigits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// putSortable writes the low 5×len(b) bits of v in b, most significant digit first.
func putSortable(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = sortableDigits[v&31]
		v >>= 5
	}
}

// DeltaIDTime returns the time a delta id made by NewDeltaID was made at, to the millisecond, and
// false for an id of another shape. A random id of an earlier version may have that shape by
// chance (about 3% of them do): its "time" is then meaningless. Nothing relies on it but tests
// and people reading ids.
func DeltaIDTime(id string) (time.Time, bool) {
	if len(id) != 27 || id[0] != 'd' {
		return time.Time{}, false
	}
	var ms int64
	for i := 1; i < 11; i++ {
		v := strings.IndexByte(sortableDigits, id[i])
		if v < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | int64(v)
	}
	for i := 11; i < 27; i++ {
		if strings.IndexByte(sortableDigits, id[i]) < 0 {
			return time.Time{}, false
		}
	}
	return time.UnixMilli(ms).UTC(), true
}

// Normalize puts fields into the canonical form in which they are hashed and stored: time in
// UTC truncated to milliseconds.
func (d *Delta) Normalize() {
	d.OccurredAt = d.OccurredAt.UTC().Truncate(time.Millisecond)
}

// Hash returns a digest of the delta's content. Two deliveries of the same delta have the same
// hash; a different delta that reuses an id has a different one.
func (d Delta) Hash() string {
	d.Normalize()
	d.Presence = ""         // the proof of presence goes with a change, it is not part of it
	b, _ := json.Marshal(d) // cannot fail: plain fields only
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Validate checks a delta's shape: ids, kind, bounds, and the sign of points for its kind. It
// does not look anything up. It returns EINVALID; messages name no internal ids, so they can go
// back to a POS or a store as they are.
func (d *Delta) Validate() error {
	switch {
	case !validID(d.ID):
		return Errorf(EINVALID, "delta id must be 1 to %d characters of UTF-8 text without NUL (U+0000)", MaxIDLength)
	case !validID(d.Store):
		return Errorf(EINVALID, "store id must be 1 to %d characters of UTF-8 text without NUL (U+0000)", MaxIDLength)
	case !validID(d.Member) && d.Kind != KindSale: // a sale without a member (sale.go) has none
		return Errorf(EINVALID, "member id must be 1 to %d characters of UTF-8 text without NUL (U+0000)", MaxIDLength)
	case !ValidText(d.Terminal, MaxIDLength) || !ValidText(d.OrderID, MaxIDLength) || !ValidText(d.Reward, MaxIDLength) ||
		!ValidText(d.Voucher, MaxIDLength) || !ValidText(d.Reverses, MaxIDLength) || !ValidText(d.Rule, MaxIDLength) ||
		!ValidText(d.Tier, MaxIDLength) || !ValidText(d.Country, MaxIDLength) || !ValidText(d.TimeZone, MaxIDLength) ||
		!ValidText(d.Key, MaxIDLength):
		return Errorf(EINVALID, "terminal, order, reward, voucher, rule, tier, country, time zone and key ids must be UTF-8 text of at most %d characters, without NUL (U+0000)", MaxIDLength)
	case !ValidText(d.Reason, MaxReasonLength):
		return Errorf(EINVALID, "a reason must be UTF-8 text of at most %d characters, without NUL (U+0000)", MaxReasonLength)
	case len(d.Presence) > MaxPresenceLength:
		return Errorf(EINVALID, "a scanned code is at most %d characters", MaxPresenceLength)
	case d.OccurredAt.IsZero():
		return Errorf(EINVALID, "occurred_at is required")
	case d.Points > MaxPoints || d.Points < -MaxPoints:
		return Errorf(EINVALID, "%d points is more than one change may carry (at most %d either way)", d.Points, int64(MaxPoints))
	case d.Amount < 0 || d.Amount > MaxAmount:
		return Errorf(EINVALID, "amount must be 0 to %d minor units", int64(MaxAmount))
	case d.ClockOffsetMS > maxOffsetMS || d.ClockOffsetMS < -maxOffsetMS:
		return Errorf(EINVALID, "clock offset of %d ms is beyond any real clock's error", d.ClockOffsetMS)
	case len(d.Lines) > MaxLines || len(d.Punches) > MaxLines || len(d.PunchRewards) > MaxLines || len(d.Leases) > MaxLines:
		return Errorf(EINVALID, "at most %d lines, punch cards and leases", MaxLines)
	case !validIDs(slices.Collect(maps.Keys(d.Punches))) || !validIDs(d.PunchRewards):
		return Errorf(EINVALID, "punch card ids must be UTF-8 text of 1 to %d characters, without NUL (U+0000)", MaxIDLength)
	case !validIDs(slices.Collect(maps.Keys(d.Leases))) || !validIDs(slices.Collect(maps.Values(d.Leases))):
		return Errorf(EINVALID, "budget and lease ids must be UTF-8 text of 1 to %d characters, without NUL (U+0000)", MaxIDLength)
	case d.Reverses != "" && d.Kind != KindReverse && d.Kind != KindAdjust:
		// Every count of what was refunded (refunds, voucher uses, member limits, tier totals,
		// lots) takes a delta naming another in reverses as its refund: only a refund may.
		// (The hub's reversal of an adjustment is an adjust delta; only the hub makes those.)
		return Errorf(EINVALID, "only a refund (kind reverse) names the change it reverses; a %s cannot", d.Kind)
	}
	switch d.Kind {
	case KindEarn:
		if d.Points < 0 {
			return Errorf(EINVALID, "an earn cannot take points away")
		}
		if err := ValidateCurrency(d.Currency); err != nil {
			return err
		}
	case KindRedeem:
		if d.Points > 0 {
			return Errorf(EINVALID, "a redemption cannot add points")
		}
		if d.Reward == "" && d.Voucher == "" {
			return Errorf(EINVALID, "a redemption names a reward or a voucher")
		}
	case KindReverse:
		if d.Reverses == "" {
			return Errorf(EINVALID, "a reversal names the change it reverses")
		}
	case KindAdjust, KindTier, KindExpire:
	case KindSale:
		return d.validateSale()
	default:
		return Errorf(EINVALID, "unknown kind %q (want earn, redeem, reverse, adjust or sale)", d.Kind)
	}
	return nil
}

// maxOffsetMS bounds a delta's clock offset (ten years): past that, EventTime's arithmetic could
// overflow, and no real clock is that wrong. The hub checks the event time itself far more tightly.
const maxOffsetMS = 10 * 366 * 24 * 3600 * 1000

// MaxClockOffset is the largest clock offset a delta may carry, either way (Validate).
const MaxClockOffset = maxOffsetMS * time.Millisecond

// ValidateCurrency checks that code looks like an ISO 4217 code: three upper-case letters.
func ValidateCurrency(code string) error {
	if len(code) != 3 {
		return Errorf(EINVALID, "currency must be a 3-letter ISO 4217 code such as EUR, got %q", code)
	}
	for _, c := range code {
		if c < 'A' || c > 'Z' {
			return Errorf(EINVALID, "currency must be a 3-letter ISO 4217 code such as EUR, got %q", code)
		}
	}
	return nil
}

// Member is a loyalty member as the hub knows them (and as an agent last synced them).
type Member struct {
	ID        string           `json:"id"`
	Email     string           `json:"email,omitempty"`
	Name      string           `json:"name,omitempty"`
	HomeStore string           `json:"home_store,omitempty"`
	Country   string           `json:"country,omitempty"` // ISO 3166 alpha-2, for campaign segments
	Tier      string           `json:"tier,omitempty"`
	Punches   map[string]int64 `json:"punches,omitempty"` // punch card units bought so far, per card
	// ReferredBy is the member who referred this one; ReferralPaid says the bonus was given.
	ReferredBy   string    `json:"referred_by,omitempty"`
	ReferralPaid bool      `json:"referral_paid,omitempty"`
	Balance      int64     `json:"balance"`
	Version      int64     `json:"version"` // hub change sequence of the last change to this member
	CreatedAt    time.Time `json:"created_at,omitzero"`
	// Birthday is "MM-DD" or "YYYY-MM-DD" (ValidateBirthday), for the program's birthday action.
	// It is personal data the stores do not need: the hub keeps it and never sends it to them.
	Birthday string `json:"birthday,omitempty"`
	// Erased says the member's personal data was erased at the hub: the id stays, as a pseudonym
	// that the ledger points to, and stores refuse the member's QR codes.
	Erased bool `json:"erased,omitempty"`
}
