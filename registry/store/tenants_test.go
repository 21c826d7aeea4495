package store_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

func TestBootstrap_GeneratesKeyOnce(t *testing.T) {
	db := dbtest.Open(t)
	ctx := context.Background()
	tenant, key, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	if tenant.Name != store.DefaultTenantName || !regexp.MustCompile(`^sk_[0-9A-Za-z]{43}$`).MatchString(key) {
		t.Errorf("tenant %+v, key %q", tenant, key)
	}
	k, err := db.Authenticate(ctx, key)
	if err != nil || k.TenantID != tenant.ID || k.Name != store.DefaultKeyName {
		t.Errorf("authenticate the printed key: %+v, %v", k, err)
	}

	again, key2, err := store.Bootstrap(ctx, db, "")
	if err != nil || key2 != "" || again.ID != tenant.ID {
		t.Errorf("second bootstrap: tenant %+v, key %q, err %v; want the same tenant and no key", again, key2, err)
	}
	if n, err := db.CountKeys(ctx, tenant.ID); err != nil || n != 1 {
		t.Errorf("keys: %d, %v", n, err)
	}
}

// A tenant that has keys, none called "default", gets no generated key.
func TestBootstrap_TenantWithOtherKey(t *testing.T) {
	db := dbtest.Open(t)
	ctx := context.Background()
	tenant, err := db.EnsureTenant(ctx, store.DefaultTenantName)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CreateKey(ctx, tenant.ID, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, key, err := store.Bootstrap(ctx, db, ""); err != nil || key != "" {
		t.Errorf("bootstrap: key %q, %v; want none", key, err)
	}
	if n, err := db.CountKeys(ctx, tenant.ID); err != nil || n != 1 {
		t.Errorf("keys: %d, %v", n, err)
	}
}

func TestBootstrap_GivenKey(t *testing.T) {
	db := dbtest.Open(t)
	ctx := context.Background()
	_, generated, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}

	const given = "automation-key-0123456789"
	for range 2 { // idempotent
		tenant, key, err := store.Bootstrap(ctx, db, given)
		if err != nil || key != "" {
			t.Fatalf("bootstrap with a key: %q, %v", key, err)
		}
		k, err := db.Authenticate(ctx, given)
		if err != nil || k.TenantID != tenant.ID || k.Name != store.DefaultKeyName {
			t.Errorf("authenticate the given key: %+v, %v", k, err)
		}
		if n, err := db.CountKeys(ctx, tenant.ID); err != nil || n != 1 {
			t.Errorf("keys: %d, %v", n, err)
		}
	}
	// The given key replaced the generated one.
	_, err = db.Authenticate(ctx, generated)
	dbtest.WantCode(t, err, switchboard.EUNAUTHORIZED)

	for _, bad := range []string{"short", "has a space in it 0123", "tab\tin-the-key-0123456"} {
		_, _, err := store.Bootstrap(ctx, db, bad)
		dbtest.WantCode(t, err, switchboard.EINVALID)
	}
}

func TestDB_Keys(t *testing.T) {
	dir := t.TempDir()
	db := dbtest.OpenAt(t, filepath.Join(dir, "registry.db"))
	ctx := context.Background()
	acme, err := db.EnsureTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := db.EnsureTenant(ctx, "acme"); err != nil || again != acme {
		t.Errorf("ensure tenant again: %+v, %v; want %+v", again, err, acme)
	}
	other, err := db.EnsureTenant(ctx, "other")
	if err != nil || other.ID == acme.ID {
		t.Fatalf("second tenant: %+v, %v", other, err)
	}
	_, err = db.EnsureTenant(ctx, " ")
	dbtest.WantCode(t, err, switchboard.EINVALID)

	plaintext, k, err := db.CreateKey(ctx, acme.ID, "ci")
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.Authenticate(ctx, plaintext)
	if err != nil || got.ID != k.ID || got.TenantID != acme.ID || got.Name != "ci" || got.LastUsedAt == nil {
		t.Errorf("authenticate: %+v, %v", got, err)
	}
	_, err = db.Authenticate(ctx, plaintext[:len(plaintext)-1])
	dbtest.WantCode(t, err, switchboard.EUNAUTHORIZED)
	_, err = db.Authenticate(ctx, "")
	dbtest.WantCode(t, err, switchboard.EUNAUTHORIZED)

	_, _, err = db.CreateKey(ctx, acme.ID, "ci")
	dbtest.WantCode(t, err, switchboard.ECONFLICT)
	if _, _, err := db.CreateKey(ctx, other.ID, "ci"); err != nil {
		t.Errorf("same key name in another tenant: %v", err)
	}
	_, _, err = db.CreateKey(ctx, "ten_nope", "ci")
	dbtest.WantCode(t, err, switchboard.ENOTFOUND)
	_, _, err = db.CreateKey(ctx, acme.ID, "")
	dbtest.WantCode(t, err, switchboard.EINVALID)

	// EnsureKey: another tenant's key is refused; its own is returned as is.
	_, err = db.EnsureKey(ctx, other.ID, "stolen", plaintext)
	dbtest.WantCode(t, err, switchboard.ECONFLICT)
	if again, err := db.EnsureKey(ctx, acme.ID, "ci", plaintext); err != nil || again.ID != k.ID {
		t.Errorf("ensure an existing key: %+v, %v", again, err)
	}
	_, err = db.EnsureKey(ctx, "ten_nope", "x", "a-long-enough-key-0123")
	dbtest.WantCode(t, err, switchboard.ENOTFOUND)

	// Only hashes are stored: no key appears in the database files.
	files, _ := filepath.Glob(filepath.Join(dir, "registry.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(plaintext)) {
			t.Errorf("%s holds a key in plain text", f)
		}
	}
	if len(files) == 0 {
		t.Fatal("no database files")
	}
}
