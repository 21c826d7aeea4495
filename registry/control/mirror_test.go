package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

func TestMirror_CreateAndDelete(t *testing.T) {
	a := apitest.Start(t, nil)
	a.PutAgent(t, a.Key, "agent-7")
	created := a.Create(t, a.Key, "/v1/agents/agent-7/webhooks",
		`{"name": "m", "url": "https://example.com/h", "events": ["call.*", "agent.logged_in"], "timeout": 7, "max_retries": 2, "enabled": false}`)

	// The response is sent once the bucket has the webhook: no waiting.
	got := apitest.KVWebhook(t, a.KV, created.ID)
	want := switchboard.Webhook{
		ID: created.ID, TenantID: a.Tenant.ID, AgentID: "agent-7", Name: "m", URL: "https://example.com/h",
		Events: []string{"call.*", "agent.logged_in"}, Secret: created.Secret, TimeoutSeconds: 7, MaxRetries: 2,
		Status: switchboard.StatusInactive, CreatedAt: created.CreatedAt, UpdatedAt: created.UpdatedAt,
	}
	if got == nil || !equalDomainWebhooks(*got, want) {
		t.Fatalf("kv has %+v, want %+v", got, want)
	}

	if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+created.ID, a.Key, ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, b)
	}
	if got := apitest.KVWebhook(t, a.KV, created.ID); got != nil {
		t.Errorf("kv still has %+v after delete", got)
	}
}

func equalDomainWebhooks(a, b switchboard.Webhook) bool {
	return a.ID == b.ID && a.TenantID == b.TenantID && a.AgentID == b.AgentID && a.Name == b.Name &&
		a.URL == b.URL && slices.Equal(a.Events, b.Events) && a.Secret == b.Secret &&
		a.TimeoutSeconds == b.TimeoutSeconds && a.MaxRetries == b.MaxRetries && a.Status == b.Status &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

// Changes committed while NATS is down wait in the outbox and reach the
// bucket once it is back.
func TestMirror_OutboxSurvivesNATSDown(t *testing.T) {
	a := apitest.Start(t, nil)
	kept := a.Create(t, a.Key, "/v1/webhooks", `{"name": "kept", "url": "https://example.com/h", "events": ["*"]}`)
	doomed := a.Create(t, a.Key, "/v1/webhooks", `{"name": "doomed", "url": "https://example.com/h", "events": ["*"]}`)

	a.JS.Stop()
	// The API still answers: the changes are committed.
	born := a.Create(t, a.Key, "/v1/webhooks", `{"name": "born", "url": "https://example.com/h", "events": ["*"]}`)
	if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+doomed.ID, a.Key, ""); status != http.StatusNoContent {
		t.Fatalf("delete while NATS is down: %d %s", status, b)
	}
	transient := a.Create(t, a.Key, "/v1/webhooks", `{"name": "transient", "url": "https://example.com/h", "events": ["*"]}`)
	if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+transient.ID, a.Key, ""); status != http.StatusNoContent {
		t.Fatalf("delete while NATS is down: %d %s", status, b)
	}

	js := testenv.StartJetStreamIn(t, a.JS.Dir)
	kv, err := streams.OpenWebhooksKV(context.Background(), js.JS)
	if err != nil {
		t.Fatal(err)
	}
	if err := control.NewMirror(a.DB, kv).FlushPending(context.Background()); err != nil {
		t.Fatalf("flush pending: %v", err)
	}
	if got := apitest.KVKeys(t, kv); !slices.Equal(got, []string{kept.ID, born.ID}) {
		t.Errorf("kv keys %v, want %v", got, []string{kept.ID, born.ID})
	}
	if wh := apitest.KVWebhook(t, kv, born.ID); wh == nil || wh.Secret != born.Secret {
		t.Errorf("kv entry of the webhook created while NATS was down: %+v", wh)
	}

	// The outbox is empty now: flushing again puts nothing.
	revs := apitest.KVRevisions(t, kv)
	if err := control.NewMirror(a.DB, kv).FlushPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	if again := apitest.KVRevisions(t, kv); !maps.Equal(again, revs) {
		t.Errorf("a second flush changed the bucket: revisions %v, then %v", revs, again)
	}
}

