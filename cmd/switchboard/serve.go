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
	"path/filepath"
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
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry"
)

// serveConfig is everything `switchboard serve` is told. Tests fill it
// directly and listen on 127.0.0.1:0.
type serveConfig struct {
	Listen              string
	DataDir             string
	NATSURL             string
	NATSListen          string
	APIKey              string
	Retry               consumer.RetryPolicy
	Workers             int
	MaxAckPending       int
	AllowPrivateTargets bool
	ShutdownTimeout     time.Duration
	LogLevel            string
	LogFormat           string
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		Listen:          "127.0.0.1:8080",
		DataDir:         "./data",
		Retry:           consumer.DefaultRetryPolicy(),
		Workers:         consumer.DefaultWorkers,
		MaxAckPending:   consumer.DefaultMaxAckPending,
		ShutdownTimeout: 2*time.Minute + 10*time.Second,
		LogLevel:        "info",
		LogFormat:       "auto",
	}
}

// validate names every unusable setting at once, before anything starts.
func (c serveConfig) validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("--listen must not be empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if err := c.Retry.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--retry-*: %w", err))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("--workers must be at least 1, got %d", c.Workers))
	}
	if c.MaxAckPending < 1 {
		errs = append(errs, fmt.Errorf("--max-ack-pending must be at least 1, got %d", c.MaxAckPending))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout must be positive, got %v", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

// registerNATSFlags registers the flags every subcommand that talks to
// JetStream shares.
func registerNATSFlags(fs *flag.FlagSet, natsURL *string) {
	fs.StringVar(natsURL, "nats-url", *natsURL, "external NATS (>= 2.12, JetStream enabled) to use instead of the embedded server, e.g. nats://n1:4222,nats://n2:4222")
}

func registerLogFlags(fs *flag.FlagSet, level, format *string) {
	fs.StringVar(level, "log-level", *level, "debug, info, warn or error")
	fs.StringVar(format, "log-format", *format, "auto (text on a terminal, JSON otherwise), text or json")
}

func serveCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultServeConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of the HTTP API, /metrics, /healthz and /readyz")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder for the registry's SQLite file and the embedded JetStream's store")
	registerNATSFlags(fs, &cfg.NATSURL)
	fs.StringVar(&cfg.NATSListen, "nats-listen", cfg.NATSListen, "also let other processes reach the embedded NATS at this address (e.g. 127.0.0.1:4222); empty keeps it in-process")
	fs.StringVar(&cfg.APIKey, "api-key", cfg.APIKey, "API key of the default tenant, for automation; when empty one is generated at first start and printed once")
	fs.DurationVar(&cfg.Retry.InitialInterval, "retry-initial-interval", cfg.Retry.InitialInterval, "delay before the first retry of a failed delivery")
	fs.DurationVar(&cfg.Retry.MaxInterval, "retry-max-interval", cfg.Retry.MaxInterval, "longest delay between two attempts")
	fs.Float64Var(&cfg.Retry.Multiplier, "retry-multiplier", cfg.Retry.Multiplier, "factor by which the delay grows after each failed attempt (with random jitter)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "deliveries in flight at once in this process")
	fs.IntVar(&cfg.MaxAckPending, "max-ack-pending", cfg.MaxAckPending, "deliveries a worker may hold unacknowledged")
	fs.BoolVar(&cfg.AllowPrivateTargets, "allow-private-targets", cfg.AllowPrivateTargets, "allow deliveries to loopback and private addresses (for development; the SSRF guard it switches off is not enforced yet)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long SIGTERM waits for in-flight deliveries before closing")
	registerLogFlags(fs, &cfg.LogLevel, &cfg.LogFormat)
	return &ffcli.Command{
		Name:       "serve",
		ShortUsage: "switchboard serve [flags]",
		ShortHelp:  "run every role in one process on an embedded JetStream",
		LongHelp: `Runs the registry API, event ingest, matcher, deliverer and /metrics in one
process. JetStream runs embedded with its files under --data-dir/nats, the
registry in --data-dir/registry.db; with --nats-url an external NATS cluster
is used instead.

At first start the default tenant gets an API key, printed once. SIGINT or
SIGTERM stops intake, lets in-flight deliveries finish, then closes.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, _ []string) error {
			logger, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return err
			}
			sys, err := startSystem(ctx, cfg, logger)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Switchboard is running.\n  API:     %s\n  Metrics: %s/metrics\n", sys.URL, sys.URL)
			if sys.NewKey != "" {
				fmt.Fprintf(stdout, "  API key: %s\n  (shown once; keep it: it is stored hashed)\n", sys.NewKey)
			}
			err = sys.Wait(ctx)
			if cerr := sys.Close(); err == nil {
				err = cerr
			}
			return err
		},
	}
}

// system is a running `serve`: every role, and what it owns.
type system struct {
	URL    string // base URL of the HTTP API
	NewKey string // the API key generated at this start, if any
	Tenant string // id of the default tenant

	cfg    serveConfig
	logger *slog.Logger
	ns     *natsembed.Server
	nc     *nats.Conn
	closed chan struct{} // closed once nc is
	js     jetstream.JetStream
	index  *consumer.Index
	db     *registry.DB
	http   *http.Server
	group  *errgroup.Group
	cancel context.CancelFunc // stops the background roles
}

// startSystem starts every role and returns once the HTTP API listens.
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
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
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
	if err := streams.Setup(setupCtx, js, streams.DefaultConfig()); err != nil {
		return nil, err
	}
	kv, err := streams.OpenWebhooksKV(setupCtx, js)
	if err != nil {
		return nil, err
	}

	s.db, err = registry.Open(filepath.Join(cfg.DataDir, "registry.db"))
	if err != nil {
		return nil, err
	}
	tenant, newKey, err := registry.Bootstrap(setupCtx, s.db, cfg.APIKey)
	if err != nil {
		return nil, fmt.Errorf("bootstrap default tenant: %w", err)
	}
	s.Tenant, s.NewKey = tenant.ID, newKey

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(consumer.NewLagCollector(js, logger), registry.NewWebhookStatusCollector(s.db, logger))

	index := &consumer.Index{KV: kv, Logger: logger}
	s.index = index
	matcher := &consumer.Matcher{JS: js, Index: index, Logger: logger, Metrics: consumer.NewMetrics(reg)}
	deliverer := &consumer.Deliverer{
		JS: js, Index: index, Logger: logger, Metrics: matcher.Metrics,
		Retry: cfg.Retry, Workers: cfg.Workers, MaxAckPending: cfg.MaxAckPending,
	}
	mirror := registry.NewMirror(s.db, kv)
	mirror.Logger = logger
	api := &registry.Server{
		DB: s.db, KV: kv, Logger: logger, Metrics: registry.NewMetrics(reg),
		Ingest: &producer.Handler{Client: producer.New(js, producer.WithMetrics(producer.NewMetrics(reg))), Logger: logger},
	}

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	g, gctx := errgroup.WithContext(bg)
	s.group = g
	g.Go(func() error { return index.Run(gctx) })
	g.Go(func() error { return mirror.Run(gctx) })
	g.Go(func() error { return matcher.Run(gctx) })
	g.Go(func() error { return deliverer.Run(gctx) })

	mux := http.NewServeMux()
	mux.Handle("/v1/", api.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	s.URL = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	g.Go(func() error {
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	// A role that fails cancels gctx: stop serving too, so that Wait
	// reports the failure now rather than at the next signal.
	g.Go(func() error {
		<-gctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.http.Shutdown(shutdown)
	})
	logger.Info("switchboard serving", "api", s.URL, "data_dir", cfg.DataDir, "nats", s.natsDescription())
	return s, nil
}

func (s *system) connectNATS() error {
	s.closed = make(chan struct{})
	opts := []nats.Option{
		nats.Name("switchboard serve"),
		nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(s.closed) }),
		// Without it the client's async errors go unseen, among them a
		// subscription that overflowed its pending limits and dropped
		// messages (nats.ErrSlowConsumer).
		nats.ErrorHandler(s.natsAsyncError),
	}
	if s.cfg.NATSURL != "" {
		nc, err := nats.Connect(s.cfg.NATSURL, opts...)
		if err != nil {
			return fmt.Errorf("connect to NATS %s: %w", s.cfg.NATSURL, err)
		}
		s.nc = nc
		return nil
	}
	ns, err := natsembed.Start(natsembed.Config{
		StoreDir:   filepath.Join(s.cfg.DataDir, "nats"),
		Listen:     s.cfg.NATSListen,
		ServerName: "switchboard",
	})
	if err != nil {
		return err
	}
	s.ns = ns
	nc, err := ns.Connect(opts...)
	if err != nil {
		return err
	}
	s.nc = nc
	return nil
}

// natsAsyncError logs an error the NATS client reports asynchronously: a
// slow consumer (messages dropped), a permissions violation, a protocol
// error.
func (s *system) natsAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	attrs := []any{"err", err}
	if sub != nil {
		attrs = append(attrs, "subject", sub.Subject)
		if dropped, derr := sub.Dropped(); derr == nil && dropped > 0 {
			attrs = append(attrs, "dropped", dropped)
		}
	}
	s.logger.Error("nats async error", attrs...)
}

func (s *system) natsDescription() string {
	if s.cfg.NATSURL != "" {
		return s.cfg.NATSURL
	}
	if u := s.ns.ClientURL(); u != "" {
		return "embedded, listening on " + u
	}
	return "embedded"
}

// ready reports whether the workers hold the webhook index and NATS is
// connected: what /readyz answers.
func (s *system) ready() bool {
	return s.index.Ready() && s.nc.Status() == nats.CONNECTED
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
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, s.http.Shutdown(ctx))
		cancel()
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
