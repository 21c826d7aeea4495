package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// roles says which parts of Switchboard a process runs. Each subcommand
// sets its own; the flags it registers and what it starts follow from it.
type roles struct {
	Registry bool // HTTP API with event ingest, SQLite, KV mirror
	Worker   bool // matcher and deliverer
	Embedded bool // may run NATS in-process (serve); otherwise --nats-url is required
}

// serveConfig is everything `switchboard serve`, `registry` and `worker`
// are told: one struct for every role, whose flags registerFlags declares.
// Tests fill it directly and listen on 127.0.0.1:0.
type serveConfig struct {
	Roles roles // set by the subcommand, not a flag

	Listen              string
	DataDir             string
	NATSURL             string
	NATSListen          string
	NATS                natsAuth // credentials and TLS towards NATS; the embedded server's user
	StreamReplicas      int
	APIKey              string
	Retry               consumer.RetryPolicy
	Workers             int
	MaxAckPending       int
	AckWait             time.Duration
	AllowPrivateTargets bool
	AllowCIDR           []string // ranges the SSRF guard lets through; entries may be comma-separated
	ShutdownTimeout     time.Duration
	LogLevel            string
	LogFormat           string
	APIRateLimit        float64 // requests/s per API key; 0: unlimited
	DisableAfter        int     // consecutive failed deliveries that stop a webhook; 0: never
	// EncryptionKey, base64 of 32 bytes, seals webhook secrets and auth
	// credentials at rest; "" stores them in plaintext.
	EncryptionKey string
	// PreviousEncryptionKey, during a rotation, opens what the key
	// EncryptionKey replaces sealed; the registry seals it all again.
	PreviousEncryptionKey string

	// Isolation of slow and dead receivers (consumer.Deliverer).
	MaxInFlightPerWebhook int // 0: consumer.DefaultMaxInFlightPerWebhook(Workers)
	BreakerFailures       int
	BreakerCooldown       time.Duration
	// AttemptRetention is how long the registry keeps the attempt log; 0
	// keeps it forever.
	AttemptRetention time.Duration
	// AdoptMirror lets the registry take over a KV bucket that another
	// database mirrored into (control.Mirror.Adopt).
	AdoptMirror bool
	// AttemptBodyRetention is how long attempts keep their response body
	// excerpt, AttemptLogMaxBytes the size the attempt log is pruned to,
	// oldest first (control.AttemptIngester); 0 disables either.
	AttemptBodyRetention time.Duration
	AttemptLogMaxBytes   byteSize
	// BacklogTop is how many webhooks switchboard_backlog_deliveries
	// reports (0: none), read every BacklogInterval.
	BacklogTop      int
	BacklogInterval time.Duration
	// Streams are the streams' retention flags (retention.go).
	Streams streamLimits

	// HTTP bounds what clients may hold of the HTTP servers (--listen and
	// --metrics-listen).
	HTTP api.HTTPLimits
	// MetricsListen, when set, serves /metrics there and not on Listen.
	MetricsListen string
	// Quotas bound what each tenant may keep (registry).
	Quotas store.Quotas
}

// defaultServeConfig is the configuration of `serve`: every role, in one
// process.
func defaultServeConfig() serveConfig {
	return serveConfig{
		Roles:           roles{Registry: true, Worker: true, Embedded: true},
		Listen:          "127.0.0.1:8080",
		DataDir:         "./data",
		StreamReplicas:  1,
		Retry:           consumer.DefaultRetryPolicy(),
		Workers:         consumer.DefaultWorkers,
		MaxAckPending:   consumer.DefaultMaxAckPending,
		AckWait:         consumer.DefaultAckWait,
		BreakerFailures: consumer.DefaultBreakerFailures,
		BreakerCooldown: consumer.DefaultBreakerCooldown,
		ShutdownTimeout: 2*time.Minute + 10*time.Second,
		LogLevel:        "info",
		LogFormat:       "auto",
		APIRateLimit:    api.DefaultAPIRateLimit,
		DisableAfter:    control.DefaultDisableAfter,

		AttemptRetention:     control.DefaultAttemptRetention,
		AttemptBodyRetention: control.DefaultAttemptBodyRetention,
		BacklogTop:           control.DefaultBacklogTop,
		BacklogInterval:      control.DefaultBacklogInterval,
		Streams:              defaultStreamLimits(),
		HTTP:                 api.DefaultHTTPLimits(),
		Quotas:               store.DefaultQuotas(),
	}
}

