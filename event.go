package switchboard

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Limits on events.
const (
	MaxEventIDLength = 128
	MaxAgentIDLength = 255
	MaxEventDataSize = 512 << 10 // keeps a rendered delivery well under NATS' 1 MiB max payload
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
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

// ValidEventID reports whether id may be used as an event id. Ids end up in
// NATS subjects and message ids, so they are restricted to [A-Za-z0-9_:-].
func ValidEventID(id string) bool {
	if id == "" || len(id) > MaxEventIDLength {
		return false
	}
	for _, c := range id {
		if !isTokenChar(c) && c != ':' {
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
// webhook's custom values (nil for none).
func (e *Event) Payload(properties json.RawMessage) ([]byte, error) {
	return json.Marshal(Payload{
		ID:         e.ID,
		Type:       e.Type,
		Timestamp:  e.OccurredAt,
		AgentID:    e.AgentID,
		Data:       e.Data,
		Properties: properties,
	})
}
