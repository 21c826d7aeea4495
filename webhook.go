package switchboard

import (
	"encoding/json"
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
// delivered to URL, signed with Secret (and, during a rotation, with each of
// RetiringSecrets that has not expired).
//
// This is the form mirrored into the JetStream KV bucket that workers read,
// so it carries the secrets and credentials; API responses use their own
// representation.
type Webhook struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	AgentID  string `json:"agent_id,omitempty"`
	Name     string `json:"name"`
	URL      string `json:"url"`
	// Method is the HTTP method of deliveries: POST, PUT or PATCH; "" is POST.
	Method          string           `json:"method,omitempty"`
	Events          []string         `json:"events"`
	Secret          string           `json:"secret"`
	RetiringSecrets []RetiringSecret `json:"retiring_secrets,omitempty"`
	TimeoutSeconds  int              `json:"timeout"`
	MaxRetries      int              `json:"max_retries"`
	// Auth is how deliveries authenticate to the receiver (seed 003).
	Auth Auth `json:"auth"`
	// Headers are custom request headers sent with every delivery (seed 004).
	Headers map[string]string `json:"headers,omitempty"`
	// Properties, a JSON object or nil, go into every delivered body (seed 004).
	Properties json.RawMessage `json:"properties,omitempty"`
	// IsAlertHook marks a webhook that receives the tenant's operational
	// events (webhook.disabled, delivery.dead_lettered, webhook.recovered).
	IsAlertHook bool          `json:"is_alert_hook,omitempty"`
	Status      WebhookStatus `json:"status"`
	CreatedAt   time.Time     `json:"created_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
}

// RetiringSecret is a replaced secret that still signs deliveries until
// ExpiresAt, so that receivers can switch over without rejecting any.
type RetiringSecret struct {
	Secret    string    `json:"secret"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SigningSecrets returns the secrets that sign a delivery made at now: the
// current one first, then every retiring one not yet expired.
func (w *Webhook) SigningSecrets(now time.Time) []string {
	out := make([]string, 0, 1+len(w.RetiringSecrets))
	out = append(out, w.Secret)
	for _, s := range w.RetiringSecrets {
		if now.Before(s.ExpiresAt) {
			out = append(out, s.Secret)
		}
	}
	return out
}

// HTTPMethod returns the method of deliveries, POST when none is set.
func (w *Webhook) HTTPMethod() string {
	if w.Method == "" {
		return "POST" // not http.MethodPost: the domain types import no net/http
	}
	return w.Method
}

// AuthType is how a delivery authenticates to its receiver.
type AuthType string

// Auth types (seed 003). Basic takes a username and password; the token
// types take a token and never credentials; none takes neither.
const (
	// AuthNone sends no credentials.
	AuthNone AuthType = "none"
	// AuthBasic sends `Authorization: Basic base64(username:password)`.
	AuthBasic AuthType = "basic"
	// AuthBearer sends `Authorization: Bearer <token>`.
	AuthBearer AuthType = "bearer"
	// AuthAuthHeader sends the token as the whole Authorization header.
	AuthAuthHeader AuthType = "authheader"
	// AuthHeader sends the token in the header named Auth.Name
	// (DefaultAuthHeader when empty).
	AuthHeader AuthType = "header"
	// AuthQueryString adds the token to the URL's query as the parameter
	// named Auth.Name (DefaultAuthQueryParam when empty).
	AuthQueryString AuthType = "querystring"
)

// Names that header and querystring authentication use when Auth.Name is empty.
const (
	DefaultAuthHeader     = "X-Auth-Token"
	DefaultAuthQueryParam = "token"
)

// Auth is a webhook's outbound authentication. The zero value sends nothing.
type Auth struct {
	Type     AuthType `json:"type,omitempty"`
	Username string   `json:"username,omitempty"`
	Password string   `json:"password,omitempty"`
	Token    string   `json:"token,omitempty"`
	// Name is the header (AuthHeader) or query parameter (AuthQueryString)
	// that carries the token.
	Name string `json:"name,omitempty"`
}

// Timeout returns the per-attempt HTTP timeout.
func (w *Webhook) Timeout() time.Duration {
	if w.TimeoutSeconds <= 0 {
		return DefaultTimeoutSeconds * time.Second
	}
	return time.Duration(w.TimeoutSeconds) * time.Second
}

// Matches reports whether evt should be delivered to w: same tenant, w is
// active, w is tenant-wide or scoped to evt's agent, w is an alert hook
// exactly when evt is an operational event, and one of w's patterns matches
// evt's type. Keeping the two apart means a "*" webhook never receives the
// engine's alerts about itself, and an alert hook never receives agent
// events.
func (w *Webhook) Matches(evt *Event) bool {
	if w.Status != StatusActive || w.TenantID != evt.TenantID {
		return false
	}
	if w.IsAlertHook != IsOperationalEvent(evt.Type) {
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

// Operational event types: what Switchboard itself reports about a tenant's
// webhooks. They go to the tenant's alert hooks (IsAlertHook) only.
const (
	// EventWebhookDisabled: a webhook was stopped (too_many_errors) after
	// consecutive failed deliveries, or at once after a 410 Gone.
	EventWebhookDisabled = "webhook.disabled"
	// EventDeliveryDeadLettered: a delivery was given up and dead-lettered.
	EventDeliveryDeadLettered = "delivery.dead_lettered"
	// EventWebhookRecovered: a too_many_errors webhook was set active again.
	EventWebhookRecovered = "webhook.recovered"
)

// IsOperationalEvent reports whether typ is one of the operational event
// types, which only alert hooks receive.
func IsOperationalEvent(typ string) bool {
	switch typ {
	case EventWebhookDisabled, EventDeliveryDeadLettered, EventWebhookRecovered:
		return true
	}
	return false
}

// EventType is an entry of the event-type catalogue.
type EventType struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}