// maxReplicas is JetStream's limit on a stream's replicas.
const maxReplicas = 5

// validate names every unusable setting at once, before anything starts.
// Settings of roles the process does not run are not looked at.
func (c serveConfig) validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("--listen must not be empty"))
	}
	if c.needsDataDir() && c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if !c.Roles.Embedded && c.NATSURL == "" {
		errs = append(errs, errors.New("--nats-url is required: this role runs against an external NATS (use serve for the embedded one)"))
	}
	errs = append(errs, c.NATS.validate(c.NATSURL != "")...)
	if c.StreamReplicas < 1 || c.StreamReplicas > maxReplicas {
		errs = append(errs, fmt.Errorf("--stream-replicas must be 1 to %d, got %d", maxReplicas, c.StreamReplicas))
	}
	if c.Roles.Worker {
		if err := c.Retry.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--retry-*: %w", err))
		}
		if c.Workers < 1 {
			errs = append(errs, fmt.Errorf("--workers must be at least 1, got %d", c.Workers))
		}
		if c.MaxAckPending < 1 {
			errs = append(errs, fmt.Errorf("--max-ack-pending must be at least 1, got %d", c.MaxAckPending))
		}
		if c.AckWait < time.Second {
			errs = append(errs, fmt.Errorf("--ack-wait must be at least 1s, got %v", c.AckWait))
		}
		if c.MaxInFlightPerWebhook < 0 {
			errs = append(errs, fmt.Errorf("--max-in-flight-per-webhook must not be negative, got %d", c.MaxInFlightPerWebhook))
		}
		if c.BreakerFailures < 1 {
			errs = append(errs, fmt.Errorf("--breaker-failures must be at least 1, got %d", c.BreakerFailures))
		}
		if c.BreakerCooldown < time.Second {
			errs = append(errs, fmt.Errorf("--breaker-cooldown must be at least 1s, got %v", c.BreakerCooldown))
		}
	}
	if c.Roles.Registry && c.DisableAfter < 0 {
		errs = append(errs, fmt.Errorf("--disable-after must be 0 (never) or more, got %d", c.DisableAfter))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout must be positive, got %v", c.ShutdownTimeout))
	}
	if c.Roles.Registry && (!(c.APIRateLimit >= 0) || math.IsInf(c.APIRateLimit, 1)) {
		errs = append(errs, fmt.Errorf("--api-rate-limit must be 0 (unlimited) or a positive number of requests/s, got %v", c.APIRateLimit))
	}
	if c.Roles.Registry && c.AttemptRetention < 0 {
		errs = append(errs, fmt.Errorf("--attempt-retention must be 0 (keep forever) or positive, got %v", c.AttemptRetention))
	}
	if c.Roles.Registry && c.AttemptBodyRetention < 0 {
		errs = append(errs, fmt.Errorf("--attempt-body-retention must be 0 (as long as the attempt) or positive, got %v", c.AttemptBodyRetention))
	}
	if c.Roles.Registry && (c.BacklogTop < 0 || c.BacklogTop > store.MaxBacklogLimit) {
		errs = append(errs, fmt.Errorf("--backlog-top must be 0 (none) to %d, got %d", store.MaxBacklogLimit, c.BacklogTop))
	}
	if c.Roles.Registry && c.BacklogInterval < time.Second {
		errs = append(errs, fmt.Errorf("--backlog-interval must be at least 1s, got %v", c.BacklogInterval))
	}
	errs = append(errs, c.Streams.validate()...)
	if _, err := c.encryptionKey(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.guard(); err != nil {
		errs = append(errs, err)
	}
	if err := c.HTTP.Validate("--http-"); err != nil {
		errs = append(errs, err)
	}
	if c.Roles.Registry {
		if err := c.Quotas.Validate("--max-"); err != nil {
			errs = append(errs, err)
		}
	}
	if _, port, _ := net.SplitHostPort(c.Listen); c.MetricsListen != "" && c.MetricsListen == c.Listen && port != "0" {
		errs = append(errs, errors.New("--metrics-listen must differ from --listen (leave it empty to serve /metrics on --listen)"))
	}
	return errors.Join(errs...)
}

