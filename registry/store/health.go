package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/switchboard-hq/switchboard"
)

// The store side of auto-disable and alerts. Each attempt that ends a
// delivery (delivered or dead-lettered) is counted once, in the transaction
// that stores it in the attempt log (RecordAttempts): it counts the
// webhook's consecutive failed deliveries, stops the webhook when they reach
// the threshold (or at once on a 410 Gone), and queues the operational
// events this raises in alert_outbox. Health.Run publishes them from there:
// an alert is committed with its cause or not at all, and a redelivered
// attempt, already in the log, raises nothing twice.

// SystemActor is the UpdatedBy of changes Switchboard makes by itself, such
// as stopping a webhook whose deliveries keep failing.
const SystemActor = "switchboard"

// Reasons a webhook was stopped, in the data of webhook.disabled.
const (
	DisabledConsecutiveFailures = "consecutive_failures" // --disable-after failed deliveries in a row
	DisabledGone                = "gone"                 // the receiver answered 410 Gone
)

// AttemptEffect is what recording an attempt changed.
type AttemptEffect struct {
	Duplicate bool // the attempt was stored before: nothing changed
	Failures  int  // the webhook's consecutive failed deliveries after it
	Disabled  bool // the webhook was moved to too_many_errors
	Alerts    int  // operational events queued
}

// healthTx counts attempts towards their webhooks' health in one
// transaction of RecordAttempts. Only attempts that end a delivery count: a
// delivered one resets the webhook's consecutive failures; a dead-lettered
// one adds one (unless its reason is on Switchboard's side, see
// countsAsFailure) and queues a delivery.dead_lettered alert (see
// alertsWanted for when alerts are raised). When disableAfter > 0 and an
// active webhook reaches disableAfter failures, or its receiver answered
// 410 Gone, the webhook moves to too_many_errors (with an outbox row, so
// the KV mirror and the workers learn it) and a webhook.disabled alert is
// queued. Attempts of alert hooks raise no alert, so that a failing alert
// hook cannot feed itself; they can still stop it. Attempts of webhooks
// that no longer exist, or of another tenant, change nothing.
type healthTx struct {
	db           *DB
	tx           *sqlx.Tx
	disableAfter int
	// reset holds the webhooks whose count this transaction has reset
	// and not raised since: most attempts are successes, often of few
	// webhooks, and resetting a count that is not there again is a
	// statement per attempt for nothing.
	reset     map[webhookKey]bool
	resetStmt *sqlx.Stmt // prepared at the first reset
}

// webhookKey names a webhook as an attempt does: by tenant and id.
type webhookKey struct{ tenant, webhook string }

func (h *healthTx) close() {
	if h.resetStmt != nil {
		_ = h.resetStmt.Close()
	}
}

// count counts a, an attempt stored for the first time.
func (h *healthTx) count(ctx context.Context, a *switchboard.Attempt) (AttemptEffect, error) {
	var eff AttemptEffect
	key := webhookKey{a.TenantID, a.WebhookID}
	switch {
	case a.Outcome == switchboard.AttemptDelivered:
		if h.reset[key] {
			return eff, nil
		}
		if h.resetStmt == nil {
			// Most attempts: reset the count without loading (and
			// decrypting) the webhook; the subquery keeps attempts of
			// webhooks that are gone, or of another tenant, without
			// effect.
			stmt, err := h.tx.PreparexContext(ctx, `DELETE FROM webhook_health WHERE webhook_id = (SELECT id FROM webhooks WHERE id = ? AND tenant_id = ?)`)
			if err != nil {
				return eff, fmt.Errorf("reset failures: %w", err)
			}
			h.resetStmt = stmt
		}
		if _, err := h.resetStmt.ExecContext(ctx, a.WebhookID, a.TenantID); err != nil {
			return eff, fmt.Errorf("reset failures: %w", err)
		}
		h.reset[key] = true
		return eff, nil
	case a.Outcome != switchboard.AttemptDeadLettered, a.Reason == switchboard.ReasonInactive:
		// A parked delivery of a stopped webhook neither counts
		// (countsAsFailure) nor alerts (recordDeadLetter): a backlog
		// of them need not load the webhook once each.
		return eff, nil
	}
	if a.Reason.CountsAsFailure() {
		delete(h.reset, key)
	}
	wh, err := h.db.findWebhook(ctx, h.tx, a.WebhookID, a.TenantID)
	if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
		return eff, nil
	}
	if err != nil {
		return eff, err
	}
	err = recordDeadLetter(ctx, h.tx, a, wh, h.disableAfter, &eff)
	return eff, err
}

