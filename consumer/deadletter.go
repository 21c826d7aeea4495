package consumer

import (
	"context"
	"errors"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// maxLastError bounds HeaderLastError.
const maxLastError = 1024

// deadLetter stores the delivery in SB_DEAD, on streams.DeadSubject, with
// its body and headers, HeaderWebhookID and HeaderTenant (from the
// webhook when the delivery lacks it), plus why it was given up: HeaderReason, HeaderLastError,
// HeaderLastStatus (when the receiver answered) and HeaderAttempts (attempts
// made). It returns once JetStream has stored it; only then may the
// delivery message be acked.
//
// Its Nats-Msg-Id names the delivery message by stream sequence: the same
// message dead-lettered again after a crash between publish and ack is
// deduplicated, while a replayed delivery (a new message) that dies again
// gets a dead letter of its own.
func (d *Deliverer) deadLetter(ctx context.Context, dlv *delivery, made int, cause error, reason string) error {
	seq := dlv.streamSeq()
	attempts := dlv.attempts // no attempt was made when the webhook itself is the problem
	var ae *attemptError
	if errors.As(cause, &ae) || errors.As(cause, new(*openError)) { // an open breaker's refusal counts as an attempt
		attempts = made
	}

	m := nats.NewMsg(streams.DeadSubject(dlv.tenant, dlv.webhookID))
	copyDeliveryHeaders(m.Header, dlv.header)
	// Deliveries carry neither (the webhook is their subject); a dead
	// letter says both.
	m.Header.Set(streams.HeaderWebhookID, dlv.webhookID)
	if dlv.tenant != "" {
		m.Header.Set(streams.HeaderTenant, dlv.tenant)
	}
	m.Header.Set(jetstream.MsgIDHeader, streams.DeliveryMsgID(dlv.eventID, dlv.webhookID)+"."+strconv.FormatUint(seq, 10))
	m.Header.Set(streams.HeaderReason, reason)
	m.Header.Set(streams.HeaderAttempts, strconv.Itoa(attempts))
	if cause != nil {
		m.Header.Set(streams.HeaderLastError, truncate(printable([]byte(netguard.PublicError(cause))), maxLastError))
	}
	if ae != nil && ae.Status > 0 {
		m.Header.Set(streams.HeaderLastStatus, strconv.Itoa(ae.Status))
	}
	m.Data = dlv.body
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if _, err := d.JS.PublishMsg(ctx, m); err != nil {
		return &publishError{Op: "dead-letter", Err: err}
	}
	return nil
}
