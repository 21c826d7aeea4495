package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/signer"
)

// Rotating --encryption-key as docs/operations.md says: started with
// "NEW,OLD" the registry seals every webhook again under NEW, in SQLite and
// in the KV bucket, so that the next start with NEW alone opens all of it
// and delivers signed with the webhooks' secrets.
func TestServe_EncryptionKeyRotation(t *testing.T) {
	const (
		oldKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
		newKey = "YW5vdGhlciBrZXksIDMyIGJ5dGVzIGxvbmcuLi4uLi4="
	)
	recv := testenv.StartReceiver(t, nil)
	cfg := testServeConfig(t.TempDir())
	cfg.EncryptionKey = oldKey
	sys := mustStartSystem(t, cfg)
	ctx := context.Background()
	api := apiClient{url: sys.URL, key: testKey}
	var created struct{ ID, Secret string }
	if err := api.do(ctx, http.MethodPost, "/v1/webhooks", map[string]any{
		"name": "sealed", "url": recv.URL, "events": []string{"call.*"},
		"auth": map[string]any{"type": "bearer", "token": "outbound-token-0123"},
	}, &created); err != nil {
		t.Fatal(err)
	}
	entry := func(sys *system) []byte {
		t.Helper()
		kv, err := streams.OpenWebhooksKV(ctx, sys.js)
		if err != nil {
			t.Fatal(err)
		}
		e, err := kv.Get(ctx, created.ID)
		if err != nil {
			t.Fatal(err)
		}
		return e.Value()
	}
	testenv.WaitFor(t, 10*time.Second, "mirrored", func() bool { return sys.index.Has(created.ID) })
	sealedByOld := entry(sys)
	if err := sys.Close(); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	cfg.EncryptionKey = newKey + "," + oldKey
	sys, err := startSystem(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("start with NEW,OLD: %v", err)
	}
	if !bytes.Contains(logs.Bytes(), []byte("resealed=1")) {
		t.Errorf("the registry does not say it sealed the webhook again:\n%s", logs.String())
	}
	testenv.WaitFor(t, 10*time.Second, "the KV entry sealed again", func() bool { return !bytes.Equal(entry(sys), sealedByOld) })
	if err := sys.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.EncryptionKey = newKey
	sys = mustStartSystem(t, cfg)
	testenv.WaitFor(t, 10*time.Second, "index", func() bool { return sys.index.Has(created.ID) })
	api.url = sys.URL
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "data": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "delivery under the new key", func() bool { return recv.Count() == 1 })
	r := recv.Requests()[0]
	s, err := signer.New(created.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(r.Header, r.Body, signer.DefaultTolerance, time.Now()); err != nil {
		t.Errorf("delivery after the rotation does not verify with the secret: %v", err)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer outbound-token-0123" {
		t.Errorf("outbound credential after the rotation: %q", got)
	}
}
