package consumer_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// attemptBatches returns the batches of attempt records in SB_ATTEMPTS
// (leaving out the matcher's matched records), in stream order, checking
// that each is on the batch subject with its first record's id as
// Nats-Msg-Id.
func (s *system) attemptBatches() [][]switchboard.Attempt {
	s.t.Helper()
	var out [][]switchboard.Attempt
	for _, m := range s.allMsgs(streams.Attempts) {
		if m.Subject == streams.MatchedSubject { // the matcher's, not the deliverer's
			continue
		}
		var batch []switchboard.Attempt
		if err := json.Unmarshal(m.Data, &batch); err != nil {
			s.t.Fatalf("attempt batch %s: %v", m.Data, err)
		}
		if m.Subject != streams.AttemptBatchSubject {
			s.t.Errorf("attempt batch on %s, want %s", m.Subject, streams.AttemptBatchSubject)
		}
		if len(batch) == 0 {
			s.t.Fatalf("empty attempt batch %s", m.Data)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != batch[0].ID || !strings.HasPrefix(got, "att_") {
			s.t.Errorf("attempt batch starting with %s has Nats-Msg-Id %q", batch[0].ID, got)
		}
		out = append(out, batch)
	}
	return out
}

// attempts returns every record in SB_ATTEMPTS, in order.
func (s *system) attempts() []switchboard.Attempt {
	s.t.Helper()
	var out []switchboard.Attempt
	for _, b := range s.attemptBatches() {
		out = append(out, b...)
	}
	return out
}

func TestDeliverer_RecordsEveryAttempt(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	var calls atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "try again later\r\n") //nolint:errcheck
			return
		}
		io.WriteString(w, "thanks") //nolint:errcheck
	}))
	t.Cleanup(recv.Close)
	s.putWebhook(webhook(t, "wh_log", recv.URL, "call.started"))
	gone := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusGone })
	s.putWebhook(webhook(t, "wh_gone", gone.URL, "call.ended"))
	s.startAll()

	before := time.Now().UTC()
	s.publishEvent(event("msg_log", "call.started", ""), true)
	s.publishEvent(event("msg_gone", "call.ended", ""), true)
	testenv.WaitFor(t, 20*time.Second, "three attempt records", func() bool { return len(s.attempts()) == 3 })

	byWebhook := map[string][]switchboard.Attempt{}
	for _, a := range s.attempts() {
		byWebhook[a.WebhookID] = append(byWebhook[a.WebhookID], a)
		if a.TenantID != "t1" || a.At.Before(before) || a.At.After(time.Now()) || a.LatencyMS <= 0 {
			t.Errorf("attempt %+v: tenant, time or latency wrong", a)
		}
	}
	log := byWebhook["wh_log"]
	if len(log) != 2 {
		t.Fatalf("wh_log: %d records, want 2: %+v", len(log), log)
	}
	first, second := log[0], log[1]
	if first.Number != 1 || first.Outcome != switchboard.AttemptRetrying || first.StatusCode != 500 ||
		first.ErrorClass != "status" || !strings.Contains(first.Error, "status 500") ||
		first.EventID != "msg_log" || first.EventType != "call.started" || first.Reason != "" {
		t.Errorf("first attempt = %+v", first)
	}
	if first.ResponseBody != "try again later  " {
		t.Errorf("first attempt's body excerpt = %q, want the answer, printable", first.ResponseBody)
	}
	if second.Number != 2 || second.Outcome != switchboard.AttemptDelivered || second.StatusCode != 200 ||
		second.ErrorClass != "" || second.Error != "" || second.ID == first.ID || second.ResponseBody != "thanks" {
		t.Errorf("second attempt = %+v", second)
	}
	g := byWebhook["wh_gone"]
	if len(g) != 1 || g[0].Outcome != switchboard.AttemptDeadLettered || g[0].Reason != "gone" || g[0].StatusCode != 410 ||
		g[0].Number != 1 || g[0].EventType != "call.ended" {
		t.Errorf("gone attempts = %+v", g)
	}
	if got := s.counter("switchboard_attempts_unrecorded_total", "", ""); got != 0 {
		t.Errorf("%v attempt records lost", got)
	}
}

func TestDeliverer_RecordsRefusedAndInactive(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	off := webhook(t, "wh_off", "http://127.0.0.1:1/", "call.started")
	off.Status = switchboard.StatusInactive
	s.putWebhook(off)
	s.putWebhook(webhook(t, "wh_private", "http://10.0.0.1:1/", "call.started"))
	s.startIndex()
	s.publishDelivery(event("msg_off", "call.started", ""), "wh_off")
	s.publishDelivery(event("msg_private", "call.started", ""), "wh_private")
	s.startDeliverer()

	testenv.WaitFor(t, 10*time.Second, "two records", func() bool { return len(s.attempts()) == 2 })
	for _, a := range s.attempts() {
		want := map[string][2]string{"wh_off": {"webhook_inactive", "invalid"}, "wh_private": {"target_refused", "refused"}}[a.WebhookID]
		if a.Outcome != switchboard.AttemptDeadLettered || string(a.Reason) != want[0] || a.ErrorClass != want[1] || a.Error == "" {
			t.Errorf("attempt %+v, want dead_lettered, reason %s, class %s", a, want[0], want[1])
		}
	}
}

func TestDeliverer_RecordsAtLowRateAtOnce(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusOK })
	s.putWebhook(webhook(t, "wh_quiet", recv.URL, "call.started"))
	s.startAll()

	// Each record is stored while the deliverer runs, on its own: none
	// waits for company, nor for the flush at stop.
	for i, id := range []string{"msg_quiet_1", "msg_quiet_2"} {
		s.publishEvent(event(id, "call.started", ""), true)
		testenv.WaitFor(t, 10*time.Second, "record of "+id, func() bool { return len(s.attempts()) == i+1 })
	}
	batches := s.attemptBatches()
	if len(batches) != 2 || len(batches[0]) != 1 || len(batches[1]) != 1 ||
		batches[0][0].EventID != "msg_quiet_1" || batches[1][0].EventID != "msg_quiet_2" {
		t.Errorf("batches = %+v, want one record each, in order", batches)
	}
}
