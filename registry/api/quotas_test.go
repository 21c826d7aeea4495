package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Over a quota is a 422 naming the limit; another tenant's quota is its
// own, and deleting makes room again.
func TestQuotas(t *testing.T) {
	a := apitest.Start(t, func(s *api.Server) {
		s.DB.Quotas = store.Quotas{WebhooksPerTenant: 2, AgentsPerTenant: 1, EventTypesPerTenant: 1, HeadersPerWebhook: 2}
	})
	over := func(t *testing.T, status int, b []byte, field, limit string) {
		t.Helper()
		got := apitest.Decode[apitest.ErrorJSON](t, b)
		if status != http.StatusUnprocessableEntity || len(got.Errors[field]) == 0 || !strings.Contains(got.Message, limit) {
			t.Errorf("%d %s, want 422 naming %s and %q", status, b, field, limit)
		}
	}
	hook := func(i int, headers int) string {
		h := map[string]string{}
		for j := range headers {
			h[fmt.Sprintf("X-H%d", j)] = "v"
		}
		return apitest.JSONBody(t, map[string]any{"name": fmt.Sprintf("h%d", i), "url": "https://example.com/h", "events": []string{"*"}, "headers": h})
	}

	first := a.Create(t, a.Key, "/v1/webhooks", hook(1, 2))
	status, b := a.Do(t, http.MethodPost, "/v1/webhooks", a.Key, hook(2, 3))
	over(t, status, b, "headers", "at most 2 custom headers per webhook")
	status, b = a.Do(t, http.MethodPatch, "/v1/webhooks/"+first.ID, a.Key, `{"headers": {"A": "1", "B": "2", "C": "3"}}`)
	over(t, status, b, "headers", "at most 2 custom headers per webhook")
	a.Create(t, a.Key, "/v1/webhooks", hook(2, 0))
	status, b = a.Do(t, http.MethodPost, "/v1/webhooks", a.Key, hook(3, 0))
	over(t, status, b, "webhooks", "at most 2 webhooks per tenant")

	a.PutAgent(t, a.Key, "agent-1")
	status, b = a.Do(t, http.MethodPut, "/v1/agents/agent-2", a.Key, `{"name": "two"}`)
	over(t, status, b, "agent_id", "at most 1 agents per tenant")
	if status, b := a.Do(t, http.MethodPut, "/v1/agents/agent-1", a.Key, `{"name": "renamed"}`); status != http.StatusOK {
		t.Errorf("updating an agent at the quota: %d %s", status, b)
	}

	if status, b := a.Do(t, http.MethodPost, "/v1/event-types", a.Key, `{"name": "own.one"}`); status != http.StatusCreated {
		t.Fatalf("event type: %d %s", status, b)
	}
	status, b = a.Do(t, http.MethodPost, "/v1/event-types", a.Key, `{"name": "own.two"}`)
	over(t, status, b, "name", "at most 1 event types of its own per tenant")

	// Another tenant has quotas of its own.
	keyB := a.NewTenant(t, "tenant-b")
	a.Create(t, keyB, "/v1/webhooks", hook(1, 0))
	// Deleting makes room.
	if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+first.ID, a.Key, ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, b)
	}
	a.Create(t, a.Key, "/v1/webhooks", hook(3, 0))
}
