package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

func TestListWebhooks_Pagination(t *testing.T) {
	a := apitest.Start(t, nil)
	var want []string
	for i := range 7 {
		wh := a.Create(t, a.Key, "/v1/webhooks", fmt.Sprintf(`{"name": "hook %d", "url": "https://example.com/hook", "events": ["*"]}`, i))
		want = append(want, wh.ID)
	}

	for _, param := range []string{"cursor", "starting_after"} {
		t.Run(param, func(t *testing.T) {
			var got []string
			var sizes []int
			path := "/v1/webhooks?limit=3"
			for {
				page := apitest.Decode[apitest.ListJSON](t, apitest.MustGet(t, a, a.Key, path))
				sizes = append(sizes, len(page.Data))
				for _, wh := range page.Data {
					got = append(got, wh.ID)
				}
				if !page.HasMore {
					if page.NextCursor != "" {
						t.Errorf("next_cursor %q on the last page", page.NextCursor)
					}
					break
				}
				if page.NextCursor != page.Data[len(page.Data)-1].ID {
					t.Fatalf("next_cursor %q, want the page's last id", page.NextCursor)
				}
				path = "/v1/webhooks?limit=3&" + param + "=" + page.NextCursor
			}
			if !slices.Equal(got, want) || !slices.Equal(sizes, []int{3, 3, 1}) {
				t.Errorf("walked %v in pages of %v, want %v in pages of [3 3 1]", got, sizes, want)
			}
		})
	}

	t.Run("default and exact limits", func(t *testing.T) {
		for path, wantLen := range map[string]int{"/v1/webhooks": 7, "/v1/webhooks?limit=7": 7, "/v1/webhooks?limit=250": 7, "/v1/webhooks?limit=1": 1} {
			page := apitest.Decode[apitest.ListJSON](t, apitest.MustGet(t, a, a.Key, path))
			if len(page.Data) != wantLen || page.HasMore != (wantLen < 7) {
				t.Errorf("%s: %d webhooks, has_more %v", path, len(page.Data), page.HasMore)
			}
		}
	})

	t.Run("bad parameters", func(t *testing.T) {
		for _, q := range []string{"limit=0", "limit=251", "limit=x", "limit=", "status=paused", "event_type=call..started",
			"agent_id=a%20b", "cursor=wh_1&starting_after=wh_2"} {
			status, b := a.Do(t, http.MethodGet, "/v1/webhooks?"+q, a.Key, "")
			if status != http.StatusUnprocessableEntity {
				t.Errorf("%s: %d %s", q, status, b)
			} else if e := apitest.Decode[apitest.ErrorJSON](t, b); len(e.Errors) != 1 {
				t.Errorf("%s: %s", q, b)
			}
		}
	})
}

func TestListWebhooks_Filters(t *testing.T) {
	a := apitest.Start(t, nil)
	a.PutAgent(t, a.Key, "agent-1")
	a.PutAgent(t, a.Key, "agent-2")
	calls := a.Create(t, a.Key, "/v1/webhooks", `{"name": "calls", "url": "https://example.com/h", "events": ["call.*"]}`)
	login := a.Create(t, a.Key, "/v1/agents/agent-1/webhooks", `{"name": "login", "url": "https://example.com/h", "events": ["agent.logged_in"], "enabled": false}`)
	all := a.Create(t, a.Key, "/v1/agents/agent-2/webhooks", `{"name": "all", "url": "https://example.com/h", "events": ["*"]}`)
	contacts := a.Create(t, a.Key, "/v1/webhooks", `{"name": "contacts", "url": "https://example.com/h", "events": ["contact.created", "sale.changed"]}`)

	for q, want := range map[string][]string{
		"":                                         {calls.ID, login.ID, all.ID, contacts.ID},
		"event_type=call.started":                  {calls.ID, all.ID},
		"event_type=agent.logged_in":               {login.ID, all.ID},
		"event_type=sale.changed":                  {all.ID, contacts.ID},
		"event_type=sale.created":                  {all.ID},
		"event_type=custom.thing":                  {all.ID},
		"agent_id=agent-1":                         {login.ID},
		"agent_id=agent-3":                         {},
		"status=inactive":                          {login.ID},
		"status=active":                            {calls.ID, all.ID, contacts.ID},
		"status=too_many_errors":                   {},
		"status=active&event_type=agent.logged_in": {all.ID},
		"agent_id=agent-2&event_type=call.ended":   {all.ID},
	} {
		page := apitest.Decode[apitest.ListJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks?"+q))
		var got []string
		for _, wh := range page.Data {
			got = append(got, wh.ID)
		}
		if !slices.Equal(got, want) || page.HasMore {
			t.Errorf("?%s: got %v, want %v", q, got, want)
		}
	}
}

// With an event-type filter, rows are matched in Go and read in batches; a
// page must fill across batches and say whether more follow.
func TestDB_FindWebhooks_EventTypeAcrossBatches(t *testing.T) {
	db := dbtest.Open(t)
	ctx := context.Background()
	tenant, _, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx = switchboard.NewContextWithTenant(ctx, tenant.ID)
	create := func(name, event string) string {
		wh := &store.Webhook{Webhook: switchboard.Webhook{
			Name: name, URL: "https://example.com/h", Events: []string{event}, Secret: secretOf(32),
			TimeoutSeconds: 30, MaxRetries: 3, Status: switchboard.StatusActive,
		}}
		if err := db.CreateWebhook(ctx, wh); err != nil {
			t.Fatal(err)
		}
		return wh.ID
	}
	var want []string
	for i := range 2*store.MaxPageSize + 10 {
		create(fmt.Sprintf("sale %d", i), "sale.created")
		if i%store.MaxPageSize == 7 {
			want = append(want, create(fmt.Sprintf("call %d", i), "call.started"))
		}
	}
	for _, limit := range []int{1, 2, store.MaxPageSize} {
		var got []string
		f := store.WebhookFilter{EventType: "call.started", Limit: limit}
		for {
			page, more, err := db.FindWebhooks(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, wh := range page {
				got = append(got, wh.ID)
			}
			if !more {
				break
			}
			f.After = page[len(page)-1].ID
		}
		if !slices.Equal(got, want) || len(want) != 3 {
			t.Errorf("limit %d: got %v, want %v", limit, got, want)
		}
	}
}