// needsDataDir reports whether anything is kept on local disk: the
// registry's SQLite file, or the embedded JetStream's store.
func (c serveConfig) needsDataDir() bool {
	return c.Roles.Registry || c.Roles.Embedded && c.NATSURL == ""
}

// registerFlags declares the flags of the roles c runs, bound to c's fields
// with c's values as defaults. It is the one place where the flags of
// serve, registry and worker are declared: a flag that applies to a role
// goes under that role's condition.
func (c *serveConfig) registerFlags(fs *flag.FlagSet) {
	r := c.Roles
	if r.Registry {
		fs.StringVar(&c.Listen, "listen", c.Listen, "address of the HTTP API, /metrics, /healthz and /readyz")
	} else {
		fs.StringVar(&c.Listen, "listen", c.Listen, "address of /metrics, /healthz and /readyz")
	}
	if r.Registry && r.Embedded {
		fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "folder for the registry's SQLite file and the embedded JetStream's store")
	} else if r.Registry {
		fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "folder for the registry's SQLite file")
	}
	if r.Embedded {
		registerNATSFlags(fs, &c.NATSURL)
		fs.StringVar(&c.NATSListen, "nats-listen", c.NATSListen, "also let other processes reach the embedded NATS at this address (e.g. 127.0.0.1:4222); empty keeps it in-process")
	} else {
		fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "NATS (>= 2.12, JetStream enabled) to run against, e.g. nats://n1:4222,nats://n2:4222 (required)")
	}
	registerNATSAuthFlags(fs, &c.NATS, r.Embedded)
	fs.IntVar(&c.StreamReplicas, "stream-replicas", c.StreamReplicas, "replicas of the streams and KV bucket this process creates: 3 on a NATS cluster; every process must give the same")
	c.Streams.register(fs)
	if r.Registry {
		fs.StringVar(&c.APIKey, "api-key", c.APIKey, "API key of the default tenant, for automation; when empty one is generated at first start and printed once")
		registerAPIRateLimitFlag(fs, &c.APIRateLimit)
		fs.IntVar(&c.DisableAfter, "disable-after", c.DisableAfter, "stop a webhook (status too_many_errors) after this many consecutive failed deliveries, retries spent; a 410 Gone stops it at once; 0 never stops one")
		fs.DurationVar(&c.AttemptRetention, "attempt-retention", c.AttemptRetention, "how long the attempt log (GET /v1/webhooks/{id}/attempts) keeps each attempt; older ones are pruned hourly; 0 keeps them forever")
		fs.BoolVar(&c.AdoptMirror, "adopt-mirror", c.AdoptMirror, "take over a KV bucket of webhooks that another registry database mirrored into, making it match this one (webhooks only the other has stop being delivered); without it the registry refuses to start on such a bucket")
		fs.DurationVar(&c.AttemptBodyRetention, "attempt-body-retention", c.AttemptBodyRetention, "how long an attempt keeps the excerpt of the receiver's response body, the largest part of it; then it is cleared, the rest kept; 0 keeps it as long as the attempt")
		fs.Var(&c.AttemptLogMaxBytes, "attempt-log-max-bytes", "prune the oldest attempts hourly while registry.db's pages in use exceed this, e.g. 4GiB (keep it below the volume's size); 0 none")
		fs.IntVar(&c.BacklogTop, "backlog-top", c.BacklogTop, "webhooks with the most deliveries not yet settled that switchboard_backlog_deliveries reports, a series each (GET /v1/backlog lists more); 0 reports none")
		fs.DurationVar(&c.BacklogInterval, "backlog-interval", c.BacklogInterval, "how often the registry reads the backlog of the --backlog-top webhooks for switchboard_backlog_deliveries")
	}
	if r.Worker {
		fs.DurationVar(&c.Retry.InitialInterval, "retry-initial-interval", c.Retry.InitialInterval, "delay before the first retry of a failed delivery")
		fs.DurationVar(&c.Retry.MaxInterval, "retry-max-interval", c.Retry.MaxInterval, "longest delay between two attempts")
		fs.Float64Var(&c.Retry.Multiplier, "retry-multiplier", c.Retry.Multiplier, "factor by which the delay grows after each failed attempt (with random jitter)")
		fs.IntVar(&c.Workers, "workers", c.Workers, "deliveries in flight at once in this process")
		fs.IntVar(&c.MaxAckPending, "max-ack-pending", c.MaxAckPending, "deliveries all workers together may hold unacknowledged")
		fs.IntVar(&c.MaxInFlightPerWebhook, "max-in-flight-per-webhook", c.MaxInFlightPerWebhook, "deliveries in flight at once to one webhook in this process, so a slow receiver holds a bounded share of --workers; 0 means a quarter of --workers")
		fs.IntVar(&c.BreakerFailures, "breaker-failures", c.BreakerFailures, "consecutive timeouts, slow (>= 1s) failures or refused connections that open a webhook's circuit breaker (quick 5xx/429 answers never do); while it is open, a delivery that comes due is not sent and counts as a failed attempt")
		fs.DurationVar(&c.BreakerCooldown, "breaker-cooldown", c.BreakerCooldown, "how long an open circuit breaker waits before letting one probe delivery through")
		fs.DurationVar(&c.AckWait, "ack-wait", c.AckWait, "how long a delivery may stay unacknowledged before JetStream hands it to another worker (after a worker died); keep it above the longest webhook timeout, the same in every worker")
	}
	if r.Registry || r.Worker {
		fs.StringVar(&c.EncryptionKey, "encryption-key", c.EncryptionKey, "encrypt webhook secrets and auth credentials at rest (AES-256-GCM) with this key: base64 of 32 bytes, e.g. from \"openssl rand -base64 32\"; keep it: what it sealed cannot be read without it; every registry and worker needs the same. Prefer the environment variable, which ps does not show")
		fs.StringVar(&c.PreviousEncryptionKey, "previous-encryption-key", c.PreviousEncryptionKey, "during a rotation of --encryption-key, the key it replaces: values sealed under it are still read, and the registry seals them again under --encryption-key at start (docs/operations.md)")
		fs.BoolVar(&c.AllowPrivateTargets, "allow-private-targets", c.AllowPrivateTargets, "turn the SSRF guard off: let deliveries and test sends reach loopback, private, link-local and metadata addresses (for development)")
		fs.Var((*listFlag)(&c.AllowCIDR), "allow-cidr", "let deliveries and test sends reach this range despite the SSRF guard, e.g. 10.20.0.0/16 (repeatable; comma-separated in the environment variable)")
	}
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long SIGTERM waits for in-flight deliveries before closing")
	registerLogFlags(fs, &c.LogLevel, &c.LogFormat)
	registerHTTPFlags(fs, &c.HTTP, &c.MetricsListen)
	if r.Registry {
		registerQuotaFlags(fs, &c.Quotas)
	}
}

