package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// auditJSON is the answer of GET /v1/audit.
type auditJSON struct {
	Tenants []struct {
		TenantID string `json:"tenant_id"`
		control.AuditCounts
		UnaccountedDeliveries []control.UnaccountedDelivery `json:"unaccounted_deliveries"`
	} `json:"tenants"`
	Total     control.AuditCounts `json:"total"`
	Truncated bool                `json:"truncated"`
}

func audit(tb testing.TB, a *apitest.Env, key, query string) auditJSON {
	tb.Helper()
	status, b := a.Do(tb, http.MethodGet, "/v1/audit"+query, key, "")
	if status != http.StatusOK {
		tb.Fatalf("GET /v1/audit%s: %d %s", query, status, b)
	}
	var out auditJSON
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatal(err)
	}
	return out
}

// eventDeliveries returns the state of each delivery GET /v1/events/{id}
// lists, by webhook.
func eventDeliveries(tb testing.TB, a *apitest.Env, id string) map[string]string {
	tb.Helper()
	status, b := a.Do(tb, http.MethodGet, "/v1/events/"+id, a.Key, "")
	if status != http.StatusOK {
		tb.Fatalf("GET /v1/events/%s: %d %s", id, status, b)
	}
	var evt struct {
		Deliveries []struct {
			WebhookID string `json:"webhook_id"`
			State     string `json:"state"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(b, &evt); err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range evt.Deliveries {
		out[d.WebhookID] = d.State
	}
	return out
}

func publishEvents(tb testing.TB, a *apitest.Env, prefix string, n int) []string {
	tb.Helper()
	var ids []string
	for i := range n {
		evt := &switchboard.Event{ID: fmt.Sprintf("%s-%d", prefix, i), TenantID: a.Tenant.ID, Type: "call.started", Data: json.RawMessage(`{"i":1}`)}
		if _, err := producer.New(a.JS.JS).Publish(context.Background(), evt); err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, evt.ID)
	}
	return ids
}

// With the real matcher, deliverer and attempt ingester, every delivery
// owed is accounted for: delivered, dead-lettered, or retrying while its
// retry is scheduled; none is unaccounted. GET /v1/events/{id} lists
// exactly the webhooks the matcher chose: not one that matches the event
// only since (it was inactive when the event was matched), which the
// registry used to list as pending for ever.
func TestAudit_AccountsForEveryDelivery(t *testing.T) {
	a := startDeadLetterAPI(t)
	const n = 5
	ok := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusOK })
	failing := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusInternalServerError })
	create := func(name, url string, set map[string]any) string {
		body := map[string]any{"name": name, "url": url, "events": []string{"call.*"}}
		for k, v := range set {
			body[k] = v
		}
		return a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, body)).ID
	}
	delivered := create("ok", ok.URL, nil)
	dead := create("dead", failing.URL, map[string]any{"max_retries": 0})
	retrying := create("retrying", failing.URL, map[string]any{"max_retries": 10})
	later := create("later", ok.URL, map[string]any{"status": "inactive"})
	create("other-type", ok.URL, map[string]any{"events": []string{"agent.*"}})

	apitest.RunUntilCleanup(t, (&control.AttemptIngester{JS: a.JS.JS, DB: a.DB}).Run)
	index := startPipeline(t, a)
	testenv.WaitFor(t, 10*time.Second, "the index holds the webhooks", func() bool {
		return index.Has(delivered) && index.Has(dead) && index.Has(retrying)
	})
	ids := publishEvents(t, a, "evt-audit", n)
	// The "matched" records are ingested, the third of the owed attempts
	// are retrying.
	testenv.WaitFor(t, 30*time.Second, "delivered and dead-lettered, retries under way", func() bool {
		c := audit(t, a, a.Key, "?since=1h").Total
		return c.Delivered == n && c.DeadLettered == n && c.Retrying == n
	})
	got := audit(t, a, a.Key, "?since=1h")
	want := control.AuditCounts{EventsAccepted: n, DeliveriesExpected: 3 * n, Delivered: n, DeadLettered: n, Retrying: n}
	if got.Total != want || len(got.Tenants) != 1 || got.Tenants[0].TenantID != a.Tenant.ID || got.Tenants[0].AuditCounts != want || got.Truncated {
		t.Errorf("audit = %+v, want one tenant %s with %+v", got, a.Tenant.ID, want)
	}

	// Activated after the events were matched: never owed them.
	if status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+later, a.Key, `{"status": "active"}`); status != http.StatusOK {
		t.Fatalf("activate: %d %s", status, b)
	}
	states := eventDeliveries(t, a, ids[0])
	wantStates := map[string]string{delivered: "delivered", dead: "dead_lettered", retrying: "retrying"}
	if fmt.Sprint(states) != fmt.Sprint(wantStates) {
		t.Errorf("GET /v1/events/%s deliveries = %v, want %v", ids[0], states, wantStates)
	}

	t.Run("admin-only", func(t *testing.T) {
		key := a.NewTenant(t, "customer")
		if status, b := a.Do(t, http.MethodGet, "/v1/audit", key, ""); status != http.StatusForbidden {
			t.Errorf("a tenant's key: %d %s, want 403", status, b)
		}
	})
	t.Run("422", func(t *testing.T) {
		status, b := a.Do(t, http.MethodGet, "/v1/audit?since=yesterday&grace=0s&limit=0", a.Key, "")
		var e struct {
			Errors map[string][]string `json:"errors"`
		}
		_ = json.Unmarshal(b, &e)
		if status != http.StatusUnprocessableEntity || len(e.Errors["since"]) == 0 || len(e.Errors["grace"]) == 0 || len(e.Errors["limit"]) == 0 {
			t.Errorf("bad query: %d %s, want 422 naming since, grace and limit", status, b)
		}
	})
}

// A delivery that is owed and then vanishes (its SB_DELIVERIES message
// purged before any worker took it: what a silent path looks like) is
// pending while queued, then unaccounted, with its ids, once the grace
// period has passed; the periodic audit's gauge counts it.
func TestAudit_FindsADroppedDelivery(t *testing.T) {
	a := startDeadLetterAPI(t)
	ctx := context.Background()
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "crm", "url": "http://127.0.0.1:1/", "events": []string{"call.*"},
	}))
	// The matcher alone: deliveries stay queued.
	startMatcher(t, a, wh.ID)
	ids := publishEvents(t, a, "evt-drop", 2)

	testenv.WaitFor(t, 10*time.Second, "the deliveries owed recorded", func() bool {
		return audit(t, a, a.Key, "?since=1h&grace=1s").Total.DeliveriesExpected == 2
	})
	// Past the grace period, only their messages in SB_DELIVERIES account
	// for them.
	time.Sleep(1100 * time.Millisecond)
	if got := audit(t, a, a.Key, "?since=1h&grace=1s").Total; got.Pending != 2 || got.Unaccounted != 0 {
		t.Errorf("queued: %+v, want 2 pending", got)
	}
	if got := eventDeliveries(t, a, ids[0]); fmt.Sprint(got) != fmt.Sprint(map[string]string{wh.ID: "pending"}) {
		t.Errorf("GET /v1/events/%s deliveries = %v, want the webhook pending", ids[0], got)
	}
	stream, err := a.JS.JS.Stream(ctx, streams.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the grace period
	got := audit(t, a, a.Key, "?since=1h&grace=1s")
	if got.Total.Unaccounted != 2 || got.Total.Pending != 0 || len(got.Tenants) != 1 {
		t.Fatalf("after the purge: %+v, want 2 unaccounted", got)
	}
	var listed []string
	for _, d := range got.Tenants[0].UnaccountedDeliveries {
		if d.WebhookID != wh.ID {
			t.Errorf("unaccounted %+v: not to %s", d, wh.ID)
		}
		listed = append(listed, d.EventID)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, ids) {
		t.Errorf("unaccounted events %v, want %v", listed, ids)
	}

	// The periodic audit uses the default grace (a minute): these are
	// too young for it. It counts them with a grace in the past.
	rep, err := control.RunAudit(ctx, a.DB, a.JS.JS, control.AuditOptions{Since: time.Now().Add(-time.Hour), SkipEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total.Unaccounted != 0 || rep.Total.Pending != 2 {
		t.Errorf("with a minute's grace: %+v, want 2 pending", rep.Total)
	}
}

// A delivery whose attempt failed is retrying while its retry is scheduled
// (a message schedule in SB_DELIVERIES), however long the wait; once the
// schedule is gone it is unaccounted, with its last outcome.
func TestAudit_CountsScheduledRetries(t *testing.T) {
	a := startDeadLetterAPI(t)
	ctx := context.Background()
	failing := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusInternalServerError })
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "crm", "url": failing.URL, "events": []string{"call.*"}, "max_retries": 5,
	}))
	index := startMatcher(t, a, wh.ID)
	apitest.RunUntilCleanup(t, (&consumer.Deliverer{
		JS: a.JS.JS, Index: index, Logger: slog.New(slog.DiscardHandler), Workers: 2, MaxAckPending: 8,
		Retry: consumer.RetryPolicy{InitialInterval: time.Hour, MaxInterval: time.Hour, Multiplier: 1},
		Guard: netguard.New(true),
	}).Run)
	publishEvents(t, a, "evt-retry", 2)

	testenv.WaitFor(t, 10*time.Second, "both attempts failed, retries scheduled", func() bool {
		return failing.Count() == 2 && audit(t, a, a.Key, "?since=1h&grace=1s").Total.Retrying == 2
	})
	time.Sleep(1100 * time.Millisecond) // past the grace period: only the schedules account for them
	if got := audit(t, a, a.Key, "?since=1h&grace=1s").Total; got.Retrying != 2 || got.Unaccounted != 0 {
		t.Errorf("retries scheduled an hour ahead: %+v, want 2 retrying", got)
	}
	stream, err := a.JS.JS.Stream(ctx, streams.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	got := audit(t, a, a.Key, "?since=1h&grace=1s")
	if got.Total.Unaccounted != 2 || len(got.Tenants) != 1 || len(got.Tenants[0].UnaccountedDeliveries) != 2 ||
		got.Tenants[0].UnaccountedDeliveries[0].LastOutcome != "retrying" {
		t.Errorf("schedules purged: %+v, want 2 unaccounted, last outcome retrying", got)
	}
}

// Retries scheduled together are stored as retry batches, many deliveries
// to a message: the audit reads a batch's items, so each of them is
// retrying, never unaccounted, however long the wait.
func TestAudit_CountsBatchedRetries(t *testing.T) {
	a := startDeadLetterAPI(t)
	ctx := context.Background()
	failing := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusInternalServerError })
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "crm", "url": failing.URL, "events": []string{"call.*"}, "max_retries": 5,
	}))
	index := startMatcher(t, a, wh.ID)
	apitest.RunUntilCleanup(t, (&consumer.Deliverer{
		JS: a.JS.JS, Index: index, Logger: slog.New(slog.DiscardHandler), Workers: 16, MaxAckPending: 64,
		Retry: consumer.RetryPolicy{InitialInterval: time.Hour, MaxInterval: time.Hour, Multiplier: 1},
		Guard: netguard.New(true),
	}).Run)
	const n = 40
	publishEvents(t, a, "evt-batch", n)

	testenv.WaitFor(t, 20*time.Second, "every attempt failed, retries scheduled", func() bool {
		return failing.Count() == n && audit(t, a, a.Key, "?since=1h&grace=1s").Total.Retrying == n
	})
	stream, err := a.JS.JS.Stream(ctx, streams.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs >= n {
		t.Fatalf("%d schedules for %d retries: none batched", info.State.Msgs, n)
	}
	time.Sleep(1100 * time.Millisecond) // past the grace period: only the batches account for them
	if got := audit(t, a, a.Key, "?since=1h&grace=1s").Total; got.Retrying != n || got.Unaccounted != 0 {
		t.Errorf("%d retries in %d schedules: %+v, want %d retrying", n, info.State.Msgs, got, n)
	}
}

// While the attempt ingester has records to go (a registry catching up),
// a delivery owed whose outcome may be among them is pending, never
// unaccounted, and the audit says it is truncated; once they are
// ingested it is delivered.
func TestAudit_WaitsForTheAttemptLog(t *testing.T) {
	a := startDeadLetterAPI(t)
	ctx := context.Background()
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "crm", "url": "http://127.0.0.1:1/", "events": []string{"call.*"},
	}))
	matched := time.Now().Add(-2 * time.Minute)
	rec := streams.Matched{TenantID: a.Tenant.ID, EventID: "evt-late", EventType: "call.started", EventSeq: 1, At: matched, WebhookIDs: []string{wh.ID}}
	att := switchboard.Attempt{ID: switchboard.NewID("att_"), TenantID: a.Tenant.ID, WebhookID: wh.ID, EventID: "evt-late",
		EventType: "call.started", Number: 1, At: matched.Add(time.Second), Outcome: switchboard.AttemptDelivered, StatusCode: 200}
	for subject, v := range map[string]any{streams.MatchedSubject: []streams.Matched{rec}, streams.AttemptBatchSubject: []switchboard.Attempt{att}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.JS.JS.Publish(ctx, subject, b); err != nil {
			t.Fatal(err)
		}
	}
	// The matched record ingested, the attempt not: the ingester is behind.
	if err := a.DB.RecordMatched(ctx, []store.Matched{store.Matched(rec)}); err != nil {
		t.Fatal(err)
	}
	got := audit(t, a, a.Key, "?since=1h&grace=1s")
	if got.Total.Pending != 1 || got.Total.Unaccounted != 0 || !got.Truncated {
		t.Errorf("attempt log behind: %+v, want 1 pending, truncated", got)
	}

	apitest.RunUntilCleanup(t, (&control.AttemptIngester{JS: a.JS.JS, DB: a.DB}).Run)
	testenv.WaitFor(t, 30*time.Second, "the attempt ingested", func() bool {
		got = audit(t, a, a.Key, "?since=1h&grace=1s")
		return got.Total.Delivered == 1
	})
	if got.Total.Unaccounted != 0 || got.Truncated {
		t.Errorf("caught up: %+v, want 1 delivered", got)
	}
}

// A dead letter replayed waits on sb.replay.<webhook> until a deliverer
// takes it: the audit counts it pending, not unaccounted, as it counts a
// delivery queued by the matcher.
func TestAudit_CountsQueuedReplays(t *testing.T) {
	a := startDeadLetterAPI(t)
	ctx := context.Background()
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "crm", "url": "http://127.0.0.1:1/", "events": []string{"call.*"},
	}))
	startMatcher(t, a, wh.ID)
	ids := publishEvents(t, a, "evt-replay", 1)
	testenv.WaitFor(t, 10*time.Second, "the delivery owed recorded", func() bool {
		return audit(t, a, a.Key, "?since=1h&grace=1s").Total.DeliveriesExpected == 1
	})
	// As a deliverer that gave up would leave it: out of the queue, in
	// SB_DEAD. Then replayed, with no deliverer to take it.
	stream, err := a.JS.JS.Stream(ctx, streams.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	dl := putDeadLetter(t, a.JS.JS, a.Tenant.ID, wh.ID, ids[0], "retries_exhausted", 500)
	replay(t, a, a.Key, apitest.JSONBody(t, map[string]any{"ids": []string{dl}}), http.StatusAccepted)
	time.Sleep(1100 * time.Millisecond) // past the grace period
	if got := audit(t, a, a.Key, "?since=1h&grace=1s").Total; got.Pending != 1 || got.Unaccounted != 0 {
		t.Errorf("a replay queued: %+v, want 1 pending", got)
	}
}

// startMatcher runs the attempt ingester, a webhook index and a matcher on
// a's streams until the test ends, and returns the index once it holds
// webhookID, so that events published next are matched to it.
func startMatcher(t *testing.T, a *apitest.Env, webhookID string) *consumer.Index {
	t.Helper()
	apitest.RunUntilCleanup(t, (&control.AttemptIngester{JS: a.JS.JS, DB: a.DB}).Run)
	logger := slog.New(slog.DiscardHandler)
	index := &consumer.Index{KV: a.KV, Logger: logger}
	apitest.RunUntilCleanup(t, index.Run)
	apitest.RunUntilCleanup(t, (&consumer.Matcher{JS: a.JS.JS, Index: index, Logger: logger}).Run)
	testenv.WaitFor(t, 10*time.Second, "the index holds the webhook", func() bool { return index.Has(webhookID) })
	return index
}
