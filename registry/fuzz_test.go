package registry_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
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
		{"", `[`},
		{"", `null`},
		{"", ``},
	} {
		f.Add(seed.agent, seed.body)
	}
	a := startAPI(f, nil)
	a.putAgent(f, a.Key, "agent-1") // the other agents answer 404
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
			mustGet(t, a, a.Key, "/v1/webhooks/"+url.PathEscape(id))
		}
	})
}
