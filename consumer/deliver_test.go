package consumer_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

func TestDeliverer_SignedPayloadVerifies(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	wh := webhook(t, "wh_sig", recv.URL+"/hook", "call.started")
	s.putWebhook(wh)
	s.startAll()

	evt := event("msg_sig", "call.started", "agent-7")
	s.publishEvent(evt, true)
	testenv.WaitFor(t, 10*time.Second, "delivery", func() bool { return recv.Count() == 1 })

	r := recv.Requests()[0]
	verifier, err := standardwebhooks.NewWebhook(wh.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifier.Verify(r.Body, r.Header); err != nil {
		t.Errorf("the Standard Webhooks library rejects the signature: %v", err)
	}
	want := `{"id":"msg_sig","type":"call.started","timestamp":"2026-01-02T03:04:05Z","agent_id":"agent-7","data":{"call_id":"c-msg_sig"}}`
	if string(r.Body) != want {
		t.Errorf("body\n got %s\nwant %s", r.Body, want)
	}
	if got := r.Header.Get("webhook-id"); got != "msg_sig" {
		t.Errorf("webhook-id = %q, want the event id", got)
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(r.Header.Get("User-Agent"), "Switchboard-Webhooks/") {
		t.Errorf("method %s, content-type %q, user-agent %q", r.Method, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"))
	}
	testenv.WaitFor(t, 5*time.Second, "delivered counted", func() bool {
		return s.counter("switchboard_deliveries_total", "outcome", "delivered") == 1
	})
	// The matcher counts a delivery once its event is settled, which can
	// come after the receiver has it.
	testenv.WaitFor(t, 5*time.Second, "delivery created counted", func() bool {
		return s.counter("switchboard_deliveries_created_total", "", "") >= 1
	})
	if got := s.counter("switchboard_deliveries_created_total", "", ""); got != 1 {
		t.Errorf("deliveries created = %v, want 1", got)
	}
}

func TestDeliverer_RetriesUntilSuccess(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	var calls atomic.Int32
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int {
		if calls.Add(1) <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s.putWebhook(webhook(t, "wh_flaky", recv.URL, "call.started"))
	s.startAll()

	s.publishEvent(event("msg_flaky", "call.started", ""), true)
	testenv.WaitFor(t, 20*time.Second, "third attempt", func() bool { return recv.Count() == 3 })
	testenv.WaitFor(t, 10*time.Second, "delivery acked", func() bool {
		return s.counter("switchboard_deliveries_total", "outcome", "delivered") == 1 && s.streamMsgs(streams.Deliveries) == 0
	})

	reqs := recv.Requests()
	for i, r := range reqs {
		if id := r.Header.Get("webhook-id"); id != "msg_flaky" {
			t.Errorf("attempt %d: webhook-id = %q, want msg_flaky on every attempt", i+1, id)
		}
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 500*time.Millisecond {
		t.Errorf("first retry came %v after the first attempt; the policy asks for about 1s", gap)
	}
	if got := s.counter("switchboard_retries_scheduled_total", "", ""); got != 2 {
		t.Errorf("retries scheduled = %v, want 2", got)
	}
	if n := len(s.deadLetters()); n != 0 {
		t.Errorf("%d dead letters, want 0", n)
	}
	if recv.Count() != 3 {
		t.Errorf("receiver got %d requests, want 3", recv.Count())
	}
}

func TestDeliverer_DeadLettersWhenRetriesSpent(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusBadGateway })
	wh := webhook(t, "wh_down", recv.URL, "call.started")
	wh.MaxRetries = 2
	s.putWebhook(wh)
	s.startAll()

	evt := event("msg_down", "call.started", "")
	s.publishEvent(evt, true)
	testenv.WaitFor(t, 30*time.Second, "dead letter", func() bool { return len(s.deadLetters()) == 1 })
	testenv.WaitFor(t, 10*time.Second, "deliveries settled", func() bool {
		return s.streamMsgs(streams.Deliveries) == 0 && s.consumerIdle(streams.Deliveries, streams.DelivererConsumer)
	})

	if n := recv.Count(); n != wh.MaxRetries+1 {
		t.Errorf("receiver saw %d attempts, want max_retries+1 = %d", n, wh.MaxRetries+1)
	}
	dl := s.deadLetters()[0]
	if want := streams.DeadSubject("t1", "wh_down"); dl.Subject != want {
		t.Errorf("dead letter subject = %q, want %q", dl.Subject, want)
	}
	for k, want := range map[string]string{
		streams.HeaderReason:     "retries_exhausted",
		streams.HeaderLastStatus: "502",
		streams.HeaderAttempts:   "3",
		streams.HeaderEventID:    "msg_down",
		streams.HeaderWebhookID:  "wh_down",
		streams.HeaderTenant:     "t1",
	} {
		if got := dl.Header.Get(k); got != want {
			t.Errorf("dead letter %s = %q, want %q", k, got, want)
		}
	}
	if got := dl.Header.Get(streams.HeaderLastError); !strings.Contains(got, "status 502") {
		t.Errorf("dead letter last error = %q, want it to name status 502", got)
	}
	if body, _ := evt.Payload(nil); !bytes.Equal(dl.Data, body) {
		t.Errorf("dead letter body = %s, want the delivered payload", dl.Data)
	}
	if got := s.counter("switchboard_dead_letters_total", "reason", "retries_exhausted"); got != 1 {
		t.Errorf("dead letters counted = %v, want 1", got)
	}
}

func TestDeliverer_GoneDeadLettersAtOnce(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusGone })
	s.putWebhook(webhook(t, "wh_gone", recv.URL, "call.started")) // max_retries 3
	s.startAll()

	s.publishEvent(event("msg_gone", "call.started", ""), true)
	testenv.WaitFor(t, 10*time.Second, "dead letter", func() bool { return len(s.deadLetters()) == 1 })
	dl := s.deadLetters()[0]
	if got := dl.Header.Get(streams.HeaderReason); got != "gone" {
		t.Errorf("reason = %q, want gone", got)
	}
	if got := dl.Header.Get(streams.HeaderLastStatus); got != "410" {
		t.Errorf("last status = %q, want 410", got)
	}
	testenv.WaitFor(t, 10*time.Second, "deliveries settled", func() bool { return s.streamMsgs(streams.Deliveries) == 0 })
	if n := recv.Count(); n != 1 {
		t.Errorf("receiver saw %d attempts, want 1: 410 is not retried", n)
	}
}

func TestDeliverer_RedirectIsAFailure(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	target := testenv.StartReceiver(t, nil)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	wh := webhook(t, "wh_redirect", redirector.URL, "call.started")
	wh.MaxRetries = 0
	s.putWebhook(wh)
	s.startAll()

	s.publishEvent(event("msg_redirect", "call.started", ""), true)
	testenv.WaitFor(t, 10*time.Second, "dead letter", func() bool { return len(s.deadLetters()) == 1 })
	dl := s.deadLetters()[0]
	if got := dl.Header.Get(streams.HeaderLastStatus); got != "307" {
		t.Errorf("last status = %q, want 307", got)
	}
	if got := dl.Header.Get(streams.HeaderReason); got != "retries_exhausted" {
		t.Errorf("reason = %q, want retries_exhausted", got)
	}
	if n := target.Count(); n != 0 {
		t.Errorf("the redirect was followed: its target got %d requests", n)
	}
}

func TestDeliverer_TimeoutIsAFailure(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int {
		time.Sleep(1500 * time.Millisecond)
		return http.StatusOK
	})
	wh := webhook(t, "wh_slow", recv.URL, "call.started")
	wh.TimeoutSeconds = 1
	wh.MaxRetries = 1
	s.putWebhook(wh)
	s.startAll()

	start := time.Now()
	s.publishEvent(event("msg_slow", "call.started", ""), true)
	testenv.WaitFor(t, 20*time.Second, "dead letter", func() bool { return len(s.deadLetters()) == 1 })
	dl := s.deadLetters()[0]
	if got := dl.Header.Get(streams.HeaderLastError); !strings.Contains(got, "deadline exceeded") {
		t.Errorf("last error = %q, want a timeout", got)
	}
	if got := dl.Header.Get(streams.HeaderLastStatus); got != "" {
		t.Errorf("last status = %q, want none: the receiver never answered in time", got)
	}
	if n := recv.Count(); n != 2 {
		t.Errorf("receiver saw %d attempts, want 2", n)
	}
	// Two 1 s timeouts and a retry delay of about 1 s: far less than the
	// receiver's 1.5 s per attempt would take if the timeout were ignored
	// and the attempt then counted as a success.
	if elapsed := time.Since(start); elapsed < 2*time.Second {
		t.Errorf("dead-lettered after %v; two attempts of 1 s each cannot be that fast", elapsed)
	}
}

