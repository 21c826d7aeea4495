package sealed

import (
	"fmt"

	"github.com/switchboard-hq/switchboard"
)

// The confidential fields of a webhook, sealed by SealWebhook and opened by
// OpenWebhook: its secrets, current and retiring, its outbound credentials
// and the values of its custom headers (which users fill with API keys).
// Each is bound to the webhook's id and the field.
func contexts(w *switchboard.Webhook) (secret, password, token string) {
	return w.ID + "/secret", w.ID + "/auth.password", w.ID + "/auth.token"
}

// headerContext binds a custom header's value to its webhook and name.
func headerContext(w *switchboard.Webhook, name string) string {
	return w.ID + "/headers/" + name
}

// SealWebhook seals w's confidential fields in place (see Key.Seal: a nil k
// leaves them as they are). Retiring secrets and headers are copied, not
// changed in the slice and map w shared.
func (k *Key) SealWebhook(w *switchboard.Webhook) {
	secret, password, token := contexts(w)
	w.Secret = k.Seal(w.Secret, secret)
	if len(w.RetiringSecrets) > 0 {
		rs := make([]switchboard.RetiringSecret, len(w.RetiringSecrets))
		for i, s := range w.RetiringSecrets {
			rs[i] = switchboard.RetiringSecret{Secret: k.Seal(s.Secret, secret), ExpiresAt: s.ExpiresAt}
		}
		w.RetiringSecrets = rs
	}
	w.Auth.Password = k.Seal(w.Auth.Password, password)
	w.Auth.Token = k.Seal(w.Auth.Token, token)
	if len(w.Headers) > 0 {
		hs := make(map[string]string, len(w.Headers))
		for name, v := range w.Headers {
			hs[name] = k.Seal(v, headerContext(w, name))
		}
		w.Headers = hs
	}
}

// OpenWebhook opens w's confidential fields in place; plaintext ones stay
// as they are. Errors name the field, never its value, and wrap ErrNoKey or
// ErrOpen.
func (k *Key) OpenWebhook(w *switchboard.Webhook) error {
	secret, password, token := contexts(w)
	var err error
	if w.Secret, err = k.Open(w.Secret, secret); err != nil {
		return fmt.Errorf("secret of webhook %s: %w", w.ID, err)
	}
	if len(w.RetiringSecrets) > 0 {
		rs := make([]switchboard.RetiringSecret, len(w.RetiringSecrets))
		for i, s := range w.RetiringSecrets {
			plain, err := k.Open(s.Secret, secret)
			if err != nil {
				return fmt.Errorf("retiring secret of webhook %s: %w", w.ID, err)
			}
			rs[i] = switchboard.RetiringSecret{Secret: plain, ExpiresAt: s.ExpiresAt}
		}
		w.RetiringSecrets = rs
	}
	if w.Auth.Password, err = k.Open(w.Auth.Password, password); err != nil {
		return fmt.Errorf("auth password of webhook %s: %w", w.ID, err)
	}
	if w.Auth.Token, err = k.Open(w.Auth.Token, token); err != nil {
		return fmt.Errorf("auth token of webhook %s: %w", w.ID, err)
	}
	if len(w.Headers) > 0 {
		hs := make(map[string]string, len(w.Headers))
		for name, v := range w.Headers {
			if hs[name], err = k.Open(v, headerContext(w, name)); err != nil {
				return fmt.Errorf("header %q of webhook %s: %w", name, w.ID, err)
			}
		}
		w.Headers = hs
	}
	return nil
}
