package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// testSend asks the API to send a test event to webhook id.
func testSend(t *testing.T, api apiClient, id string) (success bool, errText string) {
	t.Helper()
	var out struct {
		Success bool   `json:"success"`
		Error   string `json:"error"`
	}
	if err := api.do(context.Background(), http.MethodPost, "/v1/webhooks/"+id+"/test", nil, &out); err != nil {
		t.Fatalf("test send: %v", err)
	}
	return out.Success, out.Error
}

// TestServe_SSRFGuardFollowsTheFlags: by default, serve refuses to send to
// a loopback receiver; --allow-cidr opens its range to deliveries and test
// sends alike.
func TestServe_SSRFGuardFollowsTheFlags(t *testing.T) {
	recv := testenv.StartReceiver(t, nil)
	ctx := context.Background()
	// start runs serve with the guard's flags and a webhook to recv.
	start := func(t *testing.T, url string, allowCIDR ...string) (*system, apiClient, string) {
		cfg := testServeConfig(t.TempDir())
		cfg.AllowPrivateTargets = false
		cfg.AllowCIDR = allowCIDR
		sys := mustStartSystem(t, cfg)
		api := apiClient{url: sys.URL, key: testKey}
		id, err := api.createWebhook(ctx, map[string]any{"name": "local", "url": url, "events": []string{"*"}})
		if err != nil {
			t.Fatal(err)
		}
		return sys, api, id
	}

	t.Run("Default", func(t *testing.T) {
		// The literal address is refused when the webhook is created; a
		// hostname, when it is dialled.
		_, api, id := start(t, strings.Replace(recv.URL, "127.0.0.1", "localhost", 1))
		if _, err := api.createWebhook(ctx, map[string]any{"name": "literal", "url": recv.URL, "events": []string{"*"}}); err == nil ||
			!strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("create with %s: %v, want 422 on url", recv.URL, err)
		}
		ok, why := testSend(t, api, id)
		if ok || !strings.Contains(why, "is a loopback address; see --allow-private-targets") { // 127.0.0.1 or ::1
			t.Errorf("test send success %v, error %q; want a refusal", ok, why)
		}
		if recv.Count() != 0 {
			t.Fatalf("the receiver got %d requests past the default guard", recv.Count())
		}
	})
	t.Run("AllowCIDR", func(t *testing.T) {
		sys, api, id := start(t, recv.URL, "192.0.2.0/24,127.0.0.0/8")
		if ok, why := testSend(t, api, id); !ok {
			t.Errorf("test send failed: %s", why)
		}
		if err := sys.waitForWebhooks(ctx, []string{id}); err != nil {
			t.Fatal(err)
		}
		if err := run(ctx, []string{"publish", "--api-url", sys.URL, "--api-key", testKey, "--type", "call.started", "--data", `{"a":1}`}, io.Discard, io.Discard); err != nil {
			t.Fatalf("publish: %v", err)
		}
		testenv.WaitFor(t, 10*time.Second, "test send and delivery", func() bool { return recv.Count() == 2 })
	})
}

func TestRun_AllowCIDRFromEnvironment(t *testing.T) {
	var helpOut bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--help"}, &helpOut, io.Discard); err == nil {
		t.Fatal("--help: want flag.ErrHelp")
	}
	if !strings.Contains(helpOut.String(), "SWITCHBOARD_ALLOW_CIDR") {
		t.Errorf("serve --help does not name SWITCHBOARD_ALLOW_CIDR")
	}

	t.Setenv("SWITCHBOARD_ALLOW_CIDR", "10.0.0.0/8, nope")
	err := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--allow-cidr") || !strings.Contains(err.Error(), `"nope"`) ||
		strings.Contains(err.Error(), `"10.0.0.0/8"`) {
		t.Errorf("serve with SWITCHBOARD_ALLOW_CIDR=%q: err = %v; want only the bad entry named", "10.0.0.0/8, nope", err)
	}
}
