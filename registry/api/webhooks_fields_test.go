package api_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// fieldCase is one request body (merged over a valid one) and what must
// come of it: exactly wantFields failing (422), or a webhook that check
// accepts.
type fieldCase struct {
	name       string
	body       map[string]any // a nil value removes the field
	wantFields []string
	check      func(t *testing.T, got apitest.WebhookJSON)
}

// runFieldCases sends each case with send (a create or a PATCH) and checks
// the answer.
func runFieldCases(t *testing.T, cases []fieldCase, send func(t *testing.T, i int, body map[string]any) (int, []byte)) {
	t.Helper()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, b := send(t, i, tc.body)
			if tc.wantFields != nil {
				if status != http.StatusUnprocessableEntity {
					t.Fatalf("status %d, want 422: %s", status, b)
				}
				e := apitest.Decode[apitest.ErrorJSON](t, b)
				if got := slices.Sorted(maps.Keys(e.Errors)); !slices.Equal(got, slices.Sorted(slices.Values(tc.wantFields))) {
					t.Errorf("failing fields %v, want %v (%s)", got, tc.wantFields, b)
				}
				return
			}
			if status != http.StatusCreated && status != http.StatusOK {
				t.Fatalf("status %d, want success: %s", status, b)
			}
			got := apitest.Decode[apitest.WebhookJSON](t, b)
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

// authCases are seed 003's rules: each type with no credentials, with
// username and password, with a token, and with both kinds.
func authCases() []fieldCase {
	userPass := map[string]any{"username": "u", "password": "p"}
	token := map[string]any{"token": "t0k"}
	both := map[string]any{"username": "u", "password": "p", "token": "t0k"}
	with := func(typ string, creds map[string]any) map[string]any {
		m := map[string]any{"type": typ}
		maps.Copy(m, creds)
		return map[string]any{"auth": m}
	}
	var cases []fieldCase
	for _, tc := range []struct {
		typ                      string
		none, basic, token, both []string // failing fields; nil: accepted
	}{
		{"none", nil, []string{"auth.username", "auth.password"}, []string{"auth.token"}, []string{"auth.username", "auth.password", "auth.token"}},
		{"basic", []string{"auth.username", "auth.password"}, nil, []string{"auth.username", "auth.password", "auth.token"}, []string{"auth.token"}},
		{"bearer", []string{"auth.token"}, []string{"auth.token", "auth.username", "auth.password"}, nil, []string{"auth.username", "auth.password"}},
		{"authheader", []string{"auth.token"}, []string{"auth.token", "auth.username", "auth.password"}, nil, []string{"auth.username", "auth.password"}},
		{"header", []string{"auth.token"}, []string{"auth.token", "auth.username", "auth.password"}, nil, []string{"auth.username", "auth.password"}},
		{"querystring", []string{"auth.token"}, []string{"auth.token", "auth.username", "auth.password"}, nil, []string{"auth.username", "auth.password"}},
	} {
		typ := tc.typ
		for _, v := range []struct {
			what  string
			creds map[string]any
			want  []string
		}{
			{"without credentials", nil, tc.none},
			{"with username and password", userPass, tc.basic},
			{"with a token", token, tc.token},
			{"with both kinds", both, tc.both},
		} {
			c := fieldCase{name: "auth " + typ + " " + v.what, body: with(typ, v.creds), wantFields: v.want}
			if v.want == nil {
				c.check = func(t *testing.T, got apitest.WebhookJSON) {
					if got.Auth.Type != typ {
						t.Errorf("auth %+v, want type %s", got.Auth, typ)
					}
				}
			}
			cases = append(cases, c)
		}
	}
	return cases
}

// outboundCases cover method, auth's other rules, headers, properties and
// is_alert_hook.
func outboundCases() []fieldCase {
	headers := func(h map[string]any) map[string]any { return map[string]any{"headers": h} }
	manyHeaders := func(n int) map[string]any {
		h := map[string]any{}
		for i := range n {
			h[fmt.Sprintf("X-H%d", i)] = "v"
		}
		return h
	}
	cases := []fieldCase{
		{name: "method default", check: func(t *testing.T, got apitest.WebhookJSON) {
			if got.Method != "POST" || got.Auth.Type != "none" || len(got.Headers) != 0 || string(got.Properties) != "null" || got.IsAlertHook {
				t.Errorf("defaults: %+v", got)
			}
		}},
		{name: "method PUT", body: map[string]any{"method": "PUT"}, check: wantMethod("PUT")},
		{name: "method PATCH", body: map[string]any{"method": "PATCH"}, check: wantMethod("PATCH")},
		{name: "method lower-case is normalised", body: map[string]any{"method": "put"}, check: wantMethod("PUT")},
		{name: "method GET", body: map[string]any{"method": "GET"}, wantFields: []string{"method"}},
		{name: "method DELETE", body: map[string]any{"method": "DELETE"}, wantFields: []string{"method"}},
		{name: "method empty", body: map[string]any{"method": ""}, wantFields: []string{"method"}},

		{name: "auth null is none", body: map[string]any{"auth": nil}, check: wantAuth(apitest.AuthJSON{Type: "none"})},
		{name: "auth without type", body: map[string]any{"auth": map[string]any{"token": "t"}}, wantFields: []string{"auth.type"}},
		{name: "auth unknown type", body: map[string]any{"auth": map[string]any{"type": "digest"}}, wantFields: []string{"auth.type"}},
		{name: "auth type upper-case", body: map[string]any{"auth": map[string]any{"type": "BEARER", "token": "t"}}, wantFields: []string{"auth.type"}},
		{name: "auth basic shows username only", body: map[string]any{"auth": map[string]any{"type": "basic", "username": "u", "password": "p"}},
			check: wantAuth(apitest.AuthJSON{Type: "basic", Username: "u"})},
		{name: "auth basic username with a colon", body: map[string]any{"auth": map[string]any{"type": "basic", "username": "a:b", "password": "p"}}, wantFields: []string{"auth.username"}},
		{name: "auth basic username 256 chars", body: map[string]any{"auth": map[string]any{"type": "basic", "username": strings.Repeat("u", 256), "password": "p"}}, wantFields: []string{"auth.username"}},
		{name: "auth basic password 4096 bytes", body: map[string]any{"auth": map[string]any{"type": "basic", "username": "u", "password": strings.Repeat("p", 4096)}}},
		{name: "auth basic password 4097 bytes", body: map[string]any{"auth": map[string]any{"type": "basic", "username": "u", "password": strings.Repeat("p", 4097)}}, wantFields: []string{"auth.password"}},
		{name: "auth basic with a name", body: map[string]any{"auth": map[string]any{"type": "basic", "username": "u", "password": "p", "name": "X-A"}}, wantFields: []string{"auth.name"}},
		{name: "auth bearer with a name", body: map[string]any{"auth": map[string]any{"type": "bearer", "token": "t", "name": "X-A"}}, wantFields: []string{"auth.name"}},
		{name: "auth none with a name", body: map[string]any{"auth": map[string]any{"type": "none", "name": "X-A"}}, wantFields: []string{"auth.name"}},
		{name: "auth none with empty strings", body: map[string]any{"auth": map[string]any{"type": "none", "username": "", "token": ""}}},
		{name: "auth token with a newline", body: map[string]any{"auth": map[string]any{"type": "bearer", "token": "a\nb"}}, wantFields: []string{"auth.token"}},
		{name: "auth token with a trailing space", body: map[string]any{"auth": map[string]any{"type": "bearer", "token": "ab "}}, wantFields: []string{"auth.token"}},
		{name: "auth token 4097 bytes", body: map[string]any{"auth": map[string]any{"type": "bearer", "token": strings.Repeat("t", 4097)}}, wantFields: []string{"auth.token"}},
		{name: "auth token that looks sealed", body: map[string]any{"auth": map[string]any{"type": "bearer", "token": "sealed:v1:abc"}}, wantFields: []string{"auth.token"}},
		{name: "auth header default name", body: map[string]any{"auth": map[string]any{"type": "header", "token": "t"}},
			check: wantAuth(apitest.AuthJSON{Type: "header", Name: "X-Auth-Token"})},
		{name: "auth header custom name", body: map[string]any{"auth": map[string]any{"type": "header", "token": "t", "name": "X-Api-Key"}},
			check: wantAuth(apitest.AuthJSON{Type: "header", Name: "X-Api-Key"})},
		{name: "auth header name with a space", body: map[string]any{"auth": map[string]any{"type": "header", "token": "t", "name": "X Api"}}, wantFields: []string{"auth.name"}},
		{name: "auth header name Host", body: map[string]any{"auth": map[string]any{"type": "header", "token": "t", "name": "host"}}, wantFields: []string{"auth.name"}},
		{name: "auth header name webhook-signature", body: map[string]any{"auth": map[string]any{"type": "header", "token": "t", "name": "webhook-signature"}}, wantFields: []string{"auth.name"}},
		{name: "auth querystring default name", body: map[string]any{"auth": map[string]any{"type": "querystring", "token": "t"}},
			check: wantAuth(apitest.AuthJSON{Type: "querystring", Name: "token"})},
		{name: "auth querystring custom name", body: map[string]any{"auth": map[string]any{"type": "querystring", "token": "t", "name": "api_key"}},
			check: wantAuth(apitest.AuthJSON{Type: "querystring", Name: "api_key"})},
		{name: "auth querystring name with &", body: map[string]any{"auth": map[string]any{"type": "querystring", "token": "t", "name": "a&b"}}, wantFields: []string{"auth.name"}},
		{name: "auth querystring name with =", body: map[string]any{"auth": map[string]any{"type": "querystring", "token": "t", "name": "a=b"}}, wantFields: []string{"auth.name"}},
		{name: "auth querystring name 129 chars", body: map[string]any{"auth": map[string]any{"type": "querystring", "token": "t", "name": strings.Repeat("n", 129)}}, wantFields: []string{"auth.name"}},

		{name: "headers kept", body: headers(map[string]any{"X-Tenant": "acme", "X-Trace": "a\tb"}), check: func(t *testing.T, got apitest.WebhookJSON) {
			if !maps.Equal(got.Headers, map[string]string{"X-Tenant": "acme", "X-Trace": "a\tb"}) {
				t.Errorf("headers %v", got.Headers)
			}
		}},
		{name: "headers null", body: map[string]any{"headers": nil}},
		{name: "headers 20", body: headers(manyHeaders(20))},
		{name: "headers 21", body: headers(manyHeaders(21)), wantFields: []string{"headers"}},
		{name: "headers value 4096 bytes", body: headers(map[string]any{"X-A": strings.Repeat("v", 4096)})},
		{name: "headers value 4097 bytes", body: headers(map[string]any{"X-A": strings.Repeat("v", 4097)}), wantFields: []string{"headers.X-A"}},
		{name: "headers over 8 KiB in total", body: headers(map[string]any{"X-A": strings.Repeat("v", 4096), "X-B": strings.Repeat("v", 4096)}), wantFields: []string{"headers"}},
		{name: "headers name 129 chars", body: headers(map[string]any{strings.Repeat("h", 129): "v"}), wantFields: []string{"headers." + strings.Repeat("h", 129)}},
		{name: "headers name with a space", body: headers(map[string]any{"X A": "v"}), wantFields: []string{"headers.X A"}},
		{name: "headers name with a colon", body: headers(map[string]any{"X-A:": "v"}), wantFields: []string{"headers.X-A:"}},
		{name: "headers name empty", body: headers(map[string]any{"": "v"}), wantFields: []string{"headers."}},
		{name: "headers value with CR LF", body: headers(map[string]any{"X-A": "v\r\nX-Evil: 1"}), wantFields: []string{"headers.X-A"}},
		{name: "headers value with NUL", body: headers(map[string]any{"X-A": "v\x00"}), wantFields: []string{"headers.X-A"}},
		{name: "headers same name in two cases", body: headers(map[string]any{"X-A": "1", "x-a": "2"}), wantFields: []string{"headers.x-a"}},
		{name: "headers Authorization without auth", body: headers(map[string]any{"Authorization": "Token x"})},
		{name: "headers Authorization with bearer auth", body: map[string]any{"headers": map[string]any{"authorization": "x"}, "auth": map[string]any{"type": "bearer", "token": "t"}},
			wantFields: []string{"headers.authorization"}},
		{name: "headers Authorization with header auth", body: map[string]any{"headers": map[string]any{"Authorization": "x"}, "auth": map[string]any{"type": "header", "token": "t"}},
			wantFields: []string{"headers.Authorization"}},
		{name: "headers the auth header", body: map[string]any{"headers": map[string]any{"x-api-key": "x"}, "auth": map[string]any{"type": "header", "token": "t", "name": "X-Api-Key"}},
			wantFields: []string{"headers.x-api-key"}},
		{name: "properties object", body: map[string]any{"properties": map[string]any{"crm": "acme", "n": 1, "nested": map[string]any{"a": []int{1}}}},
			check: func(t *testing.T, got apitest.WebhookJSON) {
				if string(got.Properties) != `{"crm":"acme","n":1,"nested":{"a":[1]}}` {
					t.Errorf("properties %s", got.Properties)
				}
			}},
		{name: "properties empty object", body: map[string]any{"properties": map[string]any{}}},
		{name: "properties null", body: map[string]any{"properties": nil}},
		{name: "properties array", body: map[string]any{"properties": []int{1}}, wantFields: []string{"properties"}},
		{name: "properties string", body: map[string]any{"properties": "x"}, wantFields: []string{"properties"}},
		{name: "properties number", body: map[string]any{"properties": 1}, wantFields: []string{"properties"}},
		{name: "properties true", body: map[string]any{"properties": true}, wantFields: []string{"properties"}},
		{name: "properties 16 KiB", body: map[string]any{"properties": map[string]any{"p": strings.Repeat("x", 16<<10-len(`{"p":""}`))}}},
		{name: "properties over 16 KiB", body: map[string]any{"properties": map[string]any{"p": strings.Repeat("x", 16<<10-len(`{"p":""}`)+1)}}, wantFields: []string{"properties"}},
		{name: "is_alert_hook", body: map[string]any{"is_alert_hook": true}, check: func(t *testing.T, got apitest.WebhookJSON) {
			if !got.IsAlertHook {
				t.Error("is_alert_hook not kept")
			}
		}},
		{name: "secret that looks sealed", body: map[string]any{"secret": "sealed:v1:" + strings.Repeat("k", 40)}, wantFields: []string{"secret"}},
	}
	for name, why := range map[string]string{
		"webhook-id": "signature", "Webhook-Timestamp": "signature", "WEBHOOK-SIGNATURE": "signature",
		"Content-Type": "content", "content-length": "content", "Content-Encoding": "content", "Host": "host",
		"Connection": "hop", "Keep-Alive": "hop", "Proxy-Authorization": "hop", "Proxy-Connection": "hop",
		"TE": "hop", "Trailer": "hop", "Transfer-Encoding": "hop", "Upgrade": "hop",
	} {
		cases = append(cases, fieldCase{name: "headers refuse " + name + " (" + why + ")",
			body: headers(map[string]any{name: "v"}), wantFields: []string{"headers." + name}})
	}
	return cases
}

func wantMethod(m string) func(t *testing.T, got apitest.WebhookJSON) {
	return func(t *testing.T, got apitest.WebhookJSON) {
		if got.Method != m {
			t.Errorf("method %q, want %q", got.Method, m)
		}
	}
}

func wantAuth(want apitest.AuthJSON) func(t *testing.T, got apitest.WebhookJSON) {
	return func(t *testing.T, got apitest.WebhookJSON) {
		if got.Auth != want {
			t.Errorf("auth %+v, want %+v", got.Auth, want)
		}
	}
}

// mergeBody returns base with body's fields set over it (nil removes).
func mergeBody(base, body map[string]any) map[string]any {
	out := maps.Clone(base)
	for k, v := range body {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

func TestCreateWebhook_OutboundFields(t *testing.T) {
	a := apitest.Start(t, nil)
	runFieldCases(t, slices.Concat(authCases(), outboundCases()), func(t *testing.T, i int, body map[string]any) (int, []byte) {
		base := map[string]any{"name": fmt.Sprintf("hook %d", i), "url": "https://example.com/hook", "events": []string{"call.started"}}
		// null is meaningful for these fields: send it rather than drop it.
		b := mergeBody(base, body)
		for _, k := range []string{"auth", "headers", "properties"} {
			if v, ok := body[k]; ok && v == nil {
				b[k] = json.RawMessage("null")
			}
		}
		return a.Do(t, http.MethodPost, "/v1/webhooks", a.Key, apitest.JSONBody(t, b))
	})
}

// Every rule holds on PATCH too: the same cases, each applied to a fresh
// webhook.
func TestUpdateWebhook_Rules(t *testing.T) {
	a := apitest.Start(t, nil)
	// The create-time rules of the older fields, at their boundaries.
	urlOf := func(n int) string { return "https://example.com/" + strings.Repeat("a", n-len("https://example.com/")) }
	older := []fieldCase{
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
		{name: "name 255", body: map[string]any{"name": strings.Repeat("n", 255)}},
		{name: "name 256", body: map[string]any{"name": strings.Repeat("n", 256)}, wantFields: []string{"name"}},
		{name: "name empty", body: map[string]any{"name": ""}, wantFields: []string{"name"}},
		{name: "url 500", body: map[string]any{"url": urlOf(500)}},
		{name: "url 501", body: map[string]any{"url": urlOf(501)}, wantFields: []string{"url"}},
		{name: "url ftp", body: map[string]any{"url": "ftp://example.com"}, wantFields: []string{"url"}},
		{name: "events empty", body: map[string]any{"events": []string{}}, wantFields: []string{"events"}},
		{name: "events unknown", body: map[string]any{"events": []string{"nope.*"}}, wantFields: []string{"events"}},
		{name: "secret 31 bytes", body: map[string]any{"secret": secretOf(31)}, wantFields: []string{"secret"}},
		{name: "status too_many_errors refused", body: map[string]any{"status": "too_many_errors"}, wantFields: []string{"status"}},
		{name: "status paused", body: map[string]any{"status": "paused"}, wantFields: []string{"status"}},
		{name: "agent_id changed", body: map[string]any{"agent_id": "agent-9"}, wantFields: []string{"agent_id"}},
		{name: "every field failing at once", body: map[string]any{"name": "", "url": "x", "method": "GET", "events": []string{},
			"timeout": 1, "max_retries": 11, "status": "x", "auth": map[string]any{"type": "basic"}, "headers": map[string]any{"Host": "h"},
			"properties": []int{}},
			wantFields: []string{"name", "url", "method", "events", "timeout", "max_retries", "status", "auth.username", "auth.password", "headers.Host", "properties"}},
	}
	runFieldCases(t, slices.Concat(older, authCases(), outboundCases()), func(t *testing.T, i int, body map[string]any) (int, []byte) {
		wh := a.Create(t, a.Key, "/v1/webhooks", fmt.Sprintf(`{"name": "patched %d", "url": "https://example.com/hook", "events": ["call.started"]}`, i))
		b := map[string]any{}
		for k, v := range body {
			b[k] = v
			if v == nil {
				b[k] = json.RawMessage("null")
			}
		}
		status, resp := a.Do(t, http.MethodPatch, "/v1/webhooks/"+wh.ID, a.Key, apitest.JSONBody(t, b))
		if status == http.StatusUnprocessableEntity {
			// Nothing changed.
			if got := apitest.Decode[apitest.WebhookJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+wh.ID)); !got.UpdatedAt.Equal(wh.UpdatedAt) || got.Name != wh.Name {
				t.Errorf("a refused PATCH changed the webhook: %+v", got)
			}
		}
		return status, resp
	})
}

// A PATCH changes what it names, keeps the rest, and says who and when.
func TestUpdateWebhook_Partial(t *testing.T) {
	a := apitest.Start(t, nil)
	a.PutAgent(t, a.Key, "agent-1")
	created := a.Create(t, a.Key, "/v1/agents/agent-1/webhooks", apitest.JSONBody(t, map[string]any{
		"name": "full", "url": "https://example.com/a", "method": "PUT", "events": []string{"call.*"},
		"timeout": 10, "max_retries": 5, "status": "inactive", "is_alert_hook": true,
		"auth":       map[string]any{"type": "basic", "username": "u", "password": "p"},
		"headers":    map[string]any{"X-A": "1"},
		"properties": map[string]any{"crm": "acme"},
	}))
	kvBefore := apitest.KVWebhook(t, a.KV, created.ID)

	otherKey, _, err := a.DB.CreateKey(t.Context(), a.Tenant.ID, "second key")
	if err != nil {
		t.Fatal(err)
	}
	patch := func(body string) apitest.WebhookJSON {
		t.Helper()
		status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+created.ID, otherKey, body)
		if status != http.StatusOK {
			t.Fatalf("PATCH %s: %d %s", body, status, b)
		}
		if strings.Contains(string(b), `"secret"`) {
			t.Errorf("PATCH answer shows the secret: %s", b)
		}
		got := apitest.Decode[apitest.WebhookJSON](t, b)
		if again := apitest.Decode[apitest.WebhookJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+created.ID)); !equalWebhooks(got, again) {
			t.Errorf("GET after PATCH differs:\n%+v\n%+v", again, got)
		}
		return got
	}

	got := patch(`{"name": "renamed"}`)
	want := created
	want.Secret, want.Name = "", "renamed"
	want.UpdatedAt, want.UpdatedBy = got.UpdatedAt, "second key"
	if !equalWebhooks(got, want) || got.Method != "PUT" || got.Auth != (apitest.AuthJSON{Type: "basic", Username: "u"}) ||
		!maps.Equal(got.Headers, map[string]string{"X-A": "1"}) || string(got.Properties) != `{"crm":"acme"}` || !got.IsAlertHook {
		t.Errorf("after renaming:\n got %+v\nwant %+v", got, want)
	}
	if !got.UpdatedAt.After(created.UpdatedAt) || !got.CreatedAt.Equal(created.CreatedAt) || got.CreatedBy != "default" {
		t.Errorf("times and actors: %+v", got)
	}
	kvAfter := apitest.KVWebhook(t, a.KV, created.ID)
	if kvAfter.Name != "renamed" || kvAfter.Auth != kvBefore.Auth || kvAfter.Secret != kvBefore.Secret || !kvAfter.UpdatedAt.Equal(got.UpdatedAt) {
		t.Errorf("KV after renaming: %+v", kvAfter)
	}

	// Each field alone.
	for _, tc := range []struct {
		body  string
		check func(got apitest.WebhookJSON) bool
	}{
		{`{"url": "https://example.com/b"}`, func(g apitest.WebhookJSON) bool { return g.URL == "https://example.com/b" }},
		{`{"method": "patch"}`, func(g apitest.WebhookJSON) bool { return g.Method == "PATCH" }},
		{`{"events": ["agent.*", "call.ended"]}`, func(g apitest.WebhookJSON) bool {
			return slices.Equal(g.Events, []string{"agent.*", "call.ended"}) && g.EventsCount == 2
		}},
		{`{"timeout": 120}`, func(g apitest.WebhookJSON) bool { return g.Timeout == 120 }},
		{`{"max_retries": 0}`, func(g apitest.WebhookJSON) bool { return g.MaxRetries == 0 }},
		{`{"status": "active"}`, func(g apitest.WebhookJSON) bool { return g.Status == "active" && g.Enabled }},
		{`{"enabled": false}`, func(g apitest.WebhookJSON) bool { return g.Status == "inactive" && !g.Enabled }},
		{`{"is_alert_hook": false}`, func(g apitest.WebhookJSON) bool { return !g.IsAlertHook }},
		{`{"auth": {"type": "bearer", "token": "t"}}`, func(g apitest.WebhookJSON) bool { return g.Auth == apitest.AuthJSON{Type: "bearer"} }},
		{`{"auth": null}`, func(g apitest.WebhookJSON) bool { return g.Auth == apitest.AuthJSON{Type: "none"} }},
		{`{"headers": {"X-B": "2"}}`, func(g apitest.WebhookJSON) bool { return maps.Equal(g.Headers, map[string]string{"X-B": "2"}) }},
		{`{"headers": null}`, func(g apitest.WebhookJSON) bool { return len(g.Headers) == 0 && g.Headers != nil }},
		{`{"properties": {"n": 2}}`, func(g apitest.WebhookJSON) bool { return string(g.Properties) == `{"n":2}` }},
		{`{"properties": null}`, func(g apitest.WebhookJSON) bool { return string(g.Properties) == "null" }},
		{`{"agent_id": "agent-1"}`, func(g apitest.WebhookJSON) bool { return g.AgentID != nil && *g.AgentID == "agent-1" }},
		{`{"id": "wh_mine", "created_by": "me", "events_count": 9}`, func(g apitest.WebhookJSON) bool {
			return g.ID == created.ID && g.CreatedBy == "default" && g.EventsCount == 2
		}},
		{`{}`, func(g apitest.WebhookJSON) bool { return g.Name == "renamed" }},
	} {
		before := apitest.Decode[apitest.WebhookJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+created.ID))
		got := patch(tc.body)
		if !tc.check(got) {
			t.Errorf("PATCH %s: %+v", tc.body, got)
		}
		if got.Name != before.Name && !strings.Contains(tc.body, `"name"`) {
			t.Errorf("PATCH %s changed the name", tc.body)
		}
	}
	kv := apitest.KVWebhook(t, a.KV, created.ID)
	if kv.URL != "https://example.com/b" || kv.Method != "PATCH" || kv.Auth.Type != switchboard.AuthNone || kv.Headers != nil ||
		kv.Properties != nil || kv.IsAlertHook || kv.TimeoutSeconds != 120 || kv.MaxRetries != 0 {
		t.Errorf("KV after the PATCHes: %+v", kv)
	}
}

