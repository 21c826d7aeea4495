package api

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/store"
	"github.com/switchboard-hq/switchboard/signer"
)

// Rotation of a webhook's signing secret. The secret it replaces keeps
// signing (switchboard.Webhook.SigningSecrets) for a grace period, so that
// receivers can switch to the new one without rejecting a delivery.
const (
	DefaultGracePeriod = 24 * time.Hour
	MaxGracePeriod     = 7 * 24 * time.Hour
	// MaxRetiringSecrets bounds the secrets retiring at once: each signs
	// every delivery.
	MaxRetiringSecrets = 10
)

// secretBody is the answer of the secret routes. Retiring secrets are not
// shown, only when they stop signing.
type secretBody struct {
	Secret          string               `json:"secret"`
	RetiringSecrets []retiringSecretBody `json:"retiring_secrets"`
}

type retiringSecretBody struct {
	ExpiresAt time.Time `json:"expires_at"`
}

func newSecretBody(wh *store.Webhook, at time.Time) secretBody {
	b := secretBody{Secret: wh.Secret, RetiringSecrets: []retiringSecretBody{}}
	for _, s := range wh.RetiringSecrets {
		if at.Before(s.ExpiresAt) {
			b.RetiringSecrets = append(b.RetiringSecrets, retiringSecretBody{ExpiresAt: s.ExpiresAt.UTC()})
		}
	}
	return b
}

// rotateInput is the body of POST /v1/webhooks/{id}/secret/rotate.
type rotateInput struct {
	Secret      *string `json:"secret"`       // generated when left out
	GracePeriod *int    `json:"grace_period"` // seconds; DefaultGracePeriod when left out
}

// getSecret serves GET /v1/webhooks/{id}/secret.
func (a *webhookAPI) getSecret(w http.ResponseWriter, r *http.Request) {
	wh, err := a.store.FindWebhookByID(r.Context(), r.PathValue("id"))
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, newSecretBody(wh, store.Now()))
}

// rotate serves POST /v1/webhooks/{id}/secret/rotate: the secret given, or
// a new one, becomes the webhook's; the old one signs for grace_period
// seconds more (0: stops at once). The body may be left out.
func (a *webhookAPI) rotate(w http.ResponseWriter, r *http.Request) {
	var in rotateInput
	if r.ContentLength != 0 {
		if err := httpjson.Decode(r, &in); err != nil {
			httpjson.Error(w, r, a.logger, err)
			return
		}
	}
	fe := switchboard.FieldErrors{}
	grace := DefaultGracePeriod
	if in.GracePeriod != nil {
		if g := *in.GracePeriod; g < 0 || g > int(MaxGracePeriod/time.Second) {
			fe.Add("grace_period", fmt.Sprintf("must be between 0 and %d seconds (7 days)", int(MaxGracePeriod/time.Second)))
		} else {
			grace = time.Duration(g) * time.Second
		}
	}
	var secret string
	if in.Secret != nil {
		if checkSecret(fe, "secret", *in.Secret) {
			secret = *in.Secret
		}
	} else {
		var err error
		if secret, err = signer.NewSecret(); err != nil {
			httpjson.Error(w, r, a.logger, fmt.Errorf("rotate secret: %w", err))
			return
		}
	}
	if err := fe.Err(); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	at := store.Now()
	wh, err := a.store.UpdateWebhook(r.Context(), r.PathValue("id"), func(wh *store.Webhook) error {
		fe := switchboard.FieldErrors{}
		if secret == wh.Secret {
			fe.Add("secret", "is the current secret: give another, or leave it out for a new one")
		} else {
			rotateSecret(&wh.Webhook, secret, grace, at, fe, "grace_period")
		}
		return fe.Err()
	})
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	a.flush(r, wh.ID)
	httpjson.Write(w, http.StatusOK, newSecretBody(wh, at))
}

// rotateSecret makes secret wh's signing secret at time at. The one it
// replaces retires: it keeps signing until at+grace, or stops at once when
// grace is 0. Retiring secrets that have expired are pruned; a retiring
// secret made current again is no longer retiring. When more than
// MaxRetiringSecrets would be retiring, nothing changes and the failure is
// recorded under graceField.
func rotateSecret(wh *switchboard.Webhook, secret string, grace time.Duration, at time.Time, fe switchboard.FieldErrors, graceField string) {
	retiring := slices.DeleteFunc(slices.Clone(wh.RetiringSecrets), func(s switchboard.RetiringSecret) bool {
		return !at.Before(s.ExpiresAt) || s.Secret == secret
	})
	if grace > 0 && wh.Secret != "" {
		retiring = append(retiring, switchboard.RetiringSecret{Secret: wh.Secret, ExpiresAt: at.Add(grace)})
	}
	if len(retiring) > MaxRetiringSecrets {
		fe.Add(graceField, fmt.Sprintf("would leave %d secrets retiring, more than %d: rotate with grace_period 0, or once one has expired (%s)",
			len(retiring), MaxRetiringSecrets, earliestExpiry(wh.RetiringSecrets).Format(time.RFC3339)))
		return
	}
	if len(retiring) == 0 {
		retiring = nil
	}
	wh.Secret, wh.RetiringSecrets = secret, retiring
}

// earliestExpiry returns the first time one of secrets expires.
func earliestExpiry(secrets []switchboard.RetiringSecret) time.Time {
	var first time.Time
	for _, s := range secrets {
		if first.IsZero() || s.ExpiresAt.Before(first) {
			first = s.ExpiresAt
		}
	}
	return first.UTC()
}
