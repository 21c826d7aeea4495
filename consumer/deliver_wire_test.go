package consumer_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestDeliverer_SendsWhatTheWebhookSays puts webhooks with every auth
// type, other methods, custom headers, properties and a rotated secret in
// the KV bucket, publishes one event, and checks what each receives.
func TestDeliverer_SendsWhatTheWebhookSays(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	var mu sync.Mutex
	urls := map[string]*url.URL{} // by webhook-id: what each delivery was sent to
	recv := testenv.StartReceiver(t, func(r *http.Request, _ []byte) int {
		mu.Lock()
		defer mu.Unlock()
		urls[r.Header.Get("X-Hook")] = r.URL
		return http.StatusOK
	})

	hooks := map[string]func(*switchboard.Webhook){
		"none": func(w *switchboard.Webhook) { w.Auth = switchboard.Auth{Type: switchboard.AuthNone} },
		"basic": func(w *switchboard.Webhook) {
			w.Auth = switchboard.Auth{Type: switchboard.AuthBasic, Username: "ann", Password: "s3cret"}
		},
		"bearer": func(w *switchboard.Webhook) { w.Auth = switchboard.Auth{Type: switchboard.AuthBearer, Token: "tok-b"} },
		"authheader": func(w *switchboard.Webhook) {
			w.Auth = switchboard.Auth{Type: switchboard.AuthAuthHeader, Token: "ApiKey tok-a"}
		},
		"header": func(w *switchboard.Webhook) { w.Auth = switchboard.Auth{Type: switchboard.AuthHeader, Token: "tok-h"} },
		"headernamed": func(w *switchboard.Webhook) {
			w.Auth = switchboard.Auth{Type: switchboard.AuthHeader, Token: "tok-n", Name: "X-Api-Key"}
		},
		"query": func(w *switchboard.Webhook) {
			w.URL += "?src=sb"
			w.Auth = switchboard.Auth{Type: switchboard.AuthQueryString, Token: "tok q", Name: "key"}
		},
		"put":   func(w *switchboard.Webhook) { w.Method = http.MethodPut },
		"patch": func(w *switchboard.Webhook) { w.Method = http.MethodPatch },
		"headers": func(w *switchboard.Webhook) {
			w.Auth = switchboard.Auth{Type: switchboard.AuthBearer, Token: "tok-real"}
			w.Headers = map[string]string{
				"X-Tenant": "acme", "Authorization": "Bearer forged",
				"Content-Type": "text/plain", "Webhook-Signature": "v1,forged",
			}
		},
		"properties": func(w *switchboard.Webhook) {
			w.Properties = json.RawMessage(`{"crm": {"account": "A-1"}, "region": "eu"}`)
		},
	}
	webhooks := map[string]switchboard.Webhook{}
	for name, configure := range hooks {
		wh := webhook(t, "wh_"+name, recv.URL+"/"+name, "call.started")
		wh.Headers = map[string]string{"X-Hook": name}
		configure(&wh)
		wh.Headers["X-Hook"] = name
		webhooks[name] = wh
		s.putWebhook(wh)
	}
	// Rotated a minute ago: the old secret signs for another hour, an older
	// one no longer.
	rotated := webhook(t, "wh_rotated", recv.URL+"/rotated", "call.started")
	rotated.Headers = map[string]string{"X-Hook": "rotated"}
	oldSecret, olderSecret := rotated.Secret, newSecret(t)
	rotated.Secret = newSecret(t)
	rotated.RetiringSecrets = []switchboard.RetiringSecret{
		{Secret: oldSecret, ExpiresAt: time.Now().Add(time.Hour)},
		{Secret: olderSecret, ExpiresAt: time.Now().Add(-time.Minute)},
	}
	webhooks["rotated"] = rotated
	s.putWebhook(rotated)
	s.startAll()

	evt := event("msg_wire", "call.started", "agent-7")
	s.publishEvent(evt, true)
	// The receiver records a request before it calls back: wait for both.
	testenv.WaitFor(t, 15*time.Second, "every delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return recv.Count() == len(webhooks) && len(urls) == len(webhooks)
	})

	got := map[string]testenv.Request{}
	for _, r := range recv.Requests() {
		got[r.Header.Get("X-Hook")] = r
	}
	mu.Lock()
	defer mu.Unlock()
	plain, _ := evt.Payload(nil)
	for name, wh := range webhooks {
		t.Run(name, func(t *testing.T) {
			r, ok := got[name]
			if !ok {
				t.Fatalf("no request at /%s", name)
			}
			v, err := standardwebhooks.NewWebhook(wh.Secret)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(r.Body, r.Header); err != nil {
				t.Errorf("the Standard Webhooks library rejects the signature: %v", err)
			}
			if ct := r.Header.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if name != "properties" && string(r.Body) != string(plain) {
				t.Errorf("body %s, want %s", r.Body, plain)
			}
			wantMethod := wh.HTTPMethod()
			if r.Method != wantMethod {
				t.Errorf("method %s, want %s", r.Method, wantMethod)
			}
			if u := urls[name]; u == nil || u.Path != "/"+name {
				t.Errorf("sent to %v, want path /%s", u, name)
			}
		})
	}

	authz := func(name string) string { return got[name].Header.Get("Authorization") }
	for name, want := range map[string]string{
		"none":       "",
		"basic":      "Basic " + base64.StdEncoding.EncodeToString([]byte("ann:s3cret")),
		"bearer":     "Bearer tok-b",
		"authheader": "ApiKey tok-a",
		"headers":    "Bearer tok-real",
	} {
		if got := authz(name); got != want {
			t.Errorf("%s: Authorization %q, want %q", name, got, want)
		}
	}
	if v := got["header"].Header.Get("X-Auth-Token"); v != "tok-h" {
		t.Errorf("header: X-Auth-Token %q, want tok-h", v)
	}
	if v := got["headernamed"].Header.Get("X-Api-Key"); v != "tok-n" {
		t.Errorf("headernamed: X-Api-Key %q, want tok-n", v)
	}
	if q := urls["query"].RawQuery; q != "src=sb&key=tok+q" {
		t.Errorf("query: query string %q, want src=sb&key=tok+q", q)
	}
	h := got["headers"].Header
	if h.Get("X-Tenant") != "acme" || strings.Contains(h.Get("Webhook-Signature"), "forged") {
		t.Errorf("headers: X-Tenant %q, signature %q", h.Get("X-Tenant"), h.Get("Webhook-Signature"))
	}

	var p switchboard.Payload
	if err := json.Unmarshal(got["properties"].Body, &p); err != nil {
		t.Fatalf("properties: body %s: %v", got["properties"].Body, err)
	}
	// The KV value holds the properties compacted (json.Marshal compacts a
	// RawMessage), and they are sent as the KV value has them.
	var props bytes.Buffer
	if err := json.Compact(&props, webhooks["properties"].Properties); err != nil {
		t.Fatal(err)
	}
	if want, _ := evt.Payload(props.Bytes()); string(got["properties"].Body) != string(want) {
		t.Errorf("properties: body\n got %s\nwant %s", got["properties"].Body, want)
	}
	if p.ID != evt.ID || string(p.Data) != string(evt.Data) {
		t.Errorf("properties: the event is lost: %s", got["properties"].Body)
	}

	r := got["rotated"]
	if n := len(strings.Fields(r.Header.Get("Webhook-Signature"))); n != 2 {
		t.Errorf("rotated: %d signatures, want 2 (new and retiring)", n)
	}
	for secret, want := range map[string]bool{oldSecret: true, olderSecret: false} {
		v, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(r.Body, r.Header); (err == nil) != want {
			t.Errorf("rotated: verify with retiring secret (valid %v): %v", want, err)
		}
	}
}

