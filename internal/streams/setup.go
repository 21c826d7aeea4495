package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config sets what Setup creates.
type Config struct {
	// Replicas of every stream and bucket: 1 for the embedded server, 3 in
	// a production cluster.
	Replicas int
	// EventsMaxAge is how long accepted events are kept for replay.
	EventsMaxAge time.Duration
	// DeadMaxAge is how long dead letters are kept.
	DeadMaxAge time.Duration
	// AttemptsMaxAge is how long attempt records wait in their stream for
	// the registry to read them (it keeps its own copy).
	AttemptsMaxAge time.Duration
	// EventsMaxBytes, DeadMaxBytes and AttemptsMaxBytes bound the size of
	// each stream; the oldest messages go first. 0 is unlimited.
	EventsMaxBytes, DeadMaxBytes, AttemptsMaxBytes int64
	// ShrinkLimits lets Setup lower an age or size limit that an existing
	// stream has above the one asked for (an operator raised it, or
	// another process asks for more). Without it the larger limit stays,
	// so that a process started with the defaults never undoes a longer
	// retention, and Setup reports it.
	ShrinkLimits bool
	// Logger, when set, hears every limit Setup changes or keeps.
	Logger *slog.Logger
	// CreateOnly makes Setup create what is missing and leave what exists
	// as it is, for workers: their NATS user may create Switchboard's
	// streams but not change them (deploy/nats/auth.conf); the registry
	// keeps them up to date.
	CreateOnly bool
}

// DefaultConfig is what `switchboard serve` uses unless told otherwise.
func DefaultConfig() Config {
	return Config{Replicas: 1, EventsMaxAge: 7 * 24 * time.Hour, DeadMaxAge: 30 * 24 * time.Hour, AttemptsMaxAge: 7 * 24 * time.Hour}
}

// ReplicasError is returned by Setup and WebhooksKV when a stream (or the
// bucket's stream) exists with other replicas than asked: processes started
// with different settings, which would otherwise undo each other's
// configuration at every start.
type ReplicasError struct {
	Stream string
	Have   int // replicas of the existing stream
	Want   int // replicas asked for
}

func (e *ReplicasError) Error() string {
	return fmt.Sprintf("stream %s has %d replicas, not %d", e.Stream, e.Have, e.Want)
}

// checkReplicas returns a *ReplicasError when stream exists with other
// replicas than want, nil when it matches or does not exist yet.
func checkReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) error {
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", stream, err)
	}
	if have := s.CachedInfo().Config.Replicas; have != want {
		return &ReplicasError{Stream: stream, Have: have, Want: want}
	}
	return nil
}

// maxBytes is JetStream's MaxBytes for a limit of n bytes, 0 meaning none.
func maxBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// applyLimits compares the age and size limits of sc with those of the
// stream already there, if any: a larger existing limit (0 or -1:
// unlimited) is kept in sc unless cfg.ShrinkLimits, and every difference
// is logged, so that no limit changes silently. It returns the existing
// stream's configuration, nil when there is none.
func applyLimits(ctx context.Context, js jetstream.JetStream, sc *jetstream.StreamConfig, cfg Config) (*jetstream.StreamConfig, error) {
	s, err := js.Stream(ctx, sc.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", sc.Name, err)
	}
	have := s.CachedInfo().Config
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// unlimited is larger than any limit.
	larger := func(a, b int64) bool { return a <= 0 && b > 0 || a > 0 && b > 0 && a > b }
	for _, l := range []struct {
		name       string
		have, want int64
		set        func(int64)
		show       func(int64) string
	}{
		{"max_age", int64(have.MaxAge), int64(sc.MaxAge), func(v int64) { sc.MaxAge = time.Duration(v) }, showAge},
		{"max_bytes", have.MaxBytes, sc.MaxBytes, func(v int64) { sc.MaxBytes = v }, showBytes},
	} {
		switch {
		case l.show(l.have) == l.show(l.want):
		case larger(l.have, l.want) && !cfg.ShrinkLimits:
			l.set(l.have)
			log.Warn("stream limit kept: larger than asked; lower it with the shrink flag", "stream", sc.Name,
				"limit", l.name, "kept", l.show(l.have), "asked", l.show(l.want))
		default:
			log.Info("stream limit changed", "stream", sc.Name, "limit", l.name, "from", l.show(l.have), "to", l.show(l.want))
		}
	}
	return &have, nil
}

func showAge(ns int64) string {
	if ns <= 0 {
		return "unlimited"
	}
	return time.Duration(ns).String()
}

