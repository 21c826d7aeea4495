package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Bodies and values the cases share.
var (
	// validSecret is whsec_ and the base64 of 32 bytes.
	validSecret = "whsec_" + strings.Repeat("A", 43) + "="
	name255     = strings.Repeat("n", 255)
	url500      = "https://example.com/" + strings.Repeat("p", 500-len("https://example.com/"))
)

// coreCases exercise the first routes: webhooks create, list, get and
// delete, event types, and ingest.
func coreCases() []specCase {
	const (
		post = http.MethodPost
		get  = http.MethodGet
		del  = http.MethodDelete
	)
	invalid422 := func(name string, set map[string]any, fields ...string) specCase {
		return specCase{
			name: "create/422/" + name, method: post, path: "/v1/webhooks", invalid: true, want: 422,
			body: webhookJSON(set), check: errorsOn(fields...),
		}
	}
	return []specCase{
		// POST /v1/webhooks
		{name: "create/201", method: post, path: "/v1/webhooks", want: 201,
			body: jsonOf(map[string]any{"name": "crm", "url": "{recv}", "events": []string{"call.*"}}),
			check: expect(map[string]any{
				"name": "crm", "events": []string{"call.*"}, "events_count": 1, "agent_id": nil,
				"status": "active", "enabled": true, "timeout": 30, "max_retries": 3, "created_by": "default",
			}, present("secret"), save("wh", "id"))},
		{name: "create/201/upper-bounds", method: post, path: "/v1/webhooks", want: 201,
			body: webhookJSON(map[string]any{
				"name": name255, "url": url500, "secret": validSecret, "timeout": 120, "max_retries": 10,
				"status": "inactive", "agent_id": "", "events": []string{"*", "call.started", "call.started"},
			}),
			check: expect(map[string]any{
				"secret": validSecret, "timeout": 120, "max_retries": 10, "status": "inactive", "enabled": false,
				"events": []string{"*", "call.started"}, "events_count": 2,
			}, save("wh_inactive", "id"))},
		{name: "create/201/lower-bounds", method: post, path: "/v1/webhooks", want: 201,
			body:  webhookJSON(map[string]any{"timeout": 5, "max_retries": 0, "enabled": false, "status": "inactive"}),
			check: expect(map[string]any{"timeout": 5, "max_retries": 0, "status": "inactive"})},
		{name: "create/201/raw-secret-of-32-bytes", method: post, path: "/v1/webhooks", want: 201,
			body:  webhookJSON(map[string]any{"secret": strings.Repeat("k", 32)}),
			check: save("wh_delete", "id")},
		{name: "create/400/malformed", method: post, path: "/v1/webhooks", invalid: true, want: 400, body: `{"name":`},
		{name: "create/400/wrong-type", method: post, path: "/v1/webhooks", invalid: true, want: 400,
			body: webhookJSON(map[string]any{"timeout": "30"}), check: errorsOn("timeout")},
		{name: "create/400/not-an-object", method: post, path: "/v1/webhooks", invalid: true, want: 400, body: `[]`},
		{name: "create/401/no-key", method: post, path: "/v1/webhooks", key: keyNone, invalid: true, want: 401, body: webhookJSON(nil),
			check: expect(map[string]any{"message": "Missing Bearer Token"})},
		{name: "create/401/unknown-key", method: post, path: "/v1/webhooks", key: keyBad, want: 401, body: webhookJSON(nil)},
		{name: "create/409/name-taken", method: post, path: "/v1/webhooks", want: 409,
			body: webhookJSON(map[string]any{"name": "crm"}), check: errorsOn("name")},
		{name: "create/409/name-free-in-another-tenant", method: post, path: "/v1/webhooks", key: keyOther, want: 201,
			body: webhookJSON(map[string]any{"name": "crm"})},
		{name: "create/422/empty", method: post, path: "/v1/webhooks", invalid: true, want: 422, body: `{}`,
			check: expect(map[string]any{"message": "The given data was invalid."}, errorsOn("name", "url", "events"))},
		invalid422("timeout-4", map[string]any{"timeout": 4}, "timeout"),
		invalid422("timeout-121", map[string]any{"timeout": 121}, "timeout"),
		invalid422("max_retries-11", map[string]any{"max_retries": 11}, "max_retries"),
		invalid422("max_retries-negative", map[string]any{"max_retries": -1}, "max_retries"),
		invalid422("name-256", map[string]any{"name": name255 + "n"}, "name"),
		invalid422("name-blank", map[string]any{"name": "   "}, "name"),
		invalid422("url-501", map[string]any{"url": url500 + "p"}, "url"),
		invalid422("url-not-http", map[string]any{"url": "ftp://example.com/hook"}, "url"),
		invalid422("url-relative", map[string]any{"url": "/hook"}, "url"),
		invalid422("events-empty", map[string]any{"events": []string{}}, "events"),
		invalid422("events-bad-pattern", map[string]any{"events": []string{"call started"}}, "events"),
		invalid422("events-257", map[string]any{"events": strings.Split(strings.Repeat("call.started,", 257)[:13*257-1], ",")}, "events"),
		invalid422("status-too_many_errors", map[string]any{"status": "too_many_errors"}, "status"),
		invalid422("status-unknown", map[string]any{"status": "paused"}, "status"),
		invalid422("status-conflicts-with-enabled", map[string]any{"status": "active", "enabled": false}, "status", "enabled"),
		invalid422("secret-short", map[string]any{"secret": "optional_secret_for_hmac"}, "secret"),
		invalid422("secret-bad-base64", map[string]any{"secret": "whsec_" + strings.Repeat("!", 44)}, "secret"),
		invalid422("agent_id-on-tenant-route", map[string]any{"agent_id": "agent-1"}, "agent_id"),
		invalid422("every-field-at-once", map[string]any{"name": "", "url": "nope", "events": []string{}, "timeout": 1, "max_retries": 99},
			"name", "url", "events", "timeout", "max_retries"),
		{name: "create/422/event-type-not-in-catalogue", method: post, path: "/v1/webhooks", want: 422,
			body: webhookJSON(map[string]any{"events": []string{"nosuch.type", "nosuch.*"}}), check: errorsOn("events")},

		// POST /v1/agents/{agent_id}/webhooks, what needs no agent to exist
		{name: "create-for-agent/400/malformed", method: post, path: "/v1/agents/agent-1/webhooks", invalid: true, want: 400, body: `{`},
		{name: "create-for-agent/401", method: post, path: "/v1/agents/agent-1/webhooks", key: keyNone, invalid: true, want: 401, body: webhookJSON(nil)},
		{name: "create-for-agent/422/bad-agent-id", method: post, path: "/v1/agents/bad%20agent/webhooks", invalid: true, want: 422,
			body: webhookJSON(nil), check: errorsOn("agent_id")},
		{name: "create-for-agent/422/agent_id-differs", method: post, path: "/v1/agents/agent-1/webhooks", want: 422,
			body: webhookJSON(map[string]any{"agent_id": "agent-2"}), check: errorsOn("agent_id")},

		// GET /v1/webhooks
		{name: "list/200", method: get, path: "/v1/webhooks", want: 200,
			check: expect(map[string]any{"has_more": false}, absent("next_cursor"))},
		{name: "list/200/first-page", method: get, path: "/v1/webhooks?limit=1", want: 200,
			check: expect(map[string]any{"has_more": true}, listLen(1), save("cursor", "next_cursor"))},
		{name: "list/200/next-page", method: get, path: "/v1/webhooks?limit=250&cursor={cursor}", want: 200,
			check: expect(map[string]any{"has_more": false})},
		{name: "list/200/starting_after", method: get, path: "/v1/webhooks?limit=1&starting_after={cursor}", want: 200,
			check: listLen(1)},
		{name: "list/200/filters", method: get, path: "/v1/webhooks?status=inactive&event_type=call.ended&agent_id=agent-9", want: 200,
			check: listLen(0)},
		{name: "list/200/status", method: get, path: "/v1/webhooks?status=active&event_type=call.ended", want: 200,
			check: listLen(1)},
		{name: "list/200/other-tenant-sees-its-own", method: get, path: "/v1/webhooks", key: keyOther, want: 200, check: listLen(2)},
		{name: "list/401", method: get, path: "/v1/webhooks", key: keyNone, invalid: true, want: 401},
		{name: "list/422/limit-0", method: get, path: "/v1/webhooks?limit=0", invalid: true, want: 422, check: errorsOn("limit")},
		{name: "list/422/limit-251", method: get, path: "/v1/webhooks?limit=251", invalid: true, want: 422, check: errorsOn("limit")},
		{name: "list/422/limit-not-a-number", method: get, path: "/v1/webhooks?limit=ten", invalid: true, want: 422, check: errorsOn("limit")},
		{name: "list/422/status", method: get, path: "/v1/webhooks?status=paused", invalid: true, want: 422, check: errorsOn("status")},
		{name: "list/422/event_type", method: get, path: "/v1/webhooks?event_type=call.*", invalid: true, want: 422, check: errorsOn("event_type")},
		{name: "list/422/agent_id", method: get, path: "/v1/webhooks?agent_id=..", invalid: true, want: 422, check: errorsOn("agent_id")},
		{name: "list/422/cursor-conflict", method: get, path: "/v1/webhooks?cursor=a&starting_after=b", want: 422, check: errorsOn("starting_after")},

		// GET /v1/webhooks/{id}
		{name: "get/200", method: get, path: "/v1/webhooks/{wh}", want: 200,
			check: expect(map[string]any{"name": "crm", "id": "{wh}"}, absent("secret"))},
		{name: "get/401", method: get, path: "/v1/webhooks/{wh}", key: keyNone, invalid: true, want: 401},
		{name: "get/404", method: get, path: "/v1/webhooks/wh_nosuch", want: 404},
		{name: "get/404/another-tenants", method: get, path: "/v1/webhooks/{other_wh}", want: 404},

		// DELETE /v1/webhooks/{id}
		{name: "delete/401", method: del, path: "/v1/webhooks/{wh_delete}", key: keyNone, invalid: true, want: 401},
		{name: "delete/404/another-tenants", method: del, path: "/v1/webhooks/{other_wh}", want: 404},
		{name: "delete/204", method: del, path: "/v1/webhooks/{wh_delete}", want: 204},
		{name: "delete/404/gone", method: del, path: "/v1/webhooks/{wh_delete}", want: 404},

		// GET /v1/event-types
		{name: "event-types/200", method: get, path: "/v1/event-types", want: 200, check: present("data")},
		{name: "event-types/401", method: get, path: "/v1/event-types", key: keyNone, invalid: true, want: 401},

		// POST /v1/events
		{name: "events/202", method: post, path: "/v1/events", want: 202,
			body:  `{"id": "evt-1", "type": "call.started", "agent_id": "agent-1", "data": {"call": 1}, "occurred_at": "2026-01-02T15:04:05Z"}`,
			check: expect(map[string]any{"id": "evt-1", "duplicate": false})},
		{name: "events/202/duplicate", method: post, path: "/v1/events", want: 202,
			body:  `{"id": "evt-1", "type": "call.started", "data": {"call": 1}}`,
			check: expect(map[string]any{"id": "evt-1", "duplicate": true})},
		{name: "events/202/generated-id", method: post, path: "/v1/events", want: 202,
			body: `{"type": "contact.created", "data": {}}`, check: expect(map[string]any{"duplicate": false}, present("id"))},
		{name: "events/400/malformed", method: post, path: "/v1/events", invalid: true, want: 400, body: `{"type":`},
		{name: "events/400/wrong-type", method: post, path: "/v1/events", invalid: true, want: 400, body: `{"type": 7, "data": {}}`},
		{name: "events/401", method: post, path: "/v1/events", key: keyNone, invalid: true, want: 401, body: `{"type": "call.started", "data": {}}`},
		{name: "events/422/missing", method: post, path: "/v1/events", invalid: true, want: 422, body: `{}`, check: errorsOn("type", "data")},
		{name: "events/422/fields", method: post, path: "/v1/events", invalid: true, want: 422,
			body:  `{"id": "a b", "type": "call..started", "agent_id": "` + strings.Repeat("a", 256) + `", "data": [1], "occurred_at": "yesterday"}`,
			check: errorsOn("id", "type", "agent_id", "data", "occurred_at")},
	}
}

