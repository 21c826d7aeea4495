package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/cputime"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/signer"
)

type benchConfig struct {
	Events        int
	Fanout        int
	PayloadSize   int
	DeadShare     float64
	BadShare      float64
	Rounds        int
	Control       bool
	Workers       int
	MaxAckPending int
	PerWebhook    int // --max-in-flight-per-webhook; 0 is serve's default
	BreakerFails  int // --breaker-failures; 0 is serve's default
	Verify        bool
	Rate          int
	Timeout       time.Duration
	DataDir       string
	CPUProfile    string
	Backlog       int    // --backlog: deliveries pending for a dead receiver beside the healthy run
	BacklogHooks  int    // --backlog-webhooks: dead receivers, each with a backlog of Backlog
	MemProfile    string // --memprofile: heap profile once the backlog has settled
	// settleRetries is how many retry waves of the backlog pass before
	// its settled CPU is measured; 0 means 3. Tests take 1.
	settleRetries int
}

func benchCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := benchConfig{
		Events: 100_000, Fanout: 1, PayloadSize: 512, Verify: true, Timeout: 10 * time.Minute, Rounds: 1, BacklogHooks: 1,
		Workers: consumer.DefaultWorkers, MaxAckPending: consumer.DefaultMaxAckPending,
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
			return cfg.run(ctx, stdout, stderr)
		},
	}
}

func (c benchConfig) validate() error {
	var errs []error
	if c.Events < 1 {
		errs = append(errs, errors.New("--events must be at least 1"))
	}
	if c.Fanout < 1 || c.Fanout > 100 {
		errs = append(errs, errors.New("--fanout must be 1..100"))
	}
	if c.DeadShare < 0 || c.DeadShare >= 1 {
		errs = append(errs, errors.New("--dead-share must be in [0, 1)"))
	}
	if c.BadShare < 0 || c.BadShare >= 1 {
		errs = append(errs, errors.New("--bad-share must be in [0, 1)"))
	}
	if c.Rounds < 1 {
		errs = append(errs, errors.New("--rounds must be at least 1"))
	}
	if c.BadShare > 0 && c.DeadShare > 0 {
		errs = append(errs, errors.New("--bad-share and --dead-share do not mix: pick one"))
	}
	if c.Backlog < 0 {
		errs = append(errs, errors.New("--backlog must not be negative"))
	}
	if c.BacklogHooks < 0 || c.BacklogHooks > 100 {
		errs = append(errs, errors.New("--backlog-webhooks must be 1..100"))
	}
	if c.Backlog > 0 && (c.BadShare > 0 || c.DeadShare > 0) {
		errs = append(errs, errors.New("--backlog does not mix with --bad-share or --dead-share: pick one"))
	}
	if c.Rate < 0 {
		errs = append(errs, errors.New("--rate must not be negative"))
	}
	if c.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if c.PayloadSize < 128 || c.PayloadSize > switchboard.MaxEventDataSize {
		errs = append(errs, fmt.Errorf("--payload-size must be 128..%d", switchboard.MaxEventDataSize))
	}
	return errors.Join(errs...)
}

// benchResult is what one bench run measured.
type benchResult struct {
	CeilingRate   float64
	Rate          float64
	Delivered     int64
	Expected      int
	P50, P95, P99 time.Duration
	Lost, Dup     int
	BadSignatures int64
	DeadAttempts  int64
	Elapsed       time.Duration
	// CeilingCPU and CPU are the process's CPU time per request of the
	// ceiling run and per delivery end to end (everything runs in this
	// process); 0 where it cannot be read. On a shared machine their ratio
	// varies less than the rates'.
	CeilingCPU, CPU time.Duration
	// With --bad-share: the healthy rates without and with the bad
	// receivers, one per round; of the last round, the attempts each bad
	// receiver saw and the deliverer's isolation metrics.
	AloneRates  []float64
	BadRates    []float64
	AloneP99    []time.Duration
	BadP99      []time.Duration
	BadAttempts map[string]int64
	Isolation   []string
	// With --backlog, of the last round: the process's peak RSS while the
	// backlog was built and beside it, how long building it took, the
	// share of one core the process used in a quiet window once it had
	// settled, and the deliverer's counts.
	BacklogPeakRSS  int64
	BacklogBuild    time.Duration
	BacklogIdleCPU  float64
	BacklogCounters []string
}

