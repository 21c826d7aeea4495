package consumer_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// The matcher records, for each event it matched, exactly the webhooks it
// chose and the event's sequence in SB_EVENTS, stored by the time the
// event is acked; an event that matched none has no record.
func TestMatcher_RecordsTheWebhooksItChose(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	s.putWebhook(webhook(t, "wh_calls", "http://127.0.0.1:1/", "call.*"))
	s.putWebhook(webhook(t, "wh_all", "http://127.0.0.1:1/", "*"))
	s.putWebhook(webhook(t, "wh_contacts", "http://127.0.0.1:1/", "contact.created"))
	s.startIndex()
	s.startMatcher()

	s.publishEvent(event("msg_1", "call.started", ""), true)
	s.publishEvent(event("msg_2", "contact.created", ""), true)
	nobody := event("msg_3", "call.started", "")
	nobody.TenantID = "t2"
	s.publishEvent(nobody, true)
	testenv.WaitFor(t, 10*time.Second, "every event acked", func() bool {
		return s.streamMsgs(streams.Events) == 3 && s.consumerIdle(streams.Events, streams.MatcherConsumer)
	})

	seqs := map[string]uint64{}
	for _, m := range s.allMsgs(streams.Events) {
		seqs[streams.EventID(m.Subject, m.Header, m.Data)] = m.Sequence
	}
	got := map[string]string{}
	for _, m := range s.allMsgs(streams.Attempts) {
		if m.Subject != streams.MatchedSubject {
			t.Errorf("a message on %s in SB_ATTEMPTS", m.Subject)
			continue
		}
		var recs []streams.Matched
		if err := json.Unmarshal(m.Data, &recs); err != nil {
			t.Fatalf("matched record %s: %v", m.Data, err)
		}
		for _, r := range recs {
			if r.TenantID != "t1" || r.EventType == "" || r.EventSeq != seqs[r.EventID] || time.Since(r.At) > time.Minute {
				t.Errorf("record %+v: want tenant t1, its type, sequence %d, a time", r, seqs[r.EventID])
			}
			slices.Sort(r.WebhookIDs)
			got[r.EventID] += fmt.Sprint(r.WebhookIDs)
		}
	}
	want := map[string]string{"msg_1": "[wh_all wh_calls]", "msg_2": "[wh_all wh_contacts]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("matched records %v, want %v", got, want)
	}
	// Counted once the event is acked, just after its record is stored.
	testenv.WaitFor(t, 5*time.Second, "deliveries created counted", func() bool {
		return s.counter("switchboard_deliveries_created_total", "", "") >= 4
	})
	if n := s.counter("switchboard_deliveries_created_total", "", ""); n != 4 {
		t.Errorf("deliveries created = %v, want 4", n)
	}
}
