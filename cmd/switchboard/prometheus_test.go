package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/registry/store"
)

var updateMetrics = flag.Bool("update-metrics", false, "rewrite deploy/metrics.txt from what a running system exports")

// metricsList is the checked-in list of the metrics Switchboard exports,
// which the dashboard and alert checks in deploy/ read.
const metricsList = "../../deploy/metrics.txt"

// deliverSome starts a system with one webhook to a real receiver, sends it
// n events and waits until the receiver has them all.
func deliverSome(t *testing.T, n int) *system {
	t.Helper()
	recv := testenv.StartReceiver(t, nil)
	sys := mustStartSystem(t, testServeConfig(t.TempDir()))
	ctx := context.Background()
	api := apiClient{url: sys.URL, key: testKey}
	id, err := api.createWebhook(ctx, map[string]any{"name": "crm", "url": recv.URL, "events": []string{"call.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "data": map[string]any{"i": i}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "deliveries", func() bool { return recv.Count() == n })
	return sys
}

// TestServe_MetricsPassPromtoolAndMatchTheList lints a live /metrics with
// promtool and compares the switchboard_* families it holds with
// deploy/metrics.txt, so that a metric added, renamed or removed in the code
// shows up in the list the dashboard and alert checks rely on. Run with
// -update-metrics to rewrite the list.
func TestServe_MetricsPassPromtoolAndMatchTheList(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	sys := deliverSome(t, 3)
	// A delivery owed and never attempted, so that the backlog's gauge,
	// which exports only webhooks with a backlog, has a series.
	ctx := context.Background()
	var hooks struct {
		Data []struct {
			ID       string `json:"id"`
			TenantID string `json:"tenant_id"`
		} `json:"data"`
	}
	if err := (apiClient{url: sys.URL, key: testKey}).do(ctx, http.MethodGet, "/v1/webhooks", nil, &hooks); err != nil || len(hooks.Data) == 0 {
		t.Fatalf("list webhooks: %v %v", err, hooks)
	}
	if err := sys.db.RecordMatched(ctx, []store.Matched{{TenantID: sys.Tenant, EventID: "evt-owed", EventSeq: 1 << 40,
		EventType: "call.started", WebhookIDs: []string{hooks.Data[0].ID}, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "switchboard_backlog_deliveries", func() bool {
		return bytes.Contains(getBody(t, sys.URL+"/metrics"), []byte("switchboard_backlog_deliveries{"))
	})

	body := getBody(t, sys.URL+"/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	var got []string
	for name, f := range fams {
		if strings.HasPrefix(name, "switchboard_") {
			got = append(got, name+" "+strings.ToLower(f.GetType().String()))
		}
	}
	slices.Sort(got)
	// Every family must be there, not only those that happened to count.
	for _, must := range []string{"switchboard_consumer_pending gauge", "switchboard_consumer_ack_pending gauge", "switchboard_webhooks gauge",
		"switchboard_backlog_deliveries gauge"} {
		if !slices.Contains(got, must) {
			t.Errorf("/metrics lacks %s", must)
		}
	}
	const header = "# The metrics Switchboard exports: name and type. Checked against a running\n" +
		"# system by cmd/switchboard TestServe_MetricsPassPromtoolAndMatchTheList;\n" +
		"# rewrite with: go test ./cmd/switchboard -run MetricsPassPromtool -update-metrics\n"
	want := header + strings.Join(got, "\n") + "\n"
	if *updateMetrics {
		if err := os.WriteFile(metricsList, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(metricsList)
	if err != nil {
		t.Fatalf("read the metrics list: %v", err)
	}
	if string(have) != want {
		t.Errorf("deploy/metrics.txt is not what the system exports; rewrite it with -update-metrics.\nexported:\n%s\nlist:\n%s", want, have)
	}
}

// TestPrometheus_ScrapesServe runs a real Prometheus, with the alert rules of
// deploy/prometheus loaded, against a running system, and reads the delivery
// counter back through Prometheus' HTTP API.
func TestPrometheus_ScrapesServe(t *testing.T) {
	promBin := testenv.Tool(t, "prometheus")
	const n = 5
	sys := deliverSome(t, n)
	target := strings.TrimPrefix(sys.URL, "http://")

	rules, err := filepath.Abs("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: switchboard
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := startPrometheus(t, promBin, dir)

	type sample struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	query := func(q string) []sample {
		var out struct {
			Status string `json:"status"`
			Data   struct {
				Result []sample `json:"result"`
			} `json:"data"`
		}
		getJSON(t, prom+"/api/v1/query?query="+url.QueryEscape(q), &out)
		if out.Status != "success" {
			t.Fatalf("query %s: status %q", q, out.Status)
		}
		return out.Data.Result
	}
	scalar := func(q string) string {
		r := query(q)
		if len(r) != 1 {
			return fmt.Sprintf("%d series", len(r))
		}
		s, _ := r[0].Value[1].(string)
		return s
	}
	testenv.WaitFor(t, 30*time.Second, "Prometheus has scraped the deliveries", func() bool {
		return scalar(`sum(switchboard_deliveries_total{job="switchboard", outcome="delivered"})`) == fmt.Sprint(n)
	})
	for q, want := range map[string]string{
		`up{job="switchboard"}`:                                   "1",
		`max(switchboard_consumer_pending{consumer="deliverer"})`: "0",
		`switchboard_webhooks{status="active"}`:                   "1",
		`sum(switchboard_events_accepted_total)`:                  fmt.Sprint(n),
	} {
		if got := scalar(q); got != want {
			t.Errorf("%s = %s, want %s", q, got, want)
		}
	}

	// The rules loaded, and each evaluates without error against real series.
	var rulesOut struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	testenv.WaitFor(t, 10*time.Second, "rules evaluated", func() bool {
		getJSON(t, prom+"/api/v1/rules", &rulesOut)
		for _, g := range rulesOut.Data.Groups {
			for _, r := range g.Rules {
				if r.Health == "unknown" {
					return false
				}
			}
		}
		return len(rulesOut.Data.Groups) > 0
	})
	var names []string
	for _, g := range rulesOut.Data.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Name)
			if r.Health != "ok" {
				t.Errorf("rule %s: health %s: %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	if len(names) != 12 {
		t.Errorf("Prometheus loaded rules %v, want the 12 of alerts.yml", names)
	}
}

// startPrometheus runs prometheus on the prometheus.yml in dir, with its
// storage in dir, on a free loopback port, until the test ends. It returns
// Prometheus' base URL once it is ready.
func startPrometheus(t *testing.T, bin, dir string) string {
	t.Helper()
	addr := freeAddr(t)
	logs := &lockedBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
	)
	exited := startProcess(t, "prometheus", cmd, logs, 20*time.Second)
	base := "http://" + addr
	testenv.WaitFor(t, 30*time.Second, "prometheus ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", logs.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

func getBody(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, b)
	}
	return b
}

func getJSON(t *testing.T, u string, out any) {
	t.Helper()
	if err := json.Unmarshal(getBody(t, u), out); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// lockedBuffer collects a child process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestOperationsDoc_EveryMetricExplained: docs/operations.md says what each
// metric of deploy/metrics.txt means, so a new metric needs its row.
func TestOperationsDoc_EveryMetricExplained(t *testing.T) {
	list, err := os.ReadFile(metricsList)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(list), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if !strings.Contains(string(doc), "`"+name) {
			t.Errorf("docs/operations.md does not explain %s", name)
		}
	}
}
