// Package jsonapitest checks the JSON-over-HTTP conventions of package jsonapi in tests.
package jsonapitest

import (
	"encoding/json"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
)

// AssertError checks that an HTTP answer is the JSON error {"error":{"code","message"}} with the
// given code, a non-empty message and the given status.
func AssertError(tb testing.TB, status int, body []byte, wantStatus int, wantCode string) {
	tb.Helper()
	var eb struct {
		Error *loyalty.Error `json:"error"`
	}
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
		tb.Errorf("got status %d body %q, want a JSON error body with code %s", status, body, wantCode)
		return
	}
	if got, want := eb.Error.Code, wantCode; got != want {
		tb.Errorf("got code %s (%q), want %s", got, eb.Error.Message, want)
	}
	if got, want := status, wantStatus; got != want {
		tb.Errorf("got status %d, want %d (code %s)", got, want, eb.Error.Code)
	}
	if eb.Error.Message == "" {
		tb.Errorf("error %s has an empty message; want one saying what to fix", eb.Error.Code)
	}
}
