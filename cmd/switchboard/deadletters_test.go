package main

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// `serve` hands its JetStream to the registry: a delivery that dies is
// listed by GET /v1/dead-letters and, once replayed, delivered.
func TestServe_DeadLettersListedAndReplayed(t *testing.T) {
	var healthy atomic.Bool
	var delivered atomic.Int64
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int {
		if healthy.Load() {
			delivered.Add(1)
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	ctx := context.Background()
	sys := mustStartSystem(t, testServeConfig(t.TempDir()))
	api := apiClient{url: sys.URL, key: testKey}
	id, err := api.createWebhook(ctx, map[string]any{
		"name": "crm", "url": recv.URL, "events": []string{"call.*"}, "max_retries": 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "data": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			ID        string `json:"id"`
			WebhookID string `json:"webhook_id"`
			Reason    string `json:"reason"`
		} `json:"data"`
	}
	testenv.WaitFor(t, 30*time.Second, "the dead letter is listed", func() bool {
		if err := api.do(ctx, http.MethodGet, "/v1/dead-letters?webhook_id="+id, nil, &list); err != nil {
			t.Fatal(err)
		}
		return len(list.Data) == 1
	})
	if dl := list.Data[0]; dl.WebhookID != id || dl.Reason != "retries_exhausted" {
		t.Fatalf("dead letter = %+v", dl)
	}

	healthy.Store(true)
	var replayed struct {
		Replayed int `json:"replayed"`
	}
	if err := api.do(ctx, http.MethodPost, "/v1/dead-letters/replay", map[string]any{"ids": []string{list.Data[0].ID}}, &replayed); err != nil {
		t.Fatal(err)
	}
	if replayed.Replayed != 1 {
		t.Fatalf("replayed %d, want 1", replayed.Replayed)
	}
	testenv.WaitFor(t, 30*time.Second, "the replay is delivered", func() bool { return delivered.Load() == 1 })
}
