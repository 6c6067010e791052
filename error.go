package loyalty

import (
	"errors"
	"fmt"
)

// Error codes are stable strings shared by the HTTP APIs, the sync protocol and logs.
// They are never renamed or renumbered once released; new codes may be added.
const (
	EINVALID      = "EINVALID"      // the request is malformed or breaks a rule; fix the input
	ENOTFOUND     = "ENOTFOUND"     // the member, reward, order or store does not exist
	EUNAUTHORIZED = "EUNAUTHORIZED" // wrong or missing token or API key, or acting as someone else
	EFORBIDDEN    = "EFORBIDDEN"    // a valid API key whose scope does not allow the call
	EDUPLICATE    = "EDUPLICATE"    // the same id was already used for different content
	ECONFLICT     = "ECONFLICT"     // the request contradicts an earlier one (idempotency key reuse, voucher reuse)
	EINSUFFICIENT = "EINSUFFICIENT" // the member does not have enough points
	EBUDGET       = "EBUDGET"       // a budget or quota limit would be exceeded
	EVERSION      = "EVERSION"      // the peer speaks no protocol version we support
	ESUPERSEDED   = "ESUPERSEDED"   // sync only: another connection for the same store took over its session
	ETOOLARGE     = "ETOOLARGE"     // the message or request body is larger than allowed
	EUNAVAILABLE  = "EUNAVAILABLE"  // the operation needs the hub and the hub cannot be reached
	EINTERNAL     = "EINTERNAL"     // a bug or an infrastructure failure; details are in the server log
)

// Error is an error with a stable code and a message written for the person who must act on it
// (a cashier, an operator, a developer integrating a POS).
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code string, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for any other
// non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain. Any other error gets a
// generic message, so internal details never reach a cashier or a remote peer.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error; the details are in the server log"
}

// AsError converts any error into an *Error suitable for the wire.
func AsError(err error) *Error {
	return &Error{Code: ErrorCode(err), Message: ErrorMessage(err)}
}
