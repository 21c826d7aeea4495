package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// A PATCH that moves a webhook to another host must give its credential
// and its custom headers again (422 naming auth and headers otherwise):
// they are not sent to the new host on the strength of a url alone. On the
// same host, or when they are given, the url changes.
func TestUpdateWebhook_HostMoveNeedsCredentialsAgain(t *testing.T) {
	a := apitest.Start(t, nil)
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "moving", "url": "https://old.example.com/h", "events": []string{"*"},
		"auth": map[string]any{"type": "bearer", "token": "t0k-for-old"}, "headers": map[string]string{"X-Api-Key": "k-for-old"},
	}))
	path := "/v1/webhooks/" + wh.ID
	for _, tc := range []struct {
		name, body string
		want       int
		fields     []string
	}{
		{"other host, nothing again", `{"url": "https://evil.example.net/h"}`, 422, []string{"auth", "headers"}},
		{"other host, auth again", `{"url": "https://evil.example.net/h", "auth": {"type": "bearer", "token": "new"}}`, 422, []string{"headers"}},
		{"same host, other path and port", `{"url": "https://OLD.example.com:8443/other"}`, 200, nil},
		{"other host, both again", `{"url": "https://new.example.org/h", "auth": null, "headers": {"X-Api-Key": "k-for-new"}}`, 200, nil},
	} {
		status, b := a.Do(t, http.MethodPatch, path, a.Key, tc.body)
		if status != tc.want {
			t.Fatalf("%s: %d %s, want %d", tc.name, status, b, tc.want)
		}
		if tc.fields != nil {
			got := apitest.Decode[apitest.ErrorJSON](t, b)
			for _, f := range tc.fields {
				if len(got.Errors[f]) == 0 {
					t.Errorf("%s: %s names no %s", tc.name, b, f)
				}
			}
			if len(got.Errors) != len(tc.fields) {
				t.Errorf("%s: fields %v, want %v", tc.name, got.Errors, tc.fields)
			}
		}
	}
	got := apitest.Decode[apitest.WebhookJSON](t, apitest.MustGet(t, a, a.Key, path))
	if got.URL != "https://new.example.org/h" || got.Auth.Type != "none" || got.Headers["X-Api-Key"] != "k-for-new" {
		t.Errorf("after the moves: %+v", got)
	}
	// A webhook without credentials moves freely.
	plain := a.Create(t, a.Key, "/v1/webhooks", `{"name": "plain", "url": "https://a.example.com/h", "events": ["*"]}`)
	if status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+plain.ID, a.Key, `{"url": "https://b.example.com/h"}`); status != 200 {
		t.Errorf("moving a webhook without credentials: %d %s", status, b)
	}
}

// Custom header values are sealed at rest like secrets: neither the
// SQLite files, nor the KV entry, nor JetStream's files hold them, and the
// workers, given the key, send them. Lists show them masked; a PATCH that
// sends the masked values back keeps the stored ones.
func TestEncryption_CustomHeaders(t *testing.T) {
	key := apitest.EncryptionKey(t)
	a := apitest.Start(t, func(s *api.Server) { s.DB.EncryptionKey = key; allowLoopback(s) })
	ctx := context.Background()
	recv := testenv.StartReceiver(t, nil)
	const long, short = "hdr-plaintext-api-key-5d8e1c0b", "sh0rt-9a7"
	wh := a.Create(t, a.Key, "/v1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "headers", "url": recv.URL + "/hook", "events": []string{"call.started"},
		"headers": map[string]string{"X-Api-Key": long, "X-Short": short},
	}))
	if wh.Headers["X-Api-Key"] != long {
		t.Errorf("create answers headers %v", wh.Headers)
	}

	e, err := a.KV.Get(ctx, wh.ID)
	if err != nil {
		t.Fatal(err)
	}
	var stored switchboard.Webhook
	if err := json.Unmarshal(e.Value(), &stored); err != nil {
		t.Fatal(err)
	}
	if !sealed.IsSealed(stored.Headers["X-Api-Key"]) || !sealed.IsSealed(stored.Headers["X-Short"]) {
		t.Errorf("KV headers not sealed: %v", stored.Headers)
	}
	if found := filesContaining(t, filepath.Dir(a.DBPath), long, short); len(found) > 0 {
		t.Errorf("SQLite files hold header values: %v", found)
	}
	if found := filesContaining(t, a.JS.Dir, long, short); len(found) > 0 {
		t.Errorf("JetStream files hold header values: %v", found)
	}

	list := apitest.Decode[apitest.ListJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks"))
	if len(list.Data) != 1 || list.Data[0].Headers["X-Api-Key"] != "****1c0b" || list.Data[0].Headers["X-Short"] != "****" {
		t.Errorf("list shows headers %v, want them masked", list.Data[0].Headers)
	}
	if strings.Contains(string(apitest.MustGet(t, a, a.Key, "/v1/webhooks")), "hdr-plaintext") {
		t.Error("the list shows a header value")
	}
	// Read from the list, sent back: the stored values stay.
	body := apitest.JSONBody(t, map[string]any{"name": "renamed", "headers": list.Data[0].Headers})
	if status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+wh.ID, a.Key, body); status != http.StatusOK {
		t.Fatalf("patch: %d %s", status, b)
	}
	if got := apitest.Decode[apitest.WebhookJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+wh.ID)); got.Headers["X-Api-Key"] != long || got.Headers["X-Short"] != short {
		t.Errorf("after sending the masked values back: %v", got.Headers)
	}

	logger := slog.New(slog.DiscardHandler)
	index := &consumer.Index{KV: a.KV, Logger: logger, EncryptionKey: key}
	apitest.RunUntilCleanup(t, index.Run)
	testenv.WaitFor(t, 10*time.Second, "the index holds the webhook", func() bool { return index.Has(wh.ID) })
	metrics := consumer.NewMetrics(nil)
	apitest.RunUntilCleanup(t, (&consumer.Matcher{JS: a.JS.JS, Index: index, Logger: logger, Metrics: metrics}).Run)
	apitest.RunUntilCleanup(t, (&consumer.Deliverer{JS: a.JS.JS, Index: index, Logger: logger, Metrics: metrics,
		Retry: consumer.DefaultRetryPolicy(), Workers: 2, MaxAckPending: 8, Guard: netguard.New(false, netip.MustParsePrefix("127.0.0.0/8"))}).Run)
	evt := &switchboard.Event{ID: "evt_headers", TenantID: a.Tenant.ID, Type: "call.started", Data: json.RawMessage(`{}`)}
	if _, err := producer.New(a.JS.JS).Publish(ctx, evt); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "delivery", func() bool { return recv.Count() == 1 })
	r := recv.Requests()[0]
	if r.Header.Get("X-Api-Key") != long || r.Header.Get("X-Short") != short {
		t.Errorf("delivered headers %v", r.Header)
	}

	// A client may not store a value that looks sealed.
	status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+wh.ID, a.Key, `{"headers": {"X-A": "sealed:v1:abc"}}`)
	if got := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusUnprocessableEntity || len(got.Errors["headers.X-A"]) == 0 {
		t.Errorf("a sealed-looking header value: %d %s", status, b)
	}
}
