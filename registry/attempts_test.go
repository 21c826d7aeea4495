package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/registry"
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
	a := startAPI(t, nil)
	ctx := switchboard.NewContextWithTenant(context.Background(), a.Tenant.ID)
	wh := a.create(t, a.Key, "/v1/webhooks", `{"name": "log", "url": "https://example.com/hook", "events": ["call.*"]}`)

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

	ing := &registry.AttemptIngester{JS: a.JS.JS, DB: a.DB, Batch: 500}
	stop := runUntilCleanup(t, ing.Run)
	count := func(f registry.AttemptFilter) int {
		n := 0
		for f.Before = ""; ; {
			f.Limit = registry.MaxPageSize
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
	testenv.WaitFor(t, 20*time.Second, "every attempt stored", func() bool { return count(registry.AttemptFilter{}) == len(sent) })
	testenv.WaitFor(t, 10*time.Second, "every record acked", func() bool {
		c, err := a.JS.JS.Consumer(context.Background(), streams.Attempts, registry.AttemptsConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	stop()

	page, _, err := a.DB.FindAttempts(ctx, wh.ID, registry.AttemptFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := page[0], sent[len(sent)-1]; !got.At.Equal(want.At) || got.ID != want.ID || got.Outcome != want.Outcome ||
		got.Reason != want.Reason || got.ResponseBody != "busy" || got.LatencyMS != 1.5 || got.Number != want.Number {
		t.Errorf("newest attempt = %+v, want %+v", got, want)
	}
	for name, tc := range map[string]struct {
		f    registry.AttemptFilter
		want int
	}{
		"outcome":    {registry.AttemptFilter{Outcome: switchboard.AttemptDeadLettered}, 400},
		"status":     {registry.AttemptFilter{StatusCode: 503}, 1200},
		"status-404": {registry.AttemptFilter{StatusCode: 404}, 0},
		"event":      {registry.AttemptFilter{EventID: "msg_7"}, 1},
		"window":     {registry.AttemptFilter{Since: start.Add(100 * time.Millisecond), Until: start.Add(200 * time.Millisecond)}, 100},
	} {
		if got := count(tc.f); got != tc.want {
			t.Errorf("%s: %d attempts, want %d", name, got, tc.want)
		}
	}
	if _, _, err := a.DB.FindAttempts(switchboard.NewContextWithTenant(context.Background(), "ten_other"), wh.ID, registry.AttemptFilter{}); switchboard.ErrorCode(err) != switchboard.ENOTFOUND {
		t.Errorf("another tenant's webhook: err = %v, want ENOTFOUND", err)
	}

	// Retention: everything above is older than a retention of 1ns.
	publishAttempt(t, a.JS.JS, switchboard.Attempt{
		ID: switchboard.NewID("att_"), TenantID: a.Tenant.ID, WebhookID: wh.ID, EventID: "msg_new", EventType: "call.started",
		Number: 1, At: time.Now().Add(time.Hour), Outcome: switchboard.AttemptDelivered, StatusCode: 200,
	}, "")
	runUntilCleanup(t, (&registry.AttemptIngester{JS: a.JS.JS, DB: a.DB, Retention: time.Nanosecond, PruneInterval: 50 * time.Millisecond}).Run)
	testenv.WaitFor(t, 20*time.Second, "old attempts pruned", func() bool { return count(registry.AttemptFilter{}) == 1 })
}

func TestAttemptIngester_TerminatesUndecodable(t *testing.T) {
	a := startAPI(t, nil)
	if _, err := a.JS.JS.Publish(context.Background(), streams.AttemptSubject("t", "wh"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, (&registry.AttemptIngester{JS: a.JS.JS, DB: a.DB}).Run)
	testenv.WaitFor(t, 10*time.Second, "record settled", func() bool {
		c, err := a.JS.JS.Consumer(context.Background(), streams.Attempts, registry.AttemptsConsumer)
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
