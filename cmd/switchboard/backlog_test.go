package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// deadURL is the URL of a port nothing listens on: every connection is
// refused.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String() + "/"
}

// newTenantKey creates a tenant and a manage key of it.
func newTenantKey(ctx context.Context, t *testing.T, sys *system, name string) (tenant, key string) {
	t.Helper()
	admin := apiClient{url: sys.URL, key: testKey}
	var tn struct {
		ID string `json:"id"`
	}
	if err := admin.do(ctx, http.MethodPost, "/v1/tenants", map[string]any{"name": name}, &tn); err != nil {
		t.Fatal(err)
	}
	var k struct {
		Key string `json:"key"`
	}
	if err := admin.do(ctx, http.MethodPost, "/v1/tenants/"+tn.ID+"/keys", map[string]any{"name": name, "admin": false}, &k); err != nil {
		t.Fatal(err)
	}
	return tn.ID, k.Key
}

// publishN publishes n events of type typ with key.
func publishN(ctx context.Context, t *testing.T, sys *system, key, prefix, typ string, n int) {
	t.Helper()
	api := apiClient{url: sys.URL, key: key}
	for i := range n {
		if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"id": fmt.Sprintf("%s-%d", prefix, i), "type": typ, "data": map[string]any{}}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// backlogOf reads GET /v1/backlog with key: pending per webhook, and the
// total.
func backlogOf(ctx context.Context, t *testing.T, sys *system, key, query string) (map[string]int64, int64, store.BacklogReport) {
	t.Helper()
	var rep store.BacklogReport
	if err := (apiClient{url: sys.URL, key: key}).do(ctx, http.MethodGet, "/v1/backlog?"+query, nil, &rep); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, w := range rep.Data {
		out[w.WebhookID] = w.Pending
	}
	return out, rep.TotalPending, rep
}

// backlogSeries is switchboard_backlog_deliveries per webhook at a scrape.
func backlogSeries(t *testing.T, sys *system) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	f, ok := scrape(t, sys.URL)["switchboard_backlog_deliveries"]
	if !ok {
		return out
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "webhook_id" {
				out[l.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// Two tenants, 310 deliveries owed to receivers that refuse connections or
// answer 503: GET /v1/backlog, `switchboard backlog` and the metric (top 2
// of 3) show the counts; the flaky receiver's fall to 0 once it answers
// (delivered), the refused ones' as they are dead-lettered; every attempt
// and matched record ingested a second time changes nothing.
func TestBacklog_ShowsAndDrainsAtSize(t *testing.T) {
	const nA, nB, nFlaky = 150, 100, 30
	ctx := context.Background()
	cfg := testServeConfig(t.TempDir())
	// Ten retries 2 s apart: about 20 s before the first dead letter, to
	// see the whole backlog at once on a loaded machine.
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 2*time.Second, 2*time.Second
	cfg.BacklogTop, cfg.BacklogInterval = 2, time.Second
	sys := mustStartSystem(t, cfg)
	tenantB, keyB := newTenantKey(ctx, t, sys, "tenant-b")
	var up atomic.Bool
	flaky := testenv.StartReceiver(t, func(*http.Request, []byte) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	down := deadURL(t)
	deadA, err := apiClient{url: sys.URL, key: testKey}.createWebhook(ctx, map[string]any{"name": "dead-a", "url": down, "events": []string{"call.*"}, "max_retries": 10})
	if err != nil {
		t.Fatal(err)
	}
	deadB, err := apiClient{url: sys.URL, key: keyB}.createWebhook(ctx, map[string]any{"name": "dead-b", "url": down, "events": []string{"call.*"}, "max_retries": 10})
	if err != nil {
		t.Fatal(err)
	}
	flakyB, err := apiClient{url: sys.URL, key: keyB}.createWebhook(ctx, map[string]any{"name": "flaky-b", "url": flaky.URL, "events": []string{"call.ended"}, "max_retries": 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{deadA, deadB, flakyB}); err != nil {
		t.Fatal(err)
	}
	publishN(ctx, t, sys, testKey, "a", "call.started", nA)
	publishN(ctx, t, sys, keyB, "b", "call.started", nB-nFlaky)
	publishN(ctx, t, sys, keyB, "bf", "call.ended", nFlaky)

	full := map[string]int64{deadA: nA, deadB: nB, flakyB: nFlaky}
	testenv.WaitFor(t, 20*time.Second, "the whole backlog in GET /v1/backlog", func() bool {
		got, total, _ := backlogOf(ctx, t, sys, testKey, "")
		return fmt.Sprint(got) == fmt.Sprint(full) && total == nA+nB+nFlaky
	})
	// The metric: the top 2 only.
	testenv.WaitFor(t, 10*time.Second, "the top 2 in switchboard_backlog_deliveries", func() bool {
		return fmt.Sprint(backlogSeries(t, sys)) == fmt.Sprint(map[string]float64{deadA: nA, deadB: nB})
	})
	// A manage key sees its tenant's; the CLI prints the same as a table.
	if got, total, rep := backlogOf(ctx, t, sys, keyB, ""); fmt.Sprint(got) != fmt.Sprint(map[string]int64{deadB: nB, flakyB: nFlaky}) ||
		total != nB+nFlaky || rep.TenantID != tenantB {
		t.Errorf("B's backlog: %v total %d tenant %q", got, total, rep.TenantID)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"backlog", "--api-url", sys.URL, "--api-key", testKey, "--limit", "2"}, &out, &out); err != nil {
		t.Fatalf("switchboard backlog: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TENANT") ||
		!strings.Contains(squeeze(lines[1]), fmt.Sprintf("%s  dead-a  active  %d", deadA, nA)) ||
		!strings.Contains(squeeze(lines[2]), fmt.Sprintf("%s  dead-b  active  %d", deadB, nB)) ||
		!strings.HasPrefix(lines[3], fmt.Sprintf("total %d pending to 3 webhooks", nA+nB+nFlaky)) {
		t.Errorf("switchboard backlog --limit 2:\n%s", out.String())
	}

	// The flaky receiver answers: its deliveries leave the backlog.
	up.Store(true)
	testenv.WaitFor(t, 30*time.Second, "flaky-b's backlog delivered", func() bool {
		got, _, _ := backlogOf(ctx, t, sys, keyB, "")
		_, listed := got[flakyB]
		return !listed && flaky.Count() >= nFlaky
	})
	// The refused ones', as they are dead-lettered.
	testenv.WaitFor(t, 90*time.Second, "every refused delivery dead-lettered", func() bool {
		_, total, _ := backlogOf(ctx, t, sys, testKey, "")
		return total == 0
	})
	if n := deadLetters(ctx, t, sys); n != nA+nB {
		t.Errorf("SB_DEAD holds %d, want %d", n, nA+nB)
	}
	testenv.WaitFor(t, 10*time.Second, "switchboard_backlog_deliveries empty", func() bool { return len(backlogSeries(t, sys)) == 0 })

	// Every record of SB_ATTEMPTS ingested again: nothing changes.
	republished := republishAttempts(ctx, t, sys)
	waitIngested(ctx, t, sys)
	if got, total, _ := backlogOf(ctx, t, sys, testKey, ""); total != 0 || len(got) != 0 {
		t.Errorf("after %d records ingested twice: %v total %d, want none", republished, got, total)
	}
}

// An inactive webhook's deliveries already scheduled for a retry end in
// SB_DEAD as webhook_inactive when they come due, and leave the backlog;
// once active again at a working URL, a replay by webhook delivers them:
// the way docs/operations.md says to drop a backlog now and replay later.
func TestBacklog_InactiveWebhookDeadLettersItsScheduledRetries(t *testing.T) {
	const n = 200
	ctx := context.Background()
	cfg := testServeConfig(t.TempDir())
	cfg.Retry.InitialInterval, cfg.Retry.MaxInterval = 2*time.Second, 2*time.Second
	cfg.BacklogInterval = time.Second
	// The breaker the refused connections opened lets the replays through
	// after a cool-down.
	cfg.BreakerCooldown = 2 * time.Second
	sys := mustStartSystem(t, cfg)
	api := apiClient{url: sys.URL, key: testKey}
	id, err := api.createWebhook(ctx, map[string]any{"name": "gone-for-good", "url": deadURL(t), "events": []string{"call.*"}, "max_retries": 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	publishN(ctx, t, sys, testKey, "g", "call.started", n)
	testenv.WaitFor(t, 20*time.Second, "the backlog counted", func() bool {
		got, _, _ := backlogOf(ctx, t, sys, testKey, "")
		return got[id] == n
	})
	// Every delivery has failed once: each is a scheduled retry.
	testenv.WaitFor(t, 20*time.Second, "a failed attempt of each", func() bool {
		return value(scrape(t, sys.URL), "switchboard_deliveries_total", map[string]string{"outcome": "retry_scheduled"}) >= n
	})
	if err := api.do(ctx, http.MethodPatch, "/v1/webhooks/"+id, map[string]any{"status": "inactive"}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the backlog dead-lettered", func() bool {
		got, _, _ := backlogOf(ctx, t, sys, testKey, "")
		return got[id] == 0
	})
	if got := value(scrape(t, sys.URL), "switchboard_dead_letters_total", map[string]string{"reason": "webhook_inactive"}); got != n {
		t.Errorf("dead letters webhook_inactive: %v, want %d", got, n)
	}
	if got := deadLetters(ctx, t, sys); got != n {
		t.Errorf("SB_DEAD holds %d, want %d", got, n)
	}

	// Replay later.
	recv := testenv.StartReceiver(t, nil)
	if err := api.do(ctx, http.MethodPatch, "/v1/webhooks/"+id, map[string]any{"status": "active", "url": recv.URL}, nil); err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	for {
		var rep struct {
			HasMore bool `json:"has_more"`
		}
		if err := api.do(ctx, http.MethodPost, "/v1/dead-letters/replay", map[string]any{"webhook_id": id}, &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.HasMore {
			break
		}
	}
	testenv.WaitFor(t, 60*time.Second, "the replays delivered", func() bool { return recv.Count() >= n })
	if got, total, _ := backlogOf(ctx, t, sys, testKey, ""); total != 0 {
		t.Errorf("after the replays: %v total %d, want none", got, total)
	}
}

// deadLetters counts the messages of SB_DEAD.
func deadLetters(ctx context.Context, t *testing.T, sys *system) int {
	t.Helper()
	s, err := sys.js.Stream(ctx, streams.Dead)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}

// republishAttempts publishes every record SB_ATTEMPTS holds again, as a
// worker that crashed before its acks would, and returns how many.
func republishAttempts(ctx context.Context, t *testing.T, sys *system) int {
	t.Helper()
	s, err := sys.js.Stream(ctx, streams.Attempts)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sys.js.Publish(ctx, m.Subject, m.Data); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// waitIngested waits for the registry's attempt ingester to have acked
// every record of SB_ATTEMPTS.
func waitIngested(ctx context.Context, t *testing.T, sys *system) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "SB_ATTEMPTS ingested", func() bool {
		s, err := sys.js.Stream(ctx, streams.Attempts)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil {
			return false
		}
		c, err := sys.js.Consumer(ctx, streams.Attempts, control.AttemptsConsumer)
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.AckFloor.Stream >= info.State.LastSeq
	})
}
