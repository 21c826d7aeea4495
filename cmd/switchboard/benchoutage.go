package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// outageConfig is `switchboard bench outage`: a receiver's outage measured
// from outside a `switchboard serve` process, as an operator would see it.
// It runs any switchboard binary, so that an older build and this one are
// measured by the same driver.
type outageConfig struct {
	Binary     string
	Events     int
	Clients    int
	MaxRetries int
	At         string
	CPUWindow  time.Duration
	DataDir    string
	Healthy    bool
}

func benchOutageCommand(stdout, stderr io.Writer) *ffcli.Command {
	c := outageConfig{Events: 200_000, Clients: 8, MaxRetries: 10, At: "0s,20s,80s,150s", CPUWindow: 10 * time.Second}
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
			return c.run(ctx, stdout, stderr)
		},
	}
}

func (c outageConfig) validate() ([]time.Duration, error) {
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

func (c outageConfig) run(ctx context.Context, stdout, stderr io.Writer) error {
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
	version, _ := exec.CommandContext(ctx, bin, "version").Output()

	srv, err := startServe(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer srv.stop(stderr)
	api := srv.api
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
	if _, err := api.createWebhook(ctx, map[string]any{
		"name": "outage", "url": target, "events": []string{backlogEventType}, "max_retries": c.MaxRetries,
	}); err != nil {
		return err
	}

	samples := sampleProcess(srv.pid)
	defer samples.stop()
	fmt.Fprintf(stderr, "bench outage: serve is pid %d, its log in %s\n", srv.pid, srv.logPath)
	start := time.Now()
	cpuAtStart := samples.cpuAt(start)
	if err := c.publish(ctx, api, stderr); err != nil {
		return err
	}
	last := time.Now()
	cpuAtLast := samples.cpuAt(last) - cpuAtStart

	var rows []outagePoint
	for _, d := range at {
		select {
		case <-time.After(time.Until(last.Add(d))):
		case <-srv.exited:
			return fmt.Errorf("serve exited %v after the last publish; see %s", time.Since(last).Round(time.Second), srv.logPath)
		case <-ctx.Done():
			return ctx.Err()
		}
		p := outagePoint{after: d, rss: samples.rss()}
		now := time.Now()
		p.cpu = float64(samples.cpuAt(now)-samples.cpuAt(now.Add(-c.CPUWindow))) / float64(min(c.CPUWindow, now.Sub(start)))
		lines, err := scrapeMetrics(ctx, api.url+"/metrics", "switchboard_deliveries_deferred_total", "switchboard_deliveries_total")
		if err != nil {
			return err
		}
		p.deferred = sumMetric(lines, "switchboard_deliveries_deferred_total")
		p.retries = sumMetric(lines, `switchboard_deliveries_total{outcome="retry_scheduled"}`)
		p.deadLetters = sumMetric(lines, `switchboard_deliveries_total{outcome="dead_lettered"}`)
		rows = append(rows, p)
		fmt.Fprintf(stderr, "bench outage: %v after the last publish: RSS %d MB\n", d, p.rss>>20)
	}
	end := time.Now()
	peak := samples.hwm()
	size := dirSize(filepath.Join(dir, "data"))

	fmt.Fprintf(stdout, "\nSwitchboard bench outage: %s", firstLine(version))
	pub := last.Sub(start)
	receiver := "refuses every connection"
	if c.Healthy {
		receiver = "answers 204 at once (--healthy: no outage)"
	}
	fmt.Fprintf(stdout, "%d events through POST /v1/events from %d keep-alive clients in %.1fs (%.0f/s), to one webhook whose receiver %s (max_retries %d)\n\n",
		c.Events, c.Clients, pub.Seconds(), float64(c.Events)/pub.Seconds(), receiver, c.MaxRetries)
	fmt.Fprintf(stdout, "| time after the last publish | RSS of the process | CPU over the %v before | deferrals | retries scheduled | dead-lettered |\n", c.CPUWindow)
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|")
	for _, p := range rows {
		fmt.Fprintf(stdout, "| %v | %d MB | %.1f%% | %.0f | %.0f | %.0f |\n",
			p.after, p.rss>>20, 100*p.cpu, p.deferred, p.retries, p.deadLetters)
	}
	fmt.Fprintf(stdout, "\npeak RSS (VmHWM) %d MB; CPU %.1fs in the first %.0fs, %.1fs of it while publishing (%.0fs); data folder %d MB\n",
		peak>>20, (samples.cpuAt(end) - cpuAtStart).Seconds(), end.Sub(start).Seconds(), cpuAtLast.Seconds(), pub.Seconds(), size>>20)
	return nil
}

// publish sends c.Events events through the API from c.Clients clients,
// each repeating a request that the API answers 429 or 503 (the registry's
// mirror not yet caught up) until it is accepted.
func (c outageConfig) publish(ctx context.Context, api apiClient, stderr io.Writer) error {
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
				if err := api.postUntilAccepted(ctx, "/v1/events", body); err != nil {
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

// postUntilAccepted posts body to path until the answer is 2xx, waiting a
// little after a 429 or a 503; any other answer is an error.
func (a apiClient) postUntilAccepted(ctx context.Context, path, body string) error {
	for {
		resp, err := a.send(ctx, http.MethodPost, path, strings.NewReader(body))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			return fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
		}
	}
}

// serveProcess is a `switchboard serve` run by the outage bench.
type serveProcess struct {
	cmd     *exec.Cmd
	pid     int
	api     apiClient
	logPath string
	exited  chan struct{}
}

// startServe runs bin serve with its data under dir/data, on a free
// loopback port, with an API key of its default tenant made up here. The
// environment loses every SWITCHBOARD_ variable, so that the process runs
// on its defaults.
func startServe(ctx context.Context, bin, dir string) (*serveProcess, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	var b [16]byte
	rand.Read(b[:])
	key := "sk_outage_" + hex.EncodeToString(b[:])
	logPath := filepath.Join(dir, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--api-key", key, "--allow-private-targets", "--api-rate-limit", "0")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envPrefix+"_") })
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	p := &serveProcess{
		cmd: cmd, pid: cmd.Process.Pid, logPath: logPath, exited: make(chan struct{}),
		api: apiClient{url: "http://" + addr, key: key, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}},
	}
	go func() { cmd.Wait(); close(p.exited) }()
	return p, nil
}

// stop interrupts the process, as an operator's Ctrl-C, and kills it if it
// has not drained within 30 s.
func (p *serveProcess) stop(stderr io.Writer) {
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(stderr, "bench outage: serve did not stop within 30s of SIGINT; killed")
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitReady waits up to a minute for the process's /readyz.
func waitReady(ctx context.Context, p *serveProcess) error {
	deadline := time.After(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.api.url+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := p.api.httpClient().Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-p.exited:
			return fmt.Errorf("serve exited before it was ready; see %s", p.logPath)
		case <-deadline:
			return fmt.Errorf("serve not ready within a minute; see %s", p.logPath)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// receiver returns the URL of the webhook's receiver: a loopback port
// nothing listens on or, with --healthy, a server answering 204, which
// the returned closer (nil otherwise) stops.
func (c outageConfig) receiver() (string, io.Closer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	url := "http://" + l.Addr().String() + "/"
	if !c.Healthy {
		return url, nil, l.Close()
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(l)
	return url, srv, nil
}

// processSamples reads a process's RSS and CPU from /proc every 200 ms.
type processSamples struct {
	pid  int
	mu   sync.Mutex
	at   []time.Time
	cpu  []time.Duration
	last int64 // RSS at the latest sample
	peak int64 // the largest RSS sampled
	done chan struct{}
	wg   sync.WaitGroup
}

func sampleProcess(pid int) *processSamples {
	s := &processSamples{pid: pid, done: make(chan struct{})}
	s.take()
	s.wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.take()
			case <-s.done:
				return
			}
		}
	})
	return s
}

func (s *processSamples) take() {
	cpu, ok := procCPU(s.pid)
	rss := procStatus(s.pid, "VmRSS:")
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.at, s.cpu = append(s.at, time.Now()), append(s.cpu, cpu)
	}
	s.last, s.peak = rss, max(s.peak, rss)
}

func (s *processSamples) stop() { close(s.done); s.wg.Wait() }

func (s *processSamples) rss() int64 { s.take(); s.mu.Lock(); defer s.mu.Unlock(); return s.last }

func (s *processSamples) peakRSS() int64 { s.mu.Lock(); defer s.mu.Unlock(); return s.peak }

// hwm is the process's peak RSS, as the kernel counted it.
func (s *processSamples) hwm() int64 { return procStatus(s.pid, "VmHWM:") }

// cpuAt is the process's CPU time at the last sample at or before t (the
// first sample when t is before it).
func (s *processSamples) cpuAt(t time.Time) time.Duration {
	s.take()
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.at, t, func(a, t time.Time) int { return a.Compare(t) })
	switch {
	case i < len(s.at) && s.at[i].Equal(t):
	case i > 0:
		i--
	}
	if i >= len(s.cpu) {
		return 0
	}
	return s.cpu[i]
}

// procCPU is the user and system CPU time of pid, from /proc/<pid>/stat
// (in USER_HZ, 100 per second on Linux).
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	_, rest, ok := bytes.Cut(b, []byte(") "))
	if !ok {
		return 0, false
	}
	f := strings.Fields(string(rest)) // from field 3 on: utime is field 14, stime 15
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// procStatus is the field of /proc/<pid>/status named key, in bytes (0
// when unreadable).
func procStatus(pid int, key string) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// sumMetric adds up the values of the lines of a /metrics page that start
// with prefix (a name, or a name and its labels).
func sumMetric(lines []string, prefix string) float64 {
	var n float64
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, prefix); ok && rest != "" && (rest[0] == ' ' || rest[0] == '{') {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			n += v
		}
	}
	return n
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	if line == "" {
		return "version unknown\n"
	}
	return line + "\n"
}
