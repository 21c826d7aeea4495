package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// filesContaining returns the files under dir (recursively) whose bytes
// contain any of needles.
func filesContaining(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found = append(found, path+" holds "+n[:4]+"...")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// With an encryption key, no secret or credential is in plaintext in the
// SQLite files or in NATS (KV entries and the store's files), and the
// workers, given the same key, still sign deliveries with the secret.
func TestEncryption_AtRestAndDelivered(t *testing.T) {
	key := apitest.EncryptionKey(t)
	a := apitest.Start(t, func(s *api.Server) { s.DB.EncryptionKey = key; allowLoopback(s) })
	ctx := context.Background()
	recv := testenv.StartReceiver(t, nil)

	const token, password = "tok-plaintext-7f3a9c", "pw-plaintext-41d2e8"
	first := secretOf(32) // becomes a retiring secret
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "sealed", "url": recv.URL + "/hook", "events": []string{"call.started"}, "secret": first,
		"auth": map[string]any{"type": "bearer", "token": token},
	}))
	basic := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "basic", "url": recv.URL + "/basic", "events": []string{"sale.created"},
		"auth": map[string]any{"type": "basic", "username": "user", "password": password},
	}))
	status, b := a.Do(t, http.MethodPost, "/v1/webhooks/"+wh.ID+"/secret/rotate", a.Key, `{}`)
	if status != http.StatusOK {
		t.Fatalf("rotate: %d %s", status, b)
	}
	current := apitest.Decode[apitest.SecretJSON](t, b).Secret
	plaintexts := []string{first, current, basic.Secret, token, password}

	// The API still reads them (GET secret opens what the store sealed).
	if got := apitest.Decode[apitest.SecretJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+wh.ID+"/secret")); got.Secret != current || len(got.RetiringSecrets) != 1 {
		t.Errorf("GET secret = %+v, want the current secret and one retiring", got)
	}

	for _, id := range []string{wh.ID, basic.ID} {
		e, err := a.KV.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range plaintexts {
			if bytes.Contains(e.Value(), []byte(p)) {
				t.Errorf("the KV entry of %s holds a plaintext secret or credential: %s", id, e.Value())
			}
		}
		var stored switchboard.Webhook
		if err := json.Unmarshal(e.Value(), &stored); err != nil {
			t.Fatal(err)
		}
		if !sealed.IsSealed(stored.Secret) {
			t.Errorf("KV secret of %s is not sealed: %q", id, stored.Secret)
		}
	}
	if found := filesContaining(t, filepath.Dir(a.DBPath), plaintexts...); len(found) > 0 {
		t.Errorf("SQLite files hold plaintexts: %v", found)
	}
	if found := filesContaining(t, a.JS.Dir, plaintexts...); len(found) > 0 {
		t.Errorf("JetStream files hold plaintexts: %v", found)
	}
	// The scan can fail: the non-confidential fields are there in clear.
	if found := filesContaining(t, filepath.Dir(a.DBPath), recv.URL+"/basic"); len(found) == 0 {
		t.Fatal("the scan finds nothing, not even the url: it proves nothing")
	}

	// The workers, given the key, open the values and sign with the
	// current secret; the Standard Webhooks library verifies it.
	logger := slog.New(slog.DiscardHandler)
	index := &consumer.Index{KV: a.KV, Logger: logger, EncryptionKey: key}
	apitest.RunUntilCleanup(t, index.Run)
	testenv.WaitFor(t, 10*time.Second, "the index holds the webhook", func() bool { return index.Has(wh.ID) })
	metrics := consumer.NewMetrics(nil)
	apitest.RunUntilCleanup(t, (&consumer.Matcher{JS: a.JS.JS, Index: index, Logger: logger, Metrics: metrics}).Run)
	apitest.RunUntilCleanup(t, (&consumer.Deliverer{JS: a.JS.JS, Index: index, Logger: logger, Metrics: metrics,
		Retry: consumer.DefaultRetryPolicy(), Workers: 2, MaxAckPending: 8, Guard: netguard.New(false, netip.MustParsePrefix("127.0.0.0/8"))}).Run)
	evt := &switchboard.Event{ID: "evt_sealed", TenantID: a.Tenant.ID, Type: "call.started", Data: json.RawMessage(`{}`)}
	if _, err := producer.New(a.JS.JS).Publish(ctx, evt); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "delivery", func() bool { return recv.Count() == 1 })
	r := recv.Requests()[0]
	verifier, err := standardwebhooks.NewWebhook(current)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifier.Verify(r.Body, r.Header); err != nil {
		t.Errorf("the delivery does not verify with the current secret: %v", err)
	}

	// A worker without the key cannot use the sealed webhooks, and
	// refuses to run rather than take their events.
	blind := &consumer.Index{KV: a.KV, Logger: logger}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if err := blind.Run(rctx); !errors.Is(err, consumer.ErrEncryptionKey) || blind.Ready() {
		t.Errorf("index without the key: Run = %v, ready %v; want ErrEncryptionKey, not ready", err, blind.Ready())
	}
	if blind.Has(wh.ID) {
		t.Error("an index without the key holds a usable sealed webhook")
	}
}

