package api_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// A key stops authenticating at its expires_at.
func TestDB_Authenticate_ExpiredKey(t *testing.T) {
	db := dbtest.Open(t)
	ctx := context.Background()
	tenant, err := db.EnsureTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	key, k, err := db.CreateKey(ctx, tenant.ID, "brief", store.KeyExpiresAt(time.Now().Add(300*time.Millisecond)))
	if err != nil || k.ExpiresAt == nil || k.Scope != store.ScopeManage {
		t.Fatalf("create: %+v, %v", k, err)
	}
	if _, err := db.Authenticate(ctx, key); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := db.Authenticate(ctx, key)
		if switchboard.ErrorCode(err) == switchboard.EUNAUTHORIZED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key still authenticates past its expiry: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, err := db.CreateKey(ctx, tenant.ID, "stale", store.KeyExpiresAt(time.Now().Add(-time.Hour))); switchboard.ErrorCode(err) != switchboard.EINVALID {
		t.Errorf("a key expiring in the past: %v, want EINVALID", err)
	}
	if _, _, err := db.CreateKey(ctx, tenant.ID, "odd", store.KeyScope("root")); switchboard.ErrorCode(err) != switchboard.EINVALID {
		t.Errorf("a key of scope root: %v, want EINVALID", err)
	}
}

// last_used_at is written at most once a minute per key, not per request.
func TestDB_Authenticate_LastUsedAtOncePerMinute(t *testing.T) {
	db := dbtest.Open(t)
	ctx := context.Background()
	tenant, _, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := db.CreateKey(ctx, tenant.ID, "busy")
	if err != nil {
		t.Fatal(err)
	}
	first, err := db.Authenticate(ctx, key)
	if err != nil || first.LastUsedAt == nil {
		t.Fatalf("first use: %+v, %v", first, err)
	}
	for range 5 {
		k, err := db.Authenticate(ctx, key)
		if err != nil || !k.LastUsedAt.Equal(*first.LastUsedAt) {
			t.Fatalf("a later use within the minute moved last_used_at: %v -> %v (%v)", first.LastUsedAt, k.LastUsedAt, err)
		}
	}
}

// A key given at restart (--api-key) that differs from the stored one is
// reported, so that the start can log the rotation.
func TestDB_CompareKey(t *testing.T) {
	db := dbtest.Open(t)
	ctx := context.Background()
	const first, second = "operator-key-0123456789", "operator-key-9876543210"
	tenant, err := db.EnsureTenant(ctx, store.DefaultTenantName)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		key  string
		want store.KeyComparison
	}{{first, store.KeyAbsent}, {first, store.KeySame}, {second, store.KeyDifferent}} {
		got, err := db.CompareKey(ctx, tenant.ID, store.DefaultKeyName, step.key)
		if err != nil || got != step.want {
			t.Errorf("compare %s: %v, %v; want %v", step.key, got, err, step.want)
		}
		if _, _, err := store.Bootstrap(ctx, db, step.key); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Authenticate(ctx, first); err == nil {
		t.Error("the replaced key still authenticates")
	}
}

// Deleting a tenant purges its dead letters in SB_DEAD, and no other
// tenant's.
func TestAdmin_DeleteTenantPurgesDeadLetters(t *testing.T) {
	a := startDeadLetterAPI(t)
	ctx := context.Background()
	acme, err := a.DB.EnsureTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	putDeadLetter(t, a.JS.JS, acme.ID, "wh_1", "evt_1", "retries_exhausted", 500)
	putDeadLetter(t, a.JS.JS, acme.ID, "wh_2", "evt_2", "gone", 410)
	putDeadLetter(t, a.JS.JS, a.Tenant.ID, "wh_3", "evt_3", "gone", 410)

	status, b := a.Do(t, http.MethodDelete, "/v1/tenants/"+acme.ID, a.Key, "")
	out := apitest.Decode[tenantDeletedJSON](t, b)
	if status != http.StatusOK || out.Deleted.DeadLetters != 2 {
		t.Fatalf("delete: %d %s, want 2 dead letters", status, b)
	}
	page := apitest.Decode[deadLetterListJSON](t, apitest.MustGet(t, a, a.Key, "/v1/dead-letters"))
	if len(page.Data) != 1 || page.Data[0].WebhookID != "wh_3" {
		t.Errorf("the default tenant's dead letters after acme went: %+v", page.Data)
	}
}

type tenantDeletedJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Deleted   struct {
		Webhooks    int `json:"webhooks"`
		Agents      int `json:"agents"`
		Keys        int `json:"keys"`
		EventTypes  int `json:"event_types"`
		Attempts    int `json:"attempts"`
		DeadLetters int `json:"dead_letters"`
	} `json:"deleted"`
}

// registry.db is created readable by its owner only; SQLite's WAL and
// shared-memory files follow it.
func TestOpen_CreatesThePrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	db := dbtest.OpenAt(t, path)
	if _, _, err := store.Bootstrap(context.Background(), db, ""); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode&0o077 != 0 {
			t.Errorf("%s is %v, want no access for group and others", filepath.Base(p), mode)
		}
	}
}

// A portal link's token manages its tenant's webhooks but mints no
// credential: its scope (ScopePortal) does not grant the key routes.
func TestScopes_PortalLinkMintsNoCredential(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := switchboard.NewContextWithActor(switchboard.NewContextWithTenant(context.Background(), a.Tenant.ID), "ops")
	token, _, err := a.DB.CreatePortalLink(ctx, "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	if status, b := a.Do(t, http.MethodGet, "/v1/webhooks", token, ""); status != http.StatusOK {
		t.Errorf("portal token on GET /v1/webhooks: %d %s", status, b)
	}
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/keys", ""},
		{http.MethodPost, "/v1/keys", `{"name": "escalate"}`},
		{http.MethodPost, "/v1/portal-links", `{}`},
	} {
		if status, b := a.Do(t, r.method, r.path, token, r.body); status != http.StatusForbidden {
			t.Errorf("portal token on %s %s: %d %s, want 403", r.method, r.path, status, b)
		}
	}
}