// webhookFieldCases exercise every webhook field and its rules, and
// PATCH, defaults, test, secret and rotate.
func webhookFieldCases() []specCase {
	const (
		post  = http.MethodPost
		get   = http.MethodGet
		patch = http.MethodPatch
	)
	create := func(name string, set map[string]any, check func(*testing.T, *specEnv, map[string]any)) specCase {
		return specCase{name: "create/201/" + name, method: post, path: "/v1/webhooks", want: 201, body: webhookJSON(set), check: check}
	}
	invalid := func(name string, set map[string]any, fields ...string) specCase {
		return specCase{name: "create/422/" + name, method: post, path: "/v1/webhooks", invalid: true, want: 422,
			body: webhookJSON(set), check: errorsOn(fields...)}
	}
	auth := func(kv ...string) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return map[string]any{"auth": m}
	}
	return []specCase{
		create("every-field", map[string]any{
			"name": "everything", "method": "PUT", "timeout": 60, "max_retries": 5,
			"auth":          map[string]any{"type": "basic", "username": "ada", "password": "s3cret"},
			"headers":       map[string]any{"X-Tenant": "acme", "Authorization-Hint": "none"},
			"properties":    map[string]any{"region": "eu", "tier": map[string]any{"level": 2}},
			"is_alert_hook": false,
		}, expect(map[string]any{
			"method": "PUT", "auth": map[string]any{"type": "basic", "username": "ada"},
			"headers":    map[string]any{"X-Tenant": "acme", "Authorization-Hint": "none"},
			"properties": map[string]any{"region": "eu", "tier": map[string]any{"level": 2}}, "is_alert_hook": false,
		}, save("wh_full", "id"))),
		create("failing-receiver", map[string]any{"url": "{fail_recv}"}, save("wh_fail", "id")),
		create("method-default", nil, expect(map[string]any{"method": "POST", "is_alert_hook": false})),
		create("method-PATCH", map[string]any{"method": "PATCH"}, expect(map[string]any{"method": "PATCH"})),
		create("auth-none", auth("type", "none"), expect(map[string]any{"auth": map[string]any{"type": "none"}})),
		create("auth-bearer", auth("type", "bearer", "token", "t0k3n"), expect(map[string]any{"auth": map[string]any{"type": "bearer"}})),
		create("auth-authheader", auth("type", "authheader", "token", "Token t0k3n"), expect(map[string]any{"auth": map[string]any{"type": "authheader"}})),
		create("auth-header", auth("type", "header", "token", "t0k3n", "name", "X-Api-Key"),
			expect(map[string]any{"auth": map[string]any{"type": "header", "name": "X-Api-Key"}})),
		create("auth-querystring", auth("type", "querystring", "token", "t0k3n"),
			expect(map[string]any{"auth": map[string]any{"type": "querystring", "name": "token"}})),
		create("alert-hook", map[string]any{"is_alert_hook": true, "auth": map[string]any{"type": "bearer", "token": "********"}},
			expect(map[string]any{"is_alert_hook": true})),
		invalid("method-GET", map[string]any{"method": "GET"}, "method"),
		invalid("auth-unknown-type", auth("type", "digest", "token", "t"), "auth"),
		invalid("auth-basic-without-password", auth("type", "basic", "username", "ada"), "auth"),
		invalid("auth-basic-without-username", auth("type", "basic", "password", "pw"), "auth"),
		invalid("auth-basic-with-token", auth("type", "basic", "username", "ada", "password", "pw", "token", "t"), "auth"),
		invalid("auth-none-with-token", auth("type", "none", "token", "t"), "auth"),
		invalid("auth-none-with-credentials", auth("type", "none", "username", "ada", "password", "pw"), "auth"),
		invalid("auth-bearer-without-token", auth("type", "bearer"), "auth"),
		invalid("auth-authheader-without-token", auth("type", "authheader"), "auth"),
		invalid("auth-header-without-token", auth("type", "header"), "auth"),
		invalid("auth-querystring-without-token", auth("type", "querystring"), "auth"),
		invalid("auth-bearer-with-credentials", auth("type", "bearer", "token", "t", "username", "ada"), "auth"),
		invalid("headers-signature", map[string]any{"headers": map[string]any{"webhook-signature": "v1,x"}}, "headers"),
		invalid("headers-content-type", map[string]any{"headers": map[string]any{"Content-Type": "text/plain"}}, "headers"),
		invalid("headers-host", map[string]any{"headers": map[string]any{"Host": "evil.example"}}, "headers"),
		invalid("headers-hop-by-hop", map[string]any{"headers": map[string]any{"Transfer-Encoding": "chunked"}}, "headers"),
		invalid("headers-bad-name", map[string]any{"headers": map[string]any{"X Bad": "v"}}, "headers"),
		invalid("properties-not-an-object", map[string]any{"properties": []int{1}}, "properties"),

		// GET /v1/webhooks/{id}: the new fields, never a credential
		{name: "get/200/new-fields", method: get, path: "/v1/webhooks/{wh_full}", want: 200,
			check: expect(map[string]any{"method": "PUT", "auth": map[string]any{"type": "basic", "username": "ada"}},
				present("headers", "properties", "is_alert_hook"), absent("secret"))},

		// GET /v1/webhooks/defaults
		{name: "defaults/200", method: get, path: "/v1/webhooks/defaults", want: 200,
			check: expect(map[string]any{"method": "POST", "timeout": 30, "max_retries": 3, "status": "active", "enabled": true}, absent("id"))},
		{name: "defaults/401", method: get, path: "/v1/webhooks/defaults", key: keyNone, invalid: true, want: 401},

		// PATCH /v1/webhooks/{id}
		{name: "patch/200", method: patch, path: "/v1/webhooks/{wh}", want: 200, body: `{"timeout": 60, "enabled": false}`,
			check: expect(map[string]any{"timeout": 60, "status": "inactive", "enabled": false, "name": "crm", "max_retries": 3}, absent("secret"))},
		{name: "patch/200/back", method: patch, path: "/v1/webhooks/{wh}", want: 200, body: `{"status": "active", "url": "{recv}"}`,
			check: expect(map[string]any{"timeout": 60, "status": "active"})},
		{name: "patch/400", method: patch, path: "/v1/webhooks/{wh}", invalid: true, want: 400, body: `{"timeout": "60"}`},
		{name: "patch/401", method: patch, path: "/v1/webhooks/{wh}", key: keyNone, invalid: true, want: 401, body: `{}`},
		{name: "patch/404", method: patch, path: "/v1/webhooks/wh_nosuch", want: 404, body: `{"timeout": 60}`},
		{name: "patch/404/another-tenants", method: patch, path: "/v1/webhooks/{other_wh}", want: 404, body: `{"timeout": 60}`},
		{name: "patch/409", method: patch, path: "/v1/webhooks/{wh}", want: 409, body: `{"name": "everything"}`},
		{name: "patch/422", method: patch, path: "/v1/webhooks/{wh}", invalid: true, want: 422,
			body: `{"timeout": 121, "events": [], "auth": {"type": "basic"}}`, check: errorsOn("timeout", "events", "auth")},

		// POST /v1/webhooks/{id}/test
		{name: "test/200/success", method: post, path: "/v1/webhooks/{wh}/test", want: 200,
			check: expect(map[string]any{"success": true, "status": 200}, present("latency_ms", "event_id", "body"))},
		{name: "test/200/receiver-fails", method: post, path: "/v1/webhooks/{wh_fail}/test", want: 200,
			check: expect(map[string]any{"success": false, "status": 500})},
		{name: "test/401", method: post, path: "/v1/webhooks/{wh}/test", key: keyNone, invalid: true, want: 401},
		{name: "test/404/another-tenants", method: post, path: "/v1/webhooks/{other_wh}/test", want: 404},

		// GET /v1/webhooks/{id}/secret and POST .../rotate
		{name: "secret/200", method: get, path: "/v1/webhooks/{wh_inactive}/secret", want: 200,
			check: expect(map[string]any{"secret": validSecret, "retiring_secrets": []any{}})},
		{name: "secret/401", method: get, path: "/v1/webhooks/{wh}/secret", key: keyNone, invalid: true, want: 401},
		{name: "secret/404/another-tenants", method: get, path: "/v1/webhooks/{other_wh}/secret", want: 404},
		{name: "rotate/200", method: post, path: "/v1/webhooks/{wh_inactive}/secret/rotate", want: 200, body: `{"grace_period": 3600}`,
			check: func(t *testing.T, _ *specEnv, v map[string]any) {
				if v["secret"] == validSecret {
					t.Errorf("the secret did not change: %v", v)
				}
				if r, _ := v["retiring_secrets"].([]any); len(r) != 1 {
					t.Errorf("want the old secret retiring: %v", v)
				}
			}},
		{name: "rotate/200/given-secret", method: post, path: "/v1/webhooks/{wh}/secret/rotate", want: 200,
			body: `{"secret": "` + validSecret + `", "grace_period": 0}`, check: expect(map[string]any{"secret": validSecret})},
		{name: "rotate/200/defaults", method: post, path: "/v1/webhooks/{wh}/secret/rotate", want: 200, body: `{}`, check: present("secret")},
		{name: "rotate/400", method: post, path: "/v1/webhooks/{wh}/secret/rotate", invalid: true, want: 400, body: `{"grace_period": "1h"}`},
		{name: "rotate/401", method: post, path: "/v1/webhooks/{wh}/secret/rotate", key: keyNone, invalid: true, want: 401, body: `{}`},
		{name: "rotate/404/another-tenants", method: post, path: "/v1/webhooks/{other_wh}/secret/rotate", want: 404, body: `{}`},
		{name: "rotate/422", method: post, path: "/v1/webhooks/{wh}/secret/rotate", invalid: true, want: 422,
			body: `{"grace_period": 604801, "secret": "short"}`, check: errorsOn("grace_period", "secret")},
		{name: "rotate/422/negative-grace", method: post, path: "/v1/webhooks/{wh}/secret/rotate", invalid: true, want: 422,
			body: `{"grace_period": -1}`, check: errorsOn("grace_period")},
	}
}

