package consumer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// The index opens what the registry sealed, as it loads each webhook, and
// keeps a sealed webhook it cannot open as unusable.
func TestIndex_OpensSealedValues(t *testing.T) {
	env := testenv.StartJetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	kv, err := streams.OpenWebhooksKV(ctx, env.JS)
	if err != nil {
		t.Fatal(err)
	}
	key, err := sealed.ParseKey(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", sealed.KeySize))))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).UTC()
	plain := switchboard.Webhook{
		ID: "wh_sealed", TenantID: "t1", URL: "http://127.0.0.1:1/", Events: []string{"*"}, Status: switchboard.StatusActive,
		Secret: testSecret, RetiringSecrets: []switchboard.RetiringSecret{{Secret: "whsec_b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQtb2xkLW9sZA==", ExpiresAt: exp}},
		Auth: switchboard.Auth{Type: switchboard.AuthBearer, Token: "tok"},
	}
	stored := plain
	key.SealWebhook(&stored)
	b, err := json.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, stored.ID, b); err != nil {
		t.Fatal(err)
	}

	withKey := &Index{KV: kv, EncryptionKey: key}
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Go(func() {
		if err := withKey.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	testenv.WaitFor(t, 10*time.Second, "ready", withKey.Ready)
	h, ok := withKey.lookup("wh_sealed")
	if !ok || !h.usable() {
		t.Fatalf("with the key: %+v, %v", h, ok)
	}
	if w := h.webhook; w.Secret != plain.Secret || w.Auth != plain.Auth || w.RetiringSecrets[0] != plain.RetiringSecrets[0] {
		t.Errorf("opened %+v, want %+v", w, plain)
	}

	// Without the key, or with another, the index refuses: it would
	// take events it cannot deliver.
	other, err := sealed.ParseKey(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("o", sealed.KeySize))))
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]*sealed.Key{"NoKey": nil, "OtherKey": other} {
		x := &Index{KV: kv, EncryptionKey: k}
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		err := x.Run(rctx)
		rcancel()
		if !errors.Is(err, ErrEncryptionKey) || x.Ready() {
			t.Errorf("%s: Run = %v, ready %v; want ErrEncryptionKey, not ready", name, err, x.Ready())
		}
	}
}
