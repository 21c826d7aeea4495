package control_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// publishAttempt stores a as the deliverer does, under msgID (its id when
// "").
func publishAttempt(tb testing.TB, js jetstream.JetStream, a switchboard.Attempt, msgID string) {
	tb.Helper()
	data, err := json.Marshal(a)
	if err != nil {
		tb.Fatal(err)
	}
	m := nats.NewMsg(streams.AttemptSubject(a.TenantID, a.WebhookID))
	m.Data = data
	if msgID == "" {
		msgID = a.ID
	}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		tb.Fatal(err)
	}
}

func TestAttemptIngester_StoresEachRecordOnce(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := switchboard.NewContextWithTenant(context.Background(), a.Tenant.ID)
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "log", "url": "https://example.com/hook", "events": ["call.*"]}`)

	start := time.Now().UTC().Truncate(time.Millisecond)
	var sent []switchboard.Attempt
	for i := range 1200 { // more than two batches
		at := switchboard.Attempt{
			ID: switchboard.NewID("att_"), TenantID: a.Tenant.ID, WebhookID: wh.ID, EventID: fmt.Sprintf("msg_%d", i),
			EventType: "call.started", Number: 1 + i%3, At: start.Add(time.Duration(i) * time.Millisecond),
			Outcome: switchboard.AttemptRetrying, StatusCode: 503, LatencyMS: 1.5, ErrorClass: "status",
			Error: "status 503", ResponseBody: "busy",
		}
		if i%3 == 2 {
			at.Outcome, at.Reason = switchboard.AttemptDeadLettered, "retries_exhausted"
		}
		sent = append(sent, at)
		publishAttempt(t, a.JS.JS, at, "")
	}
	// The same record again under another msg id: JetStream keeps both,
	// the ingester stores one.
	publishAttempt(t, a.JS.JS, sent[0], "again")
	// Another tenant's record of the same webhook id is not this tenant's.
	other := sent[1]
	other.ID, other.TenantID = switchboard.NewID("att_"), "ten_other"
	publishAttempt(t, a.JS.JS, other, "")

	ing := &control.AttemptIngester{JS: a.JS.JS, DB: a.DB, Batch: 500}
	stop := apitest.RunUntilCleanup(t, ing.Run)
	count := func(f store.AttemptFilter) int {
		n := 0
		for f.Before = ""; ; {
			f.Limit = store.MaxPageSize
			page, more, err := a.DB.FindAttempts(ctx, wh.ID, f)
			if err != nil {
				t.Fatal(err)
			}
			n += len(page)
			if !more {
				return n
			}
			f.Before = page[len(page)-1].ID
		}
	}
	testenv.WaitFor(t, 20*time.Second, "every attempt stored", func() bool { return count(store.AttemptFilter{}) == len(sent) })
	testenv.WaitFor(t, 10*time.Second, "every record acked", func() bool {
		c, err := a.JS.JS.Consumer(context.Background(), streams.Attempts, control.AttemptsConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	stop()

	page, _, err := a.DB.FindAttempts(ctx, wh.ID, store.AttemptFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := page[0], sent[len(sent)-1]; !got.At.Equal(want.At) || got.ID != want.ID || got.Outcome != want.Outcome ||
		got.Reason != want.Reason || got.ResponseBody != "busy" || got.LatencyMS != 1.5 || got.Number != want.Number {
		t.Errorf("newest attempt = %+v, want %+v", got, want)
	}
	for name, tc := range map[string]struct {
		f    store.AttemptFilter
		want int
	}{
		"outcome":    {store.AttemptFilter{Outcome: switchboard.AttemptDeadLettered}, 400},
		"status":     {store.AttemptFilter{StatusCode: 503}, 1200},
		"status-404": {store.AttemptFilter{StatusCode: 404}, 0},
		"event":      {store.AttemptFilter{EventID: "msg_7"}, 1},
		"window":     {store.AttemptFilter{Since: start.Add(100 * time.Millisecond), Until: start.Add(200 * time.Millisecond)}, 100},
	} {
		if got := count(tc.f); got != tc.want {
			t.Errorf("%s: %d attempts, want %d", name, got, tc.want)
		}
	}
	if _, _, err := a.DB.FindAttempts(switchboard.NewContextWithTenant(context.Background(), "ten_other"), wh.ID, store.AttemptFilter{}); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Errorf("another tenant's webhook: err = %v, want ENOTFOUND", err)
	}

	// Retention: everything above is older than a retention of 1ns.
	publishAttempt(t, a.JS.JS, switchboard.Attempt{
		ID: switchboard.NewID("att_"), TenantID: a.Tenant.ID, WebhookID: wh.ID, EventID: "msg_new", EventType: "call.started",
		Number: 1, At: time.Now().Add(time.Hour), Outcome: switchboard.AttemptDelivered, StatusCode: 200,
	}, "")
	apitest.RunUntilCleanup(t, (&control.AttemptIngester{JS: a.JS.JS, DB: a.DB, Retention: time.Nanosecond, PruneInterval: 50 * time.Millisecond}).Run)
	testenv.WaitFor(t, 20*time.Second, "old attempts pruned", func() bool { return count(store.AttemptFilter{}) == 1 })
}

func TestAttemptIngester_TerminatesUndecodable(t *testing.T) {
	a := apitest.Start(t, nil)
	for i, rec := range []struct{ subject, data string }{
		{streams.AttemptSubject("t", "wh"), "not json"},
		{streams.AttemptSubject("t", "wh"), `{"id": "att_1", "tenant_id": "t"}`},
		{streams.AttemptSubject("t", "wh"), `"att_1"`},
		{streams.AttemptSubject("t", "wh"), ""},
		{streams.AttemptBatchSubject, `[{"id": "att_1", "tenant_id": "t", "webhook_id": "wh"`},
		{streams.AttemptBatchSubject, `[{"id": "att_1"}, 42]`},
		{streams.AttemptBatchSubject, `[]`},
	} {
		publishRaw(t, a.JS.JS, rec.subject, fmt.Sprint("rec", i), []byte(rec.data))
	}
	apitest.RunUntilCleanup(t, (&control.AttemptIngester{JS: a.JS.JS, DB: a.DB}).Run)
	testenv.WaitFor(t, 10*time.Second, "record settled", func() bool {
		c, err := a.JS.JS.Consumer(context.Background(), streams.Attempts, control.AttemptsConsumer)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	})
}

// publishBatch stores attempts as one record, as deliverers do: a JSON
// array on AttemptBatchSubject under msgID (the first attempt's id when "").
func publishBatch(tb testing.TB, js jetstream.JetStream, msgID string, attempts ...switchboard.Attempt) {
	tb.Helper()
	data, err := json.Marshal(attempts)
	if err != nil {
		tb.Fatal(err)
	}
	if msgID == "" {
		msgID = attempts[0].ID
	}
	publishRaw(tb, js, streams.AttemptBatchSubject, msgID, data)
}

func publishRaw(tb testing.TB, js jetstream.JetStream, subject, msgID string, data []byte) {
	tb.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		tb.Fatal(err)
	}
}

// newAttempt is the last attempt of a delivery to webhook, dead-lettered
// for reason, or delivered when reason is "".
func (e *healthEnv) newAttempt(webhook, reason string) switchboard.Attempt {
	e.n++
	a := switchboard.Attempt{
		ID: switchboard.NewID("att_"), TenantID: e.Tenant.ID, WebhookID: webhook,
		EventID: fmt.Sprintf("msg_b%d", e.n), EventType: "call.started", Number: 1,
		At: time.Now().UTC(), Outcome: switchboard.AttemptDelivered, StatusCode: 200,
	}
	if reason != "" {
		a.Outcome, a.Reason, a.StatusCode = switchboard.AttemptDeadLettered, switchboard.Reason(reason), 500
	}
	return a
}

// logged returns the ids of the attempts of webhook in the attempt log.
func (e *healthEnv) logged(t *testing.T, webhook string) []string {
	t.Helper()
	ctx := switchboard.NewContextWithTenant(context.Background(), e.Tenant.ID)
	page, _, err := e.DB.FindAttempts(ctx, webhook, store.AttemptFilter{Limit: store.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(page))
	for i, a := range page {
		ids[i] = a.ID
	}
	slices.Sort(ids)
	return ids
}

func attemptIDs(attempts ...switchboard.Attempt) []string {
	out := make([]string, len(attempts))
	for i, a := range attempts {
		out[i] = a.ID
	}
	slices.Sort(out)
	return out
}

// A record of many attempts is stored and counted like as many records of
// one, and the same record again (a deliverer publishing it twice, past
// JetStream's duplicates window) neither stores nor counts anything twice.
func TestAttemptIngester_BatchRecords(t *testing.T) {
	const n = 3
	e := startHealth(t, n)
	wh := e.webhook(t, "crm", false)
	other := e.webhook(t, "erp", false)
	retrying := e.newAttempt(wh, "retries_exhausted")
	retrying.Outcome, retrying.Reason = switchboard.AttemptRetrying, ""
	batch := []switchboard.Attempt{
		e.newAttempt(wh, "retries_exhausted"), retrying, e.newAttempt(other, ""), e.newAttempt(wh, "retries_exhausted"),
	}
	publishBatch(t, e.JS.JS, "", batch...)
	publishBatch(t, e.JS.JS, "again", batch...)
	if got := e.status(t, wh); got != "active" {
		t.Fatalf("%d failures, recorded twice: status %s, want active", n-1, got)
	}
	if got, want := e.logged(t, wh), attemptIDs(batch[0], batch[1], batch[3]); !slices.Equal(got, want) {
		t.Errorf("attempt log of crm: %v, want %v", got, want)
	}
	if got, want := e.logged(t, other), attemptIDs(batch[2]); !slices.Equal(got, want) {
		t.Errorf("attempt log of erp: %v, want %v", got, want)
	}
	// The old form, one attempt a record, counts on from there.
	last := e.attempt(t, wh, "retries_exhausted")
	if got := e.status(t, wh); got != "too_many_errors" {
		t.Fatalf("then a failure on its own: status %s, want too_many_errors", got)
	}
	alerts := e.waitAlerts(t, n+1)
	if alerts[0].ID != "msg_dl_"+batch[0].ID || alerts[1].ID != "msg_dl_"+batch[3].ID || alerts[n].ID != "msg_disabled_"+last.ID {
		t.Errorf("alerts %v, want the batch's two dead letters, the last one's, and webhook.disabled", types(alerts))
	}
}

// An unusable element of a batch record (no id, no webhook, not an object)
// is dropped alone: the others are stored and counted, and the record is
// acknowledged.
func TestAttemptIngester_BatchWithBadElement(t *testing.T) {
	e := startHealth(t, 2)
	wh := e.webhook(t, "crm", false)
	first, second := e.newAttempt(wh, "retries_exhausted"), e.newAttempt(wh, "retries_exhausted")
	noWebhook := e.newAttempt(wh, "retries_exhausted")
	noWebhook.WebhookID = ""
	good1, err := json.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	good2, err := json.Marshal(second)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := json.Marshal(noWebhook)
	if err != nil {
		t.Fatal(err)
	}
	data := " \n[" + string(good1) + `, {"tenant_id": "x"}, ` + string(bad) + `, 42, "att_x", ` + string(good2) + "]"
	publishRaw(t, e.JS.JS, streams.AttemptBatchSubject, first.ID, []byte(data))
	if got := e.status(t, wh); got != "too_many_errors" {
		t.Fatalf("status %s, want too_many_errors: both good failures count", got)
	}
	if got, want := e.logged(t, wh), attemptIDs(first, second); !slices.Equal(got, want) {
		t.Errorf("attempt log: %v, want %v", got, want)
	}
	c, err := e.JS.JS.Consumer(context.Background(), streams.Attempts, control.AttemptsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(context.Background()); err != nil || info.NumRedelivered != 0 {
		t.Errorf("consumer info %+v, %v: want the record acknowledged at once", info, err)
	}
}

// When SQLite will not take one attempt, it holds back no other: those of
// its own record and of other records are stored and counted, and its
// record comes again until it is taken, counting nothing twice.
func TestAttemptIngester_OneAttemptFailing(t *testing.T) {
	const n = 3
	e := startHealth(t, n)
	wh := e.webhook(t, "crm", false)
	raw, err := sql.Open("sqlite3", e.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`CREATE TRIGGER poison BEFORE INSERT ON attempts WHEN NEW.event_id = 'poison'
		BEGIN SELECT RAISE(ABORT, 'poisoned'); END`); err != nil {
		t.Fatal(err)
	}
	poison := e.newAttempt(wh, "")
	poison.EventID = "poison"
	first, second := e.newAttempt(wh, "retries_exhausted"), e.newAttempt(wh, "retries_exhausted")
	publishBatch(t, e.JS.JS, "", first, poison, second)
	third := e.attempt(t, wh, "retries_exhausted")
	testenv.WaitFor(t, 10*time.Second, "the others stored", func() bool {
		return slices.Equal(e.logged(t, wh), attemptIDs(first, second, third))
	})
	alerts := e.waitAlerts(t, n+1) // delivery.dead_lettered x3, webhook.disabled
	if alerts[n].Type != switchboard.EventWebhookDisabled {
		t.Errorf("alerts %v, want webhook.disabled last", types(alerts))
	}
	c, err := e.JS.JS.Consumer(context.Background(), streams.Attempts, control.AttemptsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(context.Background()); err != nil || info.NumAckPending+int(info.NumPending) == 0 {
		t.Fatalf("consumer info %+v, %v: want the poisoned record still unacknowledged", info, err)
	}

	if _, err := raw.Exec(`DROP TRIGGER poison`); err != nil {
		t.Fatal(err)
	}
	if got := e.status(t, wh); got != "too_many_errors" { // settles every record
		t.Fatalf("status %s, want too_many_errors", got)
	}
	if got, want := e.logged(t, wh), attemptIDs(first, poison, second, third); !slices.Equal(got, want) {
		t.Errorf("attempt log: %v, want %v", got, want)
	}
	time.Sleep(200 * time.Millisecond) // 4 AlertIntervals: room for a wrong alert
	if got := e.alerts(t); len(got) != n+1 {
		t.Errorf("%d alerts after the record came again, want still %d: %v", len(got), n+1, types(got))
	}
}

// The consumer through which an earlier registry counted attempts a second
// time is deleted, so that it keeps no records pending for nobody.
func TestAttemptIngester_DeletesRetiredConsumer(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := context.Background()
	if _, err := a.JS.JS.CreateOrUpdateConsumer(ctx, streams.Attempts, jetstream.ConsumerConfig{
		Durable: "registry_health", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: streams.AttemptsPrefix + ">",
	}); err != nil {
		t.Fatal(err)
	}
	apitest.RunUntilCleanup(t, (&control.AttemptIngester{JS: a.JS.JS, DB: a.DB}).Run)
	testenv.WaitFor(t, 10*time.Second, "registry_health deleted", func() bool {
		_, err := a.JS.JS.Consumer(ctx, streams.Attempts, "registry_health")
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	})
	if _, err := a.JS.JS.Consumer(ctx, streams.Attempts, control.AttemptsConsumer); err != nil {
		t.Errorf("%s: %v", control.AttemptsConsumer, err)
	}
}

// While another process holds SQLite's write lock past the busy timeout,
// the records pulled are handed back, not lost, and stored once it lets go.
func TestAttemptIngester_SQLiteLocked(t *testing.T) {
	e := startHealth(t, 0)
	wh := e.webhook(t, "crm", false)
	e.settled(t)
	raw, err := sql.Open("sqlite3", e.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx := context.Background()
	conn, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	single := e.attempt(t, wh, "retries_exhausted")
	first, second := e.newAttempt(wh, ""), e.newAttempt(wh, "retries_exhausted")
	publishBatch(t, e.JS.JS, "", first, second)
	time.Sleep(6 * time.Second) // past the registry's busy timeout of 5 s
	if got := e.logged(t, wh); len(got) != 0 {
		t.Fatalf("stored %v while SQLite was locked", got)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	e.settled(t)
	if got, want := e.logged(t, wh), attemptIDs(single, first, second); !slices.Equal(got, want) {
		t.Errorf("attempt log: %v, want %v", got, want)
	}
}
