package control_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/internal/dbtest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// runMirror runs m.Run until it returns or a second has passed (Run resyncs
// at its start), and returns its error; nil when it was still running.
func runMirror(t *testing.T, m *control.Mirror) error {
	t.Helper()
	m.Interval = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return m.Run(ctx)
}

// A registry started on an empty or another database does not wipe the
// bucket of the registry it is not: it refuses, naming --adopt-mirror
// (before, its resync deleted every webhook from every worker).
func TestMirror_RefusesAnotherDatabasesBucket(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		ids = append(ids, a.Create(t, a.Key, "/v1/webhooks", fmt.Sprintf(`{"name": "c%d", "url": "https://example.com/h", "events": ["*"]}`, i)).ID)
	}
	slices.Sort(ids)
	// The owner's mirror claims the bucket, which holds its webhooks but no
	// owner yet: an upgrade from a version before owners.
	if err := runMirror(t, control.NewMirror(a.DB, a.KV)); err != nil {
		t.Fatalf("the owner's mirror: %v", err)
	}
	owner, err := a.KV.Get(ctx, streams.MirrorIDKey)
	if err != nil {
		t.Fatalf("no owner in the bucket: %v", err)
	}
	if id, err := a.DB.MirrorID(ctx); err != nil || string(owner.Value()) != id {
		t.Fatalf("bucket owner %q, database id %q (%v)", owner.Value(), id, err)
	}

	for name, db := range map[string]*store.DB{
		"EmptyDatabase": dbtest.Open(t),
		"OtherDatabase": otherDB(t),
	} {
		t.Run(name, func(t *testing.T) {
			err := runMirror(t, control.NewMirror(db, a.KV))
			if !errors.Is(err, control.ErrForeignMirror) || !strings.Contains(err.Error(), "--adopt-mirror") {
				t.Errorf("Run = %v, want ErrForeignMirror naming --adopt-mirror", err)
			}
			if got := apitest.KVKeys(t, a.KV); !slices.Equal(got, ids) {
				t.Fatalf("bucket keys %v, want the owner's %v untouched", got, ids)
			}
		})
	}

	t.Run("Adopt", func(t *testing.T) {
		db := otherDB(t)
		m := control.NewMirror(db, a.KV)
		m.Adopt = true
		if err := runMirror(t, m); err != nil {
			t.Fatalf("adopting: %v", err)
		}
		if got := apitest.KVKeys(t, a.KV); len(got) != 1 || slices.Contains(ids, got[0]) {
			t.Errorf("bucket keys %v, want the adopter's webhook alone", got)
		}
		// The previous owner now refuses in turn.
		if err := runMirror(t, control.NewMirror(a.DB, a.KV)); !errors.Is(err, control.ErrForeignMirror) {
			t.Errorf("the previous owner: %v, want ErrForeignMirror", err)
		}
	})
}

// A bucket without an owner that holds webhooks none of which the database
// has is not claimed either; an empty one is.
func TestMirror_ClaimsBucketWithoutOwner(t *testing.T) {
	a := apitest.Start(t, nil)
	ctx := context.Background()
	if err := control.NewMirror(a.DB, a.KV).Claim(ctx); err != nil {
		t.Fatalf("an empty bucket: %v", err)
	}
	if err := a.KV.Delete(ctx, streams.MirrorIDKey); err != nil {
		t.Fatal(err)
	}
	if _, err := a.KV.Put(ctx, "wh_theirs", []byte(`{"id":"wh_theirs"}`)); err != nil {
		t.Fatal(err)
	}
	if err := control.NewMirror(a.DB, a.KV).Claim(ctx); !errors.Is(err, control.ErrForeignMirror) {
		t.Errorf("Claim = %v, want ErrForeignMirror", err)
	}
	if _, err := a.KV.Get(ctx, "wh_theirs"); err != nil {
		t.Errorf("the other's webhook: %v", err)
	}
}

// With an encryption key, Claim writes the key check the workers test
// theirs against; without one, it removes it.
func TestMirror_WritesKeyCheck(t *testing.T) {
	key := apitest.EncryptionKey(t)
	a := apitest.Start(t, nil)
	ctx := context.Background()
	a.DB.EncryptionKey = key
	if err := control.NewMirror(a.DB, a.KV).Claim(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := a.KV.Get(ctx, streams.KeyCheckKey)
	if err != nil {
		t.Fatalf("no key check: %v", err)
	}
	if plain, err := key.Open(string(e.Value()), streams.KeyCheckKey); err != nil || plain != streams.KeyCheckPlaintext {
		t.Errorf("key check opens to %q, %v", plain, err)
	}

	// A rotation: the check is sealed again under the new key, which
	// workers keep once the previous one is dropped.
	next, err := sealed.ParseKey(base64.StdEncoding.EncodeToString([]byte("next-next-next-next-next-next-32")))
	if err != nil {
		t.Fatal(err)
	}
	a.DB.EncryptionKey = next.WithPrevious(key)
	if err := control.NewMirror(a.DB, a.KV).Claim(ctx); err != nil {
		t.Fatal(err)
	}
	if e, err = a.KV.Get(ctx, streams.KeyCheckKey); err != nil {
		t.Fatal(err)
	}
	if plain, err := next.Open(string(e.Value()), streams.KeyCheckKey); err != nil || plain != streams.KeyCheckPlaintext {
		t.Errorf("after the rotation the key check opens under the new key to %q, %v", plain, err)
	}

	a.DB.EncryptionKey = nil
	if err := control.NewMirror(a.DB, a.KV).Claim(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.KV.Get(ctx, streams.KeyCheckKey); err == nil {
		t.Error("key check left without a key")
	}
}

// otherDB is a database of its own with one webhook.
func otherDB(t *testing.T) *store.DB {
	t.Helper()
	b := apitest.Start(t, nil)
	b.Create(t, b.Key, "/v1/webhooks", `{"name": "theirs", "url": "https://example.com/h", "events": ["*"]}`)
	return b.DB
}