func (c benchConfig) run(ctx context.Context, stdout, stderr io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	secret, err := signer.NewSecret()
	if err != nil {
		return err
	}
	recv, err := startBenchReceiver(secret, c.Events, c.Fanout, c.Verify)
	if err != nil {
		return err
	}
	defer recv.Close()
	var res benchResult
	res.Expected = c.healthyEvents() * c.Fanout

	fmt.Fprintf(stderr, "bench: ceiling run, %d signed %d-byte POSTs at concurrency %d\n", res.Expected, c.PayloadSize, c.Workers)
	if res.CeilingRate, res.CeilingCPU, err = c.ceiling(ctx, recv, secret, res.Expected); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bench: ceiling %.0f req/s\n", res.CeilingRate)

	if c.BadShare > 0 || c.Backlog > 0 {
		// Pairs of runs, alone then beside the bad receivers, so that
		// each ratio compares neighbours in time on a noisy machine.
		for round := range c.Rounds {
			alone := benchResult{Expected: res.Expected}
			baseline := badNone
			if c.Control {
				baseline = badControl
			}
			fmt.Fprintf(stderr, "bench: round %d/%d: healthy webhooks without bad receivers (control: %v)\n", round+1, c.Rounds, c.Control)
			if err := c.endToEnd(ctx, recv, secret, &alone, baseline, stderr); err != nil {
				return err
			}
			if alone.Lost > 0 {
				return fmt.Errorf("bench: %d deliveries lost in the healthy-only run", alone.Lost)
			}
			recv.reset()
			fmt.Fprintf(stderr, "bench: round %d/%d: beside bad receivers or a backlog\n", round+1, c.Rounds)
			if err := c.endToEnd(ctx, recv, secret, &res, badReal, stderr); err != nil {
				return err
			}
			if round < c.Rounds-1 {
				if res.Lost > 0 || res.BadSignatures > 0 {
					return fmt.Errorf("bench: %d deliveries lost, %d bad signatures", res.Lost, res.BadSignatures)
				}
				recv.reset()
			}
			res.AloneRates = append(res.AloneRates, alone.Rate)
			res.BadRates = append(res.BadRates, res.Rate)
			res.AloneP99 = append(res.AloneP99, alone.P99)
			res.BadP99 = append(res.BadP99, res.P99)
		}
	} else if err := c.endToEnd(ctx, recv, secret, &res, badReal, stderr); err != nil {
		return err
	}
	c.report(stdout, &res)
	if res.Lost > 0 || res.BadSignatures > 0 {
		return fmt.Errorf("bench: %d deliveries lost, %d bad signatures", res.Lost, res.BadSignatures)
	}
	return nil
}

// healthyEvents is how many events go to the healthy webhooks.
func (c benchConfig) healthyEvents() int {
	n := 0
	for i := range c.Events {
		if !c.isDead(i) && !c.isBad(i) {
			n++
		}
	}
	return n
}

// isBad spreads the bad share evenly over the event sequence.
func (c benchConfig) isBad(i int) bool {
	return int(float64(i+1)*c.BadShare) > int(float64(i)*c.BadShare)
}

// isDead spreads the dead share evenly over the event sequence.
func (c benchConfig) isDead(i int) bool {
	return int(float64(i+1)*c.DeadShare) > int(float64(i)*c.DeadShare)
}

// ceiling posts n signed bodies straight to the receiver with the
// deliverer's own HTTP client, at the deliverer's concurrency.
func (c benchConfig) ceiling(ctx context.Context, recv *benchReceiver, secret string, n int) (rate float64, cpu time.Duration, err error) {
	s, err := signer.New(secret)
	if err != nil {
		return 0, 0, err
	}
	client := consumer.NewHTTPClient(c.Workers, netguard.New(true)) // the receiver is on loopback
	body := c.sampleBody()
	url := recv.URL + "/ceiling"
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start, cpuStart := time.Now(), cpuNow()
	for range c.Workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				s.SetHeaders(req.Header, "bench_ceiling", time.Now(), body)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), perOp(cpuNow()-cpuStart, int64(n))
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if f := failed.Load(); f > 0 {
		return 0, 0, fmt.Errorf("ceiling run: %d of %d requests failed", f, n)
	}
	return float64(n) / elapsed.Seconds(), cpu, nil
}

// cpuNow is the process's CPU time, or 0 where it cannot be read.
func cpuNow() time.Duration {
	d, _ := cputime.Process()
	return d
}

// perOp divides cpu among n operations; 0 when there is nothing to divide.
func perOp(cpu time.Duration, n int64) time.Duration {
	if cpu <= 0 || n <= 0 {
		return 0
	}
	return cpu / time.Duration(n)
}

