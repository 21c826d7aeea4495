package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/switchboard-hq/switchboard"
)

// Names of what Bootstrap creates.
const (
	DefaultTenantName = "default"
	DefaultKeyName    = "default"
)

// API keys: KeyPrefix followed by keyDigits base62 digits of 32 random bytes
// when generated. A key given by an operator (EnsureKey) may have any form
// within MinKeyLength..MaxKeyLength printable characters.
const (
	KeyPrefix    = "sk_"
	MinKeyLength = 16
	MaxKeyLength = 255
	keyDigits    = 43 // 62^43 > 2^256

	// keyUsageResolution is how stale last_used_at may get, so that
	// authentication writes at most once a minute per key.
	keyUsageResolution = time.Minute
)

// Tenant is a customer account: every API key and webhook belongs to one.
type Tenant struct {
	ID        string    `db:"id"`
	Name      string    `db:"name"`
	CreatedAt time.Time `db:"created_at"`
}

// Key is an API key. Only its SHA-256 is stored: the plaintext is shown
// once, when the key is created. Its Scope says which routes it may use:
// an admin key (Admin is true exactly when Scope is ScopeAdmin) may also
// administer tenants and their keys (/v1/tenants...); otherwise it acts
// for its tenant only.
type Key struct {
	ID         string     `db:"id"`
	TenantID   string     `db:"tenant_id"`
	Name       string     `db:"name"`
	Admin      bool       `db:"admin"`
	Scope      Scope      `db:"scope"`
	CreatedAt  time.Time  `db:"created_at"`
	ExpiresAt  *time.Time `db:"expires_at"` // nil: never
	LastUsedAt *time.Time `db:"last_used_at"`
}

const keyColumns = `id, tenant_id, name, admin, scope, created_at, expires_at, last_used_at`

// KeyOption sets a property of a key that CreateKey or EnsureKey makes.
type KeyOption func(*Key)

// AdminKey makes the key an admin key (admin true) or, when it is one, a
// manage key (admin false).
func AdminKey(admin bool) KeyOption {
	return func(k *Key) {
		switch {
		case admin:
			KeyScope(ScopeAdmin)(k)
		case k.Scope == ScopeAdmin:
			KeyScope(ScopeManage)(k)
		}
	}
}

