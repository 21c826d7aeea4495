package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// healthEnv is a registry API with the attempt ingester (auto-disable) and
// the alerts' publishing running against the same SQLite file and
// JetStream, and an alert hook, so that alerts are raised.
type healthEnv struct {
	*apitest.Env
	alertHook string
	n         int // attempts published, for unique ids
}

func startHealth(t *testing.T, disableAfter int) *healthEnv {
	t.Helper()
	a := apitest.Start(t, nil)
	h := control.NewHealth(a.DB, producer.New(a.JS.JS))
	h.AlertInterval = 50 * time.Millisecond
	in := &control.AttemptIngester{JS: a.JS.JS, DB: a.DB, DisableAfter: disableAfter,
		Mirror: control.NewMirror(a.DB, a.KV), Alerts: h}
	// Registered after apitest.Start's cleanups, so they run before the
	// database closes and JetStream stops.
	apitest.RunUntilCleanup(t, h.Run)
	apitest.RunUntilCleanup(t, in.Run)
	e := &healthEnv{Env: a}
	e.alertHook = e.webhook(t, "alerts", true)
	return e
}

// webhook creates a webhook of the default tenant and returns its id.
func (e *healthEnv) webhook(t *testing.T, name string, alertHook bool) string {
	t.Helper()
	return e.Create(t, e.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": name, "url": "https://example.com/" + name, "events": []string{"*"}, "is_alert_hook": alertHook,
	})).ID
}

// attempt publishes the last attempt of a delivery to webhook, as the
// deliverer does: JSON on AttemptSubject, Nats-Msg-Id = the attempt id.
// reason "" means delivered. It returns the record.
func (e *healthEnv) attempt(t *testing.T, webhook, reason string) switchboard.Attempt {
	t.Helper()
	e.n++
	a := switchboard.Attempt{
		ID: switchboard.NewID("att_"), TenantID: e.Tenant.ID, WebhookID: webhook,
		EventID: fmt.Sprintf("msg_%d", e.n), EventType: "call.started", Number: 4,
		At: time.Now().UTC(), Outcome: switchboard.AttemptDelivered, StatusCode: 200, LatencyMS: 3,
	}
	if reason != "" {
		a.Outcome, a.Reason, a.StatusCode, a.ErrorClass, a.Error = switchboard.AttemptDeadLettered, switchboard.Reason(reason), 500, "status", "status 500"
		if reason == "gone" {
			a.StatusCode, a.Number, a.Error = 410, 1, "status 410"
		}
	}
	e.publish(t, a, a.ID)
	return a
}

func (e *healthEnv) publish(t *testing.T, a switchboard.Attempt, msgID string) {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(streams.AttemptSubject(a.TenantID, a.WebhookID))
	msg.Data = b
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := e.JS.JS.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// failures publishes n dead-lettered deliveries of webhook.
func (e *healthEnv) failures(t *testing.T, webhook string, n int) {
	t.Helper()
	for range n {
		e.attempt(t, webhook, "retries_exhausted")
	}
}

// settled waits until the registry has recorded every published attempt.
func (e *healthEnv) settled(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	testenv.WaitFor(t, 10*time.Second, "attempts recorded", func() bool {
		s, err := e.JS.JS.Stream(ctx, streams.Attempts)
		if err != nil {
			t.Fatal(err)
		}
		c, err := e.JS.JS.Consumer(ctx, streams.Attempts, control.AttemptsConsumer)
		if err != nil {
			return false // not created yet
		}
		ci, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ci.AckFloor.Stream >= s.CachedInfo().State.LastSeq && ci.NumAckPending == 0
	})
}

// status returns the webhook's status as the API and the KV mirror say,
// after every published attempt is recorded; it fails the test when they
// disagree for long.
func (e *healthEnv) status(t *testing.T, id string) string {
	t.Helper()
	e.settled(t)
	status, b := e.Do(t, http.MethodGet, "/v1/webhooks/"+id, e.Key, "")
	if status != http.StatusOK {
		t.Fatalf("GET webhook: %d %s", status, b)
	}
	want := apitest.Decode[apitest.WebhookJSON](t, b).Status
	testenv.WaitFor(t, 10*time.Second, "KV mirror has status "+want, func() bool {
		entry, err := e.KV.Get(context.Background(), id)
		if err != nil {
			return false
		}
		var wh switchboard.Webhook
		if err := json.Unmarshal(entry.Value(), &wh); err != nil {
			t.Fatal(err)
		}
		return string(wh.Status) == want
	})
	return want
}

// alerts returns the operational events in SB_EVENTS, in order.
func (e *healthEnv) alerts(t *testing.T) []switchboard.Event {
	t.Helper()
	ctx := context.Background()
	s, err := e.JS.JS.Stream(ctx, streams.Events)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []switchboard.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		evt, err := streams.DecodeEvent(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evt)
	}
	return out
}

