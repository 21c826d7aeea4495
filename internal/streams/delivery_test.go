package streams_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// TestDeliveryEventType: deliveries of earlier versions carry no
// HeaderEventType; their type is read from the body (moved from the
// consumer's TestEventType, same cases).
func TestDeliveryEventType(t *testing.T) {
	for body, want := range map[string]string{
		`{"id":"msg_1","type":"call.started","data":{}}`:       "call.started",
		`{"type":"a.b","id":"x"}`:                              "a.b", // not the stored form: decoded
		`{"id":"msg_1","data":{"x":1}}`:                        "",
		`not json`:                                             "",
		`{"id":"msg_1","type":"a\u002eb","data":{"type":"c"}}`: "a.b",
	} {
		if got := streams.DeliveryEventType(nats.Header{}, []byte(body)); got != want {
			t.Errorf("DeliveryEventType(%s) = %q, want %q", body, got, want)
		}
	}
	h := nats.Header{streams.HeaderEventType: {"x.y"}}
	if got := streams.DeliveryEventType(h, []byte(`{"id":"msg_1","type":"call.started"}`)); got != "x.y" {
		t.Errorf("with the header: %q, want x.y (the body is not read)", got)
	}
}

// TestDeliveryRoundTrip: what EventDeliveries writes, DecodeDelivery,
// AcceptedAt and DeliveryEventType read back.
func TestDeliveryRoundTrip(t *testing.T) {
	accepted := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	evt := &switchboard.Event{ID: "msg_1", TenantID: "t1", Type: "call.started"}
	eh := nats.Header{streams.HeaderAcceptedAt: {streams.EncodeAcceptedAt(accepted)}}
	dels := streams.NewDeliveries(evt, eh, time.Now())
	body := []byte(`{"id":"msg_1","type":"call.started","data":{}}`)

	dm := dels.Delivery("wh_1", body)
	if dm.Subject != streams.DeliverySubject("wh_1") || dm.Header.Get(jetstream.MsgIDHeader) != streams.DeliveryMsgID("msg_1", "wh_1") {
		t.Errorf("delivery: subject %s, msg id %s", dm.Subject, dm.Header.Get(jetstream.MsgIDHeader))
	}
	rm := dels.Replay("wh_1", "replay.7", body)
	if rm.Subject != streams.ReplaySubject("wh_1") || rm.Header.Get(jetstream.MsgIDHeader) != "msg_1.wh_1.replay.7" {
		t.Errorf("replay: subject %s, msg id %s", rm.Subject, rm.Header.Get(jetstream.MsgIDHeader))
	}
	for _, m := range []*nats.Msg{dm, rm} {
		d := streams.DecodeDelivery(m.Subject, m.Header)
		if d != (streams.Delivery{WebhookID: "wh_1", EventID: "msg_1", TenantID: "t1"}) {
			t.Errorf("%s: decoded %+v", m.Subject, d)
		}
		if got := streams.AcceptedAt(m.Header, time.Time{}); !got.Equal(accepted) {
			t.Errorf("%s: accepted at %v, want %v", m.Subject, got, accepted)
		}
		if got := streams.DeliveryEventType(m.Header, nil); got != "call.started" {
			t.Errorf("%s: type %q", m.Subject, got)
		}
	}

	// An event without HeaderAcceptedAt: when it was stored; without
	// either, none.
	stored := accepted.Add(time.Second)
	m := streams.NewDeliveries(evt, nats.Header{}, stored).Delivery("wh_1", body)
	if got := streams.AcceptedAt(m.Header, time.Time{}); !got.Equal(stored) {
		t.Errorf("stored fallback: %v, want %v", got, stored)
	}
	m = streams.NewDeliveries(evt, nats.Header{}, time.Time{}).Delivery("wh_1", body)
	if _, ok := m.Header[streams.HeaderAcceptedAt]; ok {
		t.Errorf("no accepted time known, header %q", m.Header.Get(streams.HeaderAcceptedAt))
	}

	// Retries keep what the delivery carries, and count anew.
	rh := streams.RetryHeader(dm.Header, 2, 0)
	if d := streams.DecodeDelivery(dm.Subject, rh); d.Attempts != 2 || d.Deferrals != 0 || d.EventID != "msg_1" ||
		rh.Get(streams.HeaderEventType) != "call.started" || rh.Get(jetstream.MsgIDHeader) != "" {
		t.Errorf("retry header %v", rh)
	}
}

// TestDecodeDeliveryOldForm: a delivery an earlier version wrote (no type
// header, counts as text) still decodes.
func TestDecodeDeliveryOldForm(t *testing.T) {
	h := nats.Header{
		jetstream.MsgIDHeader:    {"msg_1.wh_1"},
		streams.HeaderEventID:    {"msg_1"},
		streams.HeaderTenant:     {"t1"},
		streams.HeaderAcceptedAt: {"1767323045000000006"},
		streams.HeaderAttempts:   {"3"},
	}
	d := streams.DecodeDelivery("sb.replay.wh_1", h)
	if d != (streams.Delivery{WebhookID: "wh_1", EventID: "msg_1", TenantID: "t1", Attempts: 3}) {
		t.Errorf("decoded %+v", d)
	}
	if got := streams.AcceptedAt(h, time.Time{}); got.UnixNano() != 1767323045000000006 {
		t.Errorf("accepted at %v", got)
	}
	if got := streams.DeliveryEventType(h, []byte(`{"id":"msg_1","type":"call.started","data":{}}`)); got != "call.started" {
		t.Errorf("type %q", got)
	}
	for _, v := range []string{"", "0", "-5", "x"} {
		if _, ok := streams.DecodeAcceptedAt(v); ok {
			t.Errorf("DecodeAcceptedAt(%q) ok", v)
		}
	}
}
