package api_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

type tenantJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

type keyJSON struct {
	ID         string     `json:"id"`
	TenantID   string     `json:"tenant_id"`
	Name       string     `json:"name"`
	Scope      string     `json:"scope"`
	Admin      bool       `json:"admin"`
	Key        string     `json:"key"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func TestAdmin_TenantsAndKeys(t *testing.T) {
	a := apitest.Start(t, nil) // a.Key is the bootstrap key: admin

	status, b := a.Do(t, http.MethodPost, "/v1/tenants", a.Key, `{"name": "acme"}`)
	acme := apitest.Decode[tenantJSON](t, b)
	if status != http.StatusCreated || !strings.HasPrefix(acme.ID, "ten_") || acme.Name != "acme" || acme.CreatedAt.IsZero() {
		t.Fatalf("create tenant: %d %s", status, b)
	}
	status, b = a.Do(t, http.MethodPost, "/v1/tenants", a.Key, `{"name": "acme"}`)
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusConflict || len(e.Errors["name"]) == 0 {
		t.Errorf("same name again: %d %s", status, b)
	}
	for body, want := range map[string]int{
		`{"name": ""}`: 422, `{"name": "  "}`: 422, `{}`: 422,
		`{"name": "` + strings.Repeat("x", 256) + `"}`: 422,
		`{"name": 1}`: 400, `nope`: 400,
	} {
		if status, b := a.Do(t, http.MethodPost, "/v1/tenants", a.Key, body); status != want {
			t.Errorf("POST /v1/tenants %s: %d, want %d: %s", body, status, want, b)
		}
	}

	keysPath := "/v1/tenants/" + acme.ID + "/keys"
	status, b = a.Do(t, http.MethodPost, keysPath, a.Key, `{"name": "ci"}`)
	ci := apitest.Decode[keyJSON](t, b)
	if status != http.StatusCreated || !strings.HasPrefix(ci.ID, "key_") || ci.TenantID != acme.ID || ci.Name != "ci" ||
		ci.Admin || !regexp.MustCompile(`^sk_[0-9A-Za-z]{43}$`).MatchString(ci.Key) {
		t.Fatalf("create key: %d %s", status, b)
	}
	// The new key acts for its tenant, which has nothing yet.
	if page := apitest.Decode[apitest.ListJSON](t, apitest.MustGet(t, a, ci.Key, "/v1/webhooks")); len(page.Data) != 0 {
		t.Errorf("acme sees webhooks: %+v", page.Data)
	}
	k, err := a.DB.Authenticate(context.Background(), ci.Key)
	if err != nil || k.TenantID != acme.ID || k.Admin {
		t.Errorf("authenticate the new key: %+v, %v", k, err)
	}

	// A non-admin key may use neither admin route: 403, and nothing made.
	for _, req := range []struct{ path, body string }{
		{"/v1/tenants", `{"name": "sneaky"}`},
		{keysPath, `{"name": "sneaky", "admin": true}`},
		{"/v1/tenants/" + a.Tenant.ID + "/keys", `{"name": "sneaky"}`},
	} {
		status, b := a.Do(t, http.MethodPost, req.path, ci.Key, req.body)
		if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusForbidden || e.Message == "" {
			t.Errorf("non-admin POST %s: %d %s", req.path, status, b)
		}
	}
	if _, err := a.DB.FindTenantByName(context.Background(), "sneaky"); err == nil {
		t.Error("a non-admin key created a tenant")
	}
	if n, _ := a.DB.CountKeys(context.Background(), acme.ID); n != 1 {
		t.Errorf("acme has %d keys, want 1", n)
	}

	// An admin key of another tenant administers too.
	status, b = a.Do(t, http.MethodPost, keysPath, a.Key, `{"name": "ops", "admin": true}`)
	ops := apitest.Decode[keyJSON](t, b)
	if status != http.StatusCreated || !ops.Admin {
		t.Fatalf("create admin key: %d %s", status, b)
	}
	if status, b := a.Do(t, http.MethodPost, "/v1/tenants", ops.Key, `{"name": "globex"}`); status != http.StatusCreated {
		t.Errorf("admin key of acme creates a tenant: %d %s", status, b)
	}

	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{keysPath, `{"name": "ci"}`, http.StatusConflict},
		{keysPath, `{"name": ""}`, 422},
		{keysPath, `{"name": "x", "admin": "yes"}`, 400},
		{"/v1/tenants/ten_nope/keys", `{"name": "x"}`, 404},
	} {
		if status, b := a.Do(t, http.MethodPost, tc.path, a.Key, tc.body); status != tc.want {
			t.Errorf("POST %s %s: %d, want %d: %s", tc.path, tc.body, status, tc.want, b)
		}
	}
}

func TestBootstrap_KeyIsAdmin(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t)
	_, key, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	if k, err := db.Authenticate(ctx, key); err != nil || !k.Admin {
		t.Errorf("generated bootstrap key: %+v, %v; want admin", k, err)
	}

	// A key given by the operator becomes admin, even one that existed
	// as a plain key.
	db = dbtest.Open(t)
	tenant, err := db.EnsureTenant(ctx, store.DefaultTenantName)
	if err != nil {
		t.Fatal(err)
	}
	const given = "automation-key-0123456789"
	if k, err := db.EnsureKey(ctx, tenant.ID, store.DefaultKeyName, given); err != nil || k.Admin {
		t.Fatalf("ensure a plain key: %+v, %v", k, err)
	}
	if _, _, err := store.Bootstrap(ctx, db, given); err != nil {
		t.Fatal(err)
	}
	if k, err := db.Authenticate(ctx, given); err != nil || !k.Admin {
		t.Errorf("given bootstrap key: %+v, %v; want admin", k, err)
	}
	// Another key of the default tenant is not admin.
	plain, _, err := db.CreateKey(ctx, tenant.ID, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if k, err := db.Authenticate(ctx, plain); err != nil || k.Admin {
		t.Errorf("plain key: %+v, %v", k, err)
	}
}
