package streams

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
)

// How a delivery is stored in SB_DELIVERIES, one message per (event,
// webhook):
//
//   - subject: DeliverySubject(webhook) from the matcher, ReplaySubject
//     (webhook) from the registry (dead-letter replay, recover);
//   - body: the event's stored body (EventMsg), exactly what receivers get
//     before the webhook's properties are added;
//   - Nats-Msg-Id: DeliveryMsgID, plus a suffix of the replay's own;
//   - HeaderEventID, HeaderTenant, HeaderAcceptedAt, and HeaderEventType
//     (since issue 13: deliveries of earlier versions lack it, and their
//     type is read from the body, DeliveryEventType);
//   - on retries, HeaderAttempts and HeaderDeferrals (absent means 0).
//
// EventDeliveries writes this form and DecodeDelivery reads it back.

// HeaderEventType carries the event's type on deliveries, their retries
// and their dead letters, so that no reader decodes the body for it.
const HeaderEventType = "Sb-Event-Type"

// EncodeAcceptedAt is the HeaderAcceptedAt value of t: Unix nanoseconds.
func EncodeAcceptedAt(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// DecodeAcceptedAt reads a HeaderAcceptedAt value; ok is false when v is
// absent or not a positive number of nanoseconds.
func DecodeAcceptedAt(v string) (t time.Time, ok bool) {
	if v == "" { // the usual absence; ParseInt would allocate an error
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ns <= 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns).UTC(), true
}

// AcceptedAt is when the message (event, delivery or dead letter) with
// headers h was accepted: its HeaderAcceptedAt, else stored (when
// JetStream stored the event; the zero time when unknown).
func AcceptedAt(h nats.Header, stored time.Time) time.Time {
	if t, ok := DecodeAcceptedAt(h.Get(HeaderAcceptedAt)); ok {
		return t
	}
	if stored.IsZero() {
		return stored
	}
	return stored.UTC()
}

// EventDeliveries builds the delivery messages of one event. Its header values
// are shared by every message it builds and never modified: the matcher
// publishes one message per matching webhook.
type EventDeliveries struct {
	eventID, tenant, typ, accepted []string
}

// NewDeliveries returns the builder of evt's deliveries (ID, TenantID and
// Type are used). h holds the headers of the event's SB_EVENTS message, or
// of its dead letter, whose HeaderAcceptedAt is kept: latency is measured
// from the event's acceptance. stored, when JetStream stored the event,
// stands in when h has none; with the zero time, the header is left out.
func NewDeliveries(evt *switchboard.Event, h nats.Header, stored time.Time) *EventDeliveries {
	d := &EventDeliveries{eventID: []string{evt.ID}, tenant: []string{evt.TenantID}}
	if evt.Type != "" {
		d.typ = []string{evt.Type}
	}
	// The event's own value, as it is: no parse and format per event.
	if v := h.Get(HeaderAcceptedAt); v != "" {
		d.accepted = []string{v}
	} else if !stored.IsZero() {
		d.accepted = []string{EncodeAcceptedAt(stored)}
	}
	return d
}

// Delivery is the first delivery of the event to webhook, with body (the
// event's stored body). Its Nats-Msg-Id is DeliveryMsgID, so that a
// matcher re-running after a crash creates no duplicate; it is set
// directly rather than with jetstream.WithMsgID: without options
// PublishMsgAsync takes its allocation-free path.
func (d *EventDeliveries) Delivery(webhook string, body []byte) *nats.Msg {
	return d.msg(DeliverySubject(webhook), DeliveryMsgID(d.eventID[0], webhook), body)
}

// Replay is a delivery of the event to webhook queued again by the
// registry (dead-letter replay, recover), on ReplaySubject. Its
// Nats-Msg-Id is DeliveryMsgID + "." + idSuffix: the first delivery's id
// may still be in the duplicates window, and idSuffix names the replay so
// that a retried publish of it is stored once.
func (d *EventDeliveries) Replay(webhook, idSuffix string, body []byte) *nats.Msg {
	return d.msg(ReplaySubject(webhook), DeliveryMsgID(d.eventID[0], webhook)+"."+idSuffix, body)
}

func (d *EventDeliveries) msg(subject, msgID string, body []byte) *nats.Msg {
	// Room for the expected-stream header a publish may add.
	h := make(nats.Header, 6)
	h[jetstream.MsgIDHeader] = []string{msgID}
	h[HeaderEventID] = d.eventID
	h[HeaderTenant] = d.tenant
	if d.typ != nil {
		h[HeaderEventType] = d.typ
	}
	if d.accepted != nil {
		h[HeaderAcceptedAt] = d.accepted
	}
	return &nats.Msg{Subject: subject, Data: body, Header: h}
}

// Delivery is what a delivery message's subject and headers say of it.
type Delivery struct {
	WebhookID string // "" when the subject is not a delivery or replay subject
	EventID   string
	TenantID  string
	Attempts  int // attempts made before this one
	Deferrals int // times deferred since the last attempt
}

// DeliveryAcceptedAt is when the event of the delivery with headers h was
// accepted; ok is false when they do not say.
func DeliveryAcceptedAt(h nats.Header) (t time.Time, ok bool) {
	return DecodeAcceptedAt(h.Get(HeaderAcceptedAt))
}

// ErrNoEventID says a delivery has no event id: it can never be sent.
var ErrNoEventID = errors.New("no " + HeaderEventID + " header")

// DecodeDelivery reads the delivery message on subject with headers h.
// Nothing is checked here: the deliverer dead-letters a delivery without
// an event id (it can never be sent).
func DecodeDelivery(subject string, h nats.Header) Delivery {
	d := Delivery{EventID: h.Get(HeaderEventID), TenantID: h.Get(HeaderTenant)}
	d.WebhookID, _ = DeliveryWebhook(subject)
	d.Attempts = headerCount(h, HeaderAttempts)
	d.Deferrals = headerCount(h, HeaderDeferrals)
	return d
}

// headerCount reads a count kept in header key of a delivery
// (HeaderAttempts, HeaderDeferrals); absent or unreadable means 0.
func headerCount(h nats.Header, key string) int {
	v := h.Get(key)
	if v == "" { // the usual case; Atoi would allocate an error
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	// Far above any count Switchboard writes, and far enough below MaxInt
	// that one more attempt cannot wrap around to a negative count.
	return min(n, 1<<30)
}

// DeliveryEventType is the type of the event of a delivery, a retry or a
// dead letter with headers h and body: HeaderEventType, or, for what an
// earlier version wrote without it, the "type" of the body (the event's
// payload, as switchboard.Event.AppendPayload writes it: the type, a
// subject-safe token, follows the id); "" when neither has one. This is
// the one place the body is read for it.
func DeliveryEventType(h nats.Header, body []byte) string {
	if v := h.Get(HeaderEventType); v != "" {
		return v
	}
	const key = `,"type":"`
	if i := bytes.Index(body, []byte(key)); i >= 0 {
		rest := body[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j > 0 && bytes.IndexByte(rest[:j], '\\') < 0 {
			return string(rest[:j])
		}
	}
	var p struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	return p.Type
}

// deliveryHeaders are the headers a delivery carries from the matcher to
// its retries and its dead letter. Others (the scheduler's own, the
// counts, which each retry sets anew) are not copied.
var deliveryHeaders = [...]string{HeaderEventID, HeaderTenant, HeaderAcceptedAt, HeaderEventType}

// CopyDeliveryHeaders copies the headers of delivery header src that its
// retries and its dead letter keep into dst.
func CopyDeliveryHeaders(dst, src nats.Header) {
	for _, k := range deliveryHeaders {
		if v, ok := src[k]; ok {
			dst[k] = v
		}
	}
}

// RetryHeader returns the headers of a retry (or deferral) of the
// delivery with headers src: those it keeps, and HeaderAttempts and
// HeaderDeferrals set to attempts and deferrals (left out when 0). It is
// the header of a RetryItem too.
func RetryHeader(src nats.Header, attempts, deferrals int) nats.Header {
	h := make(nats.Header, len(deliveryHeaders)+2)
	CopyDeliveryHeaders(h, src)
	if attempts > 0 {
		h[HeaderAttempts] = []string{strconv.Itoa(attempts)}
	}
	if deferrals > 0 {
		h[HeaderDeferrals] = []string{strconv.Itoa(deferrals)}
	}
	return h
}
