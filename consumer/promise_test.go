package consumer_test

import (
	"crypto/sha256"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// The retry promise (docs/architecture.md, "Retries and the circuit
// breaker"): whatever the breaker does, each delivery gets the attempts of
// its schedule, 1 + max_retries of them, and a dead letter when they are
// spent; fast failures never hold other deliveries back.

// perEvent answers each event's attempts as fail says (attempt n counts
// from 1), and records when each attempt came.
type perEvent struct {
	mu   sync.Mutex
	at   map[string][]time.Time
	ok   map[string]int // attempt that got a 2xx
	fail func(id string, n int) bool
}

func startPerEvent(t *testing.T, fail func(id string, n int) bool) (*perEvent, *testenv.Receiver) {
	pe := &perEvent{at: map[string][]time.Time{}, ok: map[string]int{}, fail: fail}
	recv := testenv.StartReceiver(t, func(r *http.Request, _ []byte) int {
		id := r.Header.Get("webhook-id")
		pe.mu.Lock()
		defer pe.mu.Unlock()
		pe.at[id] = append(pe.at[id], time.Now())
		n := len(pe.at[id])
		if pe.fail(id, n) {
			return http.StatusInternalServerError
		}
		pe.ok[id] = n
		return http.StatusOK
	})
	return pe, recv
}

func (pe *perEvent) delivered() int {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	return len(pe.ok)
}

// TestDeliverer_FlakyBurstArrivesOnAttemptThree: 100 events in a burst to
// a receiver that fails each event's first two attempts with a quick 500,
// with the default breaker: all 100 arrive, each on exactly attempt 3,
// within the schedule plus a small slack. (Before, the breaker opened on
// those 500s and its probes kept hitting first attempts: after 200 s, 62
// of 100 had not been attempted once.)
func TestDeliverer_FlakyBurstArrivesOnAttemptThree(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	pe, recv := startPerEvent(t, func(_ string, n int) bool { return n <= 2 })
	s.putWebhook(webhook(t, "wh_flaky", recv.URL, "call.started"))
	s.startIndex()
	goRun(t, "deliverer", s.deliverer().Run) // default breaker: 5 failures, 30 s cool-down

	const n = 100
	s.publishDeliveries("msg_flaky_", "wh_flaky", n)
	// The schedule: retries after about 1 s and 2 s (+10 %), each fired at
	// a whole second; the slack covers the burst and a loaded machine,
	// and is far below one 30 s cool-down.
	const schedule, slack = 1100*time.Millisecond + 2200*time.Millisecond + 2*time.Second, 8 * time.Second
	testenv.WaitFor(t, 60*time.Second, "every event delivered", func() bool { return pe.delivered() == n })

	pe.mu.Lock()
	defer pe.mu.Unlock()
	var spans []time.Duration
	for id, at := range pe.at {
		if len(at) != 3 || pe.ok[id] != 3 {
			t.Errorf("%s: %d attempts, delivered on attempt %d; want exactly 3", id, len(at), pe.ok[id])
			continue
		}
		span := at[2].Sub(at[0])
		spans = append(spans, span)
		if span > schedule+slack {
			t.Errorf("%s: attempt 3 came %v after attempt 1, want within the schedule %v + %v", id, span, schedule, slack)
		}
	}
	slices.Sort(spans)
	if len(spans) > 0 {
		t.Logf("first to third attempt: min %v, median %v, max %v", spans[0], spans[len(spans)/2], spans[len(spans)-1])
	}
	if got := s.counter("switchboard_deliveries_deferred_total", "reason", "circuit_open"); got != 0 {
		t.Errorf("%v deliveries refused by an open breaker; quick 500s must not open it", got)
	}
}

// TestDeliverer_RandomFailuresWithinMaxRetries: a receiver answering a
// quick 500 to half the attempts at random (the same draw every run):
// every event is delivered on its first attempt the receiver accepts if
// that is within 1 + max_retries, and dead-lettered after exactly
// 1 + max_retries attempts otherwise.
func TestDeliverer_RandomFailuresWithinMaxRetries(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	fails := func(id string, n int) bool {
		sum := sha256.Sum256([]byte(id + "/" + strconv.Itoa(n)))
		return sum[0]%2 == 0
	}
	pe, recv := startPerEvent(t, fails)
	wh := webhook(t, "wh_coin", recv.URL, "call.started")
	wh.MaxRetries = 3
	s.putWebhook(wh)
	s.startIndex()
	goRun(t, "deliverer", s.deliverer().Run)

	const n = 80
	want := map[string]int{} // attempt of delivery; 0: dead letter
	dead := 0
	for i := range n {
		id := "msg_coin_" + strconv.Itoa(i)
		want[id] = 0
		for a := 1; a <= 1+wh.MaxRetries; a++ {
			if !fails(id, a) {
				want[id] = a
				break
			}
		}
		if want[id] == 0 {
			dead++
		}
		s.publishDelivery(event(id, "call.started", ""), "wh_coin")
	}
	if dead == 0 || dead == n {
		t.Fatalf("%d of %d draws dead-letter: the draw shows nothing", dead, n)
	}
	testenv.WaitFor(t, 60*time.Second, "every event delivered or dead-lettered", func() bool {
		return pe.delivered()+len(s.deadLetters()) == n
	})
	deadIDs := map[string]string{}
	for _, dl := range s.deadLetters() {
		deadIDs[dl.Header.Get(streams.HeaderEventID)] = dl.Header.Get(streams.HeaderAttempts)
	}
	pe.mu.Lock()
	defer pe.mu.Unlock()
	for id, a := range want {
		switch {
		case a == 0 && deadIDs[id] != "4":
			t.Errorf("%s: want a dead letter after 4 attempts; dead letter attempts %q, receiver saw %d", id, deadIDs[id], len(pe.at[id]))
		case a > 0 && (pe.ok[id] != a || len(pe.at[id]) != a):
			t.Errorf("%s: delivered on attempt %d after %d attempts, want on attempt %d", id, pe.ok[id], len(pe.at[id]), a)
		}
	}
	t.Logf("%d delivered, %d dead-lettered as drawn", n-dead, dead)
}

// closedPort returns the URL of a port on 127.0.0.1 where nothing listens:
// every connection is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/"
}

