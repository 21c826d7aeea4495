package consumer

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestIndex_FollowsTheBucket(t *testing.T) {
	env := testenv.StartJetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	kv, err := streams.OpenWebhooksKV(ctx, env.JS)
	if err != nil {
		t.Fatal(err)
	}
	put := func(w switchboard.Webhook) {
		t.Helper()
		b, _ := json.Marshal(w)
		if _, err := kv.Put(ctx, w.ID, b); err != nil {
			t.Fatal(err)
		}
	}
	put(switchboard.Webhook{ID: "wh_a", TenantID: "t1", URL: "http://127.0.0.1:1/", Events: []string{"*"}, Secret: testSecret, Status: switchboard.StatusActive})
	put(switchboard.Webhook{ID: "wh_gone", TenantID: "t1", URL: "http://127.0.0.1:1/", Events: []string{"*"}, Secret: testSecret, Status: switchboard.StatusActive})
	if err := kv.Delete(ctx, "wh_gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "wh_bad", []byte(`{"id":"wh_bad","secret":"whsec_***"}`)); err != nil {
		t.Fatal(err)
	}

	x := &Index{KV: kv}
	if x.Ready() {
		t.Fatal("ready before Run")
	}
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	testenv.WaitFor(t, 10*time.Second, "ready", x.Ready)

	if h, ok := x.lookup("wh_a"); !ok || !h.usable() || h.endpoint == nil || h.timeout != 30*time.Second {
		t.Errorf("wh_a = %+v, %v; want usable with a signer and the default timeout", h, ok)
	}
	if h, ok := x.lookup("wh_gone"); !ok || !h.deleted {
		t.Errorf("wh_gone = %+v, %v; want a tombstone", h, ok)
	}
	if h, ok := x.lookup("wh_bad"); !ok || h.usable() || h.err == nil {
		t.Errorf("wh_bad = %+v, %v; want known but invalid", h, ok)
	}
	if _, ok := x.lookup("wh_never"); ok {
		t.Error("wh_never is known")
	}
	evt := &switchboard.Event{ID: "e", TenantID: "t1", Type: "call.started"}
	if got := x.match(evt, nil); len(got) != 1 || got[0].id != "wh_a" {
		t.Errorf("match = %v, want wh_a", got)
	}

	// Live changes: wh_a moves to tenant t2, then is deleted.
	put(switchboard.Webhook{ID: "wh_a", TenantID: "t2", URL: "http://127.0.0.1:1/", Events: []string{"*"}, Secret: testSecret, Status: switchboard.StatusActive})
	testenv.WaitFor(t, 5*time.Second, "moved to t2", func() bool {
		return len(x.match(&switchboard.Event{TenantID: "t2", Type: "x"}, nil)) == 1
	})
	if got := x.match(evt, nil); len(got) != 0 {
		t.Errorf("t1 still matches %v after the move", got)
	}
	if err := kv.Delete(ctx, "wh_a"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "deleted", func() bool {
		h, ok := x.lookup("wh_a")
		return ok && h.deleted
	})
	if got := x.match(&switchboard.Event{TenantID: "t2", Type: "x"}, nil); len(got) != 0 {
		t.Errorf("a deleted webhook still matches: %v", got)
	}
}
