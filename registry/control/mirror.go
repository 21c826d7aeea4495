package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Mirror copies the registry's webhooks into the JetStream KV bucket the
// workers read (internal/streams.WebhooksBucket): key = webhook id, value =
// the JSON of switchboard.Webhook, secret included; a deleted webhook is
// deleted from the bucket.
//
// No change is lost when NATS is down: each one is committed with an outbox
// row (see CreateWebhook), Flush mirrors it right after the commit, and Run
// retries whatever is left. A put always carries the webhook's state as it
// is in SQLite at that moment, never a delta, so mirroring twice is
// harmless, and after each put the state is read again and put again if it
// changed meanwhile: the last put to the bucket is never a stale state, even
// with several processes mirroring at once.
//
// The bucket also holds two reserved keys (streams.IsReservedKey), which
// Claim writes: the id of the database that owns the bucket, and a value
// sealed under the encryption key that workers check theirs against.
type Mirror struct {
	DB     *store.DB
	KV     jetstream.KeyValue
	Logger *slog.Logger
	// Adopt lets Claim take over a bucket that belongs to another database
	// (--adopt-mirror): Resync then makes it match this one, deleting every
	// webhook this database does not have.
	Adopt bool
	// Interval is how often Run retries the outbox.
	Interval time.Duration
	// Timeout bounds each KV operation (and the wait for each entry of the
	// bucket during Resync), so that neither an API request nor Run hangs on
	// a NATS that is down.
	Timeout time.Duration

	// Changes Flush could not mirror count up deferred; settled is the
	// count up to which FlushPending has mirrored them since (see Settle).
	deferred, settled atomic.Uint64
}

// NewMirror returns a Mirror with the defaults: retry every second, give up
// on a KV operation after 2 s, log nothing.
func NewMirror(db *store.DB, kv jetstream.KeyValue) *Mirror {
	m := &Mirror{
		DB:       db,
		KV:       kv,
		Logger:   slog.New(slog.DiscardHandler),
		Interval: time.Second,
		Timeout:  2 * time.Second,
	}
	// The outbox may hold changes of an earlier process: the first Settle
	// looks.
	m.deferred.Store(1)
	return m
}

// Flush mirrors webhook id now. On error (NATS unreachable, SQLite failing)
// the change stays in the outbox for Run to retry, and Settle flushes the
// outbox before the next event is accepted.
func (m *Mirror) Flush(ctx context.Context, id string) error {
	err := m.sync(ctx, id)
	if err != nil {
		m.deferred.Add(1)
	}
	return err
}

// FlushPending mirrors every webhook that has changes in the outbox, oldest
// first, and stops at the first error.
func (m *Mirror) FlushPending(ctx context.Context) error {
	upTo := m.deferred.Load()
	ids, err := m.DB.MirrorPending(ctx)
	if err != nil {
		return fmt.Errorf("mirror pending webhooks: %w", err)
	}
	for _, id := range ids {
		if err := m.sync(ctx, id); err != nil {
			return err
		}
	}
	for {
		old := m.settled.Load()
		if old >= upTo || m.settled.CompareAndSwap(old, upTo) {
			return nil
		}
	}
}

// Settle returns nil once every webhook change this Mirror answered is in
// the bucket: at once when every Flush succeeded, else after flushing the
// outbox. The ingest API calls it before accepting an event (as
// producer.Handler.Before), so that a webhook whose create or update was
// answered before the event reaches the workers before the event does,
// even when its own Flush failed. The error is FlushPending's: the event
// is then refused (503) rather than matched without the change.
func (m *Mirror) Settle(ctx context.Context) error {
	if m.settled.Load() >= m.deferred.Load() {
		return nil
	}
	if err := m.FlushPending(ctx); err != nil {
		return fmt.Errorf("webhook changes not mirrored yet: %w", err)
	}
	return nil
}

// Resync makes the whole bucket match SQLite: it puts every webhook whose
// entry is missing or differs, and deletes the entries of webhooks that no
// longer exist. It leaves the reserved keys alone; call Claim first, so
// that it deletes nothing from another database's bucket.
func (m *Mirror) Resync(ctx context.Context) error {
	current, err := m.snapshot(ctx)
	if err != nil {
		return fmt.Errorf("resync webhooks: %w", err)
	}
	for key := range current {
		if streams.IsReservedKey(key) {
			delete(current, key)
		}
	}
	whs, err := m.DB.MirrorAll(ctx)
	if err != nil {
		return fmt.Errorf("resync webhooks: %w", err)
	}
	for _, wh := range whs {
		value, err := kvValue(wh)
		if err != nil {
			return fmt.Errorf("resync webhook %s: %w", wh.ID, err)
		}
		entry, ok := current[wh.ID]
		delete(current, wh.ID)
		if ok && bytes.Equal(entry, value) {
			continue
		}
		if err := m.sync(ctx, wh.ID); err != nil {
			return fmt.Errorf("resync: %w", err)
		}
	}
	for id := range current { // no longer in SQLite
		if err := m.sync(ctx, id); err != nil {
			return fmt.Errorf("resync: %w", err)
		}
	}
	return nil
}

