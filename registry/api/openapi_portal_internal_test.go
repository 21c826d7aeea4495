package api

import (
	"net/http"
	"strings"
	"testing"
)

// Keys of portal links that portalLinkCases create.
const (
	keyPortal      = "portal"       // a tenant-wide link of the default tenant
	keyPortalAgent = "portal_agent" // a link scoped to the agent portal-agent
)

// savePortalToken stores the token in a created link's URL as e.keys[key],
// and its id as e.vars[key+"_id"].
func savePortalToken(key string) func(*testing.T, *specEnv, map[string]any) {
	return func(t *testing.T, e *specEnv, v map[string]any) {
		u, _ := v["url"].(string)
		_, token, ok := strings.Cut(u, "/portal/#token=")
		id, _ := v["id"].(string)
		if !ok || id == "" {
			t.Fatalf("no token or id in %v", v)
		}
		e.keys[key] = token
		e.vars[key+"_id"] = id
	}
}

// portalLinkCases exercise the portal-link routes, and a portal link's
// token standing for a key.
func portalLinkCases() []specCase {
	const (
		post = http.MethodPost
		get  = http.MethodGet
		del  = http.MethodDelete
	)
	return []specCase{
		{name: "setup/agent", method: http.MethodPut, path: "/v1/agents/portal-agent", want: 201, body: `{"name": "Portal"}`},
		{name: "create/201/agent", method: post, path: "/v1/portal-links", want: 201,
			body:  `{"agent_id": "portal-agent", "expires_in": 600}`,
			check: expect(map[string]any{"agent_id": "portal-agent", "read_only": false}, present("url", "expires_at"), savePortalToken(keyPortalAgent))},
		{name: "create/201/defaults", method: post, path: "/v1/portal-links", want: 201, body: `{}`,
			check: expect(map[string]any{"agent_id": nil, "read_only": false}, savePortalToken(keyPortal))},
		{name: "create/201/read-only", method: post, path: "/v1/portal-links", want: 201, body: `{"read_only": true}`,
			check: expect(map[string]any{"read_only": true})},
		{name: "create/400/malformed", method: post, path: "/v1/portal-links", invalid: true, want: 400, body: `{`},
		{name: "create/401", method: post, path: "/v1/portal-links", key: keyNone, invalid: true, want: 401, body: `{}`},
		{name: "create/403/by-a-portal-link", method: post, path: "/v1/portal-links", key: keyPortal, want: 403, body: `{}`},
		{name: "create/404/unknown-agent", method: post, path: "/v1/portal-links", want: 404, body: `{"agent_id": "nosuch-agent"}`},
		{name: "create/422", method: post, path: "/v1/portal-links", invalid: true, want: 422,
			body: `{"agent_id": "..", "expires_in": 10}`, check: errorsOn("agent_id", "expires_in")},
		{name: "create/422/over-a-week", method: post, path: "/v1/portal-links", invalid: true, want: 422,
			body: `{"expires_in": 604801}`, check: errorsOn("expires_in")},

		{name: "current/200", method: get, path: "/v1/portal-links/current", key: keyPortalAgent, want: 200,
			check: expect(map[string]any{"agent_id": "portal-agent", "id": "{portal_agent_id}"}, absent("url"))},
		{name: "current/401", method: get, path: "/v1/portal-links/current", key: keyNone, invalid: true, want: 401},
		{name: "current/404/api-key", method: get, path: "/v1/portal-links/current", want: 404},
		{name: "webhooks/200/agent-link-sees-its-agent", method: get, path: "/v1/webhooks", key: keyPortalAgent, want: 200, check: listLen(0)},

		{name: "revoke/401", method: del, path: "/v1/portal-links/{portal_agent_id}", key: keyNone, invalid: true, want: 401},
		{name: "revoke/403/by-a-portal-link", method: del, path: "/v1/portal-links/{portal_agent_id}", key: keyPortal, want: 403},
		{name: "revoke/404", method: del, path: "/v1/portal-links/pl_nosuch", want: 404},
		{name: "revoke/404/another-tenants", method: del, path: "/v1/portal-links/{portal_agent_id}", key: keyOther, want: 404},
		{name: "revoke/204", method: del, path: "/v1/portal-links/{portal_agent_id}", want: 204},
		{name: "revoke/204/again", method: del, path: "/v1/portal-links/{portal_agent_id}", want: 204},
		{name: "current/401/revoked", method: get, path: "/v1/portal-links/current", key: keyPortalAgent, want: 401,
			check: expect(map[string]any{"message": "This portal link was revoked; ask for a new one."})},
	}
}
