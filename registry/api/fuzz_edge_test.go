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

// checkAnswer sends one request and fails t on a 5xx, or on an answer that
// is not a JSON object (but a 204 or the mux's 307 to a cleaned path).
func checkAnswer(t *testing.T, a *apitest.Env, method, path, key, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, a.URL+path, strings.NewReader(body))
	if err != nil {
		return 0 // not a request a client could send
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 500 {
		t.Fatalf("%s %s %q: %d %s", method, path, body, resp.StatusCode, b)
	}
	if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusTemporaryRedirect {
		return resp.StatusCode
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s %s %q: %d: the body is not a JSON object: %v: %q", method, path, body, resp.StatusCode, err, b)
	}
	return resp.StatusCode
}

// FuzzReplayDeadLetters posts arbitrary bodies to POST
// /v1/dead-letters/replay, with one dead letter of the tenant and one of
// another tenant stored: no 5xx, every answer a JSON object, and the other
// tenant's dead letter is never replayed.
func FuzzReplayDeadLetters(f *testing.F) {
	for _, seed := range []string{
		`{"ids": ["dl_1"]}`, `{"ids": ["dl_2", "dl_2", "dl_01", "dl_-1", "dl_", "x"]}`, `{"ids": []}`, `{"ids": null}`,
		`{"ids": ["dl_9223372036854775807", "dl_18446744073709551616"]}`,
		`{"webhook_id": "wh_x"}`, `{"webhook_id": "wh_x", "since": "2026-01-02T15:04:05Z", "until": "2025-01-01T00:00:00Z", "reason": "gone"}`,
		`{"webhook_id": "", "reason": "A"}`, `{"webhook_id": "a.b"}`, `{"webhook_id": "*"}`, `{"webhook_id": ">"}`,
		`{"ids": ["dl_1"], "webhook_id": "wh_x"}`, `{"ids": ["dl_1"], "since": "x"}`, `{"ids": [1]}`, `{"since": "0000-01-01T00:00:00Z"}`,
		`[]`, `null`, `{`, ``,
	} {
		f.Add(seed)
	}
	a := startDeadLetterAPI(f)
	wh := a.Create(f, a.Key, "/v1/webhooks", `{"name": "dl", "url": "https://example.com/h", "events": ["*"]}`)
	putDeadLetter(f, a.JS.JS, a.Tenant.ID, wh.ID, "msg_mine", "retries_exhausted", 500)
	keyB := a.NewTenant(f, "tenant-b")
	theirs := putDeadLetter(f, a.JS.JS, "t_other", "wh_other", "msg_theirs", "gone", 410)
	f.Fuzz(func(t *testing.T, body string) {
		checkAnswer(t, a, http.MethodPost, "/v1/dead-letters/replay", a.Key, body)
		checkAnswer(t, a, http.MethodPost, "/v1/dead-letters/replay", keyB, body)
		if status, b := a.Do(t, http.MethodPost, "/v1/dead-letters/replay", a.Key, `{"ids": ["`+theirs+`"]}`); status != http.StatusAccepted ||
			!strings.Contains(string(b), `"replayed":0`) {
			t.Fatalf("another tenant's dead letter: %d %s", status, b)
		}
	})
}

// FuzzSecretRotate posts arbitrary bodies to POST
// /v1/webhooks/{id}/secret/rotate: no 5xx, every answer a JSON object, and
// the secret GET reads is the one the answer gave.
func FuzzSecretRotate(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"grace_period": 0}`, `{"grace_period": 604800}`, `{"grace_period": 604801}`, `{"grace_period": -1}`,
		`{"grace_period": 1e30}`, `{"grace_period": "1"}`, `{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYq="}`,
		`{"secret": "short"}`, `{"secret": "sealed:v1:` + strings.Repeat("k", 40) + `"}`, `{"secret": null, "grace_period": null}`,
		`[]`, `null`, `{`, ``,
	} {
		f.Add(seed)
	}
	a := apitest.Start(f, nil)
	wh := a.Create(f, a.Key, "/v1/webhooks", `{"name": "rot", "url": "https://example.com/h", "events": ["*"]}`)
	path := "/v1/webhooks/" + wh.ID + "/secret"
	f.Fuzz(func(t *testing.T, body string) {
		status := checkAnswer(t, a, http.MethodPost, path+"/rotate", a.Key, body)
		if status == http.StatusOK {
			got := apitest.Decode[apitest.SecretJSON](t, apitest.MustGet(t, a, a.Key, path))
			if got.Secret == "" {
				t.Fatalf("after rotate %q: no secret", body)
			}
		}
	})
}

