package streams_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

func TestEventMsg_DecodeEvent(t *testing.T) {
	accepted := time.Unix(1700000000, 5)
	for _, tc := range []struct {
		name, agent, header string
	}{
		{name: "NoAgent"},
		{name: "Agent", agent: "agent-1", header: "agent-1"},
		{name: "AgentUnsafeInHeader", agent: "line\r\nbreak", header: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evt := switchboard.Event{ID: "msg_1", TenantID: "tn_1", Type: "call.started", AgentID: tc.agent,
				OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Data: json.RawMessage(`{"x":1}`)}
			msg, err := streams.EventMsg(&evt, accepted)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Subject != "sb.events.tn_1.call.started" {
				t.Errorf("subject = %q", msg.Subject)
			}
			if want, _ := evt.Payload(nil); string(msg.Data) != string(want) {
				t.Errorf("body = %s, want the delivered payload %s", msg.Data, want)
			}
			// Scoped by tenant, so that two tenants' ids never collide.
			if got := msg.Header.Get(jetstream.MsgIDHeader); got != "tn_1:msg_1" {
				t.Errorf("msg id = %q, want tn_1:msg_1", got)
			}
			if got := msg.Header.Get(streams.HeaderAgentID); got != tc.header {
				t.Errorf("agent header = %q, want %q", got, tc.header)
			}
			if got := msg.Header.Get(streams.HeaderAcceptedAt); got != "1700000000000000005" {
				t.Errorf("accepted at = %q", got)
			}
			got, err := streams.DecodeEvent(msg.Subject, msg.Header, msg.Data)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != evt.ID || got.TenantID != evt.TenantID || got.Type != evt.Type || got.AgentID != evt.AgentID ||
				!got.OccurredAt.Equal(evt.OccurredAt) || string(got.Data) != string(evt.Data) {
				t.Errorf("decoded %+v, want %+v", got, evt)
			}
			// An event stored by an earlier version has the bare id.
			msg.Header.Set(jetstream.MsgIDHeader, "msg_1")
			if got, err := streams.DecodeEvent(msg.Subject, msg.Header, msg.Data); err != nil || got.ID != "msg_1" {
				t.Errorf("decode with a bare msg id: %+v, %v", got, err)
			}
			// Without Nats-Msg-Id, the id comes from the body.
			delete(msg.Header, jetstream.MsgIDHeader)
			if id := streams.EventID(msg.Subject, msg.Header, msg.Data); id != "msg_1" {
				t.Errorf("EventID without msg id = %q", id)
			}
		})
	}
}

func TestDecodeEvent_NotEvent(t *testing.T) {
	for name, tc := range map[string]struct{ subject, msgID, data string }{
		"Subject":       {"sb.deliveries.wh_1", "msg_1", `{"id":"msg_1","type":"a.b","data":{}}`},
		"NoType":        {"sb.events.tn_1", "msg_1", `{"id":"msg_1","type":"a.b","data":{}}`},
		"NotJSON":       {"sb.events.tn_1.a.b", "msg_1", `{not json`},
		"OtherID":       {"sb.events.tn_1.a.b", "msg_2", `{"id":"msg_1","type":"a.b","data":{}}`},
		"OtherType":     {"sb.events.tn_1.a.c", "msg_1", `{"id":"msg_1","type":"a.b","data":{}}`},
		"NoIDAnywhere":  {"sb.events.tn_1.a.b", "", `{"type":"a.b","data":{}}`},
		"InvalidHeader": {"sb.events.tn_1.a.b", "msg 1", `{"id":"msg 1","type":"a.b","data":{}}`},
	} {
		h := map[string][]string{}
		if tc.msgID != "" {
			h[jetstream.MsgIDHeader] = []string{tc.msgID}
		}
		if _, err := streams.DecodeEvent(tc.subject, h, []byte(tc.data)); !errors.Is(err, streams.ErrNotEvent) {
			t.Errorf("%s: err = %v, want ErrNotEvent", name, err)
		}
	}
}

// The tenant is taken off a scoped Nats-Msg-Id by the subject's tenant
// only, so a bare id of an earlier version keeps its ':'s.
func TestEventID_ScopedAndBare(t *testing.T) {
	const subject = "sb.events.tn_1.call.started"
	for msgID, want := range map[string]string{
		"tn_1:order-1": "order-1",
		"tn_1:order:1": "order:1",
		"order:1":      "order:1", // bare, from before scoping
		"msg_1":        "msg_1",
		"tn_2:order-1": "tn_2:order-1", // another tenant's prefix is no prefix
		"tn_1:order 1": "",
		"tn_1:":        "",
	} {
		if got := streams.EventID(subject, nats.Header{jetstream.MsgIDHeader: {msgID}}, nil); got != want {
			t.Errorf("EventID(%q) = %q, want %q", msgID, got, want)
		}
	}
}
