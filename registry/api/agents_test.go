package api_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// agentJSON is an agent as a client reads it.
type agentJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type agentListJSON struct {
	Data       []agentJSON `json:"data"`
	HasMore    bool        `json:"has_more"`
	NextCursor string      `json:"next_cursor"`
}

func TestAgents_PutGetDelete(t *testing.T) {
	a := apitest.Start(t, nil)

	status, b := a.Do(t, http.MethodPut, "/v1/agents/a1", a.Key, `{"name": "Ada"}`)
	created := apitest.Decode[agentJSON](t, b)
	if status != http.StatusCreated || created.ID != "a1" || created.Name != "Ada" ||
		created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) || created.CreatedAt.Location() != time.UTC {
		t.Fatalf("create: %d %s", status, b)
	}

	// Again with another name: an update, 200.
	status, b = a.Do(t, http.MethodPut, "/v1/agents/a1", a.Key, `{"name": "Ada L."}`)
	updated := apitest.Decode[agentJSON](t, b)
	if status != http.StatusOK || updated.Name != "Ada L." || !updated.CreatedAt.Equal(created.CreatedAt) ||
		updated.UpdatedAt.Before(created.UpdatedAt) {
		t.Errorf("update: %d %s", status, b)
	}
	// Without a body, or without a name: nothing changes.
	for _, body := range []string{"", "{}", `{"name": null}`} {
		status, b = a.Do(t, http.MethodPut, "/v1/agents/a1", a.Key, body)
		if got := apitest.Decode[agentJSON](t, b); status != http.StatusOK || got != updated {
			t.Errorf("PUT %q: %d %s, want %+v", body, status, b, updated)
		}
	}
	// A new agent needs no name.
	status, b = a.Do(t, http.MethodPut, "/v1/agents/a2", a.Key, "")
	if got := apitest.Decode[agentJSON](t, b); status != http.StatusCreated || got.ID != "a2" || got.Name != "" {
		t.Errorf("create without a body: %d %s", status, b)
	}
	// An empty name clears it.
	status, b = a.Do(t, http.MethodPut, "/v1/agents/a2", a.Key, `{"name": ""}`)
	if got := apitest.Decode[agentJSON](t, b); status != http.StatusOK || got.Name != "" {
		t.Errorf("empty name: %d %s", status, b)
	}

	if got := apitest.Decode[agentJSON](t, apitest.MustGet(t, a, a.Key, "/v1/agents/a1")); got != updated {
		t.Errorf("get: %+v, want %+v", got, updated)
	}

	for _, want := range []int{http.StatusNoContent, http.StatusNotFound} {
		if status, b := a.Do(t, http.MethodDelete, "/v1/agents/a1", a.Key, ""); status != want {
			t.Fatalf("delete: %d, want %d: %s", status, want, b)
		}
	}
	status, b = a.Do(t, http.MethodGet, "/v1/agents/a1", a.Key, "")
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusNotFound || e.Message != `Agent "a1" not found.` {
		t.Errorf("get a deleted agent: %d %s", status, b)
	}
}

func TestAgents_Validation(t *testing.T) {
	a := apitest.Start(t, nil)
	for _, tc := range []struct {
		name, agent, body string
		want              int
		field             string
	}{
		{"id of 255 chars", strings.Repeat("a", 255), "", 201, ""},
		{"id of 256 chars", strings.Repeat("a", 256), "", 422, "agent_id"},
		{"id with a space", "a%20b", "", 422, "agent_id"},
		{"id ..", "%2E%2E", "", 422, "agent_id"},
		{"id of every allowed character", "aZ09_.:-", "", 201, ""},
		{"name of 255 chars", "n255", `{"name": "` + strings.Repeat("é", 255) + `"}`, 201, ""},
		{"name of 256 chars", "n256", `{"name": "` + strings.Repeat("é", 256) + `"}`, 422, "name"},
		{"bad id and name together", "a%20b", `{"name": "` + strings.Repeat("x", 256) + `"}`, 422, "agent_id,name"},
		{"name not a string", "t", `{"name": 1}`, 400, ""},
		{"malformed JSON", "m", `{"name": `, 400, ""},
		{"not an object", "o", `[]`, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b := a.Do(t, http.MethodPut, "/v1/agents/"+tc.agent, a.Key, tc.body)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, b)
			}
			e := apitest.Decode[map[string]any](t, b)
			if status == 422 {
				var got []string
				for f := range apitest.Decode[apitest.ErrorJSON](t, b).Errors {
					got = append(got, f)
				}
				slices.Sort(got)
				if strings.Join(got, ",") != tc.field {
					t.Errorf("failing fields %v, want %s", got, tc.field)
				}
			}
			if status >= 400 && e["message"] == "" {
				t.Errorf("no message: %s", b)
			}
		})
	}
}

