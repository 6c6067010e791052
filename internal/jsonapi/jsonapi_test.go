package jsonapi_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
)

type order struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
}

// decode runs Decode on a POST with the given Content-Type (none if "") and body, and writes
// any error the way the APIs do. It returns what was decoded, the error and the response.
func decode(t *testing.T, contentType, body string) (order, error, *httptest.ResponseRecorder) {
	t.Helper()
	r := httptest.NewRequest("POST", "/v1/earn", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	var o order
	err := jsonapi.Decode(w, r, &o)
	if err != nil {
		jsonapi.Error(w, r, slog.New(slog.DiscardHandler), err)
	}
	return o, err, w
}

func TestDecode_ContentType(t *testing.T) {
	const body = `{"order_id":"A-1","amount":1299}`
	for _, ct := range []string{
		"application/json",
		"application/json; charset=utf-8",
		"application/json;charset=UTF-8",
		"Application/JSON; Charset=utf8",
		"application/json; charset=\"utf-8\"; foo=bar",
	} {
		t.Run("accepts "+ct, func(t *testing.T) {
			o, err, _ := decode(t, ct, body)
			if err != nil || o.OrderID != "A-1" || o.Amount != 1299 {
				t.Errorf("got %+v, %v; want the order decoded", o, err)
			}
		})
	}
	for _, ct := range []string{
		"", // missing
		"text/plain",
		"text/plain;charset=UTF-8",
		"application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x",
		"application/jsonp",
		"application/json-patch+json",
		"text/json",
		"application/json; charset=iso-8859-1",
		"application/json; charset=utf-16",
		"application/json;;;=",
	} {
		t.Run("refuses "+ct, func(t *testing.T) {
			o, err, w := decode(t, ct, body)
			if loyalty.ErrorCode(err) != loyalty.EINVALID {
				t.Fatalf("error %v, want EINVALID", err)
			}
			if o != (order{}) {
				t.Errorf("decoded %+v from a refused body", o)
			}
			jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), http.StatusUnsupportedMediaType, loyalty.EINVALID)
			if !strings.Contains(w.Body.String(), "send Content-Type: application/json") {
				t.Errorf("message %s does not say what to send", w.Body)
			}
		})
	}
}

// TestDecode_EmptyBody: a request without a body is refused as empty whatever its
// Content-Type, as before.
func TestDecode_EmptyBody(t *testing.T) {
	for _, ct := range []string{"", "text/plain", "application/json"} {
		_, err, w := decode(t, ct, "")
		jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), http.StatusBadRequest, loyalty.EINVALID)
		if !strings.Contains(loyalty.ErrorMessage(err), "empty") {
			t.Errorf("Content-Type %q, no body: %v, want the empty-body message", ct, err)
		}
	}
}

// TestDecode_UTF8: encoding/json turns invalid UTF-8 and lone surrogate escapes into U+FFFD, so
// different order ids decode to one idempotency key. Decode refuses them.
func TestDecode_UTF8(t *testing.T) {
	// The premise: without the check, these pairs collide.
	for _, pair := range [][2]string{
		{`{"order_id":"X-` + "\xff\xfe" + `"}`, `{"order_id":"X-` + "\xfe\xff" + `"}`},
		{`{"order_id":"X-\ud800"}`, `{"order_id":"X-\udc00"}`},
	} {
		var a, b order
		if json.Unmarshal([]byte(pair[0]), &a) != nil || json.Unmarshal([]byte(pair[1]), &b) != nil || a.OrderID != b.OrderID {
			t.Fatalf("encoding/json no longer merges %q and %q (got %q, %q); the check may be revisited", pair[0], pair[1], a.OrderID, b.OrderID)
		}
	}
	refused := map[string]string{
		"invalid bytes":                `{"order_id":"X-` + "\xff\xfe" + `","amount":1}`,
		"invalid bytes reversed":       `{"order_id":"X-` + "\xfe\xff" + `","amount":1}`,
		"truncated sequence":           `{"order_id":"X-` + "\xc3" + `","amount":1}`,
		"overlong encoding":            `{"order_id":"X-` + "\xc0\xaf" + `","amount":1}`,
		"encoded surrogate":            `{"order_id":"X-` + "\xed\xa0\x80" + `","amount":1}`,
		"invalid byte outside strings": "{\"order_id\":\"X\",\"amount\":1}\xff",
		"lone high surrogate":          `{"order_id":"X-\ud800","amount":1}`,
		"lone low surrogate":           `{"order_id":"X-\uDC00","amount":1}`,
		"high surrogate then letter":   `{"order_id":"X-\ud800\u0041","amount":1}`,
		"high surrogate at the end":    `{"order_id":"X-\ud83d"}`,
		"two high surrogates":          `{"order_id":"\ud83d\ud83d"}`,
		"surrogate in a key":           `{"order_id\udfff":"X"}`,
	}
	for name, body := range refused {
		t.Run(name, func(t *testing.T) {
			o, err, w := decode(t, "application/json", body)
			jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), http.StatusBadRequest, loyalty.EINVALID)
			if o != (order{}) {
				t.Errorf("decoded %+v from a refused body", o)
			}
			if msg := loyalty.ErrorMessage(err); !strings.Contains(msg, "UTF-8") {
				t.Errorf("message %q does not mention UTF-8", msg)
			}
		})
	}
	accepted := map[string]string{
		`{"order_id":"X-é"}`:                  "X-é",
		`{"order_id":"X-\u00e9"}`:             "X-é",
		`{"order_id":"\ud83d\ude00"}`:         "😀",
		`{"order_id":"\uD83D\uDE00\u0041"}`:   "😀A",
		`{"order_id":"X-\uFFFD"}`:             "X-\uFFFD", // a real replacement character is text like any other
		`{"order_id":"X-\\ud800"}`:            `X-\ud800`, // an escaped backslash, then plain letters
		`{"order_id":"\\\ud83d\ude00"}`:       `\😀`,
		`{"order_id":"\"\\\"","amount":1}`:    `"\"`,
		`{"order_id":"日本語-1","amount":5}`:     "日本語-1",
		`{"order_id":"\u0000-\u001f-\u007f"}`: "\x00-\x1f-\x7f",
		`{"order_id":"\ud7ff\ue000\uffff"}`:   "\ud7ff\ue000\uffff",
		`{"order_id":"A","amount":1} ` + "\n": "A",
	}
	for body, want := range accepted {
		o, err, _ := decode(t, "application/json", body)
		if err != nil || o.OrderID != want {
			t.Errorf("%s: got %q, %v; want %q", body, o.OrderID, err, want)
		}
	}
}

