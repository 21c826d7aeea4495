package store

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/switchboard-hq/switchboard"
)

// fillBacklog stores, in a real SQLite file, webhooks webhooks of one
// tenant and perWebhook matched records owed to each with no attempt: a
// backlog of webhooks*perWebhook deliveries, through the triggers the
// ingester's inserts fire.
func fillBacklog(tb testing.TB, webhooks, perWebhook int) *DB {
	tb.Helper()
	ctx := context.Background()
	db, err := Open(filepath.Join(tb.TempDir(), "registry.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	tenant, err := db.EnsureTenant(ctx, "bench")
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UTC()
	start := time.Now()
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		for i := range webhooks {
			id := fmt.Sprintf("wh_bench%04d", i)
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhooks (id, tenant_id, name, url, events, secret, timeout, max_retries, status,
				created_at, updated_at, created_by, updated_by) VALUES (?, ?, ?, 'https://example.com/h', '["*"]', 's', 10, 10, 'active', ?, ?, 'bench', 'bench')`,
				id, tenant.ID, id, now, now); err != nil {
				return err
			}
			// One statement per webhook, its rows generated in SQLite: the
			// triggers fire per row as for the ingester's.
			if _, err := tx.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
				INSERT INTO matched (tenant_id, event_id, event_seq, webhook_id, event_type, matched_at)
				SELECT ?, 'evt_' || ? || '_' || i, i, ?, 'call.started', ? + i FROM n`,
				perWebhook, tenant.ID, i, id, now.UnixNano()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("filled %d webhooks x %d pending deliveries in %s", webhooks, perWebhook, time.Since(start).Round(time.Millisecond))
	return db
}

// BenchmarkBacklog_Top10 reads the top 10 webhooks by backlog, as GET
// /v1/backlog and switchboard_backlog_deliveries do, over 1,000,000
// pending deliveries: one dead receiver's, and ten of 100,000 each. The
// scan sub-benchmarks count the same by GROUP BY over the ledger, what a
// read without the backlog table would cost.
//
//	go test -run '^$' -bench BenchmarkBacklog_Top10 -benchtime 20x ./registry/
func BenchmarkBacklog_Top10(b *testing.B) {
	for _, c := range []struct{ webhooks, each int }{{1, 1_000_000}, {10, 100_000}} {
		b.Run(fmt.Sprintf("%dx%d", c.webhooks, c.each), func(b *testing.B) {
			db := fillBacklog(b, c.webhooks, c.each)
			ctx := context.Background()
			rep, err := db.Backlog(ctx, "", 10)
			if err != nil {
				b.Fatal(err)
			}
			if rep.TotalPending != int64(c.webhooks*c.each) || len(rep.Data) != c.webhooks {
				b.Fatalf("backlog %d over %d webhooks, want %d over %d", rep.TotalPending, len(rep.Data), c.webhooks*c.each, c.webhooks)
			}
			b.Run("table", func(b *testing.B) {
				for b.Loop() {
					if _, err := db.Backlog(ctx, "", 10); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("scan", func(b *testing.B) {
				for b.Loop() {
					var n []int64
					if err := db.db.SelectContext(ctx, &n, `SELECT count(*) FROM matched WHERE settled = 0
						GROUP BY webhook_id ORDER BY count(*) DESC LIMIT 10`); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkBacklog_Record is the ingester's cost of keeping the backlog:
// a transaction of 256 matched records and their 256 delivered attempts,
// as recordLog stores them, with the backlog's triggers and without them
// (dropped: the code before migration 11 wrote the same rows).
//
//	go test -run '^$' -bench BenchmarkBacklog_Record -benchtime 200x ./registry/
func BenchmarkBacklog_Record(b *testing.B) {
	const batch = 256
	for _, triggers := range []bool{true, false} {
		b.Run(fmt.Sprintf("triggers=%v", triggers), func(b *testing.B) {
			db := fillBacklog(b, 1, 1)
			ctx := context.Background()
			if !triggers {
				for _, stmt := range []string{`DROP TRIGGER matched_backlog_insert`, `DROP TRIGGER matched_backlog_settle`,
					`DROP TRIGGER matched_backlog_delete`, `DROP TRIGGER attempts_backlog_settle`, `DROP INDEX matched_pending`} {
					if _, err := db.db.ExecContext(ctx, stmt); err != nil {
						b.Fatal(err)
					}
				}
			}
			seq := 0
			cpu0 := cpuTime(b)
			for b.Loop() {
				matched := make([]Matched, batch)
				attempts := make([]switchboard.Attempt, batch)
				at := time.Now()
				for i := range batch {
					seq++
					id := fmt.Sprintf("evt_r%d", seq)
					matched[i] = Matched{TenantID: "t", EventID: id, EventSeq: uint64(seq), EventType: "call.started",
						WebhookIDs: []string{"wh_bench0000"}, At: at}
					attempts[i] = switchboard.Attempt{ID: fmt.Sprintf("att_r%d", seq), TenantID: "t", WebhookID: "wh_bench0000",
						EventID: id, EventType: "call.started", Number: 1, At: at, Outcome: switchboard.AttemptDelivered}
				}
				if _, err := db.RecordLog(ctx, attempts, matched, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/delivery")
			// CPU time, less sensitive than wall time to the other
			// processes of a shared machine.
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N*batch), "cpu-ns/delivery")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