// sampleBody is a rendered payload of about PayloadSize bytes.
func (c benchConfig) sampleBody() []byte {
	evt := c.event(0)
	evt.TenantID = "bench"
	evt.Normalize(time.Now())
	b, _ := evt.Payload(nil)
	return b
}

func (c benchConfig) event(i int) switchboard.Event {
	typ := "call.started"
	switch {
	case c.isDead(i):
		typ = "call.ended"
	case c.isBad(i):
		typ = badEventTypes[int(float64(i)*c.BadShare)%len(badKinds)] // bad events in turn
	}
	// The rendered body adds about 130 bytes of envelope around data.
	pad := max(c.PayloadSize-150, 1)
	return switchboard.Event{
		ID:      fmt.Sprintf("bench_%d", i),
		Type:    typ,
		AgentID: "agent-1",
		Data:    json.RawMessage(`{"call_id":"c-` + fmt.Sprint(i) + `","pad":"` + strings.Repeat("x", pad) + `"}`),
	}
}

// badMode says where the --bad-share events go in an end-to-end run.
type badMode int

const (
	badNone    badMode = iota // not published: the healthy webhooks alone
	badControl                // to one more webhook, a fast receiver: the same load, nothing bad
	badReal                   // to the bad receivers
)

// endToEnd runs one end-to-end measurement on a fresh system, with the
// --bad-share events sent as mode says.
func (c benchConfig) endToEnd(ctx context.Context, recv *benchReceiver, secret string, res *benchResult, mode badMode, stderr io.Writer) error {
	dir := c.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "switchboard-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	cfg := defaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.Workers = c.Workers
	cfg.MaxAckPending = c.MaxAckPending
	cfg.MaxInFlightPerWebhook = c.PerWebhook
	if c.BreakerFails > 0 {
		cfg.BreakerFailures = c.BreakerFails
	}
	cfg.AllowPrivateTargets = true
	cfg.Retry.InitialInterval = time.Second
	cfg.Retry.MaxInterval = 2 * time.Second
	if c.Backlog > 0 {
		// A backlog waits on the production schedule (5 s, 20 s, 80 s...):
		// on the bench's 1-2 s one, its deliveries would be retried all
		// through the run and spent within seconds.
		cfg.Retry = consumer.DefaultRetryPolicy()
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sys, err := startSystem(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer sys.Close()

	ids, err := c.createWebhooks(ctx, apiClient{url: sys.URL, key: sys.NewKey}, recv.URL, secret, mode)
	if err != nil {
		return err
	}
	if err := sys.waitForWebhooks(ctx, ids); err != nil {
		return err
	}

	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if c.Backlog > 0 && mode == badReal {
		if err := c.buildBacklog(ctx, sys, res, stderr); err != nil {
			return err
		}
		defer func(stop func() int64) { res.BacklogPeakRSS = max(res.BacklogPeakRSS, stop()) }(sampleRSS())
	}
	fmt.Fprintf(stderr, "bench: end to end, %d events x %d webhooks (%.0f%% to a dead receiver, %.0f%% to bad ones)\n", c.Events, c.Fanout, c.DeadShare*100, c.BadShare*100)
	pub := producer.New(sys.js)
	tenant := sys.Tenant
	var published atomic.Int64
	start, cpuStart := time.Now(), cpuNow()
	pubErr := make(chan error, 1)
	go func() { pubErr <- c.publish(ctx, pub, tenant, recv, mode != badNone, &published) }()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.After(c.Timeout)
	for recv.received.Load() < int64(res.Expected) {
		select {
		case err := <-pubErr:
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			pubErr = nil
		case <-tick.C:
			got := recv.received.Load()
			fmt.Fprintf(stderr, "bench: %5.1fs  published %d/%d  delivered %d/%d  (%.0f/s)\n",
				time.Since(start).Seconds(), published.Load(), c.Events, got, res.Expected,
				float64(got)/time.Since(start).Seconds())
		case <-deadline:
			fmt.Fprintf(stderr, "bench: timed out after %v\n", c.Timeout)
			goto done
		case <-ctx.Done():
			return ctx.Err()
		}
	}
done:
	cpu := cpuNow() - cpuStart
	last := time.Unix(0, recv.lastRecvN.Load())
	res.Elapsed = last.Sub(start)
	res.Delivered = recv.received.Load()
	res.CPU = perOp(cpu, res.Delivered)
	res.Rate = float64(res.Delivered) / res.Elapsed.Seconds()
	res.Lost, res.Dup = recv.tally()
	res.Lost -= (c.Events - c.healthyEvents()) * c.Fanout // dead events are not expected at /wh
	res.BadSignatures = recv.badSig.Load()
	res.DeadAttempts = recv.dead.Load()
	res.P50, res.P95, res.P99 = recv.percentiles()
	if c.BadShare > 0 {
		res.BadAttempts = recv.badAttempts()
		res.Isolation, err = scrapeMetrics(ctx, sys.URL+"/metrics", "switchboard_deliveries_deferred_total", "switchboard_circuit_breakers")
		if err != nil {
			return err
		}
	}
	return nil
}

// createWebhooks creates the run's webhooks through the API: the fan-out's,
// then the dead one or the bad ones as the flags and mode say.
func (c benchConfig) createWebhooks(ctx context.Context, api apiClient, recvURL, secret string, mode badMode) ([]string, error) {
	var ids []string
	for k := range c.Fanout {
		id, err := api.createWebhook(ctx, map[string]any{
			"name": fmt.Sprintf("bench-%d", k), "url": fmt.Sprintf("%s/wh/%d", recvURL, k),
			"events": []string{"call.started"}, "secret": secret,
		})
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if c.DeadShare > 0 {
		id, err := api.createWebhook(ctx, map[string]any{
			"name": "bench-dead", "url": recvURL + "/dead", "events": []string{"call.ended"},
			"secret": secret, "max_retries": 1,
		})
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if c.BadShare > 0 && mode == badControl {
		id, err := api.createWebhook(ctx, map[string]any{
			"name": "bench-control", "url": recvURL + "/control", "events": badEventTypes, "secret": secret,
		})
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if c.Backlog > 0 && mode == badReal {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		down := "http://" + l.Addr().String() + "/"
		l.Close() // nothing listens: every connection is refused
		for k := range max(c.BacklogHooks, 1) {
			name := "bench-backlog"
			if k > 0 {
				name += "-" + strconv.Itoa(k)
			}
			id, err := api.createWebhook(ctx, map[string]any{
				"name": name, "url": down, "events": []string{backlogEventType}, "secret": secret, "max_retries": 10,
			})
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
	}
	if c.BadShare > 0 && mode == badReal {
		for k, kind := range badKinds {
			id, err := api.createWebhook(ctx, map[string]any{
				"name": "bench-bad-" + kind, "url": recvURL + "/bad/" + kind, "events": []string{badEventTypes[k]},
				"secret": secret, "max_retries": 1, "timeout": switchboard.MinTimeoutSeconds,
			})
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// scrapeMetrics returns the lines of a /metrics page for the given names.
func scrapeMetrics(ctx context.Context, url string, names ...string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	var out []string
	for line := range strings.Lines(string(body)) {
		for _, n := range names {
			if strings.HasPrefix(line, n+"{") {
				out = append(out, strings.TrimSpace(line))
			}
		}
	}
	return out, nil
}

// publish sends every event through the producer in batches, stamping each
// event's publish time for the latency figures. With a rate, batches are
// paced every 10ms.
func (c benchConfig) publish(ctx context.Context, pub *producer.Client, tenant string, recv *benchReceiver, withBad bool, published *atomic.Int64) error {
	batch := 500
	var pace *time.Ticker
	if c.Rate > 0 {
		batch = max(1, c.Rate/100)
		pace = time.NewTicker(time.Duration(float64(time.Second) * float64(batch) / float64(c.Rate)))
		defer pace.Stop()
	}
	evts := make([]*switchboard.Event, 0, batch)
	for i := 0; i < c.Events; i += batch {
		if pace != nil {
			select {
			case <-pace.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		evts = evts[:0]
		now := time.Now().UnixNano()
		for j := i; j < min(i+batch, c.Events); j++ {
			if !withBad && c.isBad(j) {
				continue
			}
			e := c.event(j)
			e.TenantID = tenant
			evts = append(evts, &e)
			recv.published[j].Store(now)
		}
		if len(evts) == 0 {
			continue
		}
		if _, err := pub.PublishBatch(ctx, evts); err != nil {
			return err
		}
		published.Add(int64(len(evts)))
	}
	return nil
}

func (r *benchReceiver) percentiles() (p50, p95, p99 time.Duration) {
	var lat []int64
	for i := range r.latencies {
		if v := r.latencies[i].Load(); v > 0 {
			lat = append(lat, v)
		}
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration { return time.Duration(lat[min(int(q*float64(len(lat))), len(lat)-1)]) }
	return at(0.50), at(0.95), at(0.99)
}

func (c benchConfig) report(w io.Writer, r *benchResult) {
	rate := "as fast as accepted"
	if c.Rate > 0 {
		rate = fmt.Sprintf("%d events/s", c.Rate)
	}
	fmt.Fprintf(w, "\nSwitchboard bench: %d events published %s, fan-out %d, %d-byte bodies, concurrency %d, dead share %.0f%%\n",
		c.Events, rate, c.Fanout, c.PayloadSize, c.Workers, c.DeadShare*100)
	fmt.Fprintf(w, "  (a) ceiling, signed POSTs straight to the receiver: %8.0f req/s\n", r.CeilingRate)
	fmt.Fprintf(w, "  (b) end to end, publish -> JetStream -> delivered:  %8.0f deliveries/s  (%d in %.2fs)\n",
		r.Rate, r.Delivered, r.Elapsed.Seconds())
	fmt.Fprintf(w, "      publish-to-receive latency: p50 %v  p95 %v  p99 %v\n",
		r.P50.Round(time.Millisecond/10), r.P95.Round(time.Millisecond/10), r.P99.Round(time.Millisecond/10))
	if c.Rate == 0 {
		fmt.Fprintf(w, "  (c) ratio (b)/(a): %.1f%%\n", 100*r.Rate/r.CeilingRate)
		if r.CPU > 0 && r.CeilingCPU > 0 {
			fmt.Fprintf(w, "      CPU per request: ceiling %.1f µs, end to end %.1f µs per delivery: ratio %.1f%%\n",
				us(r.CeilingCPU), us(r.CPU), 100*float64(r.CeilingCPU)/float64(r.CPU))
		}
	} else {
		fmt.Fprintln(w, "  (c) ratio: not meaningful at a fixed --rate; run without --rate for throughput")
	}
	fmt.Fprintf(w, "  lost %d, duplicated %d, bad signatures %d", r.Lost, r.Dup, r.BadSignatures)
	if c.DeadShare > 0 {
		fmt.Fprintf(w, ", attempts at the dead receiver %d", r.DeadAttempts)
	}
	fmt.Fprintln(w)
	if c.BadShare > 0 || c.Backlog > 0 {
		beside := fmt.Sprintf("bad receivers (%.0f%% of events)", c.BadShare*100)
		if c.Backlog > 0 {
			beside = fmt.Sprintf("a backlog of %d for a dead receiver", c.Backlog)
			if c.BacklogHooks > 1 {
				beside = fmt.Sprintf("a backlog of %d for each of %d dead receivers", c.Backlog, c.BacklogHooks)
			}
		}
		ratios := make([]float64, len(r.BadRates))
		for i := range r.BadRates {
			ratios[i] = r.BadRates[i] / r.AloneRates[i]
			fmt.Fprintf(w, "  (d) round %d: healthy webhooks, baseline %6.0f deliveries/s (p99 %v), beside %s %6.0f deliveries/s (p99 %v): %.1f%%\n",
				i+1, r.AloneRates[i], r.AloneP99[i].Round(time.Millisecond), beside, r.BadRates[i], r.BadP99[i].Round(time.Millisecond), 100*ratios[i])
		}
		slices.Sort(ratios)
		baseline := "alone"
		if c.Control {
			baseline = "beside a fast control receiver taking the same events"
		}
		fmt.Fprintf(w, "      healthy throughput kept beside %s, against the baseline %s, median of %d: %.1f%%\n", beside, baseline, len(ratios), 100*ratios[len(ratios)/2])
		if c.Backlog > 0 {
			fmt.Fprintf(w, "      last round, backlog: built in %.1fs, peak RSS %d MB, CPU once settled %.1f%% of a core\n",
				r.BacklogBuild.Seconds(), r.BacklogPeakRSS>>20, 100*r.BacklogIdleCPU)
			for _, line := range r.BacklogCounters {
				fmt.Fprintf(w, "      %s\n", line)
			}
			return
		}
		fmt.Fprintf(w, "      last round, attempts at the bad receivers:")
		for _, kind := range badKinds {
			fmt.Fprintf(w, " %s %d", kind, r.BadAttempts[kind])
		}
		fmt.Fprintln(w)
		for _, line := range r.Isolation {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
}

// backlogEventType is the type of the events that build the --backlog.
const backlogEventType = "call.ended" // free: --backlog and --bad-share do not mix

// buildBacklog publishes c.Backlog events to the backlog webhook, as fast
// as JetStream takes them, and waits until the deliverer has had each
// once (all then wait as scheduled retries); then it measures the
// process's CPU over a quiet window and, if asked, writes a heap profile.
func (c benchConfig) buildBacklog(ctx context.Context, sys *system, res *benchResult, stderr io.Writer) error {
	stop := sampleRSS()
	defer func() { res.BacklogPeakRSS = max(res.BacklogPeakRSS, stop()) }()
	start := time.Now()
	pub := producer.New(sys.js)
	body := json.RawMessage(`{"backlog":true}`)
	const batch = 500
	evts := make([]*switchboard.Event, 0, batch)
	for i := 0; i < c.Backlog; i += batch {
		evts = evts[:0]
		for j := i; j < min(i+batch, c.Backlog); j++ {
			evts = append(evts, &switchboard.Event{ID: fmt.Sprintf("msg_backlog_%d", j), TenantID: sys.Tenant,
				Type: backlogEventType, OccurredAt: time.Now().UTC(), Data: body})
		}
		if _, err := pub.PublishBatch(ctx, evts); err != nil {
			return fmt.Errorf("publish backlog: %w", err)
		}
	}
	if c.MemProfile != "" {
		// The peak comes while the backlog is published and matched: what
		// holds memory then, beside the profile once settled.
		if err := writeHeapProfile(c.MemProfile + ".build"); err != nil {
			return err
		}
	}
	// Every backlog delivery has been had once when the deliverer has
	// settled as many: retried, deferred (earlier versions) or given up.
	want := c.Backlog * max(c.BacklogHooks, 1)
	if err := waitSettled(ctx, sys, start, want, stderr); err != nil {
		return err
	}
	res.BacklogBuild = time.Since(start)
	// Then its first three retries (5 s, 20 s and 80 s apart, +-20 %) come
	// due; a quiet window after them, before the fourth (5 min 20 s
	// later), shows what a settled backlog costs. A large backlog takes
	// minutes to build, so its waves overlap until the third is done.
	waves := c.settleRetries
	if waves <= 0 {
		waves = 3
	}
	minWait := time.After(30 * time.Second)
	if err := waitSettled(ctx, sys, start, (1+waves)*want, stderr); err != nil {
		return err
	}
	<-minWait
	cpu0, t0 := cpuNow(), time.Now()
	time.Sleep(10 * time.Second)
	res.BacklogIdleCPU = float64(cpuNow()-cpu0) / float64(time.Since(t0))
	if c.MemProfile != "" {
		if err := writeHeapProfile(c.MemProfile); err != nil {
			return err
		}
	}
	var err error
	res.BacklogCounters, err = scrapeMetrics(ctx, sys.URL+"/metrics", "switchboard_deliveries_total", "switchboard_deliveries_deferred_total", "switchboard_consumer_pending")
	return err
}

// waitSettled waits until the deliverer has settled goal deliveries of
// the backlog (attempts counted as retried, deferred or given up).
func waitSettled(ctx context.Context, sys *system, start time.Time, goal int, stderr io.Writer) error {
	settled := []string{`{outcome="retry_scheduled"} `, `{outcome="deferred"} `, `{outcome="dead_lettered"} `}
	for {
		lines, err := scrapeMetrics(ctx, sys.URL+"/metrics", "switchboard_deliveries_total")
		if err != nil {
			return err
		}
		n := 0.0
		for _, l := range lines {
			for _, m := range settled {
				if v, ok := strings.CutPrefix(l, "switchboard_deliveries_total"+m); ok {
					f, _ := strconv.ParseFloat(v, 64)
					n += f
				}
			}
		}
		fmt.Fprintf(stderr, "bench: backlog %5.1fs  settled %.0f for %d  RSS %d MB\n", time.Since(start).Seconds(), n, goal, readRSS()>>20)
		if int(n) >= goal {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// writeHeapProfile writes the heap in use, after a GC, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

// sampleRSS samples the process's resident set every 200 ms until the
// returned stop, which returns the peak in bytes (0 where /proc is not).
func sampleRSS() (stop func() int64) {
	s := sampleProcess(os.Getpid())
	return func() int64 { s.stop(); return s.peakRSS() }
}

// readRSS returns this process's VmRSS in bytes, 0 when unreadable.
func readRSS() int64 { return procStatus(os.Getpid(), "VmRSS:") }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
