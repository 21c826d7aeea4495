package consumer

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// FuzzDeliveryHeaders feeds what a delivery message's headers may say to
// the code that reads them: the attempt and deferral counts (headerCount),
// and what decide makes of them. A count is never negative, one more
// attempt never wraps around, and a retryable failure past max_retries is
// dead-lettered whatever the header claims.
func FuzzDeliveryHeaders(f *testing.F) {
	for _, seed := range []string{"", "0", "3", "-1", "+2", "03", "1e3", " 1", "9223372036854775807", "9223372036854775808", "\x00"} {
		f.Add(seed, seed)
	}
	policy := DefaultRetryPolicy()
	f.Fuzz(func(t *testing.T, attempts, deferrals string) {
		h := nats.Header{}
		h.Set(streams.HeaderAttempts, attempts)
		h.Set(streams.HeaderDeferrals, deferrals)
		n, d := headerCount(h, streams.HeaderAttempts), headerCount(h, streams.HeaderDeferrals)
		if n < 0 || d < 0 {
			t.Fatalf("counts %d, %d from %q, %q", n, d, attempts, deferrals)
		}
		made := n + 1
		if made <= n {
			t.Fatalf("attempts %q: one more attempt than %d is %d", attempts, n, made)
		}
		for _, maxRetries := range []int{0, 3, 10} {
			dec := decide(&attemptError{Status: http.StatusServiceUnavailable}, made, maxRetries, policy)
			if made > maxRetries && dec.action != actDeadLetter {
				t.Fatalf("attempt %d of %d retries: %+v, want a dead letter", made, maxRetries, dec)
			}
			if ceiling := time.Duration(float64(policy.MaxInterval) * (1 + policy.RandomizationFactor)); dec.action == actRetry && (dec.delay <= 0 || dec.delay > ceiling) {
				t.Fatalf("attempt %d: retry in %v", made, dec.delay)
			}
		}
		iso := &isolation{cooldown: DefaultBreakerCooldown}
		if w := iso.busyDeferral(d); w <= 0 || w > 2*maxBusyDeferral {
			t.Fatalf("deferral %d: busy for %v", d, w)
		}
	})
}

// FuzzKVWebhook decodes arbitrary KV values as the index does (newHook),
// without and with an encryption key, then builds a delivery request from
// what it accepted: no value panics, an accepted one is the webhook its
// key names, and its request can be built or is refused with an error.
func FuzzKVWebhook(f *testing.F) {
	for _, seed := range []string{
		`{"id":"wh_1","tenant_id":"t1","name":"n","url":"https://example.com/h","events":["*"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYq=","timeout":30,"max_retries":3,"auth":{"type":"none"},"status":"active"}`,
		`{"id":"wh_1","tenant_id":"t1","url":"https://example.com/h?a=1","events":["call.*"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYq=","auth":{"type":"querystring","token":"t","name":"k"},"headers":{"X-A":"1"},"properties":{"a":1},"status":"active"}`,
		`{"id":"wh_1","url":"http://[::1","secret":"x","auth":{"type":"basic","username":"u","password":"sealed:v1:AAAA"}}`,
		`{"id":"wh_1","secret":"sealed:v1:!!!","retiring_secrets":[{"secret":"s","expires_at":"2026-01-01T00:00:00Z"}],"headers":{"X-A":"sealed:v1:"}}`,
		`{"id":"wh_1","url":"https://example.com","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYq=","method":"DELETE","timeout":-5,"headers":{"Bad Name":"v","X":"a\r\nb"},"properties":[1]}`,
		`{"id":"wh_2"}`, `{"id":"wh_1","timeout":1e400}`, `null`, `[]`, `{`, ``,
	} {
		f.Add("wh_1", []byte(seed))
	}
	key, err := sealed.ParseKey(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, id string, value []byte) {
		for _, k := range []*sealed.Key{nil, key} {
			h := newHook(id, value, k)
			if h.err != nil {
				if h.endpoint != nil {
					t.Fatalf("newHook(%q, %q): unusable (%v) with an endpoint", id, value, h.err)
				}
				continue
			}
			if h.webhook == nil || h.webhook.ID != id || h.endpoint == nil || h.timeout <= 0 {
				t.Fatalf("newHook(%q, %q) = %+v", id, value, h)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			req, err := h.endpoint.NewRequest(ctx, "msg_1", []byte(`{"id":"msg_1"}`), now)
			cancel()
			if err == nil && (req.URL == nil || !strings.HasPrefix(req.URL.Scheme, "http")) {
				t.Fatalf("request to %v from %q", req.URL, value)
			}
		}
	})
}

// FuzzEventMessage feeds arbitrary subjects, ids and bodies of SB_EVENTS
// messages to what the matcher and the registry read of them: the id is
// empty or valid, the subject splits into a tenant and a type or not at
// all, and decoding never panics.
func FuzzEventMessage(f *testing.F) {
	f.Add("sb.events.t1.call.started", "msg_1", "a1", []byte(`{"id":"msg_1","type":"call.started","data":{}}`))
	f.Add("sb.events.t1.call.started", "", "", []byte(`{"id":"msg_1","type":"call.started","agent_id":"a","occurred_at":"2026-01-02T15:04:05Z","data":null}`))
	f.Add("sb.events..", "a b", "\x00", []byte(`{"id":"`))
	f.Add("sb.events.t1", "", "", []byte(`[]`))
	f.Add("other", "msg_2", "", []byte(``))
	f.Fuzz(func(t *testing.T, subject, msgID, agent string, data []byte) {
		h := nats.Header{}
		if msgID != "" {
			h.Set(jetstream.MsgIDHeader, msgID)
		}
		h.Set(streams.HeaderAgentID, agent)
		if id := streams.EventID(subject, h, data); id != "" && (!switchboard.ValidEventID(id) || msgID != "" && !strings.HasSuffix(msgID, id)) {
			t.Fatalf("EventID %q with Nats-Msg-Id %q", id, msgID)
		}
		if tenant, typ, ok := streams.SplitEventSubject(subject); ok && (tenant == "" || typ == "") {
			t.Fatalf("SplitEventSubject(%q) = %q, %q", subject, tenant, typ)
		}
		if evt, err := streams.DecodeEvent(subject, h, data); err == nil && evt.ID == "" {
			t.Fatalf("DecodeEvent(%q, %q) = %+v without an id", subject, data, evt)
		}
	})
}

// headerCount reads a count of a delivery's header as the deliverer does
// (streams.DecodeDelivery): key is HeaderAttempts or HeaderDeferrals.
func headerCount(h nats.Header, key string) int {
	d := streams.DecodeDelivery("", h)
	if key == streams.HeaderAttempts {
		return d.Attempts
	}
	return d.Deferrals
}
