package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/signer"
)

const testKey = "sk_test_0123456789abcdefghijklmnopqrstuvwxyz"

func testServeConfig(dir string) serveConfig {
	cfg := defaultServeConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.APIKey = testKey
	cfg.AllowPrivateTargets = true
	cfg.Retry.InitialInterval = time.Second
	cfg.Retry.MaxInterval = time.Second
	cfg.ShutdownTimeout = 20 * time.Second
	cfg.BacklogInterval = time.Second
	return cfg
}

func mustStartSystem(t *testing.T, cfg serveConfig) *system {
	t.Helper()
	sys, err := startSystem(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { sys.Close() })
	return sys
}

// successes counts, per webhook-id, the requests a receiver answered 2xx.
type successes struct {
	mu  sync.Mutex
	ids map[string]int
}

func (s *successes) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]int{}
	}
	s.ids[id]++
}

func (s *successes) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

func TestServe_EventsAcceptedBeforeStopAreDeliveredAfterRestart(t *testing.T) {
	dir := t.TempDir()
	var failing atomic.Bool
	failing.Store(true)
	var ok successes
	recv := testenv.StartReceiver(t, func(r *http.Request, _ []byte) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		ok.add(r.Header.Get(signer.HeaderID))
		return http.StatusOK
	})
	cfg := testServeConfig(dir)
	// Every event is tried before the stop: the breaker, tested in
	// consumer, would defer most of them instead.
	cfg.BreakerFailures = 1000
	ctx := context.Background()

	sys := mustStartSystem(t, cfg)
	api := apiClient{url: sys.URL, key: testKey}
	id, err := api.createWebhook(ctx, map[string]any{
		"name": "crm", "url": recv.URL, "events": []string{"call.*"}, "max_retries": 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{
			"type": "call.started", "data": map[string]any{"i": i},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Every event has been tried once and failed, so each is now waiting
	// for its retry somewhere in JetStream when the process stops.
	testenv.WaitFor(t, 20*time.Second, "first attempts", func() bool { return len(recv.CountByID()) == n })
	if err := sys.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	failing.Store(false)
	mustStartSystem(t, cfg)
	testenv.WaitFor(t, 30*time.Second, "all events delivered after restart", func() bool { return ok.len() == n })
}

func TestRun_HelpNamesEveryEnvironmentVariable(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--help"}, &out, &errOut)
	if err == nil || errOut.Len() > 0 {
		t.Fatalf("--help: %v, stderr %q; want flag.ErrHelp and the help on stdout", err, errOut.String())
	}
	help := out.String()
	for _, env := range []string{
		"SWITCHBOARD_LISTEN", "SWITCHBOARD_DATA_DIR", "SWITCHBOARD_NATS_URL", "SWITCHBOARD_API_KEY",
		"SWITCHBOARD_RETRY_INITIAL_INTERVAL", "SWITCHBOARD_RETRY_MAX_INTERVAL", "SWITCHBOARD_RETRY_MULTIPLIER",
		"SWITCHBOARD_ALLOW_PRIVATE_TARGETS", "SWITCHBOARD_ENCRYPTION_KEY",
		"SWITCHBOARD_MAX_IN_FLIGHT_PER_WEBHOOK", "SWITCHBOARD_BREAKER_FAILURES", "SWITCHBOARD_BREAKER_COOLDOWN",
	} {
		if !strings.Contains(help, env) {
			t.Errorf("serve --help does not name %s:\n%s", env, help)
		}
	}
}

func TestRun_ServeFromEnvironmentThenPublish(t *testing.T) {
	recv := testenv.StartReceiver(t, nil)
	t.Setenv("SWITCHBOARD_DATA_DIR", t.TempDir())
	t.Setenv("SWITCHBOARD_API_KEY", testKey)
	t.Setenv("SWITCHBOARD_LOG_LEVEL", "error")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--allow-private-targets"}, pw, io.Discard)
		pw.Close()
	}()
	// The banner names the API URL.
	var url string
	buf := make([]byte, 4096)
	var banner strings.Builder
	for url == "" {
		n, err := pr.Read(buf)
		if err != nil {
			t.Fatalf("read banner: %v (%q)", err, banner.String())
		}
		banner.Write(buf[:n])
		for _, line := range strings.Split(banner.String(), "\n") {
			if u, found := strings.CutPrefix(strings.TrimSpace(line), "API:"); found {
				url = strings.TrimSpace(u)
			}
		}
	}
	go io.Copy(io.Discard, pr) //nolint:errcheck

	api := apiClient{url: url, key: testKey}
	if _, err := api.createWebhook(ctx, map[string]any{"name": "n", "url": recv.URL, "events": []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	// A webhook reaches the workers within a second; publish after that.
	time.Sleep(1500 * time.Millisecond)
	var out bytes.Buffer
	if err := run(ctx, []string{"publish", "--api-url", url, "--type", "agent.logged_in", "--id", "evt-1", "--data", `{"a":1}`}, &out, io.Discard); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if got := strings.TrimSpace(out.String()); got != "evt-1" {
		t.Errorf("publish printed %q, want the id alone", got)
	}
	testenv.WaitFor(t, 10*time.Second, "delivery", func() bool { return recv.Count() == 1 })
	if got := recv.Requests()[0].Header.Get(signer.HeaderID); got != "evt-1" {
		t.Errorf("webhook-id = %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// With --encryption-key, the registry seals and the workers open: a
// webhook created through the API is delivered signed with its secret.
func TestServe_EncryptionKeyReachesRegistryAndWorkers(t *testing.T) {
	recv := testenv.StartReceiver(t, nil)
	cfg := testServeConfig(t.TempDir())
	cfg.EncryptionKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	sys := mustStartSystem(t, cfg)
	ctx := context.Background()
	api := apiClient{url: sys.URL, key: testKey}
	var created struct{ ID, Secret string }
	if err := api.do(ctx, http.MethodPost, "/v1/webhooks", map[string]any{
		"name": "sealed", "url": recv.URL, "events": []string{"call.*"},
	}, &created); err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{created.ID}); err != nil {
		t.Fatal(err)
	}
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "data": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "delivery", func() bool { return recv.Count() == 1 })
	r := recv.Requests()[0]
	s, err := signer.New(created.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(r.Header, r.Body, signer.DefaultTolerance, time.Now()); err != nil {
		t.Errorf("delivery does not verify with the secret: %v", err)
	}

	// Restarted without the key, or with another, serve refuses to start
	// rather than fail every request and delivery.
	if err := sys.Close(); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", "YW5vdGhlciBrZXksIDMyIGJ5dGVzIGxvbmcuLi4uLi4="} {
		cfg.EncryptionKey = key
		sys, err := startSystem(ctx, cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			sys.Close()
			t.Fatalf("started with encryption key %q over sealed secrets", key)
		}
		if !strings.Contains(err.Error(), "--encryption-key") {
			t.Errorf("the error does not name the flag: %v", err)
		}
	}
}

func TestServe_ExternalNATS(t *testing.T) {
	ext := startExternalNATS(t)
	recv := testenv.StartReceiver(t, nil)
	cfg := testServeConfig(t.TempDir())
	cfg.NATSURL = ext.ClientURL()
	cfg.NATS = externalAuth
	sys := mustStartSystem(t, cfg)
	if sys.ns != nil {
		t.Fatal("serve started an embedded server although --nats-url was given")
	}
	ctx := context.Background()
	api := apiClient{url: sys.URL, key: testKey}
	id, err := api.createWebhook(ctx, map[string]any{"name": "n", "url": recv.URL, "events": []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"id": "ext-1", "type": "call.started", "data": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "delivery through the external NATS", func() bool { return recv.Count() == 1 })

	// An upstream script can publish straight to the cluster.
	var out bytes.Buffer
	args := []string{"publish", "--nats-url", ext.ClientURL(), "--nats-user", externalAuth.User, "--nats-password", externalAuth.Password, "--tenant", sys.Tenant, "--type", "call.ended", "--id", "ext-2"}
	if err := run(ctx, args, &out, io.Discard); err != nil {
		t.Fatalf("publish --nats-url: %v", err)
	}
	if got := strings.TrimSpace(out.String()); got != "ext-2" {
		t.Errorf("publish printed %q, want the id alone", got)
	}
	testenv.WaitFor(t, 10*time.Second, "the directly published event delivered", func() bool { return recv.CountByID()["ext-2"] == 1 })

	// The streams live on the external server, not in --data-dir.
	nc, err := nats.Connect(ext.ClientURL(), externalAuth.options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, streams.Events)
	if err != nil {
		t.Fatalf("SB_EVENTS on the external server: %v", err)
	}
	if info, _ := s.Info(ctx); info == nil || info.State.Msgs != 2 {
		t.Errorf("SB_EVENTS on the external server holds %+v, want 2 messages", info)
	}
}

func TestServe_ReadinessFollowsNATS(t *testing.T) {
	ext := startExternalNATS(t)
	cfg := testServeConfig(t.TempDir())
	cfg.NATSURL = ext.ClientURL()
	cfg.NATS = externalAuth
	sys := mustStartSystem(t, cfg)
	status := func(path string) int {
		resp, err := http.Get(sys.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testenv.WaitFor(t, 10*time.Second, "ready", func() bool { return status("/readyz") == http.StatusOK })
	if got := status("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz = %d", got)
	}
	ext.Shutdown()
	testenv.WaitFor(t, 10*time.Second, "not ready without NATS", func() bool { return status("/readyz") == http.StatusServiceUnavailable })
	if got := status("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz without NATS = %d: the process is alive, only not ready", got)
	}
}

func TestRun_ServeRefusesBadSettingsNamingEach(t *testing.T) {
	var errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--retry-multiplier", "0.5", "--workers", "0", "--max-ack-pending", "-1",
		"--encryption-key", "c2hvcnQta2V5", "--disable-after", "-1",
		"--max-in-flight-per-webhook", "-1", "--breaker-failures", "0", "--breaker-cooldown", "10ms",
		"--backlog-top", "-1", "--backlog-interval", "0s"}, io.Discard, &errOut)
	if err == nil {
		t.Fatal("serve started with unusable settings")
	}
	if strings.Contains(err.Error(), "c2hvcnQta2V5") {
		t.Errorf("the error shows the encryption key: %v", err)
	}
	for _, flag := range []string{"multiplier", "--workers", "--max-ack-pending", "--encryption-key", "--disable-after", "--max-in-flight-per-webhook", "--breaker-failures", "--breaker-cooldown",
		"--backlog-top", "--backlog-interval"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("error does not name %s: %v", flag, err)
		}
	}
}
