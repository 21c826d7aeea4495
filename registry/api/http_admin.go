package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// adminStore is what the admin routes need of the store.
type adminStore interface {
	keyStore
	CreateTenant(ctx context.Context, name string) (store.Tenant, error)
	FindTenants(ctx context.Context, f store.PageFilter) ([]store.Tenant, bool, error)
	FindTenant(ctx context.Context, idOrName string) (store.Tenant, error)
	TenantUsage(ctx context.Context, tenantID string) (store.TenantCounts, error)
	DeleteTenant(ctx context.Context, tenantID string) (store.TenantCounts, []string, error)
}

var _ adminStore = (*store.DB)(nil)

// adminAPI serves the routes that administer the registry: tenants and
// their API keys. They act across tenants, so only admin keys may use them
// (ScopeAdmin).
type adminAPI struct {
	store  adminStore
	mirror webhookMirror
	// js, when set, lets tenant deletion purge the tenant's dead letters.
	js     jetstream.JetStream
	logger *slog.Logger
}

type tenantBody struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

func newTenantBody(t store.Tenant) tenantBody {
	return tenantBody{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt.UTC()}
}

// tenantDetail is GET /v1/tenants/{tenant_id}: the tenant and how much it
// holds.
type tenantDetail struct {
	tenantBody
	Counts store.TenantCounts `json:"counts"`
}

// tenantDeleted is the answer to DELETE /v1/tenants/{tenant_id}.
type tenantDeleted struct {
	tenantBody
	Deleted deletedCounts `json:"deleted"`
}

type deletedCounts struct {
	store.TenantCounts
	DeadLetters int `json:"dead_letters"`
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
	httpjson.Write(w, http.StatusCreated, newTenantBody(t))
}

// listTenants serves GET /v1/tenants.
func (a *adminAPI) listTenants(w http.ResponseWriter, r *http.Request) {
	f, err := parsePageFilter(r)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	ts, more, err := a.store.FindTenants(r.Context(), f)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	body := listBody[tenantBody]{Data: make([]tenantBody, 0, len(ts)), HasMore: more}
	for _, t := range ts {
		body.Data = append(body.Data, newTenantBody(t))
	}
	if more {
		body.NextCursor = ts[len(ts)-1].ID
	}
	httpjson.Write(w, http.StatusOK, body)
}

// getTenant serves GET /v1/tenants/{tenant_id}.
func (a *adminAPI) getTenant(w http.ResponseWriter, r *http.Request) {
	t, err := a.store.FindTenant(r.Context(), r.PathValue("tenant_id"))
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	c, err := a.store.TenantUsage(r.Context(), t.ID)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, tenantDetail{tenantBody: newTenantBody(t), Counts: c})
}

// deleteTenant serves DELETE /v1/tenants/{tenant_id}: the tenant and all it
// holds, its dead letters included. The tenant of the key asking is
// refused (409): that key would delete itself.
func (a *adminAPI) deleteTenant(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, err := a.store.FindTenant(ctx, r.PathValue("tenant_id"))
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	if t.ID == keyFromContext(ctx).TenantID {
		httpjson.Error(w, r, a.logger, switchboard.Errorf(switchboard.ECONFLICT,
			"This is the tenant of the API key in use; delete it with an admin key of another tenant."))
		return
	}
	// Purged first, so that a failure leaves the tenant to delete again;
	// and once more after, for what deliveries in flight dead-lettered.
	dead, err := a.purgeDeadLetters(ctx, t.ID)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	c, webhooks, err := a.store.DeleteTenant(ctx, t.ID)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	for _, id := range webhooks {
		if err := a.mirror.Flush(context.WithoutCancel(ctx), id); err != nil {
			a.logger.WarnContext(ctx, "webhook deleted with its tenant; mirroring to KV deferred",
				"tenant", t.ID, "webhook_id", id, "err", err)
		}
	}
	if more, err := a.purgeDeadLetters(context.WithoutCancel(ctx), t.ID); err != nil {
		a.logger.WarnContext(ctx, "tenant deleted; dead letters left to SB_DEAD's max age", "tenant", t.ID, "err", err)
	} else {
		dead += more
	}
	a.logger.InfoContext(ctx, "tenant deleted", "tenant", t.ID, "name", t.Name, "webhooks", c.Webhooks,
		"agents", c.Agents, "keys", c.Keys, "attempts", c.Attempts, "dead_letters", dead,
		"by", switchboard.ActorFromContext(ctx))
	httpjson.Write(w, http.StatusOK, tenantDeleted{tenantBody: newTenantBody(t), Deleted: deletedCounts{TenantCounts: c, DeadLetters: dead}})
}

// purgeDeadLetters removes the tenant's messages from SB_DEAD and returns
// how many there were; without JetStream, none.
func (a *adminAPI) purgeDeadLetters(ctx context.Context, tenantID string) (int, error) {
	if a.js == nil {
		return 0, nil
	}
	return control.PurgeTenantDeadLetters(ctx, a.js, tenantID)
}

// listTenantKeys serves GET /v1/tenants/{tenant_id}/keys.
func (a *adminAPI) listTenantKeys(w http.ResponseWriter, r *http.Request) {
	listKeys(w, r, a.store, a.logger, r.PathValue("tenant_id"))
}

// createTenantKey serves POST /v1/tenants/{tenant_id}/keys {"name",
// "admin"?, "scope"?, "expires_at"?}.
func (a *adminAPI) createTenantKey(w http.ResponseWriter, r *http.Request) {
	createKey(w, r, a.store, a.logger, r.PathValue("tenant_id"))
}

// revokeTenantKey serves DELETE /v1/tenants/{tenant_id}/keys/{key_id}.
func (a *adminAPI) revokeTenantKey(w http.ResponseWriter, r *http.Request) {
	revokeKey(w, r, a.store, a.logger, r.PathValue("tenant_id"))
}
