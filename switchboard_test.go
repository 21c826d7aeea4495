package switchboard_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
)

func TestMatchEventType(t *testing.T) {
	for _, tc := range []struct {
		pattern, typ string
		want         bool
	}{
		{"*", "call.started", true},
		{"call.*", "call.started", true},
		{"call.*", "call.x.y", true},
		{"call.*", "call", false},
		{"call.*", "callx.started", false},
		{"call.*", "contact.created", false},
		{"call.started", "call.started", true},
		{"call.started", "call.ended", false},
		{"agent.presencechanged.v0v1", "agent.presencechanged.v0v1", true},
		{"call*", "call.started", false},
	} {
		if got := switchboard.MatchEventType(tc.pattern, tc.typ); got != tc.want {
			t.Errorf("MatchEventType(%q, %q) = %v, want %v", tc.pattern, tc.typ, got, tc.want)
		}
	}
}

func TestValidEventPattern(t *testing.T) {
	for p, want := range map[string]bool{
		"*": true, "call.*": true, "call.started": true, "a-b_c.d": true,
		"": false, "call.": false, ".call": false, "call..x": false, "call*": false,
		"*.started": false, "call.*.x": false, "call started": false, "call.>": false,
		strings.Repeat("a", 256): true, strings.Repeat("a", 257): false,
	} {
		if got := switchboard.ValidEventPattern(p); got != want {
			t.Errorf("ValidEventPattern(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestWebhook_Matches(t *testing.T) {
	wh := switchboard.Webhook{TenantID: "t1", Events: []string{"call.*"}, Status: switchboard.StatusActive}
	evt := switchboard.Event{TenantID: "t1", Type: "call.started", AgentID: "a1"}
	if !wh.Matches(&evt) {
		t.Error("active tenant-wide webhook does not match")
	}
	other := evt
	other.TenantID = "t2"
	if wh.Matches(&other) {
		t.Error("matches another tenant's event")
	}
	scoped := wh
	scoped.AgentID = "a2"
	if scoped.Matches(&evt) {
		t.Error("agent-scoped webhook matches another agent's event")
	}
	scoped.AgentID = "a1"
	if !scoped.Matches(&evt) {
		t.Error("agent-scoped webhook does not match its agent's event")
	}
	inactive := wh
	inactive.Status = switchboard.StatusInactive
	if inactive.Matches(&evt) {
		t.Error("inactive webhook matches")
	}
}

func TestWebhook_Matches_AlertHooks(t *testing.T) {
	plain := switchboard.Webhook{TenantID: "t1", Events: []string{"*"}, Status: switchboard.StatusActive}
	alert := plain
	alert.IsAlertHook = true
	scopedAlert := alert
	scopedAlert.AgentID = "a1"
	for _, tc := range []struct {
		typ, agent                string
		plain, alert, scopedAlert bool
	}{
		{typ: "call.started", plain: true},
		{typ: "webhook.test", plain: true},
		{typ: switchboard.EventWebhookDisabled, alert: true},
		{typ: switchboard.EventDeliveryDeadLettered, alert: true},
		{typ: switchboard.EventWebhookRecovered, alert: true},
		{typ: switchboard.EventWebhookDisabled, agent: "a1", alert: true, scopedAlert: true},
		{typ: switchboard.EventWebhookDisabled, agent: "a2", alert: true},
	} {
		evt := switchboard.Event{TenantID: "t1", Type: tc.typ, AgentID: tc.agent}
		for name, c := range map[string]struct {
			wh   switchboard.Webhook
			want bool
		}{"plain": {plain, tc.plain}, "alert": {alert, tc.alert}, "scoped alert": {scopedAlert, tc.scopedAlert}} {
			if got := c.wh.Matches(&evt); got != c.want {
				t.Errorf("%s webhook, %s event of agent %q: Matches = %v, want %v", name, tc.typ, tc.agent, got, c.want)
			}
		}
	}
	// A pattern must still select the operational type.
	only := alert
	only.Events = []string{"webhook.*"}
	if only.Matches(&switchboard.Event{TenantID: "t1", Type: switchboard.EventDeliveryDeadLettered}) {
		t.Error("an alert hook for webhook.* matches delivery.dead_lettered")
	}
}

func TestIsOperationalEvent(t *testing.T) {
	for typ, want := range map[string]bool{
		"webhook.disabled": true, "delivery.dead_lettered": true, "webhook.recovered": true,
		"webhook.test": false, "webhook": false, "call.started": false, "webhook.disabled.x": false,
	} {
		if got := switchboard.IsOperationalEvent(typ); got != want {
			t.Errorf("IsOperationalEvent(%q) = %v, want %v", typ, got, want)
		}
	}
}

func TestEvent_Validate(t *testing.T) {
	valid := func() switchboard.Event {
		e := switchboard.Event{TenantID: "default", Type: "call.started", Data: json.RawMessage(`{"a":1}`)}
		e.Normalize(time.Now())
		return e
	}
	e := valid()
	if err := e.Validate(); err != nil {
		t.Fatalf("valid event: %v", err)
	}
	if !strings.HasPrefix(e.ID, switchboard.EventIDPrefix) {
		t.Errorf("generated id %q", e.ID)
	}

	bad := switchboard.Event{ID: "has space", TenantID: "a.b", Type: "call..x", Data: json.RawMessage(`[1]`),
		AgentID: strings.Repeat("a", 256), OccurredAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	err := bad.Validate()
	var se *switchboard.Error
	if !errors.As(err, &se) || se.Code != switchboard.EINVALID {
		t.Fatalf("want EINVALID, got %v", err)
	}
	for _, f := range []string{"id", "tenant_id", "type", "data", "agent_id", "occurred_at"} {
		if len(se.Fields[f]) == 0 {
			t.Errorf("no error for field %s: %v", f, se.Fields)
		}
	}
	for _, data := range []string{``, `null`, `"x"`, `{"a":`} {
		e := valid()
		e.Data = json.RawMessage(data)
		if err := e.Validate(); !errors.As(err, &se) || len(se.Fields["data"]) == 0 {
			t.Errorf("data %q: want a data error, got %v", data, err)
		}
	}
}

func TestEvent_Payload(t *testing.T) {
	e := switchboard.Event{ID: "msg_1", TenantID: "t", Type: "call.started", AgentID: "a1",
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Data: json.RawMessage(`{"x":1}`)}
	b, err := e.Payload(json.RawMessage(`{"crm":"acme"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"msg_1","type":"call.started","timestamp":"2026-01-02T03:04:05Z","agent_id":"a1","data":{"x":1},"properties":{"crm":"acme"}}`
	if string(b) != want {
		t.Errorf("payload\n got %s\nwant %s", b, want)
	}
}

// AppendPayload writes by hand what encoding/json would: the result must
// decode to the same values, whatever the agent id holds.
func TestEvent_AppendPayload(t *testing.T) {
	for _, agent := range []string{"", "agent-1", "a:b.c_d", "with \"quote\" and \\", "line\r\nbreak", "<b>&é\u2028", "bad \xff utf8"} {
		e := switchboard.Event{ID: "msg_1", Type: "call.started", AgentID: agent,
			OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Data: json.RawMessage(` {"html": "<p>"} `)}
		b := e.AppendPayload([]byte("keep"), nil)
		body, ok := strings.CutPrefix(string(b), "keep")
		if !ok {
			t.Fatalf("dst not kept: %s", b)
		}
		var p switchboard.Payload
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatalf("agent %q: %s: %v", agent, body, err)
		}
		want := strings.ToValidUTF8(agent, "\ufffd")
		if p.ID != e.ID || p.Type != e.Type || p.AgentID != want || !p.Timestamp.Equal(e.OccurredAt) || string(p.Data) != `{"html": "<p>"}` {
			t.Errorf("agent %q: decoded %+v", agent, p)
		}
		if agent == "" && strings.Contains(body, "agent_id") {
			t.Errorf("empty agent id written: %s", body)
		}
	}
}

func TestValidAgentID(t *testing.T) {
	for id, want := range map[string]bool{
		"agent-1": true, "a:b.c_D9": true, strings.Repeat("a", 255): true,
		"": false, ".": false, "..": false, "a b": false, "a\r\nb": false, "é": false, strings.Repeat("a", 256): false,
	} {
		if got := switchboard.ValidAgentID(id); got != want {
			t.Errorf("ValidAgentID(%q) = %v, want %v", id, got, want)
		}
	}
}