// recordDeadLetter is healthTx.count's part for a dead-lettered delivery.
func recordDeadLetter(ctx context.Context, tx *sqlx.Tx, a *switchboard.Attempt, wh *Webhook, disableAfter int, eff *AttemptEffect) error {
	alerting, err := alertsWanted(ctx, tx, wh)
	if err != nil {
		return err
	}
	// A stopped webhook's parked deliveries raise none: webhook.disabled
	// said it once (or the tenant stopped it), where one alert per parked
	// delivery of a backlog would flood the alert hooks.
	if alerting && a.Reason != switchboard.ReasonInactive {
		if err := queueAlert(ctx, tx, deadLetteredAlert(a, wh)); err != nil {
			return err
		}
		eff.Alerts++
	}
	if !a.Reason.CountsAsFailure() {
		return nil
	}
	err = tx.GetContext(ctx, &eff.Failures, `INSERT INTO webhook_health (webhook_id, failures, updated_at) VALUES (?, 1, ?)
		ON CONFLICT (webhook_id) DO UPDATE SET failures = failures + 1, updated_at = excluded.updated_at
		RETURNING failures`, wh.ID, Now())
	if err != nil {
		return fmt.Errorf("count failure: %w", err)
	}
	if disableAfter <= 0 || wh.Status != switchboard.StatusActive {
		return nil
	}
	why := ""
	switch {
	case a.Reason == switchboard.ReasonGone:
		why = DisabledGone
	case eff.Failures >= disableAfter:
		why = DisabledConsecutiveFailures
	default:
		return nil
	}
	t := Now()
	if _, err := tx.ExecContext(ctx, `UPDATE webhooks SET status = ?, updated_at = ?, updated_by = ? WHERE id = ?`,
		switchboard.StatusTooManyErrors, t, SystemActor, wh.ID); err != nil {
		return fmt.Errorf("stop webhook: %w", err)
	}
	if err := insertOutbox(ctx, tx, wh.ID); err != nil {
		return err
	}
	eff.Disabled = true
	if !alerting {
		return nil
	}
	eff.Alerts++
	return queueAlert(ctx, tx, disabledAlert(a, wh, why, eff.Failures, t))
}

