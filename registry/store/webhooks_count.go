package store

import (
	"context"
	"fmt"
)

// countWebhooksByStatus returns how many webhooks have each status, across
// every tenant.
func (db *DB) CountWebhooksByStatus(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	if err := db.db.SelectContext(ctx, &rows, `SELECT status, COUNT(*) AS n FROM webhooks GROUP BY status`); err != nil {
		return nil, fmt.Errorf("count webhooks by status: %w", err)
	}
	counts := make(map[string]int, len(rows))
	for _, r := range rows {
		counts[r.Status] = r.N
	}
	return counts, nil
}
