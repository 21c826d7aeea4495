package registry

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/store"
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
		dl := newDeadLetter(7, subject, time.Unix(1_800_000_000, 0), h, body)
		if _, err := json.Marshal(newDeadLetterBody(dl)); err != nil {
			t.Fatalf("dead letter %+v: %v", dl, err)
		}
		if dl.TenantID != "" && !strings.HasPrefix(subject, streams.DeadPrefix+dl.TenantID+".") && subject != streams.DeadPrefix+dl.TenantID {
			t.Fatalf("subject %q gave tenant %q", subject, dl.TenantID)
		}
	})
}

// FuzzAttemptRecord decodes arbitrary SB_ATTEMPTS records as the ingester
// does (decodeAttempts) and stores what it keeps in a real SQLite file:
// nothing panics, and whatever decodes is stored (a record SQLite refused
// would be handed back and redelivered for ever).
func FuzzAttemptRecord(f *testing.F) {
	for _, seed := range []string{
		`{"id":"att_1","tenant_id":"t1","webhook_id":"wh_1","event_id":"msg_1","attempt":1,"at":"2026-01-02T15:04:05Z","outcome":"delivered","status_code":200}`,
		`[{"id":"att_2","tenant_id":"t1","webhook_id":"wh_1","outcome":"retrying","attempt":-1,"latency_ms":-1e308},{"id":""},1,null]`,
		`[{"id":"att_3","tenant_id":"t1","webhook_id":"wh_1","outcome":"x","status_code":99999999999,"at":"0001-01-01T00:00:00Z","error":"\u0000\udfff","response_body":"` + strings.Repeat("b", 5000) + `"}]`,
		`{"id":"att_4","tenant_id":"t1","webhook_id":"wh_1","at":"9999-12-31T23:59:59Z","attempt":9223372036854775807}`,
		`[]`, `{}`, `  [`, ``, `"x"`,
	} {
		f.Add([]byte(seed))
	}
	db, err := store.Open(filepath.Join(f.TempDir(), "registry.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		attempts, _, err := decodeAttempts(data)
		if err != nil || len(attempts) == 0 {
			return
		}
		if _, err := db.RecordAttempts(ctx, attempts, 5); err != nil {
			t.Fatalf("record %q: %v", data, err)
		}
	})
}