// webhookStatusChanged runs in the transaction of UpdateWebhook once wh has
// been stored with a new status, prev being the old one. Setting a webhook
// active again gives it a fresh count of failures; when it had been stopped
// for too many errors, the tenant's alert hooks hear that it is back.
func webhookStatusChanged(ctx context.Context, tx *sqlx.Tx, prev switchboard.WebhookStatus, wh *Webhook) error {
	if wh.Status != switchboard.StatusActive || prev == switchboard.StatusActive {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_health WHERE webhook_id = ?`, wh.ID); err != nil {
		return fmt.Errorf("reset failures: %w", err)
	}
	if prev != switchboard.StatusTooManyErrors {
		return nil
	}
	if alerting, err := alertsWanted(ctx, tx, wh); err != nil || !alerting {
		return err
	}
	return queueAlert(ctx, tx, recoveredAlert(wh))
}

// alertsWanted reports whether a change of wh raises alerts: wh is no
// alert hook (whose own troubles would feed themselves), and its tenant
// has an active alert hook to receive them. Without one, alerts would only
// fill SB_EVENTS: a stopped webhook's backlog alone raises one per parked
// delivery.
func alertsWanted(ctx context.Context, tx *sqlx.Tx, wh *Webhook) (bool, error) {
	if wh.IsAlertHook {
		return false, nil
	}
	var ok bool
	err := tx.GetContext(ctx, &ok, `SELECT EXISTS (SELECT 1 FROM webhooks WHERE tenant_id = ? AND is_alert_hook AND status = ?)`,
		wh.TenantID, switchboard.StatusActive)
	if err != nil {
		return false, fmt.Errorf("look for alert hooks: %w", err)
	}
	return ok, nil
}

// Alert data: the "data" of each operational event.
type (
	webhookDisabledData struct {
		WebhookID string    `json:"webhook_id"`
		Name      string    `json:"name"`
		URL       string    `json:"url"`
		Status    string    `json:"status"`
		Reason    string    `json:"reason"`   // DisabledConsecutiveFailures or DisabledGone
		Failures  int       `json:"failures"` // consecutive failed deliveries
		EventID   string    `json:"event_id"` // of the delivery that stopped it
		At        time.Time `json:"disabled_at"`
	}
	deliveryDeadLetteredData struct {
		WebhookID  string `json:"webhook_id"`
		Name       string `json:"webhook_name"`
		EventID    string `json:"event_id"`
		EventType  string `json:"event_type"`
		Reason     string `json:"reason"`
		Attempts   int    `json:"attempts"`
		LastStatus int    `json:"last_status"` // 0 when the receiver did not answer
		LastError  string `json:"last_error,omitempty"`
	}
	webhookRecoveredData struct {
		WebhookID string `json:"webhook_id"`
		Name      string `json:"name"`
		URL       string `json:"url"`
		Status    string `json:"status"`
		UpdatedBy string `json:"updated_by"`
	}
)

// Alert event ids are derived from their cause (the attempt), so that the
// same cause never yields two events, wherever it is seen again.
func deadLetteredAlert(a *switchboard.Attempt, wh *Webhook) *switchboard.Event {
	return alertEvent("msg_dl_"+a.ID, switchboard.EventDeliveryDeadLettered, wh, a.At, deliveryDeadLetteredData{
		WebhookID: wh.ID, Name: wh.Name, EventID: a.EventID, EventType: a.EventType,
		Reason: string(a.Reason), Attempts: a.Number, LastStatus: a.StatusCode, LastError: a.Error,
	})
}

func disabledAlert(a *switchboard.Attempt, wh *Webhook, why string, failures int, at time.Time) *switchboard.Event {
	return alertEvent("msg_disabled_"+a.ID, switchboard.EventWebhookDisabled, wh, at, webhookDisabledData{
		WebhookID: wh.ID, Name: wh.Name, URL: wh.URL, Status: string(switchboard.StatusTooManyErrors),
		Reason: why, Failures: failures, EventID: a.EventID, At: at,
	})
}

func recoveredAlert(wh *Webhook) *switchboard.Event {
	return alertEvent(switchboard.NewID("msg_recovered_"), switchboard.EventWebhookRecovered, wh, wh.UpdatedAt, webhookRecoveredData{
		WebhookID: wh.ID, Name: wh.Name, URL: wh.URL, Status: string(wh.Status), UpdatedBy: wh.UpdatedBy,
	})
}

// alertEvent is an operational event of wh's tenant about wh. It carries
// wh's agent, so that an alert hook scoped to an agent hears about that
// agent's webhooks only.
func alertEvent(id, typ string, wh *Webhook, at time.Time, data any) *switchboard.Event {
	b, _ := json.Marshal(data) // plain structs of strings and numbers
	return &switchboard.Event{ID: id, TenantID: wh.TenantID, Type: typ, AgentID: wh.AgentID, OccurredAt: at, Data: b}
}

// queueAlert adds evt to alert_outbox in tx.
func queueAlert(ctx context.Context, tx *sqlx.Tx, evt *switchboard.Event) error {
	b, err := json.Marshal(evt)
	if err != nil {
		return fmt.Errorf("encode alert %s: %w", evt.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO alert_outbox (event) VALUES (?)`, string(b)); err != nil {
		return fmt.Errorf("queue alert %s: %w", evt.ID, err)
	}
	return nil
}

// queuedAlert is a row of alert_outbox.
type queuedAlert struct {
	Seq   int64
	Event switchboard.Event
}

// pendingAlerts returns up to limit queued alerts, oldest first.
func (db *DB) PendingAlerts(ctx context.Context, limit int) ([]queuedAlert, error) {
	var rows []struct {
		Seq   int64  `db:"seq"`
		Event string `db:"event"`
	}
	if err := db.db.SelectContext(ctx, &rows, `SELECT seq, event FROM alert_outbox ORDER BY seq LIMIT ?`, limit); err != nil {
		return nil, fmt.Errorf("read queued alerts: %w", err)
	}
	out := make([]queuedAlert, len(rows))
	for i, r := range rows {
		out[i].Seq = r.Seq
		if err := json.Unmarshal([]byte(r.Event), &out[i].Event); err != nil {
			return nil, fmt.Errorf("decode queued alert %d: %w", r.Seq, err)
		}
	}
	return out, nil
}

// deleteAlert removes a published alert from the queue.
func (db *DB) DeleteAlert(ctx context.Context, seq int64) error {
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM alert_outbox WHERE seq = ?`, seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete queued alert %d: %w", seq, err)
	}
	return nil
}
