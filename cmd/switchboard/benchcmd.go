package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/switchboard-hq/switchboard/cmd/switchboard/internal/bench"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/producer"
)

// benchCommand is `switchboard bench`: the flags here, the harness in
// internal/bench, which starts its systems through startBenchSystem.
func benchCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := bench.Config{
		Events: 100_000, Fanout: 1, PayloadSize: 512, Verify: true, Timeout: 10 * time.Minute, Rounds: 1, BacklogHooks: 1,
		Workers: consumer.DefaultWorkers, MaxAckPending: consumer.DefaultMaxAckPending,
		Start: startBenchSystem,
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&cfg.Events, "events", cfg.Events, "events to publish")
	fs.IntVar(&cfg.Fanout, "fanout", cfg.Fanout, "webhooks matching each event (deliveries per event)")
	fs.IntVar(&cfg.PayloadSize, "payload-size", cfg.PayloadSize, "approximate size in bytes of each delivered body")
	fs.Float64Var(&cfg.DeadShare, "dead-share", cfg.DeadShare, "share of events (0..1) that go to a webhook whose receiver always fails")
	fs.Float64Var(&cfg.BadShare, "bad-share", cfg.BadShare, "share of events (0..1) that go, in turn, to one of four bad receivers (answering 500, timing out, resetting the connection, answering in 1 s); the healthy throughput is then measured alone and beside them, and the ratio reported")
	fs.BoolVar(&cfg.Control, "control", cfg.Control, "with --bad-share: the baseline run sends the bad share's events to one more, fast receiver instead of leaving them out, so that both runs carry the same load and the ratio shows only what the bad receivers cost")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "with --bad-share: pairs of runs (alone, beside the bad receivers) whose median ratio is reported")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "deliveries in flight at once; the ceiling run uses the same concurrency")
	fs.IntVar(&cfg.MaxAckPending, "max-ack-pending", cfg.MaxAckPending, "deliveries the deliverer may hold unacknowledged")
	fs.IntVar(&cfg.PerWebhook, "max-in-flight-per-webhook", cfg.PerWebhook, "deliveries in flight at once to one webhook; 0 means a quarter of --workers, as in serve")
	fs.IntVar(&cfg.BreakerFails, "breaker-failures", cfg.BreakerFails, "consecutive failed attempts that open a webhook's circuit breaker; 0 means serve's default (a very large value switches breakers off, for comparison)")
	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "events published per second; 0 publishes as fast as JetStream takes them (throughput), a modest rate shows latency without queueing")
	fs.BoolVar(&cfg.Verify, "verify", cfg.Verify, "receiver verifies every signature (in both runs)")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "give up waiting for deliveries after this long")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", cfg.CPUProfile, "write a CPU profile of the end-to-end run to this file (go tool pprof)")
	fs.IntVar(&cfg.Backlog, "backlog", cfg.Backlog, "deliveries left pending for a receiver refusing every connection (max_retries 10) before the healthy run; the healthy throughput is then measured alone and beside that backlog, with the process's peak RSS and its CPU once the backlog has settled")
	fs.IntVar(&cfg.BacklogHooks, "backlog-webhooks", cfg.BacklogHooks, "with --backlog: this many webhooks refusing every connection, each matching every backlog event, so each has a backlog of --backlog deliveries")
	fs.StringVar(&cfg.MemProfile, "memprofile", cfg.MemProfile, "with --backlog: write a heap profile to this file once the backlog has settled, and one to this file plus .build once it is published (go tool pprof)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "where the bench's JetStream and SQLite live (default: a temporary folder, removed after)")
	return &ffcli.Command{
		Name:       "bench",
		ShortUsage: "switchboard bench [flags]",
		ShortHelp:  "measure end-to-end deliveries/s against this machine's raw HTTP ceiling",
		LongHelp: `Starts everything embedded, plus receivers on 127.0.0.1, and prints in one run:
  (a) the ceiling: the deliverer's own HTTP client posting signed bodies
      straight to the receiver, at the same concurrency;
  (b) end to end: events published through the producer, matched, signed
      and delivered; deliveries/s at the receiver and publish-to-receive
      latency p50/p95/p99;
  (c) the ratio (b)/(a), and lost and duplicated deliveries;
  (d) with --bad-share: the healthy webhooks' deliveries/s alone (the same
      healthy events without the bad ones) and beside four bad receivers
      (answering 500, timing out, resetting the connection, answering in
      1 s), and their ratio: what the per-webhook cap and the circuit
      breakers keep for healthy receivers. --control gives the baseline
      the same load (the bad share to a fast receiver); --rounds repeats
      the pair and reports the median ratio.
  (e) with --backlog n: the same pair of runs, the second beside n
      deliveries pending for a receiver that refuses every connection
      (for each of --backlog-webhooks such receivers), with the process's
      peak RSS and its CPU once the backlog settled.
Compare figures within one run: this machine may be shared and noisy.`,
		FlagSet:     fs,
		Subcommands: []*ffcli.Command{benchOutageCommand(stdout, stderr)},
		Exec: func(ctx context.Context, _ []string) error {
			return bench.Run(ctx, cfg, stdout, stderr)
		},
	}
}

