package store_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

func TestOpen_Reopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir with spaces", "registry.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tenant, key, err := store.Bootstrap(context.Background(), db, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database is not where asked: %v", err)
	}

	db = dbtest.OpenAt(t, path) // migrations already applied: a no-op
	k, err := db.Authenticate(context.Background(), key)
	if err != nil || k.TenantID != tenant.ID {
		t.Errorf("after reopening: %+v, %v", k, err)
	}
}

func TestOpen_Errors(t *testing.T) {
	for _, path := range []string{"", filepath.Join(t.TempDir(), "missing-dir", "registry.db")} {
		if db, err := store.Open(path); err == nil {
			db.Close()
			t.Errorf("open %q: no error", path)
		}
	}
}

// childEnv makes the test binary act as a second process writing to the
// same database (see TestDB_TwoProcesses).
const childEnv = "REGISTRY_TEST_CHILD_DB"

const keysPerProcess = 50

// Two processes (this one and children running this test binary) write to
// the same file at once: every write succeeds, none is lost.
func TestDB_TwoProcesses(t *testing.T) {
	if path := os.Getenv(childEnv); path != "" {
		writeKeys(t, path, "child-"+strconv.Itoa(os.Getpid()))
		return
	}
	path := filepath.Join(t.TempDir(), "registry.db")
	db := dbtest.OpenAt(t, path)
	tenant, err := db.EnsureTenant(context.Background(), "shared")
	if err != nil {
		t.Fatal(err)
	}

	var children []*exec.Cmd
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDB_TwoProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, cmd)
	}
	writeKeys(t, path, "parent")
	for _, cmd := range children {
		if err := cmd.Wait(); err != nil {
			t.Errorf("child process: %v", err)
		}
	}
	if n, err := db.CountKeys(context.Background(), tenant.ID); err != nil || n != 3*keysPerProcess {
		t.Errorf("keys: %d, %v; want %d", n, err, 3*keysPerProcess)
	}
}

// writeKeys opens the database on its own, as a separate process would,
// ensures the shared tenant and creates keys in it.
func writeKeys(t *testing.T, path, prefix string) {
	db := dbtest.OpenAt(t, path)
	ctx := context.Background()
	tenant, err := db.EnsureTenant(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	for i := range keysPerProcess {
		if _, _, err := db.CreateKey(ctx, tenant.ID, fmt.Sprintf("%s-%d", prefix, i)); err != nil {
			t.Fatalf("%s: create key %d: %v", prefix, i, err)
		}
	}
}