func TestAgents_List(t *testing.T) {
	a := apitest.Start(t, nil)
	want := []string{"a", "b", "c", "d", "e"}
	for _, id := range []string{"c", "a", "e", "b", "d"} {
		a.PutAgent(t, a.Key, id)
	}
	var got []string
	var sizes []int
	path := "/v1/agents?limit=2"
	for {
		page := apitest.Decode[agentListJSON](t, apitest.MustGet(t, a, a.Key, path))
		sizes = append(sizes, len(page.Data))
		for _, ag := range page.Data {
			got = append(got, ag.ID)
		}
		if !page.HasMore {
			if page.NextCursor != "" {
				t.Errorf("next_cursor %q on the last page", page.NextCursor)
			}
			break
		}
		path = "/v1/agents?limit=2&cursor=" + url.QueryEscape(page.NextCursor)
	}
	if !slices.Equal(got, want) || !slices.Equal(sizes, []int{2, 2, 1}) {
		t.Errorf("walked %v in pages of %v, want %v in pages of [2 2 1]", got, sizes, want)
	}
	if page := apitest.Decode[agentListJSON](t, apitest.MustGet(t, a, a.Key, "/v1/agents")); len(page.Data) != 5 || page.HasMore {
		t.Errorf("default page: %+v", page)
	}
	for _, q := range []string{"limit=0", "limit=251", "limit=x", "limit="} {
		status, b := a.Do(t, http.MethodGet, "/v1/agents?"+q, a.Key, "")
		if e := apitest.Decode[apitest.ErrorJSON](t, b); status != 422 || len(e.Errors["limit"]) == 0 {
			t.Errorf("?%s: %d %s", q, status, b)
		}
	}
	// An empty tenant lists an empty array, not null.
	_, b := a.Do(t, http.MethodGet, "/v1/agents", a.NewTenant(t, "empty"), "")
	if !strings.Contains(string(b), `"data":[]`) {
		t.Errorf("empty list: %s", b)
	}
}

// A webhook is scoped only to an agent its tenant has.
func TestCreateWebhook_UnknownAgent(t *testing.T) {
	a := apitest.Start(t, nil)
	body := `{"name": "p", "url": "https://example.com/h", "events": ["agent.*"]}`
	status, b := a.Do(t, http.MethodPost, "/v1/agents/a1/webhooks", a.Key, body)
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusNotFound || e.Message != `Agent "a1" not found.` {
		t.Fatalf("unknown agent: %d %s", status, b)
	}
	if ids := apitest.ListIDs(t, a, a.Key); len(ids) != 0 {
		t.Errorf("a webhook was stored for an unknown agent: %v", ids)
	}

	// Another tenant's agent is unknown too.
	other := a.NewTenant(t, "other")
	a.PutAgent(t, other, "a1")
	if status, b := a.Do(t, http.MethodPost, "/v1/agents/a1/webhooks", a.Key, body); status != http.StatusNotFound {
		t.Errorf("another tenant's agent: %d %s", status, b)
	}

	a.PutAgent(t, a.Key, "a1")
	wh := a.Create(t, a.Key, "/v1/agents/a1/webhooks", body)
	if wh.AgentID == nil || *wh.AgentID != "a1" {
		t.Errorf("agent_id %v", wh.AgentID)
	}
}

