package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// keyStore is what the key routes need of the store.
type keyStore interface {
	CreateKey(ctx context.Context, tenantID, name string, opts ...store.KeyOption) (string, store.Key, error)
	FindKeys(ctx context.Context, tenantID string, f store.PageFilter) ([]store.Key, bool, error)
	RevokeKey(ctx context.Context, tenantID, id string) (store.Key, error)
}

var _ keyStore = (*store.DB)(nil)

// keyAPI serves /v1/keys: the API keys of the tenant of the key asking.
// They need store.ScopeCredentials, which manage and admin keys have.
type keyAPI struct {
	store  keyStore
	logger *slog.Logger
}

func (a *keyAPI) list(w http.ResponseWriter, r *http.Request) {
	listKeys(w, r, a.store, a.logger, keyFromContext(r.Context()).TenantID)
}

func (a *keyAPI) create(w http.ResponseWriter, r *http.Request) {
	createKey(w, r, a.store, a.logger, keyFromContext(r.Context()).TenantID)
}

func (a *keyAPI) revoke(w http.ResponseWriter, r *http.Request) {
	revokeKey(w, r, a.store, a.logger, keyFromContext(r.Context()).TenantID)
}

// keyBody is an API key as the API shows it; Key, the plaintext, only in
// the answer that creates it.
type keyBody struct {
	ID         string      `json:"id"`
	TenantID   string      `json:"tenant_id"`
	Name       string      `json:"name"`
	Scope      store.Scope `json:"scope"`
	Admin      bool        `json:"admin"`
	Key        string      `json:"key,omitempty"`
	CreatedAt  time.Time   `json:"created_at"`
	ExpiresAt  *time.Time  `json:"expires_at"`
	LastUsedAt *time.Time  `json:"last_used_at"`
}

func newKeyBody(k store.Key, plaintext string) keyBody {
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	return keyBody{
		ID: k.ID, TenantID: k.TenantID, Name: k.Name, Scope: k.Scope, Admin: k.Admin, Key: plaintext,
		CreatedAt: k.CreatedAt.UTC(), ExpiresAt: utc(k.ExpiresAt), LastUsedAt: utc(k.LastUsedAt),
	}
}

func listKeys(w http.ResponseWriter, r *http.Request, ks keyStore, logger *slog.Logger, tenantID string) {
	f, err := parsePageFilter(r)
	if err != nil {
		httpjson.Error(w, r, logger, err)
		return
	}
	keys, more, err := ks.FindKeys(r.Context(), tenantID, f)
	if err != nil {
		httpjson.Error(w, r, logger, err)
		return
	}
	body := listBody[keyBody]{Data: make([]keyBody, 0, len(keys)), HasMore: more}
	for _, k := range keys {
		body.Data = append(body.Data, newKeyBody(k, ""))
	}
	if more {
		body.NextCursor = keys[len(keys)-1].ID
	}
	httpjson.Write(w, http.StatusOK, body)
}

// keyInput is the body that creates a key. Admin true is the older
// spelling of scope admin.
type keyInput struct {
	Name      string       `json:"name"`
	Scope     *store.Scope `json:"scope"`
	Admin     *bool        `json:"admin"`
	ExpiresAt *string      `json:"expires_at"`
}

// options returns the KeyOptions of in, or an EINVALID error naming each
// field that is wrong, the name's included.
func (in keyInput) options(tenantID string) ([]store.KeyOption, error) {
	fe := switchboard.FieldErrors{}
	var opts []store.KeyOption
	if in.Admin != nil {
		opts = append(opts, store.AdminKey(*in.Admin))
		if in.Scope != nil && (*in.Scope == store.ScopeAdmin) != *in.Admin {
			fe.Add("scope", "contradicts admin")
		}
	}
	if in.Scope != nil {
		opts = append(opts, store.KeyScope(*in.Scope))
	}
	if in.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *in.ExpiresAt)
		if err != nil {
			fe.Add("expires_at", "must be an RFC 3339 time")
		} else {
			opts = append(opts, store.KeyExpiresAt(t))
		}
	}
	store.CheckName(fe, "name", in.Name)
	// An expires_at that does not parse added no option: its only error
	// is the one above.
	store.CheckKeyOptions(fe, store.NewKeyRow(tenantID, in.Name, opts))
	return opts, fe.Err()
}

// createKey creates a key for tenantID. Only an admin key may create an
// admin key (403 otherwise): a manage key could else raise itself.
func createKey(w http.ResponseWriter, r *http.Request, ks keyStore, logger *slog.Logger, tenantID string) {
	var in keyInput
	if err := httpjson.Decode(r, &in); err != nil {
		httpjson.Error(w, r, logger, err)
		return
	}
	opts, err := in.options(tenantID)
	if err != nil {
		httpjson.Error(w, r, logger, err)
		return
	}
	if store.NewKeyRow(tenantID, in.Name, opts).Scope == store.ScopeAdmin && !keyFromContext(r.Context()).Scope.Grants(store.ScopeAdmin) {
		httpjson.Error(w, r, logger, switchboard.Errorf(switchboard.EFORBIDDEN, "Only an admin key may create an admin key."))
		return
	}
	plaintext, k, err := ks.CreateKey(r.Context(), tenantID, in.Name, opts...)
	if err != nil {
		httpjson.Error(w, r, logger, err)
		return
	}
	logger.InfoContext(r.Context(), "api key created", "tenant", k.TenantID, "key_id", k.ID, "name", k.Name,
		"scope", k.Scope, "by", switchboard.ActorFromContext(r.Context()))
	httpjson.Write(w, http.StatusCreated, newKeyBody(k, plaintext))
}

func revokeKey(w http.ResponseWriter, r *http.Request, ks keyStore, logger *slog.Logger, tenantID string) {
	k, err := ks.RevokeKey(r.Context(), tenantID, r.PathValue("key_id"))
	if err != nil {
		httpjson.Error(w, r, logger, err)
		return
	}
	logger.InfoContext(r.Context(), "api key revoked", "tenant", k.TenantID, "key_id", k.ID, "name", k.Name,
		"by", switchboard.ActorFromContext(r.Context()))
	w.WriteHeader(http.StatusNoContent)
}
