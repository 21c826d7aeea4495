package api

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/apispec"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Keys of the key cases, beside those of openapi_internal_test.go.
const (
	keyPublish = "publish" // a publish key of the default tenant, from POST /v1/keys
	keyRevoked = "revoked" // a key revoked by DELETE /v1/keys/{key_id}
)

// keyCases exercise /v1/keys, the admin routes of tenants and their keys,
// and scopes. They follow adminCases, which creates {tenant} and keyNew.
func keyCases() []specCase {
	const (
		post = http.MethodPost
		get  = http.MethodGet
		del  = http.MethodDelete
	)
	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	saveKey := func(name string) func(*testing.T, *specEnv, map[string]any) {
		return func(t *testing.T, e *specEnv, v map[string]any) {
			key, _ := v["key"].(string)
			e.keys[name] = key
		}
	}
	return []specCase{
		// POST /v1/keys
		{name: "own/create/201/publish", method: post, path: "/v1/keys", want: 201,
			body: `{"name": "upstream", "scope": "publish", "expires_at": "` + future + `"}`,
			check: expect(map[string]any{"scope": "publish", "admin": false, "last_used_at": nil},
				present("expires_at"), saveKey(keyPublish))},
		{name: "own/create/201/by-a-manage-key", method: post, path: "/v1/keys", key: keyUser, want: 201,
			body: `{"name": "short-lived"}`, check: expect(map[string]any{"scope": "manage", "expires_at": nil},
				saveKey(keyRevoked), save("revoked_id", "id"))},
		{name: "own/create/400", method: post, path: "/v1/keys", invalid: true, want: 400, body: `{"name": 1}`},
		{name: "own/create/401", method: post, path: "/v1/keys", key: keyNone, invalid: true, want: 401, body: `{"name": "x"}`},
		{name: "own/create/403/admin-by-a-manage-key", method: post, path: "/v1/keys", key: keyUser, want: 403,
			body: `{"name": "raise", "scope": "admin"}`},
		{name: "own/create/403/publish-key", method: post, path: "/v1/keys", key: keyPublish, want: 403, body: `{"name": "x"}`},
		{name: "own/create/409", method: post, path: "/v1/keys", want: 409, body: `{"name": "upstream"}`},
		{name: "own/create/422/past-expiry", method: post, path: "/v1/keys", want: 422,
			body: `{"name": "old", "expires_at": "2001-01-01T00:00:00Z"}`, check: errorsOn("expires_at")},
		{name: "own/create/422/every-field", method: post, path: "/v1/keys", invalid: true, want: 422,
			body: `{"name": "", "scope": "root", "expires_at": "tomorrow"}`, check: errorsOn("name", "scope", "expires_at")},
		{name: "own/create/422/admin-contradicts-scope", method: post, path: "/v1/keys", want: 422,
			body: `{"name": "both", "scope": "manage", "admin": true}`, check: errorsOn("scope")},

		// GET /v1/keys
		{name: "own/list/200", method: get, path: "/v1/keys", want: 200, check: func(t *testing.T, e *specEnv, v map[string]any) {
			data, _ := v["data"].([]any)
			names := map[string]bool{}
			for _, k := range data {
				k, _ := k.(map[string]any)
				if _, shown := k["key"]; shown {
					t.Errorf("a listed key shows its plaintext: %v", k)
				}
				name, _ := k["name"].(string)
				names[name] = true
			}
			for _, want := range []string{store.DefaultKeyName, "user", "upstream", "short-lived"} {
				if !names[want] {
					t.Errorf("no key %q in %v", want, v)
				}
			}
		}},
		{name: "own/list/200/first-page", method: get, path: "/v1/keys?limit=1", want: 200,
			check: expect(map[string]any{"has_more": true}, listLen(1), present("next_cursor"))},
		{name: "own/list/200/last_used_at", method: get, path: "/v1/keys", want: 200, check: func(t *testing.T, e *specEnv, v map[string]any) {
			data, _ := v["data"].([]any)
			for _, k := range data {
				k, _ := k.(map[string]any)
				if k["name"] == store.DefaultKeyName && k["last_used_at"] == nil {
					t.Errorf("the key in use shows no last_used_at: %v", k)
				}
			}
		}},
		{name: "own/list/401", method: get, path: "/v1/keys", key: keyNone, invalid: true, want: 401},
		{name: "own/list/403/publish-key", method: get, path: "/v1/keys", key: keyPublish, want: 403},
		{name: "own/list/422", method: get, path: "/v1/keys?limit=0", invalid: true, want: 422, check: errorsOn("limit")},
		{name: "own/list/other-tenant-sees-its-own", method: get, path: "/v1/keys", key: keyOther, want: 200, check: listLen(1)},

		// The publish key publishes, and nothing else.
		{name: "publish-key/events/202", method: post, path: "/v1/events", key: keyPublish, want: 202,
			body: `{"type": "call.started", "data": {}}`},
		{name: "publish-key/webhooks/403", method: get, path: "/v1/webhooks", key: keyPublish, want: 403,
			check: func(t *testing.T, _ *specEnv, v map[string]any) {
				if msg, _ := v["message"].(string); !strings.Contains(msg, "publish") {
					t.Errorf("403 does not name the key's scope: %v", v)
				}
			}},

		// DELETE /v1/keys/{key_id}
		{name: "own/revoke/401", method: del, path: "/v1/keys/{revoked_id}", key: keyNone, invalid: true, want: 401},
		{name: "own/revoke/403/publish-key", method: del, path: "/v1/keys/{revoked_id}", key: keyPublish, want: 403},
		{name: "own/revoke/404/another-tenants", method: del, path: "/v1/keys/{revoked_id}", key: keyOther, want: 404},
		{name: "own/revoke/204/itself", method: del, path: "/v1/keys/{revoked_id}", key: keyRevoked, want: 204},
		{name: "own/revoke/204/then-401", method: get, path: "/v1/webhooks", key: keyRevoked, want: 401},
		{name: "own/revoke/404/again", method: del, path: "/v1/keys/{revoked_id}", want: 404},

		// GET /v1/tenants
		{name: "tenants/list/200", method: get, path: "/v1/tenants", want: 200, check: func(t *testing.T, e *specEnv, v map[string]any) {
			data, _ := v["data"].([]any)
			if len(data) < 3 { // default, other, acme
				t.Errorf("%d tenants: %v", len(data), v)
			}
		}},
		{name: "tenants/list/200/page", method: get, path: "/v1/tenants?limit=1", want: 200,
			check: expect(map[string]any{"has_more": true}, listLen(1))},
		{name: "tenants/list/401", method: get, path: "/v1/tenants", key: keyNone, invalid: true, want: 401},
		{name: "tenants/list/403", method: get, path: "/v1/tenants", key: keyUser, want: 403},
		{name: "tenants/list/422", method: get, path: "/v1/tenants?limit=251", invalid: true, want: 422, check: errorsOn("limit")},

		// GET /v1/tenants/{tenant_id}/keys, DELETE .../keys/{key_id}
		{name: "tenant-keys/create/201/expiring", method: post, path: "/v1/tenants/{tenant}/keys", want: 201,
			body:  `{"name": "temp", "expires_at": "` + future + `"}`,
			check: expect(map[string]any{"scope": "manage", "tenant_id": "{tenant}"}, save("temp_id", "id"))},
		{name: "tenant-keys/list/200", method: get, path: "/v1/tenants/{tenant}/keys", want: 200, check: listLen(2)},
		{name: "tenant-keys/list/401", method: get, path: "/v1/tenants/{tenant}/keys", key: keyNone, invalid: true, want: 401},
		{name: "tenant-keys/list/403", method: get, path: "/v1/tenants/{tenant}/keys", key: keyNew, want: 403},
		{name: "tenant-keys/list/404", method: get, path: "/v1/tenants/ten_nosuch/keys", want: 404},
		{name: "tenant-keys/list/422", method: get, path: "/v1/tenants/{tenant}/keys?limit=x", invalid: true, want: 422, check: errorsOn("limit")},
		{name: "tenant-keys/revoke/401", method: del, path: "/v1/tenants/{tenant}/keys/{temp_id}", key: keyNone, invalid: true, want: 401},
		{name: "tenant-keys/revoke/403", method: del, path: "/v1/tenants/{tenant}/keys/{temp_id}", key: keyNew, want: 403},
		{name: "tenant-keys/revoke/404/wrong-tenant", method: del, path: "/v1/tenants/{other_tenant}/keys/{temp_id}", want: 404},
		{name: "tenant-keys/revoke/204", method: del, path: "/v1/tenants/{tenant}/keys/{temp_id}", want: 204},
		{name: "tenant-keys/revoke/404/again", method: del, path: "/v1/tenants/{tenant}/keys/{temp_id}", want: 404},

		// GET and DELETE /v1/tenants/{tenant_id}: acme gets a webhook and
		// an agent, then goes.
		{name: "tenant/setup/webhook", method: post, path: "/v1/webhooks", key: keyNew, want: 201, body: webhookJSON(nil),
			check: save("acme_wh", "id")},
		{name: "tenant/setup/agent", method: http.MethodPut, path: "/v1/agents/acme-agent", key: keyNew, want: 201},
		{name: "tenant/get/200", method: get, path: "/v1/tenants/{tenant}", want: 200,
			check: expect(map[string]any{"name": "acme", "counts": map[string]any{
				"webhooks": 1, "agents": 1, "keys": 1, "event_types": 0, "attempts": 0,
			}})},
		{name: "tenant/get/200/by-name", method: get, path: "/v1/tenants/acme", want: 200, check: expect(map[string]any{"id": "{tenant}"})},
		{name: "tenant/get/401", method: get, path: "/v1/tenants/{tenant}", key: keyNone, invalid: true, want: 401},
		{name: "tenant/get/403", method: get, path: "/v1/tenants/{tenant}", key: keyUser, want: 403},
		{name: "tenant/get/404", method: get, path: "/v1/tenants/ten_nosuch", want: 404},
		{name: "tenant/delete/401", method: del, path: "/v1/tenants/{tenant}", key: keyNone, invalid: true, want: 401},
		{name: "tenant/delete/403", method: del, path: "/v1/tenants/{tenant}", key: keyNew, want: 403},
		{name: "tenant/delete/409/own-tenant", method: del, path: "/v1/tenants/default", want: 409},
		{name: "tenant/delete/200", method: del, path: "/v1/tenants/{tenant}", want: 200,
			check: expect(map[string]any{"id": "{tenant}", "deleted": map[string]any{
				"webhooks": 1, "agents": 1, "keys": 1, "event_types": 0, "attempts": 0, "dead_letters": 0,
			}}, func(t *testing.T, e *specEnv, _ map[string]any) {
				// The workers' KV bucket loses the webhook.
				kv, err := e.js.JS.KeyValue(context.Background(), streams.WebhooksBucket)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := kv.Get(context.Background(), e.fill("{acme_wh}")); err == nil {
					t.Errorf("webhook %s is still in the KV bucket", e.fill("{acme_wh}"))
				}
			})},
		{name: "tenant/delete/200/its-keys-are-gone", method: get, path: "/v1/webhooks", key: keyNew, want: 401},
		{name: "tenant/delete/404/again", method: del, path: "/v1/tenants/{tenant}", want: 404},
	}
}

