package registry

import (
	"context"
	"fmt"

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