func showBytes(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Setup creates the streams and the KV bucket, or updates them to cfg. It is
// idempotent and safe to run from every process at start, concurrently
// too. It changes no stream's replicas: when one exists with other replicas
// than cfg.Replicas it returns a *ReplicasError and leaves the rest alone.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	for _, sc := range []jetstream.StreamConfig{
		{
			Name:        Events,
			Description: "Switchboard: accepted events",
			Subjects:    []string{EventsPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      cfg.EventsMaxAge,
			MaxBytes:    maxBytes(cfg.EventsMaxBytes),
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:              Deliveries,
			Description:       "Switchboard: deliveries to make, and scheduled retries",
			Subjects:          []string{DeliveriesPrefix + ">", ReplayPrefix + ">", RetryPrefix + ">"},
			Retention:         jetstream.WorkQueuePolicy,
			Storage:           jetstream.FileStorage,
			Replicas:          cfg.Replicas,
			Duplicates:        2 * time.Minute,
			AllowMsgSchedules: true,
		},
		{
			Name:        Dead,
			Description: "Switchboard: dead-lettered deliveries",
			Subjects:    []string{DeadPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      cfg.DeadMaxAge,
			MaxBytes:    maxBytes(cfg.DeadMaxBytes),
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Duplicates:  2 * time.Minute,
		},
		{
			Name:        Attempts,
			Description: "Switchboard: delivery attempts, read by the registry",
			Subjects:    []string{AttemptsPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      cfg.AttemptsMaxAge,
			MaxBytes:    maxBytes(cfg.AttemptsMaxBytes),
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Duplicates:  2 * time.Minute,
		},
	} {
		if err := setupStream(ctx, js, sc, cfg); err != nil {
			return err
		}
	}
	if cfg.CreateOnly {
		if err := checkReplicas(ctx, js, "KV_"+WebhooksBucket, cfg.Replicas); err != nil {
			return err
		}
		if _, err := js.CreateKeyValue(ctx, webhooksKVConfig(cfg.Replicas)); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("set up kv %s: %w", WebhooksBucket, err)
		}
		return nil
	}
	if _, err := WebhooksKV(ctx, js, cfg.Replicas); err != nil {
		return err
	}
	return nil
}

// setupStream creates sc, or updates the stream there to it. An update is
// only sent when a field Setup manages differs: every process runs Setup at
// start, and nats-server (v2.15) reads a stream's configuration without its
// lock while it creates a consumer on it, so a needless update from a
// starting registry races with the consumers a running worker creates.
func setupStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig, cfg Config) error {
	if err := checkReplicas(ctx, js, sc.Name, sc.Replicas); err != nil {
		return err
	}
	if cfg.CreateOnly {
		// Creating an existing stream with another configuration
		// fails with ErrStreamNameAlreadyInUse: it is there, as the
		// registry keeps it.
		if _, err := js.CreateStream(ctx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("set up stream %s: %w", sc.Name, err)
		}
		return nil
	}
	have, err := applyLimits(ctx, js, &sc, cfg)
	if err != nil {
		return err
	}
	if have != nil && sameManagedConfig(*have, sc) {
		return nil
	}
	if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
		return fmt.Errorf("set up stream %s: %w", sc.Name, err)
	}
	return nil
}

// sameManagedConfig reports whether have already has every field of want
// that Setup sets; the server fills the others with its defaults. A field
// added to Setup's configurations must be added here.
func sameManagedConfig(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention && have.Storage == want.Storage && have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates && have.AllowMsgSchedules == want.AllowMsgSchedules &&
		showAge(int64(have.MaxAge)) == showAge(int64(want.MaxAge)) &&
		showBytes(have.MaxBytes) == showBytes(want.MaxBytes)
}

func webhooksKVConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      WebhooksBucket,
		Description: "Switchboard: webhooks mirrored from the registry",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// WebhooksKV creates (or updates) and returns the webhooks bucket. Only the
// latest value per key matters: workers rebuild their index from it. Like
// Setup, it returns a *ReplicasError rather than change the replicas of an
// existing bucket.
func WebhooksKV(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	if replicas <= 0 {
		replicas = 1
	}
	if err := checkReplicas(ctx, js, "KV_"+WebhooksBucket, replicas); err != nil {
		return nil, err
	}
	want := webhooksKVConfig(replicas)
	// As for streams (setupStream), a bucket that is as wanted is not
	// updated: workers create watchers on it while a registry starts.
	if s, err := js.Stream(ctx, "KV_"+WebhooksBucket); err == nil {
		if have := s.CachedInfo().Config; have.Description == want.Description && have.MaxMsgsPerSubject == int64(want.History) &&
			have.Storage == want.Storage {
			return OpenWebhooksKV(ctx, js)
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("set up kv %s: %w", WebhooksBucket, err)
	}
	return kv, nil
}

// OpenWebhooksKV returns the existing webhooks bucket without changing it,
// for processes (workers) that must not fight over its configuration.
func OpenWebhooksKV(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, WebhooksBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open kv %s: %w (run streams setup first)", WebhooksBucket, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w", WebhooksBucket, err)
	}
	return kv, nil
}
