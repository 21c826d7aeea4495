package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
)

// HeaderEventID names, on every 202 and 503 of the ingest API, the event's
// id: the one the client gave or the one generated for it. A client that
// gets a 503 sends the event again under this id, so that a retry after a
// lost ack is recognised as a duplicate instead of delivered twice under
// two webhook-ids.
const HeaderEventID = "X-Event-Id"

// retryAfter is the Retry-After, in seconds, of a 503: long enough for a
// JetStream leader election, short enough not to pile up events upstream.
const retryAfter = 5

// Handler is the ingest API, POST /v1/events. It is mounted behind the
// API-key middleware, which puts the tenant in the request's context
// (switchboard.NewContextWithTenant); the tenant never comes from the body.
//
// Answers: 202 {"id", "duplicate"} once JetStream has acknowledged the
// event; 400 for a body that is not the JSON expected; 422 naming every
// failing field; 401 without a tenant; 405 for another method; 503 with
// Retry-After when JetStream does not acknowledge, so the client sends the
// same event (with its id) again: its body, {"message", "id"}, and the
// HeaderEventID header give the id, generated here when the client sent
// none. Every 202 carries HeaderEventID too.
type Handler struct {
	Client *Client
	// Before, when set, runs before each valid event is published; an
	// error answers 503 (with the event's id) and publishes nothing. The
	// registry's is control.Mirror.Settle: an event is accepted only once
	// the webhook changes answered before it are where workers read them.
	Before func(ctx context.Context) error
	// Catalogue, when set, refuses with 422 on type an event whose type
	// the tenant's catalogue lacks: no webhook can subscribe to it, so it
	// would be accepted and never delivered.
	Catalogue Catalogue
	// Logger receives the failures that are not the client's; nil logs
	// nothing.
	Logger *slog.Logger
}

var _ http.Handler = (*Handler)(nil)

// Catalogue says whether an event type is in the catalogue of the tenant in
// ctx (the registry's GET /v1/event-types).
type Catalogue interface {
	HasEventType(ctx context.Context, typ string) (bool, error)
}

// eventRequest is the body of POST /v1/events.
type eventRequest struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	AgentID string          `json:"agent_id"`
	Data    json.RawMessage `json:"data"`
	// OccurredAt is parsed here rather than by encoding/json so that a bad
	// time is a 422 on its field, reported with the other fields.
	OccurredAt string `json:"occurred_at"`
}

// UnavailableResponse is the body of a 503 from Handler: ID is the id to
// send the event again under.
type UnavailableResponse struct {
	Message string `json:"message"`
	ID      string `json:"id"`
}

// EventResponse is the body of a 202 from Handler.
type EventResponse struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// ServeHTTP accepts one event; see Handler for the answers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpjson.Write(w, http.StatusMethodNotAllowed, httpjson.ErrorBody{Message: "Use POST."})
		return
	}
	tenant := switchboard.TenantFromContext(r.Context())
	if tenant == "" {
		w.Header().Set("WWW-Authenticate", "Bearer")
		httpjson.Error(w, r, h.Logger, switchboard.Errorf(switchboard.EUNAUTHORIZED, "An API key is required."))
		return
	}
	var req eventRequest
	if err := httpjson.Decode(r, &req); err != nil {
		h.Client.metrics.rejectedMalformed.Inc()
		httpjson.Error(w, r, h.Logger, err)
		return
	}
	evt := &switchboard.Event{ID: req.ID, TenantID: tenant, Type: req.Type, AgentID: req.AgentID, Data: req.Data}
	fe := switchboard.FieldErrors{}
	if req.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339, req.OccurredAt)
		if err != nil {
			fe.Add("occurred_at", "must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
		}
		evt.OccurredAt = t
	}
	// Alert hooks trust these to come from Switchboard itself.
	if switchboard.IsOperationalEvent(evt.Type) {
		fe.Add("type", "is reserved for Switchboard's own alerts to alert hooks")
	}
	if h.Catalogue != nil && switchboard.ValidEventType(evt.Type) {
		known, err := h.Catalogue.HasEventType(r.Context(), evt.Type)
		if err != nil {
			httpjson.Error(w, r, h.Logger, fmt.Errorf("check event type: %w", err))
			return
		}
		if !known {
			fe.Add("type", "is not in the tenant's catalogue (GET /v1/event-types); add it with POST /v1/event-types first")
		}
	}
	if len(fe) > 0 {
		h.Client.metrics.rejectedInvalid.Inc()
		httpjson.Error(w, r, h.Logger, withFieldErrors(evt, fe))
		return
	}

	evt.Normalize(time.Now()) // the id, for a 503 too
	var res Result
	err := evt.Validate()
	if err != nil {
		h.Client.metrics.rejectedInvalid.Inc()
	} else if err = h.before(r.Context()); err != nil {
		h.Client.metrics.rejectedUnavailable.Inc()
	} else {
		res, err = h.Client.Publish(r.Context(), evt)
	}
	if switchboard.ErrorCode(err) == switchboard.EINVALID {
		httpjson.Error(w, r, h.Logger, err)
		return
	}
	if err != nil {
		// Neither the client's fault nor a bug: JetStream is unreachable or
		// refused to store. Say so and ask for the same event again later.
		if h.Logger != nil {
			h.Logger.ErrorContext(r.Context(), "publish event", "tenant", tenant, "event_id", evt.ID, "err", err)
		}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		w.Header().Set(HeaderEventID, evt.ID)
		httpjson.Write(w, http.StatusServiceUnavailable, UnavailableResponse{
			Message: "The event could not be stored; send it again later with the same id, " + evt.ID + ".",
			ID:      evt.ID,
		})
		return
	}
	w.Header().Set(HeaderEventID, res.ID)
	httpjson.Write(w, http.StatusAccepted, EventResponse{ID: res.ID, Duplicate: res.Duplicate})
}

func (h *Handler) before(ctx context.Context) error {
	if h.Before == nil {
		return nil
	}
	return h.Before(ctx)
}

// withFieldErrors validates evt and adds its errors to fe, so that a client
// learns of every bad field at once.
func withFieldErrors(evt *switchboard.Event, fe switchboard.FieldErrors) error {
	var e *switchboard.Error
	if errors.As(evt.Validate(), &e) {
		for field, msgs := range e.Fields {
			for _, m := range msgs {
				fe.Add(field, m)
			}
		}
	}
	return fe.Err()
}
