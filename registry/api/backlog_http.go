package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// backlogAPI serves GET /v1/backlog: an admin key sees every tenant's
// webhooks (or one tenant's, with tenant_id), any other key of manage
// scope its own tenant's only, so that a customer can watch its own.
type backlogAPI struct {
	db     *store.DB
	logger *slog.Logger
}

// list serves GET /v1/backlog?limit=&tenant_id=.
func (a *backlogAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fe := switchboard.FieldErrors{}
	limit := store.DefaultBacklogLimit
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > store.MaxBacklogLimit {
			fe.Add("limit", fmt.Sprintf("must be an integer between 1 and %d", store.MaxBacklogLimit))
		}
		limit = n
	}
	if err := fe.Err(); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	key := keyFromContext(r.Context())
	tenant := q.Get("tenant_id")
	if !key.Scope.Grants(store.ScopeAdmin) {
		// The same answer for another tenant's id as for one that exists
		// nowhere: it says nothing of other tenants.
		if tenant != "" && tenant != key.TenantID {
			httpjson.Error(w, r, a.logger, switchboard.Errorf(switchboard.EFORBIDDEN,
				"This API key sees its own tenant's backlog only; tenant_id names another (admin keys see every tenant's)."))
			return
		}
		tenant = key.TenantID
	}
	rep, err := a.db.Backlog(r.Context(), tenant, limit)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, rep)
}
