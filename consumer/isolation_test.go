package consumer_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// badReceiver is a receiver on 127.0.0.1 that misbehaves as its handler
// says, and records per event id the attempts made, the ones it answered
// with a 2xx, and the most requests it had in flight at once.
type badReceiver struct {
	URL string

	mu        sync.Mutex
	attempts  map[string]int
	delivered map[string]int
	inFlight  int
	peak      int
}

// startBadReceiver serves handle, which returns true when it answered 2xx.
func startBadReceiver(t *testing.T, handle func(w http.ResponseWriter, r *http.Request) bool) *badReceiver {
	t.Helper()
	br := &badReceiver{attempts: map[string]int{}, delivered: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		// Read to the end, so that the server watches the connection and
		// cancels r.Context() when the client gives up.
		io.Copy(io.Discard, r.Body) //nolint:errcheck
		br.mu.Lock()
		br.attempts[id]++
		br.inFlight++
		br.peak = max(br.peak, br.inFlight)
		br.mu.Unlock()
		ok := handle(w, r)
		br.mu.Lock()
		br.inFlight--
		if ok {
			br.delivered[id]++
		}
		br.mu.Unlock()
	}))
	// Close would wait for handlers still sleeping; they end with their
	// request's context once the client connections are closed.
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	br.URL = srv.URL
	return br
}

func (br *badReceiver) stats() (attempts, delivered map[string]int, peak int) {
	br.mu.Lock()
	defer br.mu.Unlock()
	a, d := map[string]int{}, map[string]int{}
	for k, v := range br.attempts {
		a[k] = v
	}
	for k, v := range br.delivered {
		d[k] = v
	}
	return a, d, br.peak
}

// answerAfter answers status after delay, or gives up when the client does.
func answerAfter(delay time.Duration, status int) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return false
		}
		w.WriteHeader(status)
		return status < 300
	}
}

// resetConnection closes the connection without an answer.
func resetConnection(w http.ResponseWriter, _ *http.Request) bool {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
	return false
}

// gauge returns the value of the system's gauge name{label=value}.
func (s *system) gauge(name, label, value string) float64 {
	s.t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// deadLettered returns the dead letters' event ids by webhook.
func (s *system) deadLettered() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, dl := range s.deadLetters() {
		wh := dl.Header.Get(streams.HeaderWebhookID)
		if out[wh] == nil {
			out[wh] = map[string]int{}
		}
		out[wh][dl.Header.Get(streams.HeaderEventID)]++
	}
	return out
}

