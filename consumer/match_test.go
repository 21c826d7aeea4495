package consumer_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

func TestMatcher_DeliversToMatchingWebhooksOnly(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)

	receivers := map[string]*testenv.Receiver{}
	add := func(w switchboard.Webhook) {
		r := testenv.StartReceiver(t, nil)
		receivers[w.ID] = r
		w.URL = r.URL
		s.putWebhook(w)
	}
	add(webhook(t, "wh_started", "", "call.started"))
	add(webhook(t, "wh_all", "", "*"))
	add(webhook(t, "wh_calls", "", "call.*"))
	add(webhook(t, "wh_contacts", "", "contact.created"))
	agent := webhook(t, "wh_agent2", "", "*")
	agent.AgentID = "agent-2"
	add(agent)
	other := webhook(t, "wh_other_tenant", "", "*")
	other.TenantID = "t2"
	add(other)
	off := webhook(t, "wh_off", "", "*")
	off.Status = switchboard.StatusInactive
	add(off)
	s.startAll()

	s.publishEvent(event("msg_1", "call.started", "agent-1"), true)
	s.publishEvent(event("msg_1", "call.started", "agent-1"), true)  // deduplicated by SB_EVENTS
	s.publishEvent(event("msg_1", "call.started", "agent-1"), false) // stored again: the matcher must not deliver it twice
	s.publishEvent(event("msg_2", "call.ended", "agent-1"), true)
	s.publishEvent(event("msg_3", "agent.logged_in", "agent-2"), true)
	s.publishEvent(event("msg_4", "callx.started", "agent-1"), true)

	want := map[string]map[string]int{
		"wh_started":      {"msg_1": 1},
		"wh_all":          {"msg_1": 1, "msg_2": 1, "msg_3": 1, "msg_4": 1},
		"wh_calls":        {"msg_1": 1, "msg_2": 1},
		"wh_agent2":       {"msg_3": 1},
		"wh_contacts":     {},
		"wh_other_tenant": {},
		"wh_off":          {},
	}
	total := 0
	for _, ids := range want {
		total += len(ids)
	}
	testenv.WaitFor(t, 15*time.Second, "the expected deliveries", func() bool {
		n := 0
		for _, r := range receivers {
			n += r.Count()
		}
		return n >= total
	})
	// Nothing more can arrive once both consumers have nothing left.
	testenv.WaitFor(t, 10*time.Second, "matcher and deliverer idle", func() bool {
		return s.consumerIdle(streams.Events, streams.MatcherConsumer) &&
			s.consumerIdle(streams.Deliveries, streams.DelivererConsumer) &&
			s.streamMsgs(streams.Deliveries) == 0
	})
	for id, ids := range want {
		got := receivers[id].CountByID()
		if len(got) != len(ids) {
			t.Errorf("%s got %v, want %v", id, got, ids)
			continue
		}
		for evt, n := range ids {
			if got[evt] != n {
				t.Errorf("%s got %v, want %v", id, got, ids)
				break
			}
		}
	}
	if got := s.counter("switchboard_events_matched_total", "result", "unmatched"); got != 0 {
		t.Errorf("unmatched events = %v, want 0 (wh_all matches all)", got)
	}
}

func TestMatcher_UndecodableEventIsTerminated(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	recv := testenv.StartReceiver(t, nil)
	s.putWebhook(webhook(t, "wh_1", recv.URL, "*"))
	s.startAll()

	if _, err := env.JS.Publish(t.Context(), streams.EventSubject("t1", "call.started"), []byte(`{not json`)); err != nil {
		t.Fatal(err)
	}
	s.publishEvent(event("msg_after", "call.started", ""), true)
	testenv.WaitFor(t, 10*time.Second, "the next event delivered", func() bool { return recv.Count() == 1 })
	testenv.WaitFor(t, 10*time.Second, "matcher idle", func() bool {
		return s.consumerIdle(streams.Events, streams.MatcherConsumer)
	})
	if got := s.counter("switchboard_events_matched_total", "result", "invalid"); got != 1 {
		t.Errorf("invalid events = %v, want 1", got)
	}
	if !strings.Contains(s.logs.String(), "undecodable event") {
		t.Errorf("no log line for the undecodable event")
	}
	var p switchboard.Payload
	if err := json.Unmarshal(recv.Requests()[0].Body, &p); err != nil || p.ID != "msg_after" {
		t.Errorf("delivered %s (%v), want msg_after", recv.Requests()[0].Body, err)
	}
}
