package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// OutageConfig is `switchboard bench outage`: a receiver's outage measured
// from outside a `switchboard serve` process, as an operator would see it.
// It runs any switchboard binary, so that an older build and this one are
// measured by the same driver. Each field is the flag of its name.
type OutageConfig struct {
	Binary     string
	Events     int
	Clients    int
	MaxRetries int
	At         string
	CPUWindow  time.Duration
	DataDir    string
	Healthy    bool
}

func (c OutageConfig) validate() ([]time.Duration, error) {
	var errs []error
	if c.Events < 1 {
		errs = append(errs, errors.New("--events must be at least 1"))
	}
	if c.Clients < 1 || c.Clients > 256 {
		errs = append(errs, errors.New("--clients must be 1..256"))
	}
	if c.MaxRetries < 0 {
		errs = append(errs, errors.New("--max-retries must not be negative"))
	}
	if c.CPUWindow <= 0 {
		errs = append(errs, errors.New("--cpu-window must be positive"))
	}
	var at []time.Duration
	for s := range strings.SplitSeq(c.At, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("--at: %q is not a duration of 0 or more (like 20s)", s))
			continue
		}
		at = append(at, d)
	}
	slices.Sort(at)
	return at, errors.Join(errs...)
}

// outagePoint is one row of the table.
type outagePoint struct {
	after                          time.Duration
	rss                            int64
	cpu                            float64 // share of one core over the window
	deferred, retries, deadLetters float64
}

// outageRun is what one bench outage measured.
type outageRun struct {
	version          []byte // the binary's `version`
	start, last, end time.Time
	cpuAtLast        time.Duration // CPU from start to the last publish
	cpuAll           time.Duration // CPU from start to end
	rows             []outagePoint
	peak             int64 // VmHWM
	size             int64 // of the data folder
}

// RunOutage runs the outage bench as c says: it starts the serve process,
// publishes, reads the process at each time of --at and prints the table
// to stdout, its progress to stderr. It fails on an invalid c (every bad
// flag named), off Linux, and when serve fails or exits.
func RunOutage(ctx context.Context, c OutageConfig, stdout, stderr io.Writer) error {
	at, err := c.validate()
	if err != nil {
		return err
	}
	if runtime.GOOS != "linux" {
		return errors.New("bench outage reads the serve process's /proc entry: Linux only")
	}
	bin := c.Binary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return err
		}
	}
	dir := c.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "switchboard-outage-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	var run outageRun
	run.version, _ = exec.CommandContext(ctx, bin, "version").Output()

	srv, err := startServe(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer srv.stop(stderr)
	if err := waitReady(ctx, srv); err != nil {
		return err
	}
	target, receiving, err := c.receiver()
	if err != nil {
		return err
	}
	if receiving != nil {
		defer receiving.Close()
	}
	if _, err := srv.api.createWebhook(ctx, map[string]any{
		"name": "outage", "url": target, "events": []string{backlogEventType}, "max_retries": c.MaxRetries,
	}); err != nil {
		return err
	}
	if err := c.measure(ctx, srv, at, &run, stderr); err != nil {
		return err
	}
	run.size = dirSize(filepath.Join(dir, "data"))
	c.print(stdout, &run)
	return nil
}

