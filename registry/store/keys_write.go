package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
	"unicode"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"

	"github.com/switchboard-hq/switchboard"
)

// CreateKey generates a new API key called name for the tenant and returns
// its plaintext, which is not stored and cannot be shown again. The key has
// ScopeManage and never expires unless opts say otherwise (KeyScope,
// AdminKey, KeyExpiresAt). It returns EINVALID for a blank or over-long
// name, an unknown scope or an expiry not in the future, ENOTFOUND when the
// tenant does not exist and ECONFLICT when the tenant already has a key of
// that name.
func (db *DB) CreateKey(ctx context.Context, tenantID, name string, opts ...KeyOption) (string, Key, error) {
	fe := switchboard.FieldErrors{}
	CheckName(fe, "name", name)
	CheckKeyOptions(fe, NewKeyRow(tenantID, name, opts))
	if err := fe.Err(); err != nil {
		return "", Key{}, fmt.Errorf("create key: %w", err)
	}
	plaintext := newKey()
	var k Key
	err := db.withTx(ctx, func(tx *sqlx.Tx) (err error) {
		k, err = insertKey(ctx, tx, tenantID, name, hashKey(plaintext), opts)
		return err
	})
	if err != nil {
		return "", Key{}, fmt.Errorf("create key %q for tenant %s: %w", name, tenantID, err)
	}
	return plaintext, k, nil
}

// EnsureKey makes plaintext the tenant's key called name, for operators who
// choose the key themselves (`--api-key`). It is idempotent: when the key
// already exists for the tenant it is returned as is; when the tenant has a
// key called name with another value, that value is replaced (it stops
// working). opts apply to the key whether it is new or not (AdminKey(true)
// makes an existing key admin; without opts a key keeps its admin flag,
// and a new one is not admin). It returns EINVALID when plaintext is
// shorter than MinKeyLength, longer than MaxKeyLength or holds spaces or
// control characters, ENOTFOUND when the tenant does not exist, and
// ECONFLICT when the key belongs to another tenant.
func (db *DB) EnsureKey(ctx context.Context, tenantID, name, plaintext string, opts ...KeyOption) (Key, error) {
	fe := switchboard.FieldErrors{}
	CheckName(fe, "name", name)
	checkKey(fe, "key", plaintext)
	if err := fe.Err(); err != nil {
		return Key{}, fmt.Errorf("ensure key: %w", err)
	}
	hash := hashKey(plaintext)
	var k Key
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		err := tx.GetContext(ctx, &k, `SELECT `+keyColumns+` FROM api_keys WHERE hash = ?`, hash)
		switch {
		case err == nil && k.TenantID != tenantID:
			return switchboard.Errorf(switchboard.ECONFLICT, "The API key belongs to another tenant.")
		case err == nil:
			return setKeyOptions(ctx, tx, &k, opts)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		err = tx.GetContext(ctx, &k, `UPDATE api_keys SET hash = ? WHERE tenant_id = ? AND name = ? RETURNING `+keyColumns,
			hash, tenantID, name)
		if err == nil {
			return setKeyOptions(ctx, tx, &k, opts)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		k, err = insertKey(ctx, tx, tenantID, name, hash, opts)
		return err
	})
	if err != nil {
		return Key{}, fmt.Errorf("ensure key %q for tenant %s: %w", name, tenantID, err)
	}
	return k, nil
}

// CountKeys returns how many API keys the tenant has.
func (db *DB) CountKeys(ctx context.Context, tenantID string) (int, error) {
	var n int
	if err := db.db.GetContext(ctx, &n, `SELECT count(*) FROM api_keys WHERE tenant_id = ?`, tenantID); err != nil {
		return 0, fmt.Errorf("count keys of tenant %s: %w", tenantID, err)
	}
	return n, nil
}

