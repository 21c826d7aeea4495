package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The backlog: per webhook, the deliveries owed (the ledger's matched rows,
// audit_ledger.go) that are not settled yet. A delivery is settled when the
// last attempt recorded of it is delivered or dead_lettered, as the audit
// counts them (audit.go), and a deleted webhook has no backlog (the audit's
// webhook_deleted). Triggers (migration 11) keep a row per webhook with its
// count in the transaction that stores the matched record or the attempt,
// so that reading the top webhooks costs a row per webhook whatever the
// size of the backlog, and a record ingested twice counts once.
//
// What the backlog cannot see, unlike the audit: a dead letter in SB_DEAD
// whose attempt record was lost (counted by the workers in
// switchboard_attempts_unrecorded_total) stays counted until the ledger is
// pruned with the attempt log.

// Bounds of GET /v1/backlog.
const (
	DefaultBacklogLimit = 20
	MaxBacklogLimit     = 1000
)

// BacklogWebhook is the backlog of one webhook.
type BacklogWebhook struct {
	TenantID  string `json:"tenant_id"`
	WebhookID string `json:"webhook_id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	// Pending counts the deliveries owed to it that are not settled.
	Pending int64 `json:"pending"`
	// OldestMatchedAt is when the oldest of them was matched.
	OldestMatchedAt time.Time `json:"oldest_matched_at"`
}

// BacklogReport is the top webhooks by backlog.
type BacklogReport struct {
	// ReadAt is when the counts were read.
	ReadAt time.Time `json:"read_at"`
	// TenantID is the tenant the report is of; "" for every tenant.
	TenantID string `json:"tenant_id,omitempty"`
	Limit    int    `json:"limit"`
	// TotalPending and Webhooks count every webhook with a backlog, not
	// only those listed.
	TotalPending int64            `json:"total_pending"`
	Webhooks     int              `json:"webhooks"`
	Data         []BacklogWebhook `json:"data"`
}

// backlogRow is a row of the top-N query.
type backlogRow struct {
	TenantID  string `db:"tenant_id"`
	WebhookID string `db:"webhook_id"`
	Name      string `db:"name"`
	Status    string `db:"status"`
	Pending   int64  `db:"pending"`
	Oldest    int64  `db:"oldest"`
}

// Backlog returns up to limit webhooks with the most deliveries not
// settled, largest first, of tenant ("" for every tenant), and the totals,
// all read in one snapshot.
func (db *DB) Backlog(ctx context.Context, tenant string, limit int) (*BacklogReport, error) {
	if limit <= 0 {
		limit = DefaultBacklogLimit
	}
	tx, err := db.db.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read the backlog: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	rep := &BacklogReport{ReadAt: time.Now().UTC(), TenantID: tenant, Limit: limit, Data: []BacklogWebhook{}}
	// The tenant filter is "? = '' OR": one query plan for both; a row per
	// webhook is cheap to read whole.
	const of = `FROM backlog b JOIN webhooks w ON w.id = b.webhook_id AND w.tenant_id = b.tenant_id
		WHERE b.pending > 0 AND (? = '' OR b.tenant_id = ?)`
	var totals struct {
		Pending  int64 `db:"pending"`
		Webhooks int   `db:"webhooks"`
	}
	if err := tx.GetContext(ctx, &totals, `SELECT ifnull(sum(b.pending), 0) AS pending, count(*) AS webhooks `+of, tenant, tenant); err != nil {
		return nil, fmt.Errorf("read the backlog's totals: %w", err)
	}
	rep.TotalPending, rep.Webhooks = totals.Pending, totals.Webhooks
	var rows []backlogRow
	err = tx.SelectContext(ctx, &rows, `SELECT b.tenant_id, b.webhook_id, w.name, w.status, b.pending,
		ifnull((SELECT min(m.matched_at) FROM matched m WHERE m.webhook_id = b.webhook_id AND m.settled = 0), 0) AS oldest `+
		of+` ORDER BY b.pending DESC, b.webhook_id DESC LIMIT ?`, tenant, tenant, limit)
	if err != nil {
		return nil, fmt.Errorf("read the backlog's top %d: %w", limit, err)
	}
	for _, r := range rows {
		rep.Data = append(rep.Data, BacklogWebhook{TenantID: r.TenantID, WebhookID: r.WebhookID, Name: r.Name, Status: r.Status,
			Pending: r.Pending, OldestMatchedAt: time.Unix(0, r.Oldest).UTC()})
	}
	return rep, nil
}
