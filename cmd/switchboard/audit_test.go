package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// `switchboard audit` against a running system prints a line per tenant
// and the total, each delivery owed delivered and none unaccounted, and
// succeeds; with a key that is no admin's it fails.
func TestAudit_PrintsEveryTenantsDeliveries(t *testing.T) {
	const n = 3
	recv := testenv.StartReceiver(t, nil)
	sys := mustStartSystem(t, testServeConfig(t.TempDir()))
	api := apiClient{url: sys.URL, key: testKey}
	ctx := context.Background()
	id, err := api.createWebhook(ctx, map[string]any{"name": "crm", "url": recv.URL, "events": []string{"call.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"id": fmt.Sprintf("evt-%d", i), "type": "call.started", "data": map[string]any{}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "every event delivered", func() bool { return recv.Count() == n })

	// The tenant's line: 3 events, 3 expected, 3 delivered, nothing else.
	want := fmt.Sprintf("%s  %d  %d  %d  0  0  0  0  0", sys.Tenant, n, n, n)
	var out bytes.Buffer
	testenv.WaitFor(t, 10*time.Second, "the attempts ingested", func() bool {
		out.Reset()
		err = run(ctx, []string{"audit", "--api-url", sys.URL, "--api-key", testKey, "--since", "10m"}, &out, &out)
		return err == nil && strings.Contains(squeeze(out.String()), want)
	})
	if err != nil || !strings.Contains(squeeze(out.String()), want) || !strings.Contains(out.String(), "total") {
		t.Errorf("switchboard audit: %v\n%s\nwant a line %q", err, out.String(), want)
	}

	key, err := createKeyFor(ctx, t, sys, "not-admin")
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"audit", "--api-url", sys.URL, "--api-key", key}, &out, &out); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("with a tenant's key: %v, want a 403", err)
	}
}

// squeeze turns the table's runs of spaces into two.
func squeeze(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' }), "  ")
}

// createKeyFor creates a key that is no admin's in the default tenant.
func createKeyFor(ctx context.Context, t *testing.T, sys *system, name string) (string, error) {
	t.Helper()
	var out struct {
		Key string `json:"key"`
	}
	err := apiClient{url: sys.URL, key: testKey}.do(ctx, http.MethodPost, "/v1/tenants/"+sys.Tenant+"/keys", map[string]any{"name": name, "admin": false}, &out)
	return out.Key, err
}
