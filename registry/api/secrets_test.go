package api_test

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

func TestWebhookSecret_GetAndRotate(t *testing.T) {
	var logs syncBuffer
	a := apitest.Start(t, func(s *api.Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "rotating", "url": "https://example.com/h", "events": ["*"]}`)
	path := "/v1/webhooks/" + wh.ID + "/secret"
	seen := []string{wh.Secret}

	got := apitest.Decode[apitest.SecretJSON](t, apitest.MustGet(t, a, a.Key, path))
	if got.Secret != wh.Secret || got.RetiringSecrets == nil || len(got.RetiringSecrets) != 0 {
		t.Fatalf("GET secret = %+v, want the create response's secret and no retiring ones", got)
	}

	rotate := func(body string, want int) apitest.SecretJSON {
		t.Helper()
		status, b := a.Do(t, http.MethodPost, path+"/rotate", a.Key, body)
		if status != want {
			t.Fatalf("rotate %s: %d, want %d: %s", body, status, want, b)
		}
		if status != http.StatusOK {
			return apitest.SecretJSON{}
		}
		s := apitest.Decode[apitest.SecretJSON](t, b)
		seen = append(seen, s.Secret)
		if again := apitest.Decode[apitest.SecretJSON](t, apitest.MustGet(t, a, a.Key, path)); again.Secret != s.Secret || len(again.RetiringSecrets) != len(s.RetiringSecrets) {
			t.Errorf("GET after rotate = %+v, rotate answered %+v", again, s)
		}
		return s
	}

	// No body: a generated secret, the old one retiring in 24 h.
	before := time.Now()
	r1 := rotate("", http.StatusOK)
	if !strings.HasPrefix(r1.Secret, "whsec_") || r1.Secret == wh.Secret || len(r1.RetiringSecrets) != 1 {
		t.Fatalf("rotate: %+v", r1)
	}
	if exp := r1.RetiringSecrets[0].ExpiresAt; exp.Before(before.Add(24*time.Hour-time.Second)) || exp.After(time.Now().Add(24*time.Hour)) {
		t.Errorf("expires_at %v, want 24 h from now", exp)
	}
	kv := apitest.KVWebhook(t, a.KV, wh.ID)
	if got := kv.SigningSecrets(time.Now()); !slices.Equal(got, []string{r1.Secret, wh.Secret}) {
		t.Errorf("KV signs with %d secrets, want the new and the old", len(got))
	}

	// A custom secret obeys the create rule.
	given := secretOf(32)
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"secret": "` + secretOf(31) + `"}`, 422},
		{`{"secret": "short"}`, 422},
		{`{"secret": "sealed:v1:` + strings.Repeat("k", 40) + `"}`, 422},
		{`{"secret": "` + r1.Secret + `"}`, 422}, // the current one
		{`{"grace_period": -1}`, 422},
		{`{"grace_period": 604801}`, 422},
		{`{"grace_period": "60"}`, 400},
		{`{"grace_period": 1.5}`, 400},
		{`{`, 400},
	} {
		rotate(tc.body, tc.want)
	}
	if got := apitest.Decode[apitest.SecretJSON](t, apitest.MustGet(t, a, a.Key, path)); got.Secret != r1.Secret || len(got.RetiringSecrets) != 1 {
		t.Fatalf("a refused rotation changed the secret: %+v", got)
	}

	r2 := rotate(`{"secret": "`+given+`", "grace_period": 604800}`, http.StatusOK)
	if r2.Secret != given || len(r2.RetiringSecrets) != 2 {
		t.Fatalf("rotate to a given secret for 7 days: %+v", r2)
	}
	if exp := r2.RetiringSecrets[1].ExpiresAt; exp.Before(time.Now().Add(7*24*time.Hour - 5*time.Second)) {
		t.Errorf("expires_at %v, want 7 days from now", exp)
	}
	// grace_period 0: the replaced secret stops signing at once.
	r3 := rotate(`{"grace_period": 0}`, http.StatusOK)
	if len(r3.RetiringSecrets) != 2 {
		t.Errorf("grace 0 added a retiring secret: %+v", r3)
	}
	if got := apitest.KVWebhook(t, a.KV, wh.ID).SigningSecrets(time.Now()); slices.Contains(got, given) || len(got) != 3 {
		t.Errorf("the secret replaced with grace 0 still signs (%d secrets)", len(got))
	}

	// A PATCH of the secret rotates it with the default grace period.
	patched := secretOf(40)
	if status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+wh.ID, a.Key, `{"secret": "`+patched+`"}`); status != http.StatusOK || strings.Contains(string(b), patched) {
		t.Fatalf("PATCH secret: %d %s", status, b)
	}
	seen = append(seen, patched)
	got = apitest.Decode[apitest.SecretJSON](t, apitest.MustGet(t, a, a.Key, path))
	if got.Secret != patched || len(got.RetiringSecrets) != 3 {
		t.Errorf("after PATCH: %+v", got)
	}
	if got := apitest.KVWebhook(t, a.KV, wh.ID).SigningSecrets(time.Now()); !slices.Contains(got, r3.Secret) {
		t.Error("the secret a PATCH replaced stopped signing at once")
	}

	// Secrets never appear in get, list or the logs.
	for _, p := range []string{"/v1/webhooks/" + wh.ID, "/v1/webhooks"} {
		b := string(apitest.MustGet(t, a, a.Key, p))
		for _, s := range seen {
			if strings.Contains(b, s) {
				t.Errorf("GET %s shows a secret", p)
			}
		}
	}
	if logs.String() == "" {
		t.Fatal("nothing was logged: the log check proves nothing")
	}
	for _, s := range seen {
		if strings.Contains(logs.String(), s) {
			t.Errorf("a secret is in the logs")
		}
	}
}

