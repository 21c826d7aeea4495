package control

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Defaults of auto-disable and alerts.
const (
	DefaultDisableAfter  = 5
	DefaultAlertInterval = 500 * time.Millisecond
)

// eventPublisher publishes an event into SB_EVENTS (producer.Client).
type eventPublisher interface {
	Publish(ctx context.Context, evt *switchboard.Event, opts ...producer.PublishOption) (producer.Result, error)
}

var _ eventPublisher = (*producer.Client)(nil)

// Health publishes the operational events that auto-disable (counted by
// AttemptIngester as it stores each attempt) and webhook changes queue in
// alert_outbox into SB_EVENTS, as events of the webhook's tenant, where the
// matcher hands them to the tenant's alert hooks like any other event.
type Health struct {
	DB *store.DB
	// Events publishes the alerts (a producer.Client on JS).
	Events eventPublisher
	// AlertInterval is how often queued alerts are looked for: those
	// queued by PATCH, and those JetStream did not take at first.
	AlertInterval time.Duration
	Logger        *slog.Logger

	wake chan struct{}
}

// NewHealth returns a Health with the defaults.
func NewHealth(db *store.DB, events eventPublisher) *Health {
	return &Health{
		DB:            db,
		Events:        events,
		AlertInterval: DefaultAlertInterval,
		Logger:        slog.New(slog.DiscardHandler),
		wake:          make(chan struct{}, 1),
	}
}

// Wake has Run look for queued alerts now rather than at its next
// interval. It never blocks.
func (h *Health) Wake() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Run publishes queued alerts when woken and every AlertInterval until ctx
// is done, then returns nil.
func (h *Health) Run(ctx context.Context) error {
	tick := time.NewTicker(h.AlertInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.wake:
		case <-tick.C:
		}
		if err := h.publishAlerts(ctx); err != nil && ctx.Err() == nil {
			h.Logger.Warn("publish alerts; retrying", "err", err)
		}
	}
}

// publishAlerts publishes every queued alert, oldest first, and removes each
// once JetStream has it. Its id is its Nats-Msg-Id, so one published again
// after a crash is recognised as a duplicate.
func (h *Health) publishAlerts(ctx context.Context) error {
	for {
		queued, err := h.DB.PendingAlerts(ctx, 100)
		if err != nil {
			return err
		}
		for _, q := range queued {
			_, err := h.Events.Publish(ctx, &q.Event)
			if switchboard.ErrorCode(err) == switchboard.EINVALID {
				// Cannot happen with what RecordAttempts queues; if it
				// does, holding it back would block every later alert.
				h.Logger.Error("alert invalid; dropped", "tenant", q.Event.TenantID, "event_id", q.Event.ID, "err", err)
			} else if err != nil {
				return fmt.Errorf("publish alert %s: %w", q.Event.ID, err)
			}
			if err := h.DB.DeleteAlert(ctx, q.Seq); err != nil {
				return err
			}
		}
		if len(queued) < 100 {
			return nil
		}
	}
}
