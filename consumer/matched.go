package consumer

import (
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// matchedMsg returns the record of the webhooks evt was matched to
// (streams.Matched on streams.MatchedSubject). The matcher publishes it
// with the event's deliveries and settles it like them, so that an event
// acked has its record stored: the registry's ledger of what is owed,
// which the attempt log must account for. One message per event, not per
// delivery, and no Nats-Msg-Id (see streams.MatchedSubject), to keep it
// cheap.
func matchedMsg(msg jetstream.Msg, evt *switchboard.Event, matches []*hook) *nats.Msg {
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	b := make([]byte, 0, 160+len(evt.ID)+len(matches)*32)
	b = append(b, `{"tenant_id":`...)
	b = appendJSONString(b, evt.TenantID)
	b = append(b, `,"event_id":`...)
	b = appendJSONString(b, evt.ID)
	b = append(b, `,"event_type":`...)
	b = appendJSONString(b, evt.Type)
	b = append(b, `,"event_seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"at":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","webhook_ids":[`...)
	for i, h := range matches {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, h.id)
	}
	b = append(b, "]}"...)
	return &nats.Msg{Subject: streams.MatchedSubject, Data: b}
}
