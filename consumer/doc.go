// Package consumer moves events to receivers: the Index mirrors the
// registry's webhooks from the KV bucket, the Matcher turns each event of
// SB_EVENTS into one delivery per matching webhook in SB_DELIVERIES, and the
// Deliverer signs and POSTs each delivery, schedules retries outside the
// consumer's ack window and dead-letters what cannot be delivered.
//
// A process wires them like this (every field not shown has a default):
//
//	kv, _ := streams.OpenWebhooksKV(ctx, js)
//	metrics := consumer.NewMetrics(registry)
//	index := &consumer.Index{KV: kv, Logger: logger}
//	matcher := &consumer.Matcher{JS: js, Index: index, Logger: logger, Metrics: metrics}
//	deliverer := &consumer.Deliverer{JS: js, Index: index, Logger: logger, Metrics: metrics,
//		Retry: consumer.DefaultRetryPolicy(), Workers: consumer.DefaultWorkers,
//		MaxAckPending: consumer.DefaultMaxAckPending}
//	// then run index.Run, matcher.Run and deliverer.Run, each in its own
//	// goroutine, until ctx is cancelled.
//
// Delivery is at least once: a message is acked only after its outcome (the
// receiver's 2xx, a stored retry, a stored dead letter) is durable, so a
// crash at any point repeats work and never loses it. Receivers dedupe on
// the webhook-id header, which is the event id on every attempt.
package consumer
