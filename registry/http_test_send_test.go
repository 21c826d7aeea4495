package registry_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/outbound"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/registry"
)

// testSendJSON is the answer of POST /v1/webhooks/{id}/test.
type testSendJSON struct {
	Success   bool    `json:"success"`
	Status    int     `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	Body      string  `json:"body"`
	Error     string  `json:"error"`
	EventID   string  `json:"event_id"`
}

// allowLoopback lets test sends reach receivers on 127.0.0.1.
func allowLoopback(s *registry.Server) {
	s.Guard = netguard.New(false, netip.MustParsePrefix("127.0.0.0/8"))
}

func (a *api) testSend(t *testing.T, key, id string) testSendJSON {
	t.Helper()
	status, b := a.do(t, http.MethodPost, "/v1/webhooks/"+id+"/test", key, "")
	if status != http.StatusOK {
		t.Fatalf("POST test: %d %s", status, b)
	}
	return decode[testSendJSON](t, b)
}

func TestTestSend_DeliversASignedTestEvent(t *testing.T) {
	a := startAPI(t, allowLoopback)
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusAccepted })
	secret := "whsec_" + strings.Repeat("QUJD", 11) // 33 bytes of key
	wh := a.create(t, a.Key, "/v1/webhooks", jsonBody(t, map[string]any{
		"name": "crm", "url": recv.URL + "/hooks", "events": []string{"call.*"}, "secret": secret,
	}))

	res := a.testSend(t, a.Key, wh.ID)
	if !res.Success || res.Status != http.StatusAccepted || res.Error != "" || res.LatencyMS <= 0 {
		t.Errorf("answer %+v, want success with status 202 and a latency", res)
	}
	if !strings.HasPrefix(res.EventID, "evt_") {
		t.Errorf("event_id %q, want evt_...", res.EventID)
	}
	if recv.Count() != 1 {
		t.Fatalf("receiver got %d requests, want 1", recv.Count())
	}
	r := recv.Requests()[0]
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(r.Body, r.Header); err != nil {
		t.Errorf("the Standard Webhooks library rejects the test send: %v", err)
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("webhook-id") != res.EventID {
		t.Errorf("%s, content-type %q, webhook-id %q", r.Method, r.Header.Get("Content-Type"), r.Header.Get("webhook-id"))
	}
	var p switchboard.Payload
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("body %s: %v", r.Body, err)
	}
	var data map[string]string
	if err := json.Unmarshal(p.Data, &data); err != nil {
		t.Fatalf("data %s: %v", p.Data, err)
	}
	if p.ID != res.EventID || p.Type != "webhook.test" || p.AgentID != "" || data["webhook_id"] != wh.ID ||
		time.Since(p.Timestamp) > time.Minute {
		t.Errorf("body %s", r.Body)
	}
}

func TestTestSend_ReportsTheReceiversAnswer(t *testing.T) {
	a := startAPI(t, allowLoopback)
	long := strings.Repeat("é", 1000) // 2000 bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(long))
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			w.Write([]byte(`{"ok":true}`))
		}
	}))
	defer srv.Close()
	id := func(path string) string {
		return a.create(t, a.Key, "/v1/webhooks", jsonBody(t, map[string]any{
			"name": path, "url": srv.URL + path, "events": []string{"*"},
		})).ID
	}

	res := a.testSend(t, a.Key, id("/ok"))
	if !res.Success || res.Status != 200 || res.Body != `{"ok":true}` {
		t.Errorf("ok: %+v", res)
	}
	res = a.testSend(t, a.Key, id("/fail"))
	if res.Success || res.Status != 500 || !strings.Contains(res.Error, "500") {
		t.Errorf("fail: %+v", res)
	}
	// The excerpt a delivery's attempt keeps, not one of the test send's own.
	if n := len(res.Body); n > outbound.MaxExcerpt || n < outbound.MaxExcerpt-4 || !strings.HasPrefix(long, strings.TrimSuffix(res.Body, "?")) {
		t.Errorf("fail: body excerpt of %d bytes, want the first %d, as an attempt keeps", n, outbound.MaxExcerpt)
	}
	res = a.testSend(t, a.Key, id("/moved"))
	if res.Success || res.Status != http.StatusFound || !strings.Contains(res.Error, "redirects are not followed") {
		t.Errorf("moved: %+v", res)
	}
}

func TestTestSend_ReceiverDownIsAnAnswer(t *testing.T) {
	a := startAPI(t, allowLoopback)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	wh := a.create(t, a.Key, "/v1/webhooks", jsonBody(t, map[string]any{
		"name": "down", "url": "http://" + addr + "/hooks", "events": []string{"*"},
	}))
	res := a.testSend(t, a.Key, wh.ID)
	if res.Success || res.Status != 0 || !strings.Contains(res.Error, "connection refused") || res.EventID == "" {
		t.Errorf("answer %+v, want a failure saying the connection was refused", res)
	}
	if strings.Contains(res.Error, "/hooks") {
		t.Errorf("error %q shows the URL, which may hold a token", res.Error)
	}
}

// TestTestSend_SSRFGuardIsOnByDefault: a server without a Guard refuses
// loopback and private targets, and says so in a 200.
func TestTestSend_SSRFGuardIsOnByDefault(t *testing.T) {
	a := startAPI(t, nil)
	recv := testenv.StartReceiver(t, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(recv.URL, "http://"))
	for url, want := range map[string]string{
		recv.URL:                          "refused: 127.0.0.1 is a loopback address; see --allow-private-targets",
		"http://localhost:" + port:        "is a loopback address; see --allow-private-targets",
		"http://10.1.2.3/hooks":           "refused: 10.1.2.3 is a private address; see --allow-private-targets",
		"http://169.254.169.254/metadata": "refused: 169.254.169.254 is a cloud metadata address",
	} {
		body := jsonBody(t, map[string]any{"name": url, "url": url, "events": []string{"*"}})
		var wh webhookJSON
		if strings.Contains(url, "localhost") {
			wh = a.create(t, a.Key, "/v1/webhooks", body)
		} else {
			// A literal address the guard refuses is refused at create
			// already; one stored before that rule still is at send.
			if status, b := a.do(t, http.MethodPost, "/v1/webhooks", a.Key, body); status != http.StatusUnprocessableEntity {
				t.Errorf("create with %s: %d %s, want 422", url, status, b)
			}
			wh = a.createAllowingLoopback(t, body)
		}
		res := a.testSend(t, a.Key, wh.ID)
		if res.Success || res.Status != 0 || !strings.Contains(res.Error, want) {
			t.Errorf("%s: answer %+v, want the error to say %q", url, res, want)
		}
	}
	if n := recv.Count(); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
}

func TestTestSend_OtherTenantsWebhookIsNotFound(t *testing.T) {
	a := startAPI(t, allowLoopback)
	recv := testenv.StartReceiver(t, nil)
	wh := a.create(t, a.Key, "/v1/webhooks", jsonBody(t, map[string]any{
		"name": "mine", "url": recv.URL, "events": []string{"*"},
	}))
	other := a.newTenant(t, "other")
	for _, tt := range []struct{ key, id string }{{other, wh.ID}, {a.Key, "wh_nope"}} {
		status, b := a.do(t, http.MethodPost, "/v1/webhooks/"+tt.id+"/test", tt.key, "")
		if status != http.StatusNotFound || strings.Contains(string(b), recv.URL) {
			t.Errorf("test send of %s: %d %s, want 404", tt.id, status, b)
		}
	}
	if status, _ := a.do(t, http.MethodPost, "/v1/webhooks/"+wh.ID+"/test", "", ""); status != http.StatusUnauthorized {
		t.Errorf("without a key: %d, want 401", status)
	}
	if n := recv.Count(); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
}

// TestTestSend_TimesOutAtTheWebhooksTimeout: a receiver that never answers
// is given the webhook's timeout, then reported.
func TestTestSend_TimesOutAtTheWebhooksTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 5 s timeout")
	}
	a := startAPI(t, allowLoopback)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	wh := a.create(t, a.Key, "/v1/webhooks", jsonBody(t, map[string]any{
		"name": "slow", "url": srv.URL, "events": []string{"*"}, "timeout": 5,
	}))
	res := a.testSend(t, a.Key, wh.ID)
	if res.Success || res.Status != 0 || !strings.Contains(res.Error, "timeout of 5s") || res.LatencyMS < 4000 {
		t.Errorf("answer %+v, want a timeout after 5 s", res)
	}
}