func TestWebhookSecret_TenantIsolation(t *testing.T) {
	a := apitest.Start(t, nil)
	otherKey := a.NewTenant(t, "other")
	theirs := a.Create(t, otherKey, "/v1/webhooks", `{"name": "Theirs", "url": "https://example.com/h", "events": ["*"]}`)
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/webhooks/" + theirs.ID + "/secret"},
		{http.MethodPost, "/v1/webhooks/" + theirs.ID + "/secret/rotate"},
		{http.MethodGet, "/v1/webhooks/wh_nope/secret"},
		{http.MethodPost, "/v1/webhooks/wh_nope/secret/rotate"},
	} {
		status, b := a.Do(t, tc.method, tc.path, a.Key, "")
		if status != http.StatusNotFound || strings.Contains(string(b), theirs.Secret) {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, status, b)
		}
	}
	if got := apitest.Decode[apitest.SecretJSON](t, apitest.MustGet(t, a, otherKey, "/v1/webhooks/"+theirs.ID+"/secret")); got.Secret != theirs.Secret || len(got.RetiringSecrets) != 0 {
		t.Errorf("another tenant's rotation went through: %+v", got)
	}
}

// Each rotation with a grace period adds a secret that signs every
// delivery: past MaxRetiringSecrets, the API says what to do instead.
func TestWebhookSecret_RetiringCap(t *testing.T) {
	a := apitest.Start(t, nil)
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "many", "url": "https://example.com/h", "events": ["*"]}`)
	path := "/v1/webhooks/" + wh.ID + "/secret/rotate"
	for i := range api.MaxRetiringSecrets {
		if status, b := a.Do(t, http.MethodPost, path, a.Key, `{"grace_period": 3600}`); status != http.StatusOK {
			t.Fatalf("rotation %d: %d %s", i, status, b)
		}
	}
	status, b := a.Do(t, http.MethodPost, path, a.Key, `{"grace_period": 3600}`)
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusUnprocessableEntity || len(e.Errors["grace_period"]) == 0 {
		t.Errorf("rotation past the cap: %d %s", status, b)
	}
	if status, b := a.Do(t, http.MethodPost, path, a.Key, `{"grace_period": 0}`); status != http.StatusOK {
		t.Errorf("rotation with grace 0 at the cap: %d %s", status, b)
	}
}
