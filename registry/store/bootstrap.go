package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/switchboard-hq/switchboard"
)

// Bootstrap prepares a registry for `switchboard serve`: it ensures the
// default tenant exists and has a key. The key called "default" that it
// creates or ensures is an admin key (it may create tenants and keys).
//
// With apiKey set (`--api-key`), that key becomes the default tenant's key
// called "default" (EnsureKey: idempotent; a different earlier value stops
// working) and newKey is "". Otherwise, when the tenant has no key yet, one
// is generated and returned as newKey, for the caller to print once; later
// calls return "". Errors are those of EnsureTenant, EnsureKey and
// CreateKey (EINVALID for an unusable apiKey, ECONFLICT when it is another
// tenant's key).
func Bootstrap(ctx context.Context, db *DB, apiKey string) (tenant Tenant, newKey string, err error) {
	tenant, err = db.EnsureTenant(ctx, DefaultTenantName)
	if err != nil {
		return Tenant{}, "", fmt.Errorf("bootstrap: %w", err)
	}
	if apiKey != "" {
		if _, err := db.EnsureKey(ctx, tenant.ID, DefaultKeyName, apiKey, AdminKey(true)); err != nil {
			return Tenant{}, "", fmt.Errorf("bootstrap: %w", err)
		}
		return tenant, "", nil
	}
	n, err := db.CountKeys(ctx, tenant.ID)
	if err != nil {
		return Tenant{}, "", fmt.Errorf("bootstrap: %w", err)
	}
	if n > 0 {
		return tenant, "", nil
	}
	newKey, _, err = db.CreateKey(ctx, tenant.ID, DefaultKeyName, AdminKey(true))
	if switchboard.ErrorCode(err) == switchboard.ECONFLICT {
		// Another process bootstrapping at the same moment created it and
		// prints it.
		return tenant, "", nil
	}
	if err != nil {
		return Tenant{}, "", fmt.Errorf("bootstrap: %w", err)
	}
	return tenant, newKey, nil
}

// MirrorID returns this database's id as the owner of a KV mirror, made at
// its first call and kept in the file (table registry_meta): Mirror.Claim
// writes it into the bucket, so that a registry on another database, or on
// an empty one (a volume not mounted), recognises a bucket that is not its
// own. The table is made here rather than by a migration: it holds nothing
// but this id, and needs no schema version of its own.
func (db *DB) MirrorID(ctx context.Context) (string, error) {
	var id string
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS registry_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO registry_meta (name, value) VALUES ('mirror_id', ?)`, switchboard.NewID("db_")); err != nil {
			return err
		}
		return tx.GetContext(ctx, &id, `SELECT value FROM registry_meta WHERE name = 'mirror_id'`)
	})
	if err != nil {
		return "", fmt.Errorf("mirror id: %w", err)
	}
	return id, nil
}
