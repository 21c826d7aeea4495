package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// ErrForeignMirror is returned by Claim (and Run) when the bucket belongs
// to another database: resyncing would delete every webhook that database
// has and this one lacks.
var ErrForeignMirror = errors.New("the KV bucket belongs to another registry database")

// Claim makes sure that the bucket is this database's mirror before
// anything deletes from it, and writes the encryption key check. The
// bucket is this database's when it holds this database's id
// (DB.MirrorID). A bucket without an id (new, or mirrored by a version
// before ids) is claimed when it holds no webhook, or when it holds a
// webhook this database has too (an upgrade): an empty or unrelated
// database facing a bucket of webhooks refuses, since a resync would
// delete them all. With Adopt, any bucket is claimed.
//
// Errors: one wrapping ErrForeignMirror, saying what to do; KV and SQLite
// failures.
func (m *Mirror) Claim(ctx context.Context) error {
	id, err := m.DB.MirrorID(ctx)
	if err != nil {
		return fmt.Errorf("claim kv mirror: %w", err)
	}
	current, err := m.snapshot(ctx)
	if err != nil {
		return fmt.Errorf("claim kv mirror: %w", err)
	}
	owner, owned := current[streams.MirrorIDKey]
	switch {
	case owned && string(owner) == id:
	case m.Adopt:
		m.Logger.WarnContext(ctx, "adopting the KV mirror (--adopt-mirror): webhooks this database lacks will be deleted from it",
			"bucket", streams.WebhooksBucket, "previous_owner", string(owner), "owner", id)
		if err := m.put(ctx, streams.MirrorIDKey, []byte(id)); err != nil {
			return fmt.Errorf("claim kv mirror: %w", err)
		}
	case owned:
		return fmt.Errorf("%w: bucket %s is the mirror of database %s, and this registry's database is %s. "+
			"Is --data-dir the registry's own (a volume not mounted, a restore from elsewhere, staging pointed at production NATS)? "+
			"Nothing was changed. If this database is meant to replace the other, start once with --adopt-mirror (SWITCHBOARD_ADOPT_MIRROR=true): "+
			"the bucket is then made to match this database, and webhooks only the other has stop being delivered",
			ErrForeignMirror, streams.WebhooksBucket, owner, id)
	default:
		if err := m.claimUnowned(ctx, current); err != nil {
			return err
		}
		// Create, not put: of two registries claiming at once, one wins.
		if err := m.create(ctx, streams.MirrorIDKey, []byte(id)); errors.Is(err, jetstream.ErrKeyExists) {
			return m.Claim(ctx)
		} else if err != nil {
			return fmt.Errorf("claim kv mirror: %w", err)
		}
	}
	return m.writeKeyCheck(ctx, current[streams.KeyCheckKey])
}

// claimUnowned decides on a bucket without an owner's id: it may be
// claimed when it holds no webhook or one that this database has.
func (m *Mirror) claimUnowned(ctx context.Context, current map[string][]byte) error {
	var inBucket int
	for key := range current {
		if !streams.IsReservedKey(key) {
			inBucket++
		}
	}
	if inBucket == 0 {
		return nil
	}
	whs, err := m.DB.MirrorAll(ctx)
	if err != nil {
		return fmt.Errorf("claim kv mirror: %w", err)
	}
	for _, wh := range whs {
		if _, ok := current[wh.ID]; ok {
			return nil
		}
	}
	return fmt.Errorf("%w: bucket %s holds %d webhooks and none of them is in this registry's database (%d webhooks). "+
		"Is --data-dir the registry's own (a volume not mounted, staging pointed at production NATS)? "+
		"Nothing was changed. If this database is meant to replace the bucket's, start once with --adopt-mirror (SWITCHBOARD_ADOPT_MIRROR=true): "+
		"the bucket is then made to match this database",
		ErrForeignMirror, streams.WebhooksBucket, inBucket, len(whs))
}

// writeKeyCheck keeps the key check (streams.KeyCheckKey) in step with
// the database's encryption key: sealed under it, or absent without one
// (CheckEncryptionKey has made sure nothing stored is sealed then). have is
// the check's current value, nil when there is none.
func (m *Mirror) writeKeyCheck(ctx context.Context, have []byte) error {
	key := m.DB.EncryptionKey
	if key == nil {
		if have == nil {
			return nil
		}
		if err := m.apply(ctx, streams.KeyCheckKey, nil); err != nil {
			return fmt.Errorf("remove key check: %w", err)
		}
		return nil
	}
	// Under the current key alone: during a rotation the previous key opens
	// an old check too, and workers that drop it later would refuse.
	if plain, err := key.Current().Open(string(have), streams.KeyCheckKey); have != nil && err == nil && plain == streams.KeyCheckPlaintext {
		return nil
	}
	if err := m.put(ctx, streams.KeyCheckKey, []byte(key.Seal(streams.KeyCheckPlaintext, streams.KeyCheckKey))); err != nil {
		return fmt.Errorf("write key check: %w", err)
	}
	return nil
}
