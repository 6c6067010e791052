package sync_test

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// FuzzDecode feeds arbitrary bytes to Decode, the first thing the hub does with every frame an
// agent (or anyone who reaches the websocket) sends. Hand-written seeds, valid and malformed,
// are in testdata/fuzz/FuzzDecode; the ones added here are encoded from Go values so they follow
// the message structs as those change. Run it with
//
//	go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 60s ./sync/
//
// Whatever Decode accepts must
//   - have a known type and carry that type's body;
//   - encode again, and decode from that to an equal message whose encoding is the same bytes
//     (a round trip: what the hub acts on is exactly what it would send or store);
//   - not contain U+FFFD unless the input did: JSON decoding silently replaces invalid UTF-8
//     and unpaired surrogate escapes with it, which turns different ids into the same one.
//
// Whatever it refuses, it refuses with EINVALID and no message.
func FuzzDecode(f *testing.F) {
	for _, m := range seedMessages() {
		b, err := lsync.Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := lsync.Decode(b)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode returned a message and an error: %+v, %v", m, err)
			}
			if code := loyalty.ErrorCode(err); code != loyalty.EINVALID {
				t.Fatalf("Decode refused with %s, want EINVALID: %v", code, err)
			}
			return
		}
		if !hasBody(m) {
			t.Fatalf("Decode accepted type %q without its body: %+v", m.Type, m)
		}
		enc, err := lsync.Encode(m)
		if err != nil {
			t.Fatalf("accepted message does not encode: %v\ninput: %q", err, b)
		}
		m2, err := lsync.Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded message refused: %v\ninput:   %q\nencoded: %s", err, b, enc)
		}
		if !equalValues(reflect.ValueOf(m), reflect.ValueOf(m2)) {
			t.Fatalf("round trip changed the message\ninput:  %q\nfirst:  %+v\nsecond: %+v", b, m, m2)
		}
		if enc2, err := lsync.Encode(m2); err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %v\nfirst:  %s\nsecond: %s", err, enc, enc2)
		}
		if !hasReplacementChar(b) && hasReplacementChar(enc) {
			t.Fatalf("Decode made up U+FFFD (a replaced invalid byte or escape)\ninput:   %q\nencoded: %s", b, enc)
		}
	})
}

// hasBody reports whether m's type is known and m carries the body that type needs.
func hasBody(m *lsync.Message) bool {
	switch m.Type {
	case lsync.TypeHello:
		return m.Hello != nil
	case lsync.TypeWelcome:
		return m.Welcome != nil
	case lsync.TypePush:
		return m.Push != nil
	case lsync.TypeAck:
		return m.Ack != nil
	case lsync.TypePull:
		return m.Pull != nil
	case lsync.TypeChanges:
		return m.Changes != nil
	case lsync.TypeNotify:
		return m.Notify != nil
	case lsync.TypeSubscribe:
		return m.Subscribe != nil
	case lsync.TypeMember:
		return m.Member != nil
	case lsync.TypePing:
		return m.Ping != nil
	case lsync.TypePong:
		return m.Pong != nil
	case lsync.TypeError:
		return m.Error != nil
	}
	return false
}

