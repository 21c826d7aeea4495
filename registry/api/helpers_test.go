package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// apiEnv is a running registry API on a real SQLite file and a real embedded
// JetStream, with the default tenant bootstrapped.
type apiEnv struct {
	DB     *store.DB
	DBPath string // the SQLite file
	JS     *testenv.JetStream
	KV     jetstream.KeyValue
	URL    string
	Key    string // the default tenant's key
	Tenant store.Tenant
}

// startAPI starts an api; configure, when given, adjusts the Server before
// it serves.
func startAPI(tb testing.TB, configure func(*api.Server)) *apiEnv {
	tb.Helper()
	ctx := context.Background()
	js := testenv.StartJetStream(tb)
	kv, err := streams.OpenWebhooksKV(ctx, js.JS)
	if err != nil {
		tb.Fatal(err)
	}
	dbPath := filepath.Join(tb.TempDir(), "registry.db")
	db := dbtest.OpenAt(tb, dbPath)
	tenant, key, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		tb.Fatalf("bootstrap: %v", err)
	}
	srv := api.NewServer(db, kv)
	if configure != nil {
		configure(srv)
	}
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(ts.Close)
	return &apiEnv{DB: db, DBPath: dbPath, JS: js, KV: kv, URL: ts.URL, Key: key, Tenant: tenant}
}

// newTenant creates another tenant with a key and returns the key.
func (a *apiEnv) newTenant(tb testing.TB, name string) string {
	tb.Helper()
	ctx := context.Background()
	t, err := a.DB.EnsureTenant(ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	key, _, err := a.DB.CreateKey(ctx, t.ID, "key of "+name)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// do sends a request with key as Bearer token ("" for none) and returns the
// status and body.
func (a *apiEnv) do(tb testing.TB, method, path, key, body string) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, b
}

// create creates a webhook at path (/v1/webhooks or an agent's) and fails
// the test unless the answer is 201.
func (a *apiEnv) create(tb testing.TB, key, path, body string) webhookJSON {
	tb.Helper()
	status, b := a.do(tb, http.MethodPost, path, key, body)
	if status != http.StatusCreated {
		tb.Fatalf("POST %s %s: %d %s", path, body, status, b)
	}
	return decode[webhookJSON](tb, b)
}

// webhookJSON is a webhook as a client reads it.
type webhookJSON struct {
	ID          string            `json:"id"`
	AgentID     *string           `json:"agent_id"`
	Name        string            `json:"name"`
	URL         string            `json:"url"`
	Method      string            `json:"method"`
	Events      []string          `json:"events"`
	EventsCount int               `json:"events_count"`
	Secret      string            `json:"secret"`
	Timeout     int               `json:"timeout"`
	MaxRetries  int               `json:"max_retries"`
	Status      string            `json:"status"`
	Enabled     bool              `json:"enabled"`
	Auth        authJSON          `json:"auth"`
	Headers     map[string]string `json:"headers"`
	Properties  json.RawMessage   `json:"properties"`
	IsAlertHook bool              `json:"is_alert_hook"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	CreatedBy   string            `json:"created_by"`
	UpdatedBy   string            `json:"updated_by"`
}

// authJSON is a webhook's auth as a client reads it: no password, no token.
type authJSON struct {
	Type     string `json:"type"`
	Username string `json:"username"`
	Name     string `json:"name"`
}

// secretJSON is the answer of the secret routes.
type secretJSON struct {
	Secret          string `json:"secret"`
	RetiringSecrets []struct {
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"retiring_secrets"`
}

type listJSON struct {
	Data       []webhookJSON `json:"data"`
	HasMore    bool          `json:"has_more"`
	NextCursor string        `json:"next_cursor"`
}

type errorJSON struct {
	Message string              `json:"message"`
	Errors  map[string][]string `json:"errors"`
}

func decode[T any](tb testing.TB, b []byte) T {
	tb.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("decode %T from %s: %v", v, b, err)
	}
	return v
}

// jsonBody marshals v.
func jsonBody(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// createAllowingLoopback creates a webhook through a Server on a's database
// whose guard lets any address through, as --allow-private-targets does,
// for the tests whose receivers run on 127.0.0.1 behind a guarded a.
func (a *apiEnv) createAllowingLoopback(tb testing.TB, body string) webhookJSON {
	tb.Helper()
	srv := api.NewServer(a.DB, a.KV)
	srv.Guard = netguard.New(true)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	open := *a
	open.URL = ts.URL
	return open.create(tb, a.Key, "/v1/webhooks", body)
}
