package consumer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/outbound"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// A delivery fails at one of three stages, each with its own error type:
// looking up its webhook (*webhookError), the HTTP attempt (*attemptError),
// or storing what follows the attempt in JetStream (*publishError). Leaving
// early because the deliverer stops is errShutdown. decide is the one place
// that turns any of them into what happens to the message.

// Reasons a delivery is dead-lettered (HeaderReason) or dropped: the
// domain's (switchboard.Reason), as strings, because a decision's reason is
// also a deferral's (isolation.go).
const (
	reasonGone             = string(switchboard.ReasonGone)
	reasonRefused          = string(switchboard.ReasonRefused)
	reasonRetriesExhausted = string(switchboard.ReasonRetriesExhausted)
	reasonInactive         = string(switchboard.ReasonInactive)
	reasonInvalid          = string(switchboard.ReasonInvalid)
	reasonDeleted          = string(switchboard.ReasonDeleted)
	reasonUnknown          = string(switchboard.ReasonUnknown)
	reasonMalformed        = string(switchboard.ReasonMalformed)
)

// errShutdown says an attempt was abandoned because the deliverer is
// stopping: not the receiver's fault, so the delivery is handed back at once.
var errShutdown = errors.New("deliverer shutting down")

// errMalformed says a delivery message lacks what an attempt needs (its
// event id), or its body cannot be sent (not a JSON object to add the
// webhook's properties to). It can never succeed, so it is dead-lettered at
// once.
var errMalformed = errors.New("malformed delivery")

// errNoEventID is the errMalformed of a delivery without its event id.
var errNoEventID = fmt.Errorf("%w: %w", errMalformed, streams.ErrNoEventID)

// webhookError says the delivery's webhook cannot take it; Reason is one of
// the webhook_* reasons.
type webhookError struct {
	WebhookID string
	Reason    string
	Err       error  // why the KV value is unusable, for reasonInvalid
	Tries     uint64 // for reasonUnknown: times JetStream has delivered this message
}

func (e *webhookError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("webhook %s: %s: %v", e.WebhookID, e.Reason, e.Err)
	}
	return fmt.Sprintf("webhook %s: %s", e.WebhookID, e.Reason)
}

func (e *webhookError) Unwrap() error { return e.Err }

// attemptError is a failed HTTP attempt, as outbound.Send reports it: a
// non-2xx answer (Status > 0) or none at all (Status == 0: timeout, refused
// connection, TLS failure...). An alias, so that decide and judge read
// what Send returns without a copy.
type attemptError = outbound.Error

// openError says a delivery was not attempted because its webhook's
// breaker is open: the receiver holds workers or is down. decide counts it
// as a failed attempt, so that the delivery keeps to its retry schedule and
// max_retries while the breaker is open.
type openError struct {
	Until time.Time // when the breaker lets a probe through, at the earliest
}

func (e *openError) Error() string {
	return "circuit open: not attempted, the receiver is timing out or down (next probe after " +
		e.Until.UTC().Format(time.RFC3339) + ")"
}

// publishError says JetStream did not store a retry schedule or a dead
// letter. It is transient: the delivery is handed back and attempted again.
type publishError struct {
	Op  string // "schedule retry", "dead-letter"
	Err error
}

func (e *publishError) Error() string { return fmt.Sprintf("%s: %v", e.Op, e.Err) }
func (e *publishError) Unwrap() error { return e.Err }

// action is what happens to a delivery message.
type action uint8

const (
	actAck        action = iota // nothing left to do: ack
	actRetry                    // publish a scheduled retry, then ack
	actDeadLetter               // publish to SB_DEAD, then ack
	actNak                      // plain Nak: another worker takes it at once
	actNakDelay                 // Nak with a short delay: a transient condition on our side
	actDefer                    // not attempted: publish a scheduled deferral, then ack
)

// Outcomes: the values of the outcome label of switchboard_deliveries_total.
const (
	outcomeDelivered      = "delivered"       // the receiver answered 2xx
	outcomeRetryScheduled = "retry_scheduled" // failed; a retry is scheduled
	outcomeDeadLettered   = "dead_lettered"   // given up; stored in SB_DEAD
	outcomeDropped        = "dropped"         // the webhook is gone (deleted or never known)
	outcomeRequeued       = "requeued"        // handed back to JetStream (shutdown, storage trouble, webhook not known yet)
	outcomeDeferred       = "deferred"        // not attempted (breaker open, cap reached); scheduled again, retries untouched
)

// Delays of the short Naks. They hold a MaxAckPending slot while they wait,
// so they are for rare, brief conditions only; receivers' failures never
// get one (see decide).
const (
	unknownWebhookDelay = time.Second     // a webhook put moments ago may not have reached this index yet
	unknownWebhookTries = 5               // deliveries of a message tried before its unknown webhook's delivery is dead-lettered
	publishFailureDelay = 2 * time.Second // JetStream refused a retry or dead letter
)

// decision is decide's verdict.
type decision struct {
	action  action
	outcome string        // metric label
	reason  string        // dead-letter reason, for actDeadLetter; deferral reason, for actDefer
	delay   time.Duration // for actRetry, actNakDelay and actDefer
}

