package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// key list|create|revoke and tenant list|show|delete on the registry of a
// running serve: what they change takes effect on it at once.
func TestRun_KeyAndTenantLifecycle(t *testing.T) {
	dir := t.TempDir()
	cfg := testServeConfig(dir)
	cfg.NATSListen = "127.0.0.1:-1" // a free port: 0 is NATS's 4222
	sys := mustStartSystem(t, cfg)
	t.Setenv("SWITCHBOARD_LOG_LEVEL", "error")
	t.Setenv("SWITCHBOARD_DATA_DIR", dir)
	ctx := context.Background()
	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut)
		}
		return out
	}

	tenantID := strings.TrimSpace(mustRun("tenant", "create", "acme"))
	manage := strings.TrimSpace(mustRun("key", "create", "--tenant", "acme", "--name", "ops"))
	// --tenant takes the id as well as the name.
	publish := strings.TrimSpace(mustRun("key", "create", "--tenant", tenantID, "--name", "upstream", "--scope", "publish", "--expires-in", "720h"))

	list := mustRun("key", "list", "--tenant", "acme")
	if !regexp.MustCompile(`(?m)^ID\s+NAME\s+SCOPE\s+CREATED\s+EXPIRES\s+LAST USED$`).MatchString(list) ||
		!regexp.MustCompile(`(?m)^key_\S+\s+ops\s+manage\s+\S+\s+-\s+-$`).MatchString(list) ||
		!regexp.MustCompile(`(?m)^key_\S+\s+upstream\s+publish\s+\S+Z\s+\S+Z\s+-$`).MatchString(list) {
		t.Errorf("key list:\n%s", list)
	}

	// The publish key publishes and reads nothing.
	pub := apiClient{url: sys.URL, key: publish}
	if err := pub.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "data": map[string]any{}}, nil); err != nil {
		t.Errorf("publish key on POST /v1/events: %v", err)
	}
	if err := pub.do(ctx, http.MethodGet, "/v1/webhooks", nil, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("publish key on GET /v1/webhooks: %v, want 403", err)
	}
	// Its use shows in last_used_at.
	if list := mustRun("key", "list", "--tenant", "acme"); !regexp.MustCompile(`(?m)^key_\S+\s+upstream\s+publish\s+\S+\s+\S+\s+\d{4}-\S+Z$`).MatchString(list) {
		t.Errorf("key list after use shows no last use:\n%s", list)
	}

	// revoke by name: the key stops working on the running server.
	if out := mustRun("key", "revoke", "--tenant", "acme", "upstream"); !strings.HasPrefix(out, "key_") {
		t.Errorf("key revoke printed %q, want the key's id", out)
	}
	if err := pub.do(ctx, http.MethodPost, "/v1/events", map[string]any{"type": "call.started", "data": map[string]any{}}, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("revoked key: %v, want 401", err)
	}
	if _, _, err := runCLI(t, "key", "revoke", "--tenant", "acme", "upstream"); err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "not found") {
		t.Errorf("revoking it again: %v", err)
	}

	mng := apiClient{url: sys.URL, key: manage}
	if _, err := mng.createWebhook(ctx, map[string]any{"name": "crm", "url": "https://example.com/h", "events": []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	if list := mustRun("tenant", "list"); !regexp.MustCompile(`(?m)^`+tenantID+`\s+acme\s+\S+Z$`).MatchString(list) ||
		!strings.Contains(list, sys.Tenant) {
		t.Errorf("tenant list:\n%s", list)
	}
	show := mustRun("tenant", "show", "acme")
	for _, want := range []string{`(?m)^id\s+` + tenantID + `$`, `(?m)^webhooks\s+1$`, `(?m)^keys\s+1$`} {
		if !regexp.MustCompile(want).MatchString(show) {
			t.Errorf("tenant show has no %s:\n%s", want, show)
		}
	}

	if _, _, err := runCLI(t, "tenant", "delete", "acme"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("tenant delete without --yes: %v", err)
	}
	out := mustRun("tenant", "delete", tenantID, "--yes", "--nats-url", sys.ns.ClientURL(), "--nats-nkey", sys.ns.SeedFile)
	for _, want := range []string{`(?m)^webhooks\s+1$`, `(?m)^keys\s+1$`, `(?m)^dead_letters\s+0$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("tenant delete has no %s:\n%s", want, out)
		}
	}
	if err := mng.do(ctx, http.MethodGet, "/v1/webhooks", nil, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("the deleted tenant's key: %v, want 401", err)
	}
	if _, _, err := runCLI(t, "tenant", "show", "acme"); err == nil || !strings.Contains(err.Error(), `"acme" not found`) {
		t.Errorf("tenant show after delete: %v", err)
	}
}

// Command lines that cannot run exit 2 with a one-line hint on stderr;
// help goes to stdout and exits 0.
func TestRun_UsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		hint string
	}{
		{[]string{"nosuch"}, `unknown subcommand "nosuch" (see 'switchboard --help')`},
		{[]string{"tenant", "nosuch"}, `tenant: unknown subcommand "nosuch" (see 'switchboard tenant --help')`},
		{[]string{"serve", "--nope"}, `serve: flag provided but not defined: -nope (see 'switchboard serve --help')`},
		{[]string{"key", "list", "--tenant", "x", "extra"}, `key list takes no arguments`},
		{[]string{"version", "extra"}, `version takes no arguments`},
	} {
		out, errOut, err := runCLI(t, tc.args...)
		if exitCode(err) != 2 || err == nil || !strings.Contains(err.Error(), tc.hint) || strings.Contains(err.Error(), "\n") || out != "" || errOut != "" {
			t.Errorf("%v: exit %d, %v, stdout %q, stderr %q; want exit 2 with %q", tc.args, exitCode(err), err, out, errOut, tc.hint)
		}
	}
	t.Setenv("SWITCHBOARD_API_RATE_LIMIT", "fast")
	if _, _, err := runCLI(t, "serve"); exitCode(err) != 2 || !strings.Contains(err.Error(), "serve: ") {
		t.Errorf("serve with a bad environment value: exit %d, %v", exitCode(err), err)
	}
	for _, args := range [][]string{{"--help"}, {"tenant"}, {"key", "revoke", "-h"}} {
		out, errOut, err := runCLI(t, args...)
		if exitCode(err) != 0 || !strings.Contains(out, "USAGE") || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want the help on stdout", args, exitCode(err), out, errOut)
		}
	}
}

// A restart with another --api-key replaces the default key, and says so.
func TestServe_APIKeyChangeIsLogged(t *testing.T) {
	dir := t.TempDir()
	start := func(key string) string {
		t.Helper()
		var logs bytes.Buffer
		cfg := testServeConfig(dir)
		cfg.APIKey = key
		sys, err := startSystem(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := sys.Close(); err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}
	const msg = "--api-key replaces the default API key"
	if logs := start(testKey); strings.Contains(logs, msg) {
		t.Errorf("first start logs a replacement:\n%s", logs)
	}
	if logs := start(testKey); strings.Contains(logs, msg) {
		t.Errorf("a start with the same key logs a replacement:\n%s", logs)
	}
	if logs := start(testKey + "-rotated"); !strings.Contains(logs, msg) {
		t.Errorf("a start with another key does not log it:\n%s", logs)
	}
}

// serve creates --data-dir, the JetStream store in it and registry.db for
// their owner only.
func TestServe_DataDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	mustStartSystem(t, testServeConfig(dir))
	for name, want := range map[string]os.FileMode{"": 0o700, "nats": 0o700, "registry.db": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s/%s is %v, want %v", filepath.Base(dir), name, got, want)
		}
	}
}

// publish --nats-url --tenant takes the tenant's name as well as its id,
// and refuses what names no tenant instead of publishing an event that no
// webhook can get.
func TestRun_PublishTenantByName(t *testing.T) {
	dir := t.TempDir()
	cfg := testServeConfig(dir)
	cfg.NATSListen = "127.0.0.1:-1" // a free port: 0 is NATS's 4222
	sys := mustStartSystem(t, cfg)
	ctx := context.Background()
	recv := testenv.StartReceiver(t, nil)
	api := apiClient{url: sys.URL, key: testKey}
	id, err := api.createWebhook(ctx, map[string]any{"name": "n", "url": recv.URL, "events": []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	natsURL := sys.ns.ClientURL()
	out, _, err := runCLI(t, "publish", "--nats-url", natsURL, "--nats-nkey", sys.ns.SeedFile, "--data-dir", dir, "--tenant", "default", "--type", "call.started", "--id", "by-name")
	if err != nil || strings.TrimSpace(out) != "by-name" {
		t.Fatalf("publish --tenant default: %q, %v", out, err)
	}
	testenv.WaitFor(t, 10*time.Second, "the event published for the tenant's name delivered", func() bool { return recv.CountByID()["by-name"] == 1 })

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats-url", natsURL, "--nats-nkey", sys.ns.SeedFile, "--data-dir", dir, "--tenant", "nosuch"}, `"nosuch" not found`},
		{[]string{"--nats-url", natsURL, "--nats-nkey", sys.ns.SeedFile, "--data-dir", t.TempDir(), "--tenant", "default"}, "not a tenant id"},
		{[]string{"--api-url", sys.URL, "--api-key", testKey, "--tenant", "default"}, "--nats-url only"},
	} {
		args := append([]string{"publish", "--type", "call.started"}, tc.args...)
		out, _, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || out != "" {
			t.Errorf("%v: %q, %v; want an error with %s", tc.args, out, err, tc.want)
		}
	}
}

// A variable set for one subcommand does not reach another whose flag of
// the same name means something else: the image's SWITCHBOARD_LISTEN is
// serve's, a worker takes SWITCHBOARD_WORKER_LISTEN (and still
// SWITCHBOARD_LISTEN without it, as deployments set it), receive only
// SWITCHBOARD_RECEIVE_LISTEN, bench only SWITCHBOARD_BENCH_*.
func TestEnvNames_PerSubcommand(t *testing.T) {
	for _, tc := range []struct {
		path, flag string
		want       []string
	}{
		{"switchboard serve", "listen", []string{"SWITCHBOARD_LISTEN"}},
		{"switchboard registry", "listen", []string{"SWITCHBOARD_LISTEN"}},
		{"switchboard worker", "listen", []string{"SWITCHBOARD_WORKER_LISTEN", "SWITCHBOARD_LISTEN"}},
		{"switchboard worker", "nats-url", []string{"SWITCHBOARD_NATS_URL"}},
		{"switchboard receive", "listen", []string{"SWITCHBOARD_RECEIVE_LISTEN"}},
		{"switchboard receive", "secret", []string{"SWITCHBOARD_RECEIVE_SECRET", "SWITCHBOARD_SECRET"}},
		{"switchboard bench", "data-dir", []string{"SWITCHBOARD_BENCH_DATA_DIR"}},
		{"switchboard bench", "workers", []string{"SWITCHBOARD_BENCH_WORKERS"}},
		{"switchboard tenant create", "data-dir", []string{"SWITCHBOARD_DATA_DIR"}},
	} {
		if got := envNames(tc.path, tc.flag); !slices.Equal(got, tc.want) {
			t.Errorf("%s --%s: %v, want %v", tc.path, tc.flag, got, tc.want)
		}
	}

	// What the commands read: receive ignores serve's SWITCHBOARD_LISTEN,
	// and a worker's own variable wins over it.
	t.Setenv("SWITCHBOARD_LISTEN", "127.0.0.1:1")
	t.Setenv("SWITCHBOARD_RECEIVE_STATUS", "not-a-number")
	if _, _, err := runCLI(t, "receive"); exitCode(err) != 2 || !strings.Contains(err.Error(), "SWITCHBOARD_RECEIVE_STATUS") {
		t.Errorf("receive with a bad SWITCHBOARD_RECEIVE_STATUS: exit %d, %v", exitCode(err), err)
	}
	ext := startExternalNATS(t)
	t.Setenv("SWITCHBOARD_WORKER_LISTEN", "nowhere")
	if _, _, err := runCLI(t, "worker", "--nats-url", ext.ClientURL(), "--nats-user", externalAuth.User, "--nats-password", externalAuth.Password); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("worker with SWITCHBOARD_WORKER_LISTEN=nowhere: %v, want an error naming it", err)
	}
}

// The streams' retention flags reach the streams.
func TestServe_StreamLimitFlags(t *testing.T) {
	cfg := testServeConfig(t.TempDir())
	cfg.Streams.EventsMaxAge = 240 * time.Hour
	cfg.Streams.AttemptsMaxBytes = 1 << 30
	sys := mustStartSystem(t, cfg)
	ctx := context.Background()
	for name, want := range map[string]func(jetstream.StreamConfig) bool{
		streams.Events:   func(c jetstream.StreamConfig) bool { return c.MaxAge == 240*time.Hour },
		streams.Attempts: func(c jetstream.StreamConfig) bool { return c.MaxBytes == 1<<30 },
		streams.Dead:     func(c jetstream.StreamConfig) bool { return c.MaxAge == 30*24*time.Hour && c.MaxBytes == -1 },
	} {
		s, err := sys.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if c := s.CachedInfo().Config; !want(c) {
			t.Errorf("%s: max age %v, max bytes %d", name, c.MaxAge, c.MaxBytes)
		}
	}
	var b byteSize
	for in, want := range map[string]int64{"4GiB": 4 << 30, "500MB": 500e6, "1048576": 1 << 20, "0": 0} {
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("byte size %q: %d, %v; want %d", in, b, err, want)
		}
	}
	if err := b.Set("4 parsecs"); err == nil {
		t.Error("byte size \"4 parsecs\" accepted")
	}
}

// The docs' examples agree: one receiver path (the example receivers'
// /webhooks), and every `switchboard worker` example listens on the
// worker's default port.
func TestDocs_ExamplesAgree(t *testing.T) {
	receiverURL := regexp.MustCompile(`http://127\.0\.0\.1:9000(/[A-Za-z0-9_/-]*)`)
	workerListen := regexp.MustCompile(`switchboard worker[^\n]*(?:\\\n[^\n]*)*?--listen [0-9.]+:(\d+)`)
	_, defaultPort, _ := strings.Cut(workerCommand(io.Discard, io.Discard).FlagSet.Lookup("listen").DefValue, ":")
	workers := 0
	for _, doc := range []string{"README.md", "docs/operations.md", "docs/receivers.md"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range receiverURL.FindAllStringSubmatch(string(b), -1) {
			if m[1] != "/webhooks" {
				t.Errorf("%s: receiver URL %s, want the examples' path /webhooks", doc, m[0])
			}
		}
		for _, m := range workerListen.FindAllStringSubmatch(string(b), -1) {
			workers++
			if m[1] != defaultPort {
				t.Errorf("%s: a worker example listens on :%s, want the worker's default :%s", doc, m[1], defaultPort)
			}
		}
	}
	if workers < 2 {
		t.Errorf("found %d worker examples with --listen, want README's and operations.md's", workers)
	}
}