// TestDecode_KeepsRules: the size limit, unknown fields, trailing data and type errors are
// still refused as before, with JSON declared.
func TestDecode_KeepsRules(t *testing.T) {
	pad := func(n int) string { // a valid body of exactly n bytes
		head := `{"order_id":"`
		tail := `"}`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}
	if o, err, _ := decode(t, "application/json", pad(jsonapi.MaxBody)); err != nil || len(o.OrderID) == 0 {
		t.Errorf("a body of exactly MaxBody bytes: %v", err)
	}
	for _, tt := range []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"one byte over MaxBody", pad(jsonapi.MaxBody + 1), 413, loyalty.ETOOLARGE, "larger than 65536 bytes"},
		{"unknown field", `{"order_id":"A","points":5}`, 400, loyalty.EINVALID, `unknown field "points"`},
		{"trailing data", `{"order_id":"A"} {}`, 400, loyalty.EINVALID, "unexpected data after the JSON object"},
		{"wrong type", `{"order_id":12}`, 400, loyalty.EINVALID, `field "order_id" must be a JSON string`},
		{"malformed", `{"order_id":`, 400, loyalty.EINVALID, "malformed JSON"},
		{"whitespace only", "  \n", 400, loyalty.EINVALID, "request body is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err, w := decode(t, "application/json", tt.body)
			jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), tt.status, tt.code)
			if msg := loyalty.ErrorMessage(err); !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q, want it to contain %q", msg, tt.msg)
			}
		})
	}
	// Over the limit with the wrong Content-Type: the Content-Type is checked first, before
	// anything is read.
	_, _, w := decode(t, "text/plain", pad(jsonapi.MaxBody+1))
	jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), http.StatusUnsupportedMediaType, loyalty.EINVALID)
}

func TestWithStatus(t *testing.T) {
	err := jsonapi.WithStatus(http.StatusForbidden, loyalty.Errorf(loyalty.EUNAUTHORIZED, "no"))
	if got := loyalty.ErrorCode(err); got != loyalty.EUNAUTHORIZED {
		t.Errorf("code %s, want EUNAUTHORIZED", got)
	}
	var le *loyalty.Error
	if !errors.As(err, &le) || le.Message != "no" {
		t.Errorf("errors.As *loyalty.Error: %v", le)
	}
	if got := jsonapi.HTTPStatus(err); got != http.StatusForbidden {
		t.Errorf("HTTPStatus %d, want 403", got)
	}
	if got := jsonapi.HTTPStatus(loyalty.Errorf(loyalty.EUNAUTHORIZED, "no")); got != http.StatusUnauthorized {
		t.Errorf("HTTPStatus of a plain EUNAUTHORIZED: %d, want 401", got)
	}
	if got := jsonapi.HTTPStatus(errors.New("boom")); got != http.StatusInternalServerError {
		t.Errorf("HTTPStatus of an uncoded error: %d, want 500", got)
	}
	w := httptest.NewRecorder()
	jsonapi.Error(w, httptest.NewRequest("GET", "/", nil), slog.New(slog.DiscardHandler), err)
	jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), http.StatusForbidden, loyalty.EUNAUTHORIZED)
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", got)
	}
}
