package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/portal"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

func registryCommand(stdout, stderr io.Writer) *ffcli.Command {
	cfg := defaultServeConfig()
	cfg.Roles = roles{Registry: true}
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	cfg.registerFlags(fs)
	return &ffcli.Command{
		Name:       "registry",
		ShortUsage: "switchboard registry --nats-url URL [flags]",
		ShortHelp:  "run the HTTP API and event ingest alone, against an external NATS",
		LongHelp: `Runs the registry: the HTTP API (webhooks, agents, event types), event
ingest (POST /v1/events), the SQLite file under --data-dir and its mirror
into the JetStream KV bucket the workers read, with /metrics, /healthz and
/readyz. It delivers nothing: run 'switchboard worker' processes against the
same --nats-url for that. Workers go on delivering while the registry is
down; only changes to webhooks and HTTP ingest wait for it.

Run one registry per SQLite file. At first start the default tenant gets an
API key, printed once.`,
		FlagSet: fs,
		Exec: func(ctx context.Context, _ []string) error {
			return runSystem(ctx, cfg, "Switchboard registry", stdout, stderr)
		},
	}
}

// startRegistry opens the registry's SQLite file, makes sure the default
// tenant has a key, and mounts the HTTP API (event ingest included) on mux.
// It returns what must run in the background: the KV mirror, the attempt
// log's ingestion with auto-disable (control.AttemptIngester), the
// alerts' publishing (control.Health), the periodic audit
// (control.Auditor) and the backlog's metric (control.BacklogCollector).
func (s *system) startRegistry(ctx context.Context, kv jetstream.KeyValue, reg *prometheus.Registry, mux *http.ServeMux) ([]func(context.Context) error, error) {
	encryptionKey, err := s.cfg.encryptionKey()
	if err != nil {
		return nil, err
	}
	s.db, err = store.Open(filepath.Join(s.cfg.DataDir, "registry.db"))
	if err != nil {
		return nil, err
	}
	s.db.EncryptionKey = encryptionKey
	s.db.Quotas = s.cfg.Quotas
	if err := s.db.CheckEncryptionKey(ctx); err != nil {
		return nil, fmt.Errorf("--encryption-key: %w", err)
	}
	if n, err := s.db.SealSecrets(ctx); err != nil {
		return nil, fmt.Errorf("--encryption-key: %w", err)
	} else if n > 0 {
		s.logger.InfoContext(ctx, "sealed webhook secrets and credentials under --encryption-key (they were plaintext, or sealed under --previous-encryption-key)",
			"webhooks", n)
	}
	if err := s.logDefaultKeyChange(ctx); err != nil {
		return nil, err
	}
	tenant, newKey, err := store.Bootstrap(ctx, s.db, s.cfg.APIKey)
	if err != nil {
		return nil, fmt.Errorf("bootstrap default tenant: %w", err)
	}
	s.Tenant, s.NewKey = tenant.ID, newKey

	guard, _ := s.cfg.guard() // validated with the rest of the config
	reg.MustRegister(control.NewWebhookStatusCollector(s.db, s.logger))
	mirror := control.NewMirror(s.db, kv)
	mirror.Logger = s.logger
	mirror.Adopt = s.cfg.AdoptMirror
	// Before anything is mirrored: a bucket of another database is not
	// this one's to resync.
	if err := mirror.Claim(ctx); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", s.cfg.DataDir, err)
	}
	api := &api.Server{
		DB: s.db, KV: kv, JS: s.js, Logger: s.logger, Metrics: api.NewMetrics(reg), APIRateLimit: s.cfg.APIRateLimit,
		Ingest: &producer.Handler{Client: producer.New(s.js, producer.WithMetrics(producer.NewMetrics(reg))), Logger: s.logger,
			Before: mirror.Settle, Catalogue: s.db},
		Guard:  guard,
		Mirror: mirror,
	}
	mux.Handle("/v1/", api.Handler())
	mux.Handle("GET "+portal.Prefix, portal.Handler())
	mux.Handle("GET /portal", http.RedirectHandler(portal.Prefix, http.StatusMovedPermanently))
	health := control.NewHealth(s.db, producer.New(s.js))
	health.Logger = s.logger
	attempts := &control.AttemptIngester{JS: s.js, DB: s.db, Logger: s.logger, Retention: s.cfg.AttemptRetention,
		BodyRetention: s.cfg.AttemptBodyRetention, MaxBytes: int64(s.cfg.AttemptLogMaxBytes),
		DisableAfter: s.cfg.DisableAfter, Mirror: mirror, Alerts: health}
	auditor := control.NewAuditor(s.db, s.js, reg)
	auditor.Logger = s.logger
	backlog := control.NewBacklogCollector(s.db, s.cfg.BacklogTop, reg)
	backlog.Logger, backlog.Interval = s.logger, s.cfg.BacklogInterval
	return []func(context.Context) error{mirror.Run, health.Run, attempts.Run, auditor.Run, backlog.Run}, nil
}

// logDefaultKeyChange logs, before Bootstrap applies it, that --api-key
// replaces the default tenant's key "default": the old value stops working,
// which is how an operator rotates it (docs/operations.md).
func (s *system) logDefaultKeyChange(ctx context.Context) error {
	if s.cfg.APIKey == "" {
		return nil
	}
	tenant, err := s.db.FindTenantByName(ctx, store.DefaultTenantName)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return nil // a new registry: nothing to replace
	}
	if err != nil {
		return err
	}
	cmp, err := s.db.CompareKey(ctx, tenant.ID, store.DefaultKeyName, s.cfg.APIKey)
	if err != nil {
		return err
	}
	if cmp == store.KeyDifferent {
		s.logger.WarnContext(ctx, "--api-key replaces the default API key; the previous value no longer authenticates",
			"tenant", tenant.ID, "key_name", store.DefaultKeyName)
	}
	return nil
}