// agentCases exercise the agent routes.
func agentCases() []specCase {
	const (
		post = http.MethodPost
		get  = http.MethodGet
		put  = http.MethodPut
		del  = http.MethodDelete
	)
	return []specCase{
		{name: "put/201", method: put, path: "/v1/agents/agent-1", want: 201, body: `{"name": "Ada"}`,
			check: expect(map[string]any{"id": "agent-1", "name": "Ada"})},
		{name: "put/200", method: put, path: "/v1/agents/agent-1", want: 200, body: `{"name": "Ada L."}`,
			check: expect(map[string]any{"id": "agent-1", "name": "Ada L."})},
		{name: "put/201/no-name", method: put, path: "/v1/agents/agent-2", want: 201, body: `{}`},
		{name: "put/201/other-tenant-same-id", method: put, path: "/v1/agents/agent-1", key: keyOther, want: 201, body: `{}`},
		{name: "put/400", method: put, path: "/v1/agents/agent-3", invalid: true, want: 400, body: `{"name": 1}`},
		{name: "put/401", method: put, path: "/v1/agents/agent-3", key: keyNone, invalid: true, want: 401, body: `{}`},
		{name: "put/422/bad-id", method: put, path: "/v1/agents/bad%20agent", invalid: true, want: 422, body: `{}`},
		{name: "put/422/long-name", method: put, path: "/v1/agents/agent-3", invalid: true, want: 422,
			body: `{"name": "` + name255 + `n"}`, check: errorsOn("name")},
		{name: "get/200", method: get, path: "/v1/agents/agent-1", want: 200, check: expect(map[string]any{"name": "Ada L."})},
		{name: "get/401", method: get, path: "/v1/agents/agent-1", key: keyNone, invalid: true, want: 401},
		{name: "get/404", method: get, path: "/v1/agents/agent-9", want: 404},
		{name: "list/200", method: get, path: "/v1/agents?limit=1", want: 200,
			check: expect(map[string]any{"has_more": true}, listLen(1), present("next_cursor"))},
		{name: "list/401", method: get, path: "/v1/agents", key: keyNone, invalid: true, want: 401},
		{name: "list/422", method: get, path: "/v1/agents?limit=0", invalid: true, want: 422, check: errorsOn("limit")},

		// POST /v1/agents/{agent_id}/webhooks for an agent that exists
		{name: "create-webhook/201", method: post, path: "/v1/agents/agent-2/webhooks", want: 201,
			body:  webhookJSON(map[string]any{"name": "crm", "agent_id": "agent-2"}),
			check: expect(map[string]any{"agent_id": "agent-2", "name": "crm"}, present("secret"), save("wh_agent", "id"))},
		{name: "create-webhook/409", method: post, path: "/v1/agents/agent-2/webhooks", want: 409,
			body: webhookJSON(map[string]any{"name": "crm"}), check: errorsOn("name")},
		{name: "create-webhook/404/unknown-agent", method: post, path: "/v1/agents/ghost/webhooks", want: 404,
			body: webhookJSON(nil), check: func(t *testing.T, _ *specEnv, v map[string]any) {
				if msg, _ := v["message"].(string); !strings.Contains(msg, "ghost") {
					t.Errorf("the 404 does not name the agent: %v", v)
				}
			}},
		{name: "list-webhooks/200/by-agent", method: get, path: "/v1/webhooks?agent_id=agent-2", want: 200, check: listLen(1)},

		{name: "delete/401", method: del, path: "/v1/agents/agent-2", key: keyNone, invalid: true, want: 401},
		{name: "delete/204", method: del, path: "/v1/agents/agent-2", want: 204},
		{name: "delete/204/took-its-webhooks", method: get, path: "/v1/webhooks/{wh_agent}", want: 404},
		{name: "delete/404", method: del, path: "/v1/agents/agent-2", want: 404},
	}
}

