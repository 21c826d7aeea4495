package registry

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// resealBatch is how many webhooks ResealWebhooks reads, and rewrites, per
// transaction: the API's writers wait for no longer than one batch.
const resealBatch = 500

// ResealWebhooks seals again, under the new key of a rotating EncryptionKey
// (see sealed.ParseKey), every webhook whose confidential fields the new key
// alone cannot open, and queues each for the KV mirror, so that workers read
// them sealed under the new key too. It returns how many it rewrote; with a
// key that is not rotating it does nothing. Once it has run, the keys
// replaced may be dropped from --encryption-key, first in the registry, then
// in every worker once the mirror has caught up.
func (db *DB) ResealWebhooks(ctx context.Context) (int, error) {
	if !db.EncryptionKey.Rotating() {
		return 0, nil
	}
	current := db.EncryptionKey.Current()
	n, after := 0, ""
	for {
		done := false
		err := db.withTx(ctx, func(tx *sqlx.Tx) error {
			var rows []webhookRow
			err := tx.SelectContext(ctx, &rows, `SELECT `+webhookColumns+` FROM webhooks WHERE id > ? ORDER BY id LIMIT ?`, after, resealBatch)
			if err != nil || len(rows) == 0 {
				done = true
				return err
			}
			after = rows[len(rows)-1].ID
			for i := range rows {
				if _, err := rows[i].opened(current); err == nil {
					continue
				}
				wh, err := rows[i].opened(db.EncryptionKey)
				if err != nil {
					return err
				}
				row, err := newWebhookRow(wh, db.EncryptionKey)
				if err != nil {
					return err
				}
				if _, err := tx.NamedExecContext(ctx, `UPDATE webhooks SET secret = :secret, retiring_secrets = :retiring_secrets, auth = :auth, headers = :headers WHERE id = :id`, row); err != nil {
					return err
				}
				if err := insertOutbox(ctx, tx, wh.ID); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("reseal webhooks: %w", err)
		}
		if done {
			return n, nil
		}
	}
}
