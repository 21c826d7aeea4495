package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/natsembed"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// setupStreams runs streams.Setup with the given replicas (create-only for
// workers, which may not change the registry's streams), trying again
// while JetStream is not ready to answer yet (a cluster still electing its
// leader answers 503, or not at all) until ctx is done. Settings that
// disagree with the streams already there fail at once.
func setupStreams(ctx context.Context, js jetstream.JetStream, cfg streams.Config, createOnly bool, logger *slog.Logger) error {
	cfg.Logger = logger
	cfg.CreateOnly = createOnly
	replicas := cfg.Replicas
	wait := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := streams.Setup(actx, js, cfg)
		cancel()
		var mismatch *streams.ReplicasError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &mismatch):
			return fmt.Errorf("--stream-replicas %d disagrees with the streams on NATS: %w; "+
				"give every process the same --stream-replicas (to change it, edit the streams with the nats CLI first)", replicas, err)
		case !jetStreamUnavailable(err) || ctx.Err() != nil:
			return err
		}
		logger.Info("JetStream not ready; setting up the streams again", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// jetStreamUnavailable reports whether err says that JetStream cannot
// answer for now, rather than that the request is wrong.
func jetStreamUnavailable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &apiErr) && apiErr.Code == http.StatusServiceUnavailable
}

func (s *system) connectNATS() error {
	s.closed = make(chan struct{})
	opts := []nats.Option{
		nats.Name("switchboard " + s.cfg.Roles.String()),
		nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(s.closed) }),
		// Without it the client's async errors go unseen, among them a
		// subscription that overflowed its pending limits and dropped
		// messages (nats.ErrSlowConsumer).
		nats.ErrorHandler(s.natsAsyncError),
	}
	if s.cfg.NATSURL != "" {
		nc, err := connectNATS(s.cfg.NATSURL, s.cfg.NATS, opts...)
		if err != nil {
			return err
		}
		s.nc = nc
		return nil
	}
	ns, err := natsembed.Start(natsembed.Config{
		StoreDir:   filepath.Join(s.cfg.DataDir, "nats"),
		Listen:     s.cfg.NATSListen,
		ServerName: "switchboard",
		Auth:       s.cfg.NATS.embeddedAuth(s.cfg.DataDir),
	})
	if err != nil {
		return err
	}
	s.ns = ns
	if ns.SeedFile != "" {
		// Where the secret is, never the secret.
		s.logger.Info("embedded NATS requires authentication", "url", ns.ClientURL(), "nkey_seed_file", ns.SeedFile, "created", ns.CreatedSeed)
	} else if s.cfg.NATSListen != "" {
		s.logger.Info("embedded NATS requires authentication", "url", ns.ClientURL(), "user", s.cfg.NATS.User)
	}
	nc, err := ns.Connect(opts...)
	if err != nil {
		return err
	}
	s.nc = nc
	return nil
}

// printNATSListen says where the embedded NATS listens, if it does, and
// how other processes authenticate to it: the seed file's path, not the
// seed.
func (s *system) printNATSListen(w io.Writer) {
	if s.ns == nil || s.ns.ClientURL() == "" {
		return
	}
	if s.ns.SeedFile != "" {
		fmt.Fprintf(w, "  NATS:    %s (clients authenticate with --nats-nkey %s)\n", s.ns.ClientURL(), s.ns.SeedFile)
	} else {
		fmt.Fprintf(w, "  NATS:    %s (clients authenticate as user %s)\n", s.ns.ClientURL(), s.cfg.NATS.User)
	}
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
		return redactNATSURL(s.cfg.NATSURL)
	}
	if u := s.ns.ClientURL(); u != "" {
		return "embedded, listening on " + u
	}
	return "embedded"
}