// registerQuotaFlags registers the per-tenant quotas of the registry.
func registerQuotaFlags(fs *flag.FlagSet, q *store.Quotas) {
	fs.IntVar(&q.WebhooksPerTenant, "max-webhooks-per-tenant", q.WebhooksPerTenant, "webhooks one tenant may have; one more is refused (422); 0 = no bound")
	fs.IntVar(&q.AgentsPerTenant, "max-agents-per-tenant", q.AgentsPerTenant, "agents one tenant may have; one more is refused (422); 0 = no bound")
	fs.IntVar(&q.EventTypesPerTenant, "max-event-types-per-tenant", q.EventTypesPerTenant, "event types of its own one tenant may add to the catalogue; one more is refused (422); 0 = no bound")
	fs.IntVar(&q.HeadersPerWebhook, "max-headers-per-webhook", q.HeadersPerWebhook, fmt.Sprintf("custom headers one webhook may have, at most %d; more are refused (422); 0 = %d", store.MaxHeaders, store.MaxHeaders))
}

// registerHTTPFlags registers the limits of the HTTP servers and the
// address of /metrics, which every role serves.
func registerHTTPFlags(fs *flag.FlagSet, l *api.HTTPLimits, metricsListen *string) {
	fs.StringVar(metricsListen, "metrics-listen", *metricsListen, "serve /metrics (with /healthz and /readyz) on this address of its own, e.g. 127.0.0.1:9090, and not on --listen, so that it need not face the clients of the API; empty serves it on --listen")
	fs.DurationVar(&l.ReadHeaderTimeout, "http-read-header-timeout", l.ReadHeaderTimeout, "how long a client may take to send a request's header")
	fs.DurationVar(&l.ReadTimeout, "http-read-timeout", l.ReadTimeout, "how long a client may take to send a whole request, body included")
	fs.DurationVar(&l.WriteTimeout, "http-write-timeout", l.WriteTimeout, "how long a request may take from the end of its header to the end of its answer (a test send waits for its webhook's timeout instead)")
	fs.DurationVar(&l.IdleTimeout, "http-idle-timeout", l.IdleTimeout, "how long an idle keep-alive connection is kept open")
	fs.IntVar(&l.MaxConns, "http-max-conns", l.MaxConns, "connections the HTTP server keeps open at once; more wait to be accepted; 0 = no bound")
	fs.IntVar(&l.MaxConnsPerClient, "http-max-conns-per-client", l.MaxConnsPerClient, "connections one client (remote IP address) may hold open; more are closed at once; 0 = no bound (the default: behind a proxy every client is the proxy)")
}

