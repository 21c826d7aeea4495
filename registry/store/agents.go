package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"

	"github.com/switchboard-hq/switchboard"
)

// Agent is an agent of a tenant: a person or bot of the customer's platform
// whom webhooks may be scoped to. Its id is the customer's own
// (switchboard.ValidAgentID), unique within the tenant.
type Agent struct {
	ID        string    `db:"id"`
	TenantID  string    `db:"tenant_id"`
	Name      string    `db:"name"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

// PageFilter selects a page of a list in id order.
type PageFilter struct {
	After string // the cursor: only objects whose id sorts after it
	Limit int    // at most this many (0: DefaultPageSize; capped at MaxPageSize)
}

const agentColumns = `tenant_id, id, name, created_at, updated_at`

// PutAgent creates the agent id of the tenant in ctx, or updates it when it
// exists: name, when not nil, replaces its name (a new agent's name is ""
// otherwise). It reports whether the agent was created. The id and name
// must be valid already. It returns EUNAUTHORIZED when ctx carries no
// tenant, ENOTFOUND when the tenant does not exist and EINVALID when a new
// agent would exceed the tenant's quota (see Quotas).
func (db *DB) PutAgent(ctx context.Context, id string, name *string) (Agent, bool, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return Agent{}, false, fmt.Errorf("put agent %q: %w", id, err)
	}
	var (
		a       Agent
		created bool
	)
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		err := tx.GetContext(ctx, &a, `SELECT `+agentColumns+` FROM agents WHERE tenant_id = ? AND id = ?`, tenant, id)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if err := checkCount(ctx, tx, "agents", tenant, db.Quotas.AgentsPerTenant, "agent_id", "agents"); err != nil {
				return err
			}
			created = true
			t := Now()
			a = Agent{ID: id, TenantID: tenant, CreatedAt: t, UpdatedAt: t}
			if name != nil {
				a.Name = *name
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES (?, ?, ?, ?, ?)`,
				a.TenantID, a.ID, a.Name, a.CreatedAt, a.UpdatedAt)
			if isConstraint(err, sqlite3.ErrConstraintForeignKey) {
				return switchboard.Errorf(switchboard.ENOTFOUND, "Tenant not found.")
			}
			return err
		case err != nil:
			return err
		case name == nil || *name == a.Name:
			return nil // unchanged: updated_at stays
		}
		a.Name, a.UpdatedAt = *name, Now()
		_, err = tx.ExecContext(ctx, `UPDATE agents SET name = ?, updated_at = ? WHERE tenant_id = ? AND id = ?`,
			a.Name, a.UpdatedAt, tenant, id)
		return err
	})
	if err != nil {
		return Agent{}, false, fmt.Errorf("put agent %q: %w", id, err)
	}
	return a, created, nil
}

// FindAgentByID returns the agent id of the tenant in ctx. It returns
// EUNAUTHORIZED when ctx carries no tenant and ENOTFOUND when the tenant
// has no such agent, whether or not another tenant has.
func (db *DB) FindAgentByID(ctx context.Context, id string) (Agent, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return Agent{}, fmt.Errorf("find agent %q: %w", id, err)
	}
	var a Agent
	err = db.db.GetContext(ctx, &a, `SELECT `+agentColumns+` FROM agents WHERE tenant_id = ? AND id = ?`, tenant, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Agent{}, AgentNotFound(id)
	}
	if err != nil {
		return Agent{}, fmt.Errorf("find agent %q: %w", id, err)
	}
	return a, nil
}

// FindAgents returns a page of the agents of the tenant in ctx, in id
// order, and whether more follow. It returns EUNAUTHORIZED when ctx carries
// no tenant.
func (db *DB) FindAgents(ctx context.Context, f PageFilter) ([]Agent, bool, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("find agents: %w", err)
	}
	limit := pageLimit(f.Limit)
	var agents []Agent
	err = db.db.SelectContext(ctx, &agents,
		`SELECT `+agentColumns+` FROM agents WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?`, tenant, f.After, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("find agents: %w", err)
	}
	if len(agents) > limit {
		return agents[:limit], true, nil
	}
	return agents, false, nil
}

// DeleteAgent deletes the agent id of the tenant in ctx and its webhooks,
// queueing the removal of each webhook's KV entry, and returns the ids of
// the webhooks deleted. It returns EUNAUTHORIZED when ctx carries no tenant
// and ENOTFOUND when the tenant has no such agent.
func (db *DB) DeleteAgent(ctx context.Context, id string) ([]string, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return nil, fmt.Errorf("delete agent %q: %w", id, err)
	}
	var webhooks []string
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM agents WHERE tenant_id = ? AND id = ?`, tenant, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return AgentNotFound(id)
		}
		if err := tx.SelectContext(ctx, &webhooks,
			`DELETE FROM webhooks WHERE tenant_id = ? AND agent_id = ? RETURNING id`, tenant, id); err != nil {
			return err
		}
		for _, wh := range webhooks {
			if err := insertOutbox(ctx, tx, wh); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete agent %q: %w", id, err)
	}
	return webhooks, nil
}

// checkAgentExists returns ENOTFOUND, naming the agent, unless the tenant
// has agent id. It runs in the transaction that scopes a webhook to the
// agent, so that the agent cannot be deleted in between.
func checkAgentExists(ctx context.Context, tx *sqlx.Tx, tenant, id string) error {
	var n int
	if err := tx.GetContext(ctx, &n, `SELECT count(*) FROM agents WHERE tenant_id = ? AND id = ?`, tenant, id); err != nil {
		return fmt.Errorf("check agent %q: %w", id, err)
	}
	if n == 0 {
		return AgentNotFound(id)
	}
	return nil
}

func AgentNotFound(id string) error {
	return switchboard.Errorf(switchboard.ENOTFOUND, "Agent %s not found.", Quote(id))
}
