package registry

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
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