// TestDeliverer_FailingReceiversDeadLetterOnSchedule: max_retries 1, a
// receiver always answering 500 and one refusing every connection (which
// opens the breaker): every delivery of both is dead-lettered after its
// 2 attempts, within the schedule plus one cool-down.
func TestDeliverer_FailingReceiversDeadLetterOnSchedule(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	always500 := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusInternalServerError })
	for id, url := range map[string]string{"wh_500": always500.URL, "wh_refused": closedPort(t)} {
		wh := webhook(t, id, url, "call.started")
		wh.MaxRetries = 1
		s.putWebhook(wh)
	}
	s.startIndex()
	d := s.deliverer()
	d.BreakerFailures = 3
	d.BreakerCooldown = 2 * time.Second
	goRun(t, "deliverer", d.Run)

	const n = 10
	start := time.Now()
	for i := range n {
		s.publishDelivery(event("msg_a_"+strconv.Itoa(i), "call.started", ""), "wh_500")
		s.publishDelivery(event("msg_b_"+strconv.Itoa(i), "call.started", ""), "wh_refused")
	}
	// One retry after about 1 s, fired at a whole second, one cool-down,
	// and slack for a loaded machine.
	limit := 1100*time.Millisecond + time.Second + d.BreakerCooldown + 8*time.Second
	testenv.WaitFor(t, limit, "every delivery dead-lettered", func() bool { return len(s.deadLetters()) == 2*n })
	t.Logf("all %d dead-lettered after %v", 2*n, time.Since(start))
	for wh, events := range s.deadLettered() {
		if len(events) != n {
			t.Errorf("%s: %d dead letters, want %d", wh, len(events), n)
		}
	}
	for _, dl := range s.deadLetters() {
		if got := dl.Header.Get(streams.HeaderAttempts); got != "2" {
			t.Errorf("%s to %s: %s attempts, want 1 + max_retries = 2", dl.Header.Get(streams.HeaderEventID), dl.Header.Get(streams.HeaderWebhookID), got)
		}
	}
	if got := always500.Count(); got != 2*n {
		t.Errorf("the 500 receiver saw %d requests, want %d: quick 500s must not open the breaker", got, 2*n)
	}
	if got := s.counter("switchboard_deliveries_deferred_total", "reason", "circuit_open"); got == 0 {
		t.Error("the refusing receiver's breaker never refused a delivery")
	}
}

