package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
)

// Page sizes of the lists (webhooks, agents, attempts, dead letters).
const (
	DefaultPageSize = 50
	MaxPageSize     = 250
)

// pageLimit is the page size a store's Find uses for a filter's Limit n:
// DefaultPageSize when n is 0 or less, at most MaxPageSize.
func pageLimit(n int) int {
	if n <= 0 {
		return DefaultPageSize
	}
	return min(n, MaxPageSize)
}

// Webhook is a webhook as the registry keeps it: the form the workers read
// from the KV bucket, plus the names of the API keys that created it and
// changed it last.
type Webhook struct {
	switchboard.Webhook
	CreatedBy string
	UpdatedBy string
}

// WebhookFilter selects the webhooks FindWebhooks returns, in id order
// (which is creation order).
type WebhookFilter struct {
	AgentID   string                    // only webhooks scoped to this agent; "" for all
	Status    switchboard.WebhookStatus // only webhooks in this status; "" for all
	EventType string                    // only webhooks with a pattern matching this type; "" for all
	After     string                    // the cursor: only webhooks whose id sorts after it
	Limit     int                       // at most this many (0: DefaultPageSize; capped at MaxPageSize)
}

// CreateWebhook stores wh as a new webhook of the tenant in ctx and queues
// its mirroring into KV (see Mirror). It sets wh's ID, TenantID, CreatedAt,
// UpdatedAt and, from the actor in ctx, CreatedBy and UpdatedBy; the other
// fields must be valid already. It returns EUNAUTHORIZED when ctx carries no
// tenant, ENOTFOUND when the tenant does not exist, and ECONFLICT when the
// name is taken in wh's scope (the tenant, or wh.AgentID).
// It returns ENOTFOUND, naming the agent, when wh.AgentID is not an agent of
// the tenant (see PutAgent), and EINVALID when the tenant has its quota of
// webhooks already or wh more custom headers than its quota (see Quotas).
func (db *DB) CreateWebhook(ctx context.Context, wh *Webhook) error {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return fmt.Errorf("create webhook: %w", err)
	}
	t := Now()
	wh.ID = switchboard.NewID("wh_")
	wh.TenantID = tenant
	wh.CreatedAt, wh.UpdatedAt = t, t
	wh.CreatedBy = switchboard.ActorFromContext(ctx)
	wh.UpdatedBy = wh.CreatedBy
	if err := db.Quotas.checkHeaders(wh); err != nil {
		return fmt.Errorf("create webhook %s: %w", wh.ID, err)
	}
	row, err := newWebhookRow(wh, db.EncryptionKey)
	if err != nil {
		return fmt.Errorf("create webhook %s: %w", wh.ID, err)
	}
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		if wh.AgentID != "" {
			if err := checkAgentExists(ctx, tx, tenant, wh.AgentID); err != nil {
				return err
			}
		}
		if err := checkCount(ctx, tx, "webhooks", tenant, db.Quotas.WebhooksPerTenant, "webhooks", "webhooks"); err != nil {
			return err
		}
		_, err := tx.NamedExecContext(ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES (`+webhookParams+`)`, row)
		switch {
		case isConstraint(err, sqlite3.ErrConstraintUnique):
			return errNameTaken
		case isConstraint(err, sqlite3.ErrConstraintForeignKey):
			return switchboard.Errorf(switchboard.ENOTFOUND, "Tenant not found.")
		case err != nil:
			return err
		}
		return insertOutbox(ctx, tx, wh.ID)
	})
	if err != nil {
		return fmt.Errorf("create webhook %s: %w", wh.ID, err)
	}
	return nil
}

var errNameTaken = &switchboard.Error{
	Code:    switchboard.ECONFLICT,
	Message: "The name is already taken.",
	Fields:  map[string][]string{"name": {"is already taken by another webhook in the same scope"}},
}

// UpdateWebhook changes the webhook of the tenant in ctx with the given id:
// in one transaction it reads it, lets update change it (secrets and
// credentials in plaintext), stores the result and queues its mirroring into
// KV. It sets UpdatedAt and, from the actor in ctx, UpdatedBy; update must
// leave the other fields valid and must not change ID, TenantID or
// CreatedAt. It returns the stored webhook, update's error as it is (e.g.
// EINVALID), EUNAUTHORIZED when ctx carries no tenant, ENOTFOUND when the
// tenant has no such webhook and ECONFLICT when the new name is taken in
// the webhook's scope. A webhook set active again starts with no failures
// counted (see webhookStatusChanged).
func (db *DB) UpdateWebhook(ctx context.Context, id string, update func(wh *Webhook) error) (*Webhook, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return nil, fmt.Errorf("update webhook %s: %w", id, err)
	}
	var wh *Webhook
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		wh, err = db.findWebhook(ctx, tx, id, tenant)
		if err != nil {
			return err
		}
		prev := wh.Status
		if err := update(wh); err != nil {
			return err
		}
		if err := db.Quotas.checkHeaders(wh); err != nil {
			return err
		}
		wh.UpdatedAt = Now()
		wh.UpdatedBy = switchboard.ActorFromContext(ctx)
		row, err := newWebhookRow(wh, db.EncryptionKey)
		if err != nil {
			return err
		}
		_, err = tx.NamedExecContext(ctx, `UPDATE webhooks SET `+webhookUpdates+` WHERE id = :id AND tenant_id = :tenant_id`, row)
		if isConstraint(err, sqlite3.ErrConstraintUnique) {
			return errNameTaken
		}
		if err != nil {
			return err
		}
		if err := webhookStatusChanged(ctx, tx, prev, wh); err != nil {
			return err
		}
		return insertOutbox(ctx, tx, id)
	})
	if err != nil {
		return nil, fmt.Errorf("update webhook %s: %w", id, err)
	}
	return wh, nil
}

// FindWebhookByID returns the webhook of the tenant in ctx with the given
// id. It returns EUNAUTHORIZED when ctx carries no tenant and ENOTFOUND when
// the tenant has no such webhook, whether or not another tenant has.
func (db *DB) FindWebhookByID(ctx context.Context, id string) (*Webhook, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return nil, fmt.Errorf("find webhook %s: %w", id, err)
	}
	wh, err := db.findWebhook(ctx, db.db, id, tenant)
	if err != nil {
		return nil, fmt.Errorf("find webhook %s: %w", id, err)
	}
	return wh, nil
}

// findWebhook reads webhook id of tenant through q (the database or a
// transaction), its secrets and credentials opened.
func (db *DB) findWebhook(ctx context.Context, q sqlx.QueryerContext, id, tenant string) (*Webhook, error) {
	var row webhookRow
	err := sqlx.GetContext(ctx, q, &row, `SELECT `+webhookColumns+` FROM webhooks WHERE id = ? AND tenant_id = ?`, id, tenant)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "Webhook not found.")
	}
	if err != nil {
		return nil, err
	}
	return row.opened(db.EncryptionKey)
}

// FindWebhooks returns a page of the webhooks of the tenant in ctx that f
// selects, in id order, and whether more follow. It returns EUNAUTHORIZED
// when ctx carries no tenant.
func (db *DB) FindWebhooks(ctx context.Context, f WebhookFilter) ([]*Webhook, bool, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("find webhooks: %w", err)
	}
	limit := pageLimit(f.Limit)

	where := []string{"tenant_id = ?", "id > ?"}
	args := []any{tenant, f.After}
	const afterArg = 1
	if f.AgentID != "" {
		where = append(where, "agent_id = ?")
		args = append(args, f.AgentID)
	}
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	// Event-type patterns are matched in Go (switchboard.MatchEventType),
	// so with that filter rows are read in batches until the page is full.
	batch := limit + 1
	if f.EventType != "" {
		batch = MaxPageSize + 1
	}
	args = append(args, batch)
	query := `SELECT ` + webhookColumns + ` FROM webhooks WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id LIMIT ?`

	var page []*Webhook
	for {
		var rows []webhookRow
		if err := db.db.SelectContext(ctx, &rows, query, args...); err != nil {
			return nil, false, fmt.Errorf("find webhooks: %w", err)
		}
		for _, row := range rows {
			args[afterArg] = row.ID
			wh, err := row.opened(db.EncryptionKey)
			if err != nil {
				return nil, false, fmt.Errorf("find webhooks: %w", err)
			}
			if f.EventType != "" && !slices.ContainsFunc(wh.Events, func(p string) bool {
				return switchboard.MatchEventType(p, f.EventType)
			}) {
				continue
			}
			if len(page) == limit {
				return page, true, nil
			}
			page = append(page, wh)
		}
		if len(rows) < batch {
			return page, false, nil
		}
	}
}

// DeleteWebhook deletes the webhook of the tenant in ctx with the given id
// and queues the removal of its KV entry. It returns EUNAUTHORIZED when ctx
// carries no tenant and ENOTFOUND when the tenant has no such webhook.
func (db *DB) DeleteWebhook(ctx context.Context, id string) error {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ? AND tenant_id = ?`, id, tenant)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return switchboard.Errorf(switchboard.ENOTFOUND, "Webhook not found.")
		}
		return insertOutbox(ctx, tx, id)
	})
	if err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	return nil
}

// CheckEncryptionKey reports whether EncryptionKey can read what is stored,
// so that a missing or changed key stops a start rather than failing every
// request and delivery later: it opens one sealed value, if any is stored.
// The error wraps sealed.ErrNoKey or sealed.ErrOpen.
func (db *DB) CheckEncryptionKey(ctx context.Context) error {
	var rows []webhookRow
	err := db.db.SelectContext(ctx, &rows, `SELECT `+webhookColumns+` FROM webhooks WHERE substr(secret, 1, ?) = ? LIMIT 1`,
		len(sealed.Prefix), sealed.Prefix)
	if err != nil {
		return fmt.Errorf("check encryption key: %w", err)
	}
	for _, row := range rows {
		if _, err := row.opened(db.EncryptionKey); err != nil {
			return fmt.Errorf("check encryption key: the registry holds encrypted secrets that this key cannot read: %w", err)
		}
	}
	return nil
}

// TenantFrom returns the tenant that ctx acts for.
func TenantFrom(ctx context.Context) (string, error) {
	if t := switchboard.TenantFromContext(ctx); t != "" {
		return t, nil
	}
	return "", switchboard.Errorf(switchboard.EUNAUTHORIZED, "The request is not authenticated.")
}
