package api

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
	"github.com/switchboard-hq/switchboard/signer"
)

// webhookStore is what the webhook routes need of the store.
type webhookStore interface {
	CreateWebhook(ctx context.Context, wh *store.Webhook) error
	UpdateWebhook(ctx context.Context, id string, update func(wh *store.Webhook) error) (*store.Webhook, error)
	FindWebhookByID(ctx context.Context, id string) (*store.Webhook, error)
	FindWebhooks(ctx context.Context, f store.WebhookFilter) ([]*store.Webhook, bool, error)
	DeleteWebhook(ctx context.Context, id string) error
}

// webhookMirror mirrors a committed change into the KV bucket.
type webhookMirror interface {
	Flush(ctx context.Context, id string) error
}

var (
	_ webhookStore  = (*store.DB)(nil)
	_ webhookMirror = (*control.Mirror)(nil)
)

// webhookAPI serves the webhook routes.
type webhookAPI struct {
	store     webhookStore
	mirror    webhookMirror
	logger    *slog.Logger
	catalogue eventTypeFinder
	// guard refuses URLs that name a host it refuses by IP address (see
	// checkTarget); nil is the default policy.
	guard *netguard.Guard
}

// webhookBody is a webhook as the API shows it: never its auth password or
// token; its secret in the create response only; its custom headers'
// values masked in lists (see maskHeaderValue). The read-only fields are
// left out of the defaults (GET /v1/webhooks/defaults), which are no stored
// webhook.
type webhookBody struct {
	ID          string            `json:"id,omitzero"`
	AgentID     *string           `json:"agent_id"` // null: tenant-wide
	Name        string            `json:"name"`
	URL         string            `json:"url"`
	Method      string            `json:"method"`
	Events      []string          `json:"events"`
	EventsCount int               `json:"events_count"`
	Secret      string            `json:"secret,omitempty"`
	Timeout     int               `json:"timeout"`
	MaxRetries  int               `json:"max_retries"`
	Status      string            `json:"status"`
	Enabled     bool              `json:"enabled"`
	Auth        authBody          `json:"auth"`
	Headers     map[string]string `json:"headers"`
	Properties  json.RawMessage   `json:"properties"` // null: none
	IsAlertHook bool              `json:"is_alert_hook"`
	CreatedAt   time.Time         `json:"created_at,omitzero"`
	UpdatedAt   time.Time         `json:"updated_at,omitzero"`
	CreatedBy   string            `json:"created_by,omitzero"`
	UpdatedBy   string            `json:"updated_by,omitzero"`
}

// authBody is a webhook's outbound authentication as the API shows it:
// whether a password or token is set shows in the type alone.
type authBody struct {
	Type     switchboard.AuthType `json:"type"`
	Username string               `json:"username,omitempty"`
	Name     string               `json:"name,omitempty"` // header or query parameter
}

func newWebhookBody(wh *store.Webhook, withSecret bool) webhookBody {
	b := webhookBody{
		ID:          wh.ID,
		Name:        wh.Name,
		URL:         wh.URL,
		Method:      wh.HTTPMethod(),
		Events:      wh.Events,
		EventsCount: len(wh.Events),
		Timeout:     wh.TimeoutSeconds,
		MaxRetries:  wh.MaxRetries,
		Status:      string(wh.Status),
		Enabled:     wh.Status == switchboard.StatusActive,
		Auth:        authBody{Type: cmp.Or(wh.Auth.Type, switchboard.AuthNone), Username: wh.Auth.Username, Name: wh.Auth.Name},
		Headers:     wh.Headers,
		Properties:  wh.Properties,
		IsAlertHook: wh.IsAlertHook,
		CreatedAt:   wh.CreatedAt.UTC(),
		UpdatedAt:   wh.UpdatedAt.UTC(),
		CreatedBy:   wh.CreatedBy,
		UpdatedBy:   wh.UpdatedBy,
	}
	if b.Headers == nil {
		b.Headers = map[string]string{}
	}
	if b.Properties == nil {
		b.Properties = json.RawMessage("null")
	}
	if wh.AgentID != "" {
		b.AgentID = &wh.AgentID
	}
	if withSecret {
		b.Secret = wh.Secret
	}
	return b
}