// Authenticate returns the API key whose plaintext is given and records
// that it was used (at most once a minute, so that a busy key costs a
// write a minute, not one a request). It returns an EUNAUTHORIZED error
// when no such key exists or it has expired.
func (db *DB) Authenticate(ctx context.Context, plaintext string) (Key, error) {
	var k Key
	err := db.db.GetContext(ctx, &k, `SELECT `+keyColumns+` FROM api_keys WHERE hash = ?`, hashKey(plaintext))
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, switchboard.Errorf(switchboard.EUNAUTHORIZED, "Invalid API key.")
	}
	if err != nil {
		return Key{}, fmt.Errorf("authenticate: %w", err)
	}
	t := Now()
	if k.ExpiresAt != nil && !t.Before(*k.ExpiresAt) {
		return Key{}, keyExpired()
	}
	if k.LastUsedAt != nil && t.Sub(*k.LastUsedAt) < keyUsageResolution {
		return k, nil
	}
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE api_keys SET last_used_at = ? WHERE id = ?`, t, k.ID)
		return err
	})
	if err != nil {
		return Key{}, fmt.Errorf("authenticate: record use of key %s: %w", k.ID, err)
	}
	k.LastUsedAt = &t
	return k, nil
}

// setKeyOptions applies opts to the stored key k.
func setKeyOptions(ctx context.Context, tx *sqlx.Tx, k *Key, opts []KeyOption) error {
	want := *k
	for _, o := range opts {
		o(&want)
	}
	if want.Scope == k.Scope && sameTime(want.ExpiresAt, k.ExpiresAt) {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET admin = ?, scope = ?, expires_at = ? WHERE id = ?`,
		want.Admin, want.Scope, want.ExpiresAt, k.ID); err != nil {
		return err
	}
	*k = want
	return nil
}

func sameTime(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}

// NewKeyRow returns a key of tenant called name with opts applied, not
// stored.
func NewKeyRow(tenantID, name string, opts []KeyOption) Key {
	k := Key{ID: switchboard.NewID("key_"), TenantID: tenantID, Name: name, Scope: ScopeManage, CreatedAt: Now()}
	for _, o := range opts {
		o(&k)
	}
	return k
}

func insertKey(ctx context.Context, tx *sqlx.Tx, tenantID, name, hash string, opts []KeyOption) (Key, error) {
	k := NewKeyRow(tenantID, name, opts)
	_, err := tx.ExecContext(ctx,
		`INSERT INTO api_keys (id, tenant_id, name, admin, scope, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.TenantID, k.Name, k.Admin, k.Scope, hash, k.CreatedAt, k.ExpiresAt)
	switch {
	case isConstraint(err, sqlite3.ErrConstraintForeignKey):
		return Key{}, switchboard.Errorf(switchboard.ENOTFOUND, "Tenant not found.")
	case isConstraint(err, sqlite3.ErrConstraintUnique):
		// The hash is random (CreateKey) or checked first (EnsureKey), so
		// the name is what collides.
		return Key{}, switchboard.Errorf(switchboard.ECONFLICT, "The tenant already has an API key called %q.", name)
	case err != nil:
		return Key{}, err
	}
	return k, nil
}

// newKey returns KeyPrefix and 32 random bytes in base62, left-padded to a
// fixed length.
func newKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go >= 1.24)
	digits := new(big.Int).SetBytes(b).Text(62)
	return KeyPrefix + strings.Repeat("0", keyDigits-len(digits)) + digits
}

// hashKey returns the hex SHA-256 of a key. Keys are long random strings (or
// chosen by an operator, at least MinKeyLength characters), so a fast hash
// is enough: there is no dictionary to try.
func hashKey(plaintext string) string {
	sum := sha256.Sum256([]byte(plaintext))
	return hex.EncodeToString(sum[:])
}

// checkKey records what is wrong with an operator-chosen key.
func checkKey(fe switchboard.FieldErrors, field, key string) {
	if len(key) < MinKeyLength || len(key) > MaxKeyLength {
		fe.Add(field, fmt.Sprintf("must be %d to %d characters", MinKeyLength, MaxKeyLength))
	}
	if strings.ContainsFunc(key, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		fe.Add(field, "must not contain spaces or control characters")
	}
}
