package consumer_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// Retry batches (consumer/retrybatch.go): a webhook's deliveries whose
// retries fall due together share one message schedule.

// schedulesStored is how many schedules SB_DELIVERIES has stored beyond
// its n deliveries, when nothing was expanded: each schedule is a stored
// message and, once fired, a second one.
func (s *system) schedulesStored(n int) int {
	st, err := s.env.JS.Stream(context.Background(), streams.Deliveries)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return (int(info.State.LastSeq) - n) / 2
}

// TestDeliverer_DeadBacklogBatchesRetries: 600 deliveries to a receiver
// refusing every connection, max_retries 2, the breaker open throughout:
// every one is dead-lettered after exactly 1 + max_retries attempts, and
// the 1,200 retries took far fewer schedules (one each before batches).
func TestDeliverer_DeadBacklogBatchesRetries(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	wh := webhook(t, "wh_dead", closedPort(t), "call.started")
	wh.MaxRetries = 2
	s.putWebhook(wh)
	s.startIndex()
	d := s.deliverer()
	d.Workers, d.MaxAckPending = 64, 256
	d.BreakerCooldown = time.Hour // no probe: every retry is refused by the open breaker

	const n = 600
	s.publishDeliveries("msg_dead_", "wh_dead", n) // a backlog: all there before the deliverer starts
	goRun(t, "deliverer", d.Run)
	testenv.WaitFor(t, 60*time.Second, "every delivery dead-lettered", func() bool { return len(s.deadLetters()) == n })

	seen := map[string]bool{}
	for _, dl := range s.deadLetters() {
		id := dl.Header.Get(streams.HeaderEventID)
		if seen[id] {
			t.Errorf("%s dead-lettered twice", id)
		}
		seen[id] = true
		if got := dl.Header.Get(streams.HeaderAttempts); got != "3" {
			t.Errorf("%s: %s attempts, want 1 + max_retries = 3", id, got)
		}
		if got := dl.Header.Get(streams.HeaderReason); got != "retries_exhausted" {
			t.Errorf("%s: reason %s, want retries_exhausted", id, got)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "queue empty", func() bool { return s.consumerIdle(streams.Deliveries, streams.DelivererConsumer) })
	schedules := s.schedulesStored(n)
	t.Logf("%d retries in %d schedules", 2*n, schedules)
	if schedules*10 > 2*n {
		t.Errorf("%d schedules for %d retries, want at most a tenth", schedules, 2*n)
	}
	if got := s.counter("switchboard_deliveries_total", "outcome", "retry_scheduled"); got != 2*n {
		t.Errorf("%v retries counted, want %d", got, 2*n)
	}
}

// TestDeliverer_BatchOfRecoveredWebhookDeliversEachOnce: a receiver
// refusing every connection comes back while its deliveries wait in
// batches behind the open breaker: once the breaker lets a probe through,
// every delivery arrives exactly once (counted by webhook-id).
func TestDeliverer_BatchOfRecoveredWebhookDeliversEachOnce(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	url := closedPort(t)
	wh := webhook(t, "wh_back", url, "call.started")
	wh.MaxRetries = 10
	s.putWebhook(wh)
	s.startIndex()
	d := s.deliverer()
	d.Workers, d.MaxAckPending = 32, 128
	d.BreakerFailures = 3
	d.BreakerCooldown = 3 * time.Second
	goRun(t, "deliverer", d.Run)

	const n = 400
	s.publishDeliveries("msg_back_", "wh_back", n)
	testenv.WaitFor(t, 30*time.Second, "the breaker refused deliveries", func() bool {
		return s.counter("switchboard_deliveries_deferred_total", "reason", "circuit_open") >= n/2
	})

	var mu sync.Mutex
	got := map[string]int{}
	l, err := net.Listen("tcp", url[len("http://"):len(url)-1]) // the same port, now answering
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
	})}
	go srv.Serve(l) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })

	testenv.WaitFor(t, 60*time.Second, "every delivery arrived", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	})
	testenv.WaitFor(t, 10*time.Second, "queue empty", func() bool { return s.consumerIdle(streams.Deliveries, streams.DelivererConsumer) })
	mu.Lock()
	defer mu.Unlock()
	for id, c := range got {
		if c != 1 {
			t.Errorf("%s arrived %d times, want once", id, c)
		}
	}
	if dead := len(s.deadLetters()); dead != 0 {
		t.Errorf("%d dead letters, want none", dead)
	}
}

