package outbound_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/outbound"
	"github.com/switchboard-hq/switchboard/signer"
)

func testWebhook(t testing.TB) *switchboard.Webhook {
	t.Helper()
	return &switchboard.Webhook{
		ID: "wh_1", TenantID: "t1", URL: "https://example.com/hooks?a=1&b=x%20y",
		Secret: mustSecret(t), Status: switchboard.StatusActive,
	}
}

func testEvent() switchboard.Event {
	return switchboard.Event{
		ID: "msg_1", TenantID: "t1", Type: "call.started", AgentID: "agent-7",
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Data:       json.RawMessage(`{"call_id":"c1"}`),
	}
}

// newRequest builds the request for testEvent to wh and returns it with
// its body.
func newRequest(t *testing.T, wh *switchboard.Webhook, now time.Time) (*http.Request, []byte) {
	t.Helper()
	evt := testEvent()
	body, err := evt.Payload(nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := outbound.NewRequest(context.Background(), wh, evt.ID, body, now)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	got, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	return req, got
}

func TestNewRequest_Plain(t *testing.T) {
	wh := testWebhook(t)
	now := time.Now()
	req, body := newRequest(t, wh, now)
	evt := testEvent()
	want, _ := evt.Payload(nil)
	if string(body) != string(want) {
		t.Errorf("body %s, want %s", body, want)
	}
	if req.Method != http.MethodPost || req.URL.String() != wh.URL {
		t.Errorf("%s %s, want POST %s", req.Method, req.URL, wh.URL)
	}
	for k, v := range map[string]string{
		"Content-Type": "application/json", "User-Agent": outbound.UserAgent, "Webhook-Id": "msg_1",
	} {
		if got := req.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if req.Header.Get("Authorization") != "" {
		t.Errorf("Authorization %q sent without auth", req.Header.Get("Authorization"))
	}
	verify(t, wh.Secret, body, req.Header)
	if n := len(strings.Fields(req.Header.Get(signer.HeaderSignature))); n != 1 {
		t.Errorf("%d signatures, want 1", n)
	}
}

// verify checks a request with the Standard Webhooks library.
func verify(t *testing.T, secret string, body []byte, h http.Header) {
	t.Helper()
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(body, h); err != nil {
		t.Errorf("the Standard Webhooks library rejects the request: %v", err)
	}
}

func TestNewRequest_Methods(t *testing.T) {
	for method, want := range map[string]string{"": "POST", "POST": "POST", "PUT": "PUT", "PATCH": "PATCH"} {
		wh := testWebhook(t)
		wh.Method = method
		if req, _ := newRequest(t, wh, time.Now()); req.Method != want {
			t.Errorf("method %q: sent %s, want %s", method, req.Method, want)
		}
	}
	for _, method := range []string{"GET", "DELETE", "post"} {
		wh := testWebhook(t)
		wh.Method = method
		if _, err := outbound.NewEndpoint(wh); !errors.Is(err, outbound.ErrInvalidWebhook) {
			t.Errorf("method %q: err = %v, want ErrInvalidWebhook", method, err)
		}
	}
}

func TestNewRequest_Auth(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ann:pa:ss"))
	tests := []struct {
		name   string
		auth   switchboard.Auth
		header string // header that carries the credentials
		want   string
		query  string // the URL's query when the token goes there
	}{
		{name: "None", auth: switchboard.Auth{Type: switchboard.AuthNone}, header: "Authorization"},
		{name: "Basic", auth: switchboard.Auth{Type: switchboard.AuthBasic, Username: "ann", Password: "pa:ss"}, header: "Authorization", want: basic},
		{name: "Bearer", auth: switchboard.Auth{Type: switchboard.AuthBearer, Token: "tok"}, header: "Authorization", want: "Bearer tok"},
		{name: "AuthHeader", auth: switchboard.Auth{Type: switchboard.AuthAuthHeader, Token: "Token abc"}, header: "Authorization", want: "Token abc"},
		{name: "HeaderDefault", auth: switchboard.Auth{Type: switchboard.AuthHeader, Token: "tok"}, header: "X-Auth-Token", want: "tok"},
		{name: "HeaderNamed", auth: switchboard.Auth{Type: switchboard.AuthHeader, Token: "tok", Name: "x-api-key"}, header: "X-Api-Key", want: "tok"},
		{name: "QueryDefault", auth: switchboard.Auth{Type: switchboard.AuthQueryString, Token: "t&k"}, query: "a=1&b=x%20y&token=t%26k"},
		{name: "QueryNamed", auth: switchboard.Auth{Type: switchboard.AuthQueryString, Token: "tok", Name: "api key"}, query: "a=1&b=x%20y&api+key=tok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wh := testWebhook(t)
			wh.Auth = tt.auth
			req, body := newRequest(t, wh, time.Now())
			if tt.header != "" {
				if got := req.Header.Get(tt.header); got != tt.want {
					t.Errorf("%s = %q, want %q", tt.header, got, tt.want)
				}
			}
			wantQuery := "a=1&b=x%20y"
			if tt.query != "" {
				wantQuery = tt.query
			}
			if req.URL.RawQuery != wantQuery {
				t.Errorf("query %q, want %q", req.URL.RawQuery, wantQuery)
			}
			verify(t, wh.Secret, body, req.Header)
		})
	}
	t.Run("Unusable", func(t *testing.T) {
		for _, auth := range []switchboard.Auth{
			{Type: switchboard.AuthBasic, Password: "p"},
			{Type: switchboard.AuthBearer},
			{Type: switchboard.AuthAuthHeader},
			{Type: switchboard.AuthHeader},
			{Type: switchboard.AuthQueryString},
			{Type: "digest", Token: "t"},
		} {
			wh := testWebhook(t)
			wh.Auth = auth
			if _, err := outbound.NewEndpoint(wh); !errors.Is(err, outbound.ErrInvalidWebhook) {
				t.Errorf("auth %+v: err = %v, want ErrInvalidWebhook", auth, err)
			}
		}
	})
}

// TestNewRequest_CustomHeaders checks that custom headers are sent and that
// none overrides the signature, content or auth headers.
func TestNewRequest_CustomHeaders(t *testing.T) {
	wh := testWebhook(t)
	wh.Auth = switchboard.Auth{Type: switchboard.AuthHeader, Token: "secret-token", Name: "X-Api-Key"}
	wh.Headers = map[string]string{
		"x-tenant":          "acme",
		"User-Agent":        "acme-hooks/2",
		"content-type":      "text/plain",
		"Webhook-Signature": "v1,forged",
		"webhook-id":        "msg_forged",
		"webhook-timestamp": "1",
		"X-API-KEY":         "forged",
	}
	req, body := newRequest(t, wh, time.Now())
	for k, want := range map[string]string{
		"X-Tenant": "acme", "User-Agent": "acme-hooks/2", "Content-Type": "application/json",
		"Webhook-Id": "msg_1", "X-Api-Key": "secret-token",
	} {
		if got := req.Header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want [%q]", k, got, want)
		}
	}
	if strings.Contains(req.Header.Get(signer.HeaderSignature), "forged") {
		t.Errorf("a custom header replaced the signature: %q", req.Header.Get(signer.HeaderSignature))
	}
	verify(t, wh.Secret, body, req.Header)
}

