package api_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
)

// Turning --encryption-key on for a registry written without it seals the
// plaintext secrets and credentials it holds, in SQLite and in the KV
// bucket, once.
func TestDB_SealSecrets(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := context.Background()
	const secret, password = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM0NQ==", "hunter2-hunter2"
	status, b := a.Do(t, http.MethodPost, "/v1/webhooks", a.Key, `{"name": "crm", "url": "https://example.com/h", "events": ["*"],
		"secret": "`+secret+`", "auth": {"type": "basic", "username": "u", "password": "`+password+`"}}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, b)
	}
	id := apitest.Decode[map[string]any](t, b)["id"].(string)
	if status, b := a.Do(t, http.MethodPost, "/v1/webhooks", a.Key, `{"name": "plain", "url": "https://example.com/p", "events": ["*"]}`); status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, b)
	}

	db := dbtest.OpenAt(t, a.DBPath)
	db.EncryptionKey = apitest.EncryptionKey(t)
	n, err := db.SealSecrets(ctx)
	if err != nil || n != 2 {
		t.Fatalf("seal: %d, %v; want the 2 webhooks", n, err)
	}
	if err := control.NewMirror(db, a.KV).FlushPending(ctx); err != nil {
		t.Fatal(err)
	}
	entry, err := a.KV.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if v := string(entry.Value()); strings.Contains(v, secret) || strings.Contains(v, password) || !strings.Contains(v, sealed.Prefix) {
		t.Errorf("the KV entry after sealing: %s", v)
	}
	tctx := switchboard.NewContextWithTenant(ctx, a.Tenant.ID)
	wh, err := db.FindWebhookByID(tctx, id)
	if err != nil || wh.Secret != secret || wh.Auth.Password != password {
		t.Errorf("the sealed webhook reads back as %+v, %v", wh, err)
	}
	if n, err := db.SealSecrets(ctx); err != nil || n != 0 {
		t.Errorf("sealing again: %d, %v; want nothing to do", n, err)
	}

	// A rotation: the new key with the old as previous seals everything
	// again; then the new key alone reads it, and the old one no longer.
	newKey, err := sealed.ParseKey(base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210")))
	if err != nil {
		t.Fatal(err)
	}
	rotating := dbtest.OpenAt(t, a.DBPath)
	rotating.EncryptionKey = newKey.WithPrevious(apitest.EncryptionKey(t))
	if err := rotating.CheckEncryptionKey(ctx); err != nil {
		t.Fatalf("the rotating key cannot read the registry: %v", err)
	}
	if n, err := rotating.SealSecrets(ctx); err != nil || n != 2 {
		t.Fatalf("reseal under the new key: %d, %v; want 2", n, err)
	}
	rotated := dbtest.OpenAt(t, a.DBPath)
	rotated.EncryptionKey = newKey
	if wh, err := rotated.FindWebhookByID(tctx, id); err != nil || wh.Secret != secret || wh.Auth.Password != password {
		t.Errorf("after the rotation, the new key alone reads %+v, %v", wh, err)
	}
	if err := db.CheckEncryptionKey(ctx); err == nil {
		t.Error("after the rotation, the old key still reads the registry")
	}
}
