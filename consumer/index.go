package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/outbound"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/streams"
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
	// sealed (its --encryption-key); nil reads plaintext values only. When
	// it cannot open what the registry sealed, Run fails (ErrEncryptionKey)
	// and the index never becomes ready; a single value it cannot open makes
	// its webhook unusable (matched, its deliveries dead-lettered).
	EncryptionKey *sealed.Key
	// Metrics, when set, shows the unusable webhooks
	// (switchboard_webhooks_unusable).
	Metrics *Metrics

	initOnce sync.Once
	ready    chan struct{} // closed once the first snapshot is loaded
	failed   atomic.Bool   // Run stopped on ErrEncryptionKey

	mu       sync.RWMutex
	byID     map[string]*hook   // every key seen, deleted ones included
	byTenant map[string][]*hook // matchable webhooks by tenant; a slice is replaced, never changed in place
	unusable int                // hooks in byID with err set

	// The KV revision (stream sequence of the bucket) that the maps
	// reflect, and revCh, closed and replaced whenever it advances.
	revMu sync.Mutex
	rev   uint64
	revCh chan struct{}

	// The bucket's last revision as last read, and when the server read it
	// (see awaitCurrent).
	probeMu   sync.Mutex
	probedRev uint64
	probedAt  time.Time
}

// ErrEncryptionKey is returned by Index.Run when the registry sealed the
// webhooks' secrets under an encryption key the index does not have (none
// configured, or another one).
var ErrEncryptionKey = errors.New("consumer: cannot open the webhooks the registry sealed")

// hook is one webhook as the index holds it. It is never changed once
// stored: a KV update replaces it.
type hook struct {
	id string
	// webhook is nil when deleted or undecodable. With err set it is the
	// value as decoded (sealed fields unopened): enough to match events,
	// so that their deliveries are dead-lettered rather than never made.
	webhook  *switchboard.Webhook
	endpoint *outbound.Endpoint // builds its requests; nil with err
	timeout  time.Duration
	deleted  bool  // a delete or purge marker was seen
	err      error // why the value is unusable; set with !deleted
	opened   bool  // a sealed field was opened: the key is right
}

// usable reports whether deliveries can be made to h (whatever its status).
func (h *hook) usable() bool { return h.webhook != nil && h.err == nil }

// matchable reports whether h takes part in matching: usable, or decoded
// but unusable (its deliveries are then dead-lettered as webhook_invalid).
func (h *hook) matchable() bool { return h.webhook != nil }

func (x *Index) init() {
	x.initOnce.Do(func() {
		x.ready = make(chan struct{})
		x.byID = map[string]*hook{}
		x.byTenant = map[string][]*hook{}
		x.revCh = make(chan struct{})
	})
}

// Ready reports whether the index has loaded the bucket's contents once
// and can open what the registry sealed. Until then, the Matcher and the
// Deliverer wait.
func (x *Index) Ready() bool {
	x.init()
	if x.failed.Load() {
		return false
	}
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
// state. It returns an error when KV is nil, and one wrapping
// ErrEncryptionKey, leaving the index not ready, when the registry's key
// check (streams.KeyCheckKey) or, without one, the sealed values show that
// EncryptionKey is missing or another key: a worker that cannot open the
// secrets must not take events it would fail to deliver.
func (x *Index) Run(ctx context.Context) error {
	x.init()
	if x.KV == nil {
		return errors.New("consumer: Index.KV is nil")
	}
	log := loggerOr(x.Logger)
	pause := streams.NewRestartBackOff()
	for {
		err := x.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrEncryptionKey) {
			x.failed.Store(true)
			log.Error("webhook index stopped", "err", err)
			return err
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
	// The snapshot holds at least every revision up to the bucket's last
	// one now, even when that entry was removed since (a purge).
	base, err := x.lastRevision(ctx)
	if err != nil {
		return err
	}
	w, err := x.KV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch kv %s: %w", streams.WebhooksBucket, err)
	}
	defer w.Stop()
	snapshot := map[string]*hook{}
	var check []byte // the key check's value in the snapshot
	rev := base
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch kv %s: %w", streams.WebhooksBucket, errWatchClosed)
			}
			if e == nil { // the initial values are all in
				if err := x.checkKey(check, snapshot); err != nil {
					return err
				}
				x.replace(snapshot, rev)
				snapshot = nil
				continue
			}
			if snapshot != nil {
				rev = max(rev, e.Revision())
			}
			if streams.IsReservedKey(e.Key()) {
				if e.Key() == streams.KeyCheckKey && e.Operation() == jetstream.KeyValuePut {
					if snapshot != nil {
						check = e.Value()
					} else if err := x.checkKey(e.Value(), nil); err != nil {
						return err
					}
				}
				if snapshot == nil {
					x.advance(e.Revision())
				}
				continue
			}
			h := x.decode(e)
			if snapshot != nil {
				snapshot[h.id] = h
			} else {
				x.put(h, e.Revision())
			}
		}
	}
}

// lastRevision returns the bucket's last revision (its stream's last
// sequence).
func (x *Index) lastRevision(ctx context.Context) (uint64, error) {
	st, err := x.KV.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("status of kv %s: %w", streams.WebhooksBucket, err)
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		return bs.StreamInfo().State.LastSeq, nil
	}
	return 0, nil
}

// replace swaps in a full snapshot, which reflects the bucket up to
// revision rev. Keys known before but absent from it were removed from the
// bucket meanwhile and become tombstones.
func (x *Index) replace(snapshot map[string]*hook, rev uint64) {
	byTenant := map[string][]*hook{}
	unusable := 0
	for _, h := range snapshot {
		if h.matchable() {
			byTenant[h.webhook.TenantID] = append(byTenant[h.webhook.TenantID], h)
		}
		if h.err != nil {
			unusable++
		}
	}
	x.mu.Lock()
	for id := range x.byID {
		if _, ok := snapshot[id]; !ok {
			snapshot[id] = &hook{id: id, deleted: true}
		}
	}
	x.byID, x.byTenant, x.unusable = snapshot, byTenant, unusable
	x.mu.Unlock()
	x.showUnusable(unusable)
	// Set, not raised: a bucket created again starts its revisions over.
	x.setRevision(rev, true)
	select {
	case <-x.ready:
	default:
		close(x.ready)
	}
}

// put stores one live change, of revision rev. The tenant slices it
// touches are copied, so that a Match running concurrently keeps a
// consistent view.
func (x *Index) put(h *hook, rev uint64) {
	x.mu.Lock()
	old := x.byID[h.id]
	if old != nil && old.matchable() {
		t := old.webhook.TenantID
		list := slices.DeleteFunc(slices.Clone(x.byTenant[t]), func(o *hook) bool { return o.id == h.id })
		if len(list) == 0 {
			delete(x.byTenant, t)
		} else {
			x.byTenant[t] = list
		}
	}
	if old != nil && old.err != nil {
		x.unusable--
	}
	if h.err != nil {
		x.unusable++
	}
	x.byID[h.id] = h
	if h.matchable() {
		t := h.webhook.TenantID
		list := x.byTenant[t]
		x.byTenant[t] = append(list[:len(list):len(list)], h) // forces a copy
	}
	unusable := x.unusable
	x.mu.Unlock()
	x.showUnusable(unusable)
	x.advance(rev)
}

func (x *Index) showUnusable(n int) {
	if x.Metrics != nil {
		x.Metrics.unusableWebhooks.Set(float64(n))
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

// Has reports whether the index holds a usable webhook id.
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