func TestNewRequest_Properties(t *testing.T) {
	wh := testWebhook(t)
	wh.Properties = json.RawMessage(` {"crm_id": "x-1", "n": [1, 2]} `)
	_, body := newRequest(t, wh, time.Now())
	// The same body the root package renders with properties.
	evt := testEvent()
	want, err := evt.Payload(wh.Properties)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != string(want) {
		t.Errorf("body\n got %s\nwant %s", body, want)
	}
	var p switchboard.Payload
	if err := json.Unmarshal(body, &p); err != nil || string(p.Properties) != `{"crm_id": "x-1", "n": [1, 2]}` {
		t.Errorf("properties %s (err %v)", p.Properties, err)
	}

	t.Run("Null", func(t *testing.T) {
		wh := testWebhook(t)
		wh.Properties = json.RawMessage("null")
		_, body := newRequest(t, wh, time.Now())
		if strings.Contains(string(body), "properties") {
			t.Errorf("null properties sent: %s", body)
		}
	})
	t.Run("NotAnObject", func(t *testing.T) {
		for _, p := range []string{`[1]`, `"x"`, `{"a":`} {
			wh := testWebhook(t)
			wh.Properties = json.RawMessage(p)
			if _, err := outbound.NewEndpoint(wh); !errors.Is(err, outbound.ErrInvalidWebhook) {
				t.Errorf("properties %s: err = %v, want ErrInvalidWebhook", p, err)
			}
		}
	})
	t.Run("EmptyBodyObject", func(t *testing.T) {
		e, err := outbound.NewEndpoint(wh)
		if err != nil {
			t.Fatal(err)
		}
		req, err := e.NewRequest(context.Background(), "m", []byte("{}"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(req.Body)
		if !json.Valid(got) || !strings.HasPrefix(string(got), `{"properties":`) {
			t.Errorf("body %s", got)
		}
		if _, err := e.NewRequest(context.Background(), "m", []byte("[1]"), time.Now()); !errors.Is(err, outbound.ErrInvalidBody) {
			t.Errorf("array body: err = %v, want ErrInvalidBody", err)
		}
	})
}

// TestNewRequest_Rotation checks that every secret valid at the time of the
// request signs it, each verifying with the Standard Webhooks library, and
// that expired ones do not.
func TestNewRequest_Rotation(t *testing.T) {
	now := time.Now()
	wh := testWebhook(t)
	retiring, expired, undated := mustSecret(t), mustSecret(t), mustSecret(t)
	wh.RetiringSecrets = []switchboard.RetiringSecret{
		{Secret: retiring, ExpiresAt: now.Add(time.Hour)},
		{Secret: expired, ExpiresAt: now.Add(-time.Second)},
		{Secret: undated},
	}
	req, body := newRequest(t, wh, now)
	sigs := strings.Fields(req.Header.Get(signer.HeaderSignature))
	if want := len(wh.SigningSecrets(now)); len(sigs) != want || want != 2 {
		t.Fatalf("%d signatures (%v), want one per signing secret: %d", len(sigs), sigs, want)
	}
	for _, s := range []string{wh.Secret, retiring} {
		verify(t, s, body, req.Header)
	}
	v, _ := standardwebhooks.NewWebhook(expired)
	if err := v.Verify(body, req.Header); err == nil {
		t.Error("an expired secret still signs")
	}

	// An hour on, the retiring secret has stopped signing too.
	req, _ = newRequest(t, wh, now.Add(time.Hour))
	if sigs := strings.Fields(req.Header.Get(signer.HeaderSignature)); len(sigs) != 1 {
		t.Errorf("%d signatures after the grace period, want 1", len(sigs))
	}

	t.Run("BadRetiringSecret", func(t *testing.T) {
		wh := testWebhook(t)
		wh.RetiringSecrets = []switchboard.RetiringSecret{{Secret: "whsec_!!", ExpiresAt: now.Add(time.Hour)}}
		if _, err := outbound.NewEndpoint(wh); !errors.Is(err, signer.ErrInvalidSecret) {
			t.Errorf("err = %v, want ErrInvalidSecret", err)
		}
	})
}

func TestNewEndpoint_BadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://example.com/x", "/relative", "http://", "http://exa mple.com/"} {
		wh := testWebhook(t)
		wh.URL = u
		if _, err := outbound.NewEndpoint(wh); !errors.Is(err, outbound.ErrInvalidWebhook) {
			t.Errorf("url %q: err = %v, want ErrInvalidWebhook", u, err)
		}
	}
}

