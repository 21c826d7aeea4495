package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/registry/store"
	"github.com/switchboard-hq/switchboard/signer"
)

// Bounds of webhook fields beyond those of the root package.
const (
	// MaxSecretLength bounds a client's secret (seed 002: at most 255
	// characters); a generated one is 50.
	MaxSecretLength = 255
	// MaxEvents bounds a webhook's event-type patterns, duplicates included.
	MaxEvents = 256
)

// webhookInput is the JSON body that creates (POST) or changes (PATCH) a
// webhook. Pointer fields, nullable ones and the nil Events slice tell a
// field left out from its zero value, so that a partial update changes only
// what it names. Unknown fields, the read-only ones included, are ignored.
type webhookInput struct {
	Name       *string  `json:"name"`
	URL        *string  `json:"url"`
	Method     *string  `json:"method"`
	Events     []string `json:"events"`
	Secret     *string  `json:"secret"`
	Timeout    *int     `json:"timeout"`
	MaxRetries *int     `json:"max_retries"`
	Status     *string  `json:"status"`
	Enabled    *bool    `json:"enabled"`
	// Auth replaces the whole outbound authentication when given, since its
	// password and token are never shown back; null is {"type": "none"}.
	Auth nullable[authInput] `json:"auth"`
	// Headers replaces every custom header when given; null or {} clears.
	Headers nullable[map[string]string] `json:"headers"`
	// Properties is kept as sent (compacted): nil when left out, the JSON
	// literal null to clear.
	Properties  json.RawMessage `json:"properties"`
	IsAlertHook *bool           `json:"is_alert_hook"`
	// AgentID is set by the route (POST /v1/agents/{agent_id}/webhooks).
	// In the body it is accepted only when it says the same, so that a
	// client cannot believe it scoped a webhook that is in fact tenant-wide.
	AgentID *string `json:"agent_id"`
}

// authInput is the auth object of a request. Empty strings count as left
// out: "none takes neither" refuses only values that say something.
type authInput struct {
	Type     string `json:"type"`
	Username string `json:"username"`
	Password string `json:"password"`
	Token    string `json:"token"`
	Name     string `json:"name"`
}

// nullable is a JSON field that tells apart left out (!Set), null (Set and
// Null) and a value.
type nullable[T any] struct {
	Set, Null bool
	V         T
}

// UnmarshalJSON is called for null too, which is the point of the type.
func (n *nullable[T]) UnmarshalJSON(b []byte) error {
	n.Set = true
	if string(b) == "null" {
		n.Null = true
		return nil
	}
	return json.Unmarshal(b, &n.V)
}

// newWebhook returns a webhook holding the server's defaults.
func newWebhook() switchboard.Webhook {
	return switchboard.Webhook{
		TimeoutSeconds: switchboard.DefaultTimeoutSeconds,
		MaxRetries:     switchboard.DefaultMaxRetries,
		Status:         switchboard.StatusActive,
		Method:         http.MethodPost,
		Auth:           switchboard.Auth{Type: switchboard.AuthNone},
	}
}

// apply validates the fields present in in, sets the valid ones on wh, then
// checks that wh has what every webhook needs. Every failure is added to fe.
// catalogue is the event types the tenant may subscribe to.
func (in *webhookInput) apply(wh *switchboard.Webhook, catalogue []switchboard.EventType, fe switchboard.FieldErrors) {
	prevURL, prevHeaders := wh.URL, wh.Headers
	if in.Name != nil {
		wh.Name = *in.Name
	}
	store.CheckName(fe, "name", wh.Name)

	if in.URL != nil {
		wh.URL = *in.URL
	}
	checkURL(fe, "url", wh.URL)

	in.applyMethod(wh, fe)

	switch {
	case len(in.Events) > MaxEvents:
		fe.Add("events", fmt.Sprintf("must contain at most %d event types", MaxEvents))
	case in.Events != nil:
		wh.Events = checkEvents(fe, "events", in.Events, catalogue)
	}
	if len(wh.Events) == 0 && len(fe["events"]) == 0 {
		fe.Add("events", "must contain at least 1 event type")
	}

	if in.Secret != nil {
		if checkSecret(fe, "secret", *in.Secret) {
			wh.Secret = *in.Secret
		}
	}

	in.applyAttemptLimits(wh, fe)

	in.applyStatus(wh, fe)

	if in.Auth.Set {
		wh.Auth = checkAuth(fe, in.Auth.V, in.Auth.Null)
	}
	if in.Headers.Set {
		wh.Headers = nil
		if len(in.Headers.V) > 0 {
			wh.Headers = keepMaskedHeaders(in.Headers.V, prevHeaders)
		}
	}
	if wh.ID != "" && prevURL != "" {
		checkHostMove(fe, in, prevURL, wh)
	}
	// The headers are checked whenever either they or auth changed, since
	// auth decides which of them are taken.
	if in.Headers.Set || in.Auth.Set {
		checkHeaders(fe, "headers", wh.Headers, wh.Auth)
	}
	if in.Properties != nil {
		wh.Properties = checkProperties(fe, "properties", in.Properties)
	}
	if in.IsAlertHook != nil {
		wh.IsAlertHook = *in.IsAlertHook
	}

	if in.AgentID != nil && *in.AgentID != wh.AgentID {
		if wh.ID == "" {
			fe.Add("agent_id", "is set by the route, not the body: create an agent's webhooks with POST /v1/agents/{agent_id}/webhooks")
		} else {
			fe.Add("agent_id", "cannot be changed: create a webhook in the other scope and delete this one")
		}
	}
}

