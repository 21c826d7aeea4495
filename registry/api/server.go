package api

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Server is the registry's HTTP API under /v1. Set its fields (NewServer
// fills the defaults), then serve Handler.
type Server struct {
	DB *store.DB
	// KV is the webhooks bucket; each change is mirrored into it before the
	// response is sent (see Mirror).
	KV     jetstream.KeyValue
	Logger *slog.Logger
	// Ingest, the producer's handler, serves POST /v1/events behind the same
	// authentication (the tenant and actor are in the request's context).
	// Nil leaves the route out.
	Ingest  http.Handler
	Metrics *Metrics
	// APIRateLimit is the requests per second each API key may make to
	// any route (see rateLimiter); 0 means unlimited.
	APIRateLimit float64

	// Guard is the SSRF guard of test sends (POST /v1/webhooks/{id}/test),
	// as it is the deliverer's; nil refuses every address that is not
	// public. Webhooks whose URL names a refused address by IP are refused
	// at create and PATCH (422 on url).
	Guard *netguard.Guard

	// JS, when set, serves the routes that read the streams: the dead
	// letters (GET /v1/dead-letters, POST /v1/dead-letters/replay), GET
	// /v1/events/{id}, POST /v1/webhooks/{id}/recover and GET /v1/audit;
	// the replays and recoveries queue deliveries. Nil leaves them out.
	JS jetstream.JetStream

	// Mirror mirrors the API's webhook changes into KV; nil makes one on
	// DB and KV. Give the one whose Settle the Ingest handler calls.
	Mirror *control.Mirror
}

// NewServer returns a Server on db and kv that logs nothing, whose metrics
// are not registered and that does not limit the rate of requests.
func NewServer(db *store.DB, kv jetstream.KeyValue) *Server {
	return &Server{DB: db, KV: kv, Logger: slog.New(slog.DiscardHandler), Metrics: NewMetrics(nil)}
}

// keyAuthenticator is what authentication needs of the store.
type keyAuthenticator interface {
	Authenticate(ctx context.Context, plaintext string) (store.Key, error)
}

var _ keyAuthenticator = (*store.DB)(nil)

