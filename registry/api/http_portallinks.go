package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// portalLinkStore is what the portal-link routes and their authentication
// need of the store.
type portalLinkStore interface {
	CreatePortalLink(ctx context.Context, agentID string, ttl time.Duration, readOnly bool) (string, store.PortalLink, error)
	RevokePortalLink(ctx context.Context, id string) error
	AuthenticatePortalLink(ctx context.Context, token string) (store.PortalLink, error)
	FindWebhookByID(ctx context.Context, id string) (*store.Webhook, error)
}

var _ portalLinkStore = (*store.DB)(nil)

// portalLinkAPI serves the portal-link routes, and authenticates the
// requests that carry a portal link's token instead of an API key,
// holding them to the link's scope.
type portalLinkAPI struct {
	store  portalLinkStore
	dead   *control.DeadLetters // nil without JetStream
	logger *slog.Logger
}

func newPortalLinkAPI(links portalLinkStore, js jetstream.JetStream, logger *slog.Logger) *portalLinkAPI {
	p := &portalLinkAPI{store: links, logger: logger}
	if js != nil {
		p.dead = &control.DeadLetters{JS: js}
	}
	return p
}

// portalLinkBody is a portal link as the API shows it.
type portalLinkBody struct {
	ID        string    `json:"id"`
	URL       string    `json:"url,omitempty"` // holds the token: in the create response only
	AgentID   *string   `json:"agent_id"`      // null: the whole tenant
	ReadOnly  bool      `json:"read_only"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
}

func newPortalLinkBody(l store.PortalLink) portalLinkBody {
	b := portalLinkBody{ID: l.ID, ReadOnly: l.ReadOnly, ExpiresAt: l.ExpiresAt.UTC(), CreatedAt: l.CreatedAt.UTC()}
	if l.AgentID != "" {
		b.AgentID = &l.AgentID
	}
	return b
}

// create serves POST /v1/portal-links {"agent_id"?, "expires_in"?, "read_only"?}.
// The URL is built from the request's host: the portal is served by the
// same binary, under /portal/, and the token goes in the fragment so that
// it never reaches a server log or a Referer header.
func (p *portalLinkAPI) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		AgentID   *string `json:"agent_id"`
		ExpiresIn *int64  `json:"expires_in"`
		ReadOnly  bool    `json:"read_only"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		httpjson.Error(w, r, p.logger, err)
		return
	}
	ttl := store.DefaultPortalLinkTTL
	if in.ExpiresIn != nil {
		ttl = time.Duration(min(max(*in.ExpiresIn, -1), int64(store.MaxPortalLinkTTL/time.Second)+1)) * time.Second
	}
	token, l, err := p.store.CreatePortalLink(r.Context(), deref(in.AgentID), ttl, in.ReadOnly)
	if err != nil {
		httpjson.Error(w, r, p.logger, err)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	p.logger.InfoContext(r.Context(), "portal link created", "tenant", l.TenantID, "portal_link", l.ID,
		"agent_id", l.AgentID, "read_only", l.ReadOnly, "expires_at", l.ExpiresAt, "by", l.CreatedBy)
	b := newPortalLinkBody(l)
	b.URL = scheme + "://" + r.Host + "/portal/#token=" + token
	httpjson.Write(w, http.StatusCreated, b)
}

// current serves GET /v1/portal-links/current: the portal link that
// authenticated the request, so that the portal can show its scope. An
// API key is no portal link: 404.
func (p *portalLinkAPI) current(w http.ResponseWriter, r *http.Request) {
	l, ok := r.Context().Value(portalLinkContextKey{}).(store.PortalLink)
	if !ok {
		httpjson.Error(w, r, p.logger, switchboard.Errorf(switchboard.ENOTFOUND,
			"The request is authenticated with an API key, not a portal link."))
		return
	}
	httpjson.Write(w, http.StatusOK, newPortalLinkBody(l))
}

