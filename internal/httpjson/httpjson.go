// Package httpjson is the JSON side of Switchboard's HTTP APIs, shared by the
// registry and the ingest handler: decoding request bodies into
// client-actionable errors, and the one table that maps error codes to HTTP
// statuses.
package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/switchboard-hq/switchboard"
)

// MaxBodySize bounds every request body.
const MaxBodySize = 1 << 20

var codeStatus = map[string]int{
	switchboard.ECONFLICT:     http.StatusConflict,
	switchboard.EINTERNAL:     http.StatusInternalServerError,
	switchboard.EINVALID:      http.StatusUnprocessableEntity,
	switchboard.EMALFORMED:    http.StatusBadRequest,
	switchboard.ENOTFOUND:     http.StatusNotFound,
	switchboard.EUNAUTHORIZED: http.StatusUnauthorized,
	switchboard.EFORBIDDEN:    http.StatusForbidden,
	switchboard.ERATELIMITED:  http.StatusTooManyRequests,
}

// Status returns the HTTP status for an error code (500 for unknown codes).
func Status(code string) int {
	if s, ok := codeStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Message string              `json:"message"`
	Errors  map[string][]string `json:"errors,omitempty"`
}

// Error writes err as a JSON error response. Only internal errors are logged,
// and their text never reaches the client.
func Error(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	code := switchboard.ErrorCode(err)
	body := ErrorBody{Message: switchboard.ErrorMessage(err)}
	var e *switchboard.Error
	if errors.As(err, &e) {
		body.Errors = e.Fields
	}
	if code == switchboard.EINTERNAL && logger != nil {
		logger.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	Write(w, Status(code), body)
}

// Write writes v as JSON with the given status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Decode reads r's body as one JSON value into v. Every failure is an
// EMALFORMED *switchboard.Error that says what is wrong and where.
func Decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxBodySize))
	if err := dec.Decode(v); err != nil {
		return malformed(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return switchboard.Errorf(switchboard.EMALFORMED, "The body must hold a single JSON value.")
	}
	return nil
}

func malformed(err error) error {
	var (
		syntax   *json.SyntaxError
		typ      *json.UnmarshalTypeError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return switchboard.Errorf(switchboard.EMALFORMED, "The body is empty; a JSON object is required.")
	case errors.As(err, &syntax):
		return switchboard.Errorf(switchboard.EMALFORMED, "Malformed JSON at byte %d: %v.", syntax.Offset, err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return &switchboard.Error{
			Code:    switchboard.EMALFORMED,
			Message: fmt.Sprintf("Field %s must be of type %s, not %s.", field, typ.Type, typ.Value),
			Fields:  map[string][]string{field: {fmt.Sprintf("must be of type %s", typ.Type)}},
		}
	case errors.As(err, &tooLarge):
		return switchboard.Errorf(switchboard.EMALFORMED, "The body exceeds %d bytes.", tooLarge.Limit)
	default:
		return switchboard.Errorf(switchboard.EMALFORMED, "Malformed JSON: %v.", err)
	}
}
