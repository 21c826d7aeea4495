package store

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/switchboard-hq/switchboard"
)

// AttemptFilter selects the attempts FindAttempts returns, newest first.
type AttemptFilter struct {
	Outcome    switchboard.AttemptOutcome // "" for all
	StatusCode int                        // 0 for all
	Since      time.Time                  // attempts made at or after; zero for no bound
	Until      time.Time                  // attempts made before; zero for no bound
	EventID    string                     // "" for all
	Before     string                     // the cursor: only attempts whose id sorts before it
	Limit      int                        // at most this many (0: DefaultPageSize; capped at MaxPageSize)
}

// attemptRow is a row of the attempts table.
type attemptRow struct {
	ID           string  `db:"id"`
	TenantID     string  `db:"tenant_id"`
	WebhookID    string  `db:"webhook_id"`
	EventID      string  `db:"event_id"`
	EventType    string  `db:"event_type"`
	Attempt      int     `db:"attempt"`
	At           int64   `db:"at"` // Unix nanoseconds
	Outcome      string  `db:"outcome"`
	Reason       string  `db:"reason"`
	StatusCode   int     `db:"status_code"`
	LatencyMS    float64 `db:"latency_ms"`
	ErrorClass   string  `db:"error_class"`
	Error        string  `db:"error"`
	ResponseBody string  `db:"response_body"`
}

const attemptColumns = `id, tenant_id, webhook_id, event_id, event_type, attempt, at, outcome, reason, ` +
	`status_code, latency_ms, error_class, error, response_body`

// attemptsWithBodies selects attemptColumns, each attempt with its body
// from attempt_bodies (migration 10); WHERE clauses follow it unqualified.
const attemptsWithBodies = `SELECT id, tenant_id, webhook_id, event_id, event_type, attempt, at, outcome, reason, ` +
	`status_code, latency_ms, error_class, error, coalesce(b.body, a.response_body) AS response_body ` +
	`FROM attempts a LEFT JOIN attempt_bodies b ON b.attempt_id = a.id`

func (r *attemptRow) attempt() switchboard.Attempt {
	return switchboard.Attempt{
		ID: r.ID, TenantID: r.TenantID, WebhookID: r.WebhookID, EventID: r.EventID, EventType: r.EventType,
		Number: r.Attempt, At: time.Unix(0, r.At).UTC(), Outcome: switchboard.AttemptOutcome(r.Outcome),
		Reason: switchboard.Reason(r.Reason), StatusCode: r.StatusCode, LatencyMS: r.LatencyMS, ErrorClass: r.ErrorClass,
		Error: r.Error, ResponseBody: r.ResponseBody,
	}
}

// RecordAttempts stores attempts in the attempt log and counts them towards
// their webhooks' health (healthTx.count), in their order, in one
// transaction: at a high rate of deliveries a commit per attempt costs more
// than the attempt itself. It returns the effect of each, or an error when
// none was recorded.
//
// An attempt whose id is stored already changes nothing (its effect says
// Duplicate), so a record redelivered after a crash between commit and ack
// is neither stored nor counted twice. The log is the memory of what was
// counted: a redelivery that came after the attempt was pruned
// (--attempt-retention, 30 days by default) would count again, but
// SB_ATTEMPTS keeps a record for less (7 days by default).
//
// Errors: those of SQLite, wrapped with the attempt id.
func (db *DB) RecordAttempts(ctx context.Context, attempts []switchboard.Attempt, disableAfter int) ([]AttemptEffect, error) {
	return db.RecordLog(ctx, attempts, nil, disableAfter)
}

