package sealed_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
)

func mustKey(t *testing.T, b byte) *sealed.Key {
	t.Helper()
	k, err := sealed.ParseKey(base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(b), sealed.KeySize))))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		ok        bool
	}{
		{"32 bytes", base64.StdEncoding.EncodeToString(make([]byte, 32)), true},
		{"32 bytes with a newline", base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n", true},
		{"31 bytes", base64.StdEncoding.EncodeToString(make([]byte, 31)), false},
		{"33 bytes", base64.StdEncoding.EncodeToString(make([]byte, 33)), false},
		{"16 bytes", base64.StdEncoding.EncodeToString(make([]byte, 16)), false},
		{"not base64", strings.Repeat("!", 44), false},
		{"raw 32 characters", strings.Repeat("k", 32), false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := sealed.ParseKey(tc.key)
			if tc.ok != (err == nil) || tc.ok != (k != nil) {
				t.Fatalf("ParseKey = %v, %v; want ok %v", k, err, tc.ok)
			}
			if err != nil && !errors.Is(err, sealed.ErrInvalidKey) {
				t.Errorf("error %v does not wrap ErrInvalidKey", err)
			}
		})
	}
}

func TestKey_SealOpen(t *testing.T) {
	k := mustKey(t, 1)
	const plain = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	v := k.Seal(plain, "wh_1/secret")
	if !sealed.IsSealed(v) || strings.Contains(v, plain) {
		t.Fatalf("sealed value %q", v)
	}
	if again := k.Seal(plain, "wh_1/secret"); again == v {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
	if k.Seal(v, "wh_1/secret") != v {
		t.Error("sealing a sealed value sealed it twice")
	}
	if got, err := k.Open(v, "wh_1/secret"); err != nil || got != plain {
		t.Errorf("Open = %q, %v", got, err)
	}
	for name, open := range map[string]func() (string, error){
		"another context": func() (string, error) { return k.Open(v, "wh_2/secret") },
		"another key":     func() (string, error) { return mustKey(t, 2).Open(v, "wh_1/secret") },
		"truncated":       func() (string, error) { return k.Open(v[:len(v)-4], "wh_1/secret") },
		"not base64":      func() (string, error) { return k.Open(sealed.Prefix+"!!", "wh_1/secret") },
		"too short":       func() (string, error) { return k.Open(sealed.Prefix+"AAAA", "wh_1/secret") },
	} {
		if got, err := open(); !errors.Is(err, sealed.ErrOpen) || got != "" {
			t.Errorf("%s: Open = %q, %v; want ErrOpen", name, got, err)
		}
	}
	var none *sealed.Key
	if _, err := none.Open(v, "wh_1/secret"); !errors.Is(err, sealed.ErrNoKey) {
		t.Errorf("Open without a key: %v, want ErrNoKey", err)
	}
	// Plaintexts, stored before a key was configured, read as they are,
	// with a key or without.
	for _, key := range []*sealed.Key{k, none} {
		if got, err := key.Open(plain, "wh_1/secret"); err != nil || got != plain {
			t.Errorf("Open(plaintext) = %q, %v", got, err)
		}
	}
	if none.Seal(plain, "wh_1/secret") != plain || k.Seal("", "x") != "" {
		t.Error("a nil key or an empty value was sealed")
	}
}

func TestKey_Webhook(t *testing.T) {
	k := mustKey(t, 3)
	exp := time.Now().Add(time.Hour)
	orig := switchboard.Webhook{
		ID: "wh_1", Secret: "whsec_current", RetiringSecrets: []switchboard.RetiringSecret{{Secret: "whsec_old", ExpiresAt: exp}},
		Auth: switchboard.Auth{Type: switchboard.AuthBasic, Username: "user", Password: "pass"},
	}
	w := orig
	w.RetiringSecrets = append([]switchboard.RetiringSecret(nil), orig.RetiringSecrets...)
	k.SealWebhook(&w)
	if orig.RetiringSecrets[0].Secret != "whsec_old" {
		t.Error("SealWebhook changed the caller's retiring secrets in place")
	}
	for _, v := range []string{w.Secret, w.RetiringSecrets[0].Secret, w.Auth.Password} {
		if !sealed.IsSealed(v) {
			t.Errorf("%q is not sealed", v)
		}
	}
	if w.Auth.Username != "user" || w.Auth.Token != "" {
		t.Errorf("auth %+v: the username is not confidential and an empty token stays empty", w.Auth)
	}
	if err := k.OpenWebhook(&w); err != nil {
		t.Fatal(err)
	}
	if w.Secret != orig.Secret || w.RetiringSecrets[0] != orig.RetiringSecrets[0] || w.Auth != orig.Auth {
		t.Errorf("opened %+v, want %+v", w, orig)
	}

	// A sealed token moved into another webhook does not open there.
	other := switchboard.Webhook{ID: "wh_2", Secret: "s", Auth: switchboard.Auth{Token: "t"}}
	k.SealWebhook(&other)
	moved := switchboard.Webhook{ID: "wh_1", Secret: other.Secret}
	if err := k.OpenWebhook(&moved); !errors.Is(err, sealed.ErrOpen) {
		t.Errorf("moved secret: %v, want ErrOpen", err)
	}
}
