package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// replay posts body to /v1/dead-letters/replay with key and fails the test
// unless the answer is want; it returns the decoded 202.
func replay(tb testing.TB, a *apitest.Env, key, body string, want int) (replayJSON, []byte) {
	tb.Helper()
	status, b := a.Do(tb, http.MethodPost, "/v1/dead-letters/replay", key, body)
	if status != want {
		tb.Fatalf("replay %s: %d %s, want %d", body, status, b, want)
	}
	if status != http.StatusAccepted {
		return replayJSON{}, b
	}
	return apitest.Decode[replayJSON](tb, b), b
}

// startPipeline runs the real workers against a's JetStream: the index of
// the webhooks, the matcher and the deliverer, retrying after a second,
// allowed to reach receivers on loopback.
func startPipeline(t *testing.T, a *apitest.Env) *consumer.Index {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	index := &consumer.Index{KV: a.KV, Logger: logger}
	apitest.RunUntilCleanup(t, index.Run)
	metrics := consumer.NewMetrics(nil)
	apitest.RunUntilCleanup(t, (&consumer.Matcher{JS: a.JS.JS, Index: index, Logger: logger, Metrics: metrics}).Run)
	apitest.RunUntilCleanup(t, (&consumer.Deliverer{
		JS: a.JS.JS, Index: index, Logger: logger, Metrics: metrics, Workers: 4, MaxAckPending: 16,
		Retry: consumer.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second, Multiplier: 1},
		Guard: netguard.New(true),
	}).Run)
	return index
}

// requestsFor returns the requests recv got for one event.
func requestsFor(recv *testenv.Receiver, eventID string) []testenv.Request {
	var out []testenv.Request
	for _, r := range recv.Requests() {
		if r.Header.Get("webhook-id") == eventID {
			out = append(out, r)
		}
	}
	return out
}

// A delivery whose retries are spent is dead-lettered, listed, replayed
// once the receiver is back, delivered exactly once more, and gone from the
// dead letters; another tenant can neither see nor replay it.
func TestDeadLetters_ReplayEndToEnd(t *testing.T) {
	a := startDeadLetterAPI(t)
	ctx := context.Background()
	var healthy atomic.Bool
	var delivered atomic.Int64
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int {
		if healthy.Load() {
			delivered.Add(1)
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "crm", "url": recv.URL, "events": []string{"call.*"}, "max_retries": 1,
	}))
	index := startPipeline(t, a)
	testenv.WaitFor(t, 10*time.Second, "the index holds the webhook", func() bool { return index.Has(wh.ID) })
	publish := func(id string) {
		t.Helper()
		evt := &switchboard.Event{ID: id, TenantID: a.Tenant.ID, Type: "call.started", Data: json.RawMessage(`{"call":1}`)}
		if _, err := producer.New(a.JS.JS).Publish(ctx, evt); err != nil {
			t.Fatal(err)
		}
	}
	waitDead := func(n int) []deadLetterJSON {
		t.Helper()
		var got []deadLetterJSON
		testenv.WaitFor(t, 30*time.Second, "dead letters", func() bool {
			got = listDeadLetters(t, a, a.Key, "?webhook_id="+wh.ID).Data
			return len(got) == n
		})
		return got
	}

	publish("evt_dead_1")
	dl := waitDead(1)[0]
	if dl.EventID != "evt_dead_1" || dl.WebhookID != wh.ID || dl.Reason != "retries_exhausted" || dl.Attempts != 2 ||
		dl.LastStatus == nil || *dl.LastStatus != 500 || dl.EventType == nil || *dl.EventType != "call.started" || dl.AcceptedAt == nil {
		t.Fatalf("dead letter = %+v", dl)
	}
	failed := requestsFor(recv, "evt_dead_1")
	if len(failed) != 2 {
		t.Fatalf("%d attempts before the dead letter, want 2 (max_retries 1)", len(failed))
	}

	t.Run("another-tenant", func(t *testing.T) {
		otherKey := a.NewTenant(t, "other")
		if got := listDeadLetters(t, a, otherKey, ""); len(got.Data) != 0 {
			t.Errorf("the other tenant lists %v", ids(got.Data))
		}
		got, _ := replay(t, a, otherKey, apitest.JSONBody(t, map[string]any{"ids": []string{dl.ID}}), http.StatusAccepted)
		if got.Replayed != 0 || !slices.Equal(got.NotFound, []string{dl.ID}) {
			t.Errorf("the other tenant's replay: %+v", got)
		}
		replay(t, a, otherKey, apitest.JSONBody(t, map[string]any{"webhook_id": wh.ID}), http.StatusNotFound)
		if got := listDeadLetters(t, a, a.Key, ""); !slices.Equal(ids(got.Data), []string{dl.ID}) {
			t.Errorf("after the other tenant's replays: %v", ids(got.Data))
		}
	})

	healthy.Store(true)
	got, _ := replay(t, a, a.Key, apitest.JSONBody(t, map[string]any{"ids": []string{dl.ID, dl.ID}}), http.StatusAccepted)
	if got.Replayed != 1 || len(got.NotFound) != 0 || got.HasMore {
		t.Fatalf("replay: %+v", got)
	}
	if left := listDeadLetters(t, a, a.Key, ""); len(left.Data) != 0 {
		t.Errorf("the replayed dead letter is still listed: %v", ids(left.Data))
	}
	testenv.WaitFor(t, 30*time.Second, "the replay is delivered", func() bool { return delivered.Load() == 1 })
	all := requestsFor(recv, "evt_dead_1")
	if len(all) != 3 {
		t.Fatalf("%d requests for the event, want 2 failed and 1 replayed", len(all))
	}
	if !bytes.Equal(all[2].Body, failed[0].Body) {
		t.Errorf("the replay's body differs:\n%s\n%s", all[2].Body, failed[0].Body)
	}

	again, _ := replay(t, a, a.Key, apitest.JSONBody(t, map[string]any{"ids": []string{dl.ID}}), http.StatusAccepted)
	if again.Replayed != 0 || !slices.Equal(again.NotFound, []string{dl.ID}) {
		t.Errorf("second replay of %s: %+v, want it not found", dl.ID, again)
	}

	// All of a webhook's: two more die while the receiver is down.
	healthy.Store(false)
	publish("evt_dead_2")
	publish("evt_dead_3")
	two := waitDead(2)
	healthy.Store(true)
	got, _ = replay(t, a, a.Key, apitest.JSONBody(t, map[string]any{"webhook_id": wh.ID, "reason": "retries_exhausted"}), http.StatusAccepted)
	if got.Replayed != 2 || got.HasMore {
		t.Fatalf("replay of %s's dead letters %v: %+v", wh.ID, ids(two), got)
	}
	testenv.WaitFor(t, 30*time.Second, "both replays are delivered", func() bool { return delivered.Load() == 3 })
	for _, id := range []string{"evt_dead_1", "evt_dead_2", "evt_dead_3"} {
		if n := len(requestsFor(recv, id)); n != 3 {
			t.Errorf("%s: %d requests, want 3 (2 failed, 1 replayed)", id, n)
		}
	}
	// Nothing arrives twice: a retry would come after a second.
	time.Sleep(1500 * time.Millisecond)
	if n := delivered.Load(); n != 3 {
		t.Errorf("%d successful deliveries, want 3: a replay was delivered twice", n)
	}
	if left := listDeadLetters(t, a, a.Key, ""); len(left.Data) != 0 {
		t.Errorf("dead letters left: %v", ids(left.Data))
	}
}

