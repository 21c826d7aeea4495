package control

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/registry/store"
)

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
