package apispec_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/apispec"
)

// A webhook as the spec shows it.
const webhookJSON = `{"id": "wh_1", "agent_id": null, "name": "n", "url": "https://example.com/h",
	"events": ["call.*"], "events_count": 1, "status": "active", "enabled": true, "timeout": 30,
	"max_retries": 3, "created_at": "2026-01-02T15:04:05Z", "updated_at": "2026-01-02T15:04:05Z",
	"created_by": "default", "updated_by": "default", "method": "POST", "auth": {"type": "none"},
	"headers": {}, "properties": null, "is_alert_hook": false}`

// answer is a server that answers every request with status and body, so
// that each case controls what the Transport sees.
func answer(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", "Bearer")
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestTransport_RoundTrip(t *testing.T) {
	spec := apispec.Load(t)
	for _, tc := range []struct {
		name          string
		method, path  string
		body          string
		noKey         bool
		invalid       bool // sent with ExpectInvalid
		status        int
		respBody      string
		wantOperation string
		wantErr       string // in one of Result.Errs; "" for none
	}{
		{name: "conforming exchange", method: "GET", path: "/v1/webhooks/wh_1",
			status: 200, respBody: webhookJSON, wantOperation: "GET /v1/webhooks/{id}"},
		{name: "a secret in a get response", method: "GET", path: "/v1/webhooks/wh_1",
			status: 200, respBody: strings.Replace(webhookJSON, `"id"`, `"secret": "whsec_x", "id"`, 1), wantErr: "doesn't match schema"},
		{name: "a required field missing", method: "GET", path: "/v1/webhooks/wh_1",
			status: 200, respBody: strings.Replace(webhookJSON, `"timeout": 30,`, "", 1), wantErr: "doesn't match schema"},
		{name: "an undocumented status", method: "GET", path: "/v1/webhooks/wh_1",
			status: 500, respBody: `{"message": "Internal error."}`, wantErr: "status is not supported"},
		{name: "an unknown field in an error", method: "GET", path: "/v1/webhooks/wh_1",
			status: 404, respBody: `{"message": "Webhook not found.", "extra": 1}`, wantErr: "doesn't match schema"},
		{name: "the static route is not an id", method: "GET", path: "/v1/webhooks/defaults",
			status: 200, respBody: `{"agent_id": null, "name": "", "url": "", "method": "POST", "events": [], "events_count": 0,
				"status": "active", "enabled": true, "timeout": 30, "max_retries": 3, "auth": {"type": "none"},
				"headers": {}, "properties": null, "is_alert_hook": false}`,
			wantOperation: "GET /v1/webhooks/defaults"},
		{name: "a request outside the spec, undeclared", method: "POST", path: "/v1/webhooks",
			body:   `{"name": "n", "url": "https://example.com/h", "events": ["*"], "timeout": 121}`,
			status: 422, respBody: `{"message": "The given data was invalid.", "errors": {"timeout": ["too long"]}}`,
			wantErr: "departs from the spec"},
		{name: "a request outside the spec, declared", method: "POST", path: "/v1/webhooks", invalid: true,
			body:   `{"name": "n", "url": "https://example.com/h", "events": ["*"], "timeout": 121}`,
			status: 422, respBody: `{"message": "The given data was invalid.", "errors": {"timeout": ["too long"]}}`},
		{name: "a request outside the spec that the server accepts", method: "POST", path: "/v1/webhooks", invalid: true,
			body:   `{"name": "n", "url": "https://example.com/h", "events": ["*"], "timeout": 121}`,
			status: 201, respBody: `{}`, wantErr: "the server accepted"},
		{name: "a request declared invalid that the spec accepts", method: "POST", path: "/v1/webhooks", invalid: true,
			body:   `{"name": "n", "url": "https://example.com/h", "events": ["*"], "timeout": 120}`,
			status: 422, respBody: `{"message": "The given data was invalid.", "errors": {"timeout": ["x"]}}`,
			wantErr: "a rule of the server is missing from the spec"},
		{name: "no key", method: "GET", path: "/v1/webhooks", noKey: true, invalid: true,
			status: 401, respBody: `{"message": "Missing Bearer Token"}`},
		{name: "a 422 without errors", method: "GET", path: "/v1/webhooks?limit=0", invalid: true,
			status: 422, respBody: `{"message": "The given data was invalid."}`, wantErr: "doesn't match schema"},
		{name: "a route the spec lacks", method: "GET", path: "/v1/nothing",
			status: 404, respBody: `{"message": "No such route."}`, wantErr: "no operation of the spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, _ := apispec.NewClient(t, spec)
			var res apispec.Result
			ctx := apispec.WithResult(context.Background(), &res)
			if tc.invalid {
				ctx = apispec.ExpectInvalid(ctx)
			}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequestWithContext(ctx, tc.method, answer(t, tc.status, tc.respBody)+tc.path, body)
			if !tc.noKey {
				req.Header.Set("Authorization", "Bearer sk_test")
			}
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != tc.respBody {
				t.Errorf("the caller got %q, want the server's %q", got, tc.respBody)
			}
			if tc.wantOperation != "" && res.Operation != tc.wantOperation {
				t.Errorf("operation %q, want %q", res.Operation, tc.wantOperation)
			}
			found := slices.ContainsFunc(res.Errs, func(err error) bool { return strings.Contains(err.Error(), tc.wantErr) })
			switch {
			case tc.wantErr == "" && len(res.Errs) > 0:
				t.Errorf("unexpected findings: %v", res.Errs)
			case tc.wantErr != "" && !found:
				t.Errorf("no finding with %q: %v", tc.wantErr, res.Errs)
			}
		})
	}
}

func TestTransport_Unexercised(t *testing.T) {
	spec := apispec.Load(t)
	client, tr := apispec.NewClient(t, spec)
	url := answer(t, http.StatusTooManyRequests, `{"message": "Slow down."}`)
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/event-types", nil)
	req.Header.Set("Authorization", "Bearer sk_test")
	// The 429 lacks Retry-After: a finding, reported to t through the
	// Transport's TB were it not captured here.
	var res apispec.Result
	resp, err := client.Do(req.WithContext(apispec.WithResult(context.Background(), &res)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(res.Errs) == 0 {
		t.Error("a 429 without Retry-After passed")
	}

	missing := tr.Unexercised(http.StatusTooManyRequests)
	for _, m := range []string{"GET /v1/event-types 200", "GET /v1/webhooks", "POST /v1/webhooks 201"} {
		if !slices.Contains(missing, m) {
			t.Errorf("%q not reported: %v", m, missing)
		}
	}
	for _, m := range missing {
		if strings.HasSuffix(m, " 429") {
			t.Errorf("429 was exercised once, which counts for every operation: %s", m)
		}
	}
	if n, ops := len(missing), len(spec.Operations()); n <= ops {
		t.Errorf("%d unexercised for %d operations", n, ops)
	}
}
