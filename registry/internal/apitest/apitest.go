// Package apitest runs a registry API for the tests of registry/api and
// registry/control: a Server on a real SQLite file and a real embedded
// JetStream, with helpers to call it and to read the KV bucket it mirrors
// into.
package apitest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Env is a running registry API on a real SQLite file and a real embedded
// JetStream, with the default tenant bootstrapped.
type Env struct {
	DB     *store.DB
	DBPath string // the SQLite file
	JS     *testenv.JetStream
	KV     jetstream.KeyValue
	URL    string
	Key    string // the default tenant's key
	Tenant store.Tenant
}

// Start starts an api; configure, when given, adjusts the Server before
// it serves.
func Start(tb testing.TB, configure func(*api.Server)) *Env {
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
	return &Env{DB: db, DBPath: dbPath, JS: js, KV: kv, URL: ts.URL, Key: key, Tenant: tenant}
}

// NewTenant creates another tenant with a key and returns the key.
func (a *Env) NewTenant(tb testing.TB, name string) string {
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

// Do sends a request with key as Bearer token ("" for none) and returns the
// status and body.
func (a *Env) Do(tb testing.TB, method, path, key, body string) (int, []byte) {
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

// Create creates a webhook at path (/v1/webhooks or an agent's) and fails
// the test unless the answer is 201.
func (a *Env) Create(tb testing.TB, key, path, body string) WebhookJSON {
	tb.Helper()
	status, b := a.Do(tb, http.MethodPost, path, key, body)
	if status != http.StatusCreated {
		tb.Fatalf("POST %s %s: %d %s", path, body, status, b)
	}
	return Decode[WebhookJSON](tb, b)
}

// WebhookJSON is a webhook as a client reads it.
type WebhookJSON struct {
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
	Auth        AuthJSON          `json:"auth"`
	Headers     map[string]string `json:"headers"`
	Properties  json.RawMessage   `json:"properties"`
	IsAlertHook bool              `json:"is_alert_hook"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	CreatedBy   string            `json:"created_by"`
	UpdatedBy   string            `json:"updated_by"`
}

// AuthJSON is a webhook's auth as a client reads it: no password, no token.
type AuthJSON struct {
	Type     string `json:"type"`
	Username string `json:"username"`
	Name     string `json:"name"`
}

// SecretJSON is the answer of the secret routes.
type SecretJSON struct {
	Secret          string `json:"secret"`
	RetiringSecrets []struct {
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"retiring_secrets"`
}

// ListJSON is a page of webhooks as a client reads it.
type ListJSON struct {
	Data       []WebhookJSON `json:"data"`
	HasMore    bool          `json:"has_more"`
	NextCursor string        `json:"next_cursor"`
}

// ErrorJSON is an error answer as a client reads it.
type ErrorJSON struct {
	Message string              `json:"message"`
	Errors  map[string][]string `json:"errors"`
}

// Decode decodes b as a T, failing the test on an unknown field.
func Decode[T any](tb testing.TB, b []byte) T {
	tb.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("decode %T from %s: %v", v, b, err)
	}
	return v
}

// JSONBody marshals v.
func JSONBody(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// CreateAllowingLoopback creates a webhook through a Server on a's database
// whose guard lets any address through, as --allow-private-targets does,
// for the tests whose receivers run on 127.0.0.1 behind a guarded a.
func (a *Env) CreateAllowingLoopback(tb testing.TB, body string) WebhookJSON {
	tb.Helper()
	srv := api.NewServer(a.DB, a.KV)
	srv.Guard = netguard.New(true)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	open := *a
	open.URL = ts.URL
	return open.Create(tb, a.Key, "/v1/webhooks", body)
}

// RunUntilCleanup runs fn until the test ends (or stop is called) and
// fails the test when fn returns an error.
func RunUntilCleanup(t *testing.T, fn func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("did not stop within 30 s")
		}
	}
	t.Cleanup(stop)
	return stop
}

// EncryptionKey is a fixed key for tests of sealed secrets.
func EncryptionKey(t *testing.T) *sealed.Key {
	t.Helper()
	k, err := sealed.ParseKey(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// MustGet GETs path with key and fails the test unless the answer is 200.
func MustGet(tb testing.TB, a *Env, key, path string) []byte {
	tb.Helper()
	status, b := a.Do(tb, http.MethodGet, path, key, "")
	if status != http.StatusOK {
		tb.Fatalf("GET %s: %d %s", path, status, b)
	}
	return b
}

// KVWebhook returns the bucket's entry of id, or nil when there is none.
func KVWebhook(tb testing.TB, kv jetstream.KeyValue, id string) *switchboard.Webhook {
	tb.Helper()
	e, err := kv.Get(context.Background(), id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatalf("kv get %s: %v", id, err)
	}
	var wh switchboard.Webhook
	if err := json.Unmarshal(e.Value(), &wh); err != nil {
		tb.Fatalf("kv value of %s: %v", id, err)
	}
	return &wh
}

// KVKeys returns the bucket's webhook keys, sorted.
func KVKeys(tb testing.TB, kv jetstream.KeyValue) []string {
	tb.Helper()
	keys, err := kv.Keys(context.Background())
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	return webhookKeys(keys)
}

// webhookKeys is keys without the bucket's reserved keys (the mirror's
// owner, the key check).
func webhookKeys(keys []string) []string {
	return slices.DeleteFunc(keys, streams.IsReservedKey)
}

// ListIDs returns the ids of every webhook the key's tenant has, sorted.
func ListIDs(tb testing.TB, a *Env, key string) []string {
	tb.Helper()
	page := Decode[ListJSON](tb, MustGet(tb, a, key, "/v1/webhooks?limit=250"))
	var ids []string
	for _, wh := range page.Data {
		ids = append(ids, wh.ID)
	}
	return ids
}

// KVRevisions returns the revision of each key of the bucket.
func KVRevisions(tb testing.TB, kv jetstream.KeyValue) map[string]uint64 {
	tb.Helper()
	revs := map[string]uint64{}
	for _, k := range KVKeys(tb, kv) {
		e, err := kv.Get(context.Background(), k)
		if err != nil {
			tb.Fatal(err)
		}
		revs[k] = e.Revision()
	}
	return revs
}

// PutAgent creates agent id in key's tenant (or leaves it as it is), so
// that webhooks can be scoped to it.
func (a *Env) PutAgent(tb testing.TB, key, id string) {
	tb.Helper()
	status, b := a.Do(tb, http.MethodPut, "/v1/agents/"+url.PathEscape(id), key, "")
	if status != http.StatusCreated && status != http.StatusOK {
		tb.Fatalf("PUT agent %q: %d %s", id, status, b)
	}
}
