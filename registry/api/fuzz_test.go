package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// FuzzCreateWebhook posts arbitrary bodies to both create routes: no input
// yields a 5xx, every answer is JSON, and a created webhook can be read back.
func FuzzCreateWebhook(f *testing.F) {
	for _, seed := range []struct{ agent, body string }{
		{"", `{"name": "a", "url": "https://example.com/h", "events": ["call.started"]}`},
		{"agent-1", `{"name": "a", "url": "https://example.com/h", "events": ["*"], "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYq=", "timeout": 5, "max_retries": 0, "status": "inactive"}`},
		{"", `{"name": "b", "url": "http://127.0.0.1:1/x", "events": ["call.*", "call.*"], "enabled": false, "agent_id": null}`},
		{"", `{"name": "", "url": "ftp://x", "events": [], "secret": "x", "timeout": 4, "max_retries": 11, "status": "too_many_errors"}`},
		{"", `{"name": "c", "url": "https://example.com", "events": ["*"], "enabled": true, "status": "inactive"}`},
		{"a b", `{"name": "d", "url": "https://example.com", "events": ["nope.*"], "agent_id": "x"}`},
		{"", `{"timeout": "30"}`},
		{"", `{"events": [null, 1, {}]}`},
		{"", `{"url": "http://[::1]:namedport"}`},
		{"", `{"name": "\u0000", "url": "https://\u00e9xample.com/\u2028", "events": ["*"]}`},
		{"", `{"max_retries": 99999999999999999999}`},
		{"", `{"name": "e", "url": "https://example.com", "events": ["*"], "method": "patch", "auth": {"type": "basic", "username": "u", "password": "p"}, "headers": {"X-A": "1"}, "properties": {"a": [1]}, "is_alert_hook": true}`},
		{"", `{"name": "f", "url": "https://example.com", "events": ["*"], "auth": {"type": "header", "token": "t", "name": "Content-Type"}, "headers": {"Transfer-Encoding": "chunked", "x-a": "
"}, "properties": []}`},
		{"agent-2", `{"name": "g", "url": "https://example.com", "events": ["*"], "auth": null, "headers": null, "properties": null}`},
		{"", `[`},
		{"", `null`},
		{"", ``},
	} {
		f.Add(seed.agent, seed.body)
	}
	a := apitest.Start(f, nil)
	a.PutAgent(f, a.Key, "agent-1") // the other agents answer 404
	f.Fuzz(func(t *testing.T, agent, body string) {
		path := "/v1/webhooks"
		if agent != "" {
			path = "/v1/agents/" + url.PathEscape(agent) + "/webhooks"
		}
		req := httptest.NewRequest(http.MethodPost, a.URL+path, strings.NewReader(body))
		req.RequestURI = ""
		req.Header.Set("Authorization", "Bearer "+a.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body) // all of it, so that the connection is reused
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%d: the body is not a JSON object: %v: %q", resp.StatusCode, err, b)
		}
		if resp.StatusCode >= 500 {
			t.Fatalf("POST %s %q: %d %v", path, body, resp.StatusCode, got)
		}
		if resp.StatusCode == http.StatusCreated {
			id, _ := got["id"].(string)
			apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+url.PathEscape(id))
		}
	})
}

// FuzzUpdateWebhook sends arbitrary PATCH bodies to one webhook: no input
// yields a 5xx, every answer is a JSON object, a refused PATCH changes
// nothing, and an accepted one is what GET reads back.
func FuzzUpdateWebhook(f *testing.F) {
	for _, seed := range []string{
		`{"name": "renamed"}`,
		`{"url": "https://example.com/other", "method": "put", "events": ["call.*", "agent.logged_in"]}`,
		`{"timeout": 5, "max_retries": 0, "status": "inactive", "enabled": false}`,
		`{"timeout": 121, "max_retries": -1, "status": "too_many_errors"}`,
		`{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYq="}`,
		`{"auth": {"type": "basic", "username": "u", "password": "p"}}`,
		`{"auth": {"type": "header", "token": "t", "name": "X-Key"}, "headers": {"x-key": "v"}}`,
		`{"auth": {"type": "querystring", "token": "t", "name": "a&b"}}`,
		`{"auth": {"type": "none", "token": "t", "username": "u"}}`,
		`{"auth": null, "headers": null, "properties": null}`,
		`{"auth": {"type": "bearer", "token": "a\r\nb"}}`,
		`{"headers": {"X-A": "1", "x-a": "2", "Host": "h", "Proxy-X": "p", "": "e", "X B": "\u0000"}}`,
		`{"properties": {"crm": {"id": [1, 2.5, null, true]}}}`,
		`{"properties": [1]}`,
		`{"properties": "x"}`,
		`{"is_alert_hook": true, "agent_id": "agent-1"}`,
		`{"agent_id": null, "events": null, "name": null}`,
		`{"headers": []}`,
		`{"auth": "bearer"}`,
		`{"auth": {"type": 1}}`,
		`[]`,
		`null`,
		``,
	} {
		f.Add(seed)
	}
	a := apitest.Start(f, nil)
	created := a.Create(f, a.Key, "/v1/webhooks", `{"name": "fuzzed", "url": "https://example.com/h", "events": ["*"]}`)
	path := "/v1/webhooks/" + created.ID
	f.Fuzz(func(t *testing.T, body string) {
		before := apitest.MustGet(t, a, a.Key, path)
		status, b := a.Do(t, http.MethodPatch, path, a.Key, body)
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%d: the body is not a JSON object: %v: %q", status, err, b)
		}
		if status >= 500 {
			t.Fatalf("PATCH %q: %d %v", body, status, got)
		}
		after := apitest.MustGet(t, a, a.Key, path)
		switch {
		case status == http.StatusOK && !bytes.Equal(after, b):
			t.Fatalf("PATCH %q answered %s, GET reads %s", body, b, after)
		case status != http.StatusOK && !bytes.Equal(after, before):
			t.Fatalf("PATCH %q refused with %d changed the webhook: %s, then %s", body, status, before, after)
		}
	})
}
