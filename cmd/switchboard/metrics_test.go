package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// scrape reads /metrics the way Prometheus would.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// value sums the samples of a counter, gauge or histogram (its count) whose
// labels include want.
func value(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := families[name]
	if !ok {
		return -1
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func TestServe_MetricsCountWhatHappened(t *testing.T) {
	good := testenv.StartReceiver(t, nil)
	bad := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusInternalServerError })
	sys := mustStartSystem(t, testServeConfig(t.TempDir()))
	ctx := context.Background()
	api := apiClient{url: sys.URL, key: testKey}
	okID, err := api.createWebhook(ctx, map[string]any{"name": "good", "url": good.URL, "events": []string{"call.started"}})
	if err != nil {
		t.Fatal(err)
	}
	badID, err := api.createWebhook(ctx, map[string]any{"name": "bad", "url": bad.URL, "events": []string{"call.ended"}, "max_retries": 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{okID, badID}); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"call.started", "call.ended"} {
		if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": typ, "data": map[string]any{}}, nil); err != nil {
			t.Fatal(err)
		}
	}

	var fams map[string]*dto.MetricFamily
	// The deliverer counts a dead letter before the outcome of its attempt:
	// wait for both, or a scrape between the two reads a half-counted attempt.
	testenv.WaitFor(t, 20*time.Second, "a delivery and a dead letter counted", func() bool {
		fams = scrape(t, sys.URL)
		return value(fams, "switchboard_deliveries_total", map[string]string{"outcome": "delivered"}) == 1 &&
			value(fams, "switchboard_dead_letters_total", nil) == 1 &&
			value(fams, "switchboard_deliveries_total", map[string]string{"outcome": "dead_lettered"}) == 1
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"switchboard_events_accepted_total", nil, 2},
		{"switchboard_deliveries_created_total", nil, 2},
		{"switchboard_deliveries_total", map[string]string{"outcome": "retry_scheduled"}, 1},
		{"switchboard_deliveries_total", map[string]string{"outcome": "dead_lettered"}, 1},
		{"switchboard_retries_scheduled_total", nil, 1},
		{"switchboard_delivery_duration_seconds", nil, 3}, // 1 good + 2 bad attempts
		{"switchboard_delivery_latency_seconds", nil, 1},
		{"switchboard_deliveries_in_flight", nil, 0},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
