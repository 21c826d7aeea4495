package streams

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard"
)

// StoredDeadLetter is a dead letter as read back from SB_DEAD: what it says
// (DecodeDeadLetter), with the headers and body it was decoded from, so
// that a replay queues again what was stored without its reader holding
// the message.
type StoredDeadLetter struct {
	DeadLetter
	header nats.Header
	body   []byte
}

// ReadDeadLetter reads the dead letter stored on subject with headers h and
// body (DecodeDeadLetter), keeping h and body for Replay.
func ReadDeadLetter(subject string, h nats.Header, body []byte) StoredDeadLetter {
	return StoredDeadLetter{DeadLetter: DecodeDeadLetter(subject, h, body), header: h, body: body}
}

// Replay is the dead letter queued again for delivery to its webhook, as
// the matcher queued it first (EventDeliveries.Replay): the same body and
// event headers, no attempts made. The dead letter's HeaderAcceptedAt is
// kept: latency is measured from the event's acceptance.
func (d *StoredDeadLetter) Replay(idSuffix string) *nats.Msg {
	evt := switchboard.Event{ID: d.EventID, TenantID: d.TenantID, Type: d.EventType}
	return NewDeliveries(&evt, d.header, time.Time{}).Replay(d.WebhookID, idSuffix, d.body)
}
