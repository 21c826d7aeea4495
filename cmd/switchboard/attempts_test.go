package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/signer"
)

// attemptPage is a page of GET /v1/webhooks/{id}/attempts.
type attemptPage struct {
	Data []struct {
		EventID    string `json:"event_id"`
		Attempt    int    `json:"attempt"`
		Outcome    string `json:"outcome"`
		Reason     string `json:"reason"`
		StatusCode int    `json:"status_code"`
	} `json:"data"`
	HasMore bool `json:"has_more"`
}

// TestRecover_ResendsWhatWasNotDelivered runs the whole pipeline: a
// receiver fails all but two events until their deliveries are
// dead-lettered, the attempt log shows it, the receiver heals, and a
// recover call sends each undelivered event once more, and nothing else.
func TestRecover_ResendsWhatWasNotDelivered(t *testing.T) {
	const n = 10
	var healed atomic.Bool
	var ok successes
	flaky := testenv.StartReceiver(t, func(r *http.Request, _ []byte) int {
		id := r.Header.Get(signer.HeaderID)
		if healed.Load() || id == "evt-0" || id == "evt-1" {
			ok.add(id)
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	healthy := testenv.StartReceiver(t, nil)
	cfg := testServeConfig(t.TempDir())
	// Recovery is what is tested: the breaker would defer the failing
	// deliveries for its cool-down, and auto-disable would park them.
	cfg.BreakerFailures, cfg.DisableAfter = 1000, 0
	sys := mustStartSystem(t, cfg)
	api := apiClient{url: sys.URL, key: testKey}
	ctx := context.Background()
	flakyID, err := api.createWebhook(ctx, map[string]any{"name": "flaky", "url": flaky.URL, "events": []string{"call.*"}, "max_retries": 1})
	if err != nil {
		t.Fatal(err)
	}
	healthyID, err := api.createWebhook(ctx, map[string]any{"name": "healthy", "url": healthy.URL, "events": []string{"call.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{flakyID, healthyID}); err != nil {
		t.Fatal(err)
	}
	since := time.Now().UTC()
	for i := range n {
		if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{
			"id": fmt.Sprintf("evt-%d", i), "type": "call.started", "data": map[string]any{"i": i},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}

	attempts := func(webhook, query string) attemptPage {
		var page attemptPage
		if err := api.do(ctx, http.MethodGet, "/v1/webhooks/"+webhook+"/attempts?limit=250&"+query, nil, &page); err != nil {
			t.Fatal(err)
		}
		return page
	}
	testenv.WaitFor(t, 60*time.Second, "the failing deliveries dead-lettered and logged", func() bool {
		return len(attempts(flakyID, "outcome=dead_lettered").Data) == n-2 && len(attempts(flakyID, "outcome=delivered").Data) == 2
	})
	for _, a := range attempts(flakyID, "outcome=dead_lettered").Data {
		if a.Attempt != 2 || a.Reason != "retries_exhausted" || a.StatusCode != 500 {
			t.Errorf("dead-lettered attempt %+v, want attempt 2, retries_exhausted, 500", a)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "the healthy webhook's attempts logged", func() bool {
		return len(attempts(healthyID, "outcome=delivered").Data) == n
	})

	var evt struct {
		ID         string `json:"id"`
		Deliveries []struct {
			WebhookID string `json:"webhook_id"`
			State     string `json:"state"`
			Attempts  []any  `json:"attempts"`
		} `json:"deliveries"`
	}
	if err := api.do(ctx, http.MethodGet, "/v1/events/evt-5", nil, &evt); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, d := range evt.Deliveries {
		states[d.WebhookID] = fmt.Sprintf("%s/%d", d.State, len(d.Attempts))
	}
	if want := map[string]string{flakyID: "dead_lettered/2", healthyID: "delivered/1"}; fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("evt-5 deliveries: %v, want %v", states, want)
	}

	healed.Store(true)
	var res struct {
		Queued  int  `json:"queued"`
		HasMore bool `json:"has_more"`
	}
	path := "/v1/webhooks/" + flakyID + "/recover?since=" + url.QueryEscape(since.Format(time.RFC3339Nano))
	if err := api.do(ctx, http.MethodPost, path, nil, &res); err != nil {
		t.Fatal(err)
	}
	if res.Queued != n-2 || res.HasMore {
		t.Errorf("recover: queued %d (has_more %v), want %d", res.Queued, res.HasMore, n-2)
	}
	testenv.WaitFor(t, 30*time.Second, "every event delivered to the healed receiver", func() bool { return ok.len() == n })
	testenv.WaitFor(t, 10*time.Second, "the recovered deliveries logged", func() bool {
		return len(attempts(flakyID, "outcome=delivered").Data) == n
	})
	// Nothing left to recover; nothing sent twice.
	if err := api.do(ctx, http.MethodPost, path, nil, &res); err != nil {
		t.Fatal(err)
	}
	if res.Queued != 0 {
		t.Errorf("second recover queued %d, want 0", res.Queued)
	}
	time.Sleep(2 * time.Second) // room for a wrong extra delivery to arrive
	ok.mu.Lock()
	delivered := maps.Clone(ok.ids)
	ok.mu.Unlock()
	for id, c := range delivered {
		if c != 1 {
			t.Errorf("%s delivered %d times to the healed receiver, want once", id, c)
		}
	}
	for id, c := range healthy.CountByID() {
		if c != 1 {
			t.Errorf("%s delivered %d times to the healthy receiver, want once", id, c)
		}
	}
	lost := n - len(delivered)
	t.Logf("recover: %d events, %d dead-lettered then recovered, lost %d", n, n-2, lost)
}
