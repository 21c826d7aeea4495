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

	withKey, without := &Index{KV: kv, EncryptionKey: key}, &Index{KV: kv}
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for _, x := range []*Index{withKey, without} {
		wg.Go(func() {
			if err := x.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		testenv.WaitFor(t, 10*time.Second, "ready", x.Ready)
	}
	h, ok := withKey.lookup("wh_sealed")
	if !ok || !h.usable() {
		t.Fatalf("with the key: %+v, %v", h, ok)
	}
	if w := h.webhook; w.Secret != plain.Secret || w.Auth != plain.Auth || w.RetiringSecrets[0] != plain.RetiringSecrets[0] {
		t.Errorf("opened %+v, want %+v", w, plain)
	}
	h, ok = without.lookup("wh_sealed")
	if !ok || h.usable() || !errors.Is(h.err, sealed.ErrNoKey) {
		t.Errorf("without the key: %+v, %v; want unusable, ErrNoKey", h, ok)
	}
}