// TestDeliverer_NeverAnsweringReceiverHoldsItsCap: a receiver that never
// answers holds at most its cap of workers, and a healthy webhook beside
// it gets every delivery without ever waiting for one of its timeouts.
func TestDeliverer_NeverAnsweringReceiverHoldsItsCap(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	hang := startBadReceiver(t, answerAfter(time.Hour, http.StatusOK))
	healthy := testenv.StartReceiver(t, nil)
	wh := webhook(t, "wh_hang", hang.URL, "call.ended")
	wh.MaxRetries = 10
	s.putWebhook(wh) // 5 s timeout
	s.putWebhook(webhook(t, "wh_ok", healthy.URL, "call.started"))
	s.startIndex()
	d := s.deliverer()
	d.MaxInFlightPerWebhook = 2
	d.BreakerFailures = 3
	d.BreakerCooldown = 2 * time.Second
	goRun(t, "deliverer", d.Run)

	for i := range 20 {
		s.publishDelivery(event("msg_hang_"+strconv.Itoa(i), "call.ended", ""), "wh_hang")
	}
	testenv.WaitFor(t, 10*time.Second, "the hanging receiver holds its cap", func() bool {
		_, _, peak := hang.stats()
		return peak == 2
	})
	const okN = 200
	sent := time.Now()
	for i := range okN {
		s.publishDelivery(event("msg_ok_"+strconv.Itoa(i), "call.started", ""), "wh_ok")
	}
	testenv.WaitFor(t, 30*time.Second, "every healthy delivery", func() bool { return healthy.Count() == okN })
	var lat []time.Duration
	for _, r := range healthy.Requests() {
		lat = append(lat, r.At.Sub(sent))
	}
	slices.Sort(lat)
	if worst := lat[len(lat)-1]; worst >= time.Duration(wh.TimeoutSeconds)*time.Second {
		t.Errorf("a healthy delivery took %v from publish, as long as the hanging receiver's timeout: it waited behind one", worst)
	}
	_, _, peak := hang.stats()
	if peak > 2 {
		t.Errorf("the hanging receiver had %d requests in flight, want at most the cap of 2", peak)
	}
	t.Logf("healthy from publish: median %v, max %v; hanging peak in flight %d", lat[len(lat)/2], lat[len(lat)-1], peak)
}

// TestDeliverer_RetryAfterHoldsTheOpenBreaker: timeouts open the breaker;
// the probe after the cool-down is answered 503 with Retry-After: 4, so
// the breaker stays open for those 4 s (not just its 1 s cool-down) before
// the next request, and everything is delivered once the receiver is back.
func TestDeliverer_RetryAfterHoldsTheOpenBreaker(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	var mu sync.Mutex
	var at []time.Time
	recv := startBadReceiver(t, func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		at = append(at, time.Now())
		n := len(at)
		mu.Unlock()
		switch {
		case n <= 3:
			return answerAfter(3*time.Second, http.StatusOK)(w, r) // past the 1 s timeout
		case n == 4:
			w.Header().Set("Retry-After", "4")
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return true
	})
	wh := webhook(t, "wh_pause", recv.URL, "call.started")
	wh.MaxRetries = 10
	wh.TimeoutSeconds = 1
	s.putWebhook(wh)
	s.startIndex()
	d := s.deliverer()
	d.MaxInFlightPerWebhook = 1
	d.BreakerFailures = 3
	d.BreakerCooldown = time.Second
	goRun(t, "deliverer", d.Run)

	const n = 6
	s.publishDeliveries("msg_pause_", "wh_pause", n)
	testenv.WaitFor(t, 60*time.Second, "every delivery", func() bool {
		_, delivered, _ := recv.stats()
		return len(delivered) == n
	})
	mu.Lock()
	defer mu.Unlock()
	if gap := at[4].Sub(at[3]); gap < 3500*time.Millisecond {
		t.Errorf("the request after the probe's 503 Retry-After: 4 came %v later; the open breaker must hold until then", gap)
	}
	if n := len(s.deadLetters()); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}