// Handler returns the API. Every route requires `Authorization: Bearer
// <key>` (or a portal link's token, within its scope); errors are JSON ({"message", "errors"}), unknown routes and
// methods included; a panic is logged and answered with a 500. Handler
// panics when DB or KV is nil.
func (s *Server) Handler() http.Handler {
	if s.DB == nil || s.KV == nil {
		panic("registry: Server needs a DB and a KV")
	}
	h := &handler{
		mux: http.NewServeMux(), routes: map[string]string{}, keys: s.DB, logger: s.Logger, metrics: s.Metrics,
		limiter: newRateLimiter(s.APIRateLimit),
		portal:  newPortalLinkAPI(s.DB, s.JS, s.Logger),
	}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	h.portal.logger = h.logger
	if h.metrics == nil {
		h.metrics = NewMetrics(nil)
	}
	mirror := s.Mirror
	if mirror == nil {
		mirror = control.NewMirror(s.DB, s.KV)
	}
	webhooks := &webhookAPI{
		store:     s.DB,
		mirror:    mirror,
		logger:    h.logger,
		catalogue: s.DB,
		guard:     s.Guard,
	}
	agents := &agentAPI{store: s.DB, mirror: webhooks.mirror, logger: h.logger}
	eventTypes := &eventTypeAPI{store: s.DB, logger: h.logger}
	admin := &adminAPI{store: s.DB, mirror: webhooks.mirror, js: s.JS, logger: h.logger}
	keys := &keyAPI{store: s.DB, logger: h.logger}
	h.handle("POST /v1/webhooks", http.HandlerFunc(webhooks.create))
	h.handle("POST /v1/agents/{agent_id}/webhooks", http.HandlerFunc(webhooks.createForAgent))
	h.handle("GET /v1/webhooks", http.HandlerFunc(webhooks.list))
	h.handle("GET /v1/webhooks/defaults", http.HandlerFunc(webhooks.defaults)) // wins over {id}: more specific
	h.handle("GET /v1/webhooks/{id}", http.HandlerFunc(webhooks.get))
	h.handle("PATCH /v1/webhooks/{id}", http.HandlerFunc(webhooks.update))
	h.handle("DELETE /v1/webhooks/{id}", http.HandlerFunc(webhooks.delete))
	h.handle("PUT /v1/agents/{agent_id}", http.HandlerFunc(agents.put))
	h.handle("GET /v1/agents/{agent_id}", http.HandlerFunc(agents.get))
	h.handle("GET /v1/agents", http.HandlerFunc(agents.list))
	h.handle("DELETE /v1/agents/{agent_id}", http.HandlerFunc(agents.delete))
	h.handle("GET /v1/event-types", http.HandlerFunc(eventTypes.list))
	h.handle("POST /v1/event-types", http.HandlerFunc(eventTypes.create))
	h.handleScoped("POST /v1/tenants", store.ScopeAdmin, http.HandlerFunc(admin.createTenant))
	h.handleScoped("GET /v1/tenants", store.ScopeAdmin, http.HandlerFunc(admin.listTenants))
	h.handleScoped("GET /v1/tenants/{tenant_id}", store.ScopeAdmin, http.HandlerFunc(admin.getTenant))
	h.handleScoped("DELETE /v1/tenants/{tenant_id}", store.ScopeAdmin, http.HandlerFunc(admin.deleteTenant))
	h.handleScoped("GET /v1/tenants/{tenant_id}/keys", store.ScopeAdmin, http.HandlerFunc(admin.listTenantKeys))
	h.handleScoped("POST /v1/tenants/{tenant_id}/keys", store.ScopeAdmin, http.HandlerFunc(admin.createTenantKey))
	h.handleScoped("DELETE /v1/tenants/{tenant_id}/keys/{key_id}", store.ScopeAdmin, http.HandlerFunc(admin.revokeTenantKey))
	h.handleScoped("GET /v1/keys", store.ScopeCredentials, http.HandlerFunc(keys.list))
	h.handleScoped("POST /v1/keys", store.ScopeCredentials, http.HandlerFunc(keys.create))
	h.handleScoped("DELETE /v1/keys/{key_id}", store.ScopeCredentials, http.HandlerFunc(keys.revoke))
	h.handle("GET /v1/webhooks/{id}/secret", http.HandlerFunc(webhooks.getSecret))
	h.handle("POST /v1/webhooks/{id}/secret/rotate", http.HandlerFunc(webhooks.rotate))
	h.handle("POST /v1/webhooks/{id}/test", http.HandlerFunc(newTestSender(s.DB, s.Guard, h.logger).send))
	if s.JS != nil {
		deadLetters := newDeadLetterAPI(s.JS, s.DB, h.logger)
		h.handle("GET /v1/dead-letters", http.HandlerFunc(deadLetters.list))
		h.handle("POST /v1/dead-letters/replay", http.HandlerFunc(deadLetters.replay))
	}
	if s.Ingest != nil {
		h.handleScoped("POST /v1/events", store.ScopePublish, s.Ingest)
	}
	h.handleScoped("POST /v1/portal-links", store.ScopeCredentials, http.HandlerFunc(h.portal.create))
	h.handle("GET /v1/portal-links/current", http.HandlerFunc(h.portal.current))
	h.handleScoped("DELETE /v1/portal-links/{id}", store.ScopeCredentials, http.HandlerFunc(h.portal.revoke))
	backlog := &backlogAPI{db: s.DB, logger: h.logger}
	h.handle("GET /v1/backlog", http.HandlerFunc(backlog.list))
	attempts := &attemptAPI{store: s.DB, js: s.JS, logger: h.logger}
	h.handle("GET /v1/webhooks/{id}/attempts", http.HandlerFunc(attempts.list))
	if s.JS != nil {
		h.handle("GET /v1/events/{id}", http.HandlerFunc(attempts.event))
		h.handle("POST /v1/webhooks/{id}/recover", http.HandlerFunc(attempts.recoverEvents))
		audit := &auditAPI{db: s.DB, js: s.JS, logger: h.logger}
		h.handleScoped("GET /v1/audit", store.ScopeAdmin, http.HandlerFunc(audit.audit))
	}
	return h
}

