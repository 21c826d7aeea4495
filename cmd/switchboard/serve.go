package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/natsembed"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/store"
)

func serveCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultServeConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.registerFlags(fs)
	return &ffcli.Command{
		Name:       "serve",
		ShortUsage: "switchboard serve [flags]",
		ShortHelp:  "run every role in one process on an embedded JetStream",
		LongHelp: `Runs the registry API, event ingest, matcher, deliverer and /metrics in one
process. JetStream runs embedded with its files under --data-dir/nats, the
registry in --data-dir/registry.db; with --nats-url an external NATS cluster
is used instead. To run the registry and the workers as separate processes,
see 'switchboard registry' and 'switchboard worker'.

At first start the default tenant gets an API key, printed once. SIGINT or
SIGTERM stops intake, lets in-flight deliveries finish, then closes.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, _ []string) error {
			return runSystem(ctx, cfg, "Switchboard", stdout, stderr)
		},
	}
}

// runSystem is what serve, registry and worker do: start the roles cfg
// names, say where they listen, run until ctx is done (a signal) or a role
// fails, then close.
func runSystem(ctx context.Context, cfg serveConfig, title string, stdout, stderr io.Writer) error {
	logger, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	sys, err := startSystem(ctx, cfg, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is running.\n", title)
	if cfg.Roles.Registry {
		fmt.Fprintf(stdout, "  API:     %s\n", sys.URL)
	}
	fmt.Fprintf(stdout, "  Metrics: %s/metrics\n", sys.MetricsURL)
	if sys.NewKey != "" {
		fmt.Fprintf(stdout, "  API key: %s\n  (shown once; keep it: it is stored hashed)\n", sys.NewKey)
	}
	sys.printNATSListen(stdout)
	err = sys.Wait(ctx)
	if cerr := sys.Close(); err == nil {
		err = cerr
	}
	return err
}

// system is a running serve, registry or worker: its roles, and what they
// own.
type system struct {
	URL    string // base URL of the HTTP API (registry) or of /metrics alone (worker)
	NewKey string // the API key generated at this start, if any (registry)
	Tenant string // id of the default tenant (registry)

	cfg    serveConfig
	logger *slog.Logger
	ns     *natsembed.Server
	nc     *nats.Conn
	closed chan struct{} // closed once nc is
	js     jetstream.JetStream
	index  *consumer.Index // nil without the worker role
	db     *store.DB       // nil without the registry role
	http   *http.Server
	group  *errgroup.Group
	cancel context.CancelFunc // stops the background roles

	// MetricsURL is the base URL of /metrics: URL, or that of
	// --metrics-listen, which metricsHTTP serves (nil without it).
	MetricsURL  string
	metricsHTTP *http.Server
}

// startSystem starts the roles cfg.Roles names and returns once the HTTP
// server listens. Each role is started in one place: startRegistry
// (registry.go) and startWorker (worker.go).
func startSystem(ctx context.Context, cfg serveConfig, logger *slog.Logger) (_ *system, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &system{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if cfg.needsDataDir() {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil { // the registry and JetStream: the owner's only
			return nil, fmt.Errorf("create data dir: %w", err)
		}
	}
	if err := s.connectNATS(); err != nil {
		return nil, err
	}
	// Without a timeout, an async publish whose ack is lost holds its
	// pending slot forever.
	js, err := jetstream.New(s.nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	// Every role sets the streams up, so that a worker started before the
	// registry (or alone, while it is down) finds them.
	if err := setupStreams(setupCtx, js, cfg.Streams.config(cfg.StreamReplicas), !cfg.Roles.Registry, logger); err != nil {
		return nil, err
	}
	kv, err := streams.OpenWebhooksKV(setupCtx, js)
	if err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	var runs []func(context.Context) error
	if cfg.Roles.Worker {
		runs = append(runs, s.startWorker(kv, reg)...)
	}
	if cfg.Roles.Registry {
		r, err := s.startRegistry(setupCtx, kv, reg, mux)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r...)
	}

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	g, gctx := errgroup.WithContext(bg)
	s.group = g
	for _, run := range runs {
		g.Go(func() error { return run(gctx) })
	}

	s.registerOpsMetrics(reg)
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	s.probes(mux)
	if cfg.MetricsListen == "" {
		mux.Handle("GET /metrics", metrics)
	}
	if err := s.listen(g, gctx, mux, metrics); err != nil {
		return nil, err
	}
	logger.Info("switchboard serving", "roles", cfg.Roles.String(), "url", s.URL, "nats", s.natsDescription())
	return s, nil
}

// probes serves /healthz and /readyz on mux.
func (s *system) probes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
}

// listen opens --listen, and --metrics-listen when set, and serves mux and
// metrics on them in g.
func (s *system) listen(g *errgroup.Group, gctx context.Context, mux *http.ServeMux, metrics http.Handler) error {
	cfg := s.cfg
	errorLog := slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	s.URL = "http://" + ln.Addr().String()
	s.MetricsURL = s.URL
	s.http = cfg.HTTP.Server(mux, errorLog)
	s.serveHTTP(g, gctx, s.http, cfg.HTTP.Listener(ln))
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("listen %s (--metrics-listen): %w", cfg.MetricsListen, err)
		}
		s.MetricsURL = "http://" + mln.Addr().String()
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", metrics)
		s.probes(mmux)
		s.metricsHTTP = cfg.HTTP.Server(mmux, errorLog)
		s.serveHTTP(g, gctx, s.metricsHTTP, cfg.HTTP.Listener(mln))
	}
	return nil
}

// serveHTTP serves srv on ln in g until gctx is done: a role that fails
// cancels gctx, so serving stops too, and Wait reports the failure now
// rather than at the next signal.
func (s *system) serveHTTP(g *errgroup.Group, gctx context.Context, srv *http.Server, ln net.Listener) {
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http %s: %w", ln.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	})
}

// String names the roles for logs: "registry+worker", "worker".
func (r roles) String() string {
	var names []string
	if r.Registry {
		names = append(names, "registry")
	}
	if r.Worker {
		names = append(names, "worker")
	}
	return strings.Join(names, "+")
}

// ready reports whether NATS is connected and, with the worker role, the
// workers hold the webhook index: what /readyz answers.
func (s *system) ready() bool {
	return (s.index == nil || s.index.Ready()) && s.nc.Status() == nats.CONNECTED
}

// waitForWebhooks waits until this process's workers know every webhook in
// ids, so that events published next are matched to them.
func (s *system) waitForWebhooks(ctx context.Context, ids []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, id := range ids {
		for !s.index.Has(id) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("webhook %s did not reach the workers: %w", id, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// Wait blocks until ctx is cancelled (a signal) or a role fails.
func (s *system) Wait(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.group.Wait() }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		return err
	}
}

// Close stops intake, drains in-flight deliveries, then closes NATS and
// SQLite, in that order. It is safe on a partly started system.
func (s *system) Close() error {
	var errs []error
	for _, srv := range []*http.Server{s.http, s.metricsHTTP} {
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			errs = append(errs, srv.Shutdown(ctx))
			cancel()
		}
	}
	if s.cancel != nil {
		s.logger.Info("draining in-flight deliveries")
		s.cancel()
		done := make(chan error, 1)
		go func() { done <- s.group.Wait() }()
		select {
		case err := <-done:
			errs = append(errs, err)
		case <-time.After(s.cfg.ShutdownTimeout):
			errs = append(errs, errors.New("shutdown timed out with deliveries in flight; they will be redelivered"))
		}
	}
	if s.nc != nil {
		errs = append(errs, s.nc.Drain())
		<-s.closed
	}
	if s.ns != nil {
		s.ns.Shutdown()
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	s.logger.Info("switchboard stopped")
	return errors.Join(errs...)
}
