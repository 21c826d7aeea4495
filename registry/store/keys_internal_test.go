package store

import (
	"context"
	"testing"
)

// A registry of schema 6 keeps its admin keys admin and gives its other
// keys scope manage: each may do what it did before scopes.
func TestMigrate_KeyScopesFromSchema6(t *testing.T) {
	ctx := context.Background()
	db := openFromSchema(t, 6,
		`INSERT INTO tenants VALUES ('ten_d', 'default', '2026-01-01T00:00:00Z')`,
		`INSERT INTO api_keys (id, tenant_id, name, hash, created_at, admin) VALUES
			('key_1', 'ten_d', 'default', 'h1', '2026-01-01T00:00:00Z', 1),
			('key_2', 'ten_d', 'ci', 'h2', '2026-01-01T00:00:00Z', 0)`)
	keys, _, err := db.FindKeys(ctx, "ten_d", PageFilter{})
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys: %+v, %v", keys, err)
	}
	for _, k := range keys {
		want := map[string]Scope{"key_1": ScopeAdmin, "key_2": ScopeManage}[k.ID]
		if k.Scope != want || k.Admin != (want == ScopeAdmin) || k.ExpiresAt != nil {
			t.Errorf("key %s: scope %s admin %v expires %v; want scope %s, no expiry", k.ID, k.Scope, k.Admin, k.ExpiresAt, want)
		}
	}
}