// eventTypeCases exercise tenants' own event types and the custom flag.
func eventTypeCases() []specCase {
	const (
		post = http.MethodPost
		get  = http.MethodGet
	)
	return []specCase{
		{name: "create/201", method: post, path: "/v1/event-types", want: 201,
			body:  `{"name": "ticket.created", "description": "A support ticket was created."}`,
			check: expect(map[string]any{"name": "ticket.created", "custom": true})},
		{name: "create/409", method: post, path: "/v1/event-types", want: 409, body: `{"name": "ticket.created", "description": "again"}`},
		{name: "create/409/default-type", method: post, path: "/v1/event-types", want: 409, body: `{"name": "call.started", "description": ""}`},
		{name: "create/400", method: post, path: "/v1/event-types", invalid: true, want: 400, body: `{"name": ["ticket.created"]}`},
		{name: "create/401", method: post, path: "/v1/event-types", key: keyNone, invalid: true, want: 401, body: `{"name": "a.b"}`},
		{name: "create/422", method: post, path: "/v1/event-types", invalid: true, want: 422, body: `{"name": "ticket created"}`, check: errorsOn("name")},
		{name: "create/422/too-long", method: post, path: "/v1/event-types", invalid: true, want: 422,
			body: `{"name": "` + strings.Repeat("t", 257) + `"}`, check: errorsOn("name")},
		{name: "list/200/paged", method: get, path: "/v1/event-types?limit=2", want: 200,
			check: func(t *testing.T, _ *specEnv, v map[string]any) {
				if data, _ := v["data"].([]any); len(data) != 2 || v["has_more"] != true || v["next_cursor"] != "call.answered" {
					t.Errorf("want the first 2 types and a cursor: %v", v)
				}
			}},
		{name: "list/200/next-page", method: get, path: "/v1/event-types?limit=250&cursor=call.answered", want: 200,
			check: func(t *testing.T, _ *specEnv, v map[string]any) {
				if data, _ := v["data"].([]any); len(data) == 0 || v["has_more"] != false {
					t.Errorf("want the rest of the catalogue: %v", v)
				}
			}},
		{name: "list/422", method: get, path: "/v1/event-types?limit=0&cursor=no.such.type", invalid: true, want: 422, check: errorsOn("limit")},
		{name: "list/422/cursor", method: get, path: "/v1/event-types?cursor=no.such.type", want: 422, check: errorsOn("cursor")},
		{name: "list/200/custom-flag", method: get, path: "/v1/event-types", want: 200,
			check: func(t *testing.T, _ *specEnv, v map[string]any) {
				data, _ := v["data"].([]any)
				var custom, builtin int
				for _, d := range data {
					m, _ := d.(map[string]any)
					switch m["custom"] {
					case true:
						custom++
					case false:
						builtin++
					}
				}
				if custom != 1 || builtin == 0 {
					t.Errorf("want 1 custom type and the defaults, each with custom set: %v", v)
				}
			}},
		{name: "list/200/not-another-tenants", method: get, path: "/v1/event-types", key: keyOther, want: 200,
			check: func(t *testing.T, _ *specEnv, v map[string]any) {
				if strings.Contains(jsonOf(v), "ticket.created") {
					t.Errorf("another tenant's type is listed: %v", v)
				}
			}},
		{name: "webhook-on-custom-type/201", method: post, path: "/v1/webhooks", want: 201,
			body: webhookJSON(map[string]any{"events": []string{"ticket.*"}})},
		{name: "webhook-on-custom-type/422/another-tenant", method: post, path: "/v1/webhooks", key: keyOther, want: 422,
			body: webhookJSON(map[string]any{"events": []string{"ticket.created"}}), check: errorsOn("events")},
	}
}

