package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
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
	endpoint *signer.Endpoint // builds its requests; nil with err
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

// checkKey returns an error wrapping ErrEncryptionKey when EncryptionKey
// cannot open what the registry sealed: the registry's key check, when it
// wrote one (check), else the snapshot's sealed values (a registry of an
// earlier version writes no check): refused when one needs a key and there
// is none, or none of them opens with the key there is.
func (x *Index) checkKey(check []byte, snapshot map[string]*hook) error {
	const (
		none  = "the registry sealed the webhooks' secrets with an encryption key and this worker has none: start it with the registry's --encryption-key (SWITCHBOARD_ENCRYPTION_KEY)"
		other = "this worker's --encryption-key is not the one the registry sealed the webhooks' secrets with: give it the registry's key"
	)
	if check != nil {
		plain, err := x.EncryptionKey.Open(string(check), streams.KeyCheckKey)
		switch {
		case errors.Is(err, sealed.ErrNoKey):
			return fmt.Errorf("%w: %s", ErrEncryptionKey, none)
		case err != nil || plain != streams.KeyCheckPlaintext:
			return fmt.Errorf("%w: %s", ErrEncryptionKey, other)
		}
		return nil
	}
	var noKey, wrongKey, opened int
	for _, h := range snapshot {
		switch {
		case errors.Is(h.err, sealed.ErrNoKey):
			noKey++
		case errors.Is(h.err, sealed.ErrOpen):
			wrongKey++
		case h.opened:
			opened++
		}
	}
	switch {
	case noKey > 0:
		return fmt.Errorf("%w: %s (%d webhooks sealed)", ErrEncryptionKey, none, noKey)
	case wrongKey > 0 && opened == 0:
		return fmt.Errorf("%w: %s (%d webhooks do not open)", ErrEncryptionKey, other, wrongKey)
	}
	return nil
}

// decode turns a KV entry into a hook; a value that cannot be used is kept
// as an unusable hook, matched when its tenant and patterns could be read,
// so that its deliveries are dead-lettered (webhook_invalid) rather than
// never made.
func (x *Index) decode(e jetstream.KeyValueEntry) *hook {
	id := e.Key()
	if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
		return &hook{id: id, deleted: true}
	}
	h := newHook(id, e.Value(), x.EncryptionKey)
	if h.err != nil {
		tenant := ""
		if h.webhook != nil {
			tenant = h.webhook.TenantID
		}
		loggerOr(x.Logger).Error("unusable webhook in kv; its deliveries will be dead-lettered as webhook_invalid",
			"webhook_id", id, "tenant", tenant, "revision", e.Revision(), "err", h.err)
	}
	return h
}

// newHook decodes a KV value, opening its sealed fields with key. A value
// that cannot be used gives a hook with err set, and with webhook set when
// the value decoded (for matching).
func newHook(id string, value []byte, key *sealed.Key) *hook {
	var w switchboard.Webhook
	if err := json.Unmarshal(value, &w); err != nil {
		return &hook{id: id, err: fmt.Errorf("decode webhook: %w", err)}
	}
	if w.ID != id {
		return &hook{id: id, err: fmt.Errorf("webhook id %q does not match its key", w.ID)}
	}
	stored := w
	wasSealed := sealed.IsSealed(w.Secret) || sealed.IsSealed(w.Auth.Password) || sealed.IsSealed(w.Auth.Token)
	if err := key.OpenWebhook(&w); err != nil {
		return &hook{id: id, webhook: &stored, err: fmt.Errorf("open webhook: %w", err)}
	}
	e, err := signer.NewEndpoint(&w)
	if err != nil {
		return &hook{id: id, webhook: &stored, err: fmt.Errorf("webhook %s: %w", id, err)}
	}
	return &hook{id: id, webhook: &w, endpoint: e, timeout: w.Timeout(), opened: wasSealed}
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

// advance records that the index reflects the bucket up to rev.
func (x *Index) advance(rev uint64) { x.setRevision(rev, false) }

func (x *Index) setRevision(rev uint64, reset bool) {
	x.revMu.Lock()
	defer x.revMu.Unlock()
	if rev == x.rev || !reset && rev < x.rev {
		return
	}
	x.rev = rev
	close(x.revCh)
	x.revCh = make(chan struct{})
}

// awaitCurrent returns once the index holds every change made to the bucket
// before stored, an event's time in SB_EVENTS, so that the event is matched
// against every webhook whose create or update returned before it was
// published, on every worker, even while the watch is down or behind. It
// reads the bucket's last revision from the server (one request) only when
// the last reading was taken before stored: under load one reading serves
// every event stored before it. The reading and stored are both server
// times: on a cluster, the nodes' clocks must agree to within the time
// between a webhook's change returning and an event being published after
// it. It returns only ctx's error; a failed reading is logged and tried
// again.
func (x *Index) awaitCurrent(ctx context.Context, nc *nats.Conn, stored time.Time) error {
	x.init()
	x.probeMu.Lock()
	if stored.IsZero() || !stored.Before(x.probedAt) {
		pause := streams.NewRestartBackOff()
		for {
			rev, at, err := probeBucket(ctx, nc)
			if err == nil {
				x.probedRev, x.probedAt = rev, at
				break
			}
			if ctx.Err() != nil {
				x.probeMu.Unlock()
				return ctx.Err()
			}
			wait := pause.NextBackOff()
			loggerOr(x.Logger).Warn("cannot read the webhooks bucket's revision; matching waits", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				x.probeMu.Unlock()
				return ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	target := x.probedRev
	x.probeMu.Unlock()
	return x.waitRevision(ctx, target)
}

// indexLagWarning is how long matching waits for the index before saying so.
const indexLagWarning = 5 * time.Second

// waitRevision blocks until the index reflects revision rev or ctx is done.
func (x *Index) waitRevision(ctx context.Context, rev uint64) error {
	var warn <-chan time.Time
	for {
		x.revMu.Lock()
		have, ch := x.rev, x.revCh
		x.revMu.Unlock()
		if have >= rev {
			return nil
		}
		if warn == nil {
			t := time.NewTimer(indexLagWarning)
			defer t.Stop()
			warn = t.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-warn:
			loggerOr(x.Logger).Warn("matching waits for the webhook index to catch up with the KV bucket (watch down or behind)",
				"index_revision", have, "bucket_revision", rev)
		}
	}
}

// probeBucket reads the webhooks bucket's last revision and the server's
// time of the reading. The time is in the stream info the server sends
// ("ts"), which jetstream.StreamInfo does not decode.
func probeBucket(ctx context.Context, nc *nats.Conn) (rev uint64, at time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO.KV_"+streams.WebhooksBucket, nil)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("stream info of kv %s: %w", streams.WebhooksBucket, err)
	}
	var info struct {
		State struct {
			LastSeq uint64 `json:"last_seq"`
		} `json:"state"`
		TimeStamp time.Time `json:"ts"`
		Error     *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	switch err := json.Unmarshal(resp.Data, &info); {
	case err != nil:
		return 0, time.Time{}, fmt.Errorf("stream info of kv %s: %w", streams.WebhooksBucket, err)
	case info.Error != nil:
		return 0, time.Time{}, fmt.Errorf("stream info of kv %s: %s", streams.WebhooksBucket, info.Error.Description)
	case info.TimeStamp.IsZero():
		return 0, time.Time{}, fmt.Errorf("stream info of kv %s: the server gives no time (nats-server 2.10 or later needed)", streams.WebhooksBucket)
	}
	return info.State.LastSeq, info.TimeStamp, nil
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