// revoke serves DELETE /v1/portal-links/{id}.
func (p *portalLinkAPI) revoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := p.store.RevokePortalLink(r.Context(), id); err != nil {
		httpjson.Error(w, r, p.logger, err)
		return
	}
	p.logger.InfoContext(r.Context(), "portal link revoked", "tenant", switchboard.TenantFromContext(r.Context()),
		"portal_link", id, "by", switchboard.ActorFromContext(r.Context()))
	w.WriteHeader(http.StatusNoContent)
}

// portalLinkContextKey keys the PortalLink that authenticated a request.
type portalLinkContextKey struct{}

// authenticate routes a request carrying a portal link's token to scoped,
// within the link's scope, and any other to byKey. The link acts as a key
// of its own for the rate limit (keyFromContext) and is never an admin.
func (p *portalLinkAPI) authenticate(pattern string, scoped, byKey http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok || !store.IsPortalToken(token) {
			byKey.ServeHTTP(w, r)
			return
		}
		l, err := p.store.AuthenticatePortalLink(r.Context(), token)
		if errors.Is(err, store.ErrUnknownPortalLink) { // an operator's key may look like one (EnsureKey)
			byKey.ServeHTTP(w, r)
			return
		}
		if err != nil {
			if switchboard.ErrorCode(err) == switchboard.EUNAUTHORIZED {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			httpjson.Error(w, r, p.logger, err)
			return
		}
		ctx := switchboard.NewContextWithTenant(r.Context(), l.TenantID)
		ctx = switchboard.NewContextWithActor(ctx, "portal:"+l.ID)
		ctx = context.WithValue(ctx, keyContextKey{}, store.Key{ID: l.ID, TenantID: l.TenantID, Name: "portal:" + l.ID, Scope: store.ScopePortal})
		ctx = context.WithValue(ctx, portalLinkContextKey{}, l)
		r = r.WithContext(ctx)
		if pattern == "GET /v1/events/{id}" && l.AgentID != "" {
			p.serveAgentEvent(w, r, l, scoped)
			return
		}
		if err := p.allow(r, pattern, l); err != nil {
			httpjson.Error(w, r, p.logger, err)
			return
		}
		scoped.ServeHTTP(w, r)
	})
}

// allow returns nil when the link l may make request r to the route
// pattern, narrowing r's query to l's agent where a list needs it. Routes
// it does not name are closed to portal links, so that a route added later
// is not opened to them by accident.
func (p *portalLinkAPI) allow(r *http.Request, pattern string, l store.PortalLink) error {
	forbid := func(format string, args ...any) error {
		return switchboard.Errorf(switchboard.EFORBIDDEN, format, args...)
	}
	if l.ReadOnly && (r.Method != http.MethodGet && r.Method != http.MethodHead || pattern == "GET /v1/webhooks/{id}/secret") {
		return forbid("This portal link is read-only.")
	}
	ctx := r.Context()
	switch pattern {
	case "GET /v1/webhooks/defaults", "GET /v1/event-types", "GET /v1/portal-links/current":
		return nil
	case "GET /v1/webhooks":
		if l.AgentID == "" {
			return nil
		}
		q := r.URL.Query()
		if v := q.Get("agent_id"); v != "" && v != l.AgentID {
			return forbid("This portal link sees only the webhooks of agent %s.", l.AgentID)
		}
		q.Set("agent_id", l.AgentID)
		r.URL.RawQuery = q.Encode()
		return nil
	case "POST /v1/webhooks", "POST /v1/event-types":
		if l.AgentID != "" {
			return forbid("This portal link acts for agent %s only: create its webhooks under /v1/agents/%s/webhooks.", l.AgentID, l.AgentID)
		}
		return nil
	case "GET /v1/webhooks/{id}", "PATCH /v1/webhooks/{id}", "DELETE /v1/webhooks/{id}",
		"GET /v1/webhooks/{id}/secret", "POST /v1/webhooks/{id}/secret/rotate", "POST /v1/webhooks/{id}/test",
		"GET /v1/webhooks/{id}/attempts", "POST /v1/webhooks/{id}/recover":
		return p.ownWebhook(ctx, l, r.PathValue("id"))
	case "POST /v1/agents/{agent_id}/webhooks", "GET /v1/agents/{agent_id}":
		if l.AgentID != "" && r.PathValue("agent_id") != l.AgentID {
			return store.AgentNotFound(r.PathValue("agent_id"))
		}
		return nil
	case "GET /v1/dead-letters":
		if l.AgentID == "" {
			return nil
		}
		id := r.URL.Query().Get("webhook_id")
		if id == "" {
			return forbid("This portal link acts for agent %s only: name one of its webhooks in webhook_id.", l.AgentID)
		}
		return p.ownWebhook(ctx, l, id)
	case "POST /v1/dead-letters/replay":
		if l.AgentID == "" {
			return nil
		}
		return p.allowReplay(r, l)
	}
	return forbid("Portal links cannot use %s; use an API key.", pattern)
}

