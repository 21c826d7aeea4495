package consumer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// settle carries out dec for the delivery. Acks are fire-and-forget, not
// DoubleAck (about 3x slower): delivery is at least once anyway. If an ack
// is lost, JetStream redelivers the message after AckWait and the receiver
// gets the event again with the same webhook-id, which is what receivers
// dedupe on; a confirmed ack would change nothing but the cost. What must
// be durable before the ack (a retry schedule, a dead letter) is published
// synchronously and checked first.
func (d *Deliverer) settle(dlv *delivery, made int, err error, dec decision) {
	// Publishing what follows an attempt must not be cut short by the
	// shutdown that may be under way: the attempt is done.
	ctx := context.Background()
	var perr error
	switch dec.action {
	case actRetry:
		perr = d.schedule(ctx, dlv, made, 0, dec.delay, retryAfterOf(err), "schedule retry")
	case actDeadLetter:
		perr = d.deadLetter(ctx, dlv, made, err, dec.reason)
	case actDefer:
		perr = d.schedule(ctx, dlv, dlv.attempts, dlv.deferrals+1, dec.delay, 0, "defer")
	}
	if perr != nil { // not stored: the delivery is settled as that failure says
		d.settle(dlv, made, errors.Join(perr, err), decide(perr, made, 0, d.Retry))
		return
	}
	switch dec.action {
	case actRetry:
		d.Metrics.retries.Inc()
	case actDeadLetter:
		d.Metrics.deadLetters.WithLabelValues(dec.reason).Inc()
	case actDefer:
		d.Metrics.deferred[dec.reason].Inc()
	}
	d.recordAttempt(dlv, made, err, dec) // published before the ack, not awaited: see attempts.go

	var aerr error
	switch {
	case dlv.batch != nil:
		// An item of a fired batch: the batch is acked once every item
		// is settled, or handed back whole if one of them asks for it.
		if dec.action == actNak || dec.action == actNakDelay {
			dlv.batch.failed.Store(true)
		}
	default:
		aerr = d.ack(dlv.msg, dec)
	}
	d.Metrics.outcomes[dec.outcome].Inc()
	if dec.outcome == outcomeDelivered {
		d.observeLatency(dlv)
	}
	d.logAttempt(dlv, made, err, aerr, dec)
}

// ack settles a delivery message as dec says.
func (d *Deliverer) ack(msg jetstream.Msg, dec decision) error {
	switch dec.action {
	case actNak:
		return msg.Nak()
	case actNakDelay:
		return msg.NakWithDelay(dec.delay)
	}
	return msg.Ack()
}

// retryAfterOf returns the Retry-After of the attempt that failed with
// err, 0 when none.
func retryAfterOf(err error) time.Duration {
	var ae *attemptError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// logAttempt writes the one line per attempt: outcome and decision.
func (d *Deliverer) logAttempt(dlv *delivery, made int, err, ackErr error, dec decision) {
	level := slog.LevelWarn
	switch dec.outcome {
	case outcomeDelivered, outcomeDeferred: // a backlog for an open breaker defers thousands a second
		level = slog.LevelDebug
	case outcomeRetryScheduled, outcomeRequeued:
		level = slog.LevelInfo
	}
	if ackErr != nil {
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !d.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("tenant", dlv.tenant), slog.String("webhook_id", dlv.webhookID),
		slog.String("event_id", dlv.eventID), slog.Int("attempt", made),
		slog.String("outcome", dec.outcome),
	}
	var ae *attemptError
	if errors.As(err, &ae) && ae.Status > 0 {
		attrs = append(attrs, slog.Int("status", ae.Status))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	switch dec.action {
	case actRetry:
		attrs = append(attrs, slog.Duration("retry_in", dec.delay))
	case actDeadLetter:
		attrs = append(attrs, slog.String("reason", dec.reason))
	case actAck:
		if dec.reason != "" {
			attrs = append(attrs, slog.String("reason", dec.reason))
		}
	case actNakDelay:
		attrs = append(attrs, slog.Duration("redeliver_in", dec.delay))
	case actDefer:
		attrs = append(attrs, slog.String("reason", dec.reason), slog.Duration("deferred_for", dec.delay))
	}
	if ackErr != nil {
		attrs = append(attrs, slog.String("ack_err", ackErr.Error()))
	}
	d.log.LogAttrs(ctx, level, "delivery attempt", attrs...)
}
