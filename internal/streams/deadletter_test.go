package streams_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// TestDeadLetterRoundTrip: what DeadLetterMsg writes of a delivery,
// DecodeDeadLetter reads back, and a replay built from it keeps the
// delivery's accepted time and type.
func TestDeadLetterRoundTrip(t *testing.T) {
	accepted := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	evt := &switchboard.Event{ID: "msg_1", TenantID: "t1", Type: "call.started"}
	body := []byte(`{"id":"msg_1","type":"call.started","data":{}}`)
	dm := streams.NewDeliveries(evt, nats.Header{streams.HeaderAcceptedAt: {streams.EncodeAcceptedAt(accepted)}}, time.Time{}).Delivery("wh_1", body)
	dm.Header[streams.HeaderAttempts] = []string{"4"}

	want := streams.DeadLetter{
		TenantID: "t1", WebhookID: "wh_1", EventID: "msg_1", EventType: "call.started",
		Reason: switchboard.ReasonRetriesExhausted, Attempts: 5, LastStatus: 503, LastError: "status 503",
		AcceptedAt: accepted,
	}
	in := want
	m := streams.DeadLetterMsg(dm.Header, body, 42, &in)
	if m.Subject != streams.DeadSubject("t1", "wh_1") || m.Header.Get(jetstream.MsgIDHeader) != "msg_1.wh_1.42" {
		t.Errorf("subject %s, msg id %s", m.Subject, m.Header.Get(jetstream.MsgIDHeader))
	}
	if got := streams.DecodeDeadLetter(m.Subject, m.Header, m.Data); got != want {
		t.Errorf("decoded\n %+v\nwant\n %+v", got, want)
	}
	rm := streams.NewDeliveries(&switchboard.Event{ID: want.EventID, TenantID: want.TenantID, Type: want.EventType}, m.Header, time.Time{}).
		Replay("wh_1", "replay.42", m.Data)
	if d := streams.DecodeDelivery(rm.Subject, rm.Header); d.Attempts != 0 || d.EventID != "msg_1" {
		t.Errorf("replay %+v: a fresh retry budget", d)
	}
	if !streams.AcceptedAt(rm.Header, time.Time{}).Equal(accepted) || rm.Header.Get(streams.HeaderEventType) != "call.started" {
		t.Errorf("replay headers %v", rm.Header)
	}
}

// TestDecodeDeadLetter_OldForm: a dead letter an earlier version wrote,
// without Sb-Event-Type, still decodes: the type from its body.
func TestDecodeDeadLetter_OldForm(t *testing.T) {
	h := nats.Header{
		jetstream.MsgIDHeader:    {"msg_1.wh_1.42"},
		streams.HeaderEventID:    {"msg_1"},
		streams.HeaderTenant:     {"t1"},
		streams.HeaderWebhookID:  {"wh_1"},
		streams.HeaderAcceptedAt: {"1767323045000000006"},
		streams.HeaderReason:     {"gone"},
		streams.HeaderAttempts:   {"1"},
		streams.HeaderLastStatus: {"410"},
		streams.HeaderLastError:  {"status 410"},
	}
	got := streams.DecodeDeadLetter("sb.dead.t1.wh_1", h, []byte(`{"id":"msg_1","type":"call.ended","data":{}}`))
	want := streams.DeadLetter{
		TenantID: "t1", WebhookID: "wh_1", EventID: "msg_1", EventType: "call.ended",
		Reason: switchboard.ReasonGone, Attempts: 1, LastStatus: 410, LastError: "status 410",
		AcceptedAt: time.Unix(0, 1767323045000000006).UTC(),
	}
	if got != want {
		t.Errorf("decoded\n %+v\nwant\n %+v", got, want)
	}
}