// ownWebhook answers 404, as for another tenant's, unless webhook id is one
// of l's agent. A deleted webhook is nobody's: its dead letters and
// attempts, which outlive it, stay out of an agent's reach.
func (p *portalLinkAPI) ownWebhook(ctx context.Context, l store.PortalLink, id string) error {
	if l.AgentID == "" {
		return nil
	}
	wh, err := p.store.FindWebhookByID(ctx, id)
	switch {
	case err != nil:
		return err
	case wh.AgentID != l.AgentID:
		return switchboard.Errorf(switchboard.ENOTFOUND, "Webhook not found.")
	}
	return nil
}

// allowReplay checks that every dead letter a replay names belongs to a
// webhook of l's agent, and puts the body back for the route to read.
func (p *portalLinkAPI) allowReplay(r *http.Request, l store.PortalLink) error {
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, httpjson.MaxBodySize))
	if err != nil {
		return switchboard.Errorf(switchboard.EMALFORMED, "The body could not be read: %v.", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	var in replayInput
	if json.Unmarshal(raw, &in) != nil {
		return nil // the route says what is wrong with it
	}
	if in.WebhookID != nil {
		return p.ownWebhook(r.Context(), l, *in.WebhookID)
	}
	if p.dead == nil || len(in.IDs) > control.MaxReplay {
		return nil
	}
	stream, err := p.dead.Stream(r.Context())
	if err != nil {
		return err
	}
	for _, id := range in.IDs {
		seq, ok := control.ParseDeadLetterID(id)
		if !ok {
			continue
		}
		dl, err := p.dead.Get(r.Context(), stream, l.TenantID, seq)
		if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
			continue
		}
		if err != nil {
			return err
		}
		if err := p.ownWebhook(r.Context(), l, dl.WebhookID); switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
			return switchboard.Errorf(switchboard.EFORBIDDEN,
				"Dead letter %s is not of a webhook of agent %s; this portal link cannot replay it.", id, l.AgentID)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// serveAgentEvent serves GET /v1/events/{id} to a link scoped to an agent:
// an event of another agent answers 404, and only the deliveries to the
// agent's webhooks are shown.
func (p *portalLinkAPI) serveAgentEvent(w http.ResponseWriter, r *http.Request, l store.PortalLink, next http.Handler) {
	buf := &bufferedResponse{header: http.Header{}}
	next.ServeHTTP(buf, r)
	if buf.status != http.StatusOK {
		maps.Copy(w.Header(), buf.header)
		w.WriteHeader(buf.status)
		_, _ = w.Write(buf.body.Bytes())
		return
	}
	var body eventBody
	if err := json.Unmarshal(buf.body.Bytes(), &body); err != nil {
		httpjson.Error(w, r, p.logger, fmt.Errorf("portal link %s: event: %w", l.ID, err))
		return
	}
	if body.AgentID == nil || *body.AgentID != l.AgentID {
		httpjson.Error(w, r, p.logger, switchboard.Errorf(switchboard.ENOTFOUND, "Event not found."))
		return
	}
	kept := body.Deliveries[:0]
	for _, d := range body.Deliveries {
		wh, err := p.store.FindWebhookByID(r.Context(), d.WebhookID)
		if err == nil && wh.AgentID == l.AgentID {
			kept = append(kept, d)
		}
	}
	body.Deliveries = kept
	httpjson.Write(w, http.StatusOK, body)
}

// bufferedResponse holds a response to rewrite it before it is sent.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
