package control_test

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

func TestWebhookStatusCollector_CountsEveryStatus(t *testing.T) {
	a, dbPath := startAPIOnFile(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(control.NewWebhookStatusCollector(a.DB, slog.New(slog.DiscardHandler)))

	if got := gatherWebhooks(t, reg); got["active"] != 0 || got["inactive"] != 0 || got["too_many_errors"] != 0 || len(got) != 3 {
		t.Errorf("empty registry: switchboard_webhooks = %v, want every status at 0", got)
	}
	a.Create(t, a.Key, "/v1/webhooks", `{"name": "a", "url": "https://example.com/a", "events": ["*"]}`)
	a.Create(t, a.Key, "/v1/webhooks", `{"name": "b", "url": "https://example.com/b", "events": ["*"]}`)
	a.Create(t, a.Key, "/v1/webhooks", `{"name": "c", "url": "https://example.com/c", "events": ["*"], "status": "inactive"}`)
	other := a.NewTenant(t, "other")
	disabled := a.Create(t, other, "/v1/webhooks", `{"name": "d", "url": "https://example.com/d", "events": ["*"]}`)
	// The engine disables a webhook by writing its status; do what it does,
	// through a second connection to the same file, as another process would.
	raw, err := sql.Open("sqlite3", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE webhooks SET status = 'too_many_errors' WHERE id = ?`, disabled.ID); err != nil {
		t.Fatal(err)
	}

	got := gatherWebhooks(t, reg)
	want := map[string]float64{"active": 2, "inactive": 1, "too_many_errors": 1}
	if len(got) != len(want) {
		t.Errorf("switchboard_webhooks = %v, want %v", got, want)
	}
	for status, n := range want {
		if got[status] != n {
			t.Errorf("switchboard_webhooks{status=%q} = %v, want %v (all: %v)", status, got[status], n, got)
		}
	}
}

// startAPIOnFile is apitest.Start that also says where the SQLite file is.
func startAPIOnFile(t *testing.T) (*apitest.Env, string) {
	t.Helper()
	ctx := context.Background()
	js := testenv.StartJetStream(t)
	kv, err := streams.OpenWebhooksKV(ctx, js.JS)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "registry.db")
	db := dbtest.OpenAt(t, path)
	tenant, key, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	ts := httptest.NewServer(api.NewServer(db, kv).Handler())
	t.Cleanup(ts.Close)
	return &apitest.Env{DB: db, JS: js, KV: kv, URL: ts.URL, Key: key, Tenant: tenant}, path
}

// gatherWebhooks returns switchboard_webhooks by status, as reg exports it.
func gatherWebhooks(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "switchboard_webhooks" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" {
					got[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return got
}
