package consumer

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/outbound"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

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
	e, err := outbound.NewEndpoint(&w)
	if err != nil {
		return &hook{id: id, webhook: &stored, err: fmt.Errorf("webhook %s: %w", id, err)}
	}
	return &hook{id: id, webhook: &w, endpoint: e, timeout: w.Timeout(), opened: wasSealed}
}