// hasReplacementChar reports whether JSON text holds U+FFFD, as UTF-8 or as a \ufffd escape.
func hasReplacementChar(b []byte) bool {
	return bytes.ContainsRune(b, '\uFFFD') || bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`))
}

var timeType = reflect.TypeFor[time.Time]()

// equalValues is reflect.DeepEqual with the equalities a JSON round trip may keep without
// keeping the representation: times are equal when they are the same instant (a zone's
// *Location differs between two parses), and a nil slice or map equals an empty one (an
// omitempty field sent as [] or {} comes back absent).
func equalValues(a, b reflect.Value) bool {
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == timeType {
		return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalValues(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !equalValues(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalValues(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !equalValues(it.Value(), bv) {
				return false
			}
		}
		return true
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	}
	// Unexported fields of other kinds (none today) can only be compared as a whole.
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// seedMessages is one valid message of every type, built from Go values.
func seedMessages() []*lsync.Message {
	at := time.Date(2026, 11, 22, 12, 30, 0, 123e6, time.UTC)
	d := loyalty.Delta{ID: "d0000000000000000000000001", Store: "s1", Terminal: "t1", Member: "m1", Kind: loyalty.KindEarn,
		Points: 12, Amount: 1299, Currency: "EUR", OrderID: "o-1", RuleVersion: 3, OccurredAt: at, ClockOffsetMS: -250,
		Leases: map[string]string{"b1": "l1"}, Lines: []loyalty.Line{{SKU: "coffee", Category: "drinks", Qty: 1, Amount: 1299}},
		Tier: "gold", Country: "DE", TimeZone: "Europe/Berlin", Punches: map[string]int64{"coffee": 1}}
	redeem := loyalty.Delta{ID: "d0000000000000000000000002", Store: "s1", Member: "m1", Kind: loyalty.KindRedeem,
		Points: -100, Reward: "coffee", OrderID: "o-2", OccurredAt: at}
	program := loyalty.DefaultProgram()
	member := loyalty.Member{ID: "m1", Email: "ana@example.com", Name: "Ana Müller", HomeStore: "s1", Country: "DE",
		Tier: "gold", Punches: map[string]int64{"coffee": 3}, Balance: 420, Version: 17, CreatedAt: at}
	return []*lsync.Message{
		{Type: lsync.TypeHello, ID: 1, Hello: &lsync.Hello{Versions: []int{1}, Store: "s1", Token: "secret", AgentVersion: "1.2.3", SentAt: at.UnixMilli()}},
		{Type: lsync.TypeWelcome, ID: 1, Welcome: &lsync.Welcome{Version: 1, Store: "s1", HubTime: at.UnixMilli(), HeartbeatMillis: 10000, MaxBatch: 500, MaxMessageBytes: 1 << 20}},
		{Type: lsync.TypePush, ID: 2, Push: &lsync.Push{Deltas: []loyalty.Delta{d, redeem}}},
		{Type: lsync.TypeAck, ID: 2, Ack: &lsync.Ack{
			Results:  []lsync.Result{{DeltaID: d.ID, Status: lsync.StatusApplied, Seq: 7}, {DeltaID: redeem.ID, Status: lsync.StatusRejected, Code: loyalty.EINVALID, Message: "no"}},
			Balances: []lsync.Balance{{Member: "m1", Balance: 420, Version: 8}}}},
		{Type: lsync.TypePull, ID: 3, Pull: &lsync.Pull{Cursor: 9, Limit: 100, Flushed: true}},
		{Type: lsync.TypeChanges, ID: 3, Changes: &lsync.Changes{Cursor: 12, More: true, Members: []loyalty.Member{member},
			Program: &program, Keys: []qr.PublicKey{{ID: "kabc", Key: make([]byte, 32), NotAfter: at}},
			Leases:   []lsync.Lease{{ID: "l1", Budget: "b1", Granted: 1000, State: "active", TTLMillis: 60000}},
			TimeZone: "Europe/Berlin"}},
		{Type: lsync.TypeNotify, Notify: &lsync.Notify{Cursor: 12}},
		{Type: lsync.TypeSubscribe, ID: 4, Subscribe: &lsync.Subscribe{Member: "m2"}},
		{Type: lsync.TypeMember, ID: 4, Member: &member},
		{Type: lsync.TypePing, ID: 5, Ping: &lsync.Ping{SentAt: at.UnixMilli(), ClockOffsetMS: 40, Outbox: 3}},
		{Type: lsync.TypePong, ID: 5, Pong: &lsync.Pong{SentAt: at.UnixMilli(), HubTime: at.UnixMilli() + 40}},
		{Type: lsync.TypeError, ID: 6, Error: loyalty.Errorf(loyalty.ENOTFOUND, "no member m9")},
	}
}

// TestDecode_RefusesInvalidText: ids that differ only in bytes JSON cannot carry (invalid UTF-8,
// unpaired UTF-16 surrogate escapes) must not both arrive as the same id with U+FFFD in it.
func TestDecode_RefusesInvalidText(t *testing.T) {
	for _, in := range []string{
		"{\"type\":\"subscribe\",\"subscribe\":{\"member\":\"m\xff\"}}",
		"{\"type\":\"subscribe\",\"subscribe\":{\"member\":\"m\xfe\"}}",
		"{\"type\":\"subscribe\",\"subscribe\":{\"member\":\"m\xc3\"}}", // a cut-off two-byte sequence
		"{\"type\":\"ping\",\"ping\":{},\"x\":\"\xed\xa0\x80\"}",        // a surrogate encoded as UTF-8, outside any body
		`{"type":"subscribe","subscribe":{"member":"m\ud800"}}`,         // a high surrogate with no low one
		`{"type":"subscribe","subscribe":{"member":"m\udc00"}}`,         // a low surrogate alone
		`{"type":"subscribe","subscribe":{"member":"m\uD83D\u0041"}}`,
		`{"type":"subscribe","subscribe":{"member":"m\ud83d"}}`,
	} {
		if m, err := lsync.Decode([]byte(in)); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("Decode(%q) = %+v, %v; want EINVALID", in, m, err)
		}
	}
	for in, want := range map[string]string{
		`{"type":"subscribe","subscribe":{"member":"café"}}`:              "café",
		`{"type":"subscribe","subscribe":{"member":"caf\u00e9"}}`:         "café",
		`{"type":"subscribe","subscribe":{"member":"\ud83d\ude00"}}`:      "😀",
		`{"type":"subscribe","subscribe":{"member":"\\ud800"}}`:           `\ud800`,  // an escaped backslash, not an escape
		`{"type":"subscribe","subscribe":{"member":"m\ufffd"}}`:           "m\uFFFD", // sent on purpose, kept
		"{\"type\":\"subscribe\",\"subscribe\":{\"member\":\"m\uFFFD\"}}": "m\uFFFD",
	} {
		m, err := lsync.Decode([]byte(in))
		if err != nil || m.Subscribe.Member != want {
			t.Errorf("Decode(%q) = %+v, %v; want member %q", in, m, err, want)
		}
	}
}
