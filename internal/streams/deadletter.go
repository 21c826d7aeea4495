package streams

import (
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
)

// How a dead letter is stored in SB_DEAD: on DeadSubject(tenant, webhook),
// with the delivery's body and the headers it keeps
// (CopyDeliveryHeaders), HeaderWebhookID and HeaderTenant, and why it was
// given up: HeaderReason, HeaderAttempts (attempts made), HeaderLastError
// and HeaderLastStatus (when the receiver answered). DeadLetterMsg writes
// this form and DecodeDeadLetter reads it back.

// DeadLetter is what a dead letter says of the delivery it holds.
type DeadLetter struct {
	TenantID   string
	WebhookID  string
	EventID    string
	EventType  string // "" when neither header nor body says
	Reason     switchboard.Reason
	Attempts   int       // attempts made
	LastStatus int       // the receiver's last HTTP status; 0 when it never answered
	LastError  string    // why the last attempt failed; "" when none was made
	AcceptedAt time.Time // when the event was accepted; zero when unknown
}

// DeadLetterMsg returns the dead letter of the delivery message stored at
// stream sequence seq with headers delivery and body. dl gives its tenant
// (left out of the headers when ""), webhook, event id, reason, attempts,
// last error and status; its other fields come from the delivery. Its
// Nats-Msg-Id names the delivery message by sequence: the same message
// dead-lettered again after a crash between publish and ack is
// deduplicated, while a replayed delivery (a new message) that dies again
// gets a dead letter of its own.
func DeadLetterMsg(delivery nats.Header, body []byte, seq uint64, dl *DeadLetter) *nats.Msg {
	m := nats.NewMsg(DeadSubject(dl.TenantID, dl.WebhookID))
	CopyDeliveryHeaders(m.Header, delivery)
	// Deliveries carry neither (the webhook is their subject); a dead
	// letter says both.
	m.Header.Set(HeaderWebhookID, dl.WebhookID)
	if dl.TenantID != "" {
		m.Header.Set(HeaderTenant, dl.TenantID)
	}
	m.Header.Set(jetstream.MsgIDHeader, DeliveryMsgID(dl.EventID, dl.WebhookID)+"."+strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderReason, string(dl.Reason))
	m.Header.Set(HeaderAttempts, strconv.Itoa(dl.Attempts))
	if dl.LastError != "" {
		m.Header.Set(HeaderLastError, dl.LastError)
	}
	if dl.LastStatus > 0 {
		m.Header.Set(HeaderLastStatus, strconv.Itoa(dl.LastStatus))
	}
	m.Data = body
	return m
}

// DecodeDeadLetter reads the dead letter stored on subject with headers h
// and body. Tenant and webhook come from the subject, which the deliverer
// builds from them and scans filter on; both are "" for a subject that is
// not a dead letter's.
func DecodeDeadLetter(subject string, h nats.Header, body []byte) DeadLetter {
	var dl DeadLetter
	if rest, ok := strings.CutPrefix(subject, DeadPrefix); ok {
		dl.TenantID, dl.WebhookID, _ = strings.Cut(rest, ".")
	}
	dl.EventID = h.Get(HeaderEventID)
	dl.EventType = DeliveryEventType(h, body)
	dl.Reason = switchboard.Reason(h.Get(HeaderReason))
	dl.LastError = h.Get(HeaderLastError)
	dl.Attempts, _ = strconv.Atoi(h.Get(HeaderAttempts))
	dl.LastStatus, _ = strconv.Atoi(h.Get(HeaderLastStatus))
	dl.AcceptedAt = AcceptedAt(h, time.Time{})
	return dl
}
