package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/producer"
)

// HealthConsumer is the durable consumer on SB_ATTEMPTS through which the
// registry counts failed deliveries.
const HealthConsumer = "registry_health"

// Defaults of NewHealth.
const (
	DefaultDisableAfter  = 5
	DefaultAlertInterval = 500 * time.Millisecond
	// DefaultRemember is as long as SB_ATTEMPTS keeps a record by default
	// (streams.DefaultConfig): no redelivery can come later than that.
	DefaultRemember = 7 * 24 * time.Hour
)

// eventPublisher publishes an event into SB_EVENTS (producer.Client).
type eventPublisher interface {
	Publish(ctx context.Context, evt *switchboard.Event, opts ...producer.PublishOption) (producer.Result, error)
}

var _ eventPublisher = (*producer.Client)(nil)

// Health runs auto-disable and alerts in the registry: it reads every
// attempt from SB_ATTEMPTS through its own durable consumer, records it
// (DB.RecordAttempt: one transaction, acked after the commit) and publishes
// the operational events that raised into SB_EVENTS as events of the
// webhook's tenant, where the matcher hands them to the tenant's alert
// hooks like any other event.
type Health struct {
	DB *DB
	JS jetstream.JetStream
	// Events publishes the alerts (a producer.Client on JS).
	Events eventPublisher
	// Mirror, when set, mirrors a webhook the moment it is stopped, so
	// that workers park its deliveries at once; otherwise the mirror's
	// own loop does it within its interval.
	Mirror *Mirror
	// DisableAfter is the number of consecutive failed deliveries that
	// stops a webhook; 0 never stops one (not even on 410 Gone).
	DisableAfter int
	// AlertInterval is how often queued alerts are looked for: those
	// queued by PATCH, and those JetStream did not take at first.
	AlertInterval time.Duration
	// Remember is how long the ids of counted attempts are kept to
	// recognise a redelivery.
	Remember time.Duration
	Logger   *slog.Logger

	wake chan struct{}
}

// NewHealth returns a Health with the defaults.
func NewHealth(db *DB, js jetstream.JetStream, events eventPublisher) *Health {
	return &Health{
		DB:            db,
		JS:            js,
		Events:        events,
		DisableAfter:  DefaultDisableAfter,
		AlertInterval: DefaultAlertInterval,
		Remember:      DefaultRemember,
		Logger:        slog.New(slog.DiscardHandler),
	}
}

// Run consumes attempts and publishes alerts until ctx is done, then
// returns nil. It returns an error when its consumer cannot be created at
// first; later losses (NATS down, the consumer deleted) are retried.
func (h *Health) Run(ctx context.Context) error {
	h.wake = make(chan struct{}, 1)
	cons, err := h.JS.CreateOrUpdateConsumer(ctx, streams.Attempts, h.consumerConfig())
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", HealthConsumer, streams.Attempts, err)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { h.consume(ctx, cons); return nil })
	g.Go(func() error { h.publishLoop(ctx); return nil })
	return g.Wait()
}

func (h *Health) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       HealthConsumer,
		Description:   "Switchboard registry: counts failed deliveries, raises alerts",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: healthBatch,
		FilterSubject: streams.AttemptsPrefix + ">",
	}
}

// healthBatch is how many attempts one pull asks for.
const healthBatch = 256

// consume records attempts in stream order, so that a webhook's
// consecutive failures are counted in the order they were published. The
// attempts that have arrived when one is taken are recorded with it in one
// transaction (up to healthBatch): one commit per attempt costs more than
// the attempt, and a quiet stream still has each recorded at once.
func (h *Health) consume(ctx context.Context, cons jetstream.Consumer) {
	pause := backoff.NewExponentialBackOff(backoff.WithInitialInterval(500*time.Millisecond),
		backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(0))
	pending := make([]jetstream.Msg, 0, healthBatch)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(healthBatch, jetstream.FetchContext(ctx))
		if err == nil {
			msgs := batch.Messages()
			for msg := range msgs {
				pending = append(pending[:0], msg)
			more:
				for len(pending) < healthBatch {
					select {
					case m, ok := <-msgs:
						if !ok {
							break more
						}
						pending = append(pending, m)
					default:
						break more
					}
				}
				h.handle(ctx, pending)
			}
			err = batch.Error()
		}
		if err == nil || ctx.Err() != nil {
			pause.Reset()
			continue
		}
		wait := pause.NextBackOff()
		h.Logger.Warn("attempts consumer lost; setting it up again", "consumer", HealthConsumer, "err", err, "retry_in", wait)
		if !sleepCtx(ctx, wait) {
			return
		}
		if c, err := h.JS.CreateOrUpdateConsumer(ctx, streams.Attempts, h.consumerConfig()); err == nil {
			cons = c
		}
	}
}

