package switchboard

import "time"

// AttemptOutcome is what came of one delivery attempt.
type AttemptOutcome string

// Attempt outcomes. Every attempt ends in exactly one; a delivery's last
// attempt is AttemptDelivered or AttemptDeadLettered.
const (
	// AttemptDelivered: the receiver answered 2xx.
	AttemptDelivered AttemptOutcome = "delivered"
	// AttemptRetrying: the attempt failed and a retry is scheduled.
	AttemptRetrying AttemptOutcome = "retrying"
	// AttemptDeadLettered: the attempt failed and the delivery was given up
	// (retries spent, 410 Gone, refused target...); Reason says why.
	AttemptDeadLettered AttemptOutcome = "dead_lettered"
)

// MaxAttemptBody bounds the excerpt of a receiver's response kept with an
// attempt.
const MaxAttemptBody = 1024

// Attempt records one attempt to deliver an event to a webhook. Deliverers
// publish one per attempt to the attempts stream; the registry keeps them
// for the attempt log and counts failures from them.
type Attempt struct {
	ID        string `json:"id"` // "att_" + a UUIDv7, unique per attempt
	TenantID  string `json:"tenant_id"`
	WebhookID string `json:"webhook_id"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// Number counts the attempts of this delivery from 1.
	Number  int            `json:"attempt"`
	At      time.Time      `json:"at"` // when the request was sent
	Outcome AttemptOutcome `json:"outcome"`
	// Reason is the dead-letter reason when Outcome is AttemptDeadLettered
	// (e.g. retries_exhausted, gone, target_refused).
	Reason Reason `json:"reason,omitempty"`
	// StatusCode is the receiver's HTTP status; 0 when none was received.
	StatusCode int `json:"status_code,omitempty"`
	// LatencyMS is how long the request took, in milliseconds.
	LatencyMS float64 `json:"latency_ms"`
	// ErrorClass sorts failures: "status" (a non-2xx answer), "timeout",
	// "connection" (refused, reset, DNS), "refused" (the SSRF guard),
	// "invalid" (the webhook cannot be sent to), "circuit_open" (not sent:
	// the webhook's breaker was open, counted as a failed attempt). Empty
	// on success.
	ErrorClass string `json:"error_class,omitempty"`
	Error      string `json:"error,omitempty"`
	// ResponseBody is the start of the receiver's answer, at most
	// MaxAttemptBody bytes.
	ResponseBody string `json:"response_body,omitempty"`
}
