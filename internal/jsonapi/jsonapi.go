// Package jsonapi holds the JSON-over-HTTP conventions that the agent's POS API and the hub's API
// share: how a body is decoded, and how results and errors are written.
package jsonapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/loyalty-edge-sync/loyalty"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// Status maps an error code to an HTTP status.
func Status(code string) int {
	switch code {
	case loyalty.EINVALID, loyalty.EVERSION:
		return http.StatusBadRequest
	case loyalty.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case loyalty.EFORBIDDEN:
		return http.StatusForbidden
	case loyalty.ENOTFOUND:
		return http.StatusNotFound
	case loyalty.EDUPLICATE, loyalty.ECONFLICT:
		return http.StatusConflict
	case loyalty.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case loyalty.EINSUFFICIENT, loyalty.EBUDGET:
		return http.StatusUnprocessableEntity
	case loyalty.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// statusError is a coded error answered with an HTTP status other than the one its code maps to.
type statusError struct {
	status int
	err    *loyalty.Error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// WithStatus returns err to be answered with the given HTTP status instead of Status(err.Code),
// for a refusal that HTTP has a more precise status for than its stable code: 415 for a body
// that is not declared as JSON (EINVALID), 403 for a Host the server does not answer to
// (EUNAUTHORIZED). The code and message reach the caller unchanged.
func WithStatus(status int, err *loyalty.Error) error {
	return &statusError{status: status, err: err}
}

// HTTPStatus returns the status Error answers err with: the one given to WithStatus, or else
// the one its code maps to.
func HTTPStatus(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	return Status(loyalty.ErrorCode(err))
}

// Decode reads a JSON request body into v. A body must be declared as JSON (Content-Type:
// application/json, parameters allowed; otherwise EINVALID with HTTP 415): a web page can make
// a browser send text/plain or a form encoding anywhere without asking first, but not JSON. It
// must be valid UTF-8 with no lone surrogate escapes: encoding/json would silently turn those
// into U+FFFD, so that two different order ids became one idempotency key. Field names are
// case-sensitive and given once per object (checkKeys): encoding/json would read "AMOUNT" as
// "amount", and keep the last of two. Unknown fields, trailing data, bodies over MaxBody and
// malformed JSON are EINVALID or ETOOLARGE with a message saying what is wrong.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	// A request without a body (Content-Length: 0) is refused below as empty, whatever its
	// Content-Type: it can do nothing, and "send a JSON object" is the better advice.
	if r.ContentLength != 0 {
		if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
			return err
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return loyalty.Errorf(loyalty.ETOOLARGE, "request body is larger than %d bytes", MaxBody)
	case err != nil:
		return loyalty.Errorf(loyalty.EINVALID, "could not read the request body: %v", err)
	case !utf8.Valid(body):
		return loyalty.Errorf(loyalty.EINVALID, "the request body is not valid UTF-8")
	case loneSurrogate(body):
		return loyalty.Errorf(loyalty.EINVALID, `the request body has a \u escape that is half of a UTF-16 surrogate pair; send the text as UTF-8 or escape both halves of the pair`)
	}
	if err := checkKeys(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	var le *loyalty.Error
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &le):
		return le
	case errors.Is(err, io.EOF):
		return loyalty.Errorf(loyalty.EINVALID, "request body is empty; send a JSON object")
	case errors.As(err, &te):
		return loyalty.Errorf(loyalty.EINVALID, "field %q must be a JSON %s", te.Field, te.Type.Kind())
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return loyalty.Errorf(loyalty.EINVALID, "%s (check the spelling against docs/API.md)", strings.TrimPrefix(err.Error(), "json: "))
	}
	return loyalty.Errorf(loyalty.EINVALID, "malformed JSON: %v", err)
}

// checkContentType accepts application/json (any case) with any parameters, but a charset only
// if it is UTF-8. Anything else is EINVALID with HTTP 415.
func checkContentType(ct string) error {
	const want = "send Content-Type: application/json"
	if strings.TrimSpace(ct) == "" {
		return WithStatus(http.StatusUnsupportedMediaType, loyalty.Errorf(loyalty.EINVALID,
			"the request has no Content-Type; %s with a JSON body", want))
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return WithStatus(http.StatusUnsupportedMediaType, loyalty.Errorf(loyalty.EINVALID,
			"the request's Content-Type cannot be parsed; %s", want))
	}
	if mt != "application/json" { // ParseMediaType lower-cases it; it is a token, safe to quote
		return WithStatus(http.StatusUnsupportedMediaType, loyalty.Errorf(loyalty.EINVALID,
			"Content-Type %s is not accepted; %s", mt, want))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return WithStatus(http.StatusUnsupportedMediaType, loyalty.Errorf(loyalty.EINVALID,
			"charset %s is not accepted: JSON must be UTF-8; %s (optionally with ; charset=utf-8)", truncate(cs, 40), want))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...", s[:n])
}

// loneSurrogate reports whether a JSON text has a \uXXXX escape of a UTF-16 surrogate that is
// not part of a high-low pair. encoding/json decodes such an escape to U+FFFD, so "\ud800" and
// "\udc00" would decode to the same string. A backslash outside a string is a syntax error that
// the decoder reports, so the scan does not need to track where strings are.
func loneSurrogate(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		r, ok := escapedRune(b[i:])
		if !ok {
			i++ // a two-byte escape such as \\ or \"; skip its second byte
			continue
		}
		i += 5 // the last byte of this \uXXXX
		switch {
		case 0xDC00 <= r && r <= 0xDFFF:
			return true
		case 0xD800 <= r && r <= 0xDBFF:
			lo, ok := escapedRune(b[i+1:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

// escapedRune decodes a \uXXXX escape at the start of b.
func escapedRune(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// Write writes v as JSON with the given status. v is encoded before anything is sent: a value
// that cannot be encoded (a time outside years 0 to 9999, say) is logged and answered with 500
// EINTERNAL, never with the status and an empty or cut body.
func Write(w http.ResponseWriter, status int, v any) {
	b, err := encode(EmptyList(v))
	if err != nil {
		slog.Error("jsonapi: the response cannot be encoded as JSON", slog.Int("status", status), slog.Any("err", err))
		status = http.StatusInternalServerError
		// EINTERNAL with the generic message, as Error answers an error without a code.
		b, _ = encode(ErrorBody{Error: loyalty.AsError(errors.New("unencodable response"))})
	}
	w.Header().Set("Content-Type", "application/json")
	// Messages can quote the request; a browser must never read an answer as anything but JSON.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b) // the status is sent: a failed write is the client's going away
}

// encode returns v as JSON text, with a newline, not HTML-escaped.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // messages say <admin_api_key>, not \u003cadmin_api_key\u003e
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// EmptyList returns v, or an empty list when v is a nil slice: a list answer with nothing in it
// is [], never null, whichever way the list was built.
func EmptyList(v any) any {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.IsNil() {
		return []struct{}{}
	}
	return v
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error *loyalty.Error `json:"error"`
}

// Error writes err as {"error":{"code","message"}}, with the HTTP status HTTPStatus gives.
// Errors without a code are logged in full and reach the caller as EINTERNAL.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := loyalty.AsError(err)
	if e.Code == loyalty.EINTERNAL {
		log.Error("request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	Write(w, HTTPStatus(err), ErrorBody{Error: e})
}

// StatusRecorder is a ResponseWriter that remembers the status code a handler wrote (200 if it
// wrote none), for request metrics. Unwrap lets http.ResponseController reach the connection's
// writer through it (Flush, deadlines).
type StatusRecorder struct {
	http.ResponseWriter
	Status int
	wrote  bool
}

// NewStatusRecorder wraps w.
func NewStatusRecorder(w http.ResponseWriter) *StatusRecorder {
	return &StatusRecorder{ResponseWriter: w, Status: http.StatusOK}
}

func (w *StatusRecorder) WriteHeader(code int) {
	if !w.wrote {
		w.Status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusRecorder) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *StatusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReplayedHeader is set ("true") on the HTTP answer to a retry of an earn, redemption or
// reversal (loyalty.Receipt.Replayed): the body is the first answer's, byte for byte.
const ReplayedHeader = "Idempotent-Replayed"

// MarkReplayed sets ReplayedHeader on h when resp is the answer to a retry: a replayed receipt,
// or any answer that says it was (an adjustment).
func MarkReplayed(h http.Header, resp any) {
	if r, ok := resp.(interface{ WasReplayed() bool }); ok && r.WasReplayed() {
		h.Set(ReplayedHeader, "true")
	}
}