// TestDeliverer_BadReceiversIsolated runs a healthy receiver beside four
// bad ones (500, timing out, resetting the connection, answering slowly),
// whose deliveries are queued first: the healthy one gets all of its
// deliveries while the bad ones are still being tried, the breakers open,
// the slow receiver never has more than the cap in flight, and in the end
// every delivery was delivered or dead-lettered, none lost.
func TestDeliverer_BadReceiversIsolated(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	const capPerWebhook = 2
	bad := map[string]*badReceiver{
		"wh_500":     startBadReceiver(t, answerAfter(0, http.StatusInternalServerError)),
		"wh_timeout": startBadReceiver(t, answerAfter(3*time.Second, http.StatusOK)), // past the 1 s timeout
		"wh_reset":   startBadReceiver(t, resetConnection),
		"wh_slow":    startBadReceiver(t, answerAfter(400*time.Millisecond, http.StatusOK)),
	}
	healthy := testenv.StartReceiver(t, nil)
	for id, br := range bad {
		wh := webhook(t, id, br.URL, "call.ended")
		wh.MaxRetries = 1
		wh.TimeoutSeconds = 1 // below the API's minimum of 5: the index takes it, and it keeps the test short
		s.putWebhook(wh)
	}
	s.putWebhook(webhook(t, "wh_ok", healthy.URL, "call.started"))
	s.startIndex()
	s.startMatcher()
	d := s.deliverer()
	d.Workers = 8
	d.MaxInFlightPerWebhook = capPerWebhook
	d.BreakerFailures = 3
	d.BreakerCooldown = time.Second
	goRun(t, "deliverer", d.Run)

	const badN, okN = 4, 200
	for i := range badN {
		s.publishEvent(event("msg_bad_"+strconv.Itoa(i), "call.ended", ""), true)
	}
	for i := range okN {
		s.publishEvent(event("msg_ok_"+strconv.Itoa(i), "call.started", ""), true)
	}

	// settled counts the bad deliveries delivered or dead-lettered.
	settled := func() (n int) {
		dead := s.deadLettered()
		for id, br := range bad {
			_, delivered, _ := br.stats()
			for i := range badN {
				evt := "msg_bad_" + strconv.Itoa(i)
				if delivered[evt] > 0 || dead[id][evt] > 0 {
					n++
				}
			}
		}
		return n
	}
	testenv.WaitFor(t, 20*time.Second, "every healthy delivery", func() bool { return healthy.Count() == okN })
	if n := settled(); n == len(bad)*badN {
		t.Errorf("every bad delivery had settled before the healthy ones got through; the test shows nothing")
	}
	testenv.WaitFor(t, 90*time.Second, "every bad delivery delivered or dead-lettered", func() bool {
		return settled() == len(bad)*badN
	})
	testenv.WaitFor(t, 10*time.Second, "deliveries stream empty", func() bool {
		return s.streamMsgs(streams.Deliveries) == 0 && s.consumerIdle(streams.Deliveries, streams.DelivererConsumer)
	})

	dead := s.deadLettered()
	lost, dup := 0, 0
	for id, br := range bad {
		attempts, delivered, peak := br.stats()
		for i := range badN {
			evt := "msg_bad_" + strconv.Itoa(i)
			switch n := delivered[evt] + dead[id][evt]; {
			case n == 0:
				lost++
			case n > 1:
				dup++
				t.Errorf("%s %s: delivered %d times, dead-lettered %d times", id, evt, delivered[evt], dead[id][evt])
			}
			if a := attempts[evt]; a > 2 {
				t.Errorf("%s %s: %d attempts, want at most 1 + max_retries = 2", id, evt, a)
			}
		}
		if peak > capPerWebhook {
			t.Errorf("%s had %d requests in flight at once, want at most the cap %d", id, peak, capPerWebhook)
		}
		t.Logf("%s: %d attempts, %d delivered, %d dead-lettered, peak in flight %d", id, sum(attempts), len(delivered), len(dead[id]), peak)
	}
	if lost > 0 {
		t.Errorf("%d bad deliveries lost", lost)
	}
	for _, id := range []string{"wh_500", "wh_timeout", "wh_reset"} {
		if n := len(dead[id]); n != badN {
			t.Errorf("%s: %d dead letters, want %d: its receiver never succeeds", id, n, badN)
		}
	}
	if _, delivered, _ := bad["wh_slow"].stats(); len(delivered) != badN {
		t.Errorf("wh_slow: %d delivered, want %d: a slow receiver that answers in time gets everything", len(delivered), badN)
	}
	if n := healthy.CountByID(); len(n) != okN {
		t.Errorf("healthy receiver got %d distinct events, want %d", len(n), okN)
	}
	if got := s.counter("switchboard_deliveries_deferred_total", "reason", "circuit_open"); got == 0 {
		t.Error("no delivery was deferred for an open breaker")
	}
	if got := s.counter("switchboard_deliveries_deferred_total", "reason", "webhook_busy"); got == 0 {
		t.Error("no delivery was deferred for the per-webhook cap")
	}
	t.Logf("lost %d, duplicated %d, deferred: circuit_open %v, webhook_busy %v", lost, dup,
		s.counter("switchboard_deliveries_deferred_total", "reason", "circuit_open"),
		s.counter("switchboard_deliveries_deferred_total", "reason", "webhook_busy"))
}

