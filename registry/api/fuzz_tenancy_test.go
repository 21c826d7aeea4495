package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// FuzzAgentsAndEventTypes sends arbitrary agent ids and bodies to PUT
// /v1/agents/{agent_id}, and the bodies to POST /v1/event-types and POST
// /v1/tenants: no input yields a 5xx and every answer is a JSON object.
func FuzzAgentsAndEventTypes(f *testing.F) {
	for _, seed := range []struct{ id, body string }{
		{"a1", `{"name": "Ada"}`},
		{"a1", ``},
		{"..", `{"name": null}`},
		{"a b", `{"name": 1}`},
		{"x", `{"name": "invoice.paid", "description": "d"}`},
		{"x", `{"name": "a..b", "description": []}`},
		{"x", `{"name": "\u0000", "description": "\ud800"}`},
		{"x", `[`},
		{"x", `null`},
	} {
		f.Add(seed.id, seed.body)
	}
	a := apitest.Start(f, nil)
	f.Fuzz(func(t *testing.T, id, body string) {
		for _, req := range []struct{ method, path string }{
			{http.MethodPut, "/v1/agents/" + url.PathEscape(id)},
			{http.MethodPost, "/v1/event-types"},
			{http.MethodPost, "/v1/tenants"},
		} {
			r, err := http.NewRequest(req.method, a.URL+req.path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Authorization", "Bearer "+a.Key)
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			// The mux answers 307 to a path it cleans (e.g. "/v1/agents/.").
			if resp.StatusCode == http.StatusTemporaryRedirect {
				continue
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%s %s %q: %d: the body is not a JSON object: %v: %q", req.method, req.path, body, resp.StatusCode, err, b)
			}
			if resp.StatusCode >= 500 {
				t.Fatalf("%s %s %q: %d %v", req.method, req.path, body, resp.StatusCode, got)
			}
		}
	})
}
