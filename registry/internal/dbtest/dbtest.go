// Package dbtest holds the test helpers that the tests of registry/store
// and of the packages built on it share: a registry database on a real
// SQLite file in the test's temporary directory, and an assertion on an
// error's code.
package dbtest

import (
	"path/filepath"
	"testing"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Open opens a registry database in a temporary directory and closes it
// when the test ends.
func Open(tb testing.TB) *store.DB {
	tb.Helper()
	return OpenAt(tb, filepath.Join(tb.TempDir(), "registry.db"))
}

// OpenAt opens the registry database at path and closes it when the test
// ends.
func OpenAt(tb testing.TB, path string) *store.DB {
	tb.Helper()
	db, err := store.Open(path)
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return db
}

// WantCode fails the test unless err has the switchboard error code code.
func WantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := switchboard.ErrorCode(err); got != code {
		tb.Errorf("error %v has code %q, want %q", err, got, code)
	}
}