// Values stored before the key was configured still read, and are sealed
// the next time the webhook is written.
func TestEncryption_PlaintextStoredBeforeTheKey(t *testing.T) {
	a := apitest.Start(t, nil)
	const token = "tok-before-the-key-9e1b"
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "old", "url": "https://example.com/h", "events": []string{"*"},
		"auth": map[string]any{"type": "header", "token": token},
	}))
	a.DB.EncryptionKey = apitest.EncryptionKey(t) // as after a restart with the key
	got := apitest.Decode[apitest.SecretJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+wh.ID+"/secret"))
	if got.Secret != wh.Secret {
		t.Fatalf("GET secret after the key was set: %+v", got)
	}
	if apitest.KVWebhook(t, a.KV, wh.ID).Secret != wh.Secret {
		t.Fatal("the entry written without a key should hold the plaintext")
	}
	if status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+wh.ID, a.Key, `{"name": "renamed"}`); status != http.StatusOK {
		t.Fatalf("patch: %d %s", status, b)
	}
	e := apitest.KVWebhook(t, a.KV, wh.ID)
	if !sealed.IsSealed(e.Secret) || !sealed.IsSealed(e.Auth.Token) || strings.Contains(e.Auth.Token, token) {
		t.Errorf("after a write with the key, the entry holds %+v", e)
	}
	if got := apitest.Decode[apitest.SecretJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+wh.ID+"/secret")); got.Secret != wh.Secret {
		t.Errorf("secret changed by sealing: %q", got.Secret)
	}
}

// Sealing uses a random nonce, yet the bucket's entries stay byte-stable:
// the mirror copies the sealed values as stored, so a resync rewrites
// nothing and a flush converges.
func TestEncryption_MirrorIsStable(t *testing.T) {
	a := apitest.Start(t, func(s *api.Server) { s.DB.EncryptionKey = apitest.EncryptionKey(t) })
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "stable", "url": "https://example.com/h", "events": []string{"*"},
		"auth": map[string]any{"type": "bearer", "token": "t0k"},
	}))
	revs := apitest.KVRevisions(t, a.KV)
	m := control.NewMirror(a.DB, a.KV)
	if err := m.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(context.Background(), wh.ID); err != nil {
		t.Fatal(err)
	}
	if got := apitest.KVRevisions(t, a.KV); got[wh.ID] != revs[wh.ID]+1 {
		t.Errorf("revisions %v, then %v: want the resync to rewrite nothing and the flush to put once", revs, got)
	}
}

func TestDB_CheckEncryptionKey(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := context.Background()
	if err := a.DB.CheckEncryptionKey(ctx); err != nil {
		t.Fatalf("no key, nothing sealed: %v", err)
	}
	a.Create(t, a.Key, "/v1/webhooks", `{"name": "plain", "url": "https://example.com/h", "events": ["*"]}`)
	if err := a.DB.CheckEncryptionKey(ctx); err != nil {
		t.Fatalf("no key, plaintext stored: %v", err)
	}
	key := apitest.EncryptionKey(t)
	a.DB.EncryptionKey = key
	if err := a.DB.CheckEncryptionKey(ctx); err != nil {
		t.Fatalf("a key, only plaintext stored: %v", err)
	}
	a.Create(t, a.Key, "/v1/webhooks", `{"name": "sealed", "url": "https://example.com/h", "events": ["*"]}`)
	if err := a.DB.CheckEncryptionKey(ctx); err != nil {
		t.Fatalf("the right key: %v", err)
	}
	a.DB.EncryptionKey = nil
	if err := a.DB.CheckEncryptionKey(ctx); !errors.Is(err, sealed.ErrNoKey) {
		t.Errorf("no key, sealed values stored: %v, want ErrNoKey", err)
	}
	other, err := sealed.ParseKey(base64.StdEncoding.EncodeToString([]byte("another key, 32 bytes long......")))
	if err != nil {
		t.Fatal(err)
	}
	a.DB.EncryptionKey = other
	if err := a.DB.CheckEncryptionKey(ctx); !errors.Is(err, sealed.ErrOpen) {
		t.Errorf("another key: %v, want ErrOpen", err)
	}
	a.DB.EncryptionKey = key
}
