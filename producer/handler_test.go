package producer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
)

// withTenant stands in for the registry's API-key middleware.
func withTenant(tenant string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(switchboard.NewContextWithTenant(r.Context(), tenant)))
	})
}

type ingest struct {
	url    string
	env    *testenv.JetStream
	client *producer.Client
	reg    *prometheus.Registry
}

// startIngest serves a Handler on 127.0.0.1 behind withTenant.
func startIngest(tb testing.TB) *ingest {
	tb.Helper()
	c, env, reg := newClient(tb)
	h := &producer.Handler{Client: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(withTenant(tenant, h))
	tb.Cleanup(srv.Close)
	return &ingest{url: srv.URL + "/v1/events", env: env, client: c, reg: reg}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func post(tb testing.TB, url, body string) response {
	tb.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (r response) accepted(tb testing.TB) producer.EventResponse {
	tb.Helper()
	if r.status != http.StatusAccepted {
		tb.Fatalf("status = %d, want 202; body %s", r.status, r.body)
	}
	var res producer.EventResponse
	if err := json.Unmarshal(r.body, &res); err != nil {
		tb.Fatalf("decode %s: %v", r.body, err)
	}
	return res
}

func (r response) errorBody(tb testing.TB, status int) httpjson.ErrorBody {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	var body httpjson.ErrorBody
	if err := json.Unmarshal(r.body, &body); err != nil {
		tb.Fatalf("decode %s: %v", r.body, err)
	}
	if body.Message == "" {
		tb.Fatalf("error without a message: %s", r.body)
	}
	return body
}

func TestHandler_ServeHTTP(t *testing.T) {
	t.Run("Accepted", func(t *testing.T) {
		in := startIngest(t)
		res := post(t, in.url, `{"id":"msg_h1","type":"call.started","agent_id":"agent_7",
			"occurred_at":"2026-01-02T15:04:05.5+01:00","tenant_id":"tn_other","data":{"call_id":"c9"}}`).accepted(t)
		if res.ID != "msg_h1" || res.Duplicate {
			t.Fatalf("response = %+v, want id msg_h1, not a duplicate", res)
		}
		msg := getMsg(t, in.env.JS, 1)
		if want := streams.EventSubject(tenant, "call.started"); msg.Subject != want {
			t.Errorf("subject = %q, want %q: the tenant comes from the context, never the body", msg.Subject, want)
		}
		stored, err := streams.DecodeEvent(msg.Subject, msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("decode stored: %v", err)
		}
		want := switchboard.Event{
			ID: "msg_h1", TenantID: tenant, Type: "call.started", AgentID: "agent_7",
			OccurredAt: time.Date(2026, 1, 2, 14, 4, 5, 5e8, time.UTC), Data: json.RawMessage(`{"call_id":"c9"}`),
		}
		if stored.ID != want.ID || stored.TenantID != want.TenantID || stored.Type != want.Type || stored.AgentID != want.AgentID ||
			!stored.OccurredAt.Equal(want.OccurredAt) || string(stored.Data) != string(want.Data) {
			t.Errorf("stored = %+v, want %+v", stored, want)
		}
	})

	t.Run("GeneratesID", func(t *testing.T) {
		in := startIngest(t)
		r := post(t, in.url, `{"type":"call.started","data":{}}`)
		res := r.accepted(t)
		if !strings.HasPrefix(res.ID, switchboard.EventIDPrefix) {
			t.Fatalf("id = %q, want a generated %q id", res.ID, switchboard.EventIDPrefix)
		}
		if got := r.header.Get(producer.HeaderEventID); got != res.ID {
			t.Errorf("%s = %q, want %q", producer.HeaderEventID, got, res.ID)
		}
	})

	t.Run("Duplicate", func(t *testing.T) {
		in := startIngest(t)
		body := `{"id":"msg_again","type":"call.started","data":{}}`
		if res := post(t, in.url, body).accepted(t); res.Duplicate {
			t.Fatal("first post is a duplicate")
		}
		if res := post(t, in.url, body).accepted(t); !res.Duplicate || res.ID != "msg_again" {
			t.Fatalf("second post = %+v, want a duplicate of msg_again", res)
		}
		if n := streamMsgs(t, in.env.JS); n != 1 {
			t.Fatalf("%d messages stored, want 1", n)
		}
	})

	t.Run("Malformed", func(t *testing.T) {
		in := startIngest(t)
		for name, body := range map[string]string{
			"Empty":       ``,
			"Truncated":   `{"type":"call.started"`,
			"NotAnObject": `["call.started"]`,
			"TypeNumber":  `{"type":5,"data":{}}`,
			"DataInvalid": `{"type":"call.started","data":{x}}`,
			"TwoValues":   `{"type":"call.started","data":{}} {}`,
			"TooLarge":    `{"type":"call.started","data":{"x":"` + strings.Repeat("a", httpjson.MaxBodySize) + `"}}`,
		} {
			t.Run(name, func(t *testing.T) {
				post(t, in.url, body).errorBody(t, http.StatusBadRequest)
			})
		}
		if n := streamMsgs(t, in.env.JS); n != 0 {
			t.Fatalf("%d messages stored, want 0", n)
		}
		if got := metric(t, in.reg, "switchboard_events_rejected_total", "reason", "malformed"); got != 7 {
			t.Errorf("rejected{reason=malformed} = %v, want 7", got)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		in := startIngest(t)
		for _, tt := range []struct {
			name   string
			body   string
			fields []string
		}{
			{name: "TypeMissing", body: `{"data":{}}`, fields: []string{"type"}},
			{name: "TypeBad", body: `{"type":"call started","data":{}}`, fields: []string{"type"}},
			{name: "DataMissing", body: `{"type":"call.started"}`, fields: []string{"data"}},
			{name: "DataNull", body: `{"type":"call.started","data":null}`, fields: []string{"data"}},
			{name: "DataString", body: `{"type":"call.started","data":"x"}`, fields: []string{"data"}},
			{name: "DataArray", body: `{"type":"call.started","data":[{}]}`, fields: []string{"data"}},
			{name: "IDBad", body: `{"id":"msg/1","type":"call.started","data":{}}`, fields: []string{"id"}},
			{name: "IDTooLong", body: `{"id":"` + strings.Repeat("a", 129) + `","type":"call.started","data":{}}`, fields: []string{"id"}},
			{name: "OccurredAtBad", body: `{"type":"call.started","occurred_at":"yesterday","data":{}}`, fields: []string{"occurred_at"}},
			{name: "ReservedType", body: `{"type":"webhook.disabled","data":{}}`, fields: []string{"type"}},
			{name: "ReservedTypeAndBadTime", body: `{"type":"delivery.dead_lettered","occurred_at":"yesterday","data":[]}`, fields: []string{"data", "occurred_at", "type"}},
			{name: "AgentIDTooLong", body: `{"type":"call.started","agent_id":"` + strings.Repeat("a", 256) + `","data":{}}`, fields: []string{"agent_id"}},
			{name: "EveryField", body: `{"id":"a b","occurred_at":"2026-13-01T00:00:00Z","data":1}`, fields: []string{"data", "id", "occurred_at", "type"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				body := post(t, in.url, tt.body).errorBody(t, http.StatusUnprocessableEntity)
				got := slices.Sorted(maps.Keys(body.Errors))
				if !slices.Equal(got, tt.fields) {
					t.Fatalf("errors = %v, want fields %v", body.Errors, tt.fields)
				}
			})
		}
		if n := streamMsgs(t, in.env.JS); n != 0 {
			t.Fatalf("%d messages stored, want 0", n)
		}
	})

	t.Run("LargeDataWithHTMLCharacters", func(t *testing.T) {
		in := startIngest(t)
		post(t, in.url, `{"type":"call.started","data":{"html":"`+strings.Repeat("<&>", 170<<10)+`"}}`).accepted(t)
	})

	t.Run("NoTenant", func(t *testing.T) {
		c, env, _ := newClient(t)
		srv := httptest.NewServer(&producer.Handler{Client: c})
		defer srv.Close()
		r := post(t, srv.URL, `{"type":"call.started","data":{}}`)
		r.errorBody(t, http.StatusUnauthorized)
		if n := streamMsgs(t, env.JS); n != 0 {
			t.Fatalf("%d messages stored, want 0", n)
		}
	})

	t.Run("MethodNotAllowed", func(t *testing.T) {
		in := startIngest(t)
		resp, err := http.Get(in.url)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
			t.Fatalf("GET: status %d, Allow %q; want 405, POST", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})

	t.Run("JetStreamUnavailable", func(t *testing.T) {
		in := startIngest(t)
		in.client.AttemptTimeout = 100 * time.Millisecond
		in.client.RetryWait = 10 * time.Millisecond
		in.env.Server.Shutdown()
		// Every 503 names the id to send the event again under: the
		// client's, or the one generated for an event sent without.
		for _, tc := range []struct{ body, id string }{
			{`{"id":"msg_later","type":"call.started","data":{}}`, "msg_later"},
			{`{"type":"call.started","data":{}}`, ""},
		} {
			r := post(t, in.url, tc.body)
			r.errorBody(t, http.StatusServiceUnavailable)
			if r.header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			var body producer.UnavailableResponse
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("decode %s: %v", r.body, err)
			}
			switch {
			case tc.id != "" && body.ID != tc.id:
				t.Errorf("503 body id = %q, want the client's %q", body.ID, tc.id)
			case tc.id == "" && !strings.HasPrefix(body.ID, switchboard.EventIDPrefix):
				t.Errorf("503 body id = %q, want the generated %q id: %s", body.ID, switchboard.EventIDPrefix, r.body)
			}
			if got := r.header.Get(producer.HeaderEventID); got != body.ID || got == "" {
				t.Errorf("503 %s header = %q, body id %q", producer.HeaderEventID, got, body.ID)
			}
		}
		if got := metric(t, in.reg, "switchboard_events_rejected_total", "reason", "unavailable"); got != 2 {
			t.Errorf("rejected{reason=unavailable} = %v, want 2", got)
		}
	})
}

// FuzzHandler checks that no body a client can send makes the handler
// panic or answer 5xx.
func FuzzHandler(f *testing.F) {
	for _, seed := range []string{
		`{"type":"call.started","data":{}}`,
		`{"id":"msg_1","type":"call.started","agent_id":"a","occurred_at":"2026-01-02T15:04:05Z","data":{"n":1}}`,
		`{"id":"msg_1","type":"call.started","data":{"html":"<&>"}}`,
		`{"type":"","data":null}`,
		`{"type":"a..b","data":[]}`,
		`{"id":"a b","type":"x","data":"s"}`,
		`{"occurred_at":"10000-01-01T00:00:00Z","type":"x","data":{}}`,
		`{"occurred_at":5}`,
		`{"type":"x","data":{"a":` + strings.Repeat("[", 100) + `}}`,
		`[]`, `null`, `{`, ``, `"x"`, `{"type":"call.started","data":{}} {}`,
	} {
		f.Add([]byte(seed))
	}
	c, _, _ := newClient(f)
	c.AttemptTimeout = 5 * time.Second
	h := withTenant(tenant, &producer.Handler{Client: c})
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/events", bytes.NewReader(body))
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusAccepted, http.StatusBadRequest, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("body %q: status %d: %s", body, w.Code, w.Body)
		}
	})
}
