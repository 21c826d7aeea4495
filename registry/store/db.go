package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"

	"github.com/switchboard-hq/switchboard/internal/sealed"
)

// DB is the registry's SQLite database: tenants, API keys, webhooks and the
// outbox of the KV mirror. It is safe for concurrent use, and several
// processes may open the same file at once.
type DB struct {
	// EncryptionKey, when set (before the DB is used), seals the webhooks'
	// secrets and auth credentials as they are written, in SQLite and so in
	// the KV mirror, which copies the stored form. Reads open them. With no
	// key, values are written in plaintext, and sealed ones cannot be read.
	EncryptionKey *sealed.Key
	// Quotas bound what each tenant may keep; Open sets DefaultQuotas.
	Quotas Quotas

	db *sqlx.DB
}

// Open opens the SQLite database at path, creating the file when it does
// not exist, and migrates it to the schema this binary expects.
//
// Every connection runs in WAL mode (readers never block the writer), waits
// up to 5 s for a lock held by another connection or process, enforces
// foreign keys and begins every transaction with BEGIN IMMEDIATE, so two
// writers queue for the lock instead of failing with SQLITE_BUSY halfway.
// Open fails when the file cannot be opened or was migrated by a newer
// binary.
func Open(path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("open registry: empty path")
	}
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_foreign_keys", "on")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	sdb, err := sqlx.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	db := &DB{db: sdb, Quotas: DefaultQuotas()}
	if err := db.migrate(context.Background()); err != nil {
		_ = sdb.Close()
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	return db, nil
}

// createPrivate creates path 0600 when it does not exist, so that SQLite,
// which would create it per the umask (0644 usually), opens it instead: the
// file holds key hashes and webhook secrets. SQLite gives its -wal and -shm
// files the database file's mode. An existing file is left as it is.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// Close closes the database.
func (db *DB) Close() error {
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("close registry: %w", err)
	}
	return nil
}

// withTx runs fn in a transaction (BEGIN IMMEDIATE, see Open) and commits
// when fn returns nil. fn's error is returned as is.
func (db *DB) withTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	tx, err := db.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// isConstraint reports whether err is SQLite's constraint violation code.
func isConstraint(err error, code sqlite3.ErrNoExtended) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == code
}