// adminCases exercise admin keys and their routes.
func adminCases() []specCase {
	const (
		post = http.MethodPost
		get  = http.MethodGet
	)
	return []specCase{
		{name: "tenants/201", method: post, path: "/v1/tenants", want: 201, body: `{"name": "acme"}`,
			check: expect(map[string]any{"name": "acme"}, save("tenant", "id"))},
		{name: "tenants/400", method: post, path: "/v1/tenants", invalid: true, want: 400, body: `{"name": true}`},
		{name: "tenants/401", method: post, path: "/v1/tenants", key: keyNone, invalid: true, want: 401, body: `{"name": "b"}`},
		{name: "tenants/403", method: post, path: "/v1/tenants", key: keyUser, want: 403, body: `{"name": "b"}`},
		{name: "tenants/409", method: post, path: "/v1/tenants", want: 409, body: `{"name": "acme"}`},
		{name: "tenants/422", method: post, path: "/v1/tenants", invalid: true, want: 422, body: `{"name": ""}`, check: errorsOn("name")},

		{name: "keys/201", method: post, path: "/v1/tenants/{tenant}/keys", want: 201, body: `{"name": "ci", "admin": false}`,
			check: expect(map[string]any{"name": "ci", "admin": false, "tenant_id": "{tenant}"}, func(t *testing.T, e *specEnv, v map[string]any) {
				key, _ := v["key"].(string)
				e.keys[keyNew] = key
			})},
		{name: "keys/201/the-key-works-in-its-tenant", method: get, path: "/v1/webhooks", key: keyNew, want: 200, check: listLen(0)},
		{name: "keys/201/and-is-no-admin", method: post, path: "/v1/tenants", key: keyNew, want: 403, body: `{"name": "c"}`},
		{name: "keys/400", method: post, path: "/v1/tenants/{tenant}/keys", invalid: true, want: 400, body: `{"name": "x", "admin": "yes"}`},
		{name: "keys/401", method: post, path: "/v1/tenants/{tenant}/keys", key: keyNone, invalid: true, want: 401, body: `{"name": "x"}`},
		{name: "keys/403", method: post, path: "/v1/tenants/{tenant}/keys", key: keyUser, want: 403, body: `{"name": "x"}`},
		{name: "keys/404", method: post, path: "/v1/tenants/ten_nosuch/keys", want: 404, body: `{"name": "x"}`},
		{name: "keys/409", method: post, path: "/v1/tenants/{tenant}/keys", want: 409, body: `{"name": "ci"}`},
		{name: "keys/422", method: post, path: "/v1/tenants/{tenant}/keys", invalid: true, want: 422, body: `{"name": ""}`, check: errorsOn("name")},
	}
}

