package api

import (
	"slices"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
)

func TestRotateSecret(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	secrets := func(rs []switchboard.RetiringSecret) []string {
		var out []string
		for _, s := range rs {
			out = append(out, s.Secret)
		}
		return out
	}
	rotate := func(wh *switchboard.Webhook, secret string, grace time.Duration, at time.Time) switchboard.FieldErrors {
		fe := switchboard.FieldErrors{}
		rotateSecret(wh, secret, grace, at, fe, "grace_period")
		return fe
	}

	wh := &switchboard.Webhook{Secret: "s0"}
	if fe := rotate(wh, "s1", time.Hour, t0); len(fe) != 0 {
		t.Fatal(fe)
	}
	if wh.Secret != "s1" || !slices.Equal(secrets(wh.RetiringSecrets), []string{"s0"}) || !wh.RetiringSecrets[0].ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after one rotation: %+v", wh)
	}
	// Both sign until the grace period ends; then only the new one.
	if got := wh.SigningSecrets(t0.Add(time.Hour - time.Second)); !slices.Equal(got, []string{"s1", "s0"}) {
		t.Errorf("signing secrets during the grace period: %v", got)
	}
	if got := wh.SigningSecrets(t0.Add(time.Hour)); !slices.Equal(got, []string{"s1"}) {
		t.Errorf("signing secrets after it: %v", got)
	}

	// grace 0 retires the old secret at once.
	rotate(wh, "s2", 0, t0.Add(time.Minute))
	if wh.Secret != "s2" || !slices.Equal(secrets(wh.RetiringSecrets), []string{"s0"}) {
		t.Errorf("grace 0: %+v", wh)
	}
	// Expired ones are pruned on the next rotation, at the boundary too.
	rotate(wh, "s3", 2*time.Hour, t0.Add(time.Hour))
	if !slices.Equal(secrets(wh.RetiringSecrets), []string{"s2"}) {
		t.Errorf("s0 expired at t0+1h and was kept: %+v", wh.RetiringSecrets)
	}
	// Back to a retiring secret: it is current, no longer retiring.
	rotate(wh, "s2", time.Hour, t0.Add(time.Hour))
	if wh.Secret != "s2" || !slices.Equal(secrets(wh.RetiringSecrets), []string{"s3"}) {
		t.Errorf("back to s2: %+v", wh)
	}
	// Grace 0 with nothing left retiring leaves none (nil, not empty).
	rotate(wh, "s4", 0, t0.Add(4*time.Hour))
	if wh.RetiringSecrets != nil {
		t.Errorf("retiring %#v, want nil", wh.RetiringSecrets)
	}

	// At most MaxRetiringSecrets: the next rotation with a grace period is
	// refused and changes nothing; one with grace 0 is still allowed.
	wh = &switchboard.Webhook{Secret: "c0"}
	for i := range MaxRetiringSecrets {
		if fe := rotate(wh, string(rune('a'+i)), time.Hour, t0); len(fe) != 0 {
			t.Fatalf("rotation %d: %v", i, fe)
		}
	}
	before := slices.Clone(wh.RetiringSecrets)
	if fe := rotate(wh, "over", time.Hour, t0); len(fe["grace_period"]) == 0 || wh.Secret == "over" || !slices.Equal(wh.RetiringSecrets, before) {
		t.Errorf("over the cap: %v, %+v", fe, wh)
	}
	if fe := rotate(wh, "over", 0, t0); len(fe) != 0 || wh.Secret != "over" {
		t.Errorf("grace 0 at the cap: %v", fe)
	}
	// Once they expire, rotations with grace work again.
	if fe := rotate(wh, "later", time.Hour, t0.Add(time.Hour)); len(fe) != 0 || !slices.Equal(secrets(wh.RetiringSecrets), []string{"over"}) {
		t.Errorf("after expiry: %v, %+v", fe, wh.RetiringSecrets)
	}
}