// decide says what happens to a delivery message after err (nil for a 2xx).
// made is the number of attempts made so far, this one included; maxRetries
// is the webhook's max_retries, so a delivery gets at most 1 + maxRetries
// attempts. It is the only place where that choice is made:
//
//   - delivered -> ack
//   - not attempted because the per-webhook cap is reached -> ack and
//     schedule it again about a second later, its attempt count unchanged
//     (see isolation.go)
//   - not attempted because the webhook's breaker is open -> a failed
//     attempt (reason circuit_open): retry on schedule, or dead letter once
//     max_retries are spent, exactly as if the receiver had failed it
//   - webhook deleted -> ack (dropped, logged)
//   - webhook not known yet -> Nak with a short delay; still unknown after
//     unknownWebhookTries -> dead letter (webhook_unknown), never a silent ack
//   - webhook inactive or unusable -> dead letter (never silently dropped)
//   - 410 Gone, or an address the SSRF guard refuses -> dead letter now
//   - any other failed attempt -> ack and schedule a retry, or dead letter
//     once max_retries retries have failed. A failure never waits inside
//     the ack window (NakWithDelay would hold a MaxAckPending slot and
//     starve healthy receivers).
//   - shutdown -> plain Nak, so that another worker takes it at once
//   - a retry or dead letter JetStream did not store -> Nak with a delay
func decide(err error, made, maxRetries int, policy RetryPolicy) decision {
	if err == nil {
		return decision{action: actAck, outcome: outcomeDelivered}
	}
	if errors.Is(err, errMalformed) {
		return decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonMalformed}
	}
	if errors.Is(err, errShutdown) {
		return decision{action: actNak, outcome: outcomeRequeued}
	}
	var pe *publishError
	if errors.As(err, &pe) {
		return decision{action: actNakDelay, outcome: outcomeRequeued, delay: publishFailureDelay}
	}
	var de *deferError
	if errors.As(err, &de) {
		return decision{action: actDefer, outcome: outcomeDeferred, reason: deferWebhookBusy, delay: de.Delay}
	}
	var we *webhookError
	if errors.As(err, &we) {
		switch we.Reason {
		case reasonDeleted:
			return decision{action: actAck, outcome: outcomeDropped, reason: we.Reason}
		case reasonUnknown:
			if we.Tries < unknownWebhookTries {
				return decision{action: actNakDelay, outcome: outcomeRequeued, delay: unknownWebhookDelay}
			}
			return decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: we.Reason}
		default:
			return decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: we.Reason}
		}
	}
	var ae *attemptError
	if errors.As(err, &ae) {
		switch {
		case ae.Gone():
			return decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonGone}
		case ae.Refused():
			return decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonRefused}
		}
	}
	if made > maxRetries {
		return decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonRetriesExhausted}
	}
	var retryAfter time.Duration
	if ae != nil {
		retryAfter = ae.RetryAfter
	}
	return decision{action: actRetry, outcome: outcomeRetryScheduled, delay: policy.delay(made, retryAfter)}
}

// verdict is what one attempt says about its receiver, for the webhook's
// circuit breaker (isolation.go).
type verdict uint8

const (
	verdictNone verdict = iota // nothing: not attempted, shutdown, malformed, refused by the SSRF guard
	verdictUp                  // it answered, or failed fast: it holds no worker for long
	verdictDown                // it holds workers (timeout, slow failure) or is plainly down (cannot be dialled)
)

// slowFailure is how long a failed attempt may take and still count as
// failing fast: a 5xx, 429 or reset answered within it held a worker for
// no longer than a healthy receiver's answer does.
const slowFailure = time.Second

// judge is the breaker's rule, the one place that decides which attempts
// count against a receiver (docs/architecture.md, "Circuit breaker"):
//
//   - a 2xx, or any failure that came back within slowFailure (any non-2xx
//     status, 429 and 5xx included, a reset, a TLS failure) -> up: it
//     closes a half-open breaker and ends a run of down verdicts;
//   - a timeout, a failure that took slowFailure or longer, or a dial that
//     failed (connection refused, no route, DNS) -> down: breakerFailures
//     of them in a row open the breaker;
//   - a half-open probe answered 429 or 503 with Retry-After -> down: the
//     receiver asks for the pause, and the breaker stays open until then;
//   - no attempt made (shutdown, malformed, SSRF refusal) -> none.
func judge(err error, took time.Duration, probe bool) verdict {
	if err == nil {
		return verdictUp
	}
	var ae *attemptError
	if !errors.As(err, &ae) || ae.Refused() {
		return verdictNone
	}
	if probe && ae.RetryAfter > 0 {
		return verdictDown
	}
	if ae.Status == 0 {
		var ne net.Error
		var oe *net.OpError
		if errors.Is(ae.Err, context.DeadlineExceeded) || errors.As(ae.Err, &ne) && ne.Timeout() {
			return verdictDown
		}
		if errors.As(ae.Err, &oe) && oe.Op == "dial" {
			return verdictDown
		}
	}
	if took >= slowFailure {
		return verdictDown
	}
	return verdictUp
}
