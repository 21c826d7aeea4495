package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// At 0.5 requests/s a key's bucket holds 1 request: the second request in a
// row is refused with Retry-After, on every route, ingest included, and
// other keys are not affected.
func TestServer_RateLimitPerKey(t *testing.T) {
	a := startAPIWithIngest(t, 0.5)

	if status, b := a.Do(t, http.MethodGet, "/v1/webhooks", a.Key, ""); status != http.StatusOK {
		t.Fatalf("first request: %d %s", status, b)
	}
	for _, req := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/webhooks", ""},
		{http.MethodPost, "/v1/events", `{"type": "call.started", "data": {}}`},
		{http.MethodPut, "/v1/agents/a1", ""},
		{http.MethodGet, "/v1/event-types", ""},
		{http.MethodPost, "/v1/tenants", `{"name": "t"}`},
	} {
		status, header, b := doHeader(t, a, req.method, req.path, a.Key, req.body)
		if status != http.StatusTooManyRequests {
			t.Fatalf("%s %s over the rate: %d %s", req.method, req.path, status, b)
		}
		if e := apitest.Decode[apitest.ErrorJSON](t, b); e.Message != "Too many requests." || e.Errors != nil {
			t.Errorf("429 body %s", b)
		}
		// The bucket refills one request in 2 s.
		if secs, err := strconv.Atoi(header.Get("Retry-After")); err != nil || secs < 1 || secs > 2 {
			t.Errorf("Retry-After %q, want 1 or 2 seconds", header.Get("Retry-After"))
		}
	}

	// Another key has its own bucket.
	other := a.NewTenant(t, "other")
	if status, b := a.Do(t, http.MethodGet, "/v1/webhooks", other, ""); status != http.StatusOK {
		t.Errorf("another key: %d %s", status, b)
	}
	// Authentication comes first: a bad key is a 401, whatever the rate.
	if status, _ := a.Do(t, http.MethodGet, "/v1/webhooks", "sk_unknown", ""); status != http.StatusUnauthorized {
		t.Errorf("unknown key: %d", status)
	}

	// Refused requests cost no token: after Retry-After, the key may go on.
	_, header, _ := doHeader(t, a, http.MethodGet, "/v1/webhooks", a.Key, "")
	secs, _ := strconv.Atoi(header.Get("Retry-After"))
	time.Sleep(time.Duration(secs) * time.Second)
	if status, b := a.Do(t, http.MethodPost, "/v1/events", a.Key, `{"type": "call.started", "data": {}}`); status != http.StatusAccepted {
		t.Errorf("after Retry-After: %d %s", status, b)
	}
}

// Without a limit (the Server's default) a key is never refused.
func TestServer_NoRateLimit(t *testing.T) {
	a := apitest.Start(t, nil)
	for i := range 300 {
		if status, b := a.Do(t, http.MethodGet, "/v1/event-types", a.Key, ""); status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, status, b)
		}
	}
}

// startAPIWithIngest starts an api like apitest.Start's, with the real ingest
// handler (POST /v1/events) and a rate limit.
func startAPIWithIngest(tb testing.TB, perSecond float64) *apitest.Env {
	tb.Helper()
	ctx := context.Background()
	js := testenv.StartJetStream(tb)
	if err := streams.Setup(ctx, js.JS, streams.DefaultConfig()); err != nil {
		tb.Fatal(err)
	}
	kv, err := streams.OpenWebhooksKV(ctx, js.JS)
	if err != nil {
		tb.Fatal(err)
	}
	db := dbtest.Open(tb)
	tenant, key, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		tb.Fatal(err)
	}
	srv := api.NewServer(db, kv)
	srv.APIRateLimit = perSecond
	srv.Ingest = &producer.Handler{Client: producer.New(js.JS)}
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(ts.Close)
	return &apitest.Env{DB: db, JS: js, KV: kv, URL: ts.URL, Key: key, Tenant: tenant}
}

// doHeader is do, returning the response's header too.
func doHeader(tb testing.TB, a *apitest.Env, method, path, key, body string) (int, http.Header, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, a.URL+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}