// deadLetterCases exercise GET /v1/dead-letters and POST
// /v1/dead-letters/replay on dead letters stored in SB_DEAD as the
// deliverer stores them.
func deadLetterCases() []specCase {
	const (
		post = http.MethodPost
		get  = http.MethodGet
	)
	return []specCase{
		{name: "setup/webhook", method: post, path: "/v1/webhooks", want: 201, body: webhookJSON(nil),
			check: func(t *testing.T, e *specEnv, v map[string]any) {
				save("dl_wh", "id")(t, e, v)
				e.putDeadLetter(t, "dl_1", e.vars["dl_wh"], "retries_exhausted", 500)
				e.putDeadLetter(t, "dl_2", e.vars["dl_wh"], "gone", 410)
				e.putDeadLetter(t, "dl_3", e.vars["dl_wh"], "target_refused", 0)
			}},
		{name: "setup/inactive-webhook", method: post, path: "/v1/webhooks", want: 201, body: webhookJSON(map[string]any{"status": "inactive"}),
			check: func(t *testing.T, e *specEnv, v map[string]any) {
				save("dl_wh_inactive", "id")(t, e, v)
				e.putDeadLetter(t, "dl_inactive", e.vars["dl_wh_inactive"], "webhook_inactive", 0)
			}},

		// GET /v1/dead-letters
		{name: "list/200", method: get, path: "/v1/dead-letters", want: 200,
			check: expect(map[string]any{"has_more": false}, listLen(4), absent("next_cursor"))},
		{name: "list/200/first-page", method: get, path: "/v1/dead-letters?limit=1", want: 200,
			check: expect(map[string]any{"has_more": true, "next_cursor": "{dl_1}"}, listLen(1), save("dl_cursor", "next_cursor"))},
		{name: "list/200/next-page", method: get, path: "/v1/dead-letters?limit=250&cursor={dl_cursor}", want: 200,
			check: expect(map[string]any{"has_more": false}, listLen(3))},
		{name: "list/200/filters", method: get, want: 200,
			path:  "/v1/dead-letters?webhook_id={dl_wh}&reason=gone&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z",
			check: listLen(1)},
		{name: "list/200/another-tenant-sees-none", method: get, path: "/v1/dead-letters", key: keyOther, want: 200, check: listLen(0)},
		{name: "list/401", method: get, path: "/v1/dead-letters", key: keyNone, invalid: true, want: 401},
		{name: "list/422", method: get, invalid: true, want: 422,
			path:  "/v1/dead-letters?limit=0&cursor=x&since=today&until=2026-13-01T00:00:00Z&webhook_id=a.b&reason=Gone",
			check: errorsOn("limit", "cursor", "since", "until", "webhook_id", "reason")},
		{name: "list/422/until-before-since", method: get, want: 422,
			path: "/v1/dead-letters?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", check: errorsOn("until")},

		// POST /v1/dead-letters/replay
		{name: "replay/202/another-tenant", method: post, path: "/v1/dead-letters/replay", key: keyOther, want: 202,
			body: `{"ids": ["{dl_1}"]}`, check: expect(map[string]any{"replayed": 0, "not_found": []string{"{dl_1}"}})},
		{name: "replay/202/ids", method: post, path: "/v1/dead-letters/replay", want: 202,
			body:  `{"ids": ["{dl_1}", "dl_999999"]}`,
			check: expect(map[string]any{"replayed": 1, "not_found": []string{"dl_999999"}, "has_more": false})},
		{name: "replay/202/again", method: post, path: "/v1/dead-letters/replay", want: 202,
			body: `{"ids": ["{dl_1}"]}`, check: expect(map[string]any{"replayed": 0, "not_found": []string{"{dl_1}"}})},
		{name: "replay/202/webhook", method: post, path: "/v1/dead-letters/replay", want: 202,
			body:  `{"webhook_id": "{dl_wh}", "reason": "gone", "since": "2000-01-01T00:00:00Z"}`,
			check: expect(map[string]any{"replayed": 1, "not_found": []string{}, "has_more": false})},
		{name: "replay/202/listed-no-more", method: get, path: "/v1/dead-letters?webhook_id={dl_wh}", want: 200, check: listLen(1)},
		{name: "replay/400", method: post, path: "/v1/dead-letters/replay", invalid: true, want: 400, body: `{"ids": "dl_1"}`},
		{name: "replay/401", method: post, path: "/v1/dead-letters/replay", key: keyNone, invalid: true, want: 401, body: `{"ids": ["dl_1"]}`},
		{name: "replay/404/another-tenants-webhook", method: post, path: "/v1/dead-letters/replay", want: 404,
			body: `{"webhook_id": "{other_wh}"}`},
		{name: "replay/409/inactive", method: post, path: "/v1/dead-letters/replay", want: 409,
			body: `{"ids": ["{dl_3}", "{dl_inactive}"]}`, check: errorsOn("webhook_id")},
		{name: "replay/409/inactive-webhook", method: post, path: "/v1/dead-letters/replay", want: 409,
			body: `{"webhook_id": "{dl_wh_inactive}"}`, check: errorsOn("webhook_id")},
		{name: "replay/409/kept", method: get, path: "/v1/dead-letters", want: 200, check: listLen(2)},
		{name: "replay/422", method: post, path: "/v1/dead-letters/replay", invalid: true, want: 422,
			body: `{"ids": [], "reason": "gone"}`, check: errorsOn("ids", "reason")},
		{name: "replay/422/both", method: post, path: "/v1/dead-letters/replay", invalid: true, want: 422,
			body: `{"ids": ["dl_1"], "webhook_id": "wh_1", "until": "never"}`, check: errorsOn("ids", "until")},
	}
}

// putDeadLetter stores a dead letter of the default tenant for webhook in
// SB_DEAD as the deliverer does (consumer/deadletter.go) and saves its id
// as e.vars[name].
func (e *specEnv) putDeadLetter(t *testing.T, name, webhook, reason string, status int) {
	t.Helper()
	ctx := context.Background()
	tenant, err := e.db.EnsureTenant(ctx, store.DefaultTenantName)
	if err != nil {
		t.Fatal(err)
	}
	event := "evt_" + name
	m := nats.NewMsg(streams.DeadSubject(tenant.ID, webhook))
	m.Header.Set(streams.HeaderEventID, event)
	m.Header.Set(streams.HeaderTenant, tenant.ID)
	m.Header.Set(streams.HeaderWebhookID, webhook)
	m.Header.Set(streams.HeaderAcceptedAt, strconv.FormatInt(time.Now().UnixNano(), 10))
	m.Header.Set(streams.HeaderReason, reason)
	m.Header.Set(streams.HeaderAttempts, "4")
	if status > 0 {
		m.Header.Set(streams.HeaderLastStatus, strconv.Itoa(status))
		m.Header.Set(streams.HeaderLastError, "status "+strconv.Itoa(status))
	}
	m.Data = []byte(`{"id":"` + event + `","type":"call.started","timestamp":"2026-01-02T03:04:05Z","data":{}}`)
	ack, err := e.js.JS.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	e.vars[name] = control.DeadLetterID(ack.Sequence)
}

