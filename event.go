package switchboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Limits on events.
const (
	MaxEventIDLength  = 128
	MaxTenantIDLength = 128
	MaxAgentIDLength  = 255
	MaxEventDataSize  = 512 << 10 // keeps a rendered delivery well under NATS' 1 MiB max payload
)

// Event is something that happened on the platform, published once and
// delivered to every matching webhook. ID is the idempotency key: an event
// published twice with the same ID is delivered once.
type Event struct {
	ID         string          `json:"id"`
	TenantID   string          `json:"tenant_id"`
	Type       string          `json:"type"`
	AgentID    string          `json:"agent_id,omitempty"`
	OccurredAt time.Time       `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
}

// NewID returns a new time-ordered id with the given prefix, e.g.
// NewID("wh_"). Ids are subject-safe: [a-z0-9_].
func NewID(prefix string) string {
	u := uuid.Must(uuid.NewV7())
	return prefix + strings.ReplaceAll(u.String(), "-", "")
}

// EventIDPrefix prefixes generated event ids, as Standard Webhooks suggests.
const EventIDPrefix = "msg_"

// Normalize fills the fields a publisher may leave out: a generated ID and
// OccurredAt set to now. It does not validate.
func (e *Event) Normalize(now time.Time) {
	if e.ID == "" {
		e.ID = NewID(EventIDPrefix)
	}
	if e.OccurredAt.IsZero() {
		e.OccurredAt = now
	}
	e.OccurredAt = e.OccurredAt.UTC()
}

// Validate returns an EINVALID *Error naming every failing field, or nil.
func (e *Event) Validate() error {
	fe := FieldErrors{}
	if e.ID != "" && !ValidEventID(e.ID) {
		fe.Add("id", "must be 1 to 128 characters of letters, digits, '_', '-' or ':'")
	}
	switch {
	case e.TenantID == "":
		fe.Add("tenant_id", "is required")
	case !ValidTenantID(e.TenantID):
		fe.Add("tenant_id", "must be 1 to 128 characters of letters, digits, '_' or '-'")
	}
	if y := e.OccurredAt.Year(); y < 1 || y > 9999 {
		fe.Add("occurred_at", "must be between the years 1 and 9999")
	}
	switch {
	case e.Type == "":
		fe.Add("type", "is required")
	case !ValidEventType(e.Type):
		fe.Add("type", "must be dot-separated tokens of letters, digits, '_' or '-', at most 256 characters")
	}
	if len(e.AgentID) > MaxAgentIDLength {
		fe.Add("agent_id", "must be at most 255 characters")
	}
	data := strings.TrimSpace(string(e.Data))
	switch {
	case data == "" || data == "null":
		fe.Add("data", "is required")
	case !strings.HasPrefix(data, "{") || !json.Valid(e.Data):
		fe.Add("data", "must be a JSON object")
	case len(e.Data) > MaxEventDataSize:
		fe.Add("data", "must be at most 512 KiB")
	}
	return fe.Err()
}

// ValidTenantID reports whether id may name a tenant. A tenant id is one
// token of an event's subject, so a dot in it would publish into another
// tenant's subjects.
func ValidTenantID(id string) bool {
	return validToken(id, MaxTenantIDLength, "")
}

// ValidAgentID reports whether id may name an agent that webhooks are
// scoped to: 1 to 255 characters of [A-Za-z0-9_.:-], and not "." or ".."
// (the id is a path segment of /v1/agents/{agent_id}/webhooks). Events may
// carry other agent ids (Validate only bounds their length), but no
// agent-scoped webhook can match them.
func ValidAgentID(id string) bool {
	return id != "." && id != ".." && validToken(id, MaxAgentIDLength, ".:")
}

// ValidEventID reports whether id may be used as an event id. Ids end up in
// NATS subjects and message ids, so they are restricted to [A-Za-z0-9_:-].
func ValidEventID(id string) bool {
	return validToken(id, MaxEventIDLength, ":")
}

// validToken reports whether s is 1 to maxLen characters of [A-Za-z0-9_-]
// or extra.
func validToken(s string, maxLen int, extra string) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for _, c := range s {
		if !isTokenChar(c) && !strings.ContainsRune(extra, c) {
			return false
		}
	}
	return true
}

// Payload is the JSON body a receiver gets for an event.
type Payload struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Timestamp  time.Time       `json:"timestamp"`
	AgentID    string          `json:"agent_id,omitempty"`
	Data       json.RawMessage `json:"data"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

// Payload renders the body delivered to a webhook for e; properties are the
// webhook's custom values (nil for none). See AppendPayload.
func (e *Event) Payload(properties json.RawMessage) ([]byte, error) {
	if y := e.OccurredAt.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("event %s: occurred_at year %d outside 0..9999", e.ID, y)
	}
	return e.AppendPayload(make([]byte, 0, payloadSize(e, properties)), properties), nil
}

// AppendPayload appends to dst the body delivered for e, as Payload's JSON
// fields in this order: {"id","type","timestamp","agent_id"?,"data",
// "properties"?}. properties, when given, come last, so that a body
// rendered without them gets them by replacing its closing brace.
//
// It writes the fields with appends, not encoding/json: e must be valid
// (Validate), its ids and type need no escaping, and Data is copied as
// published, not compacted nor HTML-escaped again (escaping every '<' as six
// bytes would let a valid 512 KiB event outgrow a NATS message). Only the
// free-text AgentID is escaped.
func (e *Event) AppendPayload(dst []byte, properties json.RawMessage) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, e.ID...)
	dst = append(dst, `","type":"`...)
	dst = append(dst, e.Type...)
	dst = append(dst, `","timestamp":"`...)
	dst = e.OccurredAt.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if e.AgentID != "" {
		dst = append(dst, `,"agent_id":`...)
		dst = appendJSONString(dst, e.AgentID)
	}
	dst = append(dst, `,"data":`...)
	dst = append(dst, bytes.TrimSpace(e.Data)...)
	if len(properties) > 0 {
		dst = append(dst, `,"properties":`...)
		dst = append(dst, bytes.TrimSpace(properties)...)
	}
	return append(dst, '}')
}

// payloadSize is an upper bound of the size of e's payload, short of an
// agent id that needs escaping.
func payloadSize(e *Event, properties json.RawMessage) int {
	return 96 + len(e.ID) + len(e.Type) + len(e.AgentID) + len(e.Data) + len(properties)
}

// appendJSONString appends s as a JSON string. Strings of printable ASCII
// without quotes or backslashes, like every valid agent id, are appended
// as they are; others go through encoding/json.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b, _ := json.Marshal(s) // cannot fail for a string
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
