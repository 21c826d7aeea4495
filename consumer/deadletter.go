package consumer

import (
	"context"
	"errors"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// maxLastError bounds HeaderLastError.
const maxLastError = 1024

// deadLetter stores the delivery in SB_DEAD (streams.DeadLetterMsg) with
// why it was given up, reason, and the attempts made. It returns once
// JetStream has stored it; only then may the delivery message be acked.
func (d *Deliverer) deadLetter(ctx context.Context, dlv *delivery, made int, cause error, reason string) error {
	seq := dlv.streamSeq()
	attempts := dlv.attempts // no attempt was made when the webhook itself is the problem
	var ae *attemptError
	if errors.As(cause, &ae) || errors.As(cause, new(*openError)) { // an open breaker's refusal counts as an attempt
		attempts = made
	}

	dl := &streams.DeadLetter{
		TenantID: dlv.tenant, WebhookID: dlv.webhookID, EventID: dlv.eventID,
		Reason: switchboard.Reason(reason), Attempts: attempts,
	}
	if cause != nil {
		dl.LastError = truncate(printable([]byte(netguard.PublicError(cause))), maxLastError)
	}
	if ae != nil {
		dl.LastStatus = ae.Status
	}
	m := streams.DeadLetterMsg(dlv.header, dlv.body, seq, dl)
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if _, err := d.JS.PublishMsg(ctx, m); err != nil {
		return &publishError{Op: "dead-letter", Err: err}
	}
	return nil
}