// waitAlerts waits until SB_EVENTS holds n operational events and returns
// them.
func (e *healthEnv) waitAlerts(t *testing.T, n int) []switchboard.Event {
	t.Helper()
	var got []switchboard.Event
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%d alerts", n), func() bool {
		got = e.alerts(t)
		return len(got) >= n
	})
	if len(got) != n {
		t.Fatalf("%d alerts, want %d: %+v", len(got), n, types(got))
	}
	return got
}

func types(evts []switchboard.Event) []string {
	out := make([]string, len(evts))
	for i, e := range evts {
		out[i] = e.Type
	}
	return out
}

func data(t *testing.T, evt switchboard.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(evt.Data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (e *healthEnv) patch(t *testing.T, id, body string) {
	t.Helper()
	if status, b := e.Do(t, http.MethodPatch, "/v1/webhooks/"+id, e.Key, body); status != http.StatusOK {
		t.Fatalf("PATCH %s: %d %s", body, status, b)
	}
}

func TestHealth_DisablesAtThreshold(t *testing.T) {
	const n = 3
	e := startHealth(t, n)
	wh := e.webhook(t, "crm", false)

	e.failures(t, wh, n-1)
	if got := e.status(t, wh); got != "active" {
		t.Fatalf("after %d failed deliveries: status %s, want active", n-1, got)
	}
	last := e.attempt(t, wh, "retries_exhausted")
	if got := e.status(t, wh); got != "too_many_errors" {
		t.Fatalf("after %d failed deliveries: status %s, want too_many_errors", n, got)
	}

	alerts := e.waitAlerts(t, n+1)
	for i, a := range alerts[:n] {
		if a.Type != switchboard.EventDeliveryDeadLettered || a.TenantID != e.Tenant.ID {
			t.Errorf("alert %d: %s of %s, want delivery.dead_lettered of %s", i, a.Type, a.TenantID, e.Tenant.ID)
		}
	}
	dl := data(t, alerts[n-1])
	for k, want := range map[string]any{
		"webhook_id": wh, "webhook_name": "crm", "event_id": last.EventID, "event_type": "call.started",
		"reason": "retries_exhausted", "attempts": 4.0, "last_status": 500.0, "last_error": "status 500",
	} {
		if dl[k] != want {
			t.Errorf("delivery.dead_lettered %s = %v, want %v", k, dl[k], want)
		}
	}
	disabled := alerts[n]
	if disabled.Type != switchboard.EventWebhookDisabled || disabled.ID != "msg_disabled_"+last.ID {
		t.Fatalf("last alert: %s %s, want webhook.disabled msg_disabled_%s", disabled.Type, disabled.ID, last.ID)
	}
	d := data(t, disabled)
	for k, want := range map[string]any{
		"webhook_id": wh, "name": "crm", "url": "https://example.com/crm", "status": "too_many_errors",
		"reason": "consecutive_failures", "failures": float64(n), "event_id": last.EventID,
	} {
		if d[k] != want {
			t.Errorf("webhook.disabled %s = %v, want %v", k, d[k], want)
		}
	}

	// A stopped webhook's parked deliveries raise no alert: the next one
	// is for a delivery that was in flight when it stopped.
	e.attempt(t, wh, "webhook_inactive")
	inFlight := e.attempt(t, wh, "retries_exhausted")
	if d := data(t, e.waitAlerts(t, n+2)[n+1]); d["event_id"] != inFlight.EventID {
		t.Errorf("next alert for event %v, want %s: a parked delivery raised one", d["event_id"], inFlight.EventID)
	}
}

func TestHealth_DeliveredResetsCount(t *testing.T) {
	const n = 3
	e := startHealth(t, n)
	wh := e.webhook(t, "crm", false)
	e.failures(t, wh, n-1)
	e.attempt(t, wh, "")
	e.failures(t, wh, n-1)
	if got := e.status(t, wh); got != "active" {
		t.Fatalf("%d failures, a success, %d failures: status %s, want active", n-1, n-1, got)
	}
	e.failures(t, wh, 1)
	if got := e.status(t, wh); got != "too_many_errors" {
		t.Fatalf("then %d in a row: status %s, want too_many_errors", n, got)
	}
}

func TestHealth_GoneDisablesAtOnce(t *testing.T) {
	e := startHealth(t, 5)
	wh := e.webhook(t, "crm", false)
	other := e.webhook(t, "erp", false)
	gone := e.attempt(t, wh, "gone")
	if got := e.status(t, wh); got != "too_many_errors" {
		t.Fatalf("after a 410: status %s, want too_many_errors", got)
	}
	if got := e.status(t, other); got != "active" {
		t.Errorf("another webhook: status %s, want active", got)
	}
	alerts := e.waitAlerts(t, 2)
	d := data(t, alerts[1])
	if alerts[1].Type != switchboard.EventWebhookDisabled || d["reason"] != "gone" || d["failures"] != 1.0 || d["event_id"] != gone.EventID {
		t.Errorf("alert %s %v, want webhook.disabled for reason gone", alerts[1].Type, d)
	}
}

func TestHealth_RedeliveredAttemptCountsOnce(t *testing.T) {
	const n = 3
	e := startHealth(t, n)
	wh := e.webhook(t, "crm", false)
	a := e.attempt(t, wh, "retries_exhausted")
	// The same record again, under other message ids: as a deliverer
	// republishing after JetStream's duplicates window would.
	e.publish(t, a, a.ID+"-again")
	e.publish(t, a, a.ID+"-and-again")
	e.failures(t, wh, n-2)
	if got := e.status(t, wh); got != "active" {
		t.Fatalf("%d distinct failures, one of them seen 3 times: status %s, want active", n-1, got)
	}
	if alerts := e.waitAlerts(t, n-1); alerts[0].ID != "msg_dl_"+a.ID {
		t.Errorf("first alert id %s, want msg_dl_%s", alerts[0].ID, a.ID)
	}
	effs, err := e.DB.RecordAttempts(context.Background(), []switchboard.Attempt{a}, n)
	if err != nil || !effs[0].Duplicate {
		t.Errorf("RecordAttempts again = %+v, %v; want a duplicate", effs, err)
	}
}

func TestHealth_PatchActiveResetsAndRecovers(t *testing.T) {
	const n = 2
	e := startHealth(t, n)
	wh := e.webhook(t, "crm", false)
	e.failures(t, wh, n)
	if got := e.status(t, wh); got != "too_many_errors" {
		t.Fatalf("status %s, want too_many_errors", got)
	}
	if status, _ := e.Do(t, http.MethodPatch, "/v1/webhooks/"+wh, e.Key, `{"status":"too_many_errors"}`); status != http.StatusUnprocessableEntity {
		t.Errorf("PATCH status too_many_errors: %d, want 422", status)
	}
	e.patch(t, wh, `{"status":"active"}`)
	alerts := e.waitAlerts(t, n+2)
	rec := alerts[n+1]
	d := data(t, rec)
	if rec.Type != switchboard.EventWebhookRecovered || d["webhook_id"] != wh || d["status"] != "active" || d["updated_by"] != "default" {
		t.Errorf("alert after PATCH: %s %v, want webhook.recovered", rec.Type, d)
	}

	e.failures(t, wh, n-1)
	if got := e.status(t, wh); got != "active" {
		t.Fatalf("after PATCH active and %d failures: status %s, want active (count reset)", n-1, got)
	}
	e.failures(t, wh, 1)
	if got := e.status(t, wh); got != "too_many_errors" {
		t.Fatalf("then %d failures: status %s, want too_many_errors", n, got)
	}

	// Other changes of an active webhook keep its count.
	third := e.webhook(t, "billing", false)
	e.failures(t, third, n-1)
	e.patch(t, third, `{"name":"billing-2","status":"active"}`)
	e.failures(t, third, 1)
	if got := e.status(t, third); got != "too_many_errors" {
		t.Fatalf("billing after %d failures, a PATCH of an active webhook and 1 more: status %s, want too_many_errors", n-1, got)
	}

	// inactive -> active also resets, but recovers nothing: it was not stopped by errors.
	other := e.webhook(t, "erp", false)
	e.failures(t, other, n-1)
	e.settled(t) // counted before the PATCH, not after
	e.patch(t, other, `{"enabled":false}`)
	e.patch(t, other, `{"enabled":true}`)
	e.failures(t, other, n-1)
	if got := e.status(t, other); got != "active" {
		t.Fatalf("erp after inactive/active and %d failures: status %s, want active", n-1, got)
	}
	for _, a := range e.waitAlerts(t, (n+2)+(n+1)+(n+1)+2*(n-1)) {
		if a.Type == switchboard.EventWebhookRecovered && data(t, a)["webhook_id"] == other {
			t.Error("webhook.recovered for a webhook that was only inactive")
		}
	}
}

func TestHealth_AlertHooksRaiseNoAlerts(t *testing.T) {
	const n = 2
	e := startHealth(t, n)
	hook := e.webhook(t, "pager", true)
	e.failures(t, hook, n)
	if got := e.status(t, hook); got != "too_many_errors" {
		t.Fatalf("alert hook after %d failures: status %s, want too_many_errors", n, got)
	}
	// Alerts are published in the order they were raised: once the plain
	// webhook's arrives, any from the alert hook would be there before it.
	wh := e.webhook(t, "crm", false)
	e.attempt(t, wh, "retries_exhausted")
	alerts := e.waitAlerts(t, 1)
	if d := data(t, alerts[0]); d["webhook_id"] != wh {
		t.Errorf("alert about %v, want only the plain webhook %s", d["webhook_id"], wh)
	}
}

func TestHealth_DisableAfterZeroNeverStops(t *testing.T) {
	e := startHealth(t, 0)
	wh := e.webhook(t, "crm", false)
	e.failures(t, wh, 10)
	e.attempt(t, wh, "gone")
	if got := e.status(t, wh); got != "active" {
		t.Fatalf("--disable-after 0: status %s, want active", got)
	}
	e.waitAlerts(t, 11) // dead letters are still reported
}

func TestHealth_IgnoresWhatIsNotItsOwn(t *testing.T) {
	e := startHealth(t, 2)
	wh := e.webhook(t, "crm", false)
	base := switchboard.Attempt{TenantID: e.Tenant.ID, WebhookID: wh, EventID: "msg_x", EventType: "call.started",
		Number: 1, At: time.Now(), Outcome: switchboard.AttemptDeadLettered, Reason: "retries_exhausted"}
	// Another tenant's attempt naming this webhook, one of a webhook that
	// does not exist, an attempt still retrying, and a record that is not
	// an attempt: none may count or alert.
	otherTenant, ghost, retrying := base, base, base
	otherTenant.ID, otherTenant.TenantID = switchboard.NewID("att_"), "ten_other"
	ghost.ID, ghost.WebhookID = switchboard.NewID("att_"), "wh_ghost"
	retrying.ID, retrying.Outcome, retrying.Reason = switchboard.NewID("att_"), switchboard.AttemptRetrying, ""
	for _, a := range []switchboard.Attempt{otherTenant, ghost, retrying} {
		e.publish(t, a, a.ID)
	}
	if _, err := e.JS.JS.Publish(context.Background(), streams.AttemptSubject(e.Tenant.ID, wh), []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	e.attempt(t, wh, "retries_exhausted")
	if got := e.status(t, wh); got != "active" {
		t.Fatalf("status %s, want active: only one failure was its own", got)
	}
	// Alerts come in the order of their causes: any raised by the others
	// would be there before the real one's.
	if d := data(t, e.waitAlerts(t, 1)[0]); d["event_id"] != "msg_1" {
		t.Errorf("alert for event %v, want msg_1", d["event_id"])
	}
}

func TestHealth_ParkedDeliveriesDoNotCount(t *testing.T) {
	e := startHealth(t, 1)
	wh := e.webhook(t, "crm", false)
	for _, reason := range []string{"webhook_inactive", "webhook_invalid", "malformed"} {
		e.attempt(t, wh, reason)
	}
	if got := e.status(t, wh); got != "active" {
		t.Fatalf("after dead letters on Switchboard's side: status %s, want active", got)
	}
	// Parked deliveries raise no alert; the other two do.
	var reasons []any
	for _, a := range e.waitAlerts(t, 2) {
		if a.Type != switchboard.EventDeliveryDeadLettered {
			t.Errorf("alert %s, want delivery.dead_lettered only", a.Type)
		}
		reasons = append(reasons, data(t, a)["reason"])
	}
	if want := []any{"webhook_invalid", "malformed"}; !slices.Equal(reasons, want) {
		t.Errorf("alerts for %v, want %v", reasons, want)
	}
}

func TestHealth_NoAlertHookNoAlerts(t *testing.T) {
	e := startHealth(t, 1)
	e.patch(t, e.alertHook, `{"status":"inactive"}`)
	wh := e.webhook(t, "crm", false)
	e.failures(t, wh, 1)
	if got := e.status(t, wh); got != "too_many_errors" {
		t.Fatalf("status %s, want too_many_errors: stopping does not wait for alert hooks", got)
	}
	e.patch(t, e.alertHook, `{"status":"active"}`)
	other := e.webhook(t, "erp", false)
	e.attempt(t, other, "webhook_invalid")
	// Alerts come in the order of their causes: any raised while no alert
	// hook was active would be there before this one.
	if d := data(t, e.waitAlerts(t, 1)[0]); d["webhook_id"] != other {
		t.Errorf("alert about %v, want only erp's, raised once an alert hook was active", d["webhook_id"])
	}
}

// Deleting the consumer under a running registry (an operator, a stream
// restored from a backup) does not stop the counting.
func TestHealth_SurvivesConsumerDeletion(t *testing.T) {
	e := startHealth(t, 1)
	wh := e.webhook(t, "crm", false)
	e.settled(t) // the consumer exists
	if err := e.JS.JS.DeleteConsumer(context.Background(), streams.Attempts, control.AttemptsConsumer); err != nil {
		t.Fatal(err)
	}
	e.failures(t, wh, 1)
	testenv.WaitFor(t, 60*time.Second, "consumer set up again", func() bool {
		_, err := e.JS.JS.Consumer(context.Background(), streams.Attempts, control.AttemptsConsumer)
		return err == nil
	})
	if got := e.status(t, wh); got != "too_many_errors" {
		t.Fatalf("status %s, want too_many_errors", got)
	}
}

// RecordAttempts counts a batch in one transaction as it would count its
// attempts one by one, in order: a success of another tenant naming the
// webhook resets nothing, a failure seen twice counts once, the threshold
// stops the webhook within the batch, and a success of its own resets the
// count, again after each failure.
func TestHealth_RecordAttemptsInOneTransaction(t *testing.T) {
	const n = 3
	e := startHealth(t, n)
	wh := e.webhook(t, "crm", false)
	attempt := func(tenant, reason string) switchboard.Attempt {
		a := switchboard.Attempt{
			ID: switchboard.NewID("att_"), TenantID: tenant, WebhookID: wh, EventID: switchboard.NewID("msg_"),
			EventType: "call.started", Number: 4, At: time.Now().UTC(), Outcome: switchboard.AttemptDelivered, StatusCode: 200,
		}
		if reason != "" {
			a.Outcome, a.Reason, a.StatusCode = switchboard.AttemptDeadLettered, switchboard.Reason(reason), 500
		}
		return a
	}
	ctx := context.Background()
	first, second := attempt(e.Tenant.ID, "retries_exhausted"), attempt(e.Tenant.ID, "retries_exhausted")
	batch := []switchboard.Attempt{first, second, attempt("ten_other", ""), second, attempt(e.Tenant.ID, "retries_exhausted")}
	effs, err := e.DB.RecordAttempts(ctx, batch, n)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.AttemptEffect{{Failures: 1}, {Failures: 2}, {}, {Duplicate: true}, {Failures: 3, Disabled: true}}
	for i := range want {
		// Alerts depend on the alert hook; what is counted here is the rest.
		if got := effs[i]; got.Failures != want[i].Failures || got.Duplicate != want[i].Duplicate || got.Disabled != want[i].Disabled {
			t.Errorf("attempt %d: effect %+v, want %+v", i, got, want[i])
		}
	}
	effs, err = e.DB.RecordAttempts(ctx, []switchboard.Attempt{attempt(e.Tenant.ID, ""), attempt(e.Tenant.ID, "retries_exhausted"), first}, n)
	if err != nil {
		t.Fatal(err)
	}
	if effs[1].Failures != 1 || !effs[2].Duplicate {
		t.Errorf("after a success of its own: effects %+v, want 1 failure, then a duplicate", effs)
	}
	// Successes and failures taking turns: each success resets what the
	// failure before it counted, even after an earlier reset in the same
	// transaction.
	other := e.webhook(t, "erp", false)
	var turns []switchboard.Attempt
	for range n {
		s, f := attempt(e.Tenant.ID, ""), attempt(e.Tenant.ID, "retries_exhausted")
		s.WebhookID, f.WebhookID = other, other
		turns = append(turns, s, f)
	}
	effs, err = e.DB.RecordAttempts(ctx, turns, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(effs); i += 2 {
		if effs[i].Failures != 1 || effs[i].Disabled {
			t.Errorf("failure %d after a success: effect %+v, want 1 failure", i/2, effs[i])
		}
	}
}
