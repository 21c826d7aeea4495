package control_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// A webhook whose create was answered while its mirroring into KV failed
// is in KV before any later event is accepted: the ingest API refuses the
// event (503, naming its id) until the change is mirrored, instead of
// accepting an event no worker can match to the new webhook.
func TestIngest_WaitsForDeferredWebhookChanges(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartJetStream(t)
	kv, err := streams.OpenWebhooksKV(ctx, env.JS)
	if err != nil {
		t.Fatal(err)
	}
	db := dbtest.Open(t)
	_, key, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	mirror := control.NewMirror(db, kv)
	mirror.Timeout = 500 * time.Millisecond
	srv := api.NewServer(db, kv)
	srv.JS, srv.Mirror = env.JS, mirror
	client := producer.New(env.JS)
	client.AttemptTimeout = time.Second
	srv.Ingest = &producer.Handler{Client: client, Before: mirror.Settle}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	a := &apitest.Env{DB: db, URL: ts.URL, Key: key}
	post := func(body string) (int, producer.UnavailableResponse) {
		t.Helper()
		status, b := a.Do(t, http.MethodPost, "/v1/events", a.Key, body)
		var res producer.UnavailableResponse
		_ = json.Unmarshal(b, &res)
		return status, res
	}
	if status, _ := post(`{"type": "call.started", "data": {}}`); status != http.StatusAccepted {
		t.Fatalf("event before any change: %d", status)
	}

	// The bucket's stream goes away (its leader lost, say); the events'
	// stream still works.
	if err := env.JS.DeleteKeyValue(ctx, streams.WebhooksBucket); err != nil {
		t.Fatal(err)
	}
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "new", "url": "https://example.com/h", "events": ["*"]}`)
	status, res := post(`{"type": "call.started", "data": {}}`)
	if status != http.StatusServiceUnavailable || res.ID == "" {
		t.Fatalf("event after a change not mirrored: %d %+v, want 503 with the event id", status, res)
	}

	// Back: the same event, under the id the 503 gave, is accepted once
	// the webhook is in KV.
	if _, err := streams.WebhooksKV(ctx, env.JS, 1); err != nil {
		t.Fatal(err)
	}
	if status, _ := post(`{"id": "` + res.ID + `", "type": "call.started", "data": {}}`); status != http.StatusAccepted {
		t.Fatalf("the event sent again: %d", status)
	}
	if _, err := kv.Get(ctx, wh.ID); err != nil {
		t.Errorf("event accepted, webhook %s not in KV: %v", wh.ID, err)
	}
}
