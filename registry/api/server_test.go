package api_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

func TestServer_Authentication(t *testing.T) {
	a := apitest.Start(t, nil)
	for _, tc := range []struct {
		name, header string
		want         int
		wantMessage  string
	}{
		{"no header", "", 401, "Missing Bearer Token"},
		{"other scheme", "Basic " + a.Key, 401, "Missing Bearer Token"},
		{"empty token", "Bearer ", 401, "Missing Bearer Token"},
		{"unknown key", "Bearer sk_unknown", 401, "Invalid API key."},
		{"key with a suffix", "Bearer " + a.Key + "x", 401, "Invalid API key."},
		{"valid key", "Bearer " + a.Key, 200, ""},
		{"scheme in lower case", "bearer " + a.Key, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, route := range []struct{ method, path string }{
				{http.MethodGet, "/v1/webhooks"},
				{http.MethodGet, "/v1/event-types"},
				{http.MethodGet, "/v1/webhooks/wh_1"},
				{http.MethodDelete, "/v1/webhooks/wh_1"},
				{http.MethodPost, "/v1/webhooks"},
				{http.MethodPost, "/v1/agents/a/webhooks"},
			} {
				req, _ := http.NewRequest(route.method, a.URL+route.path, strings.NewReader("{}"))
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				_, _ = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				if tc.want == 401 {
					e := apitest.Decode[apitest.ErrorJSON](t, buf.Bytes())
					if resp.StatusCode != 401 || e.Message != tc.wantMessage || resp.Header.Get("WWW-Authenticate") == "" {
						t.Errorf("%s %s: %d %s", route.method, route.path, resp.StatusCode, buf.Bytes())
					}
				} else if resp.StatusCode == 401 {
					t.Errorf("%s %s: 401 with a valid key", route.method, route.path)
				}
			}
		})
	}
}