// FuzzAdminKeys posts arbitrary bodies and tenant ids to POST
// /v1/tenants/{tenant_id}/keys: no 5xx, every answer a JSON object.
func FuzzAdminKeys(f *testing.F) {
	for _, seed := range []struct{ tenant, body string }{
		{"", `{"name": "ci"}`}, {"", `{"name": "", "admin": true}`}, {"nope", `{"name": "x"}`},
		{"", `{"name": 1}`}, {"", `{"admin": "yes"}`}, {"a b", `{}`}, {"", `{"name": "` + strings.Repeat("n", 300) + `"}`},
		{"", `[]`}, {"", `null`}, {"", `{`}, {"", ``},
	} {
		f.Add(seed.tenant, seed.body)
	}
	a := apitest.Start(f, nil)
	f.Fuzz(func(t *testing.T, tenant, body string) {
		if tenant == "" {
			tenant = a.Tenant.ID
		}
		checkAnswer(t, a, http.MethodPost, "/v1/tenants/"+url.PathEscape(tenant)+"/keys", a.Key, body)
	})
}

// FuzzQueries sends arbitrary query strings and ids to every route that
// reads them (lists, their filters and cursors, recover's since, the
// event lookup): no 5xx, every answer a JSON object.
func FuzzQueries(f *testing.F) {
	for _, seed := range []struct{ id, query string }{
		{"", "limit=1"}, {"", "limit=0&cursor=x"}, {"", "limit=251"}, {"", "limit=-1&starting_after=y&cursor=z"},
		{"", "limit=99999999999999999999"}, {"", "agent_id=..&status=nope&event_type=a..b"},
		{"", "outcome=x&status_code=99&since=2026-01-02T15:04:05Z&until=2025-01-01T00:00:00Z&event_id=a b"},
		{"", "webhook_id=&reason=A&since=10000-01-01T00:00:00Z"}, {"", "cursor=dl_0"}, {"", "cursor=dl_9223372036854775807"},
		{"", "since=2026-01-02T15:04:05Z"}, {"", "since=3000-01-01T00:00:00Z"}, {"", "%zz=%"}, {"msg_1", ""},
		{"a/b", ""}, {"..", "x=1"}, {"\x00", ""},
	} {
		f.Add(seed.id, seed.query)
	}
	a := startDeadLetterAPI(f)
	wh := a.Create(f, a.Key, "/v1/webhooks", `{"name": "q", "url": "https://example.com/h", "events": ["*"]}`)
	f.Fuzz(func(t *testing.T, id, query string) {
		// What the handlers read (r.URL.Query()), sent as a client would
		// encode it: a raw space is the HTTP server's 400, not the API's.
		vals, _ := url.ParseQuery(query)
		query = vals.Encode()
		whID := wh.ID
		if id != "" {
			whID = url.PathEscape(id)
		}
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/v1/webhooks"},
			{http.MethodGet, "/v1/agents"},
			{http.MethodGet, "/v1/event-types"},
			{http.MethodGet, "/v1/dead-letters"},
			{http.MethodGet, "/v1/webhooks/" + whID + "/attempts"},
			{http.MethodPost, "/v1/webhooks/" + whID + "/recover"},
			{http.MethodGet, "/v1/events/" + url.PathEscape(id)},
		} {
			checkAnswer(t, a, r.method, r.path+"?"+query, a.Key, "")
		}
	})
}