// applyMethod sets wh.Method from method.
func (in *webhookInput) applyMethod(wh *switchboard.Webhook, fe switchboard.FieldErrors) {
	if in.Method != nil {
		// Methods are case-sensitive on the wire, but "post" can only mean
		// POST: normalise rather than refuse.
		switch m := strings.ToUpper(*in.Method); m {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			wh.Method = m
		default:
			fe.Add("method", "must be POST, PUT or PATCH")
		}
	}
}

// applyAttemptLimits sets each attempt's timeout and the retries.
func (in *webhookInput) applyAttemptLimits(wh *switchboard.Webhook, fe switchboard.FieldErrors) {
	if in.Timeout != nil {
		if t := *in.Timeout; t < switchboard.MinTimeoutSeconds || t > switchboard.MaxTimeoutSeconds {
			fe.Add("timeout", fmt.Sprintf("must be between %d and %d seconds",
				switchboard.MinTimeoutSeconds, switchboard.MaxTimeoutSeconds))
		} else {
			wh.TimeoutSeconds = t
		}
	}

	if in.MaxRetries != nil {
		if n := *in.MaxRetries; n < 0 || n > switchboard.MaxMaxRetries {
			fe.Add("max_retries", fmt.Sprintf("must be between 0 and %d", switchboard.MaxMaxRetries))
		} else {
			wh.MaxRetries = n
		}
	}
}

// applyStatus sets wh.Status from status and its shorthand enabled.
func (in *webhookInput) applyStatus(wh *switchboard.Webhook, fe switchboard.FieldErrors) {
	status := wh.Status
	if in.Status != nil {
		switch s := switchboard.WebhookStatus(*in.Status); s {
		case switchboard.StatusActive, switchboard.StatusInactive:
			status = s
		case switchboard.StatusTooManyErrors:
			fe.Add("status", "is set by Switchboard when deliveries keep failing; use active or inactive")
			return
		default:
			fe.Add("status", "must be active or inactive")
			return
		}
	}
	if in.Enabled != nil {
		enabled := switchboard.StatusInactive
		if *in.Enabled {
			enabled = switchboard.StatusActive
		}
		if in.Status != nil && status != enabled {
			fe.Add("status", "conflicts with enabled")
			fe.Add("enabled", "conflicts with status")
			return
		}
		status = enabled
	}
	wh.Status = status
}

// checkURL records what is wrong with a webhook's target URL: required, an
// absolute http or https URL with a host, at most switchboard.MaxURLLength
// characters.
func checkURL(fe switchboard.FieldErrors, field, s string) {
	if s == "" {
		fe.Add(field, "is required")
		return
	}
	if utf8.RuneCountInString(s) > switchboard.MaxURLLength {
		fe.Add(field, fmt.Sprintf("must be at most %d characters", switchboard.MaxURLLength))
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		fe.Add(field, "must be an absolute http or https URL, e.g. https://example.com/webhooks")
	}
}

// checkEvents returns patterns without duplicates, recording each that is
// not a valid pattern or matches no type of the catalogue.
func checkEvents(fe switchboard.FieldErrors, field string, patterns []string, catalogue []switchboard.EventType) []string {
	out := make([]string, 0, len(patterns))
	for _, p := range patterns {
		switch {
		case !switchboard.ValidEventPattern(p):
			fe.Add(field, fmt.Sprintf(`%s is not an event type or a wildcard pattern such as "call.*" or "*"`, store.Quote(p)))
		case !slices.ContainsFunc(catalogue, func(t switchboard.EventType) bool { return switchboard.MatchEventType(p, t.Name) }):
			fe.Add(field, fmt.Sprintf("%s matches no event type of the catalogue (GET /v1/event-types)", store.Quote(p)))
		case !slices.Contains(out, p):
			out = append(out, p)
		}
	}
	return out
}

// checkSecret records what is wrong with a client's signing secret and
// reports whether it is usable.
func checkSecret(fe switchboard.FieldErrors, field, secret string) bool {
	if utf8.RuneCountInString(secret) > MaxSecretLength {
		fe.Add(field, fmt.Sprintf("must be at most %d characters", MaxSecretLength))
		return false
	}
	if sealed.IsSealed(secret) {
		fe.Add(field, sealedRule)
		return false
	}
	if _, err := signer.DecodeSecret(secret); err != nil {
		fe.Add(field, fmt.Sprintf("must hold at least %d bytes of key: %s followed by standard base64, or the raw key",
			signer.MinKeySize, signer.SecretPrefix))
		return false
	}
	return true
}
