package switchboard

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Error codes. The registry maps each to one HTTP status in one place.
const (
	ECONFLICT     = "conflict"     // 409: a unique name is taken
	EINTERNAL     = "internal"     // 500: a bug or an infrastructure failure
	EINVALID      = "invalid"      // 422: validation failed; Fields says where
	EMALFORMED    = "malformed"    // 400: the body is not the JSON we expect
	ENOTFOUND     = "not_found"    // 404: no such object in the caller's tenant
	EUNAUTHORIZED = "unauthorized" // 401: missing or unknown API key
	EFORBIDDEN    = "forbidden"    // 403: the key may not use this route (admin routes)
	ERATELIMITED  = "rate_limited" // 429: the key exceeded its rate
)

// Error is an error a client can act on. Message is safe to show to the
// client; Fields names every failing field with its reasons.
type Error struct {
	Code    string
	Message string
	Fields  map[string][]string
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return fmt.Sprintf("switchboard: %s: %s", e.Code, e.Message)
	}
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+strings.Join(e.Fields[k], "; "))
	}
	return fmt.Sprintf("switchboard: %s: %s (%s)", e.Code, e.Message, strings.Join(parts, ", "))
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of the first *Error in err's
// chain, or a generic message for any other error.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// FieldErrors collects validation failures, field by field, so that a client
// learns about every failing field at once.
type FieldErrors map[string][]string

// Add records that field failed for reason.
func (fe FieldErrors) Add(field, reason string) { fe[field] = append(fe[field], reason) }

// Err returns nil when nothing failed, else an EINVALID *Error carrying every
// field.
func (fe FieldErrors) Err() error {
	if len(fe) == 0 {
		return nil
	}
	return &Error{Code: EINVALID, Message: "The given data was invalid.", Fields: fe}
}
