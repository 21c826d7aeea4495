package main

import (
	"context"
	"flag"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard/consumer"
)

func workerCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultServeConfig()
	cfg.Roles = roles{Worker: true}
	cfg.Listen = "127.0.0.1:8081"
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	cfg.registerFlags(fs)
	return &ffcli.Command{
		Name:       "worker",
		ShortUsage: "switchboard worker --nats-url URL [flags]",
		ShortHelp:  "run a matcher and deliverer alone, against an external NATS",
		LongHelp: `Runs a worker: the matcher (events to deliveries) and the deliverer (signs
and sends), with /metrics, /healthz and /readyz on --listen. Start as many
as you like against the same --nats-url: they share the work through
durable pull consumers, and what a worker held when it died goes to another
after --ack-wait. Workers read webhooks from the KV bucket the registry
mirrors into, so they go on delivering while the registry is down; a
worker started before any registry creates the streams itself.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, _ []string) error {
			return runSystem(ctx, cfg, "Switchboard worker", stdout, stderr)
		},
	}
}

// startWorker builds the webhook index, the matcher and the deliverer, and
// returns them to run in the background.
func (s *system) startWorker(kv jetstream.KeyValue, reg *prometheus.Registry) []func(context.Context) error {
	// Both were validated with the rest of the config.
	key, _ := s.cfg.encryptionKey()
	guard, _ := s.cfg.guard()
	metrics := consumer.NewMetrics(reg)
	index := &consumer.Index{KV: kv, Logger: s.logger, EncryptionKey: key, Metrics: metrics}
	s.index = index
	reg.MustRegister(consumer.NewLagCollector(s.js, s.logger))
	matcher := &consumer.Matcher{JS: s.js, Index: index, Logger: s.logger, Metrics: metrics}
	deliverer := &consumer.Deliverer{
		JS: s.js, Index: index, Logger: s.logger, Metrics: metrics,
		Retry: s.cfg.Retry, Workers: s.cfg.Workers, MaxAckPending: s.cfg.MaxAckPending, AckWait: s.cfg.AckWait,
		Guard:                 guard,
		MaxInFlightPerWebhook: s.cfg.MaxInFlightPerWebhook, BreakerFailures: s.cfg.BreakerFailures, BreakerCooldown: s.cfg.BreakerCooldown,
	}
	return []func(context.Context) error{index.Run, matcher.Run, deliverer.Run}
}
