package api_test

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

func secretOf(n int) string {
	return "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n)))
}

func TestCreateWebhook_Validation(t *testing.T) {
	a := apitest.Start(t, nil)
	urlOf := func(n int) string { return "https://example.com/" + strings.Repeat("a", n-len("https://example.com/")) }
	given := secretOf(32)

	for i, tc := range []struct {
		name       string
		body       map[string]any // merged over a valid body; a nil value removes the field
		wantFields []string       // 422: exactly these fields fail
		check      func(t *testing.T, got apitest.WebhookJSON)
	}{
		{name: "valid with defaults", check: func(t *testing.T, got apitest.WebhookJSON) {
			if got.Timeout != 30 || got.MaxRetries != 3 || got.Status != "active" || !got.Enabled || got.AgentID != nil {
				t.Errorf("defaults: %+v", got)
			}
		}},
		{name: "name absent", body: map[string]any{"name": nil}, wantFields: []string{"name"}},
		{name: "name empty", body: map[string]any{"name": ""}, wantFields: []string{"name"}},
		{name: "name blank", body: map[string]any{"name": "   "}, wantFields: []string{"name"}},
		{name: "name 1 char", body: map[string]any{"name": "n"}},
		{name: "name 255 chars", body: map[string]any{"name": strings.Repeat("n", 255)}},
		{name: "name 255 multibyte chars", body: map[string]any{"name": strings.Repeat("é", 255)}},
		{name: "name 256 chars", body: map[string]any{"name": strings.Repeat("n", 256)}, wantFields: []string{"name"}},
		{name: "url absent", body: map[string]any{"url": nil}, wantFields: []string{"url"}},
		{name: "url 500 chars", body: map[string]any{"url": urlOf(500)}},
		{name: "url 501 chars", body: map[string]any{"url": urlOf(501)}, wantFields: []string{"url"}},
		{name: "url relative", body: map[string]any{"url": "/webhooks"}, wantFields: []string{"url"}},
		{name: "url ftp", body: map[string]any{"url": "ftp://example.com/x"}, wantFields: []string{"url"}},
		{name: "url without host", body: map[string]any{"url": "https:///x"}, wantFields: []string{"url"}},
		{name: "url opaque", body: map[string]any{"url": "http:example.com"}, wantFields: []string{"url"}},
		{name: "url http with port", body: map[string]any{"url": "http://example.com:8080/x?y=1"}},
		{name: "url literal loopback", body: map[string]any{"url": "http://127.0.0.1:8080/x"}, wantFields: []string{"url"}},
		{name: "url literal private IPv6", body: map[string]any{"url": "http://[fd00::1]/x"}, wantFields: []string{"url"}},
		{name: "url literal metadata", body: map[string]any{"url": "http://169.254.169.254/latest"}, wantFields: []string{"url"}},
		{name: "events absent", body: map[string]any{"events": nil}, wantFields: []string{"events"}},
		{name: "events empty", body: map[string]any{"events": []string{}}, wantFields: []string{"events"}},
		{name: "events unknown type", body: map[string]any{"events": []string{"call.exploded"}}, wantFields: []string{"events"}},
		{name: "events bad pattern", body: map[string]any{"events": []string{"call..started"}}, wantFields: []string{"events"}},
		{name: "events bad wildcard", body: map[string]any{"events": []string{"call*"}}, wantFields: []string{"events"}},
		{name: "events wildcard matching nothing", body: map[string]any{"events": []string{"invoice.*"}}, wantFields: []string{"events"}},
		{name: "events one bad among good", body: map[string]any{"events": []string{"call.started", "nope"}}, wantFields: []string{"events"}},
		{name: "events prefix wildcard", body: map[string]any{"events": []string{"call.*"}}},
		{name: "events star", body: map[string]any{"events": []string{"*"}}},
		{name: "events deduplicated", body: map[string]any{"events": []string{"call.started", "call.*", "call.started"}},
			check: func(t *testing.T, got apitest.WebhookJSON) {
				if !slices.Equal(got.Events, []string{"call.started", "call.*"}) || got.EventsCount != 2 {
					t.Errorf("events %v, events_count %d", got.Events, got.EventsCount)
				}
			}},
		{name: "events 256", body: map[string]any{"events": slices.Repeat([]string{"*"}, 256)}},
		{name: "events 257", body: map[string]any{"events": slices.Repeat([]string{"*"}, 257)}, wantFields: []string{"events"}},
		{name: "secret too short", body: map[string]any{"secret": "short"}, wantFields: []string{"secret"}},
		{name: "secret 31 bytes of key", body: map[string]any{"secret": secretOf(31)}, wantFields: []string{"secret"}},
		{name: "secret not base64", body: map[string]any{"secret": "whsec_" + strings.Repeat("!", 48)}, wantFields: []string{"secret"}},
		{name: "secret 256 chars", body: map[string]any{"secret": strings.Repeat("s", 256)}, wantFields: []string{"secret"}},
		{name: "secret raw 32 bytes", body: map[string]any{"secret": strings.Repeat("s", 32)}},
		{name: "secret whsec_ 32 bytes", body: map[string]any{"secret": given}, check: func(t *testing.T, got apitest.WebhookJSON) {
			if got.Secret != given {
				t.Errorf("secret %q, want the one given", got.Secret)
			}
		}},
		{name: "secret generated", check: func(t *testing.T, got apitest.WebhookJSON) {
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(got.Secret, "whsec_"))
			if !strings.HasPrefix(got.Secret, "whsec_") || err != nil || len(key) != 32 {
				t.Errorf("generated secret %q", got.Secret)
			}
		}},
		{name: "timeout 4", body: map[string]any{"timeout": 4}, wantFields: []string{"timeout"}},
		{name: "timeout 5", body: map[string]any{"timeout": 5}, check: func(t *testing.T, got apitest.WebhookJSON) {
			if got.Timeout != 5 {
				t.Errorf("timeout %d", got.Timeout)
			}
		}},
		{name: "timeout 120", body: map[string]any{"timeout": 120}},
		{name: "timeout 121", body: map[string]any{"timeout": 121}, wantFields: []string{"timeout"}},
		{name: "max_retries -1", body: map[string]any{"max_retries": -1}, wantFields: []string{"max_retries"}},
		{name: "max_retries 0", body: map[string]any{"max_retries": 0}, check: func(t *testing.T, got apitest.WebhookJSON) {
			if got.MaxRetries != 0 {
				t.Errorf("max_retries %d", got.MaxRetries)
			}
		}},
		{name: "max_retries 10", body: map[string]any{"max_retries": 10}},
		{name: "max_retries 11", body: map[string]any{"max_retries": 11}, wantFields: []string{"max_retries"}},
		{name: "status inactive", body: map[string]any{"status": "inactive"}, check: func(t *testing.T, got apitest.WebhookJSON) {
			if got.Status != "inactive" || got.Enabled {
				t.Errorf("status %q enabled %v", got.Status, got.Enabled)
			}
		}},
		{name: "status too_many_errors refused", body: map[string]any{"status": "too_many_errors"}, wantFields: []string{"status"}},
		{name: "status unknown", body: map[string]any{"status": "paused"}, wantFields: []string{"status"}},
		{name: "enabled false", body: map[string]any{"enabled": false}, check: func(t *testing.T, got apitest.WebhookJSON) {
			if got.Status != "inactive" || got.Enabled {
				t.Errorf("status %q enabled %v", got.Status, got.Enabled)
			}
		}},
		{name: "enabled agrees with status", body: map[string]any{"enabled": true, "status": "active"}},
		{name: "enabled conflicts with status", body: map[string]any{"enabled": true, "status": "inactive"}, wantFields: []string{"enabled", "status"}},
		{name: "agent_id in the body of the tenant route", body: map[string]any{"agent_id": "agent-1"}, wantFields: []string{"agent_id"}},
		{name: "agent_id empty in the body of the tenant route", body: map[string]any{"agent_id": ""}},
		{name: "read-only fields ignored", body: map[string]any{"id": "wh_mine", "created_by": "me", "events_count": 9},
			check: func(t *testing.T, got apitest.WebhookJSON) {
				if got.ID == "wh_mine" || got.CreatedBy != "default" || got.EventsCount != 1 {
					t.Errorf("read-only fields taken from the body: %+v", got)
				}
			}},
		{name: "every field failing at once",
			body: map[string]any{"name": "", "url": "ftp://x", "events": []string{}, "secret": "x",
				"timeout": 1, "max_retries": 99, "status": "too_many_errors", "agent_id": "a"},
			wantFields: []string{"agent_id", "events", "max_retries", "name", "secret", "status", "timeout", "url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"name": fmt.Sprintf("hook %d", i), "url": "https://example.com/hook", "events": []string{"call.started"}}
			for k, v := range tc.body {
				if v == nil {
					delete(body, k)
				} else {
					body[k] = v
				}
			}
			status, b := a.Do(t, http.MethodPost, "/v1/webhooks", a.Key, apitest.JSONBody(t, body))
			if tc.wantFields != nil {
				if status != http.StatusUnprocessableEntity {
					t.Fatalf("status %d, want 422: %s", status, b)
				}
				e := apitest.Decode[apitest.ErrorJSON](t, b)
				if got := slices.Sorted(maps.Keys(e.Errors)); !slices.Equal(got, tc.wantFields) || e.Message != "The given data was invalid." {
					t.Errorf("failing fields %v, want %v (%s)", got, tc.wantFields, b)
				}
				return
			}
			if status != http.StatusCreated {
				t.Fatalf("status %d, want 201: %s", status, b)
			}
			got := apitest.Decode[apitest.WebhookJSON](t, b)
			if got.Name != body["name"] || got.URL != body["url"] || got.EventsCount != len(got.Events) || got.Secret == "" {
				t.Errorf("created %+v from %v", got, body)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

func TestCreateWebhook_Response(t *testing.T) {
	a := apitest.Start(t, nil)
	before := time.Now().UTC().Add(-time.Second)
	status, b := a.Do(t, http.MethodPost, "/v1/webhooks", a.Key,
		`{"name": "Calls", "url": "https://example.com/hook", "events": ["call.*"], "timeout": 10, "max_retries": 5}`)
	if status != http.StatusCreated {
		t.Fatalf("status %d: %s", status, b)
	}
	created := apitest.Decode[apitest.WebhookJSON](t, b)
	if !strings.HasPrefix(created.ID, "wh_") || created.CreatedBy != registryDefaultKeyName || created.UpdatedBy != registryDefaultKeyName ||
		created.CreatedAt.Before(before) || !created.UpdatedAt.Equal(created.CreatedAt) || created.CreatedAt.Location() != time.UTC {
		t.Errorf("read-only fields: %+v", created)
	}
	for _, field := range []string{`"created_at":"`, `"updated_at":"`} {
		i := strings.Index(string(b), field)
		if i < 0 {
			t.Fatalf("%s missing in %s", field, b)
		}
		ts := string(b[i+len(field):])
		ts = ts[:strings.IndexByte(ts, '"')]
		if _, err := time.Parse(time.RFC3339, ts); err != nil || !strings.HasSuffix(ts, "Z") {
			t.Errorf("%s%s: not RFC 3339 UTC", field, ts)
		}
	}

	status, b = a.Do(t, http.MethodGet, "/v1/webhooks/"+created.ID, a.Key, "")
	if status != http.StatusOK {
		t.Fatalf("get: %d %s", status, b)
	}
	if strings.Contains(string(b), `"secret"`) || strings.Contains(string(b), created.Secret) {
		t.Errorf("get shows the secret: %s", b)
	}
	got := apitest.Decode[apitest.WebhookJSON](t, b)
	want := created
	want.Secret = ""
	if !equalWebhooks(got, want) {
		t.Errorf("get:\n got %+v\nwant %+v", got, want)
	}

	status, b = a.Do(t, http.MethodGet, "/v1/webhooks", a.Key, "")
	if status != http.StatusOK || strings.Contains(string(b), `"secret"`) || strings.Contains(string(b), created.Secret) {
		t.Errorf("list: %d, shows the secret: %s", status, b)
	}
}

const registryDefaultKeyName = "default"

func equalWebhooks(a, b apitest.WebhookJSON) bool {
	return a.ID == b.ID && a.Name == b.Name && a.URL == b.URL && slices.Equal(a.Events, b.Events) &&
		a.EventsCount == b.EventsCount && a.Secret == b.Secret && a.Timeout == b.Timeout &&
		a.MaxRetries == b.MaxRetries && a.Status == b.Status && a.Enabled == b.Enabled &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		a.CreatedBy == b.CreatedBy && a.UpdatedBy == b.UpdatedBy &&
		(a.AgentID == nil) == (b.AgentID == nil) && (a.AgentID == nil || *a.AgentID == *b.AgentID)
}

func TestCreateWebhook_Malformed(t *testing.T) {
	a := apitest.Start(t, nil)
	for _, body := range []string{
		``,
		`{`,
		`{"name": "x",}`,
		`[]`,
		`"webhook"`,
		`{} {}`,
		`{"name": "x", "url": "https://example.com", "events": ["*"], "timeout": "30"}`,
		`{"name": "x", "url": "https://example.com", "events": ["*"], "timeout": 30.5}`,
		`{"name": "x", "url": "https://example.com", "events": "*"}`,
		`{"name": "x", "url": "https://example.com", "events": [1]}`,
		`{"name": 7, "url": "https://example.com", "events": ["*"]}`,
		`{"name": "x", "url": "https://example.com", "events": ["*"], "enabled": "yes"}`,
		`{"name": "x", "url": "https://example.com", "events": ["*"], "max_retries": 1e30}`,
	} {
		status, b := a.Do(t, http.MethodPost, "/v1/webhooks", a.Key, body)
		if status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", body, status, b)
			continue
		}
		if e := apitest.Decode[apitest.ErrorJSON](t, b); e.Message == "" {
			t.Errorf("%s: no message: %s", body, b)
		}
	}
}

func TestCreateWebhook_Agent(t *testing.T) {
	a := apitest.Start(t, nil)
	body := `{"name": "Presence", "url": "https://example.com/hook", "events": ["agent.*"]}`
	for _, agent := range []string{"agent-1.eu:7_x", "agent-2", strings.Repeat("a", 255), "..."} {
		a.PutAgent(t, a.Key, agent)
	}
	got := a.Create(t, a.Key, "/v1/agents/agent-1.eu:7_x/webhooks", body)
	if got.AgentID == nil || *got.AgentID != "agent-1.eu:7_x" {
		t.Errorf("agent_id %v", got.AgentID)
	}

	for _, tc := range []struct {
		name, agent, body string
		want              int
	}{
		{"body agrees with route", "agent-2", `{"name": "P", "url": "https://example.com/hook", "events": ["*"], "agent_id": "agent-2"}`, 201},
		{"body disagrees with route", "agent-3", `{"name": "P", "url": "https://example.com/hook", "events": ["*"], "agent_id": "agent-4"}`, 422},
		{"agent id 255 chars", strings.Repeat("a", 255), body, 201},
		{"agent id 256 chars", strings.Repeat("a", 256), body, 422},
		{"agent id with a space", "agent%201", body, 422},
		{"agent id with a slash", "agent%2F1", body, 422},
		{"agent id .", "%2E", body, 422},
		{"agent id ..", "%2E%2E", body, 422},
		{"agent id of dots", "...", body, 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b := a.Do(t, http.MethodPost, "/v1/agents/"+tc.agent+"/webhooks", a.Key, tc.body)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, b)
			}
			if status == 422 {
				if e := apitest.Decode[apitest.ErrorJSON](t, b); len(e.Errors["agent_id"]) == 0 {
					t.Errorf("agent_id not reported: %s", b)
				}
			}
		})
	}

	// The path's agent id is reported with the body's failures.
	status, b := a.Do(t, http.MethodPost, "/v1/agents/bad%20agent/webhooks", a.Key, `{"url": "nope"}`)
	e := apitest.Decode[apitest.ErrorJSON](t, b)
	if got := slices.Sorted(maps.Keys(e.Errors)); status != 422 || !slices.Equal(got, []string{"agent_id", "events", "name", "url"}) {
		t.Errorf("status %d, failing fields %v", status, got)
	}
}

