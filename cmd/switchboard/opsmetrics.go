package main

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/control"
)

// registerOpsMetrics registers what the alerts of deploy/prometheus need
// beyond the roles' own metrics: readiness, the attempt log's backlog (the
// registry) and the space left where --data-dir lives.
func (s *system) registerOpsMetrics(reg *prometheus.Registry) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_ready",
		Help: "1 when the process is ready (/readyz answers 200: NATS connected and, for workers, the webhook index loaded), else 0.",
	}, func() float64 {
		if s.ready() {
			return 1
		}
		return 0
	}))
	if s.cfg.Roles.Registry {
		reg.MustRegister(&attemptLogLag{js: s.js, desc: prometheus.NewDesc("switchboard_attempt_log_pending",
			"Attempt records in SB_ATTEMPTS that the registry has not yet read into the attempt log (num_pending of its consumer "+
				control.AttemptsConsumer+"): the attempt log's and auto-disable's lag.", nil, nil)})
	}
	if s.cfg.needsDataDir() {
		dir := s.cfg.DataDir
		for _, g := range []struct {
			name, help string
			pick       func(avail, size float64) float64
		}{
			{"switchboard_data_dir_available_bytes", "Bytes available to the process on the filesystem of --data-dir (registry.db and the embedded JetStream).",
				func(avail, _ float64) float64 { return avail }},
			{"switchboard_data_dir_size_bytes", "Size in bytes of the filesystem of --data-dir.",
				func(_, size float64) float64 { return size }},
		} {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help}, func() float64 {
				return g.pick(diskSpace(dir))
			}))
		}
	}
}

// attemptLogLag reports switchboard_attempt_log_pending at each scrape,
// from JetStream's consumer info; when it cannot be read, the series is
// left out of the scrape, as consumer.LagCollector does.
type attemptLogLag struct {
	js   jetstream.JetStream
	desc *prometheus.Desc
}

func (c *attemptLogLag) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *attemptLogLag) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cons, err := c.js.Consumer(ctx, streams.Attempts, control.AttemptsConsumer)
	if err != nil {
		return // not created yet, or NATS unreachable: no series this scrape
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(cons.CachedInfo().NumPending))
}
