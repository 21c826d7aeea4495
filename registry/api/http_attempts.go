package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// attemptStore is what the attempt log's routes need of the store.
type attemptStore interface {
	FindAttempts(ctx context.Context, id string, f store.AttemptFilter) ([]switchboard.Attempt, bool, error)
	FindWebhookByID(ctx context.Context, id string) (*store.Webhook, error)
	FindEventAttempts(ctx context.Context, tenant, id string) ([]switchboard.Attempt, error)
	DeliveredEvents(ctx context.Context, tenant, webhook string, events []string) (map[string]bool, error)
	MatchedWebhooks(ctx context.Context, tenant, id string, seq uint64) ([]string, error)
}

var _ attemptStore = (*store.DB)(nil)

// attemptAPI serves the attempt log (GET /v1/webhooks/{id}/attempts), the
// state of an event's deliveries (GET /v1/events/{id}) and recovery (POST
// /v1/webhooks/{id}/recover). The last two read SB_EVENTS.
type attemptAPI struct {
	store  attemptStore
	js     jetstream.JetStream
	logger *slog.Logger
}

// attemptBody is an attempt as the API shows it.
type attemptBody struct {
	ID           string                     `json:"id"`
	WebhookID    string                     `json:"webhook_id"`
	EventID      string                     `json:"event_id"`
	EventType    string                     `json:"event_type"`
	Attempt      int                        `json:"attempt"`
	At           time.Time                  `json:"at"`
	Outcome      switchboard.AttemptOutcome `json:"outcome"`
	Reason       string                     `json:"reason,omitempty"`
	StatusCode   int                        `json:"status_code"` // 0: no answer
	LatencyMS    float64                    `json:"latency_ms"`
	ErrorClass   string                     `json:"error_class,omitempty"`
	Error        string                     `json:"error,omitempty"`
	ResponseBody string                     `json:"response_body"`
}

func newAttemptBody(a *switchboard.Attempt) attemptBody {
	return attemptBody{
		ID: a.ID, WebhookID: a.WebhookID, EventID: a.EventID, EventType: a.EventType, Attempt: a.Number,
		At: a.At.UTC(), Outcome: a.Outcome, Reason: string(a.Reason), StatusCode: a.StatusCode, LatencyMS: a.LatencyMS,
		ErrorClass: a.ErrorClass, Error: a.Error, ResponseBody: a.ResponseBody,
	}
}

// list serves GET /v1/webhooks/{id}/attempts?outcome=&status_code=&since=&until=&event_id=&limit=&cursor=.
func (a *attemptAPI) list(w http.ResponseWriter, r *http.Request) {
	f, err := parseAttemptFilter(r)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	attempts, more, err := a.store.FindAttempts(r.Context(), r.PathValue("id"), f)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	body := listBody[attemptBody]{Data: make([]attemptBody, 0, len(attempts)), HasMore: more}
	for i := range attempts {
		body.Data = append(body.Data, newAttemptBody(&attempts[i]))
	}
	if more {
		body.NextCursor = attempts[len(attempts)-1].ID
	}
	httpjson.Write(w, http.StatusOK, body)
}

// parseAttemptFilter reads the list's query, reporting every bad parameter.
func parseAttemptFilter(r *http.Request) (store.AttemptFilter, error) {
	q := r.URL.Query()
	fe := switchboard.FieldErrors{}
	f := store.AttemptFilter{Before: q.Get("cursor")}
	f.Limit = parseLimit(fe, q)
	if v := switchboard.AttemptOutcome(q.Get("outcome")); v != "" {
		switch v {
		case switchboard.AttemptDelivered, switchboard.AttemptRetrying, switchboard.AttemptDeadLettered:
		default:
			fe.Add("outcome", "must be delivered, retrying or dead_lettered")
		}
		f.Outcome = v
	}
	if v := q.Get("status_code"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			fe.Add("status_code", "must be an HTTP status code, 100 to 599")
		}
		f.StatusCode = n
	}
	f.Since = parseTimeParam(fe, "since", q.Get("since"))
	f.Until = parseTimeParam(fe, "until", q.Get("until"))
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		fe.Add("until", "must be after since")
	}
	if v := q.Get("event_id"); v != "" {
		if !switchboard.ValidEventID(v) {
			fe.Add("event_id", "must be an event id")
		}
		f.EventID = v
	}
	return f, fe.Err()
}

