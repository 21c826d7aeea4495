package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
)

func TestAppendAttempt_IsJSONMarshal(t *testing.T) {
	full := switchboard.Attempt{
		ID: "att_01", TenantID: "t1", WebhookID: "wh_1", EventID: "msg:1", EventType: "call.started", Number: 3,
		At: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Outcome: switchboard.AttemptDeadLettered, Reason: "gone",
		StatusCode: 410, LatencyMS: 12.345, ErrorClass: "status", Error: `status 410: {"error": "gone <now> & forever"}`,
		ResponseBody: "café \u2028 \\ \x01 \xff",
	}
	for name, a := range map[string]switchboard.Attempt{
		"full":          full,
		"zero":          {},
		"delivered":     {ID: "att_2", Outcome: switchboard.AttemptDelivered, StatusCode: 204, LatencyMS: 0.001, At: time.Unix(1, 0).In(time.FixedZone("x", 3600))},
		"huge-latency":  {LatencyMS: 1e22},
		"tiny-latency":  {LatencyMS: 1e-9},
		"whole-latency": {LatencyMS: 1500},
	} {
		want, err := json.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendAttempt(nil, &a); string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func TestEventType(t *testing.T) {
	for body, want := range map[string]string{
		`{"id":"msg_1","type":"call.started","data":{}}`:       "call.started",
		`{"type":"a.b","id":"x"}`:                              "a.b", // not the stored form: decoded
		`{"id":"msg_1","data":{"x":1}}`:                        "",
		`not json`:                                             "",
		`{"id":"msg_1","type":"a\u002eb","data":{"type":"c"}}`: "a.b",
	} {
		if got := eventType([]byte(body)); got != want {
			t.Errorf("eventType(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestErrorClass(t *testing.T) {
	for want, err := range map[string]error{
		"status":     &attemptError{Status: 500},
		"timeout":    &attemptError{Err: context.DeadlineExceeded},
		"connection": &attemptError{Err: errors.New("connection refused")},
		"refused":    &attemptError{Err: &netguard.RefusedError{}},
		"invalid":    &webhookError{Reason: reasonInactive},
	} {
		if got := errorClass(errors.Join(errors.New("wrapped"), err)); got != want {
			t.Errorf("errorClass(%v) = %q, want %q", err, got, want)
		}
	}
	if got := truncate("ééé", 3); got != "é" {
		t.Errorf("truncate cut a rune: %q", got)
	}
}
