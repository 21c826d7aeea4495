package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/signer"
)

// Two tenants post the same event ids, each right after creating its
// webhook, to a registry and two workers: each tenant's events are stored
// and delivered, under the ids they gave; a repeat is a duplicate only
// within its tenant; GET /v1/events/{id} finds each tenant's own event.
func TestSplit_SameEventIDsFromTwoTenants(t *testing.T) {
	ext := startExternalNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	reg := mustStartSystem(t, testRoleConfig(t, roles{Registry: true}, ext.ClientURL()))
	for range 2 {
		mustStartSystem(t, testRoleConfig(t, roles{Worker: true}, ext.ClientURL()))
	}
	other, err := reg.db.EnsureTenant(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _, err := reg.db.CreateKey(ctx, other.ID, "other")
	if err != nil {
		t.Fatal(err)
	}

	const n = 120
	type tenant struct {
		name string
		api  apiClient
		recv *testenv.Receiver
	}
	tenants := []tenant{
		{name: "default", api: apiClient{url: reg.URL, key: testKey}, recv: testenv.StartReceiver(t, nil)},
		{name: "other", api: apiClient{url: reg.URL, key: otherKey}, recv: testenv.StartReceiver(t, nil)},
	}
	post := func(tn tenant, i int) producer.EventResponse {
		t.Helper()
		var res producer.EventResponse
		if err := tn.api.do(ctx, http.MethodPost, "/v1/events", map[string]any{
			"id": fmt.Sprintf("order-%d", i), "type": "call.started", "data": map[string]any{"tenant": tn.name},
		}, &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, tn := range tenants {
		// No wait for the workers: the events follow the create at once.
		if _, err := tn.api.createWebhook(ctx, map[string]any{"name": "crm", "url": tn.recv.URL, "events": []string{"call.*"}}); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if res := post(tn, i); res.Duplicate {
				t.Fatalf("tenant %s: order-%d is a duplicate of another tenant's", tn.name, i)
			}
		}
	}
	for i := range 10 {
		if res := post(tenants[0], i); !res.Duplicate {
			t.Errorf("a repeat of order-%d within its tenant is not a duplicate", i)
		}
	}

	for _, tn := range tenants {
		testenv.WaitFor(t, 30*time.Second, "tenant "+tn.name+" receives each of its events", func() bool {
			return len(tn.recv.CountByID()) == n
		})
		for _, r := range tn.recv.Requests() {
			var body struct {
				Data struct {
					Tenant string `json:"tenant"`
				} `json:"data"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatal(err)
			}
			if id := r.Header.Get(signer.HeaderID); body.Data.Tenant != tn.name || !strings.HasPrefix(id, "order-") {
				t.Fatalf("tenant %s received %s of tenant %q", tn.name, id, body.Data.Tenant)
			}
		}
		var evt struct {
			ID   string `json:"id"`
			Data struct {
				Tenant string `json:"tenant"`
			} `json:"data"`
		}
		if err := tn.api.do(ctx, http.MethodGet, "/v1/events/order-7", nil, &evt); err != nil {
			t.Fatal(err)
		}
		if evt.ID != "order-7" || evt.Data.Tenant != tn.name {
			t.Errorf("tenant %s: GET /v1/events/order-7 = %+v", tn.name, evt)
		}
	}
	if got := tenants[0].recv.Count(); got != n {
		t.Errorf("the default tenant's receiver got %d requests for %d events: a repeat was delivered", got, n)
	}
}

// A worker that cannot open what the registry sealed refuses to run: no
// key, or another key, stops it with an error naming --encryption-key, and
// it is never ready; with the registry's key it runs.
func TestWorker_RefusesWithoutTheRegistrysKey(t *testing.T) {
	ext := startExternalNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	regCfg := testRoleConfig(t, roles{Registry: true}, ext.ClientURL())
	regCfg.EncryptionKey = key
	reg := mustStartSystem(t, regCfg)
	if _, err := (apiClient{url: reg.URL, key: testKey}).createWebhook(ctx, map[string]any{
		"name": "sealed", "url": "http://127.0.0.1:1/", "events": []string{"*"},
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("NoKey", func(t *testing.T) {
		// As `switchboard worker` runs it: the error makes the exit status.
		err := run(ctx, []string{"worker", "--nats-url", ext.ClientURL(), "--nats-user", externalAuth.User, "--nats-password", externalAuth.Password, "--listen", "127.0.0.1:0"}, io.Discard, io.Discard)
		if !errors.Is(err, consumer.ErrEncryptionKey) || !strings.Contains(err.Error(), "--encryption-key") {
			t.Errorf("worker without the key: %v, want ErrEncryptionKey naming --encryption-key", err)
		}
	})
	t.Run("OtherKey", func(t *testing.T) {
		cfg := testRoleConfig(t, roles{Worker: true}, ext.ClientURL())
		cfg.EncryptionKey = "b3RoZXJrZXktb3RoZXJrZXktb3RoZXJrZXktb3RoZXI="
		sys := mustStartSystem(t, cfg)
		if err := sys.Wait(ctx); !errors.Is(err, consumer.ErrEncryptionKey) {
			t.Errorf("worker with another key: %v, want ErrEncryptionKey", err)
		}
		if sys.ready() {
			t.Error("a worker with another key is ready")
		}
	})
	t.Run("RegistrysKey", func(t *testing.T) {
		cfg := testRoleConfig(t, roles{Worker: true}, ext.ClientURL())
		cfg.EncryptionKey = key
		sys := mustStartSystem(t, cfg)
		testenv.WaitFor(t, 10*time.Second, "ready", sys.ready)
		resp, err := http.Get(sys.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz = %d", resp.StatusCode)
		}
	})
}

// A registry started on an empty data dir against NATS that holds another
// registry's webhooks refuses to start, deletes nothing, and names
// --adopt-mirror; given it, it starts.
func TestRegistry_RefusesAnotherDatabasesMirror(t *testing.T) {
	ext := startExternalNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := mustStartSystem(t, testRoleConfig(t, roles{Registry: true}, ext.ClientURL()))
	id, err := (apiClient{url: first.URL, key: testKey}).createWebhook(ctx, map[string]any{
		"name": "prod", "url": "https://example.com/h", "events": []string{"*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := testRoleConfig(t, roles{Registry: true}, ext.ClientURL()) // a new, empty data dir
	_, err = startSystem(ctx, cfg, first.logger)
	if err == nil || !strings.Contains(err.Error(), "--adopt-mirror") || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Fatalf("registry on an empty data dir: %v, want a refusal naming the data dir and --adopt-mirror", err)
	}
	kv := openKV(t, ext.ClientURL())
	if _, err := kv.Get(ctx, id); err != nil {
		t.Fatalf("the other registry's webhook is gone from the bucket: %v", err)
	}

	cfg.AdoptMirror = true
	mustStartSystem(t, cfg)
	testenv.WaitFor(t, 10*time.Second, "the adopted bucket matches the new database", func() bool {
		_, err := kv.Get(ctx, id)
		return err != nil
	})
	if e, err := kv.Get(ctx, streams.MirrorIDKey); err != nil || len(e.Value()) == 0 {
		t.Errorf("no owner in the adopted bucket: %v", err)
	}
}

// openKV opens the webhooks bucket on the NATS at url.
func openKV(t *testing.T, url string) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(url, externalAuth.options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := streams.OpenWebhooksKV(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// A webhook set active, or given a new event type, right before a burst
// of events gets every one of them, with two workers.
func TestSplit_WebhookActivatedJustBeforeBurst(t *testing.T) {
	ext := startExternalNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	reg := mustStartSystem(t, testRoleConfig(t, roles{Registry: true}, ext.ClientURL()))
	for range 2 {
		mustStartSystem(t, testRoleConfig(t, roles{Worker: true}, ext.ClientURL()))
	}
	api := apiClient{url: reg.URL, key: testKey}
	recv := testenv.StartReceiver(t, nil)
	id, err := api.createWebhook(ctx, map[string]any{"name": "later", "url": recv.URL, "events": []string{"call.*"}, "status": "inactive"})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(prefix, typ string) []string {
		ids := make([]string, 100)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%d", prefix, i)
			if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"id": ids[i], "type": typ, "data": map[string]any{}}, nil); err != nil {
				t.Fatal(err)
			}
		}
		return ids
	}
	if err := api.do(ctx, http.MethodPatch, "/v1/webhooks/"+id, map[string]any{"status": "active"}, nil); err != nil {
		t.Fatal(err)
	}
	want := publish("activated", "call.started")
	if err := api.do(ctx, http.MethodPatch, "/v1/webhooks/"+id, map[string]any{"events": []string{"call.*", "agent.*"}}, nil); err != nil {
		t.Fatal(err)
	}
	want = append(want, publish("widened", "agent.logged_in")...)
	testenv.WaitFor(t, 30*time.Second, "every event after the change delivered", func() bool {
		got := recv.CountByID()
		for _, id := range want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
}
