package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"

	"github.com/switchboard-hq/switchboard"
)

// Page sizes of FindWebhooks.
const (
	DefaultPageSize = 50
	MaxPageSize     = 250
)

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
// the tenant (see PutAgent).
func (db *DB) CreateWebhook(ctx context.Context, wh *Webhook) error {
	tenant, err := tenantFrom(ctx)
	if err != nil {
		return fmt.Errorf("create webhook: %w", err)
	}
	t := now()
	wh.ID = switchboard.NewID("wh_")
	wh.TenantID = tenant
	wh.CreatedAt, wh.UpdatedAt = t, t
	wh.CreatedBy = switchboard.ActorFromContext(ctx)
	wh.UpdatedBy = wh.CreatedBy
	row, err := newWebhookRow(wh)
	if err != nil {
		return fmt.Errorf("create webhook %s: %w", wh.ID, err)
	}
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		if wh.AgentID != "" {
			if err := checkAgentExists(ctx, tx, tenant, wh.AgentID); err != nil {
				return err
			}
		}
		_, err := tx.NamedExecContext(ctx, `INSERT INTO webhooks (`+webhookColumns+`) VALUES (`+webhookParams+`)`, row)
		switch {
		case isConstraint(err, sqlite3.ErrConstraintUnique):
			return &switchboard.Error{
				Code:    switchboard.ECONFLICT,
				Message: "The name is already taken.",
				Fields:  map[string][]string{"name": {"is already taken by another webhook in the same scope"}},
			}
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

// FindWebhookByID returns the webhook of the tenant in ctx with the given
// id. It returns EUNAUTHORIZED when ctx carries no tenant and ENOTFOUND when
// the tenant has no such webhook, whether or not another tenant has.
func (db *DB) FindWebhookByID(ctx context.Context, id string) (*Webhook, error) {
	tenant, err := tenantFrom(ctx)
	if err != nil {
		return nil, fmt.Errorf("find webhook %s: %w", id, err)
	}
	var row webhookRow
	err = db.db.GetContext(ctx, &row, `SELECT `+webhookColumns+` FROM webhooks WHERE id = ? AND tenant_id = ?`, id, tenant)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "Webhook not found.")
	}
	if err != nil {
		return nil, fmt.Errorf("find webhook %s: %w", id, err)
	}
	wh, err := row.webhook()
	if err != nil {
		return nil, fmt.Errorf("find webhook %s: %w", id, err)
	}
	return wh, nil
}

// FindWebhooks returns a page of the webhooks of the tenant in ctx that f
// selects, in id order, and whether more follow. It returns EUNAUTHORIZED
// when ctx carries no tenant.
func (db *DB) FindWebhooks(ctx context.Context, f WebhookFilter) ([]*Webhook, bool, error) {
	tenant, err := tenantFrom(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("find webhooks: %w", err)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)

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
			wh, err := row.webhook()
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
	tenant, err := tenantFrom(ctx)
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

// tenantFrom returns the tenant that ctx acts for.
func tenantFrom(ctx context.Context) (string, error) {
	if t := switchboard.TenantFromContext(ctx); t != "" {
		return t, nil
	}
	return "", switchboard.Errorf(switchboard.EUNAUTHORIZED, "The request is not authenticated.")
}

const (
	webhookColumns = `id, tenant_id, agent_id, name, url, events, secret, timeout, max_retries, status, created_at, updated_at, created_by, updated_by`
	webhookParams  = `:id, :tenant_id, :agent_id, :name, :url, :events, :secret, :timeout, :max_retries, :status, :created_at, :updated_at, :created_by, :updated_by`
)

// webhookRow is a row of the webhooks table.
type webhookRow struct {
	ID         string         `db:"id"`
	TenantID   string         `db:"tenant_id"`
	AgentID    sql.NullString `db:"agent_id"`
	Name       string         `db:"name"`
	URL        string         `db:"url"`
	Events     string         `db:"events"`
	Secret     string         `db:"secret"`
	Timeout    int            `db:"timeout"`
	MaxRetries int            `db:"max_retries"`
	Status     string         `db:"status"`
	CreatedAt  time.Time      `db:"created_at"`
	UpdatedAt  time.Time      `db:"updated_at"`
	CreatedBy  string         `db:"created_by"`
	UpdatedBy  string         `db:"updated_by"`
}

func newWebhookRow(wh *Webhook) (webhookRow, error) {
	events, err := json.Marshal(wh.Events)
	if err != nil {
		return webhookRow{}, fmt.Errorf("encode events: %w", err)
	}
	return webhookRow{
		ID:         wh.ID,
		TenantID:   wh.TenantID,
		AgentID:    sql.NullString{String: wh.AgentID, Valid: wh.AgentID != ""},
		Name:       wh.Name,
		URL:        wh.URL,
		Events:     string(events),
		Secret:     wh.Secret,
		Timeout:    wh.TimeoutSeconds,
		MaxRetries: wh.MaxRetries,
		Status:     string(wh.Status),
		CreatedAt:  wh.CreatedAt,
		UpdatedAt:  wh.UpdatedAt,
		CreatedBy:  wh.CreatedBy,
		UpdatedBy:  wh.UpdatedBy,
	}, nil
}

func (r *webhookRow) webhook() (*Webhook, error) {
	var events []string
	if err := json.Unmarshal([]byte(r.Events), &events); err != nil {
		return nil, fmt.Errorf("decode events of webhook %s: %w", r.ID, err)
	}
	return &Webhook{
		Webhook: switchboard.Webhook{
			ID:             r.ID,
			TenantID:       r.TenantID,
			AgentID:        r.AgentID.String,
			Name:           r.Name,
			URL:            r.URL,
			Events:         events,
			Secret:         r.Secret,
			TimeoutSeconds: r.Timeout,
			MaxRetries:     r.MaxRetries,
			Status:         switchboard.WebhookStatus(r.Status),
			CreatedAt:      r.CreatedAt,
			UpdatedAt:      r.UpdatedAt,
		},
		CreatedBy: r.CreatedBy,
		UpdatedBy: r.UpdatedBy,
	}, nil
}
