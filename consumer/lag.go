package consumer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// LagCollector is a prometheus.Collector that reports, at each scrape, how
// far the matcher and the deliverer are behind: switchboard_consumer_pending
// (messages not yet handed to any worker) and switchboard_consumer_ack_pending
// (handed out, not yet acknowledged), labelled consumer="matcher" or
// "deliverer".
//
// The figures come from JetStream's consumer info, so they describe the
// shared durable consumer, not this process: every worker reports the same
// values, and dashboards take the max over instances. Reading them at scrape
// time costs two requests per scrape and needs no goroutine of its own.
type LagCollector struct {
	JS     jetstream.JetStream
	Logger *slog.Logger
	// Timeout bounds the consumer-info requests of one scrape.
	Timeout time.Duration

	pending    *prometheus.Desc
	ackPending *prometheus.Desc
}

var _ prometheus.Collector = (*LagCollector)(nil)

// lagConsumers are the durable consumers LagCollector reports, by label.
var lagConsumers = []struct{ label, stream, durable string }{
	{"matcher", streams.Events, streams.MatcherConsumer},
	{"deliverer", streams.Deliveries, streams.DelivererConsumer},
}

// NewLagCollector returns a LagCollector reading consumer info through js,
// each scrape's requests bounded by 2 s.
func NewLagCollector(js jetstream.JetStream, logger *slog.Logger) *LagCollector {
	return &LagCollector{
		JS:      js,
		Logger:  logger,
		Timeout: 2 * time.Second,
		pending: prometheus.NewDesc("switchboard_consumer_pending",
			"Messages the consumer has not yet handed to any worker (JetStream's num_pending): the backlog.",
			[]string{"consumer"}, nil),
		ackPending: prometheus.NewDesc("switchboard_consumer_ack_pending",
			"Messages handed to workers and not yet acknowledged (JetStream's num_ack_pending).",
			[]string{"consumer"}, nil),
	}
}

// Describe sends the two metrics' descriptions.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
}

// Collect asks JetStream for each consumer's info. A consumer that cannot be
// read (not created yet, NATS unreachable) is left out of this scrape rather
// than failing it: the other metrics matter most exactly when NATS is in
// trouble, and an absent series is what alerts on lag see as "unknown".
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	for _, lc := range lagConsumers {
		cons, err := c.JS.Consumer(ctx, lc.stream, lc.durable)
		if err != nil {
			if !errors.Is(err, jetstream.ErrConsumerNotFound) {
				loggerOr(c.Logger).Warn("read consumer info for metrics", "consumer", lc.durable, "stream", lc.stream, "err", err)
			}
			continue
		}
		info := cons.CachedInfo()
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), lc.label)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), lc.label)
	}
}
