package store

import (
	"context"
	"fmt"
	"testing"
)

// A ledger written before the backlog (schema 10) is counted at the
// upgrade as the audit would: a delivery whose last attempt is final is
// settled, one whose last attempt is not (a replay) or that has none is
// pending; and the triggers keep counting from there.
func TestMigrate_BacklogFromSchema10(t *testing.T) {
	ctx := context.Background()
	stmts := []string{
		`INSERT INTO tenants VALUES ('ten_d', 'default', '2026-01-01T00:00:00Z')`,
		`INSERT INTO webhooks (id, tenant_id, name, url, events, secret, timeout, max_retries, status, created_at, updated_at, created_by, updated_by)
			VALUES ('wh_1', 'ten_d', 'n', 'https://example.com', '["*"]', 's', 30, 3, 'active', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'k', 'k')`,
	}
	// e1 delivered, e2 dead-lettered then replayed (retrying last), e3
	// never attempted, e4 retrying then delivered.
	for i := 1; i <= 4; i++ {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO matched VALUES ('ten_d', 'e%d', %d, 'wh_1', 'call.started', %d)`, i, i, i*1000))
	}
	attempt := func(id, event, outcome string, at int) string {
		return fmt.Sprintf(`INSERT INTO attempts VALUES ('%s', 'ten_d', 'wh_1', '%s', 'call.started', 1, %d, '%s', '', 0, 0, '', '', '')`, id, event, at, outcome)
	}
	stmts = append(stmts, attempt("att_1", "e1", "delivered", 10), attempt("att_2", "e2", "dead_lettered", 10),
		attempt("att_3", "e2", "retrying", 20), attempt("att_4", "e4", "retrying", 10), attempt("att_5", "e4", "delivered", 20))
	db := openFromSchema(t, 10, stmts...)
	rep, err := db.Backlog(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if rep.TotalPending != 2 || len(rep.Data) != 1 || rep.Data[0].Pending != 2 || rep.Data[0].OldestMatchedAt.UnixNano() != 2000 {
		t.Fatalf("after the upgrade: %+v, want e2 and e3 pending, the oldest matched at 2000", rep)
	}
	if _, err := db.db.ExecContext(ctx, attempt("att_6", "e3", "delivered", 30)); err != nil {
		t.Fatal(err)
	}
	if rep, err = db.Backlog(ctx, "", 10); err != nil || rep.TotalPending != 1 {
		t.Fatalf("after e3 delivered: %+v %v, want 1 pending", rep, err)
	}
}
