// Package streams declares Switchboard's JetStream layout: stream and bucket
// names, subjects, message headers, and Setup, which creates or updates them.
// The producer, the consumer and the registry all speak through it, so the
// layout is written down once.
//
// It is the only code that builds or reads a nats.Msg or its JetStream
// headers, one file per format: event.go (SB_EVENTS), delivery.go
// (SB_DELIVERIES, and the accepted-at encoding), deadletter.go (SB_DEAD),
// attemptbatch.go and matched.go (SB_ATTEMPTS), retrybatch.go (retry
// schedules and batches). It also holds the JetStream mechanics the
// services share: the durable pull loop with restart backoff (durable.go),
// the ephemeral ordered scan (scan.go) and checked asynchronous publishing
// (publish.go).
package streams

import (
	"strconv"
	"strings"
)

// Stream, consumer and bucket names.
const (
	Events     = "SB_EVENTS"     // every accepted event, kept for replay and recovery
	Deliveries = "SB_DELIVERIES" // one message per (event, webhook) still to deliver; work queue
	Dead       = "SB_DEAD"       // deliveries whose retries are spent, kept for replay
	Attempts   = "SB_ATTEMPTS"   // a record of every delivery attempt, for the registry

	WebhooksBucket = "sb_webhooks" // KV mirror of the registry's webhooks, key = webhook id

	MatcherConsumer   = "matcher"
	DelivererConsumer = "deliverer"
)

// Subjects. Tenant ids, webhook ids, event ids and event types are validated
// to be subject-safe before they get here.
const (
	EventsPrefix     = "sb.events."
	DeliveriesPrefix = "sb.deliveries."
	ReplayPrefix     = "sb.replay."
	RetryPrefix      = "sb.retry."
	DeadPrefix       = "sb.dead."
	AttemptsPrefix   = "sb.attempts."
)

// EventSubject is where an event of tenant with type typ is published.
func EventSubject(tenant, typ string) string { return EventsPrefix + tenant + "." + typ }

// DeliverySubject is where deliveries to webhook are queued.
func DeliverySubject(webhook string) string { return DeliveriesPrefix + webhook }

// ReplaySubject is where the registry queues deliveries to webhook again
// (dead-letter replay, recover). The deliverer takes them as it takes
// DeliverySubject's; a subject of their own lets NATS permissions give the
// registry replays without letting it queue deliveries of its own making
// (deploy/nats/auth.conf).
func ReplaySubject(webhook string) string { return ReplayPrefix + webhook }

// DeliveryWebhook returns the webhook of a delivery or replay subject; ok
// is false for any other subject.
func DeliveryWebhook(subject string) (webhook string, ok bool) {
	if w, ok := strings.CutPrefix(subject, DeliveriesPrefix); ok {
		return w, true
	}
	return strings.CutPrefix(subject, ReplayPrefix)
}

// RetrySubject is the schedule subject of what follows the delivery message
// to webhook stored at stream sequence seq of Deliveries (its retry or
// deferral). One schedule per subject: publishing again replaces it, which
// makes re-scheduling the same message after a crash idempotent, while
// every other delivery (two events with the same id included) has a
// schedule of its own.
func RetrySubject(webhook string, seq uint64) string {
	return RetryPrefix + webhook + "." + strconv.FormatUint(seq, 10)
}

// DeadSubject is where dead-lettered deliveries to webhook of tenant go.
func DeadSubject(tenant, webhook string) string { return DeadPrefix + tenant + "." + webhook }

// AttemptSubject is where one attempt to deliver to webhook of tenant is
// recorded on its own (JSON of switchboard.Attempt; Nats-Msg-Id = the
// attempt's id). Deliverers record batches on AttemptBatchSubject; the
// registry still reads this form, which earlier workers wrote.
func AttemptSubject(tenant, webhook string) string {
	return AttemptsPrefix + tenant + "." + webhook
}

// AttemptBatchSubject is where deliverers record attempts, many to a
// message: its data is a JSON array of switchboard.Attempt (of any tenants
// and webhooks), its Nats-Msg-Id the id of the first attempt in it. A
// message per attempt cost JetStream a stored message, two consumer
// deliveries and two acks per delivery: a third of what a delivery costs
// it.
const AttemptBatchSubject = AttemptsPrefix + "batch"

// DeliveryMsgID is the Nats-Msg-Id of the first delivery of event to webhook,
// so that a matcher re-running after a crash creates no duplicate.
func DeliveryMsgID(event, webhook string) string { return event + "." + webhook }

// Headers of delivery and dead-letter messages. Deliveries carry
// HeaderEventID, HeaderTenant and HeaderAcceptedAt (their webhook is their
// subject, their type in their body); dead letters add HeaderWebhookID and
// the reasons.
const (
	HeaderEventID    = "Sb-Event-Id"
	HeaderWebhookID  = "Sb-Webhook-Id"
	HeaderTenant     = "Sb-Tenant"
	HeaderAttempts   = "Sb-Attempts"    // attempts already made; absent means 0
	HeaderAcceptedAt = "Sb-Accepted-At" // when the event was accepted, Unix nanoseconds
	HeaderLastError  = "Sb-Last-Error"  // dead letters: why the last attempt failed
	HeaderLastStatus = "Sb-Last-Status" // dead letters: the receiver's last HTTP status, if any
	HeaderReason     = "Sb-Reason"      // dead letters: why the delivery was given up
	HeaderDeferrals  = "Sb-Deferrals"   // deferred deliveries: times deferred (breaker open, per-webhook cap) since the last attempt
)