// authenticate lets through requests with a known API key, with the key,
// its tenant and its name in the context.
func authenticate(keys keyAuthenticator, logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			httpjson.Error(w, r, logger, switchboard.Errorf(switchboard.EUNAUTHORIZED, "Missing Bearer Token"))
			return
		}
		key, err := keys.Authenticate(r.Context(), token)
		if err != nil {
			if switchboard.ErrorCode(err) == switchboard.EUNAUTHORIZED {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			httpjson.Error(w, r, logger, err)
			return
		}
		ctx := switchboard.NewContextWithTenant(r.Context(), key.TenantID)
		ctx = switchboard.NewContextWithActor(ctx, key.Name)
		ctx = context.WithValue(ctx, keyContextKey{}, key)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// keyContextKey keys the authenticated Key in a request's context.
type keyContextKey struct{}

// keyFromContext returns the API key that authenticated the request, or
// the zero Key.
func keyFromContext(ctx context.Context) store.Key {
	k, _ := ctx.Value(keyContextKey{}).(store.Key)
	return k
}

// bearerToken returns the token of an `Authorization: Bearer <token>`
// header (the scheme is case-insensitive).
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// handler routes with a ServeMux to authenticated routes and, around every
// request, recovers from panics, answers unknown routes and methods in JSON,
// counts and logs.
type handler struct {
	mux     *http.ServeMux
	routes  map[string]string // pattern -> route label (the pattern's path)
	keys    keyAuthenticator
	limiter *rateLimiter // nil: unlimited
	portal  *portalLinkAPI
	logger  *slog.Logger
	metrics *Metrics
}

// unmatchedRoute labels requests that match no route.
const unmatchedRoute = "unmatched"

// handle routes pattern to next for keys of ScopeManage (see
// handleScoped).
func (h *handler) handle(pattern string, next http.Handler) {
	h.handleScoped(pattern, store.ScopeManage, next)
}

// handleScoped routes pattern to next, behind authentication (an API key,
// or a portal link's token held to the link's scope: http_portallinks.go),
// the rate limit of the key, and the check that the key's scope (a portal
// link's is ScopePortal) grants need.
func (h *handler) handleScoped(pattern string, need store.Scope, next http.Handler) {
	_, path, _ := strings.Cut(pattern, " ")
	h.routes[pattern] = path
	limited := h.limiter.wrap(h.logger, authorize(need, h.logger, next))
	h.mux.Handle(pattern, h.portal.authenticate(pattern, limited, authenticate(h.keys, h.logger, limited)))
}

// authorize answers 403 to a key whose scope does not grant need. 403, not
// 404: the answer is about the route, the same for every tenant, so it
// hides no object of another tenant.
func authorize(need store.Scope, logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if have := keyFromContext(r.Context()).Scope; !have.Grants(need) {
			httpjson.Error(w, r, logger, switchboard.Errorf(switchboard.EFORBIDDEN,
				"This API key's scope (%s) does not allow this route; it needs %s.", have, scopeName(need)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// scopeName names the scopes that grant need, for a person reading a 403.
func scopeName(need store.Scope) string {
	if need == store.ScopeCredentials {
		return string(store.ScopeManage) + " or " + string(store.ScopeAdmin)
	}
	return string(need)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	_, pattern := h.mux.Handler(r)
	route, matched := h.routes[pattern]
	if !matched {
		route = unmatchedRoute
	}
	rec := &recorder{ResponseWriter: w}
	defer func() {
		p := recover()
		if p == http.ErrAbortHandler {
			panic(p)
		}
		status, aborted := rec.status, false
		if p != nil {
			h.logger.ErrorContext(r.Context(), "panic serving request",
				"method", r.Method, "route", route, "panic", p, "stack", string(debug.Stack()))
			// Once the response has begun it can only be cut off, so that
			// it does not look complete.
			aborted = rec.status != 0
			if !aborted {
				httpjson.Write(rec, http.StatusInternalServerError, httpjson.ErrorBody{Message: "Internal error."})
			}
			status = http.StatusInternalServerError
		}
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		h.metrics.observe(route, r.Method, status, d)
		h.logger.DebugContext(r.Context(), "http request",
			"method", r.Method, "route", route, "status", status, "duration", d)
		if aborted {
			panic(http.ErrAbortHandler)
		}
	}()
	h.mux.ServeHTTP(rec, r)
}

// recorder notes the status of a response and gives the answers that the
// ServeMux writes itself (404, 405, and 307 to a cleaned path) a JSON body.
type recorder struct {
	http.ResponseWriter
	status  int
	discard bool // the body being written is not JSON and is replaced
}

func (w *recorder) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	isMux := status == http.StatusNotFound || status == http.StatusMethodNotAllowed ||
		status >= 300 && status < 400
	if !isMux || strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		w.ResponseWriter.WriteHeader(status)
		return
	}
	msg := "No such route."
	switch {
	case status == http.StatusMethodNotAllowed:
		msg = "Method not allowed on this route; see the Allow header."
	case status != http.StatusNotFound:
		msg = "The path is not in canonical form; see the Location header."
	}
	httpjson.Write(w.ResponseWriter, status, httpjson.ErrorBody{Message: msg})
	w.discard = true
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.discard {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