// CreateTenant creates a tenant called name. It returns EINVALID when name
// is blank or longer than 255 characters and ECONFLICT when a tenant of
// that name exists; the error's message names the existing tenant's id.
func (db *DB) CreateTenant(ctx context.Context, name string) (Tenant, error) {
	fe := switchboard.FieldErrors{}
	CheckName(fe, "name", name)
	if err := fe.Err(); err != nil {
		return Tenant{}, fmt.Errorf("create tenant: %w", err)
	}
	t := Tenant{ID: switchboard.NewID("ten_"), Name: name, CreatedAt: Now()}
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		var existing string
		err := tx.GetContext(ctx, &existing, `SELECT id FROM tenants WHERE name = ?`, name)
		switch {
		case err == nil:
			return &switchboard.Error{
				Code:    switchboard.ECONFLICT,
				Message: fmt.Sprintf("A tenant called %q exists already (%s).", name, existing),
				Fields:  map[string][]string{"name": {"is already taken by another tenant"}},
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)`, t.ID, t.Name, t.CreatedAt)
		return err
	})
	if err != nil {
		return Tenant{}, fmt.Errorf("create tenant %q: %w", name, err)
	}
	return t, nil
}

// FindTenantByName returns the tenant called name, or ENOTFOUND.
func (db *DB) FindTenantByName(ctx context.Context, name string) (Tenant, error) {
	var t Tenant
	err := db.db.GetContext(ctx, &t, `SELECT id, name, created_at FROM tenants WHERE name = ?`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return Tenant{}, switchboard.Errorf(switchboard.ENOTFOUND, "Tenant %q not found.", name)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("find tenant %q: %w", name, err)
	}
	return t, nil
}

// EnsureTenant returns the tenant called name, creating it when there is
// none. It returns an EINVALID error when name is blank or longer than 255
// characters.
func (db *DB) EnsureTenant(ctx context.Context, name string) (Tenant, error) {
	fe := switchboard.FieldErrors{}
	CheckName(fe, "name", name)
	if err := fe.Err(); err != nil {
		return Tenant{}, fmt.Errorf("ensure tenant: %w", err)
	}
	var t Tenant
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			switchboard.NewID("ten_"), name, Now()); err != nil {
			return err
		}
		return tx.GetContext(ctx, &t, `SELECT id, name, created_at FROM tenants WHERE name = ?`, name)
	})
	if err != nil {
		return Tenant{}, fmt.Errorf("ensure tenant %q: %w", name, err)
	}
	return t, nil
}

// Now is the registry's clock: UTC, to the microsecond.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// FindTenants returns a page of the tenants, in id order, and whether more
// follow.
func (db *DB) FindTenants(ctx context.Context, f PageFilter) ([]Tenant, bool, error) {
	limit := pageLimit(f.Limit)
	var ts []Tenant
	err := db.db.SelectContext(ctx, &ts, `SELECT id, name, created_at FROM tenants WHERE id > ? ORDER BY id LIMIT ?`, f.After, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("find tenants: %w", err)
	}
	if len(ts) > limit {
		return ts[:limit], true, nil
	}
	return ts, false, nil
}

// FindTenant returns the tenant whose id or, failing that, name is
// idOrName, so that operators may name a tenant either way. It returns
// ENOTFOUND when there is none.
func (db *DB) FindTenant(ctx context.Context, idOrName string) (Tenant, error) {
	var t Tenant
	err := db.db.GetContext(ctx, &t, `SELECT id, name, created_at FROM tenants WHERE id = ? OR name = ?
		ORDER BY id = ? DESC LIMIT 1`, idOrName, idOrName, idOrName)
	if errors.Is(err, sql.ErrNoRows) {
		return Tenant{}, tenantNotFound(idOrName)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("find tenant %q: %w", idOrName, err)
	}
	return t, nil
}

// TenantCounts are how many objects of each kind a tenant has in the
// registry: what TenantUsage reports and DeleteTenant removes.
type TenantCounts struct {
	Webhooks   int `db:"webhooks" json:"webhooks"`
	Agents     int `db:"agents" json:"agents"`
	Keys       int `db:"keys" json:"keys"`
	EventTypes int `db:"event_types" json:"event_types"`
	Attempts   int `db:"attempts" json:"attempts"`
}

const tenantCountsQuery = `SELECT
	(SELECT count(*) FROM webhooks WHERE tenant_id = ?1) AS webhooks,
	(SELECT count(*) FROM agents WHERE tenant_id = ?1) AS agents,
	(SELECT count(*) FROM api_keys WHERE tenant_id = ?1) AS keys,
	(SELECT count(*) FROM event_types WHERE tenant_id = ?1) AS event_types,
	(SELECT count(*) FROM attempts WHERE tenant_id = ?1) AS attempts`

// TenantUsage returns the counts of the tenant's objects, or ENOTFOUND.
func (db *DB) TenantUsage(ctx context.Context, tenantID string) (TenantCounts, error) {
	var c TenantCounts
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		if err := checkTenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		return tx.GetContext(ctx, &c, tenantCountsQuery, tenantID)
	})
	if err != nil {
		return TenantCounts{}, fmt.Errorf("count objects of tenant %s: %w", tenantID, err)
	}
	return c, nil
}

// DeleteTenant deletes the tenant and everything the registry holds of it
// in one transaction: webhooks (queueing the removal of each one's KV
// entry, as DeleteWebhook does), agents, API keys, event types and the
// attempt log. It returns what it deleted and the ids of the webhooks, for
// the caller to flush the mirror. Dead letters are in SB_DEAD, not here
// (see PurgeTenantDeadLetters). It returns ENOTFOUND when the tenant does
// not exist.
func (db *DB) DeleteTenant(ctx context.Context, tenantID string) (TenantCounts, []string, error) {
	var c TenantCounts
	var webhooks []string
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		if err := checkTenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		if err := tx.GetContext(ctx, &c, tenantCountsQuery, tenantID); err != nil {
			return err
		}
		if err := tx.SelectContext(ctx, &webhooks, `DELETE FROM webhooks WHERE tenant_id = ? RETURNING id`, tenantID); err != nil {
			return err
		}
		for _, id := range webhooks {
			if err := insertOutbox(ctx, tx, id); err != nil {
				return err
			}
		}
		for _, q := range []string{
			`DELETE FROM agents WHERE tenant_id = ?`,
			`DELETE FROM event_types WHERE tenant_id = ?`,
			`DELETE FROM attempt_bodies WHERE attempt_id IN (SELECT id FROM attempts WHERE tenant_id = ?)`,
			`DELETE FROM attempts WHERE tenant_id = ?`,
			`DELETE FROM matched WHERE tenant_id = ?`,
			`DELETE FROM tenants WHERE id = ?`, // its keys cascade
		} {
			if _, err := tx.ExecContext(ctx, q, tenantID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return TenantCounts{}, nil, fmt.Errorf("delete tenant %s: %w", tenantID, err)
	}
	return c, webhooks, nil
}
