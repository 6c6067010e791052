// Package sync is the wire protocol between store agents and the hub: message types, version
// negotiation, batching, cursors, and the client (agent) and server (hub) session state machines.
// docs/PROTOCOL.md describes it for people; this package is its reference implementation.
//
// The package shadows the standard library's sync; import it as lsync.
//
// Transport is abstracted by Conn (one message in, one message out); sync/ws implements it over
// gorilla websockets. Storage is abstracted by ClientHandler and Handler, which the agent and the
// hub implement.
package sync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// Version is the newest protocol version this code speaks. Version 2 adds unsubscribe: an agent
// sends it only in a session of version 2 or newer, so a hub of version 1 never sees it.
const Version = 2

// Versions lists every protocol version this code speaks, newest first.
var Versions = []int{2, 1}

// Message types.
const (
	TypeHello     = "hello"     // agent → hub: first message, authenticates the store
	TypeWelcome   = "welcome"   // hub → agent: the negotiated version and session parameters
	TypePush      = "push"      // agent → hub: a batch of deltas
	TypeAck       = "ack"       // hub → agent: per-delta results of one push, after commit
	TypePull      = "pull"      // agent → hub: send me changes after this cursor
	TypeChanges   = "changes"   // hub → agent: members, program and keys after the cursor
	TypeNotify    = "notify"    // hub → agent: there are changes up to this cursor
	TypeSubscribe = "subscribe" // agent → hub: add this member to my replica, send it now
	TypeMember    = "member"    // hub → agent: reply to subscribe
	TypePing      = "ping"      // agent → hub: heartbeat with the agent's health
	TypePong      = "pong"      // hub → agent: heartbeat reply with the hub's clock
	TypeError     = "error"     // either way: a request failed, or the session is refused
)

// Unsubscribe takes members out of the store's replica scope (protocol version 2): the agent
// evicted them from its replica, and the hub stops sending their changes to it.
const (
	TypeUnsubscribe  = "unsubscribe"  // agent → hub
	TypeUnsubscribed = "unsubscribed" // hub → agent: reply to unsubscribe, once it is durable
)

// Message is the envelope of every websocket text frame: a JSON object with a type, an optional
// request id (echoed in the reply) and exactly one body field named after the type.
type Message struct {
	Type      string          `json:"type"`
	ID        uint64          `json:"id,omitempty"`
	Hello     *Hello          `json:"hello,omitempty"`
	Welcome   *Welcome        `json:"welcome,omitempty"`
	Push      *Push           `json:"push,omitempty"`
	Ack       *Ack            `json:"ack,omitempty"`
	Pull      *Pull           `json:"pull,omitempty"`
	Changes   *Changes        `json:"changes,omitempty"`
	Notify    *Notify         `json:"notify,omitempty"`
	Subscribe *Subscribe      `json:"subscribe,omitempty"`
	Member    *loyalty.Member `json:"member,omitempty"`
	Standing  *Standing       `json:"standing,omitempty"` // beside Member, in a reply to Subscribe
	Ping      *Ping           `json:"ping,omitempty"`
	Pong      *Pong           `json:"pong,omitempty"`
	Error     *loyalty.Error  `json:"error,omitempty"`

	// Unsubscribe is the body of an unsubscribe, and Unsubscribed of its reply (the same members).
	Unsubscribe  *Unsubscribe `json:"unsubscribe,omitempty"`
	Unsubscribed *Unsubscribe `json:"unsubscribed,omitempty"`
}

// Hello opens a session. Token authenticates Store.
type Hello struct {
	Versions     []int  `json:"versions"`
	Store        string `json:"store"`
	Token        string `json:"token"`
	AgentVersion string `json:"agent_version,omitempty"`
	SentAt       int64  `json:"sent_at"` // agent clock, unix milliseconds
}

// MinMessageBytes is the smallest max_message_bytes a hub may set (sync.max_message_bytes), and
// the least an agent takes from a welcome: a smaller figure is a hub's mistake, and taken as it
// is it would set every change of the outbox aside as too large to send, for good.
const MinMessageBytes = 64 << 10