// parseLimit reads a list's page size from q's limit: DefaultPageSize when
// absent, an error in fe unless it is 1 to MaxPageSize.
func parseLimit(fe switchboard.FieldErrors, q url.Values) int {
	if !q.Has("limit") {
		return store.DefaultPageSize
	}
	n, err := strconv.Atoi(q.Get("limit"))
	if err != nil || n < 1 || n > store.MaxPageSize {
		fe.Add("limit", fmt.Sprintf("must be an integer between 1 and %d", store.MaxPageSize))
	}
	return n
}

// listBody is the shape of every list response.
type listBody[T any] struct {
	Data       []T    `json:"data"`
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// create serves POST /v1/webhooks: a tenant-wide webhook.
func (a *webhookAPI) create(w http.ResponseWriter, r *http.Request) {
	a.createIn(w, r, "", switchboard.FieldErrors{})
}

// createForAgent serves POST /v1/agents/{agent_id}/webhooks.
func (a *webhookAPI) createForAgent(w http.ResponseWriter, r *http.Request) {
	agentID := r.PathValue("agent_id")
	fe := switchboard.FieldErrors{}
	if !switchboard.ValidAgentID(agentID) {
		fe.Add("agent_id", store.AgentIDRule)
	}
	a.createIn(w, r, agentID, fe)
}

// createIn creates a webhook in the scope of agentID ("" for the tenant),
// reporting the failures in fe along with the body's.
func (a *webhookAPI) createIn(w http.ResponseWriter, r *http.Request, agentID string, fe switchboard.FieldErrors) {
	var in webhookInput
	if err := httpjson.Decode(r, &in); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	catalogue, err := a.eventTypes(r.Context())
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	wh := &store.Webhook{Webhook: newWebhook()}
	wh.AgentID = agentID
	in.apply(&wh.Webhook, catalogue, fe)
	checkTarget(a.guard, fe, wh.URL)
	if err := fe.Err(); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	if wh.Secret == "" {
		secret, err := signer.NewSecret()
		if err != nil {
			httpjson.Error(w, r, a.logger, fmt.Errorf("create webhook: %w", err))
			return
		}
		wh.Secret = secret
	}
	if err := a.store.CreateWebhook(r.Context(), wh); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	a.flush(r, wh.ID)
	httpjson.Write(w, http.StatusCreated, newWebhookBody(wh, true))
}

// update serves PATCH /v1/webhooks/{id}: the fields given change, with the
// rules of create; the others stay. A new secret replaces the current one
// as a rotation does, the old one signing for DefaultGracePeriod more.
func (a *webhookAPI) update(w http.ResponseWriter, r *http.Request) {
	var in webhookInput
	if err := httpjson.Decode(r, &in); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	var catalogue []switchboard.EventType
	if in.Events != nil {
		var err error
		if catalogue, err = a.eventTypes(r.Context()); err != nil {
			httpjson.Error(w, r, a.logger, err)
			return
		}
	}
	wh, err := a.store.UpdateWebhook(r.Context(), r.PathValue("id"), func(wh *store.Webhook) error {
		fe := switchboard.FieldErrors{}
		current := wh.Secret
		in.apply(&wh.Webhook, catalogue, fe)
		if in.URL != nil {
			checkTarget(a.guard, fe, wh.URL)
		}
		if next := wh.Secret; next != current {
			wh.Secret = current
			rotateSecret(&wh.Webhook, next, DefaultGracePeriod, store.Now(), fe, "secret")
		}
		return fe.Err()
	})
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	a.flush(r, wh.ID)
	httpjson.Write(w, http.StatusOK, newWebhookBody(wh, false))
}

// defaults serves GET /v1/webhooks/defaults: what a webhook created with
// only its required fields (name, url, events) gets. Events has no default
// (at least one is required), so it is empty; GET /v1/event-types lists
// the choices.
func (a *webhookAPI) defaults(w http.ResponseWriter, _ *http.Request) {
	wh := &store.Webhook{Webhook: newWebhook()}
	wh.Events = []string{}
	httpjson.Write(w, http.StatusOK, newWebhookBody(wh, false))
}

// get serves GET /v1/webhooks/{id}.
func (a *webhookAPI) get(w http.ResponseWriter, r *http.Request) {
	wh, err := a.store.FindWebhookByID(r.Context(), r.PathValue("id"))
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, newWebhookBody(wh, false))
}

