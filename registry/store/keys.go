package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/switchboard-hq/switchboard"
)

// Scope says what an API key may do. A route names the scope it needs
// (handler.handleScoped) and the middleware lets a key through when its
// scope grants that one (Scope.Grants). A credential that is not an API key
// (a portal link's token, say) maps onto the same checks by carrying a
// Scope of its own in the Key it authenticates as.
type Scope string

// The scopes a key may hold, from most to least able.
const (
	// ScopeAdmin: everything of its tenant, plus the routes that act across
	// tenants (/v1/tenants...).
	ScopeAdmin Scope = "admin"
	// ScopeManage: everything of its tenant, its API keys included.
	ScopeManage Scope = "manage"
	// ScopePublish: POST /v1/events only, so that an upstream service holds
	// a key that cannot read webhooks or their secrets.
	ScopePublish Scope = "publish"
)

// ScopePortal is the scope of a portal link's token (http_portallinks.go):
// it may manage its tenant's webhooks, within the link's own limits, but
// neither create nor revoke credentials (API keys, portal links). No API
// key holds it.
const ScopePortal Scope = "portal"

// ScopeCredentials is what the routes that create or revoke credentials
// (/v1/keys, POST and DELETE /v1/portal-links) need. No key holds it;
// manage and admin grant it. It is apart from ScopeManage so that a
// credential that may manage a tenant's webhooks (ScopePortal) cannot mint
// credentials.
const ScopeCredentials Scope = "credentials"

// KeyScopes are the scopes a key may be given, in the order the docs list
// them.
var KeyScopes = []Scope{ScopeAdmin, ScopeManage, ScopePublish}

// scopeGrants lists what each scope grants besides itself.
var scopeGrants = map[Scope][]Scope{
	ScopeAdmin:  {ScopeManage, ScopeCredentials, ScopePublish},
	ScopeManage: {ScopeCredentials, ScopePublish},
	ScopePortal: {ScopeManage},
}

// Grants reports whether a key of scope s may use a route that needs need.
func (s Scope) Grants(need Scope) bool {
	return s == need || slices.Contains(scopeGrants[s], need)
}

// ValidKeyScope reports whether s is a scope a key may be given.
func ValidKeyScope(s Scope) bool { return slices.Contains(KeyScopes, s) }

// KeyScope gives the key scope s (and the admin flag when s is ScopeAdmin).
func KeyScope(s Scope) KeyOption {
	return func(k *Key) { k.Scope, k.Admin = s, s == ScopeAdmin }
}

// KeyExpiresAt makes the key stop authenticating at t; the zero time means
// never.
func KeyExpiresAt(t time.Time) KeyOption {
	return func(k *Key) {
		k.ExpiresAt = nil
		if !t.IsZero() {
			t := t.UTC().Truncate(time.Microsecond)
			k.ExpiresAt = &t
		}
	}
}

// CheckKeyOptions records what is wrong with the scope and expiry of a key
// about to be created.
func CheckKeyOptions(fe switchboard.FieldErrors, k Key) {
	if !ValidKeyScope(k.Scope) {
		fe.Add("scope", fmt.Sprintf("must be one of %q", KeyScopes))
	}
	if k.ExpiresAt != nil && !k.ExpiresAt.After(Now()) {
		fe.Add("expires_at", "must be in the future")
	}
}

// FindKeys returns a page of the API keys of tenant, in id order, and
// whether more follow. It returns ENOTFOUND when the tenant does not exist.
func (db *DB) FindKeys(ctx context.Context, tenantID string, f PageFilter) ([]Key, bool, error) {
	limit := pageLimit(f.Limit)
	var keys []Key
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		if err := checkTenantExists(ctx, tx, tenantID); err != nil {
			return err
		}
		return tx.SelectContext(ctx, &keys,
			`SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?`, tenantID, f.After, limit+1)
	})
	if err != nil {
		return nil, false, fmt.Errorf("find keys of tenant %s: %w", tenantID, err)
	}
	if len(keys) > limit {
		return keys[:limit], true, nil
	}
	return keys, false, nil
}

// FindKey returns the key of tenant whose id or, failing that, name is
// idOrName. It returns ENOTFOUND when the tenant has none.
func (db *DB) FindKey(ctx context.Context, tenantID, idOrName string) (Key, error) {
	var k Key
	err := db.db.GetContext(ctx, &k, `SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = ? AND (id = ? OR name = ?)
		ORDER BY id = ? DESC LIMIT 1`, tenantID, idOrName, idOrName, idOrName)
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, switchboard.Errorf(switchboard.ENOTFOUND, "API key %s not found.", Quote(idOrName))
	}
	if err != nil {
		return Key{}, fmt.Errorf("find key %q of tenant %s: %w", idOrName, tenantID, err)
	}
	return k, nil
}

// RevokeKey deletes the key id of tenant: it stops authenticating at once.
// It returns the key as it was, or ENOTFOUND when the tenant has no such
// key.
func (db *DB) RevokeKey(ctx context.Context, tenantID, id string) (Key, error) {
	var k Key
	err := db.db.GetContext(ctx, &k, `DELETE FROM api_keys WHERE tenant_id = ? AND id = ? RETURNING `+keyColumns, tenantID, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, switchboard.Errorf(switchboard.ENOTFOUND, "API key %s not found.", Quote(id))
	}
	if err != nil {
		return Key{}, fmt.Errorf("revoke key %s of tenant %s: %w", id, tenantID, err)
	}
	return k, nil
}

// KeyComparison is how a key an operator gives compares with the stored key
// of that name (CompareKey).
type KeyComparison int

// The outcomes of CompareKey.
const (
	KeyAbsent    KeyComparison = iota // the tenant has no key of that name
	KeySame                           // the stored key has this value
	KeyDifferent                      // the stored key has another value, which EnsureKey would replace
)

// CompareKey says whether tenant's key called name is plaintext, so that a
// start with `--api-key` can log that it replaces the default key.
func (db *DB) CompareKey(ctx context.Context, tenantID, name, plaintext string) (KeyComparison, error) {
	var hash string
	err := db.db.GetContext(ctx, &hash, `SELECT hash FROM api_keys WHERE tenant_id = ? AND name = ?`, tenantID, name)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return KeyAbsent, nil
	case err != nil:
		return 0, fmt.Errorf("compare key %q of tenant %s: %w", name, tenantID, err)
	case hash == hashKey(plaintext):
		return KeySame, nil
	}
	return KeyDifferent, nil
}

// keyExpired is the error for a key past its expires_at.
func keyExpired() error {
	return switchboard.Errorf(switchboard.EUNAUTHORIZED, "The API key has expired.")
}

// checkTenantExists returns ENOTFOUND unless tenant exists.
func checkTenantExists(ctx context.Context, q sqlx.QueryerContext, tenantID string) error {
	var n int
	if err := sqlx.GetContext(ctx, q, &n, `SELECT count(*) FROM tenants WHERE id = ?`, tenantID); err != nil {
		return fmt.Errorf("check tenant %s: %w", tenantID, err)
	}
	if n == 0 {
		return tenantNotFound(tenantID)
	}
	return nil
}

func tenantNotFound(idOrName string) error {
	return switchboard.Errorf(switchboard.ENOTFOUND, "Tenant %s not found.", Quote(idOrName))
}
