package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// operatorRoutes are the routes an admin key uses across tenants by
// design; the matrix leaves them out (their own tests cover who may call
// them).
var operatorRoutes = []string{
	"POST /v1/tenants", "GET /v1/tenants", "GET /v1/tenants/{tenant_id}", "DELETE /v1/tenants/{tenant_id}",
	"GET /v1/tenants/{tenant_id}/keys", "POST /v1/tenants/{tenant_id}/keys", "DELETE /v1/tenants/{tenant_id}/keys/{key_id}",
	"GET /v1/audit",
}

// isolationCase builds, for one route, the request a tenant sends naming an
// object: id is either another tenant's object or one that exists nowhere.
type isolationCase func(ids isolationIDs) (path, body string)

// isolationIDs are the ids a case names: another tenant's objects, or the
// same kinds of ids that exist nowhere.
type isolationIDs struct {
	Agent, Webhook, Event, DeadLetter, EventType, PortalLink, Key, Tenant string
}

// isolationCases has a case for every route the Server serves (but
// operatorRoutes): TestTenantIsolation_Matrix fails for a route without
// one, so that a new route cannot escape the matrix.
var isolationCases = map[string]isolationCase{
	"GET /v1/agents":               func(isolationIDs) (string, string) { return "/v1/agents", "" },
	"GET /v1/agents/{agent_id}":    func(i isolationIDs) (string, string) { return "/v1/agents/" + i.Agent, "" },
	"DELETE /v1/agents/{agent_id}": func(i isolationIDs) (string, string) { return "/v1/agents/" + i.Agent, "" },
	"PUT /v1/agents/{agent_id}":    func(i isolationIDs) (string, string) { return "/v1/agents/" + i.Agent, `{"name": "B's"}` },
	"POST /v1/agents/{agent_id}/webhooks": func(i isolationIDs) (string, string) {
		return "/v1/agents/" + i.Agent + "/webhooks", `{"name": "b ` + i.Agent + `", "url": "https://b.example.com/h", "events": ["*"]}`
	},
	"GET /v1/webhooks": func(i isolationIDs) (string, string) {
		return "/v1/webhooks?agent_id=" + i.Agent + "&event_type=" + i.EventType, ""
	},
	"POST /v1/webhooks": func(i isolationIDs) (string, string) {
		return "/v1/webhooks", `{"name": "b ` + i.Agent + `", "url": "https://b.example.com/h", "events": ["` + i.EventType + `"]}`
	},
	"GET /v1/webhooks/defaults":      func(isolationIDs) (string, string) { return "/v1/webhooks/defaults", "" },
	"GET /v1/webhooks/{id}":          func(i isolationIDs) (string, string) { return "/v1/webhooks/" + i.Webhook, "" },
	"PATCH /v1/webhooks/{id}":        func(i isolationIDs) (string, string) { return "/v1/webhooks/" + i.Webhook, `{"name": "taken over"}` },
	"DELETE /v1/webhooks/{id}":       func(i isolationIDs) (string, string) { return "/v1/webhooks/" + i.Webhook, "" },
	"GET /v1/webhooks/{id}/secret":   func(i isolationIDs) (string, string) { return "/v1/webhooks/" + i.Webhook + "/secret", "" },
	"GET /v1/webhooks/{id}/attempts": func(i isolationIDs) (string, string) { return "/v1/webhooks/" + i.Webhook + "/attempts", "" },
	"POST /v1/webhooks/{id}/test":    func(i isolationIDs) (string, string) { return "/v1/webhooks/" + i.Webhook + "/test", "" },
	"POST /v1/webhooks/{id}/secret/rotate": func(i isolationIDs) (string, string) {
		return "/v1/webhooks/" + i.Webhook + "/secret/rotate", `{}`
	},
	"POST /v1/webhooks/{id}/recover": func(i isolationIDs) (string, string) {
		return "/v1/webhooks/" + i.Webhook + "/recover?since=2026-01-01T00:00:00Z", ""
	},
	"GET /v1/event-types":  func(isolationIDs) (string, string) { return "/v1/event-types", "" },
	"POST /v1/event-types": func(i isolationIDs) (string, string) { return "/v1/event-types", `{"name": "` + i.EventType + `"}` },
	"GET /v1/events/{id}":  func(i isolationIDs) (string, string) { return "/v1/events/" + i.Event, "" },
	"POST /v1/events": func(i isolationIDs) (string, string) {
		return "/v1/events", `{"id": "` + i.Event + `", "type": "call.started", "agent_id": "` + i.Agent + `", "data": {}}`
	},
	// A key that is no admin's sees its own tenant's backlog: naming
	// another tenant is refused alike whether it exists or not.
	"GET /v1/backlog": func(i isolationIDs) (string, string) { return "/v1/backlog?tenant_id=" + i.Tenant, "" },
	"GET /v1/dead-letters": func(i isolationIDs) (string, string) {
		return "/v1/dead-letters?webhook_id=" + i.Webhook, ""
	},
	"POST /v1/dead-letters/replay": func(i isolationIDs) (string, string) {
		return "/v1/dead-letters/replay", `{"ids": ["` + i.DeadLetter + `"]}`
	},
	"POST /v1/portal-links": func(i isolationIDs) (string, string) {
		return "/v1/portal-links", `{"agent_id": "` + i.Agent + `"}`
	},
	"GET /v1/portal-links/current": func(isolationIDs) (string, string) { return "/v1/portal-links/current", "" },
	"DELETE /v1/portal-links/{id}": func(i isolationIDs) (string, string) { return "/v1/portal-links/" + i.PortalLink, "" },
	"GET /v1/keys":                 func(isolationIDs) (string, string) { return "/v1/keys", "" },
	"POST /v1/keys":                func(i isolationIDs) (string, string) { return "/v1/keys", `{"name": "b ` + i.Agent + `"}` },
	"DELETE /v1/keys/{key_id}":     func(i isolationIDs) (string, string) { return "/v1/keys/" + i.Key, "" },
}

