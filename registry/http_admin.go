package registry

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
)

// adminStore is what the admin routes need of the store.
type adminStore interface {
	CreateTenant(ctx context.Context, name string) (Tenant, error)
	CreateKey(ctx context.Context, tenantID, name string, opts ...KeyOption) (string, Key, error)
}

var _ adminStore = (*DB)(nil)

// adminAPI serves the routes that administer the registry: tenants and
// their API keys. They act across tenants, so only admin keys may use them
// (requireAdmin).
type adminAPI struct {
	store  adminStore
	logger *slog.Logger
}

// requireAdmin answers 403 to a key without the admin flag. The routes it
// guards name no tenant's objects the key could otherwise see, so 403 says
// nothing a 404 would hide.
func requireAdmin(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !keyFromContext(r.Context()).Admin {
			httpjson.Error(w, r, logger, switchboard.Errorf(switchboard.EFORBIDDEN, "This route needs an admin API key."))
			return
		}
		next.ServeHTTP(w, r)
	})
}

type tenantBody struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

type keyBody struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	Key       string    `json:"key"` // the plaintext, shown this once
	CreatedAt time.Time `json:"created_at"`
}

// createTenant serves POST /v1/tenants {"name"}.
func (a *adminAPI) createTenant(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	t, err := a.store.CreateTenant(r.Context(), in.Name)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	a.logger.InfoContext(r.Context(), "tenant created", "tenant", t.ID, "name", t.Name,
		"by", switchboard.ActorFromContext(r.Context()))
	httpjson.Write(w, http.StatusCreated, tenantBody{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt.UTC()})
}

// createKey serves POST /v1/tenants/{tenant_id}/keys {"name", "admin"?}.
func (a *adminAPI) createKey(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name  string `json:"name"`
		Admin bool   `json:"admin"`
	}
	if err := httpjson.Decode(r, &in); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	plaintext, k, err := a.store.CreateKey(r.Context(), r.PathValue("tenant_id"), in.Name, AdminKey(in.Admin))
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	a.logger.InfoContext(r.Context(), "api key created", "tenant", k.TenantID, "key_id", k.ID, "name", k.Name,
		"admin", k.Admin, "by", switchboard.ActorFromContext(r.Context()))
	httpjson.Write(w, http.StatusCreated, keyBody{
		ID: k.ID, TenantID: k.TenantID, Name: k.Name, Admin: k.Admin, Key: plaintext, CreatedAt: k.CreatedAt.UTC(),
	})
}
