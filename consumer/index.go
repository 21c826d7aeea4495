package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/signer"
)

// Index is the in-memory mirror of the webhooks KV bucket that the Matcher
// and the Deliverer read on every event and delivery. Run keeps it current
// from a KV watch; a change reaches it within a moment. Reads are cheap and
// safe for concurrent use; each webhook's secret is decoded once, when its
// value arrives, never on the delivery path.
//
// An Index remembers deleted webhooks (tombstones), so that a delivery to a
// deleted webhook can be told apart from one to a webhook this process has
// not heard of yet.
type Index struct {
	// KV is the webhooks bucket (streams.OpenWebhooksKV). Required.
	KV jetstream.KeyValue
	// Logger receives watch failures and unusable values; nil discards.
	Logger *slog.Logger
	// EncryptionKey opens the secrets and credentials that the registry
	// sealed (its --encryption-key); nil reads plaintext values only, and a
	// sealed one makes its webhook unusable (deliveries dead-lettered).
	EncryptionKey *sealed.Key

	initOnce sync.Once
	ready    chan struct{} // closed once the first snapshot is loaded

	mu       sync.RWMutex
	byID     map[string]*hook   // every key seen, deleted ones included
	byTenant map[string][]*hook // usable webhooks by tenant; a slice is replaced, never changed in place
}

// hook is one webhook as the index holds it. It is never changed once
// stored: a KV update replaces it.
type hook struct {
	id       string
	webhook  *switchboard.Webhook // nil when deleted or invalid
	endpoint *signer.Endpoint     // builds its requests
	timeout  time.Duration
	deleted  bool  // a delete or purge marker was seen
	err      error // why the value is unusable; set with webhook == nil and !deleted
}

// usable reports whether deliveries can be made to h (whatever its status).
func (h *hook) usable() bool { return h.webhook != nil }

func (x *Index) init() {
	x.initOnce.Do(func() {
		x.ready = make(chan struct{})
		x.byID = map[string]*hook{}
		x.byTenant = map[string][]*hook{}
	})
}

// Ready reports whether the index has loaded the bucket's contents once.
// Until then, the Matcher and the Deliverer wait.
func (x *Index) Ready() bool {
	x.init()
	select {
	case <-x.ready:
		return true
	default:
		return false
	}
}

// waitReady blocks until the index is ready or ctx is done.
func (x *Index) waitReady(ctx context.Context) error {
	x.init()
	select {
	case <-x.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run watches the bucket and keeps the index current until ctx is done,
// then returns nil. When the watch fails or ends (the connection closed, the
// stream was lost), Run watches again after a short pause and reconciles
// the index with the bucket's contents; meanwhile reads see the last known
// state. It returns an error only when KV is nil.
func (x *Index) Run(ctx context.Context) error {
	x.init()
	if x.KV == nil {
		return errors.New("consumer: Index.KV is nil")
	}
	log := loggerOr(x.Logger)
	pause := newRestartBackOff()
	for {
		err := x.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := pause.NextBackOff()
		log.Warn("webhook watch ended; watching again", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

var errWatchClosed = errors.New("watch closed")

// watch runs one KV watch: the bucket's current values, then a nil entry,
// then live changes. The initial values are collected and swapped in at
// once, so a re-watch never shows a half-loaded index.
func (x *Index) watch(ctx context.Context) error {
	w, err := x.KV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch kv %s: %w", streams.WebhooksBucket, err)
	}
	defer w.Stop()
	snapshot := map[string]*hook{}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch kv %s: %w", streams.WebhooksBucket, errWatchClosed)
			}
			if e == nil { // the initial values are all in
				x.replace(snapshot)
				snapshot = nil
				continue
			}
			h := x.decode(e)
			if snapshot != nil {
				snapshot[h.id] = h
			} else {
				x.put(h)
			}
		}
	}
}

// decode turns a KV entry into a hook; a value that cannot be used is kept
// as an invalid hook, so that its deliveries are dead-lettered rather than
// lost.
func (x *Index) decode(e jetstream.KeyValueEntry) *hook {
	id := e.Key()
	if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
		return &hook{id: id, deleted: true}
	}
	h, err := newHook(id, e.Value(), x.EncryptionKey)
	if err != nil {
		loggerOr(x.Logger).Error("unusable webhook in kv; its deliveries will be dead-lettered",
			"webhook_id", id, "revision", e.Revision(), "err", err)
		return &hook{id: id, err: err}
	}
	return h
}

