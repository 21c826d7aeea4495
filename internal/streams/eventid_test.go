package streams_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// An event's Nats-Msg-Id is scoped by its tenant, and EventID reads the
// event id back from it, as from the bare ids stored before.
func TestEventID_TenantScopedMsgID(t *testing.T) {
	for msgID, want := range map[string]string{
		streams.EventMsgID("tn_1", "msg_1"): "msg_1",
		"msg_1":                             "msg_1", // stored before ids were scoped
		"tn_1.":                             "",
		"tn_1.msg 1":                        "",
		"tn_1.a.b":                          "",
	} {
		if got := streams.EventID(nats.Header{jetstream.MsgIDHeader: {msgID}}, nil); got != want {
			t.Errorf("EventID(%q) = %q, want %q", msgID, got, want)
		}
	}
	if streams.EventMsgID("tn_1", "msg_1") == streams.EventMsgID("tn_2", "msg_1") {
		t.Error("two tenants' msg_1 share a Nats-Msg-Id")
	}
}