func sum(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestDeliverer_OpenBreakerKeepsTheSchedule: a receiver whose attempts
// all time out opens the breaker after three; the deliveries that come due
// while it is open are not sent, but each counts as a failed attempt
// (circuit_open), so every delivery is dead-lettered after its
// max_retries, on schedule, and the receiver sees far fewer requests than
// 1 + max_retries per delivery. (Before, they were deferred with their
// attempt count unchanged: max_retries meant nothing while it was open.)
func TestDeliverer_OpenBreakerKeepsTheSchedule(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := startBadReceiver(t, answerAfter(5*time.Second, http.StatusOK))
	wh := webhook(t, "wh_hang", recv.URL, "call.started")
	wh.MaxRetries = 2
	wh.TimeoutSeconds = 1
	s.putWebhook(wh)
	s.startIndex()
	d := s.deliverer()
	d.MaxInFlightPerWebhook = 2
	d.BreakerFailures = 3
	d.BreakerCooldown = 2 * time.Second
	goRun(t, "deliverer", d.Run)

	const n = 10
	start := time.Now()
	s.publishDeliveries("msg_hang_", "wh_hang", n)
	// The schedule: 1 s and 2 s (+10 %), each rounded up to a whole second,
	// three attempts of at most the 1 s timeout, a cool-down, and slack
	// for a loaded machine.
	testenv.WaitFor(t, 10*time.Second, "breaker open", func() bool {
		return s.gauge("switchboard_circuit_breakers", "state", "open") == 1
	})
	limit := 3*time.Second + 2*time.Second + 3*time.Second + d.BreakerCooldown + 10*time.Second
	testenv.WaitFor(t, limit, "every delivery dead-lettered", func() bool { return len(s.deadLetters()) == n })
	took := time.Since(start)
	openFailures := 0
	for _, dl := range s.deadLetters() {
		if got := dl.Header.Get(streams.HeaderAttempts); got != "3" {
			t.Errorf("%s: dead-lettered after %s attempts, want 1 + max_retries = 3", dl.Header.Get(streams.HeaderEventID), got)
		}
		if got := dl.Header.Get(streams.HeaderReason); got != "retries_exhausted" {
			t.Errorf("%s: reason %q", dl.Header.Get(streams.HeaderEventID), got)
		}
		if strings.Contains(dl.Header.Get(streams.HeaderLastError), "circuit open") {
			openFailures++
		}
	}
	attempts, _, peak := recv.stats()
	if got := sum(attempts); got >= 3*n {
		t.Errorf("receiver saw %d requests, want fewer than %d: the open breaker should have spared it", got, 3*n)
	}
	if peak > 2 {
		t.Errorf("%d requests in flight at once, want at most the cap of 2", peak)
	}
	if openFailures == 0 {
		t.Error("no dead letter's last failure was the open breaker")
	}
	if got := s.counter("switchboard_deliveries_deferred_total", "reason", "circuit_open"); got == 0 {
		t.Error("no delivery counted as refused by the open breaker")
	}
	t.Logf("dead-lettered all %d in %v; receiver saw %d requests; %d last failures were circuit_open", n, took, sum(attempts), openFailures)
}

// TestDeliverer_PerWebhookCap: a receiver answering slowly never has more
// than the cap in flight, and gets every delivery.
func TestDeliverer_PerWebhookCap(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := startBadReceiver(t, answerAfter(300*time.Millisecond, http.StatusOK))
	s.putWebhook(webhook(t, "wh_slow", recv.URL, "call.started"))
	s.startIndex()
	d := s.deliverer()
	d.Workers = 8
	d.MaxInFlightPerWebhook = 2
	goRun(t, "deliverer", d.Run)

	const n = 12
	s.publishDeliveries("msg_cap_", "wh_slow", n)
	testenv.WaitFor(t, 60*time.Second, "every delivery", func() bool {
		_, delivered, _ := recv.stats()
		return len(delivered) == n
	})
	_, _, peak := recv.stats()
	if peak > 2 {
		t.Errorf("%d requests in flight at once, want at most the cap of 2", peak)
	}
	if got := s.counter("switchboard_deliveries_deferred_total", "reason", "webhook_busy"); got == 0 {
		t.Error("no delivery deferred for the cap")
	}
	if n := len(s.deadLetters()); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}