// Welcome accepts a session.
type Welcome struct {
	Version         int    `json:"version"`
	Store           string `json:"store"`
	HubTime         int64  `json:"hub_time"` // hub clock, unix milliseconds
	HeartbeatMillis int64  `json:"heartbeat_ms"`
	MaxBatch        int    `json:"max_batch"`
	MaxMessageBytes int    `json:"max_message_bytes"`
	// Epoch names the hub database's life: a new one means it was restored from a backup and may
	// have lost what agents sent since. ResendSince (hub clock, unix milliseconds) is then from
	// when on the agent sends again what the hub acknowledged (docs/PROTOCOL.md, "Restore").
	Epoch       int64 `json:"epoch,omitempty"`
	ResendSince int64 `json:"resend_since,omitempty"`
}

// Push carries deltas minted at the agent's store, oldest first.
type Push struct {
	Deltas []loyalty.Delta `json:"deltas"`
}

// Delta statuses in an Ack.
const (
	StatusApplied   = "applied"   // applied now, durably
	StatusDuplicate = "duplicate" // applied earlier; this delivery changed nothing
	StatusRejected  = "rejected"  // never applied; Code and Message say why; the agent keeps it for review
)

// Ack reports the outcome of every delta in one Push, sent after the hub committed them.
type Ack struct {
	Results  []Result  `json:"results"`
	Balances []Balance `json:"balances"`
}