// exerciseScopes sends a publish key to every operation of the spec but
// POST /v1/events and wants 403 from each: the scope check comes before
// anything else looks at the request, so path values and bodies are
// placeholders, and the request's departures from the spec are not the
// point.
func (e *specEnv) exerciseScopes(t *testing.T, spec *apispec.Spec) {
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, op := range spec.Operations() {
		if op == "POST /v1/events" {
			continue
		}
		method, path, _ := strings.Cut(op, " ")
		t.Run(op, func(t *testing.T) {
			var res apispec.Result
			ctx := apispec.WithResult(context.Background(), &res)
			var body *strings.Reader
			if method != http.MethodGet && method != http.MethodDelete {
				body = strings.NewReader(`{}`)
			}
			req, err := http.NewRequestWithContext(ctx, method, e.url+param.ReplaceAllString(path, "x"), nil)
			if body != nil {
				req, err = http.NewRequestWithContext(ctx, method, e.url+param.ReplaceAllString(path, "x"), body)
				req.Header.Set("Content-Type", "application/json")
			}
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+e.keys[keyPublish])
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s with a publish key: %d, want 403", op, resp.StatusCode)
			}
			for _, err := range res.Errs {
				if !strings.HasPrefix(err.Error(), "the request departs from the spec") {
					t.Error(err)
				}
			}
		})
	}
}