// handle records msgs' attempts in one transaction and acks them once
// committed. An attempt that cannot be decoded is terminated (it never will
// be). When the transaction fails, each attempt is tried alone, so that one
// SQLite will not take holds back no other; that one is handed back for a
// later try.
func (h *Health) handle(ctx context.Context, msgs []jetstream.Msg) {
	attempts := make([]switchboard.Attempt, 0, len(msgs))
	kept := msgs[:0:0]
	for _, msg := range msgs {
		var a switchboard.Attempt
		err := json.Unmarshal(msg.Data(), &a)
		if err == nil && (a.ID == "" || a.WebhookID == "" || a.TenantID == "") {
			err = errIncompleteAttempt
		}
		if err != nil {
			h.Logger.Warn("attempt record unusable; dropped", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			continue
		}
		attempts = append(attempts, a)
		kept = append(kept, msg)
	}
	if len(attempts) == 0 {
		return
	}
	effs, err := h.DB.RecordAttempts(ctx, attempts, h.DisableAfter)
	if err != nil && len(attempts) > 1 && ctx.Err() == nil {
		h.Logger.Warn("attempts not recorded together; recording them one by one", "attempts", len(attempts), "err", err)
		for i := range attempts {
			h.handleOne(ctx, kept[i], &attempts[i])
		}
		return
	}
	for i := range attempts {
		var eff AttemptEffect
		if err == nil {
			eff = effs[i]
		}
		h.recorded(ctx, kept[i], &attempts[i], eff, err)
	}
}

// handleOne records one attempt in a transaction of its own.
func (h *Health) handleOne(ctx context.Context, msg jetstream.Msg, a *switchboard.Attempt) {
	eff, err := h.DB.RecordAttempt(ctx, a, h.DisableAfter)
	h.recorded(ctx, msg, a, eff, err)
}

// recorded acks msg once its attempt a is recorded with effect eff, or
// hands it back when err says it was not.
func (h *Health) recorded(ctx context.Context, msg jetstream.Msg, a *switchboard.Attempt, eff AttemptEffect, err error) {
	if err != nil {
		if ctx.Err() == nil {
			h.Logger.Error("attempt not recorded; trying again", "tenant", a.TenantID, "webhook_id", a.WebhookID,
				"event_id", a.EventID, "attempt", a.Number, "err", err)
		}
		_ = msg.NakWithDelay(time.Second)
		return
	}
	// After the commit: a lost ack only redelivers an attempt that
	// RecordAttempt recognises.
	if err := msg.Ack(); err != nil {
		h.Logger.Warn("ack attempt", "tenant", a.TenantID, "webhook_id", a.WebhookID, "event_id", a.EventID, "err", err)
	}
	if !eff.Disabled && eff.Alerts == 0 {
		return
	}
	log := h.Logger.With("tenant", a.TenantID, "webhook_id", a.WebhookID, "event_id", a.EventID, "attempt", a.Number)
	if eff.Disabled {
		log.Warn("webhook stopped: too many failed deliveries", "failures", eff.Failures, "reason", a.Reason)
		if h.Mirror != nil {
			if err := h.Mirror.Flush(ctx, a.WebhookID); err != nil {
				log.Warn("mirror stopped webhook; the mirror loop retries", "err", err)
			}
		}
	}
	if eff.Alerts > 0 {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

// errIncompleteAttempt names what handle found missing.
var errIncompleteAttempt = errors.New("an attempt needs its id, tenant_id and webhook_id")

// publishLoop publishes queued alerts when woken and every AlertInterval,
// and now and then forgets attempt ids older than Remember.
func (h *Health) publishLoop(ctx context.Context) {
	tick := time.NewTicker(h.AlertInterval)
	defer tick.Stop()
	var lastForget time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-tick.C:
		}
		if err := h.publishAlerts(ctx); err != nil && ctx.Err() == nil {
			h.Logger.Warn("publish alerts; retrying", "err", err)
		}
		if time.Since(lastForget) > time.Hour {
			lastForget = time.Now()
			if err := h.DB.forgetAttempts(ctx, now().Add(-h.Remember)); err != nil && ctx.Err() == nil {
				h.Logger.Warn("forget old attempts", "err", err)
			}
		}
	}
}

// publishAlerts publishes every queued alert, oldest first, and removes each
// once JetStream has it. Its id is its Nats-Msg-Id, so one published again
// after a crash is recognised as a duplicate.
func (h *Health) publishAlerts(ctx context.Context) error {
	for {
		queued, err := h.DB.pendingAlerts(ctx, 100)
		if err != nil {
			return err
		}
		for _, q := range queued {
			_, err := h.Events.Publish(ctx, &q.Event)
			if switchboard.ErrorCode(err) == switchboard.EINVALID {
				// Cannot happen with what RecordAttempt queues; if it
				// does, holding it back would block every later alert.
				h.Logger.Error("alert invalid; dropped", "tenant", q.Event.TenantID, "event_id", q.Event.ID, "err", err)
			} else if err != nil {
				return fmt.Errorf("publish alert %s: %w", q.Event.ID, err)
			}
			if err := h.DB.deleteAlert(ctx, q.Seq); err != nil {
				return err
			}
		}
		if len(queued) < 100 {
			return nil
		}
	}
}

// sleepCtx waits d and reports true, or false when ctx is done first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
