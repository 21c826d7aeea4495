package store

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard"
)

// Rules of fields that both the store and the API's validation check.

// AgentIDRule is the error message of an agent id outside the rule.
const AgentIDRule = `must be 1 to 255 characters of letters, digits, '_', '.', ':' or '-', and not "." or ".."`

// CheckName records what is wrong with a required name of at most
// switchboard.MaxNameLength characters.
func CheckName(fe switchboard.FieldErrors, field, name string) {
	switch {
	case strings.TrimSpace(name) == "":
		fe.Add(field, "is required")
	case utf8.RuneCountInString(name) > switchboard.MaxNameLength:
		fe.Add(field, fmt.Sprintf("must be at most %d characters", switchboard.MaxNameLength))
	}
}

// Quote quotes s for an error message, cut to 64 characters.
func Quote(s string) string {
	if utf8.RuneCountInString(s) > 64 {
		s = string([]rune(s)[:64]) + "..."
	}
	return strconv.Quote(s)
}
