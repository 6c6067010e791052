// Package jsonapi holds the JSON-over-HTTP conventions that the agent's POS API and the hub's API
// share: how a body is decoded, and how results and errors are written.
package jsonapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

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

// Decode reads a JSON request body into v. Unknown fields, trailing data, bodies over MaxBody and
// malformed JSON are EINVALID or ETOOLARGE with a message saying what is wrong.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("unexpected data after the JSON object")
	}
	var le *loyalty.Error
	var mbe *http.MaxBytesError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &le):
		return le
	case errors.As(err, &mbe):
		return loyalty.Errorf(loyalty.ETOOLARGE, "request body is larger than %d bytes", MaxBody)
	case errors.Is(err, io.EOF):
		return loyalty.Errorf(loyalty.EINVALID, "request body is empty; send a JSON object")
	case errors.As(err, &te):
		return loyalty.Errorf(loyalty.EINVALID, "field %q must be a JSON %s", te.Field, te.Type.Kind())
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return loyalty.Errorf(loyalty.EINVALID, "%s (check the spelling against docs/API.md)", strings.TrimPrefix(err.Error(), "json: "))
	}
	return loyalty.Errorf(loyalty.EINVALID, "malformed JSON: %v", err)
}

// Write writes v as JSON with the given status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // messages say <admin_api_key>, not \u003cadmin_api_key\u003e
	enc.Encode(v)
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error *loyalty.Error `json:"error"`
}

// Error writes err as {"error":{"code","message"}}. Errors without a code are logged in full and
// reach the caller as EINTERNAL.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := loyalty.AsError(err)
	if e.Code == loyalty.EINTERNAL {
		log.Error("request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	Write(w, Status(e.Code), ErrorBody{Error: e})
}
