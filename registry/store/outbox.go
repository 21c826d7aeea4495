package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/switchboard-hq/switchboard"
)

// The store side of the KV mirror: each transaction that changes a webhook
// adds an outbox row naming it; the Mirror puts the webhook's state as of
// then, and clears the rows it has thereby mirrored.

// insertOutbox records, in tx, that webhook id changed.
func insertOutbox(ctx context.Context, tx *sqlx.Tx, id string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_outbox (webhook_id) VALUES (?)`, id); err != nil {
		return fmt.Errorf("queue mirroring: %w", err)
	}
	return nil
}

// mirrorState returns the last outbox sequence number of webhook id (0 when
// none) and the webhook as stored (nil when it does not exist). The state is
// read after the sequence number, so it reflects at least every change up to
// it.
func (db *DB) MirrorState(ctx context.Context, id string) (int64, *switchboard.Webhook, error) {
	var seq int64
	if err := db.db.GetContext(ctx, &seq, `SELECT ifnull(max(seq), 0) FROM webhook_outbox WHERE webhook_id = ?`, id); err != nil {
		return 0, nil, fmt.Errorf("read outbox of webhook %s: %w", id, err)
	}
	var row webhookRow
	err := db.db.GetContext(ctx, &row, `SELECT `+webhookColumns+` FROM webhooks WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return seq, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("read webhook %s: %w", id, err)
	}
	wh, err := row.webhook()
	if err != nil {
		return 0, nil, err
	}
	return seq, &wh.Webhook, nil
}

// mirrorPending returns the ids of the webhooks with outbox rows, the
// oldest change first.
func (db *DB) MirrorPending(ctx context.Context) ([]string, error) {
	var ids []string
	err := db.db.SelectContext(ctx, &ids, `SELECT webhook_id FROM webhook_outbox GROUP BY webhook_id ORDER BY min(seq)`)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return ids, nil
}

// mirrorAll returns every webhook of every tenant.
func (db *DB) MirrorAll(ctx context.Context) ([]*switchboard.Webhook, error) {
	var rows []webhookRow
	if err := db.db.SelectContext(ctx, &rows, `SELECT `+webhookColumns+` FROM webhooks ORDER BY id`); err != nil {
		return nil, fmt.Errorf("read webhooks: %w", err)
	}
	out := make([]*switchboard.Webhook, 0, len(rows))
	for _, row := range rows {
		wh, err := row.webhook()
		if err != nil {
			return nil, err
		}
		out = append(out, &wh.Webhook)
	}
	return out, nil
}

// clearOutbox deletes the outbox rows of webhook id up to seq: they are
// mirrored.
func (db *DB) ClearOutbox(ctx context.Context, id string, seq int64) error {
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE webhook_id = ? AND seq <= ?`, id, seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("clear outbox of webhook %s: %w", id, err)
	}
	return nil
}