// TestDeliverer_KilledMidExpansionLosesNothing: a worker dies half way
// through expanding a fired batch (neither acked nor handed back); the
// batch comes back after AckWait to another deliverer, which expands it
// again: every delivery arrives exactly once, none lost, none doubled.
func TestDeliverer_KilledMidExpansionLosesNothing(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	pe, recv := startPerEvent(t, func(_ string, n int) bool { return n == 1 }) // a quick 500 first: retried, batched
	wh := webhook(t, "wh_exp", recv.URL, "call.started")
	wh.MaxRetries = 3
	s.putWebhook(wh)
	s.startIndex()

	var killed atomic.Int64 // items of the batch the first deliverer expanded before dying
	first := s.deliverer()
	first.Workers, first.MaxAckPending = 32, 128
	first.AckWait = 3 * time.Second
	consumer.SetExpandFault(first, func(i, n int) bool {
		if n >= 4 && i == n/2 && killed.CompareAndSwap(0, int64(i)) {
			return true
		}
		return false
	})
	stopFirst := goRun(t, "first deliverer", first.Run)

	const n = 200
	s.publishDeliveries("msg_exp_", "wh_exp", n)
	testenv.WaitFor(t, 30*time.Second, "a worker died mid-expansion", func() bool { return killed.Load() > 0 })
	if err := stopFirst(); err != nil {
		t.Fatal(err)
	}
	second := s.deliverer()
	second.Workers, second.MaxAckPending = 32, 128
	second.AckWait = 3 * time.Second
	goRun(t, "second deliverer", second.Run)

	testenv.WaitFor(t, 60*time.Second, "every delivery arrived", func() bool { return pe.delivered() == n })
	testenv.WaitFor(t, 10*time.Second, "queue empty", func() bool { return s.consumerIdle(streams.Deliveries, streams.DelivererConsumer) })
	pe.mu.Lock()
	defer pe.mu.Unlock()
	for id, at := range pe.at {
		if len(at) != 2 || pe.ok[id] != 2 {
			t.Errorf("%s: %d attempts, delivered on attempt %d; want 2, the second delivered", id, len(at), pe.ok[id])
		}
	}
	t.Logf("the dead worker had expanded %d items of its batch", killed.Load())
}

// TestDeliverer_ReadsBatchesOfEarlierWorkers: a batch that a worker of
// v0.1.0 scheduled in the uncompressed form (body version 1) and that
// fires once every worker is upgraded delivers each of its items once.
func TestDeliverer_ReadsBatchesOfEarlierWorkers(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	s.putWebhook(webhook(t, "wh_v1", recv.URL+"/hook", "call.started"))
	s.startIndex()
	goRun(t, "deliverer", s.deliverer().Run)

	// Version 1, by hand: version, item count, then per item its sequence,
	// its headers and its body (varints, and lengths before bytes).
	appendBytes := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	const n = 150
	body := binary.AppendUvarint([]byte{1}, n)
	for i := range n {
		dm := deliveryMsg(t, event("msg_v1_"+strconv.Itoa(i), "call.started", ""), "wh_v1")
		body = binary.AppendUvarint(body, uint64(1000+i))
		keys := []string{streams.HeaderEventID, streams.HeaderTenant, streams.HeaderAcceptedAt}
		body = binary.AppendUvarint(body, uint64(len(keys)+1))
		for _, k := range keys {
			body = appendBytes(appendBytes(body, k), dm.Header.Get(k))
		}
		body = appendBytes(appendBytes(body, streams.HeaderAttempts), "1")
		body = appendBytes(body, string(dm.Data))
	}
	m := nats.NewMsg(streams.RetryBatchSubject("wh_v1", 1000, "v010"))
	m.Header.Set(streams.HeaderRetryBatch, strconv.Itoa(n))
	m.Data = body
	if _, err := env.JS.PublishMsg(context.Background(), m, jetstream.WithScheduleAt(time.Now().Add(time.Second)),
		jetstream.WithScheduleTarget(streams.DeliverySubject("wh_v1"))); err != nil {
		t.Fatal(err)
	}

	testenv.WaitFor(t, 30*time.Second, "every item delivered", func() bool { return len(recv.CountByID()) == n })
	testenv.WaitFor(t, 10*time.Second, "queue empty", func() bool { return s.consumerIdle(streams.Deliveries, streams.DelivererConsumer) })
	for id, c := range recv.CountByID() {
		if c != 1 {
			t.Errorf("%s arrived %d times, want once", id, c)
		}
	}
	if dead := len(s.deadLetters()); dead != 0 {
		t.Errorf("%d dead letters, want none", dead)
	}
}