func TestDeliverer_RetryAfterIsHonoured(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	var mu sync.Mutex
	var at []time.Time
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		n := len(at)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "4")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(recv.Close)
	attempts := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), at...)
	}
	s.putWebhook(webhook(t, "wh_busy", recv.URL, "call.started"))
	s.startIndex()
	s.startMatcher()
	d := s.deliverer()
	d.Retry.MaxInterval = 10 * time.Second
	goRun(t, "deliverer", d.Run)

	s.publishEvent(event("msg_busy", "call.started", ""), true)
	testenv.WaitFor(t, 20*time.Second, "second attempt", func() bool { return len(attempts()) == 2 })
	// The policy alone retries after 1 to 2 s; Retry-After asks for 4.
	if gap := attempts()[1].Sub(attempts()[0]); gap < 3*time.Second {
		t.Errorf("retried %v after a 503 with Retry-After: 4", gap)
	}
}

func TestDeliverer_HealthyReceiverNotStarvedByDownOne(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	down := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusInternalServerError })
	healthy := testenv.StartReceiver(t, nil)
	dead := webhook(t, "wh_dead", down.URL, "call.ended")
	dead.MaxRetries = 10
	s.putWebhook(dead)
	s.putWebhook(webhook(t, "wh_ok", healthy.URL, "call.started"))
	s.startIndex()
	s.startMatcher()
	d := s.deliverer()
	d.MaxAckPending = 4
	d.Workers = 4
	d.BreakerFailures = 1000 // retries leaving the ack window are tested here, not the breaker
	goRun(t, "deliverer", d.Run)

	// The down receiver's deliveries come first and outnumber the ack
	// window: if failures waited inside it, nothing else would get through.
	const failing, healthyN = 8, 40
	for i := range failing {
		s.publishEvent(event("msg_dead_"+strconv.Itoa(i), "call.ended", ""), true)
	}
	testenv.WaitFor(t, 10*time.Second, "the down receiver is being tried", func() bool { return down.Count() >= failing })
	for i := range healthyN {
		s.publishEvent(event("msg_ok_"+strconv.Itoa(i), "call.started", ""), true)
	}
	testenv.WaitFor(t, 5*time.Second, "every healthy delivery while the other receiver is down", func() bool {
		return healthy.Count() == healthyN
	})
	if n := len(s.deadLetters()); n != 0 {
		t.Errorf("%d dead letters; the failing deliveries should still be retrying", n)
	}
}