func TestCreateWebhook_NameConflict(t *testing.T) {
	a := apitest.Start(t, nil)
	body := `{"name": "Hook", "url": "https://example.com/hook", "events": ["*"]}`
	a.PutAgent(t, a.Key, "agent-1")
	a.PutAgent(t, a.Key, "agent-2")
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/v1/webhooks", 201},
		{"/v1/webhooks", 409},
		{"/v1/agents/agent-1/webhooks", 201}, // another scope
		{"/v1/agents/agent-1/webhooks", 409},
		{"/v1/agents/agent-2/webhooks", 201},
	} {
		status, b := a.Do(t, http.MethodPost, tc.path, a.Key, body)
		if status != tc.want {
			t.Fatalf("POST %s: status %d, want %d: %s", tc.path, status, tc.want, b)
		}
		if status == http.StatusConflict {
			if e := apitest.Decode[apitest.ErrorJSON](t, b); e.Message == "" || len(e.Errors["name"]) == 0 {
				t.Errorf("conflict body: %s", b)
			}
		}
	}
	// Names are unique per tenant, not across tenants.
	a.Create(t, a.NewTenant(t, "other"), "/v1/webhooks", body)
	// Deleting frees the name.
	list := apitest.Decode[apitest.ListJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks?agent_id=agent-2"))
	if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+list.Data[0].ID, a.Key, ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, b)
	}
	a.Create(t, a.Key, "/v1/agents/agent-2/webhooks", body)
}