// A replay is queued as the matcher queues a delivery, with a msg id of its
// own; a webhook that cannot take it (inactive, deleted) refuses the whole
// request and keeps its dead letters.
func TestDeadLetters_ReplayQueuesAndRefuses(t *testing.T) {
	a := startDeadLetterAPI(t)
	ctx := context.Background()
	js := a.JS.JS
	active := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "on", "url": "https://example.com/on", "events": []string{"*"}}))
	inactive := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "off", "url": "https://example.com/off", "events": []string{"*"}, "status": "inactive"}))
	deleted := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "gone", "url": "https://example.com/gone", "events": []string{"*"}}))
	if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+deleted.ID, a.Key, ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, b)
	}
	dlActive := putDeadLetter(t, js, a.Tenant.ID, active.ID, "evt_a", "retries_exhausted", 500)
	dlInactive := putDeadLetter(t, js, a.Tenant.ID, inactive.ID, "evt_i", "webhook_inactive", 0)
	dlDeleted := putDeadLetter(t, js, a.Tenant.ID, deleted.ID, "evt_d", "retries_exhausted", 500)

	_, b := replay(t, a, a.Key, apitest.JSONBody(t, map[string]any{"ids": []string{dlActive, dlInactive, dlDeleted}}), http.StatusConflict)
	e := apitest.Decode[apitest.ErrorJSON](t, b)
	if msgs := e.Errors["webhook_id"]; len(msgs) != 2 || !bytes.Contains(b, []byte(inactive.ID)) || !bytes.Contains(b, []byte(deleted.ID)) ||
		bytes.Contains(b, []byte(active.ID)) {
		t.Errorf("409 = %s: want it to name %s and %s only", b, inactive.ID, deleted.ID)
	}
	replay(t, a, a.Key, apitest.JSONBody(t, map[string]any{"webhook_id": inactive.ID}), http.StatusConflict)
	replay(t, a, a.Key, apitest.JSONBody(t, map[string]any{"webhook_id": deleted.ID}), http.StatusNotFound)
	if got := listDeadLetters(t, a, a.Key, ""); len(got.Data) != 3 {
		t.Fatalf("refused replays removed dead letters: %v", ids(got.Data))
	}

	got, _ := replay(t, a, a.Key, apitest.JSONBody(t, map[string]any{"ids": []string{dlActive, "dl_999999"}}), http.StatusAccepted)
	if got.Replayed != 1 || !slices.Equal(got.NotFound, []string{"dl_999999"}) {
		t.Fatalf("replay: %+v", got)
	}
	stream, err := js.Stream(ctx, streams.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, streams.ReplaySubject(active.ID))
	if err != nil {
		t.Fatalf("no delivery queued for %s: %v", active.ID, err)
	}
	seq := dlActive[len("dl_"):]
	accepted := strconv.FormatInt(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano(), 10)
	for h, want := range map[string]string{
		jetstream.MsgIDHeader:    streams.DeliveryMsgID("evt_a", active.ID) + ".replay." + seq,
		streams.HeaderEventID:    "evt_a",
		streams.HeaderTenant:     a.Tenant.ID,
		streams.HeaderAcceptedAt: accepted,
		streams.HeaderAttempts:   "",
		streams.HeaderReason:     "",
		streams.HeaderLastError:  "",
		streams.HeaderWebhookID:  "",
	} {
		if got := m.Header.Get(h); got != want {
			t.Errorf("queued delivery header %s = %q, want %q", h, got, want)
		}
	}
	if !bytes.Contains(m.Data, []byte(`"id":"evt_a"`)) {
		t.Errorf("queued body = %s", m.Data)
	}
	if left := listDeadLetters(t, a, a.Key, ""); !slices.Equal(ids(left.Data), []string{dlInactive, dlDeleted}) {
		t.Errorf("left after the replay: %v", ids(left.Data))
	}
}
