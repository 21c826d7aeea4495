package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"
)

// SealSecrets seals, under EncryptionKey, the confidential fields of
// webhooks (secrets, retiring secrets, auth credentials) that are stored in
// plaintext (written before a key was configured) or sealed under the
// previous key of a rotation (sealed.Key.WithPrevious). It queues each
// changed webhook for the KV mirror, so that the bucket follows, and
// returns how many webhooks it changed. Without an EncryptionKey it does
// nothing. It runs in one transaction: a failure leaves every row as it
// was.
func (db *DB) SealSecrets(ctx context.Context) (int, error) {
	if db.EncryptionKey == nil {
		return 0, nil
	}
	n := 0
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		var rows []webhookRow
		if err := tx.SelectContext(ctx, &rows, `SELECT `+webhookColumns+` FROM webhooks`); err != nil {
			return err
		}
		for _, row := range rows {
			changed, err := db.sealRow(ctx, tx, row)
			if err != nil {
				return err
			}
			if changed {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("seal secrets: %w", err)
	}
	return n, nil
}

// sealRow seals the fields of row that are plaintext or the previous
// key's under the current key, and reports whether there were any.
func (db *DB) sealRow(ctx context.Context, tx *sqlx.Tx, row webhookRow) (bool, error) {
	current := db.EncryptionKey.Current()
	stored, err := row.webhook()
	if err != nil {
		return false, err
	}
	s := stored.Webhook
	if _, err := row.opened(current); err != nil {
		// Sealed under the previous key: open it all, seal it all again.
		opened, err := row.opened(db.EncryptionKey)
		if err != nil {
			return false, err
		}
		s = opened.Webhook
	}
	current.SealWebhook(&s) // leaves what is sealed already as it is
	if s.Secret == stored.Secret && s.Auth == stored.Auth && slices.Equal(s.RetiringSecrets, stored.RetiringSecrets) {
		return false, nil
	}
	retiring, err := json.Marshal(s.RetiringSecrets)
	if err != nil {
		return false, err
	}
	if s.RetiringSecrets == nil {
		retiring = []byte("[]")
	}
	auth, err := json.Marshal(s.Auth)
	if err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE webhooks SET secret = ?, retiring_secrets = ?, auth = ? WHERE id = ?`,
		s.Secret, string(retiring), string(auth), row.ID); err != nil {
		return false, err
	}
	return true, insertOutbox(ctx, tx, row.ID)
}
