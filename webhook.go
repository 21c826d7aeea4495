package switchboard

import (
	"strings"
	"time"
)

// WebhookStatus says whether a webhook receives deliveries.
type WebhookStatus string

// Webhook statuses. Only active webhooks are matched to events;
// StatusTooManyErrors is set by the engine, never by a client.
const (
	StatusActive        WebhookStatus = "active"
	StatusInactive      WebhookStatus = "inactive"
	StatusTooManyErrors WebhookStatus = "too_many_errors"
)

// Defaults and bounds of webhook settings (seed 002).
const (
	DefaultTimeoutSeconds = 30
	MinTimeoutSeconds     = 5
	MaxTimeoutSeconds     = 120
	DefaultMaxRetries     = 3
	MaxMaxRetries         = 10
	MaxNameLength         = 255
	MaxURLLength          = 500
	MaxEventTypeLength    = 256
)

// Webhook is a customer's subscription: events of its tenant (and, when
// AgentID is set, of that agent only) whose type matches one of Events are
// delivered to URL, signed with Secret.
//
// This is the form mirrored into the JetStream KV bucket that workers read,
// so it carries the secret; API responses use their own representation.
type Webhook struct {
	ID             string        `json:"id"`
	TenantID       string        `json:"tenant_id"`
	AgentID        string        `json:"agent_id,omitempty"`
	Name           string        `json:"name"`
	URL            string        `json:"url"`
	Events         []string      `json:"events"`
	Secret         string        `json:"secret"`
	TimeoutSeconds int           `json:"timeout"`
	MaxRetries     int           `json:"max_retries"`
	Status         WebhookStatus `json:"status"`
	CreatedAt      time.Time     `json:"created_at"`
	UpdatedAt      time.Time     `json:"updated_at"`
}

// Timeout returns the per-attempt HTTP timeout.
func (w *Webhook) Timeout() time.Duration {
	if w.TimeoutSeconds <= 0 {
		return DefaultTimeoutSeconds * time.Second
	}
	return time.Duration(w.TimeoutSeconds) * time.Second
}

// Matches reports whether evt should be delivered to w: same tenant, w is
// active, w is tenant-wide or scoped to evt's agent, and one of w's patterns
// matches evt's type.
func (w *Webhook) Matches(evt *Event) bool {
	if w.Status != StatusActive || w.TenantID != evt.TenantID {
		return false
	}
	if w.AgentID != "" && w.AgentID != evt.AgentID {
		return false
	}
	for _, p := range w.Events {
		if MatchEventType(p, evt.Type) {
			return true
		}
	}
	return false
}

// MatchEventType reports whether the event type typ matches pattern: "*"
// matches every type, "prefix.*" every type that starts with "prefix.", and
// anything else only itself.
func MatchEventType(pattern, typ string) bool {
	if pattern == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasSuffix(prefix, ".") && strings.HasPrefix(typ, prefix) && len(typ) > len(prefix)
	}
	return pattern == typ
}

// ValidEventPattern reports whether p is "*", a valid event type, or a valid
// event type followed by ".*".
func ValidEventPattern(p string) bool {
	if p == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(p, ".*"); ok {
		return ValidEventType(prefix)
	}
	return ValidEventType(p)
}

// ValidEventType reports whether name is a usable event type: at most
// MaxEventTypeLength characters of [A-Za-z0-9_-] in dot-separated, non-empty
// tokens. The type becomes part of a NATS subject, hence the strictness.
func ValidEventType(name string) bool {
	if name == "" || len(name) > MaxEventTypeLength {
		return false
	}
	for _, tok := range strings.Split(name, ".") {
		if !validToken(tok, MaxEventTypeLength, "") {
			return false
		}
	}
	return true
}

func isTokenChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// DefaultEventTypes is the catalogue every tenant starts with.
var DefaultEventTypes = []EventType{
	{Name: "call.started", Description: "A phone call started."},
	{Name: "call.answered", Description: "A phone call was answered."},
	{Name: "call.ended", Description: "A phone call ended."},
	{Name: "agent.presence_changed", Description: "An agent's presence changed."},
	{Name: "agent.logged_in", Description: "An agent logged in."},
	{Name: "agent.logged_out", Description: "An agent logged out."},
	{Name: "contact.created", Description: "A contact was created."},
	{Name: "contact.changed", Description: "A contact was changed."},
	{Name: "sale.created", Description: "A sale was created."},
	{Name: "sale.changed", Description: "A sale was changed."},
}

// EventType is an entry of the event-type catalogue.
type EventType struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}