// Deleting an agent deletes its webhooks, from SQLite and from the KV
// bucket the workers read, and leaves the others.
func TestDeleteAgent_DeletesItsWebhooks(t *testing.T) {
	a := apitest.Start(t, nil)
	a.PutAgent(t, a.Key, "a1")
	a.PutAgent(t, a.Key, "a2")
	body := `{"name": "%s", "url": "https://example.com/h", "events": ["*"]}`
	gone := []apitest.WebhookJSON{
		a.Create(t, a.Key, "/v1/agents/a1/webhooks", strings.Replace(body, "%s", "one", 1)),
		a.Create(t, a.Key, "/v1/agents/a1/webhooks", strings.Replace(body, "%s", "two", 1)),
	}
	kept := []apitest.WebhookJSON{
		a.Create(t, a.Key, "/v1/agents/a2/webhooks", strings.Replace(body, "%s", "one", 1)),
		a.Create(t, a.Key, "/v1/webhooks", strings.Replace(body, "%s", "one", 1)),
	}
	for _, wh := range append(slices.Clone(gone), kept...) {
		if apitest.KVWebhook(t, a.KV, wh.ID) == nil {
			t.Fatalf("webhook %s not in KV", wh.ID)
		}
	}

	if status, b := a.Do(t, http.MethodDelete, "/v1/agents/a1", a.Key, ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, b)
	}
	for _, wh := range gone {
		if status, _ := a.Do(t, http.MethodGet, "/v1/webhooks/"+wh.ID, a.Key, ""); status != http.StatusNotFound {
			t.Errorf("webhook %s of the deleted agent: %d", wh.ID, status)
		}
		// Mirrored before the response: the workers drop it at once.
		if got := apitest.KVWebhook(t, a.KV, wh.ID); got != nil {
			t.Errorf("webhook %s of the deleted agent is still in KV: %+v", wh.ID, got)
		}
	}
	if got, want := apitest.ListIDs(t, a, a.Key), []string{kept[0].ID, kept[1].ID}; !slices.Equal(got, want) {
		t.Errorf("webhooks left %v, want %v", got, want)
	}
	for _, wh := range kept {
		if apitest.KVWebhook(t, a.KV, wh.ID) == nil {
			t.Errorf("webhook %s of another scope left KV", wh.ID)
		}
	}
	// An agent of the same id made anew starts with no webhooks.
	a.PutAgent(t, a.Key, "a1")
	if page := apitest.Decode[apitest.ListJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks?agent_id=a1")); len(page.Data) != 0 {
		t.Errorf("the new agent has webhooks: %+v", page.Data)
	}
}

// The store refuses a webhook for an agent deleted after the request was
// validated: the check is in the transaction that inserts it.
func TestDB_CreateWebhookChecksAgentInTransaction(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := switchboard.NewContextWithTenant(context.Background(), a.Tenant.ID)
	name := "n"
	if _, _, err := a.DB.PutAgent(ctx, "a1", &name); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DB.DeleteAgent(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	wh := newStoreWebhook("a1")
	err := a.DB.CreateWebhook(ctx, wh)
	dbtest.WantCode(t, err, switchboard.ENOTFOUND)
	if !strings.Contains(switchboard.ErrorMessage(err), `"a1"`) {
		t.Errorf("message %q does not name the agent", switchboard.ErrorMessage(err))
	}
}

// newStoreWebhook returns a valid webhook for the store, scoped to agent.
func newStoreWebhook(agent string) *store.Webhook {
	return &store.Webhook{Webhook: switchboard.Webhook{
		AgentID: agent, Name: "n", URL: "https://example.com/h", Events: []string{"*"},
		Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYq=", TimeoutSeconds: 30, MaxRetries: 3,
		Status: switchboard.StatusActive,
	}}
}

// A body sent chunked (length unknown) is read as any other, and an empty
// one is no body.
func TestAgents_PutChunked(t *testing.T) {
	a := apitest.Start(t, nil)
	for _, tc := range []struct {
		body, wantName string
		want           int
	}{
		{"", "", http.StatusCreated},
		{`{"name": "C"}`, "C", http.StatusOK},
		{"", "C", http.StatusOK},
		{`{"name": `, "", http.StatusBadRequest},
	} {
		// A reader of unknown length makes the client send it chunked.
		req, err := http.NewRequest(http.MethodPut, a.URL+"/v1/agents/c1", io.MultiReader(strings.NewReader(tc.body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+a.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("PUT %q chunked: %d %s", tc.body, resp.StatusCode, b)
		}
		if tc.want < 300 {
			if got := apitest.Decode[agentJSON](t, b); got.Name != tc.wantName {
				t.Errorf("PUT %q chunked: name %q, want %q", tc.body, got.Name, tc.wantName)
			}
		}
	}
}