func TestMirror_Resync(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		wh := a.Create(t, a.Key, "/v1/webhooks", fmt.Sprintf(`{"name": "r%d", "url": "https://example.com/h", "events": ["*"]}`, i))
		ids = append(ids, wh.ID)
	}
	before := apitest.KVWebhook(t, a.KV, ids[1])
	untouched := apitest.KVRevisions(t, a.KV)[ids[2]]

	// Wipe one entry, corrupt another, add one the registry does not have.
	if err := a.KV.Delete(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.KV.Put(ctx, ids[1], []byte(`{"id": "stale"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.KV.Put(ctx, "wh_ghost", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	if err := control.NewMirror(a.DB, a.KV).Resync(ctx); err != nil {
		t.Fatalf("resync: %v", err)
	}
	if got := apitest.KVKeys(t, a.KV); !slices.Equal(got, ids) {
		t.Errorf("kv keys %v, want %v", got, ids)
	}
	if after := apitest.KVWebhook(t, a.KV, ids[1]); after == nil || !equalDomainWebhooks(*after, *before) {
		t.Errorf("resynced entry %+v, want %+v", after, before)
	}
	if rev := apitest.KVRevisions(t, a.KV)[ids[2]]; rev != untouched {
		t.Errorf("resync rewrote an entry that was right: revision %d, then %d", untouched, rev)
	}
}

func TestMirror_RunResyncsAtStart(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		wh := a.Create(t, a.Key, "/v1/webhooks", fmt.Sprintf(`{"name": "r%d", "url": "https://example.com/h", "events": ["*"]}`, i))
		ids = append(ids, wh.ID)
	}
	if err := a.KV.Purge(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := a.KV.Delete(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}

	m := control.NewMirror(a.DB, a.KV)
	m.Interval = 50 * time.Millisecond
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	testenv.WaitFor(t, 5*time.Second, "the wiped entries are restored", func() bool {
		return slices.Equal(apitest.KVKeys(t, a.KV), ids)
	})
	// After the start, Run only follows the outbox: it does not reread every
	// webhook each Interval.
	if err := a.KV.Delete(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * m.Interval)
	if got := apitest.KVKeys(t, a.KV); slices.Contains(got, ids[1]) {
		t.Errorf("Run resynced again after its start: keys %v", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop with its context")
	}
}

// Run retries the outbox: a change made while NATS is down reaches the
// bucket once NATS is back, without a restart of the mirror.
func TestMirror_RunRetriesOutbox(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := context.Background()
	m := control.NewMirror(a.DB, a.KV)
	m.Interval = 50 * time.Millisecond
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = m.Run(runCtx) }()

	// Stand-in for NATS being down: make the bucket refuse writes.
	if _, err := a.JS.JS.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: streams.WebhooksBucket, History: 1, MaxBytes: 1}); err != nil {
		t.Fatal(err)
	}
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "later", "url": "https://example.com/h", "events": ["*"]}`)
	time.Sleep(200 * time.Millisecond) // several failing rounds
	if got := apitest.KVWebhook(t, a.KV, wh.ID); got != nil {
		t.Fatalf("the bucket accepted %+v: this test no longer simulates an outage", got)
	}
	if _, err := streams.WebhooksKV(ctx, a.JS.JS, 1); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the outbox is flushed", func() bool {
		return apitest.KVWebhook(t, a.KV, wh.ID) != nil
	})
}

// Many clients creating and deleting at once: the bucket ends up holding
// exactly the registry's webhooks.
func TestMirror_Concurrent(t *testing.T) {
	a := apitest.Start(t, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				status, b := a.Do(t, http.MethodPost, "/v1/webhooks", a.Key,
					fmt.Sprintf(`{"name": "c%d-%d", "url": "https://example.com/h", "events": ["*"]}`, g, i))
				if status != http.StatusCreated {
					t.Errorf("create: %d %s", status, b)
					return
				}
				if i%2 == 0 {
					var wh apitest.WebhookJSON
					if err := json.Unmarshal(b, &wh); err != nil {
						t.Error(err)
						return
					}
					if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+wh.ID, a.Key, ""); status != http.StatusNoContent {
						t.Errorf("delete: %d %s", status, b)
					}
				}
			}
		})
	}
	wg.Wait()
	ids := apitest.ListIDs(t, a, a.Key)
	if got := apitest.KVKeys(t, a.KV); len(ids) != 40 || !slices.Equal(got, ids) {
		t.Errorf("kv keys %v, registry %v", got, ids)
	}
}

// hookedKV runs beforePut once, just before the next Put reaches the bucket.
type hookedKV struct {
	jetstream.KeyValue
	beforePut func()
}

func (kv *hookedKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if f := kv.beforePut; f != nil {
		kv.beforePut = nil
		f()
	}
	return kv.KeyValue.Put(ctx, key, value)
}

// A flush that read a webhook and is overtaken by another process deleting
// it (and mirroring the delete) must not leave its stale put in the bucket.
func TestMirror_StalePutIsCorrected(t *testing.T) {
	a := apitest.Start(t, nil)
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "racy", "url": "https://example.com/h", "events": ["*"]}`)
	kv := &hookedKV{KeyValue: a.KV, beforePut: func() {
		if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+wh.ID, a.Key, ""); status != http.StatusNoContent {
			t.Errorf("delete: %d %s", status, b)
		}
	}}
	if err := control.NewMirror(a.DB, kv).Flush(context.Background(), wh.ID); err != nil {
		t.Fatal(err)
	}
	if got := apitest.KVWebhook(t, a.KV, wh.ID); got != nil {
		t.Errorf("the bucket holds deleted webhook %+v", got)
	}
}