// measure publishes the events, then reads the serve process at each time
// of at after the last publish, into run.
func (c OutageConfig) measure(ctx context.Context, srv *serveProcess, at []time.Duration, run *outageRun, stderr io.Writer) error {
	samples := sampleProcess(srv.pid)
	defer samples.stop()
	fmt.Fprintf(stderr, "bench outage: serve is pid %d, its log in %s\n", srv.pid, srv.logPath)
	run.start = time.Now()
	cpuAtStart := samples.cpuAt(run.start)
	if err := c.publish(ctx, srv.api, stderr); err != nil {
		return err
	}
	run.last = time.Now()
	run.cpuAtLast = samples.cpuAt(run.last) - cpuAtStart

	for _, d := range at {
		select {
		case <-time.After(time.Until(run.last.Add(d))):
		case <-srv.exited:
			return fmt.Errorf("serve exited %v after the last publish; see %s", time.Since(run.last).Round(time.Second), srv.logPath)
		case <-ctx.Done():
			return ctx.Err()
		}
		p := outagePoint{after: d, rss: samples.rss()}
		now := time.Now()
		p.cpu = float64(samples.cpuAt(now)-samples.cpuAt(now.Add(-c.CPUWindow))) / float64(min(c.CPUWindow, now.Sub(run.start)))
		lines, err := scrapeMetrics(ctx, srv.api.url+"/metrics", "switchboard_deliveries_deferred_total", "switchboard_deliveries_total")
		if err != nil {
			return err
		}
		p.deferred = sumMetric(lines, "switchboard_deliveries_deferred_total")
		p.retries = sumMetric(lines, `switchboard_deliveries_total{outcome="retry_scheduled"}`)
		p.deadLetters = sumMetric(lines, `switchboard_deliveries_total{outcome="dead_lettered"}`)
		run.rows = append(run.rows, p)
		fmt.Fprintf(stderr, "bench outage: %v after the last publish: RSS %d MB\n", d, p.rss>>20)
	}
	run.end = time.Now()
	run.peak = samples.hwm()
	run.cpuAll = samples.cpuAt(run.end) - cpuAtStart
	return nil
}

// print writes the summary of the publish, the table and the totals.
func (c OutageConfig) print(stdout io.Writer, run *outageRun) {
	fmt.Fprintf(stdout, "\nSwitchboard bench outage: %s", firstLine(run.version))
	pub := run.last.Sub(run.start)
	receiver := "refuses every connection"
	if c.Healthy {
		receiver = "answers 204 at once (--healthy: no outage)"
	}
	fmt.Fprintf(stdout, "%d events through POST /v1/events from %d keep-alive clients in %.1fs (%.0f/s), to one webhook whose receiver %s (max_retries %d)\n\n",
		c.Events, c.Clients, pub.Seconds(), float64(c.Events)/pub.Seconds(), receiver, c.MaxRetries)
	fmt.Fprintf(stdout, "| time after the last publish | RSS of the process | CPU over the %v before | deferrals | retries scheduled | dead-lettered |\n", c.CPUWindow)
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|")
	for _, p := range run.rows {
		fmt.Fprintf(stdout, "| %v | %d MB | %.1f%% | %.0f | %.0f | %.0f |\n",
			p.after, p.rss>>20, 100*p.cpu, p.deferred, p.retries, p.deadLetters)
	}
	fmt.Fprintf(stdout, "\npeak RSS (VmHWM) %d MB; CPU %.1fs in the first %.0fs, %.1fs of it while publishing (%.0fs); data folder %d MB\n",
		run.peak>>20, run.cpuAll.Seconds(), run.end.Sub(run.start).Seconds(), run.cpuAtLast.Seconds(), pub.Seconds(), run.size>>20)
}

// publish sends c.Events events through the API from c.Clients clients,
// each repeating a request that the API answers 429 or 503 until it is
// accepted.
func (c OutageConfig) publish(ctx context.Context, api api, stderr io.Writer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range c.Clients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(c.Events) || ctx.Err() != nil {
					return
				}
				body := `{"id":"evt_outage_` + strconv.FormatInt(i, 10) + `","type":"` + backlogEventType + `","data":{"call_id":"call_` + strconv.FormatInt(i, 10) + `"}}`
				if err := api.postUntilAccepted(ctx, "/v1/events", []byte(body)); err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		})
	}
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintf(stderr, "bench outage: published %d/%d\n", done.Load(), c.Events)
			case <-stopProgress:
				return
			}
		}
	}()
	wg.Wait()
	close(stopProgress)
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}
