package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/signer"
)

// alertReceiver records the operational events an alert hook receives,
// each checked against the hook's signing secret.
type alertReceiver struct {
	*testenv.Receiver
}

func (r alertReceiver) events(t *testing.T, secret string) []switchboard.Payload {
	t.Helper()
	s, err := signer.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	var out []switchboard.Payload
	for _, req := range r.Requests() {
		if err := s.Verify(req.Header, req.Body, 5*time.Minute, time.Now()); err != nil {
			t.Errorf("alert not signed with the alert hook's secret: %v", err)
		}
		var p switchboard.Payload
		if err := json.Unmarshal(req.Body, &p); err != nil {
			t.Fatalf("alert body %s: %v", req.Body, err)
		}
		out = append(out, p)
	}
	return out
}

// Through the whole pipeline: a webhook whose deliveries keep failing is
// stopped at --disable-after, and the tenant's alert hook receives, signed,
// one delivery.dead_lettered per failed delivery, then webhook.disabled,
// then webhook.recovered once it is set active again. Agent events never
// reach the alert hook, and alerts never reach the other webhooks.
func TestServe_AutoDisableAlertsTheAlertHook(t *testing.T) {
	cfg := testServeConfig(t.TempDir())
	cfg.DisableAfter = 2
	sys := mustStartSystem(t, cfg)
	ctx := context.Background()
	api := apiClient{url: sys.URL, key: testKey}

	alerts := alertReceiver{testenv.StartReceiver(t, nil)}
	failing := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusInternalServerError })
	healthy := testenv.StartReceiver(t, nil)
	var hook struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := api.do(ctx, http.MethodPost, "/v1/webhooks", map[string]any{
		"name": "pager", "url": alerts.URL, "events": []string{"*"}, "is_alert_hook": true,
	}, &hook); err != nil {
		t.Fatal(err)
	}
	crm, err := api.createWebhook(ctx, map[string]any{"name": "crm", "url": failing.URL, "events": []string{"*"}, "max_retries": 0})
	if err != nil {
		t.Fatal(err)
	}
	erp, err := api.createWebhook(ctx, map[string]any{"name": "erp", "url": healthy.URL, "events": []string{"webhook.*", "call.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{hook.ID, crm, erp}); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		var wh struct {
			Status string `json:"status"`
		}
		if err := api.do(ctx, http.MethodGet, "/v1/webhooks/"+crm, nil, &wh); err != nil {
			t.Fatal(err)
		}
		return wh.Status
	}
	publish := func(id string) {
		if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{
			"id": id, "type": "call.started", "data": map[string]any{"n": id},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}

	publish("msg_one")
	testenv.WaitFor(t, 20*time.Second, "first delivery.dead_lettered at the alert hook", func() bool { return alerts.Count() == 1 })
	if got := status(); got != "active" {
		t.Fatalf("after 1 failed delivery of 2: status %s, want active", got)
	}
	publish("msg_two")
	testenv.WaitFor(t, 20*time.Second, "crm stopped", func() bool { return status() == "too_many_errors" })
	testenv.WaitFor(t, 20*time.Second, "3 alerts", func() bool { return alerts.Count() >= 3 })

	if err := api.do(ctx, http.MethodPatch, "/v1/webhooks/"+crm, map[string]any{"status": "active"}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "webhook.recovered", func() bool { return alerts.Count() >= 4 })
	testenv.WaitFor(t, 20*time.Second, "pipeline idle", func() bool { return sys.idle(t) })

	count := map[string]int{}
	for _, p := range alerts.events(t, hook.Secret) {
		count[p.Type]++
		var d map[string]any
		if err := json.Unmarshal(p.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d["webhook_id"] != crm {
			t.Errorf("%s about webhook %v, want %s", p.Type, d["webhook_id"], crm)
		}
		if p.Type == switchboard.EventWebhookDisabled && (d["reason"] != "consecutive_failures" || d["failures"] != 2.0) {
			t.Errorf("webhook.disabled data %v", d)
		}
	}
	want := map[string]int{switchboard.EventDeliveryDeadLettered: 2, switchboard.EventWebhookDisabled: 1, switchboard.EventWebhookRecovered: 1}
	if len(count) != len(want) || count[switchboard.EventDeliveryDeadLettered] != 2 || count[switchboard.EventWebhookDisabled] != 1 || count[switchboard.EventWebhookRecovered] != 1 {
		t.Errorf("the alert hook received %v, want %v (and no agent event)", count, want)
	}
	if n := failing.Count(); n != 2 {
		t.Errorf("crm's receiver got %d requests, want its 2 call.started (no alerts)", n)
	}
	if n := healthy.Count(); n != 2 {
		t.Errorf("erp (webhook.*, call.*) got %d requests, want its 2 call.started (no alerts)", n)
	}
}

// Through the whole pipeline, the retry promise with an open breaker: a
// webhook with max_retries 1 whose receiver refuses every connection (which
// opens its breaker) has each delivery dead-lettered after its schedule
// (one retry) plus at most one cool-down, the registry counts those dead
// letters, stops the webhook at --disable-after, and the alert hook hears
// it. (Before, deliveries deferred by the open breaker kept their attempt
// count and came to no dead letter, so auto-disable never saw them.)
func TestServe_DownReceiverDeadLettersOnScheduleAndDisables(t *testing.T) {
	cfg := testServeConfig(t.TempDir())
	cfg.DisableAfter = 3
	cfg.BreakerFailures = 2
	cfg.BreakerCooldown = 2 * time.Second
	sys := mustStartSystem(t, cfg)
	ctx := context.Background()
	api := apiClient{url: sys.URL, key: testKey}

	alerts := alertReceiver{testenv.StartReceiver(t, nil)}
	var hook struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if err := api.do(ctx, http.MethodPost, "/v1/webhooks", map[string]any{
		"name": "pager", "url": alerts.URL, "events": []string{"webhook.*"}, "is_alert_hook": true,
	}, &hook); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String() + "/"
	l.Close() // nothing listens: every connection is refused
	crm, err := api.createWebhook(ctx, map[string]any{"name": "crm", "url": down, "events": []string{"call.*"}, "max_retries": 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{hook.ID, crm}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 5 {
		if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{
			"id": "msg_down_" + strconv.Itoa(i), "type": "call.started", "data": map[string]any{"n": i},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	status := func() string {
		var wh struct {
			Status string `json:"status"`
		}
		if err := api.do(ctx, http.MethodGet, "/v1/webhooks/"+crm, nil, &wh); err != nil {
			t.Fatal(err)
		}
		return wh.Status
	}
	// One retry after about 1 s on a whole second, one cool-down, the
	// attempt log's way to the registry, and slack for a loaded machine.
	testenv.WaitFor(t, 2*time.Second+cfg.BreakerCooldown+15*time.Second, "crm stopped", func() bool { return status() == "too_many_errors" })
	t.Logf("stopped %v after the first event", time.Since(start))
	testenv.WaitFor(t, 20*time.Second, "webhook.disabled at the alert hook", func() bool {
		for _, p := range alerts.events(t, hook.Secret) {
			if p.Type == switchboard.EventWebhookDisabled {
				return true
			}
		}
		return false
	})
}