// attemptCases exercise the attempt log, an event's deliveries and
// recovery. The attempts are stored as the ingester stores them; the event
// goes through ingest into SB_EVENTS.
func attemptCases() []specCase {
	const (
		post = http.MethodPost
		get  = http.MethodGet
	)
	// seed stores two attempts of evt-att to att_wh: a failure, then a
	// scheduled retry's failure (which counts, but stops nothing).
	seed := func(t *testing.T, e *specEnv, _ map[string]any) {
		tenant := e.vars["tenant_id"]
		at := time.Now().UTC()
		_, err := e.db.RecordAttempts(context.Background(), []switchboard.Attempt{
			{ID: switchboard.NewID("att_"), TenantID: tenant, WebhookID: e.vars["att_wh"], EventID: "evt-att", EventType: "call.started",
				Number: 1, At: at, Outcome: switchboard.AttemptRetrying, StatusCode: 500, LatencyMS: 12.5,
				ErrorClass: "status", Error: "status 500: oops", ResponseBody: "oops"},
			{ID: switchboard.NewID("att_"), TenantID: tenant, WebhookID: e.vars["att_wh"], EventID: "evt-att", EventType: "call.started",
				Number: 2, At: at.Add(time.Second), Outcome: switchboard.AttemptDeadLettered, Reason: "retries_exhausted",
				LatencyMS: 5000, ErrorClass: "timeout", Error: "request failed: context deadline exceeded"},
		}, 0)
		if err != nil {
			t.Fatal(err)
		}
	}
	return []specCase{
		{name: "setup/webhook", method: post, path: "/v1/webhooks", want: 201,
			body: webhookJSON(map[string]any{"events": []string{"call.*"}}), check: save("att_wh", "id")},
		{name: "setup/tenant", method: get, path: "/v1/webhooks/{att_wh}", want: 200, check: func(t *testing.T, e *specEnv, _ map[string]any) {
			wh, err := e.db.FindWebhookByID(switchboard.NewContextWithTenant(context.Background(), mustTenant(t, e)), e.vars["att_wh"])
			if err != nil {
				t.Fatal(err)
			}
			e.vars["tenant_id"] = wh.TenantID
		}},
		{name: "setup/event", method: post, path: "/v1/events", want: 202,
			body: `{"id": "evt-att", "type": "call.started", "agent_id": "agent-1", "data": {"call": 2}}`},

		// The matcher's record of the webhooks it chose for evt-att, as the
		// attempt ingester stores it.
		{name: "setup/matched", method: get, path: "/v1/webhooks/{att_wh}", want: 200, check: func(t *testing.T, e *specEnv, _ map[string]any) {
			ctx := context.Background()
			stream, err := e.js.JS.Stream(ctx, streams.Events)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := stream.GetLastMsgForSubject(ctx, streams.EventSubject(e.vars["tenant_id"], "call.started"))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.db.RecordMatched(ctx, []store.Matched{{TenantID: e.vars["tenant_id"], EventID: "evt-att", EventType: "call.started",
				EventSeq: msg.Sequence, At: time.Now(), WebhookIDs: []string{e.vars["att_wh"]}}}); err != nil {
				t.Fatal(err)
			}
		}},

		// GET /v1/events/{id}, before any attempt: pending
		{name: "event/200/pending", method: get, path: "/v1/events/evt-att", want: 200,
			check: expect(map[string]any{"id": "evt-att", "type": "call.started", "agent_id": "agent-1", "data": map[string]any{"call": 2}},
				deliveryState("{att_wh}", "pending", 0))},

		// GET /v1/backlog, before any attempt: evt-att's delivery is owed
		{name: "backlog/200", method: get, path: "/v1/backlog", want: 200,
			check: expect(map[string]any{"total_pending": 1, "webhooks": 1, "limit": 20}, present("read_at"), listLen(1),
				func(t *testing.T, e *specEnv, v map[string]any) {
					row, _ := v["data"].([]any)[0].(map[string]any)
					if row["webhook_id"] != e.vars["att_wh"] || row["pending"] != 1.0 || row["tenant_id"] != e.vars["tenant_id"] {
						t.Errorf("data[0] = %v, want att_wh with 1 pending", row)
					}
				})},
		{name: "backlog/200/tenant-filter", method: get, path: "/v1/backlog?tenant_id={tenant_id}&limit=5", want: 200,
			check: expect(map[string]any{"total_pending": 1, "tenant_id": "{tenant_id}", "limit": 5}, listLen(1))},
		{name: "backlog/200/own-tenant", method: get, path: "/v1/backlog", key: keyUser, want: 200,
			check: expect(map[string]any{"total_pending": 1, "tenant_id": "{tenant_id}"}, listLen(1))},
		{name: "backlog/200/other-tenant-sees-its-own", method: get, path: "/v1/backlog", key: keyOther, want: 200,
			check: expect(map[string]any{"total_pending": 0, "webhooks": 0}, listLen(0))},
		{name: "backlog/401", method: get, path: "/v1/backlog", key: keyNone, invalid: true, want: 401},
		{name: "backlog/403/another-tenant", method: get, path: "/v1/backlog?tenant_id={tenant_id}", key: keyOther, want: 403},
		{name: "backlog/422", method: get, path: "/v1/backlog?limit=0", invalid: true, want: 422, check: errorsOn("limit")},

		{name: "setup/attempts", method: get, path: "/v1/webhooks/{att_wh}", want: 200, check: seed},

		// GET /v1/backlog: the dead-lettered last attempt settled it
		{name: "backlog/200/settled", method: get, path: "/v1/backlog", want: 200,
			check: expect(map[string]any{"total_pending": 0, "webhooks": 0}, listLen(0))},

		// GET /v1/webhooks/{id}/attempts
		{name: "attempts/200", method: get, path: "/v1/webhooks/{att_wh}/attempts", want: 200,
			check: expect(map[string]any{"has_more": false}, listLen(2), firstAttempt(map[string]any{
				"attempt": 2, "outcome": "dead_lettered", "reason": "retries_exhausted", "status_code": 0, "error_class": "timeout",
			}))},
		{name: "attempts/200/first-page", method: get, path: "/v1/webhooks/{att_wh}/attempts?limit=1", want: 200,
			check: expect(map[string]any{"has_more": true}, listLen(1), save("att_cursor", "next_cursor"))},
		{name: "attempts/200/next-page", method: get, path: "/v1/webhooks/{att_wh}/attempts?limit=1&cursor={att_cursor}", want: 200,
			check: expect(map[string]any{"has_more": false}, listLen(1), firstAttempt(map[string]any{"attempt": 1, "response_body": "oops"}))},
		{name: "attempts/200/filters", method: get, want: 200,
			path:  "/v1/webhooks/{att_wh}/attempts?outcome=retrying&status_code=500&event_id=evt-att&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z",
			check: listLen(1)},
		{name: "attempts/200/filtered-out", method: get, path: "/v1/webhooks/{att_wh}/attempts?outcome=delivered", want: 200, check: listLen(0)},
		{name: "attempts/200/none", method: get, path: "/v1/webhooks/{wh}/attempts", want: 200, check: listLen(0)},
		{name: "attempts/401", method: get, path: "/v1/webhooks/{att_wh}/attempts", key: keyNone, invalid: true, want: 401},
		{name: "attempts/404", method: get, path: "/v1/webhooks/wh_nosuch/attempts", want: 404},
		{name: "attempts/404/another-tenants", method: get, path: "/v1/webhooks/{att_wh}/attempts", key: keyOther, want: 404},
		{name: "attempts/422", method: get, invalid: true, want: 422,
			path:  "/v1/webhooks/{att_wh}/attempts?limit=0&outcome=lost&status_code=99&since=yesterday&until=2026-13-01&event_id=a%20b",
			check: errorsOn("limit", "outcome", "status_code", "since", "until", "event_id")},
		{name: "attempts/422/until-before-since", method: get, want: 422,
			path:  "/v1/webhooks/{att_wh}/attempts?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
			check: errorsOn("until")},

		// GET /v1/events/{id}
		{name: "event/200", method: get, path: "/v1/events/evt-att", want: 200,
			check: expect(map[string]any{"id": "evt-att"}, deliveryState("{att_wh}", "dead_lettered", 2), present("accepted_at", "timestamp"),
				func(t *testing.T, e *specEnv, v map[string]any) {
					accepted, err := time.Parse(time.RFC3339Nano, v["accepted_at"].(string))
					if err != nil {
						t.Fatal(err)
					}
					e.vars["after_evt"] = accepted.Add(time.Microsecond).Format(time.RFC3339Nano)
				})},
		{name: "event/200/unattempted", method: get, path: "/v1/events/evt-1", want: 200, check: expect(map[string]any{"id": "evt-1"})},
		{name: "event/401", method: get, path: "/v1/events/evt-att", key: keyNone, invalid: true, want: 401},
		{name: "event/404", method: get, path: "/v1/events/evt-nosuch", want: 404},
		{name: "event/404/invalid-id", method: get, path: "/v1/events/a%20b", want: 404},
		{name: "event/404/another-tenants", method: get, path: "/v1/events/evt-att", key: keyOther, want: 404},

		// GET /v1/audit: the one delivery owed is dead-lettered
		{name: "audit/200", method: get, path: "/v1/audit?since=1h&grace=1m&limit=1000", want: 200,
			check: func(t *testing.T, _ *specEnv, v map[string]any) {
				total, _ := v["total"].(map[string]any)
				if total["deliveries_expected"] != 1.0 || total["dead_lettered"] != 1.0 || total["unaccounted"] != 0.0 {
					t.Errorf("total = %v, want one delivery expected, dead-lettered, none unaccounted", total)
				}
			}},
		{name: "audit/200/default-window", method: get, path: "/v1/audit", want: 200, check: expect(map[string]any{"truncated": false})},
		{name: "audit/401", method: get, path: "/v1/audit", key: keyNone, invalid: true, want: 401},
		{name: "audit/403", method: get, path: "/v1/audit", key: keyUser, want: 403},
		{name: "audit/422", method: get, path: "/v1/audit?since=yesterday&grace=0s&limit=0", invalid: true, want: 422,
			check: errorsOn("since", "grace", "limit")},
		{name: "audit/422/too-far-back", method: get, path: "/v1/audit?since=2000-01-01T00:00:00Z", want: 422, check: errorsOn("since")},

		// POST /v1/webhooks/{id}/recover
		{name: "recover/202", method: post, path: "/v1/webhooks/{att_wh}/recover?since=2000-01-01T00:00:00Z", want: 202,
			check: expect(map[string]any{"queued": 1, "limit": 10000, "has_more": false, "webhook_id": "{att_wh}"}, present("recover_id"))},
		{name: "recover/202/nothing-since", method: post, path: "/v1/webhooks/{att_wh}/recover?since={after_evt}", want: 202,
			check: expect(map[string]any{"queued": 0})},
		{name: "recover/401", method: post, path: "/v1/webhooks/{att_wh}/recover?since=2000-01-01T00:00:00Z", key: keyNone, invalid: true, want: 401},
		{name: "recover/404/another-tenants", method: post, path: "/v1/webhooks/{att_wh}/recover?since=2000-01-01T00:00:00Z", key: keyOther, want: 404},
		{name: "recover/409/inactive", method: post, path: "/v1/webhooks/{wh_inactive}/recover?since=2000-01-01T00:00:00Z", want: 409},
		{name: "recover/422/missing", method: post, path: "/v1/webhooks/{att_wh}/recover", invalid: true, want: 422, check: errorsOn("since")},
		{name: "recover/422/future", method: post, path: "/v1/webhooks/{att_wh}/recover?since=2999-01-01T00:00:00Z", want: 422, check: errorsOn("since")},
		{name: "recover/422/not-a-time", method: post, path: "/v1/webhooks/{att_wh}/recover?since=yesterday", invalid: true, want: 422, check: errorsOn("since")},
	}
}