// Delivery states of GET /v1/events/{id}: an attempt's outcome, or pending.
const deliveryPending = "pending"

// eventBody is an event with where each of its deliveries stands.
type eventBody struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	AgentID    *string         `json:"agent_id"` // null: none
	Timestamp  time.Time       `json:"timestamp"`
	AcceptedAt time.Time       `json:"accepted_at"`
	Data       json.RawMessage `json:"data"`
	Deliveries []deliveryBody  `json:"deliveries"`
}

// deliveryBody is the delivery of an event to one webhook: its state is
// its last attempt's outcome, or pending when none is recorded yet.
type deliveryBody struct {
	WebhookID string        `json:"webhook_id"`
	State     string        `json:"state"`
	Attempts  []attemptBody `json:"attempts"`
}

// event serves GET /v1/events/{id}: the event as stored in SB_EVENTS and,
// per webhook, its attempts and its state. Webhooks with attempts are
// listed first, in the order of their first attempt; then, as pending,
// the webhooks the matcher chose for the event (the ledger, see
// audit_ledger.go) that have no attempt recorded (not attempted yet, or
// their records not ingested yet). A webhook that did not match the event
// when it was matched is never listed, whatever it matches now; an event
// matched to none lists none.
func (a *attemptAPI) event(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	tenant, err := store.TenantFrom(ctx)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	notFound := switchboard.Errorf(switchboard.ENOTFOUND, "Event not found.")
	if !switchboard.ValidEventID(id) {
		httpjson.Error(w, r, a.logger, notFound)
		return
	}
	attempts, err := a.store.FindEventAttempts(ctx, tenant, id)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	var typ string
	var first time.Time
	if len(attempts) > 0 {
		typ, first = attempts[0].EventType, attempts[0].At
	}
	msg, err := control.FindEvent(ctx, a.js, tenant, id, typ, first)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	if msg == nil {
		httpjson.Error(w, r, a.logger, notFound)
		return
	}
	evt, err := streams.DecodeEvent(msg.Subject, msg.Header, msg.Data)
	if err != nil {
		httpjson.Error(w, r, a.logger, fmt.Errorf("event %s: %w", id, err))
		return
	}
	body := eventBody{
		ID: evt.ID, Type: evt.Type, Timestamp: evt.OccurredAt.UTC(), AcceptedAt: acceptedTime(msg), Data: evt.Data,
		Deliveries: []deliveryBody{},
	}
	if evt.AgentID != "" {
		body.AgentID = &evt.AgentID
	}
	index := map[string]int{}
	for i := range attempts {
		at := &attempts[i]
		k, ok := index[at.WebhookID]
		if !ok {
			k = len(body.Deliveries)
			index[at.WebhookID] = k
			body.Deliveries = append(body.Deliveries, deliveryBody{WebhookID: at.WebhookID})
		}
		d := &body.Deliveries[k]
		d.Attempts = append(d.Attempts, newAttemptBody(at))
		d.State = string(at.Outcome) // attempts come in the order they were made
	}
	matched, err := a.store.MatchedWebhooks(ctx, tenant, id, msg.Sequence)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	for _, wid := range matched {
		if _, ok := index[wid]; !ok {
			body.Deliveries = append(body.Deliveries, deliveryBody{WebhookID: wid, State: deliveryPending, Attempts: []attemptBody{}})
		}
	}
	httpjson.Write(w, http.StatusOK, body)
}

// acceptedTime is when a stored event was accepted: its HeaderAcceptedAt,
// else when JetStream stored it.
func acceptedTime(msg *jetstream.RawStreamMsg) time.Time {
	return streams.AcceptedAt(msg.Header, msg.Time)
}
