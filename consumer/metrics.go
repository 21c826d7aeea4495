package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the matcher's and the deliverer's Prometheus metrics. Labels
// take a handful of fixed values; webhook and tenant ids are never labels.
// One Metrics may be shared by a Matcher and a Deliverer.
type Metrics struct {
	outcomes          map[string]prometheus.Counter // switchboard_deliveries_total by outcome
	duration          prometheus.Histogram
	latency           prometheus.Histogram
	retries           prometheus.Counter
	deadLetters       *prometheus.CounterVec
	inFlight          prometheus.Gauge
	events            map[string]prometheus.Counter // switchboard_events_matched_total by result
	deliveriesCreated prometheus.Counter
	deferred          map[string]prometheus.Counter // switchboard_deliveries_deferred_total by reason
	breakers          map[string]prometheus.Gauge   // switchboard_circuit_breakers by state
	// attemptsUnrecorded counts attempt records lost (see attempts.go).
	attemptsUnrecorded prometheus.Counter
	// unusableWebhooks is the Index's count of KV entries it cannot use.
	unusableWebhooks prometheus.Gauge
}

// Results: the values of the result label of switchboard_events_matched_total.
const (
	resultMatched   = "matched"   // at least one webhook matched; its deliveries are stored
	resultUnmatched = "unmatched" // no webhook matched
	resultInvalid   = "invalid"   // the event could not be decoded and was terminated
)

// NewMetrics creates the metrics and registers them with reg; a nil reg
// leaves them unregistered (they still count, for tests). It panics if reg
// already holds metrics of the same names, like prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_deliveries_total",
		Help: "Delivery attempts and what came of them: delivered, retry_scheduled, dead_lettered, dropped (webhook deleted), requeued (handed back to JetStream), deferred (not attempted: per-webhook cap reached; retries untouched).",
	}, []string{"outcome"})
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_events_matched_total",
		Help: "Events the matcher finished with, by result: matched, unmatched, invalid.",
	}, []string{"result"})
	deferred := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_deliveries_deferred_total",
		Help: "Deliveries the webhook's gate kept from the receiver, by reason: circuit_open (its breaker is open; counted as a failed attempt, retried on schedule or dead-lettered), webhook_busy (its attempts in flight are at their cap; stored again for about a second later, without spending a retry).",
	}, []string{"reason"})
	breakers := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "switchboard_circuit_breakers",
		Help: "Webhooks whose circuit breaker in this process is closed, open or half_open (webhooks delivered to in the last 10 minutes).",
	}, []string{"state"})
	m := &Metrics{
		outcomes: map[string]prometheus.Counter{},
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_delivery_duration_seconds",
			Help:    "Duration of each HTTP delivery attempt, success or not.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_delivery_latency_seconds",
			Help:    "From the event's acceptance to its successful delivery, retries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_retries_scheduled_total",
			Help: "Retries scheduled after a failed attempt.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_dead_letters_total",
			Help: "Deliveries stored in the dead-letter stream, by reason.",
		}, []string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_deliveries_in_flight",
			Help: "HTTP delivery attempts under way.",
		}),
		events:   map[string]prometheus.Counter{},
		deferred: map[string]prometheus.Counter{},
		breakers: map[string]prometheus.Gauge{},
		deliveriesCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_deliveries_created_total",
			Help: "Deliveries the matcher stored in SB_DELIVERIES, one per matching webhook and event.",
		}),
	}
	m.unusableWebhooks = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "switchboard_webhooks_unusable",
		Help: "Webhooks in the KV bucket this worker cannot use (undecodable, or a secret it cannot open); their deliveries are dead-lettered as webhook_invalid, and the error log names each.",
	})
	m.attemptsUnrecorded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_attempts_unrecorded_total",
		Help: "Attempt records JetStream did not store (the deliveries themselves are unaffected): gaps in the attempt log.",
	})
	// Resolve the label values once, so that the hot path does no lookup in
	// the vectors; it also makes every series visible at 0 from the start.
	for _, o := range []string{outcomeDelivered, outcomeRetryScheduled, outcomeDeadLettered, outcomeDropped, outcomeRequeued, outcomeDeferred} {
		m.outcomes[o] = deliveries.WithLabelValues(o)
	}
	for _, r := range []string{resultMatched, resultUnmatched, resultInvalid} {
		m.events[r] = events.WithLabelValues(r)
	}
	for _, r := range []string{deferCircuitOpen, deferWebhookBusy} {
		m.deferred[r] = deferred.WithLabelValues(r)
	}
	for _, s := range []string{stateClosed, stateOpen, stateHalfOpen} {
		m.breakers[s] = breakers.WithLabelValues(s)
	}
	for _, r := range []string{reasonGone, reasonRetriesExhausted, reasonInactive, reasonInvalid, reasonMalformed} {
		m.deadLetters.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(deliveries, m.duration, m.latency, m.retries, m.deadLetters, m.inFlight, events, m.deliveriesCreated, deferred, breakers, m.attemptsUnrecorded,
			m.unusableWebhooks)
	}
	return m
}