// list serves GET /v1/webhooks?limit=&cursor=|starting_after=&agent_id=&status=&event_type=.
func (a *webhookAPI) list(w http.ResponseWriter, r *http.Request) {
	f, err := parseWebhookFilter(r)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	whs, more, err := a.store.FindWebhooks(r.Context(), f)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	body := listBody[webhookBody]{Data: make([]webhookBody, 0, len(whs)), HasMore: more}
	for _, wh := range whs {
		b := newWebhookBody(wh, false)
		// A list shows many webhooks to whoever holds a key: not the API
		// keys their headers hold. GET /v1/webhooks/{id} shows them.
		if len(wh.Headers) > 0 {
			b.Headers = maskHeaders(wh.Headers)
		}
		body.Data = append(body.Data, b)
	}
	if more {
		body.NextCursor = whs[len(whs)-1].ID
	}
	httpjson.Write(w, http.StatusOK, body)
}

// parseWebhookFilter reads the list's query, reporting every bad parameter.
func parseWebhookFilter(r *http.Request) (store.WebhookFilter, error) {
	q := r.URL.Query()
	fe := switchboard.FieldErrors{}
	f := store.WebhookFilter{}
	f.Limit = parseLimit(fe, q)
	f.After = q.Get("cursor")
	if after := q.Get("starting_after"); after != "" {
		if f.After != "" && f.After != after {
			fe.Add("starting_after", "conflicts with cursor; give one of them")
		}
		f.After = after
	}
	if v := q.Get("agent_id"); v != "" {
		if !switchboard.ValidAgentID(v) {
			fe.Add("agent_id", store.AgentIDRule)
		}
		f.AgentID = v
	}
	if v := switchboard.WebhookStatus(q.Get("status")); v != "" {
		switch v {
		case switchboard.StatusActive, switchboard.StatusInactive, switchboard.StatusTooManyErrors:
		default:
			fe.Add("status", "must be active, inactive or too_many_errors")
		}
		f.Status = v
	}
	if v := q.Get("event_type"); v != "" {
		if !switchboard.ValidEventType(v) {
			fe.Add("event_type", "must be an event type, e.g. call.started")
		}
		f.EventType = v
	}
	return f, fe.Err()
}

// delete serves DELETE /v1/webhooks/{id}.
func (a *webhookAPI) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.store.DeleteWebhook(r.Context(), id); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	a.flush(r, id)
	w.WriteHeader(http.StatusNoContent)
}

// eventTypes returns the catalogue of the tenant in ctx: the types its
// webhooks may subscribe to.
func (a *webhookAPI) eventTypes(ctx context.Context) ([]switchboard.EventType, error) {
	types, err := a.catalogue.FindEventTypes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]switchboard.EventType, len(types))
	for i, t := range types {
		out[i] = t.EventType
	}
	return out, nil
}

// flush mirrors a committed change into KV before the response, so that
// workers know of it when the client does. The change is committed either
// way: on failure it waits in the outbox for Mirror.Run, and the request
// still succeeds.
func (a *webhookAPI) flush(r *http.Request, id string) {
	if err := a.mirror.Flush(context.WithoutCancel(r.Context()), id); err != nil {
		a.logger.WarnContext(r.Context(), "webhook saved; mirroring to KV deferred",
			"tenant", switchboard.TenantFromContext(r.Context()), "webhook_id", id, "err", err)
	}
}
