package streams

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
)

// How an event is stored in SB_EVENTS, so that the matcher neither decodes
// nor renders it:
//
//   - subject: EventSubject(tenant, type);
//   - body: exactly the body receivers get, switchboard.Event.AppendPayload
//     without properties;
//   - Nats-Msg-Id: EventMsgID, the tenant and the event id (deduplication
//     within a tenant: two tenants may use the same id);
//   - HeaderAcceptedAt: when the producer accepted it;
//   - HeaderAgentID: the agent id, when the event has one that webhooks can
//     be scoped to (switchboard.ValidAgentID). Other agent ids (free text,
//     unsafe in a header) are left out: no agent-scoped webhook can match
//     them, so matching treats the event as having none. The body keeps the
//     agent id whatever it is.
//
// EventMsg writes this form and DecodeEvent reads it back.

// HeaderAgentID carries an event's agent id on its SB_EVENTS message.
const HeaderAgentID = "Sb-Agent-Id"

// EventMsg returns the SB_EVENTS message of evt, which must be valid
// (Validate), accepted at acceptedAt. The message carries Nats-Msg-Id, so
// its publish needs no jetstream.WithMsgID. Errors: those of
// switchboard.Event.Payload.
func EventMsg(evt *switchboard.Event, acceptedAt time.Time) (*nats.Msg, error) {
	body, err := evt.Payload(nil)
	if err != nil {
		return nil, err
	}
	// Room for the expected-stream header a publish may add.
	h := make(nats.Header, 4)
	h[jetstream.MsgIDHeader] = []string{EventMsgID(evt.TenantID, evt.ID)}
	h[HeaderAcceptedAt] = []string{EncodeAcceptedAt(acceptedAt)}
	if switchboard.ValidAgentID(evt.AgentID) {
		h[HeaderAgentID] = []string{evt.AgentID}
	}
	return &nats.Msg{Subject: EventSubject(evt.TenantID, evt.Type), Data: body, Header: h}, nil
}

// ExpectEventsStream makes the server refuse m unless SB_EVENTS stores it:
// an event published while the subjects are bound elsewhere (a stream set
// up by hand, a mirror) is an error, not an event lost to the wrong place.
func ExpectEventsStream(m *nats.Msg) { m.Header[jetstream.ExpectedStreamHeader] = []string{Events} }

// EventMsgID is the Nats-Msg-Id of event id of tenant in SB_EVENTS:
// "<tenant>:<event id>". JetStream deduplicates on it within the stream's
// duplicates window, so a repeat is recognised within one tenant and the
// same id from two tenants is two events. Tenant ids hold no ':', so the
// tenant is the part before the first one. The form is itself a valid event
// id, so that a worker of an earlier version, which takes the Nats-Msg-Id
// for the event id, still delivers the event (under that id) rather than
// terminating it.
func EventMsgID(tenant, id string) string { return tenant + ":" + id }

// SplitEventSubject returns the tenant and the event type of an event
// subject (the tenant is one token, the type the rest); ok is false when
// subject is not one.
func SplitEventSubject(subject string) (tenant, typ string, ok bool) {
	rest, ok := strings.CutPrefix(subject, EventsPrefix)
	if !ok {
		return "", "", false
	}
	tenant, typ, ok = strings.Cut(rest, ".")
	return tenant, typ, ok && tenant != "" && typ != ""
}

// EventID returns the id of an event stored on subject: from its
// Nats-Msg-Id, without the subject's tenant (EventMsgID; events stored by
// earlier versions carry the bare id), or, for a message stored without
// one, the leading "id" field of its body (the form EventMsg writes). It
// returns "" when neither holds a valid event id.
func EventID(subject string, h nats.Header, data []byte) string {
	if id := h.Get(jetstream.MsgIDHeader); id != "" {
		if tenant, _, ok := SplitEventSubject(subject); ok {
			id = strings.TrimPrefix(id, tenant+":")
		}
		if !switchboard.ValidEventID(id) {
			return ""
		}
		return id
	}
	const prefix = `{"id":"`
	rest, ok := bytes.CutPrefix(data, []byte(prefix))
	if !ok {
		return ""
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 || !switchboard.ValidEventID(string(rest[:end])) {
		return ""
	}
	return string(rest[:end])
}

// ErrNotEvent is returned by DecodeEvent for a message that is not an event
// in the form EventMsg writes.
var ErrNotEvent = errors.New("not an SB_EVENTS event")

// DecodeEvent decodes an SB_EVENTS message, as EventMsg wrote it, back into
// the event: the tenant from the subject, the rest from the body. It is for
// the paths that need the whole event (replay, recovery); the matcher
// reads only the subject and headers.
//
// Errors: ErrNotEvent, wrapped with what is wrong, for a subject that is
// not an event subject, an undecodable body, or a body whose id or type
// disagree with the message's.
func DecodeEvent(subject string, h nats.Header, data []byte) (switchboard.Event, error) {
	tenant, typ, ok := SplitEventSubject(subject)
	if !ok {
		return switchboard.Event{}, fmt.Errorf("decode event: subject %q: %w", subject, ErrNotEvent)
	}
	var p switchboard.Payload
	if err := json.Unmarshal(data, &p); err != nil {
		return switchboard.Event{}, fmt.Errorf("decode event on %s: %w: %w", subject, ErrNotEvent, err)
	}
	if id := EventID(subject, h, data); id == "" || p.ID != id || p.Type != typ {
		return switchboard.Event{}, fmt.Errorf("decode event on %s: body id %q, type %q: %w", subject, p.ID, p.Type, ErrNotEvent)
	}
	return switchboard.Event{
		ID:         p.ID,
		TenantID:   tenant,
		Type:       p.Type,
		AgentID:    p.AgentID,
		OccurredAt: p.Timestamp,
		Data:       p.Data,
	}, nil
}

// MatchedEvent returns what matching needs of a stored event: id, tenant,
// type and agent, from the subject and headers. It checks that the body
// is a JSON object, without decoding it: the producer validated it. The
// matcher never decodes an event (DecodeEvent is for the paths that need
// all of it).
func MatchedEvent(subject string, h nats.Header, data []byte) (switchboard.Event, error) {
	tenant, typ, ok := SplitEventSubject(subject)
	if !ok {
		return switchboard.Event{}, errors.New("not an event subject")
	}
	id := EventID(subject, h, data)
	if id == "" {
		return switchboard.Event{}, errors.New("no valid event id")
	}
	if len(data) < 2 || data[0] != '{' || data[len(data)-1] != '}' {
		return switchboard.Event{}, errors.New("body is not a JSON object")
	}
	return switchboard.Event{ID: id, TenantID: tenant, Type: typ, AgentID: h.Get(HeaderAgentID)}, nil
}