// encryptionKey returns the parsed --encryption-key, nil when none is set.
func (c serveConfig) encryptionKey() (*sealed.Key, error) {
	if c.EncryptionKey == "" {
		if c.PreviousEncryptionKey != "" {
			return nil, errors.New("--previous-encryption-key needs --encryption-key, the key that replaces it")
		}
		return nil, nil
	}
	k, err := sealed.ParseKey(c.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("--encryption-key: %w", err)
	}
	if c.PreviousEncryptionKey == "" {
		return k, nil
	}
	prev, err := sealed.ParseKey(c.PreviousEncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("--previous-encryption-key: %w", err)
	}
	return k.WithPrevious(prev), nil
}

// guard is the SSRF guard of deliveries and test sends.
func (c serveConfig) guard() (*netguard.Guard, error) {
	allowed, err := netguard.ParsePrefixes(c.AllowCIDR)
	if err != nil {
		return nil, fmt.Errorf("--allow-cidr: %w", err)
	}
	return netguard.New(c.AllowPrivateTargets, allowed...), nil
}

// listFlag is a repeatable flag: each use adds a value.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// registerNATSFlags registers the flags every subcommand that talks to
// JetStream shares.
func registerNATSFlags(fs *flag.FlagSet, natsURL *string) {
	fs.StringVar(natsURL, "nats-url", *natsURL, "external NATS (>= 2.12, JetStream enabled) to use instead of the embedded server, e.g. nats://n1:4222,nats://n2:4222")
}

// registerAPIRateLimitFlag registers the flag of every subcommand that
// serves the registry API.
func registerAPIRateLimitFlag(fs *flag.FlagSet, perSecond *float64) {
	fs.Float64Var(perSecond, "api-rate-limit", *perSecond, "requests per second each API key may make to /v1 (ingest included), with bursts of up to twice that; beyond it: 429 with Retry-After; 0 = unlimited")
}

func registerLogFlags(fs *flag.FlagSet, level, format *string) {
	fs.StringVar(level, "log-level", *level, "debug, info, warn or error")
	fs.StringVar(format, "log-format", *format, "auto (text on a terminal, JSON otherwise), text or json")
}
