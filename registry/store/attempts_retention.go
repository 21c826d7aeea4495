package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// pruneBatch is how many rows one pruning transaction touches, so that
// ingestion and the API are never held up long.
const pruneBatch = 5000

// ClearAttemptBodies deletes the response body excerpts of the attempts
// made before cutoff, keeping the rest of each, and returns how many it
// deleted. Bodies are stored in the order attempts are, so this empties,
// and frees, whole pages of attempt_bodies.
func (db *DB) ClearAttemptBodies(ctx context.Context, cutoff time.Time) (int64, error) {
	return db.deleteInBatches(ctx, "clear attempt bodies before "+cutoff.Format(time.RFC3339),
		`DELETE FROM attempt_bodies WHERE rowid IN (SELECT b.rowid FROM attempt_bodies b
			JOIN attempts a ON a.id = b.attempt_id WHERE a.at < ? LIMIT ?)`, cutoff.UnixNano())
}

// deleteInBatches runs query, a DELETE of at most as many rows as its last
// parameter (pruneBatch, appended to args), until a run deletes fewer, and
// returns how many it deleted: each run is its own transaction. what names
// the deletion in errors.
func (db *DB) deleteInBatches(ctx context.Context, what, query string, args ...any) (int64, error) {
	args = append(args, pruneBatch)
	var total int64
	for {
		res, err := db.db.ExecContext(ctx, query, args...)
		if err != nil {
			return total, fmt.Errorf("%s: %w", what, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("%s: %w", what, err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// UsedBytes returns how many bytes of the database file hold data: its
// pages less the free ones. Deleted rows free pages that later writes
// reuse, so this, not the file's size (which only VACUUM shrinks), is what
// a size cap can hold.
func (db *DB) UsedBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	for q, v := range map[string]*int64{`PRAGMA page_count`: &pages, `PRAGMA freelist_count`: &free, `PRAGMA page_size`: &size} {
		if err := db.db.GetContext(ctx, v, q); err != nil {
			return 0, fmt.Errorf("used bytes: %s: %w", q, err)
		}
	}
	return (pages - free) * size, nil
}

// PruneAttemptsToSize deletes the oldest attempts while the database uses
// more than maxBytes (UsedBytes), and returns how many it deleted. Each
// step deletes what the excess is worth at the current bytes per attempt,
// at most pruneBatch. It stops when no attempt is left: the rest of the
// registry is not its to prune.
func (db *DB) PruneAttemptsToSize(ctx context.Context, maxBytes int64) (int64, error) {
	var total, count int64
	if err := db.db.GetContext(ctx, &count, `SELECT count(*) FROM attempts`); err != nil {
		return 0, fmt.Errorf("prune attempts to %d bytes: %w", maxBytes, err)
	}
	for count > 0 {
		used, err := db.UsedBytes(ctx)
		if err != nil || used <= maxBytes {
			return total, err
		}
		step := min(pruneBatch, max(1, (used-maxBytes)/max(1, used/count)))
		var res sql.Result
		err = db.withTx(ctx, func(tx *sqlx.Tx) error {
			const oldest = `SELECT id FROM attempts ORDER BY at LIMIT ?`
			if _, err := tx.ExecContext(ctx, `DELETE FROM attempt_bodies WHERE attempt_id IN (`+oldest+`)`, step); err != nil {
				return err
			}
			res, err = tx.ExecContext(ctx, `DELETE FROM attempts WHERE id IN (`+oldest+`)`, step)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune attempts to %d bytes: %w", maxBytes, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune attempts to %d bytes: %w", maxBytes, err)
		}
		total += n
		count -= n
		if n == 0 {
			break
		}
	}
	return total, nil
}
