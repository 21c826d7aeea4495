package consumer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// A webhook the registry stopped for too many errors parks the deliveries
// still queued for it in the dead letters, each with its reason, and gets
// no new ones: nothing is sent and nothing is dropped.
func TestDeliverer_TooManyErrorsWebhookParksDeliveries(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	wh := webhook(t, "wh_stopped", recv.URL, "call.*")
	// Its deliveries were queued before the registry stopped it, as when
	// auto-disable strikes while a backlog waits.
	const n = 5
	s.publishDeliveries("msg_", wh.ID, n)
	wh.Status = switchboard.StatusTooManyErrors
	s.putWebhook(wh)
	s.startIndex()
	s.startMatcher()
	s.publishEvent(event("msg_new", "call.started", ""), true)
	s.startDeliverer()

	testenv.WaitFor(t, 10*time.Second, "every queued delivery dead-lettered", func() bool { return len(s.deadLetters()) == n })
	testenv.WaitFor(t, 10*time.Second, "matcher idle", func() bool { return s.consumerIdle(streams.Events, streams.MatcherConsumer) })
	testenv.WaitFor(t, 10*time.Second, "deliverer idle", func() bool { return s.consumerIdle(streams.Deliveries, streams.DelivererConsumer) })
	seen := map[string]bool{}
	for _, dl := range s.deadLetters() {
		if got := dl.Header.Get(streams.HeaderReason); got != "webhook_inactive" {
			t.Errorf("reason = %q, want webhook_inactive", got)
		}
		seen[dl.Header.Get(streams.HeaderEventID)] = true
	}
	for i := range n {
		if id := fmt.Sprintf("msg_%d", i); !seen[id] {
			t.Errorf("delivery of %s not parked", id)
		}
	}
	if seen["msg_new"] || len(s.deadLetters()) != n {
		t.Errorf("an event published after the stop was matched to the stopped webhook")
	}
	if c := recv.Count(); c != 0 {
		t.Errorf("the stopped webhook's receiver got %d requests", c)
	}
}