func TestWebhooks_TenantIsolation(t *testing.T) {
	a := apitest.Start(t, nil)
	mine := a.Create(t, a.Key, "/v1/webhooks", `{"name": "Mine", "url": "https://example.com/hook", "events": ["*"]}`)
	otherKey := a.NewTenant(t, "other")
	theirs := a.Create(t, otherKey, "/v1/webhooks", `{"name": "Theirs", "url": "https://example.com/hook", "events": ["*"]}`)

	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		status, b := a.Do(t, method, "/v1/webhooks/"+mine.ID, otherKey, "")
		if status != http.StatusNotFound || strings.Contains(string(b), "Mine") {
			t.Errorf("%s another tenant's webhook: %d %s", method, status, b)
		}
	}
	for key, want := range map[string]string{a.Key: mine.ID, otherKey: theirs.ID} {
		list := apitest.Decode[apitest.ListJSON](t, apitest.MustGet(t, a, key, "/v1/webhooks"))
		if len(list.Data) != 1 || list.Data[0].ID != want {
			t.Errorf("list sees %+v, want only %s", list.Data, want)
		}
	}
	// The failed delete deleted nothing.
	apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+mine.ID)
}

func TestDeleteWebhook(t *testing.T) {
	a := apitest.Start(t, nil)
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "Gone", "url": "https://example.com/hook", "events": ["*"]}`)
	for _, want := range []int{http.StatusNoContent, http.StatusNotFound} {
		if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+wh.ID, a.Key, ""); status != want {
			t.Fatalf("delete: %d, want %d: %s", status, want, b)
		}
	}
	status, b := a.Do(t, http.MethodGet, "/v1/webhooks/"+wh.ID, a.Key, "")
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusNotFound || e.Message != "Webhook not found." {
		t.Errorf("get deleted: %d %s", status, b)
	}
}