// TestTenantIsolation_Matrix sends, with tenant B's key, every route's
// request naming tenant A's objects and the same request naming objects
// that exist nowhere: the answers have the same status and the same body
// (ids aside; for successes, the same shape), none shows A's data, and A's
// objects are unchanged afterwards.
func TestTenantIsolation_Matrix(t *testing.T) {
	ctx := context.Background()
	js := testenv.StartJetStream(t)
	db, err := store.Open(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tenantA, keyA, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	tenantB, err := db.EnsureTenant(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	keyB, _, err := db.CreateKey(ctx, tenantB.ID, "b")
	if err != nil {
		t.Fatal(err)
	}
	kv, err := streams.OpenWebhooksKV(ctx, js.JS)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(db, kv)
	srv.JS = js.JS
	srv.Ingest = &producer.Handler{Client: producer.New(js.JS)}
	srv.Guard = netguard.New(true)
	h, ok := srv.Handler().(*handler)
	if !ok {
		t.Fatal("Server.Handler is no longer a *handler: find its routes another way")
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)

	do := func(t *testing.T, method, path, key, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	must := func(method, path, body string, want int) map[string]any {
		t.Helper()
		status, b := do(t, method, path, keyA, body)
		if status != want {
			t.Fatalf("A: %s %s: %d %s", method, path, status, b)
		}
		var v map[string]any
		_ = json.Unmarshal([]byte(b), &v)
		return v
	}

	// Tenant A's objects, named to be recognised anywhere.
	must(http.MethodPut, "/v1/agents/agent-secret-a", `{"name": "SecretAgentName"}`, http.StatusCreated)
	must(http.MethodPost, "/v1/event-types", `{"name": "secret.type"}`, http.StatusCreated)
	wh := must(http.MethodPost, "/v1/agents/agent-secret-a/webhooks",
		`{"name": "SecretHookName", "url": "https://secret-a.example.com/h", "events": ["secret.type"], "headers": {"X-Secret": "SecretHeaderValue"}}`, http.StatusCreated)
	whID := wh["id"].(string)
	evt := must(http.MethodPost, "/v1/events", `{"id": "msg_secret_a", "type": "secret.type", "agent_id": "agent-secret-a", "data": {"s": "SecretData"}}`, http.StatusAccepted)
	_ = evt
	if _, err := db.RecordAttempts(ctx, []switchboard.Attempt{{
		ID: "att_secret_a", TenantID: tenantA.ID, WebhookID: whID, EventID: "msg_secret_a", EventType: "secret.type", Number: 1,
		At: time.Now().UTC(), Outcome: switchboard.AttemptRetrying, StatusCode: 500, Error: "SecretError",
	}}, 0); err != nil {
		t.Fatal(err)
	}
	// A delivery owed to A's webhook, in the backlog.
	if err := db.RecordMatched(ctx, []store.Matched{{TenantID: tenantA.ID, EventID: "msg_secret_a", EventSeq: 1,
		EventType: "secret.type", WebhookIDs: []string{whID}, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(streams.DeadSubject(tenantA.ID, whID))
	m.Header.Set(streams.HeaderEventID, "msg_secret_a")
	m.Header.Set(streams.HeaderTenant, tenantA.ID)
	m.Header.Set(streams.HeaderReason, "retries_exhausted")
	m.Data = []byte(`{"id":"msg_secret_a","type":"secret.type","data":{"s":"SecretData"}}`)
	ack, err := js.JS.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	link := must(http.MethodPost, "/v1/portal-links", `{"agent_id": "agent-secret-a"}`, http.StatusCreated)
	keyOfA, err := db.Authenticate(ctx, keyA)
	if err != nil {
		t.Fatal(err)
	}
	theirs := isolationIDs{Agent: "agent-secret-a", Webhook: whID, Event: "msg_secret_a", DeadLetter: control.DeadLetterID(ack.Sequence),
		EventType: "secret.type", PortalLink: link["id"].(string), Key: keyOfA.ID, Tenant: tenantA.ID}
	nowhere := isolationIDs{Agent: "agent-nowhere-b", Webhook: "wh_0000000000000000000000000000000a", Event: "msg_nowhere_b",
		DeadLetter: control.DeadLetterID(ack.Sequence + 1000), EventType: "nowhere.type", PortalLink: "pl_0000000000000000000000000000000a",
		Key: "key_0000000000000000000000000000000a", Tenant: "ten_0000000000000000000000000000000a"}
	secrets := []string{"SecretAgentName", "SecretHookName", "secret-a.example.com", "SecretHeaderValue", "SecretData", "SecretError", tenantA.ID}

	// Every route; last those that create B's own agent or event type of
	// the names the cases use, which the other routes would then find.
	var routes []string
	for pattern := range h.routes {
		routes = append(routes, pattern)
	}
	last := func(p string) bool { return p == "PUT /v1/agents/{agent_id}" || p == "POST /v1/event-types" }
	sort.Slice(routes, func(i, j int) bool {
		if li, lj := last(routes[i]), last(routes[j]); li != lj {
			return lj
		}
		return routes[i] < routes[j]
	})
	for _, pattern := range routes {
		if slices.Contains(operatorRoutes, pattern) {
			continue
		}
		build, ok := isolationCases[pattern]
		if !ok {
			t.Errorf("route %s has no case in isolationCases: add one", pattern)
			continue
		}
		t.Run(pattern, func(t *testing.T) {
			method, _, _ := strings.Cut(pattern, " ")
			pathN, bodyN := build(nowhere)
			pathT, bodyT := build(theirs)
			statusN, bN := do(t, method, pathN, keyB, bodyN)
			statusT, bT := do(t, method, pathT, keyB, bodyT)
			for _, s := range secrets {
				if strings.Contains(bT, s) {
					t.Errorf("B sees A's %q: %s", s, bT)
				}
			}
			if statusT != statusN {
				t.Fatalf("A's ids: %d %s\nno such ids: %d %s", statusT, bT, statusN, bN)
			}
			gotT, gotN := normalise(bT, theirs), normalise(bN, nowhere)
			if statusT < 300 {
				gotT, gotN = shapeOf(t, gotT), shapeOf(t, gotN)
			}
			if gotT != gotN {
				t.Errorf("%d: A's ids answer\n  %s\nno such ids answer\n  %s", statusT, gotT, gotN)
			}
		})
	}
	for _, pattern := range operatorRoutes {
		if _, ok := h.routes[pattern]; !ok {
			t.Errorf("operatorRoutes names %s, which is not served", pattern)
		}
	}

	// B's own backlog, unfiltered, shows none of A's.
	if status, b := do(t, http.MethodGet, "/v1/backlog", keyB, ""); status != http.StatusOK || strings.Contains(b, whID) {
		t.Errorf("B's backlog: %d %s", status, b)
	} else {
		for _, s := range secrets {
			if strings.Contains(b, s) {
				t.Errorf("B's backlog shows A's %q: %s", s, b)
			}
		}
	}
	if got := must(http.MethodGet, "/v1/backlog", "", http.StatusOK); got["total_pending"] != 1.0 {
		t.Errorf("A's backlog: %v, want its one delivery owed", got)
	}

	// A's objects are as they were.
	if got := must(http.MethodGet, "/v1/webhooks/"+whID, "", http.StatusOK); got["name"] != "SecretHookName" {
		t.Errorf("A's webhook now %v", got)
	}
	if got := must(http.MethodGet, "/v1/agents/agent-secret-a", "", http.StatusOK); got["name"] != "SecretAgentName" {
		t.Errorf("A's agent now %v", got)
	}
	if got := must(http.MethodGet, "/v1/dead-letters", "", http.StatusOK); len(got["data"].([]any)) != 1 {
		t.Errorf("A's dead letters now %v", got)
	}
	if _, err := db.Authenticate(ctx, keyA); err != nil {
		t.Errorf("A's key no longer works: %v", err)
	}
	if _, token, _ := strings.Cut(link["url"].(string), "#token="); token == "" {
		t.Errorf("A's portal link has no token: %v", link)
	} else if _, err := db.AuthenticatePortalLink(ctx, token); err != nil {
		t.Errorf("A's portal link no longer works: %v", err)
	}
}

// normalise replaces the ids a case named by placeholders.
func normalise(body string, ids isolationIDs) string {
	return strings.NewReplacer(ids.Agent, "{agent}", ids.Webhook, "{webhook}", ids.Event, "{event}",
		ids.DeadLetter, "{dead_letter}", ids.EventType, "{event_type}", ids.PortalLink, "{portal_link}", ids.Key, "{key}",
		ids.Tenant, "{tenant}").Replace(body)
}

// shapeOf is the shape of a JSON body: its keys and the kinds of their
// values, recursively, without the values.
func shapeOf(t *testing.T, body string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return "not JSON: " + body
	}
	var shape func(v any) string
	shape = func(v any) string {
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			parts := make([]string, len(keys))
			for i, k := range keys {
				parts[i] = k + ":" + shape(v[k])
			}
			return "{" + strings.Join(parts, ",") + "}"
		case []any:
			kinds := map[string]bool{}
			for _, e := range v {
				kinds[shape(e)] = true
			}
			return fmt.Sprintf("[%d:%s]", len(v), strings.Join(slices.Sorted(func(yield func(string) bool) {
				for k := range kinds {
					if !yield(k) {
						return
					}
				}
			}), "|"))
		case string:
			return "string"
		case float64:
			return "number"
		case bool:
			return fmt.Sprintf("%v", v) // duplicate: true and false say different things
		case nil:
			return "null"
		}
		return "?"
	}
	return shape(v)
}