var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func TestServer_UnknownRoutes(t *testing.T) {
	a := apitest.Start(t, nil)
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/v1/nope", 404},
		{http.MethodGet, "/", 404},
		{http.MethodPost, "/v1/events", 404}, // no Ingest handler
		{http.MethodGet, "/v1/webhooks/wh_1/attempts", 404},
		{http.MethodPut, "/v1/webhooks", 405},
		{http.MethodPut, "/v1/webhooks/wh_1", 405},
		{http.MethodDelete, "/v1/event-types", 405},
		{http.MethodGet, "/v1/webhooks/", 404},
		{http.MethodPost, "/v1/agents/./webhooks", 307}, // cleaned to a path that is no route
		{http.MethodGet, "/v1//webhooks", 307},
	} {
		req, _ := http.NewRequest(tc.method, a.URL+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+a.Key)
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		status, b := resp.StatusCode, buf.Bytes()
		if status != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, status, tc.want)
			continue
		}
		if e := apitest.Decode[apitest.ErrorJSON](t, b); e.Message == "" {
			t.Errorf("%s %s: %s", tc.method, tc.path, b)
		}
	}
	// An authenticated lookup of an unknown id is a 404 too.
	status, b := a.Do(t, http.MethodGet, "/v1/webhooks/wh_nope", a.Key, "")
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != 404 || e.Message != "Webhook not found." {
		t.Errorf("unknown webhook: %d %s", status, b)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestServer_Ingest(t *testing.T) {
	var logs syncBuffer
	a := apitest.Start(t, func(s *api.Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		s.Ingest = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Query().Has("panic"):
				panic("ingest exploded")
			case r.URL.Query().Has("panic-late"):
				w.WriteHeader(http.StatusAccepted)
				_, _ = w.Write([]byte("partial"))
				http.NewResponseController(w).Flush()
				panic("ingest exploded late")
			}
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(switchboard.TenantFromContext(r.Context()) + " " + switchboard.ActorFromContext(r.Context())))
		})
	})

	status, b := a.Do(t, http.MethodPost, "/v1/events", a.Key, `{}`)
	if status != http.StatusAccepted || string(b) != a.Tenant.ID+" default" {
		t.Errorf("ingest: %d %q, want the tenant and actor of the key", status, b)
	}
	if status, _ := a.Do(t, http.MethodPost, "/v1/events", "", `{}`); status != http.StatusUnauthorized {
		t.Errorf("ingest without a key: %d", status)
	}

	status, b = a.Do(t, http.MethodPost, "/v1/events?panic", a.Key, `{}`)
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusInternalServerError || e.Message != "Internal error." {
		t.Errorf("panic: %d %s", status, b)
	}
	// A panic after the response began cuts it off: it must not look whole.
	req, _ := http.NewRequest(http.MethodPost, a.URL+"/v1/events?panic-late", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+a.Key)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("late panic: the client read a complete response: %d %q", resp.StatusCode, b)
		}
	}
	// The server survives.
	apitest.MustGet(t, a, a.Key, "/v1/webhooks")

	for _, want := range []string{
		`msg="panic serving request" method=POST route=/v1/events panic="ingest exploded"`,
		`msg="http request" method=POST route=/v1/events status=500`,
		`msg="http request" method=GET route=/v1/webhooks status=200`,
		`msg="http request" method=POST route=/v1/events status=202`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

func TestServer_SecretsNotLogged(t *testing.T) {
	var logs syncBuffer
	a := apitest.Start(t, func(s *api.Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	secret := secretOf(40)
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "x", "url": "https://example.com/h", "events": ["*"], "secret": "`+secret+`"}`)
	apitest.MustGet(t, a, a.Key, "/v1/webhooks/"+wh.ID)
	// Break the mirror so that the failure is logged, with its error.
	a.JS.Stop()
	a.Create(t, a.Key, "/v1/webhooks", `{"name": "y", "url": "https://example.com/h", "events": ["*"], "secret": "`+secret+`"}`)
	if !strings.Contains(logs.String(), "mirroring to KV deferred") {
		t.Errorf("mirror failure not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), a.Key) {
		t.Errorf("logs show a secret or key:\n%s", logs.String())
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := apitest.Start(t, func(s *api.Server) { s.Metrics = api.NewMetrics(reg) })
	api.NewMetrics(reg) // a second server on the same registry shares them

	for _, id := range []string{"wh_1", "wh_2", "wh_3"} {
		a.Do(t, http.MethodGet, "/v1/webhooks/"+id, a.Key, "")
	}
	a.Do(t, http.MethodGet, "/v1/webhooks", a.Key, "")
	a.Do(t, http.MethodGet, "/v1/webhooks", "", "")
	a.Do(t, http.MethodGet, "/v1/no/such/route/42", a.Key, "")
	a.Do(t, "BREW", "/v1/webhooks", a.Key, "")

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	histograms := map[string]uint64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += l.GetName() + "=" + l.GetValue() + " "
			}
			switch mf.GetName() {
			case "switchboard_http_requests_total":
				counts[labels] = m.GetCounter().GetValue()
			case "switchboard_http_request_duration_seconds":
				histograms[labels] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	wantCounts := map[string]float64{
		"code=404 method=GET route=/v1/webhooks/{id} ": 3,
		"code=200 method=GET route=/v1/webhooks ":      1,
		"code=401 method=GET route=/v1/webhooks ":      1,
		"code=404 method=GET route=unmatched ":         1,
		"code=405 method=OTHER route=unmatched ":       1,
	}
	wantHistograms := map[string]uint64{
		"method=GET route=/v1/webhooks/{id} ": 3,
		"method=GET route=/v1/webhooks ":      2,
		"method=GET route=unmatched ":         1,
		"method=OTHER route=unmatched ":       1,
	}
	if len(counts) != len(wantCounts) || len(histograms) != len(wantHistograms) {
		t.Errorf("series: %v %v", counts, histograms)
	}
	for k, v := range wantCounts {
		if counts[k] != v {
			t.Errorf("requests{%s} = %v, want %v", k, counts[k], v)
		}
	}
	for k, v := range wantHistograms {
		if histograms[k] != v {
			t.Errorf("duration{%s} count = %v, want %v", k, histograms[k], v)
		}
	}
}
