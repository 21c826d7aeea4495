package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/control"
)

// FuzzDeadLetterMessage reads arbitrary SB_DEAD messages as the dead-letter
// routes do (newDeadLetter, then the API's body): no subject, header or
// body panics, the answer always encodes, and a dead letter is always of
// the tenant its subject names.
func FuzzDeadLetterMessage(f *testing.F) {
	f.Add("sb.dead.t1.wh_1", "msg_1", "retries_exhausted", "4", "500", "status 500", "1767323045000000000", []byte(`{"id":"msg_1","type":"call.started"}`))
	f.Add("sb.dead.t1", "", "", "-1", "x", "\x00\xff", "-5", []byte(`[]`))
	f.Add("sb.dead.", "a b", "A", "99999999999999999999", "99999999999999999999", "", "9223372036854775807", []byte(`{"type":1}`))
	f.Add("other.subject", "", "gone", "", "", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, subject, event, reason, attempts, status, lastErr, accepted string, body []byte) {
		h := nats.Header{}
		for k, v := range map[string]string{
			streams.HeaderEventID: event, streams.HeaderReason: reason, streams.HeaderAttempts: attempts,
			streams.HeaderLastStatus: status, streams.HeaderLastError: lastErr, streams.HeaderAcceptedAt: accepted,
		} {
			h.Set(k, v)
		}
		dl := control.NewDeadLetter(7, time.Unix(1_800_000_000, 0), streams.ReadDeadLetter(subject, h, body))
		if _, err := json.Marshal(newDeadLetterBody(dl)); err != nil {
			t.Fatalf("dead letter %+v: %v", dl, err)
		}
		if dl.TenantID != "" && !strings.HasPrefix(subject, streams.DeadPrefix+dl.TenantID+".") && subject != streams.DeadPrefix+dl.TenantID {
			t.Fatalf("subject %q gave tenant %q", subject, dl.TenantID)
		}
	})
}