// Run claims and resyncs the bucket, then mirrors the outbox every
// Interval, until ctx is done; it then returns nil. Failures are logged
// (once when they start, once when they stop) and retried every Interval,
// except a bucket of another database: Run returns that error (wrapping
// ErrForeignMirror) at once.
func (m *Mirror) Run(ctx context.Context) error {
	ticker := time.NewTicker(m.Interval)
	defer ticker.Stop()
	resynced, failing := false, false
	for {
		var err error
		if !resynced {
			err = m.Claim(ctx)
			if errors.Is(err, ErrForeignMirror) {
				return err
			}
			if err == nil {
				err = m.Resync(ctx)
			}
			resynced = err == nil
		}
		if err == nil {
			err = m.FlushPending(ctx)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			m.Logger.WarnContext(ctx, "webhook mirror failing; changes wait in the outbox", "err", err)
		case err == nil && failing:
			m.Logger.InfoContext(ctx, "webhook mirror recovered")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// sync makes the bucket's entry of webhook id match SQLite, then clears the
// outbox rows that this mirrored.
func (m *Mirror) sync(ctx context.Context, id string) error {
	seq, want, err := m.state(ctx, id)
	if err != nil {
		return fmt.Errorf("mirror webhook %s: %w", id, err)
	}
	for {
		if err := m.apply(ctx, id, want); err != nil {
			return fmt.Errorf("mirror webhook %s: %w", id, err)
		}
		_, got, err := m.state(ctx, id)
		if err != nil {
			return fmt.Errorf("mirror webhook %s: %w", id, err)
		}
		if bytes.Equal(got, want) {
			break
		}
		// Changed since it was read: another flush of the newer state may
		// have landed before this one, so put the newer state again.
		want = got
	}
	if seq == 0 {
		return nil
	}
	if err := m.DB.ClearOutbox(ctx, id, seq); err != nil {
		return fmt.Errorf("mirror webhook %s: %w", id, err)
	}
	return nil
}

// state returns the last outbox sequence number of webhook id and the
// value its bucket entry must have (nil: no entry).
func (m *Mirror) state(ctx context.Context, id string) (int64, []byte, error) {
	seq, wh, err := m.DB.MirrorState(ctx, id)
	if err != nil || wh == nil {
		return seq, nil, err
	}
	value, err := kvValue(wh)
	if err != nil {
		return 0, nil, err
	}
	return seq, value, nil
}

// kvValue is the bucket entry of wh, the form workers read. Resync compares
// entries byte for byte, so every put must encode through here.
func kvValue(wh *switchboard.Webhook) ([]byte, error) {
	b, err := json.Marshal(wh)
	if err != nil {
		return nil, fmt.Errorf("encode webhook %s: %w", wh.ID, err)
	}
	return b, nil
}

// put puts value at key, within Timeout.
func (m *Mirror) put(ctx context.Context, key string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	if _, err := m.KV.Put(ctx, key, value); err != nil {
		return fmt.Errorf("kv put %s: %w", key, err)
	}
	return nil
}

// create puts value at key unless the key holds a value, within Timeout;
// the error wraps jetstream.ErrKeyExists if it does.
func (m *Mirror) create(ctx context.Context, key string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	if _, err := m.KV.Create(ctx, key, value); err != nil {
		return fmt.Errorf("kv create %s: %w", key, err)
	}
	return nil
}

// apply puts value as the bucket's entry of id, or deletes it when nil.
func (m *Mirror) apply(ctx context.Context, id string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	if value == nil {
		if err := m.KV.Delete(ctx, id); err != nil {
			return fmt.Errorf("kv delete: %w", err)
		}
		return nil
	}
	if _, err := m.KV.Put(ctx, id, value); err != nil {
		return fmt.Errorf("kv put: %w", err)
	}
	return nil
}

// snapshot returns the bucket's current entries.
func (m *Mirror) snapshot(ctx context.Context) (map[string][]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := m.KV.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("watch kv: %w", err)
	}
	defer func() { _ = w.Stop() }()
	idle := time.NewTimer(m.Timeout)
	defer idle.Stop()
	entries := map[string][]byte{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read kv: %w", ctx.Err())
		case <-idle.C:
			return nil, fmt.Errorf("read kv: no entry for %v", m.Timeout)
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil, fmt.Errorf("read kv: watcher stopped")
			case e == nil: // the initial values are all delivered
				return entries, nil
			}
			entries[e.Key()] = e.Value()
			idle.Reset(m.Timeout)
		}
	}
}