func BenchmarkEndpoint_NewRequest(b *testing.B) {
	wh := testWebhook(b)
	wh.Auth = switchboard.Auth{Type: switchboard.AuthBearer, Token: "tok"}
	e, err := outbound.NewEndpoint(wh)
	if err != nil {
		b.Fatal(err)
	}
	evt := testEvent()
	body, _ := evt.Payload(nil)
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.NewRequest(ctx, evt.ID, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzEndpoint_Properties: whatever JSON object a body is, the body sent
// with properties is a JSON object with the same fields plus properties.
func FuzzEndpoint_Properties(f *testing.F) {
	for _, body := range []string{`{}`, `{ }`, `{"a":1}`, ` {"a":{"b":[1,2]}} `, "{\"a\":\"}\"\n}\n"} {
		f.Add(body)
	}
	wh := testWebhook(f)
	wh.Properties = json.RawMessage(`{"p":true}`)
	e, err := outbound.NewEndpoint(wh)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var in map[string]json.RawMessage
		if json.Unmarshal([]byte(body), &in) != nil || in == nil || in["properties"] != nil {
			return
		}
		req, err := e.NewRequest(context.Background(), "m", []byte(body), time.Now())
		if err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		sent, _ := io.ReadAll(req.Body)
		var out map[string]json.RawMessage
		if err := json.Unmarshal(sent, &out); err != nil {
			t.Fatalf("body %q sent as %q: %v", body, sent, err)
		}
		if string(out["properties"]) != `{"p":true}` || len(out) != len(in)+1 {
			t.Fatalf("body %q sent as %q", body, sent)
		}
	})
}