func TestDeliverer_ShutdownLetsAttemptsFinish(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int {
		time.Sleep(time.Second)
		return http.StatusOK
	})
	s.putWebhook(webhook(t, "wh_drain", recv.URL, "call.started"))
	s.startIndex()
	evt := event("msg_drain", "call.started", "")
	s.publishDelivery(evt, "wh_drain")
	stop := s.startDeliverer()

	testenv.WaitFor(t, 10*time.Second, "attempt under way", func() bool { return recv.Count() == 1 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("deliverer: %v", err)
	}
	if elapsed := time.Since(start); elapsed < 500*time.Millisecond {
		t.Errorf("Run returned %v after cancel; it did not wait for the attempt in progress", elapsed)
	}
	if got := s.counter("switchboard_deliveries_total", "outcome", "delivered"); got != 1 {
		t.Errorf("delivered = %v, want 1: the attempt in progress should finish and be acked", got)
	}
	testenv.WaitFor(t, 5*time.Second, "delivery acked", func() bool { return s.streamMsgs(streams.Deliveries) == 0 })
}

func TestDeliverer_ShutdownPastDrainTimeoutHandsBack(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	var calls atomic.Int32
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int {
		if calls.Add(1) == 1 {
			time.Sleep(3 * time.Second)
		}
		return http.StatusOK
	})
	s.putWebhook(webhook(t, "wh_cut", recv.URL, "call.started"))
	s.startIndex()
	s.publishDelivery(event("msg_cut", "call.started", ""), "wh_cut")
	first := s.deliverer()
	first.DrainTimeout = 100 * time.Millisecond
	stop := goRun(t, "first deliverer", first.Run)
	testenv.WaitFor(t, 10*time.Second, "attempt under way", func() bool { return recv.Count() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := s.counter("switchboard_deliveries_total", "outcome", "requeued"); got != 1 {
		t.Fatalf("requeued = %v, want 1", got)
	}

	// Handed back with a plain Nak: a new deliverer gets it at once, not
	// after the 150 s ack wait.
	s.startDeliverer()
	testenv.WaitFor(t, 10*time.Second, "redelivered after restart", func() bool { return recv.Count() == 2 })
	testenv.WaitFor(t, 5*time.Second, "delivery acked", func() bool { return s.streamMsgs(streams.Deliveries) == 0 })
	for i, r := range recv.Requests() {
		if id := r.Header.Get("webhook-id"); id != "msg_cut" {
			t.Errorf("request %d: webhook-id %q", i, id)
		}
	}
}

func TestDeliverer_DeletedWebhookDropsDeliveries(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	s.putWebhook(webhook(t, "wh_deleted", recv.URL, "call.started"))
	s.deleteWebhook("wh_deleted")
	s.startIndex()
	for i := range 3 {
		s.publishDelivery(event("msg_del_"+strconv.Itoa(i), "call.started", ""), "wh_deleted")
	}
	s.startDeliverer()

	testenv.WaitFor(t, 10*time.Second, "deliveries dropped", func() bool {
		return s.streamMsgs(streams.Deliveries) == 0 && s.consumerIdle(streams.Deliveries, streams.DelivererConsumer)
	})
	if n := recv.Count(); n != 0 {
		t.Errorf("a deleted webhook's receiver got %d requests", n)
	}
	if n := len(s.deadLetters()); n != 0 {
		t.Errorf("%d dead letters for a deleted webhook, want 0", n)
	}
	if got := s.counter("switchboard_deliveries_total", "outcome", "dropped"); got != 3 {
		t.Errorf("dropped = %v, want 3", got)
	}
	if logs := s.logs.String(); strings.Count(logs, "reason=webhook_deleted") != 3 {
		t.Errorf("want one log line per dropped delivery naming the reason; logs:\n%s", logs)
	}
}

func TestDeliverer_InactiveWebhookDeadLetters(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	wh := webhook(t, "wh_off", recv.URL, "call.started")
	wh.Status = "inactive"
	s.putWebhook(wh)
	s.startIndex()
	s.publishDelivery(event("msg_off", "call.started", ""), "wh_off")
	s.startDeliverer()

	testenv.WaitFor(t, 10*time.Second, "dead letter", func() bool { return len(s.deadLetters()) == 1 })
	dl := s.deadLetters()[0]
	if got := dl.Header.Get(streams.HeaderReason); got != "webhook_inactive" {
		t.Errorf("reason = %q, want webhook_inactive", got)
	}
	if got := dl.Header.Get(streams.HeaderAttempts); got != "0" {
		t.Errorf("attempts = %q, want 0", got)
	}
	if n := recv.Count(); n != 0 {
		t.Errorf("an inactive webhook's receiver got %d requests", n)
	}
}

func TestDeliverer_WaitsForWebhookNotYetKnown(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	s.startIndex()
	s.publishDelivery(event("msg_early", "call.started", ""), "wh_late")
	s.startDeliverer()

	// The delivery arrives before its webhook: the deliverer must wait for
	// the index to catch up rather than drop it.
	testenv.WaitFor(t, 10*time.Second, "delivery tried", func() bool {
		return s.counter("switchboard_deliveries_total", "outcome", "requeued") >= 1
	})
	s.putWebhook(webhook(t, "wh_late", recv.URL, "call.started"))
	testenv.WaitFor(t, 10*time.Second, "delivered once the webhook is known", func() bool { return recv.Count() == 1 })
}

func TestDeliverer_SurvivesConsumerDeletion(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	s.putWebhook(webhook(t, "wh_1", recv.URL, "call.started"))
	s.startIndex()
	s.publishDelivery(event("msg_before", "call.started", ""), "wh_1")
	s.startDeliverer()
	testenv.WaitFor(t, 10*time.Second, "first delivery", func() bool { return recv.Count() == 1 })

	// The ack of msg_before can still be in flight when the consumer goes:
	// the new consumer then hands it out again, which at-least-once allows.
	// What must not happen is a delivery published after the loss never
	// arriving.
	if err := env.JS.DeleteConsumer(t.Context(), streams.Deliveries, streams.DelivererConsumer); err != nil {
		t.Fatal(err)
	}
	s.publishDelivery(event("msg_after", "call.started", ""), "wh_1")
	testenv.WaitFor(t, 20*time.Second, "delivery after the consumer was deleted", func() bool {
		return recv.CountByID()["msg_after"] == 1
	})
}
