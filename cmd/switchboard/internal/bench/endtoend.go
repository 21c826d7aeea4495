package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/switchboard-hq/switchboard/consumer"
)

// result is what one bench run measured.
type result struct {
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

// endToEnd runs one end-to-end measurement on a fresh system, with the
// --bad-share events sent as mode says.
func (c Config) endToEnd(ctx context.Context, recv *receiver, secret string, res *result, mode badMode, stderr io.Writer) error {
	dir := c.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "switchboard-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sys, err := c.Start(ctx, c.systemOptions(dir), logger)
	if err != nil {
		return err
	}
	defer sys.Close()

	ids, err := c.createWebhooks(ctx, api{url: sys.URL, key: sys.Key, hc: http.DefaultClient}, recv.URL, secret, mode)
	if err != nil {
		return err
	}
	if err := sys.WaitForWebhooks(ctx, ids); err != nil {
		return err
	}
	if c.CPUProfile != "" {
		stop, err := startCPUProfile(c.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if c.Backlog > 0 && mode == badReal {
		if err := c.buildBacklog(ctx, sys, res, stderr); err != nil {
			return err
		}
		defer func(stop func() int64) { res.BacklogPeakRSS = max(res.BacklogPeakRSS, stop()) }(sampleRSS())
	}
	return c.deliver(ctx, sys, recv, res, mode, stderr)
}

// systemOptions is the system of an end-to-end run, its data in dir.
func (c Config) systemOptions(dir string) SystemOptions {
	// A backlog waits on the production schedule (5 s, 20 s, 80 s...): on
	// the bench's 1-2 s one, its deliveries would be retried all through
	// the run and spent within seconds.
	retry := consumer.DefaultRetryPolicy()
	if c.Backlog == 0 {
		retry.InitialInterval = time.Second
		retry.MaxInterval = 2 * time.Second
	}
	return SystemOptions{
		DataDir: dir, Workers: c.Workers, MaxAckPending: c.MaxAckPending,
		MaxInFlightPerWebhook: c.PerWebhook, BreakerFailures: c.BreakerFails, Retry: retry,
	}
}

// deliver publishes the events and waits until the healthy webhooks have
// had them all (or --timeout passed), printing progress every second;
// then it fills res.
func (c Config) deliver(ctx context.Context, sys *System, recv *receiver, res *result, mode badMode, stderr io.Writer) error {
	fmt.Fprintf(stderr, "bench: end to end, %d events x %d webhooks (%.0f%% to a dead receiver, %.0f%% to bad ones)\n", c.Events, c.Fanout, c.DeadShare*100, c.BadShare*100)
	var published atomic.Int64
	start, cpuStart := time.Now(), cpuNow()
	pubErr := make(chan error, 1)
	go func() { pubErr <- c.publish(ctx, sys.Producer, sys.Tenant, recv, mode != badNone, &published) }()

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
		var err error
		res.BadAttempts = recv.badAttempts()
		res.Isolation, err = scrapeMetrics(ctx, sys.URL+"/metrics", "switchboard_deliveries_deferred_total", "switchboard_circuit_breakers")
		if err != nil {
			return err
		}
	}
	return nil
}
