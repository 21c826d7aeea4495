package consumer_test

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// Paths of issue 10 that the deliverer closes: no delivery is acked
// without an attempt or a dead letter, none loses its schedule to
// another, none is attempted twice at once.

// TestDeliverer_UnknownWebhookDeadLetters: a delivery whose webhook this
// worker never learns of ends in SB_DEAD with reason webhook_unknown, not
// acked silently after a few tries.
func TestDeliverer_UnknownWebhookDeadLetters(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	s.startIndex()
	s.startDeliverer()
	s.publishDelivery(event("msg_orphan", "call.started", ""), "wh_never")

	testenv.WaitFor(t, 30*time.Second, "a dead letter", func() bool { return len(s.deadLetters()) == 1 })
	dl := s.deadLetters()[0]
	for k, want := range map[string]string{
		streams.HeaderReason:    "webhook_unknown",
		streams.HeaderEventID:   "msg_orphan",
		streams.HeaderWebhookID: "wh_never",
		streams.HeaderTenant:    "t1",
	} {
		if got := dl.Header.Get(k); got != want {
			t.Errorf("dead letter %s = %q, want %q", k, got, want)
		}
	}
	if got := s.counter("switchboard_deliveries_total", "outcome", "dropped"); got != 0 {
		t.Errorf("%v deliveries dropped", got)
	}
}

// TestDeliverer_SameEventIDKeepsBothSchedules: two distinct events with
// the same id (as after the duplicates window) backing off to one webhook
// each keep their own retry: both arrive. Keyed by (webhook, event id),
// the second schedule replaced the first and the first event vanished.
func TestDeliverer_SameEventIDKeepsBothSchedules(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	var mu sync.Mutex
	seen := map[string]int{} // body -> attempts
	recv := testenv.StartReceiver(t, func(_ *http.Request, body []byte) int {
		mu.Lock()
		defer mu.Unlock()
		seen[string(body)]++
		if seen[string(body)] == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s.putWebhook(webhook(t, "wh_twice", recv.URL, "call.started"))
	s.startIndex()
	s.startDeliverer()

	for i, typ := range []string{"call.started", "call.ended"} {
		m := deliveryMsg(t, event("msg_same", typ, ""), "wh_twice")
		m.Header.Set(jetstream.MsgIDHeader, "msg_same.wh_twice."+strconv.Itoa(i)) // past the duplicates window
		if _, err := env.JS.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	delivered := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range seen {
			if a >= 2 {
				n++
			}
		}
		return n
	}
	testenv.WaitFor(t, 30*time.Second, "both events delivered on their retry", func() bool { return delivered() == 2 })
	testenv.WaitFor(t, 10*time.Second, "deliveries settled", func() bool {
		return s.streamMsgs(streams.Deliveries) == 0 && s.consumerIdle(streams.Deliveries, streams.DelivererConsumer)
	})
	if n := len(s.deadLetters()); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// TestDeliverer_NoRedeliveryMidAttempt: with an ack wait shorter than the
// receiver takes to answer, and more deliveries pulled than workers free,
// no delivery is handed to a second worker while its attempt runs: each
// event reaches the receiver once, never twice at the same time.
func TestDeliverer_NoRedeliveryMidAttempt(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	var mu sync.Mutex
	inFlight, peak, attempts := map[string]int{}, map[string]int{}, map[string]int{}
	recv := testenv.StartReceiver(t, func(r *http.Request, _ []byte) int {
		id := r.Header.Get("webhook-id")
		mu.Lock()
		inFlight[id]++
		attempts[id]++
		peak[id] = max(peak[id], inFlight[id])
		mu.Unlock()
		time.Sleep(2500 * time.Millisecond)
		mu.Lock()
		inFlight[id]--
		mu.Unlock()
		return http.StatusOK
	})
	wh := webhook(t, "wh_slow", recv.URL, "call.started") // 5 s timeout
	s.putWebhook(wh)
	s.startIndex()
	d := s.deliverer()
	d.Workers = 2
	d.MaxInFlightPerWebhook = 2
	d.MaxAckPending = 16
	// Above one attempt (2.5 s), below a wait for a worker plus an
	// attempt: without InProgress as the attempt starts, a delivery that
	// waited for a worker is redelivered during its attempt.
	d.AckWait = 4 * time.Second
	goRun(t, "deliverer", d.Run)

	const n = 6
	s.publishDeliveries("msg_slow_", "wh_slow", n)
	testenv.WaitFor(t, 60*time.Second, "deliveries settled", func() bool {
		return recv.Count() >= n && s.streamMsgs(streams.Deliveries) == 0 && s.consumerIdle(streams.Deliveries, streams.DelivererConsumer)
	})
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		id := "msg_slow_" + strconv.Itoa(i)
		if attempts[id] != 1 || peak[id] != 1 {
			t.Errorf("%s: %d requests, at most %d at once; want 1 request", id, attempts[id], peak[id])
		}
	}
}