// Result is the outcome of one delta.
type Result struct {
	DeltaID string `json:"delta_id"`
	Status  string `json:"status"`
	Seq     int64  `json:"seq,omitempty"` // hub ledger sequence number, for applied and duplicate
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Balance is a member's authoritative balance as of Version.
type Balance struct {
	Member  string `json:"member"`
	Balance int64  `json:"balance"`
	Version int64  `json:"version"`
}

// Pull asks for changes after Cursor.
type Pull struct {
	Cursor int64 `json:"cursor"`
	Limit  int   `json:"limit,omitempty"`
	// Flushed says every delta the agent had made when it sent this pull was pushed before it in
	// this session, so the hub knows all it spent of its leases and may settle ended ones.
	Flushed bool `json:"flushed,omitempty"`
}

// Changes carries everything in the store's scope that changed after the pull's cursor, up to
// Cursor. More is true when the agent should pull again straight away.
type Changes struct {
	Cursor  int64            `json:"cursor"`
	More    bool             `json:"more"`
	Members []loyalty.Member `json:"members,omitempty"`
	Program *loyalty.Program `json:"program,omitempty"`
	Keys    []qr.PublicKey   `json:"keys,omitempty"`
	// Leases is the complete list of the store's budget leases as of this page; a lease not in it
	// is settled and must not be spent. Nil means "unchanged" (a page that is not the last).
	Leases []Lease `json:"leases"`
	// TimeZone is the store's registered time zone, in which its agent reads campaign days and
	// hours (the hub reads them in it too, whatever a delta says). Sent with the last page.
	TimeZone string `json:"tz,omitempty"`
}

// Lease is budget quota the store may spend without asking the hub, until TTLMillis after it
// received this message (on its monotonic clock), and only while State is active.
type Lease struct {
	ID        string `json:"id"`
	Budget    string `json:"budget"`
	Granted   int64  `json:"granted"`
	State     string `json:"state"` // active, or ended (revoked or expired): spend no more
	TTLMillis int64  `json:"ttl_ms"`
}

// Notify tells the agent there are changes up to Cursor.
type Notify struct {
	Cursor int64 `json:"cursor"`
}

// Subscribe asks the hub to add Member to the store's replica scope and return it, with the
// member's Standing. Voucher, if set, asks for the state of one of the member's vouchers too. QR
// is the member's code (or the voucher's) that the store scanned: the hub hands a member to a
// store that does not hold them yet (docs/PROTOCOL.md, "Replica scope") only against a current
// code of theirs, signed by the hub.
type Subscribe struct {
	Member  string `json:"member"`
	Voucher string `json:"voucher,omitempty"`
	QR      string `json:"qr,omitempty"`
}

// Unsubscribe asks the hub to take Members out of the store's replica scope: the change feed no
// longer carries them to the store, until the store subscribes to one again or pushes a delta of
// one (which puts the member back in its scope, as always). At most the hub's max_batch members.
type Unsubscribe struct {
	Members []string `json:"members"`
}

// Standing is what only the hub knows about a member, as of one moment: what they redeemed and
// earned, at every store and online, in the current period of each per-member limit and earn cap
// of the program, and the state of a voucher the store asked about. It travels beside the member
// copy in the reply to Subscribe. A store that is online decides with it (docs/PROTOCOL.md,
// "Online means exact").
type Standing struct {
	At          int64 `json:"at"`           // hub clock, unix milliseconds: the periods counted are those containing it
	RuleVersion int64 `json:"rule_version"` // the program version whose limits and caps were counted
	// Redemptions has one entry per per-member limit: the member's redemptions of Reward (any
	// reward when empty) in the period, not counting voucher uses or reversed redemptions.
	Redemptions []Usage `json:"redemptions,omitempty"`
	// Earned has one entry per earn cap: the points the member earned under Rule in the period,
	// less reversals.
	Earned []Usage `json:"earned,omitempty"`
	// Voucher is the state of the voucher asked for: VoucherUnused, VoucherUsed, VoucherCancelled
	// or VoucherUnknown (the hub has no such voucher of this member). Empty when none was asked.
	Voucher string `json:"voucher,omitempty"`
}

// Voucher states in a Standing.
const (
	VoucherUnused    = "unused"
	VoucherUsed      = "used"
	VoucherCancelled = "cancelled" // the order that bought it was refunded
	VoucherUnknown   = "unknown"
)

// Usage is one count of a Standing.
type Usage struct {
	Reward string `json:"reward,omitempty"` // a member limit's reward ("" for any reward)
	Rule   string `json:"rule,omitempty"`   // an earn cap's rule
	Period string `json:"period"`
	Used   int64  `json:"used"` // redemptions, or points
}

// Redeemed returns the standing's count for a member limit on reward in period, and whether the
// hub counted it.
func (s *Standing) Redeemed(reward, period string) (int64, bool) {
	return s.find(s.Redemptions, func(u Usage) bool { return u.Reward == reward && u.Period == period })
}

// EarnedUnder returns the standing's points for an earn cap on rule in period, and whether the
// hub counted them.
func (s *Standing) EarnedUnder(rule, period string) (int64, bool) {
	return s.find(s.Earned, func(u Usage) bool { return u.Rule == rule && u.Period == period })
}

func (s *Standing) find(us []Usage, match func(Usage) bool) (int64, bool) {
	if s == nil {
		return 0, false
	}
	for _, u := range us {
		if match(u) {
			return u.Used, true
		}
	}
	return 0, false
}

// Ping is the agent's heartbeat. It carries its health, which the hub records for reports.
type Ping struct {
	SentAt        int64 `json:"sent_at"`         // agent clock, unix milliseconds
	ClockOffsetMS int64 `json:"clock_offset_ms"` // hub clock minus agent clock, as last measured
	Outbox        int64 `json:"outbox"`          // deltas not yet acknowledged
	// Unsynced counts what those deltas earned, redeemed and spent of budgets (unsynced.go);
	// left out by agents that do not count it.
	Unsynced *Unsynced `json:"unsynced,omitempty"`
}

// Pong answers a Ping.
type Pong struct {
	SentAt  int64 `json:"sent_at"`  // echoed from the ping
	HubTime int64 `json:"hub_time"` // hub clock, unix milliseconds
}

// Encode marshals a message. It leaves &, < and > as they are rather than escaping them for
// HTML (6 bytes each): a message goes to a websocket, never into a page, and a sale's SKUs must
// not grow past the hub's message limit on the way.
func Encode(m *Message) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.Type, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Decode parses a message and checks that it carries the body its type needs. It returns EINVALID.
//
// Text must be valid UTF-8 and every escaped UTF-16 surrogate must be paired: JSON decoding
// would silently turn each invalid byte and each unpaired surrogate into U+FFFD, so two different
// ids (a delta's, a member's) could arrive as one.
func Decode(b []byte) (*Message, error) {
	if !utf8.Valid(b) {
		return nil, loyalty.Errorf(loyalty.EINVALID, "malformed message: not valid UTF-8 text")
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, loyalty.Errorf(loyalty.EINVALID, "malformed message: %v", err)
	}
	if !pairedSurrogates(b) {
		return nil, loyalty.Errorf(loyalty.EINVALID, "malformed message: a \\u escape of half a UTF-16 surrogate pair")
	}
	var ok bool
	switch m.Type {
	case TypeHello:
		ok = m.Hello != nil
	case TypeWelcome:
		ok = m.Welcome != nil
	case TypePush:
		ok = m.Push != nil
	case TypeAck:
		ok = m.Ack != nil
	case TypePull:
		ok = m.Pull != nil
	case TypeChanges:
		ok = m.Changes != nil
	case TypeNotify:
		ok = m.Notify != nil
	case TypeSubscribe:
		ok = m.Subscribe != nil
	case TypeMember:
		ok = m.Member != nil
	case TypeUnsubscribe:
		ok = m.Unsubscribe != nil
	case TypeUnsubscribed:
		ok = m.Unsubscribed != nil
	case TypePing:
		ok = m.Ping != nil
	case TypePong:
		ok = m.Pong != nil
	case TypeError:
		ok = m.Error != nil
	default:
		return nil, loyalty.Errorf(loyalty.EINVALID, "unknown message type %q", loyalty.Truncate(m.Type, 40))
	}
	if !ok {
		return nil, loyalty.Errorf(loyalty.EINVALID, "%s message without its %s body", m.Type, m.Type)
	}
	return &m, nil
}

// pairedSurrogates reports whether every \u escape of a UTF-16 surrogate in the JSON text b is a
// high surrogate followed at once by an escaped low one, as JSON needs for a character beyond
// U+FFFF. b must be valid JSON, where a backslash only ever starts an escape inside a string.
func pairedSurrogates(b []byte) bool {
	hex4 := func(i int) rune { // the 4 hex digits of a \u escape at b[i:]; -1 if there is none
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return -1
		}
		var r rune
		for _, c := range b[i+2 : i+6] {
			switch {
			case '0' <= c && c <= '9':
				r = r<<4 | rune(c-'0')
			case 'a' <= c && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case 'A' <= c && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return -1
			}
		}
		return r
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		switch r := hex4(i); {
		case 0xD800 <= r && r < 0xDC00: // high surrogate: an escaped low one must follow
			if lo := hex4(i + 6); lo < 0xDC00 || lo >= 0xE000 {
				return false
			}
			i += 11
		case 0xDC00 <= r && r < 0xE000: // low surrogate alone
			return false
		default:
			i++ // skip the escaped character, which may be a backslash
		}
	}
	return true
}

// Negotiate picks the newest version both sides speak. It returns EVERSION if there is none.
func Negotiate(theirs []int) (int, error) {
	for _, ours := range Versions {
		for _, v := range theirs {
			if v == ours {
				return v, nil
			}
		}
	}
	if len(theirs) > 8 { // a hostile hello's list is not answered back whole
		theirs = theirs[:8]
	}
	return 0, loyalty.Errorf(loyalty.EVERSION,
		"agent speaks protocol versions %v, hub speaks %v: upgrade the older side", theirs, Versions)
}

func unixMilli(t time.Time) int64 { return t.UnixMilli() }