// mustTenant returns the default tenant's id.
func mustTenant(t *testing.T, e *specEnv) string {
	t.Helper()
	key, err := e.db.Authenticate(context.Background(), e.keys[keyAdmin])
	if err != nil {
		t.Fatal(err)
	}
	return key.TenantID
}

// firstAttempt checks fields of the first attempt of a list.
func firstAttempt(want map[string]any) func(*testing.T, *specEnv, map[string]any) {
	return func(t *testing.T, e *specEnv, v map[string]any) {
		data, _ := v["data"].([]any)
		if len(data) == 0 {
			t.Fatalf("no attempts: %v", v)
		}
		first, _ := data[0].(map[string]any)
		expect(want)(t, e, first)
	}
}

// deliveryState checks the state and number of attempts of the delivery
// of an event to webhook.
func deliveryState(webhook, state string, attempts int) func(*testing.T, *specEnv, map[string]any) {
	return func(t *testing.T, e *specEnv, v map[string]any) {
		deliveries, _ := v["deliveries"].([]any)
		for _, d := range deliveries {
			d, _ := d.(map[string]any)
			if d["webhook_id"] != e.fill(webhook) {
				continue
			}
			if got, _ := d["attempts"].([]any); d["state"] != state || len(got) != attempts {
				t.Errorf("delivery to %s: %v, want state %s with %d attempts", webhook, d, state, attempts)
			}
			return
		}
		t.Errorf("no delivery to %s in %v", webhook, v)
	}
}