// TestDeliverer_RefusesPrivateTargets runs the deliverer with the default
// SSRF guard: deliveries to loopback (by address and by name), private,
// link-local and metadata addresses are dead-lettered after one refused
// attempt, with the guard's reason, and never reach the receiver.
func TestDeliverer_RefusesPrivateTargets(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(recv.URL, "http://"))
	targets := map[string]string{
		"wh_loopback":  recv.URL,
		"wh_localhost": "http://localhost:" + port,
		"wh_private":   "http://10.0.0.1:" + port,
		"wh_ula":       "http://[fd00::1]:" + port,
		"wh_mapped":    "http://[::ffff:127.0.0.1]:" + port,
		"wh_metadata":  "http://169.254.169.254/latest/meta-data/",
	}
	for id, u := range targets {
		wh := webhook(t, id, u, "call.started")
		wh.MaxRetries = 5
		s.putWebhook(wh)
	}
	s.startIndex()
	s.startMatcher()
	d := s.deliverer()
	d.Guard = nil // the default
	goRun(t, "deliverer", d.Run)

	s.publishEvent(event("msg_ssrf", "call.started", ""), true)
	testenv.WaitFor(t, 15*time.Second, "dead letters", func() bool { return len(s.deadLetters()) == len(targets) })
	if n := recv.Count(); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
	kinds := map[string]string{
		"wh_loopback": "127.0.0.1 is a loopback address", "wh_localhost": "is a loopback address",
		"wh_private": "10.0.0.1 is a private address", "wh_ula": "fd00::1 is a private address",
		"wh_mapped": "127.0.0.1 is a loopback address", "wh_metadata": "169.254.169.254 is a cloud metadata address",
	}
	for _, dl := range s.deadLetters() {
		id := dl.Header.Get(streams.HeaderWebhookID)
		last := dl.Header.Get(streams.HeaderLastError)
		if !strings.Contains(last, "refused: ") || !strings.Contains(last, kinds[id]) || !strings.Contains(last, "see --allow-private-targets") {
			t.Errorf("%s: last error %q, want the refusal: %q", id, last, kinds[id])
		}
		if got := dl.Header.Get(streams.HeaderReason); got != "target_refused" {
			t.Errorf("%s: reason %q, want target_refused", id, got)
		}
		if got := dl.Header.Get(streams.HeaderAttempts); got != "1" {
			t.Errorf("%s: %s attempts, want 1: a refusal is not retried", id, got)
		}
	}
	// Counted once settled, just after the dead letter is stored.
	testenv.WaitFor(t, 5*time.Second, "refusals counted", func() bool {
		return s.counter("switchboard_dead_letters_total", "reason", "target_refused") == float64(len(targets))
	})
}

