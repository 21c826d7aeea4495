package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// The ledger: what the matcher owes. For every event it matches to at
// least one webhook the matcher records the webhooks it chose
// (streams.Matched on streams.MatchedSubject), stored before the event is
// acked; the attempt ingester keeps them in the matched table, a row per
// delivery owed. Set against the attempt log, SB_DELIVERIES and SB_DEAD,
// it says where every delivery stands (GET /v1/events/{id}) and which are
// unaccounted for (the audit, audit.go). An event that matched no webhook
// has no record.

// Matched is the ledger's record of one event's matching: the webhooks the
// matcher chose for it. It has the fields of streams.Matched, in their
// order, so the attempt ingester converts one into the other; the store
// keeps its own type because it does not import the wire formats.
type Matched struct {
	TenantID, EventID, EventType string
	EventSeq                     uint64
	At                           time.Time
	WebhookIDs                   []string
}

// RecordMatched stores the matcher's records of matched events; a record
// stored already changes nothing (they are unions: an event matched twice
// owes what either matching chose). It is what the attempt ingester does
// with them, for tests and tools.
func (db *DB) RecordMatched(ctx context.Context, matched []Matched) error {
	_, err := db.RecordLog(ctx, nil, matched, 0)
	return err
}

// recordMatched stores matched in tx.
func recordMatched(ctx context.Context, tx *sqlx.Tx, matched []Matched) error {
	if len(matched) == 0 {
		return nil
	}
	insert, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO matched (tenant_id, event_id, event_seq, webhook_id, event_type, matched_at) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer insert.Close()
	for i := range matched {
		m := &matched[i]
		for _, wid := range m.WebhookIDs {
			if _, err := insert.ExecContext(ctx, m.TenantID, m.EventID, int64(m.EventSeq), wid, m.EventType, unixNano(m.At)); err != nil {
				return fmt.Errorf("store matched record of event %s: %w", m.EventID, err)
			}
		}
	}
	return nil
}

// matchedWebhooks returns the webhooks the matcher chose for event id of
// tenant stored at seq in SB_EVENTS, in id order; none when it has no
// record (it matched none, it is not matched yet, or a worker from before
// the ledger matched it).
func (db *DB) MatchedWebhooks(ctx context.Context, tenant, id string, seq uint64) ([]string, error) {
	var ids []string
	err := db.db.SelectContext(ctx, &ids, `SELECT webhook_id FROM matched WHERE tenant_id = ? AND event_id = ? AND event_seq = ? ORDER BY webhook_id`,
		tenant, id, int64(seq))
	if err != nil {
		return nil, fmt.Errorf("matched webhooks of event %s: %w", id, err)
	}
	return ids, nil
}

// LedgerRow is a delivery owed, with what the attempt log last said of it.
type LedgerRow struct {
	TenantID  string `db:"tenant_id"`
	EventID   string `db:"event_id"`
	WebhookID string `db:"webhook_id"`
	MatchedAt int64  `db:"matched_at"`
	Outcome   string `db:"outcome"` // of the last attempt; "" when none
	LastAt    int64  `db:"last_at"` // of the last attempt; 0 when none
	Exists    bool   `db:"webhook_exists"`
}

// lastAttempt is the outcome and time of the last attempt of a delivery,
// "" and 0 when it has none. Attempts are told apart by event id, not
// sequence: two events of a tenant with one id to one webhook share them.
const lastAttempt = `
	ifnull((SELECT a.outcome FROM attempts a WHERE a.tenant_id = m.tenant_id AND a.event_id = m.event_id AND a.webhook_id = m.webhook_id
		ORDER BY a.at DESC, a.id DESC LIMIT 1), '') AS outcome,
	ifnull((SELECT max(a.at) FROM attempts a WHERE a.tenant_id = m.tenant_id AND a.event_id = m.event_id AND a.webhook_id = m.webhook_id), 0) AS last_at,
	EXISTS (SELECT 1 FROM webhooks w WHERE w.id = m.webhook_id) AS webhook_exists`

// ledger returns up to limit deliveries owed that were matched at or after
// since, newest first (when there are more, the periodic audit then
// watches the recent ones), and whether more were.
func (db *DB) Ledger(ctx context.Context, since time.Time, limit int) ([]LedgerRow, bool, error) {
	var rows []LedgerRow
	err := db.db.SelectContext(ctx, &rows, `SELECT m.tenant_id, m.event_id, m.webhook_id, m.matched_at, `+lastAttempt+`
		FROM matched m WHERE m.matched_at >= ? ORDER BY m.matched_at DESC LIMIT ?`, unixNano(since), limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("read the ledger since %s: %w", since.Format(time.RFC3339), err)
	}
	more := len(rows) > limit
	return rows[:min(len(rows), limit)], more, nil
}

// ledgerOf reads again what the attempt log says of the deliveries of rows.
func (db *DB) LedgerOf(ctx context.Context, rows []LedgerRow) ([]LedgerRow, error) {
	out := make([]LedgerRow, 0, len(rows))
	for _, r := range rows {
		var got LedgerRow
		err := db.db.GetContext(ctx, &got, `SELECT m.tenant_id, m.event_id, m.webhook_id, min(m.matched_at) AS matched_at, `+lastAttempt+`
			FROM matched m WHERE m.tenant_id = ? AND m.event_id = ? AND m.webhook_id = ? GROUP BY m.tenant_id, m.event_id, m.webhook_id`,
			r.TenantID, r.EventID, r.WebhookID)
		if err != nil {
			return nil, fmt.Errorf("read the ledger of event %s to webhook %s: %w", r.EventID, r.WebhookID, err)
		}
		out = append(out, got)
	}
	return out, nil
}

// PruneMatched deletes the ledger's records of events matched before
// cutoff, in small transactions, and returns how many it deleted.
func (db *DB) PruneMatched(ctx context.Context, cutoff time.Time) (int64, error) {
	return db.deleteInBatches(ctx, "prune matched records before "+cutoff.Format(time.RFC3339),
		`DELETE FROM matched WHERE rowid IN (SELECT rowid FROM matched WHERE matched_at < ? LIMIT ?)`, cutoff.UnixNano())
}
