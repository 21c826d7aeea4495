package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
)

// The attempt log's limits: bodies older than the body retention are
// cleared and the rest of the attempt kept; past the size cap the oldest
// attempts go first, until the file's pages in use fit.
func TestDB_AttemptLogLimits(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	tenant := "ten_1"
	old, recent := time.Now().Add(-48*time.Hour), time.Now().Add(-time.Minute)
	var attempts []switchboard.Attempt
	for i := range 3000 {
		at := old
		if i >= 1500 {
			at = recent
		}
		attempts = append(attempts, switchboard.Attempt{
			ID: switchboard.NewID("att_"), TenantID: tenant, WebhookID: "wh_1", EventID: fmt.Sprintf("evt_%d", i),
			EventType: "call.started", Number: 1, At: at.Add(time.Duration(i) * time.Millisecond), Outcome: switchboard.AttemptRetrying,
			StatusCode: 500, Error: "status 500", ErrorClass: "status", ResponseBody: strings.Repeat("x", 1000),
		})
	}
	if _, err := db.RecordAttempts(ctx, attempts, 0); err != nil {
		t.Fatal(err)
	}
	n, err := db.ClearAttemptBodies(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 1500 {
		t.Fatalf("clear bodies: %d, %v; want the 1500 old attempts", n, err)
	}
	var withBody, withError int
	if err := db.db.GetContext(ctx, &withBody, `SELECT count(*) FROM attempt_bodies`); err != nil || withBody != 1500 {
		t.Errorf("attempts with a body after clearing: %d, %v; want the 1500 recent ones", withBody, err)
	}
	if err := db.db.GetContext(ctx, &withError, `SELECT count(*) FROM attempts WHERE error = 'status 500'`); err != nil || withError != 3000 {
		t.Errorf("attempts with their error after clearing: %d, %v; want all 3000", withError, err)
	}

	used, err := db.UsedBytes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	limit := used / 2
	pruned, err := db.PruneAttemptsToSize(ctx, limit)
	now, _ := db.UsedBytes(ctx)
	t.Logf("used %d, limit %d, pruned %d, now %d", used, limit, pruned, now)
	if err != nil || pruned == 0 {
		t.Fatalf("prune to %d of %d bytes: %d, %v", limit, used, pruned, err)
	}
	if now, _ := db.UsedBytes(ctx); now > limit {
		t.Errorf("in use after pruning: %d, want at most %d", now, limit)
	}
	// Oldest first: what is left is the newest.
	var left int64
	var minEvent string
	if err := db.db.GetContext(ctx, &left, `SELECT count(*) FROM attempts`); err != nil || left != 3000-pruned {
		t.Errorf("%d attempts left, %v; want %d", left, err, 3000-pruned)
	}
	if err := db.db.GetContext(ctx, &minEvent, `SELECT event_id FROM attempts ORDER BY at LIMIT 1`); err != nil || minEvent != fmt.Sprintf("evt_%d", pruned) {
		t.Errorf("the oldest left is %s, %v; want evt_%d", minEvent, err, pruned)
	}
}
