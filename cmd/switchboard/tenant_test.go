package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runCLI runs the binary's run with args and returns stdout, stderr and
// the error.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// tenant create and key create write to the registry of a running serve;
// the key works on that server at once.
func TestRun_TenantAndKeyCreateWhileServing(t *testing.T) {
	dir := t.TempDir()
	sys := mustStartSystem(t, testServeConfig(dir))
	t.Setenv("SWITCHBOARD_LOG_LEVEL", "error")

	out, _, err := runCLI(t, "tenant", "create", "acme", "--data-dir", dir)
	if err != nil {
		t.Fatalf("tenant create: %v", err)
	}
	tenantID := strings.TrimSuffix(out, "\n")
	if !regexp.MustCompile(`^ten_[0-9A-Za-z_-]+$`).MatchString(tenantID) {
		t.Fatalf("tenant create printed %q, want the id alone", out)
	}

	// The same name again: an error naming the existing tenant, exit 1.
	out, _, err = runCLI(t, "tenant", "create", "--data-dir", dir, "acme")
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), tenantID) || out != "" {
		t.Errorf("tenant create of an existing name: %q, %v", out, err)
	}

	// --data-dir from the environment, as for serve.
	t.Setenv("SWITCHBOARD_DATA_DIR", dir)
	out, _, err = runCLI(t, "key", "create", "--tenant", "acme", "--name", "ci")
	if err != nil {
		t.Fatalf("key create: %v", err)
	}
	key := strings.TrimSuffix(out, "\n")
	if !regexp.MustCompile(`^sk_[0-9A-Za-z]{43}$`).MatchString(key) {
		t.Fatalf("key create printed %q, want the key alone", out)
	}
	adminOut, _, err := runCLI(t, "key", "create", "--tenant", "acme", "--name", "ops", "--admin")
	if err != nil {
		t.Fatalf("key create --admin: %v", err)
	}
	adminKey := strings.TrimSpace(adminOut)

	ctx := context.Background()
	var page struct {
		Data []any `json:"data"`
	}
	if err := (apiClient{url: sys.URL, key: key}).do(ctx, http.MethodGet, "/v1/webhooks", nil, &page); err != nil || len(page.Data) != 0 {
		t.Errorf("the new key on the running server: %+v, %v", page, err)
	}
	// acme's key sees none of the default tenant's webhooks.
	if _, err := (apiClient{url: sys.URL, key: testKey}).createWebhook(ctx, map[string]any{
		"name": "default's", "url": "https://example.com/h", "events": []string{"*"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := (apiClient{url: sys.URL, key: key}).do(ctx, http.MethodGet, "/v1/webhooks", nil, &page); err != nil || len(page.Data) != 0 {
		t.Errorf("acme sees another tenant's webhooks: %+v, %v", page, err)
	}
	// Only the --admin key may administer.
	err = (apiClient{url: sys.URL, key: key}).do(ctx, http.MethodPost, "/v1/tenants", map[string]any{"name": "x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("plain key on POST /v1/tenants: %v, want 403", err)
	}
	if err := (apiClient{url: sys.URL, key: adminKey}).do(ctx, http.MethodPost, "/v1/tenants", map[string]any{"name": "globex"}, nil); err != nil {
		t.Errorf("admin key on POST /v1/tenants: %v", err)
	}
	// The serve-time bootstrap key is admin.
	if err := (apiClient{url: sys.URL, key: testKey}).do(ctx, http.MethodPost, "/v1/tenants", map[string]any{"name": "initech"}, nil); err != nil {
		t.Errorf("bootstrap key on POST /v1/tenants: %v", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"key", "create", "--tenant", "acme", "--name", "ci"}, `"ci"`},
		{[]string{"key", "create", "--tenant", "nope", "--name", "x"}, `"nope" not found`},
		{[]string{"key", "create", "--name", "x"}, "--tenant is required"},
		{[]string{"key", "create"}, "--name is required"},
		{[]string{"tenant", "create", " "}, "name is required"},
	} {
		out, _, err := runCLI(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || out != "" {
			t.Errorf("%v: %q, %v; want an error with %s", tc.args, out, err, tc.want)
		}
	}
}

// A --data-dir without a registry is refused, not given a new one.
func TestRun_AdminCommandsNeedAnExistingRegistry(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"tenant", "create", "acme", "--data-dir", dir},
		{"key", "create", "--tenant", "default", "--name", "x", "--data-dir", dir},
	} {
		_, _, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), "--data-dir") {
			t.Errorf("%v: %v, want an error about --data-dir", args, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "registry.db")); !os.IsNotExist(err) {
		t.Errorf("a registry was created: %v", err)
	}
}

func TestRun_AdminHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		envs []string
	}{
		{[]string{"tenant", "create", "--help"}, []string{"SWITCHBOARD_DATA_DIR", "SWITCHBOARD_LOG_LEVEL"}},
		{[]string{"key", "create", "--help"}, []string{"SWITCHBOARD_DATA_DIR", "SWITCHBOARD_TENANT", "SWITCHBOARD_NAME", "SWITCHBOARD_ADMIN"}},
		{[]string{"serve", "--help"}, []string{"SWITCHBOARD_API_RATE_LIMIT"}},
	} {
		out, errOut, err := runCLI(t, tc.args...)
		if exitCode(err) != 0 || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q; want the help on stdout", tc.args, exitCode(err), errOut)
		}
		for _, env := range tc.envs {
			if !strings.Contains(out, env) {
				t.Errorf("%v does not name %s:\n%s", tc.args, env, out)
			}
		}
	}
	// A missing NAME shows the help and fails.
	_, errOut, err := runCLI(t, "tenant", "create", "--data-dir", t.TempDir())
	if err == nil || exitCode(err) != 2 || !strings.Contains(errOut, "USAGE") {
		t.Errorf("tenant create without NAME: exit %d, %v\n%s", exitCode(err), err, errOut)
	}
}

// serve limits each key's requests per --api-rate-limit.
func TestServe_APIRateLimit(t *testing.T) {
	cfg := testServeConfig(t.TempDir())
	cfg.APIRateLimit = 0.5 // one request, then one every 2 s
	sys := mustStartSystem(t, cfg)
	get := func() *http.Response {
		req, _ := http.NewRequest(http.MethodGet, sys.URL+"/v1/webhooks", nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	if resp := get(); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	_, _, err := runCLI(t, "serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--api-rate-limit", "-1")
	if err == nil || !strings.Contains(err.Error(), "--api-rate-limit") {
		t.Errorf("serve with a negative rate: %v", err)
	}
}