// recordLog is RecordAttempts storing, in the same transaction, the
// matcher's records of matched (the ledger, see recordMatched).
func (db *DB) RecordLog(ctx context.Context, attempts []switchboard.Attempt, matched []Matched, disableAfter int) ([]AttemptEffect, error) {
	effs := make([]AttemptEffect, len(attempts))
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		if err := recordMatched(ctx, tx, matched); err != nil {
			return err
		}
		insert, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO attempts (`+attemptColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')`)
		if err != nil {
			return err
		}
		defer insert.Close()
		insertBody, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO attempt_bodies (attempt_id, body) VALUES (?, ?)`)
		if err != nil {
			return err
		}
		defer insertBody.Close()
		health := healthTx{db: db, tx: tx, disableAfter: disableAfter, reset: map[webhookKey]bool{}}
		defer health.close()
		for i := range attempts {
			a := &attempts[i]
			res, err := insert.ExecContext(ctx, a.ID, a.TenantID, a.WebhookID, a.EventID, a.EventType, a.Number, a.At.UnixNano(),
				string(a.Outcome), string(a.Reason), a.StatusCode, a.LatencyMS, a.ErrorClass, a.Error)
			if err != nil {
				return fmt.Errorf("store attempt %s: %w", a.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("store attempt %s: %w", a.ID, err)
			} else if n == 0 {
				effs[i].Duplicate = true
				continue
			}
			if a.ResponseBody != "" {
				if _, err := insertBody.ExecContext(ctx, a.ID, a.ResponseBody); err != nil {
					return fmt.Errorf("store body of attempt %s: %w", a.ID, err)
				}
			}
			if effs[i], err = health.count(ctx, a); err != nil {
				return fmt.Errorf("count attempt %s of webhook %s: %w", a.ID, a.WebhookID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record %d attempts, %d matched records: %w", len(attempts), len(matched), err)
	}
	return effs, nil
}

// FindAttempts returns a page of the attempts to deliver to webhook id of
// the tenant in ctx that f selects, newest first, and whether more follow.
// It returns EUNAUTHORIZED when ctx carries no tenant and ENOTFOUND when the
// tenant has no such webhook.
func (db *DB) FindAttempts(ctx context.Context, id string, f AttemptFilter) ([]switchboard.Attempt, bool, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("find attempts of webhook %s: %w", id, err)
	}
	var exists bool
	if err := db.db.GetContext(ctx, &exists, `SELECT count(*) > 0 FROM webhooks WHERE id = ? AND tenant_id = ?`, id, tenant); err != nil {
		return nil, false, fmt.Errorf("find attempts of webhook %s: %w", id, err)
	}
	if !exists {
		return nil, false, fmt.Errorf("find attempts of webhook %s: %w", id, switchboard.Errorf(switchboard.ENOTFOUND, "Webhook not found."))
	}
	limit := pageLimit(f.Limit)
	where := []string{"tenant_id = ?", "webhook_id = ?"}
	args := []any{tenant, id}
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.Before != "" {
		add("id < ?", f.Before)
	}
	if f.Outcome != "" {
		add("outcome = ?", f.Outcome)
	}
	if f.StatusCode != 0 {
		add("status_code = ?", f.StatusCode)
	}
	if !f.Since.IsZero() {
		add("at >= ?", unixNano(f.Since))
	}
	if !f.Until.IsZero() {
		add("at < ?", unixNano(f.Until))
	}
	if f.EventID != "" {
		add("event_id = ?", f.EventID)
	}
	args = append(args, limit+1)
	var rows []attemptRow
	err = db.db.SelectContext(ctx, &rows, attemptsWithBodies+` WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, false, fmt.Errorf("find attempts of webhook %s: %w", id, err)
	}
	more := len(rows) > limit
	rows = rows[:min(len(rows), limit)]
	out := make([]switchboard.Attempt, len(rows))
	for i := range rows {
		out[i] = rows[i].attempt()
	}
	return out, more, nil
}

// unixNano is t in Unix nanoseconds, clamped to what an int64 holds
// (years 1678 to 2262), so that a far bound still compares right.
func unixNano(t time.Time) int64 {
	switch {
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	}
	return t.UnixNano()
}

// findEventAttempts returns the first MaxEventAttempts attempts to deliver
// event id of tenant, in the order they were made.
func (db *DB) FindEventAttempts(ctx context.Context, tenant, id string) ([]switchboard.Attempt, error) {
	var rows []attemptRow
	// Bounded: replays and recoveries add attempts without end, and each
	// carries a response excerpt. Each webhook's attempt log has them all.
	err := db.db.SelectContext(ctx, &rows, attemptsWithBodies+` WHERE tenant_id = ? AND event_id = ? ORDER BY at, id LIMIT ?`,
		tenant, id, MaxEventAttempts)
	if err != nil {
		return nil, fmt.Errorf("find attempts of event %s: %w", id, err)
	}
	out := make([]switchboard.Attempt, len(rows))
	for i := range rows {
		out[i] = rows[i].attempt()
	}
	return out, nil
}

// deliveredEvents returns those of events that have a delivered attempt to
// webhook of tenant.
func (db *DB) DeliveredEvents(ctx context.Context, tenant, webhook string, events []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(events) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In(`SELECT DISTINCT event_id FROM attempts WHERE tenant_id = ? AND webhook_id = ? AND outcome = ? AND event_id IN (?)`,
		tenant, webhook, switchboard.AttemptDelivered, events)
	if err != nil {
		return nil, fmt.Errorf("delivered events of webhook %s: %w", webhook, err)
	}
	var ids []string
	if err := db.db.SelectContext(ctx, &ids, query, args...); err != nil {
		return nil, fmt.Errorf("delivered events of webhook %s: %w", webhook, err)
	}
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// PruneAttempts deletes the attempts made before cutoff, in small
// transactions so that ingestion and the API are never held up long, and
// returns how many it deleted.
func (db *DB) PruneAttempts(ctx context.Context, cutoff time.Time) (int64, error) {
	if _, err := db.ClearAttemptBodies(ctx, cutoff); err != nil {
		return 0, err
	}
	return db.deleteInBatches(ctx, "prune attempts before "+cutoff.Format(time.RFC3339),
		`DELETE FROM attempts WHERE rowid IN (SELECT rowid FROM attempts WHERE at < ? LIMIT ?)`, cutoff.UnixNano())
}

// MaxEventAttempts bounds the attempts GET /v1/events/{id} shows, the
// first ones made.
const MaxEventAttempts = 1000