// startBenchSystem starts every role of serve in this process, as the
// bench measures it: serve's defaults but for the listener (a free
// loopback port), the SSRF guard (opened for the loopback receivers) and
// what o sets.
func startBenchSystem(ctx context.Context, o bench.SystemOptions, logger *slog.Logger) (*bench.System, error) {
	cfg := defaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = o.DataDir
	cfg.Workers = o.Workers
	cfg.MaxAckPending = o.MaxAckPending
	cfg.MaxInFlightPerWebhook = o.MaxInFlightPerWebhook
	if o.BreakerFailures > 0 {
		cfg.BreakerFailures = o.BreakerFailures
	}
	cfg.AllowPrivateTargets = true
	cfg.Retry = o.Retry
	sys, err := startSystem(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	return &bench.System{
		URL: sys.URL, Key: sys.NewKey, Tenant: sys.Tenant,
		Producer:        producer.New(sys.js),
		WaitForWebhooks: sys.waitForWebhooks,
		Close:           sys.Close,
	}, nil
}

// benchOutageCommand is `switchboard bench outage`: the flags here, the
// harness in internal/bench.
func benchOutageCommand(stdout, stderr io.Writer) *ffcli.Command {
	c := bench.OutageConfig{Events: 200_000, Clients: 8, MaxRetries: 10, At: "0s,20s,80s,150s", CPUWindow: 10 * time.Second}
	fs := flag.NewFlagSet("bench outage", flag.ContinueOnError)
	fs.StringVar(&c.Binary, "binary", c.Binary, "the switchboard binary to run as 'serve' (default: this one); give an older build to measure it by the same driver")
	fs.IntVar(&c.Events, "events", c.Events, "events to publish through POST /v1/events, every one to the dead receiver's webhook")
	fs.IntVar(&c.Clients, "clients", c.Clients, "keep-alive HTTP clients publishing at once")
	fs.IntVar(&c.MaxRetries, "max-retries", c.MaxRetries, "max_retries of the dead receiver's webhook")
	fs.StringVar(&c.At, "at", c.At, "comma-separated times after the last publish at which to read the process's RSS, CPU and counters")
	fs.DurationVar(&c.CPUWindow, "cpu-window", c.CPUWindow, "the process's CPU is reported over this window before each time of --at")
	fs.BoolVar(&c.Healthy, "healthy", c.Healthy, "a control run: the webhook's receiver (in this process) answers 204 at once, so that the same ingest is measured without an outage")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "where the serve process keeps its files (default: a temporary folder, removed after)")
	return &ffcli.Command{
		Name:       "outage",
		ShortUsage: "switchboard bench outage [flags]",
		ShortHelp:  "measure a serve process's memory and CPU while one receiver is down",
		LongHelp: `Starts 'switchboard serve' (--binary, with its defaults, the SSRF guard
opened for loopback and no API rate limit) in a process of its own, creates
one webhook whose receiver refuses every connection, publishes --events
events to it through POST /v1/events from --clients keep-alive clients,
and prints a table: at each time of --at after the last publish, the
process's RSS, its CPU over the --cpu-window before, and its counters of
deferrals, scheduled retries and dead letters (from /metrics); then its
peak RSS (VmHWM), its CPU in all and the size of its data folder.
Linux only: it reads the process's /proc entry.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, _ []string) error {
			return bench.RunOutage(ctx, c, stdout, stderr)
		},
	}
}
