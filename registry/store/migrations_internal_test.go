package store

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/switchboard-hq/switchboard"
)

// A database written before agents existed (schema 1) keeps working: every
// agent id its webhooks use becomes an agent of the webhook's tenant, and
// the default tenant's "default" key becomes the admin key.
func TestMigrate_FromSchema1(t *testing.T) {
	ctx := context.Background()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	stmts := []string{
		`INSERT INTO tenants VALUES ('ten_d', 'default', '2026-01-01T00:00:00Z'), ('ten_o', 'other', '2026-01-01T00:00:00Z')`,
		`INSERT INTO api_keys (id, tenant_id, name, hash, created_at) VALUES
			('key_1', 'ten_d', 'default', 'h1', '2026-01-01T00:00:00Z'),
			('key_2', 'ten_d', 'ci', 'h2', '2026-01-01T00:00:00Z'),
			('key_3', 'ten_o', 'default', 'h3', '2026-01-01T00:00:00Z')`,
	}
	for i, wh := range []struct{ id, tenant, agent string }{
		{"wh_1", "ten_d", "a1"}, {"wh_2", "ten_d", "a1"}, {"wh_3", "ten_d", "a2"},
		{"wh_4", "ten_d", ""}, {"wh_5", "ten_o", "a1"},
	} {
		agent := "NULL"
		if wh.agent != "" {
			agent = "'" + wh.agent + "'"
		}
		stmts = append(stmts, `INSERT INTO webhooks VALUES ('`+wh.id+`', '`+wh.tenant+`', `+agent+`, 'n`+string(rune('0'+i))+
			`', 'https://example.com', '["*"]', 's', 30, 3, 'active', '`+created.Format(time.RFC3339)+`', '`+created.Format(time.RFC3339)+`', 'k', 'k')`)
	}
	db := openFromSchema(t, 1, stmts...)
	for tenant, want := range map[string][]string{"ten_d": {"a1", "a2"}, "ten_o": {"a1"}} {
		tctx := switchboard.NewContextWithTenant(ctx, tenant)
		agents, more, err := db.FindAgents(tctx, PageFilter{})
		if err != nil || more {
			t.Fatalf("find agents of %s: %v", tenant, err)
		}
		var ids []string
		for _, a := range agents {
			ids = append(ids, a.ID)
			if !a.CreatedAt.Equal(created) {
				t.Errorf("agent %s created %v, want its first webhook's time %v", a.ID, a.CreatedAt, created)
			}
		}
		if !slices.Equal(ids, want) {
			t.Errorf("agents of %s: %v, want %v", tenant, ids, want)
		}
		// The agents are real: deleting one deletes its webhooks.
		if tenant == "ten_d" {
			deleted, err := db.DeleteAgent(tctx, "a1")
			if err != nil || !slices.Equal(deleted, []string{"wh_1", "wh_2"}) {
				t.Errorf("delete agent a1: %v, %v", deleted, err)
			}
		}
	}
	var admins []string
	if err := db.db.SelectContext(ctx, &admins, `SELECT id FROM api_keys WHERE admin ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(admins, []string{"key_1"}) {
		t.Errorf("admin keys %v, want only the default tenant's default key", admins)
	}
}

// openFromSchema opens, with this binary's Open, a registry written by
// one of schema version: its migrations applied as they were then, and
// then stmts (the rows an old registry held).
func openFromSchema(t *testing.T, version int, stmts ...string) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registry.db")
	old, err := sqlx.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]string{}, migrations[:version]...), fmt.Sprintf("PRAGMA user_version = %d", version))
	for _, s := range append(all, stmts...) {
		if _, err := old.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
