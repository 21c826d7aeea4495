package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// A key of tenant B sees nothing of tenant A's agents, webhooks and event
// types, on any route: another tenant's object answers 404, never 403, and
// no answer carries A's data. Nothing B does changes A's objects.
func TestTenantIsolation_EveryRoute(t *testing.T) {
	a := apitest.Start(t, nil)
	// Tenant A: an agent with a webhook, a tenant-wide webhook, a custom
	// event type, all with names that must never reach B.
	status, b := a.Do(t, http.MethodPut, "/v1/agents/agent-a", a.Key, `{"name": "SecretAgentName"}`)
	if status != http.StatusCreated {
		t.Fatalf("put agent: %d %s", status, b)
	}
	if status, b := a.Do(t, http.MethodPost, "/v1/event-types", a.Key, `{"name": "secret.type", "description": "SecretDescription"}`); status != http.StatusCreated {
		t.Fatalf("event type: %d %s", status, b)
	}
	scoped := a.Create(t, a.Key, "/v1/agents/agent-a/webhooks", `{"name": "SecretHookName", "url": "https://secret.example.com/h", "events": ["secret.type"]}`)
	wide := a.Create(t, a.Key, "/v1/webhooks", `{"name": "SecretWideName", "url": "https://secret.example.com/w", "events": ["*"]}`)
	secrets := []string{"SecretAgentName", "SecretHookName", "SecretWideName", "SecretDescription", "secret.type",
		"secret.example.com", scoped.ID, wide.ID, a.Tenant.ID}

	keyB := a.NewTenant(t, "tenant-b")
	for _, tc := range []struct {
		method, path, body string
		want               int
		emptyList          bool
	}{
		{http.MethodGet, "/v1/agents/agent-a", "", 404, false},
		{http.MethodDelete, "/v1/agents/agent-a", "", 404, false},
		{http.MethodGet, "/v1/agents", "", 200, true},
		{http.MethodPost, "/v1/agents/agent-a/webhooks", `{"name": "x", "url": "https://example.com/h", "events": ["*"]}`, 404, false},
		{http.MethodGet, "/v1/webhooks/" + scoped.ID, "", 404, false},
		{http.MethodGet, "/v1/webhooks/" + wide.ID, "", 404, false},
		{http.MethodDelete, "/v1/webhooks/" + scoped.ID, "", 404, false},
		{http.MethodDelete, "/v1/webhooks/" + wide.ID, "", 404, false},
		{http.MethodGet, "/v1/webhooks", "", 200, true},
		{http.MethodGet, "/v1/webhooks?agent_id=agent-a", "", 200, true},
		{http.MethodGet, "/v1/webhooks?event_type=secret.type", "", 200, true},
		{http.MethodGet, "/v1/event-types", "", 200, false},
		// A's custom type is not in B's catalogue.
		{http.MethodPost, "/v1/webhooks", `{"name": "x", "url": "https://example.com/h", "events": ["secret.type"]}`, 422, false},
		// B may use the names A uses: they are B's own.
		{http.MethodPost, "/v1/event-types", `{"name": "secret.type"}`, 201, false},
		{http.MethodPut, "/v1/agents/agent-a", `{"name": "B's agent"}`, 201, false},
	} {
		status, b := a.Do(t, tc.method, tc.path, keyB, tc.body)
		if status != tc.want {
			t.Errorf("B: %s %s: %d, want %d: %s", tc.method, tc.path, status, tc.want, b)
		}
		for _, s := range secrets {
			// B's own input may be echoed back (in a 201, or in a 422's
			// reasons); nothing else of A's.
			if strings.Contains(string(b), s) && !strings.Contains(tc.body+tc.path, s) {
				t.Errorf("B: %s %s shows A's %q: %s", tc.method, tc.path, s, b)
			}
		}
		if tc.emptyList && !strings.Contains(string(b), `"data":[]`) {
			t.Errorf("B: %s %s lists something: %s", tc.method, tc.path, b)
		}
	}

	// A's objects are untouched, and B's agent of the same id is B's.
	if got := apitest.Decode[agentJSON](t, apitest.MustGet(t, a, a.Key, "/v1/agents/agent-a")); got.Name != "SecretAgentName" {
		t.Errorf("A's agent now %+v", got)
	}
	apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+scoped.ID)
	apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+wide.ID)
	if status, b := a.Do(t, http.MethodDelete, "/v1/agents/agent-a", keyB, ""); status != http.StatusNoContent {
		t.Errorf("B deletes its own agent-a: %d %s", status, b)
	}
	apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+scoped.ID) // A's agent's webhook survives
	types := apitest.Decode[eventTypesJSON](t, apitest.MustGet(t, a, a.Key, "/v1/event-types"))
	if n := len(types.Data); n != len(defaultEventTypesJSON())+1 {
		t.Errorf("A's catalogue has %d types", n)
	}
}