// TestDeliverer_AllowCIDROpensARange checks that an allowed range is
// reached while the rest stays refused.
func TestDeliverer_AllowCIDROpensARange(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(recv.URL, "http://"))
	s.putWebhook(webhook(t, "wh_allowed", recv.URL, "call.started"))
	s.putWebhook(webhook(t, "wh_v6", "http://[::1]:"+port, "call.started"))
	s.startIndex()
	s.startMatcher()
	d := s.deliverer()
	d.Guard = netguard.New(false, netip.MustParsePrefix("127.0.0.1/32"))
	goRun(t, "deliverer", d.Run)

	s.publishEvent(event("msg_allow", "call.started", ""), true)
	testenv.WaitFor(t, 15*time.Second, "delivery and dead letter", func() bool {
		return recv.Count() == 1 && len(s.deadLetters()) == 1
	})
	if got := s.deadLetters()[0].Header.Get(streams.HeaderLastError); !strings.Contains(got, "refused: ::1 is a loopback address") {
		t.Errorf("last error %q, want ::1 refused", got)
	}
}

// TestNewHTTPClient_UsesNoProxy: a proxy would be the address dialled, so
// the guard would check it instead of the receiver's.
func TestNewHTTPClient_UsesNoProxy(t *testing.T) {
	tr, ok := consumer.NewHTTPClient(1, nil).Transport.(*http.Transport)
	if !ok {
		t.Fatal("the client's transport is not an *http.Transport")
	}
	if tr.Proxy != nil {
		t.Error("the client's transport has a Proxy function (HTTP_PROXY would apply)")
	}
}
