package api_test

import (
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// portalLinkJSON is a portal link as a client reads it.
type portalLinkJSON struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	AgentID   *string   `json:"agent_id"`
	ReadOnly  bool      `json:"read_only"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
}

// newPortalLink creates a portal link with the api's key and returns it and
// its token.
func newPortalLink(tb testing.TB, a *apitest.Env, body string) (portalLinkJSON, string) {
	tb.Helper()
	status, b := a.Do(tb, http.MethodPost, "/v1/portal-links", a.Key, body)
	if status != http.StatusCreated {
		tb.Fatalf("POST /v1/portal-links %s: %d %s", body, status, b)
	}
	l := apitest.Decode[portalLinkJSON](tb, b)
	_, token, ok := strings.Cut(l.URL, "/portal/#token=")
	if !ok || !strings.HasPrefix(token, "spt_") {
		tb.Fatalf("portal link URL %q: want .../portal/#token=spt_...", l.URL)
	}
	return l, token
}

// A portal link acts for its tenant and, with agent_id, for that agent's
// webhooks only; read_only refuses every write; no link creates keys or
// links; an unlisted route is closed to links.
func TestPortalLink_Scope(t *testing.T) {
	a := startDeadLetterAPI(t)
	otherKey := a.NewTenant(t, "other")
	for _, agent := range []string{"acme", "globex"} {
		if status, b := a.Do(t, http.MethodPut, "/v1/agents/"+agent, a.Key, `{"name": "`+agent+`"}`); status/100 != 2 {
			t.Fatalf("PUT agent %s: %d %s", agent, status, b)
		}
	}
	body := `{"name": "n", "url": "https://example.com/h", "events": ["call.*"]}`
	acme := a.Create(t, a.Key, "/v1/agents/acme/webhooks", body)
	globex := a.Create(t, a.Key, "/v1/agents/globex/webhooks", body)
	tenantWide := a.Create(t, a.Key, "/v1/webhooks", body)
	other := a.Create(t, otherKey, "/v1/webhooks", body)
	globexDL := putDeadLetter(t, a.JS.JS, a.Tenant.ID, globex.ID, "evt_g", "retries_exhausted", 500)

	_, agentToken := newPortalLink(t, a, `{"agent_id": "acme", "expires_in": 600}`)
	_, tenantToken := newPortalLink(t, a, `{}`)
	roLink, roToken := newPortalLink(t, a, `{"read_only": true}`)
	if !roLink.ReadOnly || roLink.AgentID != nil || time.Until(roLink.ExpiresAt) > time.Hour || time.Until(roLink.ExpiresAt) < 59*time.Minute {
		t.Fatalf("read-only link %+v: want read_only, no agent, expiring in an hour (the default)", roLink)
	}

	for _, c := range []struct {
		token, method, path, body string
		want                      int
	}{
		// The agent's link sees its agent's webhooks only.
		{agentToken, "GET", "/v1/webhooks/" + acme.ID, "", 200},
		{agentToken, "GET", "/v1/webhooks/" + globex.ID, "", 404},
		{agentToken, "GET", "/v1/webhooks/" + tenantWide.ID, "", 404},
		{agentToken, "GET", "/v1/webhooks/" + other.ID, "", 404},
		{agentToken, "PATCH", "/v1/webhooks/" + globex.ID, `{"name": "x"}`, 404},
		{agentToken, "DELETE", "/v1/webhooks/" + globex.ID, "", 404},
		{agentToken, "GET", "/v1/webhooks/" + globex.ID + "/secret", "", 404},
		{agentToken, "GET", "/v1/webhooks/" + globex.ID + "/attempts", "", 404},
		{agentToken, "GET", "/v1/webhooks?agent_id=globex", "", 403},
		{agentToken, "POST", "/v1/webhooks", body, 403},
		{agentToken, "POST", "/v1/agents/globex/webhooks", body, 404},
		{agentToken, "POST", "/v1/agents/acme/webhooks", `{"name": "m", "url": "https://example.com/h", "events": ["call.*"]}`, 201},
		{agentToken, "GET", "/v1/agents", "", 403},
		{agentToken, "DELETE", "/v1/agents/acme", "", 403},
		{agentToken, "POST", "/v1/event-types", `{"name": "x.y", "description": ""}`, 403},
		{agentToken, "GET", "/v1/dead-letters", "", 403},
		{agentToken, "GET", "/v1/dead-letters?webhook_id=" + globex.ID, "", 404},
		{agentToken, "GET", "/v1/dead-letters?webhook_id=" + acme.ID, "", 200},
		{agentToken, "POST", "/v1/dead-letters/replay", `{"ids": ["` + globexDL + `"]}`, 403},
		{agentToken, "POST", "/v1/dead-letters/replay", `{"webhook_id": "` + globex.ID + `"}`, 404},
		{agentToken, "GET", "/v1/event-types", "", 200},
		{agentToken, "GET", "/v1/portal-links/current", "", 200},
		// No link creates links or keys.
		{tenantToken, "POST", "/v1/portal-links", `{}`, 403},
		{tenantToken, "DELETE", "/v1/portal-links/pl_x", "", 403},
		{tenantToken, "POST", "/v1/tenants", `{"name": "t"}`, 403},
		{tenantToken, "POST", "/v1/tenants/" + a.Tenant.ID + "/keys", `{"name": "k"}`, 403},
		// A tenant-wide link sees the tenant, not another.
		{tenantToken, "GET", "/v1/webhooks/" + globex.ID, "", 200},
		{tenantToken, "GET", "/v1/webhooks/" + other.ID, "", 404},
		{tenantToken, "PATCH", "/v1/webhooks/" + tenantWide.ID, `{"name": "renamed"}`, 200},
		{tenantToken, "GET", "/v1/agents", "", 403},
		// Read-only: reads, no writes, no secret.
		{roToken, "GET", "/v1/webhooks/" + acme.ID, "", 200},
		{roToken, "GET", "/v1/webhooks/" + acme.ID + "/secret", "", 403},
		{roToken, "PATCH", "/v1/webhooks/" + acme.ID, `{"name": "x"}`, 403},
		{roToken, "POST", "/v1/webhooks/" + acme.ID + "/test", "", 403},
		{roToken, "DELETE", "/v1/webhooks/" + acme.ID, "", 403},
		{roToken, "POST", "/v1/dead-letters/replay", `{"ids": ["` + globexDL + `"]}`, 403},
		// An API key is no portal link.
		{a.Key, "GET", "/v1/portal-links/current", "", 404},
	} {
		if status, b := a.Do(t, c.method, c.path, c.token, c.body); status != c.want {
			t.Errorf("%s %s %s with %s: %d %s, want %d", c.method, c.path, c.body, c.token[:4], status, b, c.want)
		}
	}

	// The agent's list is narrowed to its webhooks.
	status, b := a.Do(t, http.MethodGet, "/v1/webhooks", agentToken, "")
	list := apitest.Decode[apitest.ListJSON](t, b)
	if status != http.StatusOK || len(list.Data) != 2 {
		t.Fatalf("GET /v1/webhooks with acme's link: %d %s, want acme's 2 webhooks", status, b)
	}
	for _, wh := range list.Data {
		if wh.AgentID == nil || *wh.AgentID != "acme" {
			t.Errorf("acme's link lists %s of agent %v", wh.ID, wh.AgentID)
		}
	}
}

// A revoked or expired link answers 401 saying so, at once; creating one
// validates every field.
func TestPortalLink_RevokedExpiredInvalid(t *testing.T) {
	a := apitest.Start(t, nil)
	link, token := newPortalLink(t, a, `{"expires_in": 60}`)
	if status, b := a.Do(t, http.MethodGet, "/v1/webhooks", token, ""); status != http.StatusOK {
		t.Fatalf("fresh link: %d %s", status, b)
	}
	if status, b := a.Do(t, http.MethodDelete, "/v1/portal-links/"+link.ID, a.Key, ""); status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", status, b)
	}
	status, b := a.Do(t, http.MethodGet, "/v1/webhooks", token, "")
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusUnauthorized || !strings.Contains(e.Message, "revoked") {
		t.Errorf("revoked link: %d %s, want 401 saying revoked", status, b)
	}
	if status, b := a.Do(t, http.MethodDelete, "/v1/portal-links/pl_nosuch", a.Key, ""); status != http.StatusNotFound {
		t.Errorf("revoke unknown: %d %s, want 404", status, b)
	}

	_, token = newPortalLink(t, a, `{"expires_in": 60}`)
	db, err := sql.Open("sqlite3", a.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE portal_links SET expires_at = ? WHERE revoked_at IS NULL`, time.Now().Add(-time.Second).UTC()); err != nil {
		t.Fatal(err)
	}
	status, b = a.Do(t, http.MethodGet, "/v1/webhooks", token, "")
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusUnauthorized || !strings.Contains(e.Message, "expired") {
		t.Errorf("expired link: %d %s, want 401 saying expired", status, b)
	}
	if status, b := a.Do(t, http.MethodGet, "/v1/webhooks", "spt_"+strings.Repeat("0", 43), ""); status != http.StatusUnauthorized {
		t.Errorf("unknown token: %d %s, want 401", status, b)
	}

	status, b = a.Do(t, http.MethodPost, "/v1/portal-links", a.Key, `{"agent_id": "a b", "expires_in": 59}`)
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusUnprocessableEntity || len(e.Errors["agent_id"]) == 0 || len(e.Errors["expires_in"]) == 0 {
		t.Errorf("invalid link: %d %s, want 422 naming agent_id and expires_in", status, b)
	}
	if status, b := a.Do(t, http.MethodPost, "/v1/portal-links", a.Key, `{"expires_in": 604801}`); status != http.StatusUnprocessableEntity {
		t.Errorf("link of more than a week: %d %s, want 422", status, b)
	}
	if status, b := a.Do(t, http.MethodPost, "/v1/portal-links", a.Key, `{"agent_id": "nosuch"}`); status != http.StatusNotFound {
		t.Errorf("link for an unknown agent: %d %s, want 404", status, b)
	}
}