// newHook decodes a KV value, opening its sealed fields with key.
func newHook(id string, value []byte, key *sealed.Key) (*hook, error) {
	var w switchboard.Webhook
	if err := json.Unmarshal(value, &w); err != nil {
		return nil, fmt.Errorf("decode webhook: %w", err)
	}
	if w.ID != id {
		return nil, fmt.Errorf("webhook id %q does not match its key", w.ID)
	}
	if err := key.OpenWebhook(&w); err != nil {
		return nil, fmt.Errorf("open webhook: %w", err)
	}
	e, err := signer.NewEndpoint(&w)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %w", id, err)
	}
	return &hook{id: id, webhook: &w, endpoint: e, timeout: w.Timeout()}, nil
}

// replace swaps in a full snapshot. Keys known before but absent from it
// were removed from the bucket meanwhile and become tombstones.
func (x *Index) replace(snapshot map[string]*hook) {
	byTenant := map[string][]*hook{}
	for _, h := range snapshot {
		if h.usable() {
			byTenant[h.webhook.TenantID] = append(byTenant[h.webhook.TenantID], h)
		}
	}
	x.mu.Lock()
	for id := range x.byID {
		if _, ok := snapshot[id]; !ok {
			snapshot[id] = &hook{id: id, deleted: true}
		}
	}
	x.byID, x.byTenant = snapshot, byTenant
	x.mu.Unlock()
	select {
	case <-x.ready:
	default:
		close(x.ready)
	}
}

// put stores one live change. The tenant slices it touches are copied, so
// that a Match running concurrently keeps a consistent view.
func (x *Index) put(h *hook) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old := x.byID[h.id]; old != nil && old.usable() {
		t := old.webhook.TenantID
		list := slices.DeleteFunc(slices.Clone(x.byTenant[t]), func(o *hook) bool { return o.id == h.id })
		if len(list) == 0 {
			delete(x.byTenant, t)
		} else {
			x.byTenant[t] = list
		}
	}
	x.byID[h.id] = h
	if h.usable() {
		t := h.webhook.TenantID
		list := x.byTenant[t]
		x.byTenant[t] = append(list[:len(list):len(list)], h) // forces a copy
	}
}

// lookup returns the webhook with id: ok is false when the index has never
// seen the id; otherwise h may be deleted (h.deleted), invalid (h.err) or
// usable.
func (x *Index) lookup(id string) (h *hook, ok bool) {
	x.init() // Has may be called before Run has made the maps
	x.mu.RLock()
	h, ok = x.byID[id]
	x.mu.RUnlock()
	return h, ok
}

// Has reports whether the index holds a usable webhook id, so that a
// caller who has just created one can wait until this worker matches it.
func (x *Index) Has(id string) bool {
	h, ok := x.lookup(id)
	return ok && h.usable()
}

// match appends to dst the webhooks evt must be delivered to: same tenant,
// active, scoped to evt's agent or to none, with a pattern matching its type.
func (x *Index) match(evt *switchboard.Event, dst []*hook) []*hook {
	x.mu.RLock()
	hooks := x.byTenant[evt.TenantID]
	x.mu.RUnlock()
	for _, h := range hooks {
		if h.webhook.Matches(evt) {
			dst = append(dst, h)
		}
	}
	return dst
}

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discardLogger
	}
	return l
}

var discardLogger = slog.New(slog.DiscardHandler)