// too_many_errors is the engine's to set; a client may leave it for active.
func TestUpdateWebhook_StatusFromTooManyErrors(t *testing.T) {
	a := apitest.Start(t, nil)
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "failing", "url": "https://example.com/h", "events": ["*"]}`)
	// Stand-in for the engine's auto-disable.
	ctx := switchboard.NewContextWithTenant(t.Context(), a.Tenant.ID)
	if _, err := a.DB.UpdateWebhook(ctx, wh.ID, func(w *store.Webhook) error {
		w.Status = switchboard.StatusTooManyErrors
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+wh.ID, a.Key, `{"name": "still failing"}`)
	if got := apitest.Decode[apitest.WebhookJSON](t, b); status != 200 || got.Status != "too_many_errors" || got.Enabled {
		t.Errorf("an unrelated PATCH: %d %+v", status, got)
	}
	status, b = a.Do(t, http.MethodPatch, "/v1/webhooks/"+wh.ID, a.Key, `{"status": "active"}`)
	if got := apitest.Decode[apitest.WebhookJSON](t, b); status != 200 || got.Status != "active" {
		t.Errorf("back to active: %d %s", status, b)
	}
}

func TestUpdateWebhook_NotFoundAndConflict(t *testing.T) {
	a := apitest.Start(t, nil)
	mine := a.Create(t, a.Key, "/v1/webhooks", `{"name": "Mine", "url": "https://example.com/h", "events": ["*"]}`)
	a.Create(t, a.Key, "/v1/webhooks", `{"name": "Taken", "url": "https://example.com/h", "events": ["*"]}`)
	a.PutAgent(t, a.Key, "agent-1")
	a.Create(t, a.Key, "/v1/agents/agent-1/webhooks", `{"name": "Agent's", "url": "https://example.com/h", "events": ["*"]}`)
	otherKey := a.NewTenant(t, "other")
	theirs := a.Create(t, otherKey, "/v1/webhooks", `{"name": "Theirs", "url": "https://example.com/h", "events": ["*"]}`)

	for _, tc := range []struct {
		key, id, body string
		want          int
	}{
		{a.Key, theirs.ID, `{"name": "stolen"}`, 404},
		{a.Key, theirs.ID, `{"name": ""}`, 404}, // 404 before 422: nothing about it is told
		{otherKey, mine.ID, `{"url": "https://evil.example/"}`, 404},
		{a.Key, "wh_nope", `{"name": "x"}`, 404},
		{a.Key, mine.ID, `{"name": "Taken"}`, 409},
		{a.Key, mine.ID, `{"name": "Agent's"}`, 200}, // another scope
		{a.Key, mine.ID, `{"name": "Theirs"}`, 200},  // another tenant
		{a.Key, mine.ID, `{"name": `, 400},
		{a.Key, mine.ID, `{"timeout": "30"}`, 400},
		{a.Key, mine.ID, `{"headers": {"X-A": 1}}`, 400},
		{a.Key, mine.ID, `{"auth": "bearer"}`, 400},
		{a.Key, mine.ID, `[]`, 400},
	} {
		status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+tc.id, tc.key, tc.body)
		if status != tc.want {
			t.Errorf("PATCH %s %s: %d, want %d: %s", tc.id, tc.body, status, tc.want, b)
			continue
		}
		e := apitest.Decode[map[string]any](t, b)
		if status == 404 && (strings.Contains(string(b), "Theirs") || strings.Contains(string(b), "Mine")) {
			t.Errorf("the 404 tells about the webhook: %s", b)
		}
		if status == 409 {
			if errs, _ := e["errors"].(map[string]any); errs["name"] == nil {
				t.Errorf("conflict does not name the field: %s", b)
			}
		}
	}
	if got := apitest.Decode[apitest.WebhookJSON](t, apitest.MustGet(t, a, otherKey, "/v1/webhooks/"+theirs.ID)); got.Name != "Theirs" || !got.UpdatedAt.Equal(theirs.UpdatedAt) {
		t.Errorf("another tenant's PATCH changed %+v", got)
	}
}

func TestWebhookDefaults(t *testing.T) {
	a := apitest.Start(t, nil)
	a.Create(t, a.Key, "/v1/webhooks", `{"name": "defaults", "url": "https://example.com/h", "events": ["*"]}`)
	b := apitest.MustGet(t, a, a.Key, "/v1/webhooks/defaults")
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"agent_id": nil, "name": "", "url": "", "method": "POST", "events": []any{}, "events_count": 0.0,
		"timeout": 30.0, "max_retries": 3.0, "status": "active", "enabled": true,
		"auth": map[string]any{"type": "none"}, "headers": map[string]any{}, "properties": nil, "is_alert_hook": false,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("defaults:\n got %v\nwant %v", got, want)
	}
	// Not stored, and the route is not taken for a webhook id.
	if list := apitest.Decode[apitest.ListJSON](t, apitest.MustGet(t, a, a.Key, "/v1/webhooks")); len(list.Data) != 1 {
		t.Errorf("the defaults were stored: %+v", list.Data)
	}
	if status, _ := a.Do(t, http.MethodGet, "/v1/webhooks/defaults", "", ""); status != http.StatusUnauthorized {
		t.Errorf("defaults without a key: %d", status)
	}
	for _, method := range []string{http.MethodPatch, http.MethodDelete} {
		if status, b := a.Do(t, method, "/v1/webhooks/defaults", a.Key, `{}`); status != http.StatusNotFound {
			t.Errorf("%s /v1/webhooks/defaults: %d %s", method, status, b)
		}
	}
}
