package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
)

// BenchmarkAttemptLogSize measures what one attempt costs in registry.db,
// indexes included, stored as the registry stores them (RecordAttempts, in
// batches of 512): a delivered attempt with a short answer, a failed one
// with a full body excerpt (switchboard.MaxAttemptBody), and the failed one
// once --attempt-body-retention cleared its body. The figure is the growth
// of the pages in use divided by the attempts; docs/operations.md's sizing
// table is drawn from it (make attempt-size).
func BenchmarkAttemptLogSize(b *testing.B) {
	page := strings.Repeat("<html><body><h1>502 Bad Gateway</h1><p>upstream timed out</p></body></html>\n", 14)[:switchboard.MaxAttemptBody]
	for _, tc := range []struct {
		name  string
		make  func(a *switchboard.Attempt)
		clear bool
	}{
		{"delivered", func(a *switchboard.Attempt) {
			a.Outcome, a.StatusCode, a.ResponseBody = switchboard.AttemptDelivered, 200, `{"ok":true}`
		}, false},
		{"delivered-body-cleared", func(a *switchboard.Attempt) {
			a.Outcome, a.StatusCode, a.ResponseBody = switchboard.AttemptDelivered, 200, `{"ok":true}`
		}, true},
		{"failed-with-body", func(a *switchboard.Attempt) {
			a.Outcome, a.StatusCode, a.ErrorClass, a.Error, a.ResponseBody = switchboard.AttemptRetrying, 502, "status", "status 502", page
		}, false},
		{"failed-body-cleared", func(a *switchboard.Attempt) {
			a.Outcome, a.StatusCode, a.ErrorClass, a.Error, a.ResponseBody = switchboard.AttemptRetrying, 502, "status", "status 502", page
		}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			db := dbtest.Open(b)
			ctx := context.Background()
			before, err := db.UsedBytes(ctx)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now().Add(-time.Hour)
			batch := make([]switchboard.Attempt, 0, 512)
			flush := func() {
				if _, err := db.RecordAttempts(ctx, batch, 0); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
			b.ResetTimer()
			for i := range b.N {
				a := switchboard.Attempt{
					ID: switchboard.NewID("att_"), TenantID: "ten_01a2358a1b2c3d4e5f60718293a4b5c6",
					WebhookID: fmt.Sprintf("wh_01a2358a1b2c3d4e5f607182%08d", i%1000), EventID: switchboard.NewID("msg_"),
					EventType: "call.started", Number: 1 + i%4, At: start.Add(time.Duration(i) * time.Millisecond), LatencyMS: 12.5,
				}
				tc.make(&a)
				if batch = append(batch, a); len(batch) == cap(batch) {
					flush()
				}
			}
			flush()
			if tc.clear {
				if _, err := db.ClearAttemptBodies(ctx, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			after, err := db.UsedBytes(ctx)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(after-before)/float64(b.N), "bytes/attempt")
		})
	}
}
