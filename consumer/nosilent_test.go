package consumer_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// burst is the size of the event bursts below: more than one pull of a
// small batch, as a busy upstream sends.
const burst = 150

// publishBurst publishes n events of type call.started, ids prefix-0...,
// and returns their ids.
func (s *system) publishBurst(prefix string, n int) []string {
	s.t.Helper()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		s.publishEvent(event(ids[i], "call.started", ""), true)
	}
	return ids
}

// missing returns the ids that recv has not received.
func missing(recv *testenv.Receiver, ids []string) []string {
	got := recv.CountByID()
	var out []string
	for _, id := range ids {
		if got[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// A webhook stored before an event is published gets the event on every
// worker, even while the workers' KV watches are down: the matcher waits
// for its index to catch up with the bucket rather than match against a
// stale one (which acked every event of this burst unmatched, and
// delivered none, before).
func TestMatcher_WaitsForIndexWhileWatchIsDown(t *testing.T) {
	env := testenv.StartJetStream(t)
	workers := []*system{newSystem(t, env), newSystem(t, env)}
	for _, w := range workers {
		w.startIndex()
		w.startMatcher()
	}
	// Both watches go down (a KV leader election, a reconnect) before the
	// webhooks are created; the matchers keep running.
	for _, w := range workers {
		if err := w.stopIndex(); err != nil {
			t.Fatal(err)
		}
	}
	recvs := []*testenv.Receiver{testenv.StartReceiver(t, nil), testenv.StartReceiver(t, nil)}
	for i, r := range recvs {
		workers[0].putWebhook(webhook(t, fmt.Sprintf("wh_new%d", i), r.URL, "call.*"))
	}
	ids := workers[0].publishBurst("evt_gap", burst)

	// The watches come back one after the other.
	time.Sleep(300 * time.Millisecond)
	for _, w := range workers {
		w.stopIndex = goRun(t, "index again", w.index.Run)
		time.Sleep(300 * time.Millisecond)
	}
	// Delivering only now keeps this test about matching: a deliverer
	// whose own index lags is another path.
	for _, w := range workers {
		w.startDeliverer()
	}
	for i, r := range recvs {
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("webhook %d receives every event", i), func() bool {
			return len(missing(r, ids)) == 0
		})
	}
	if n := workers[0].counter("switchboard_events_matched_total", "result", "unmatched") +
		workers[1].counter("switchboard_events_matched_total", "result", "unmatched"); n != 0 {
		t.Errorf("%v events acked unmatched", n)
	}
}

// Webhooks created, then at once a burst of events, round after round,
// with two workers: every event reaches every webhook created before it.
func TestMatcher_WebhookCreatedJustBeforeBurst(t *testing.T) {
	env := testenv.StartJetStream(t)
	workers := []*system{newSystem(t, env), newSystem(t, env)}
	for _, w := range workers {
		w.startAll()
	}
	const rounds = 4
	type round struct {
		recv *testenv.Receiver
		ids  []string
	}
	var done []round
	for i := range rounds {
		r := round{recv: testenv.StartReceiver(t, nil)}
		workers[i%2].putWebhook(webhook(t, fmt.Sprintf("wh_round%d", i), r.recv.URL, "call.*"))
		r.ids = workers[i%2].publishBurst(fmt.Sprintf("evt_r%d", i), burst/2)
		done = append(done, r)
	}
	for i, r := range done {
		// Webhook i gets its own round's events and every later round's.
		var want []string
		for _, later := range done[i:] {
			want = append(want, later.ids...)
		}
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("webhook of round %d receives its events", i), func() bool {
			return len(missing(r.recv, want)) == 0
		})
	}
}

// plainGauge returns the value of an unlabelled gauge of the system's registry.
func (s *system) plainGauge(name string) float64 {
	s.t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	s.t.Fatalf("no gauge %s", name)
	return 0
}

// A single webhook the worker cannot open (sealed under another key) among
// ones it can: its events are dead-lettered as webhook_invalid, counted and
// logged with its id, never acked unmatched. An undecodable value is counted
// and logged too.
func TestIndex_UnusableWebhookIsDeadLettered(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	parse := func(fill string) *sealed.Key {
		k, err := sealed.ParseKey(base64.StdEncoding.EncodeToString([]byte(strings.Repeat(fill, sealed.KeySize))))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	key, other := parse("k"), parse("o")
	recvGood, recvBad := testenv.StartReceiver(t, nil), testenv.StartReceiver(t, nil)
	good, bad := webhook(t, "wh_good", recvGood.URL, "call.*"), webhook(t, "wh_bad", recvBad.URL, "call.*")
	key.SealWebhook(&good)
	other.SealWebhook(&bad)
	s.putWebhook(good)
	s.putWebhook(bad)
	if _, err := s.kv.Put(context.Background(), "wh_garbled", []byte(`{"id": "wh_garbled", "events": 7}`)); err != nil {
		t.Fatal(err)
	}
	s.index.EncryptionKey = key
	s.index.Metrics = s.metrics
	s.startAll()

	ids := s.publishBurst("evt_sealed", burst)
	testenv.WaitFor(t, 30*time.Second, "the good webhook receives every event", func() bool {
		return len(missing(recvGood, ids)) == 0
	})
	testenv.WaitFor(t, 30*time.Second, "every delivery of the bad webhook is dead-lettered", func() bool {
		return s.counter("switchboard_dead_letters_total", "reason", "webhook_invalid") >= burst
	})
	dead := s.deadLetters()
	if len(dead) < burst {
		t.Errorf("%d dead letters, want one per event, %d", len(dead), burst)
	}
	for _, m := range dead {
		if m.Subject != streams.DeadSubject("t1", "wh_bad") || m.Header.Get(streams.HeaderReason) != "webhook_invalid" {
			t.Errorf("dead letter on %s, reason %q; want wh_bad's, webhook_invalid", m.Subject, m.Header.Get(streams.HeaderReason))
		}
	}
	if recvBad.Count() != 0 {
		t.Errorf("the webhook whose secret does not open received %d requests", recvBad.Count())
	}
	if got := s.plainGauge("switchboard_webhooks_unusable"); got != 2 {
		t.Errorf("switchboard_webhooks_unusable = %v, want 2", got)
	}
	logs := s.logs.String()
	for _, id := range []string{"wh_bad", "wh_garbled"} {
		if !strings.Contains(logs, "level=ERROR msg=\"unusable webhook in kv") || !strings.Contains(logs, "webhook_id="+id) {
			t.Errorf("no error log names %s:\n%s", id, logs)
		}
	}
}
