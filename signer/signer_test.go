package signer_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard-hq/switchboard/signer"
)

// The test vector published by Standard Webhooks.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustNew(tb testing.TB, secrets ...string) *signer.Signer {
	tb.Helper()
	s, err := signer.New(secrets...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return s
}

func mustSecret(tb testing.TB) string {
	tb.Helper()
	secret, err := signer.NewSecret()
	if err != nil {
		tb.Fatalf("NewSecret: %v", err)
	}
	return secret
}

func TestNewSecret(t *testing.T) {
	t.Run("PrefixedBase64Of32Bytes", func(t *testing.T) {
		secret := mustSecret(t)
		b64, ok := strings.CutPrefix(secret, signer.SecretPrefix)
		if !ok {
			t.Fatalf("secret %q lacks prefix %q", secret, signer.SecretPrefix)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if len(key) != 32 {
			t.Fatalf("key is %d bytes, want 32", len(key))
		}
		if _, err := signer.DecodeSecret(secret); err != nil {
			t.Fatalf("DecodeSecret rejects a generated secret: %v", err)
		}
	})
	t.Run("Distinct", func(t *testing.T) {
		if a, b := mustSecret(t), mustSecret(t); a == b {
			t.Fatalf("two secrets are equal: %q", a)
		}
	})
}

func TestDecodeSecret(t *testing.T) {
	long := strings.Repeat("k", 32)
	for _, tt := range []struct {
		name      string
		secret    string
		want      []byte
		withError bool
	}{
		{name: "Prefixed", secret: signer.SecretPrefix + base64.StdEncoding.EncodeToString([]byte(long)), want: []byte(long)},
		{name: "Raw", secret: long, want: []byte(long)},
		{name: "Empty", secret: "", withError: true},
		{name: "PrefixOnly", secret: signer.SecretPrefix, withError: true},
		{name: "PrefixedNotBase64", secret: signer.SecretPrefix + "!!!!" + long, withError: true},
		{name: "PrefixedTooShort", secret: vectorSecret, withError: true},
		{name: "RawTooShort", secret: long[:31], withError: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key, err := signer.DecodeSecret(tt.secret)
			if tt.withError {
				if !errors.Is(err, signer.ErrInvalidSecret) {
					t.Fatalf("err = %v, want ErrInvalidSecret", err)
				}
				if material := strings.TrimPrefix(tt.secret, signer.SecretPrefix); material != "" && strings.Contains(err.Error(), material) {
					t.Fatalf("error %q contains the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeSecret: %v", err)
			}
			if !bytes.Equal(key, tt.want) {
				t.Fatalf("key = %q, want %q", key, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Run("ShortKeyAccepted", func(t *testing.T) {
		mustNew(t, vectorSecret)
		mustNew(t, "short")
	})
	for _, tt := range []struct {
		name    string
		secrets []string
	}{
		{name: "NoSecret"},
		{name: "Empty", secrets: []string{mustSecret(t), ""}},
		{name: "PrefixedNotBase64", secrets: []string{signer.SecretPrefix + "not base64!"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := signer.New(tt.secrets...); !errors.Is(err, signer.ErrInvalidSecret) {
				t.Fatalf("err = %v, want ErrInvalidSecret", err)
			}
		})
	}
}

func TestSigner_Sign(t *testing.T) {
	ts := time.Unix(vectorTimestamp, 0)
	t.Run("TestVector", func(t *testing.T) {
		got := mustNew(t, vectorSecret).Sign(vectorID, ts, []byte(vectorBody))
		if got != vectorSignature {
			t.Fatalf("Sign = %q, want %q", got, vectorSignature)
		}
	})
	t.Run("SubSecondIgnored", func(t *testing.T) {
		got := mustNew(t, vectorSecret).Sign(vectorID, ts.Add(999*time.Millisecond), []byte(vectorBody))
		if got != vectorSignature {
			t.Fatalf("Sign = %q, want %q", got, vectorSignature)
		}
	})
	t.Run("Repeatable", func(t *testing.T) {
		// The HMACs are pooled and reused: a stale state would change the
		// second signature.
		s := mustNew(t, vectorSecret)
		for range 3 {
			s.Sign("msg_other", ts, []byte("another body"))
			if got := s.Sign(vectorID, ts, []byte(vectorBody)); got != vectorSignature {
				t.Fatalf("Sign = %q, want %q", got, vectorSignature)
			}
		}
	})
	t.Run("OneSignaturePerKey", func(t *testing.T) {
		other := mustSecret(t)
		got := mustNew(t, vectorSecret, other).Sign(vectorID, ts, []byte(vectorBody))
		parts := strings.Split(got, " ")
		if len(parts) != 2 {
			t.Fatalf("Sign = %q, want two space-separated signatures", got)
		}
		if parts[0] != vectorSignature {
			t.Fatalf("first signature = %q, want %q", parts[0], vectorSignature)
		}
		if want := mustNew(t, other).Sign(vectorID, ts, []byte(vectorBody)); parts[1] != want {
			t.Fatalf("second signature = %q, want %q", parts[1], want)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		// Run with -race: pooled scratch shared between calls would show
		// up here as a wrong signature or a race report.
		s := mustNew(t, vectorSecret, mustSecret(t))
		want := s.Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
		errs := make(chan string, 8)
		for i := range 8 {
			go func() {
				for range 2000 {
					if i%2 == 0 {
						s.Sign("msg_noise", time.Now(), bytes.Repeat([]byte("x"), 700))
						continue
					}
					if got := s.Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody)); got != want {
						errs <- got
						return
					}
				}
				errs <- ""
			}()
		}
		for range 8 {
			if got := <-errs; got != "" {
				t.Fatalf("concurrent Sign = %q, want %q", got, want)
			}
		}
	})
	t.Run("VerifiesWithStandardWebhooksLibrary", func(t *testing.T) {
		secret := mustSecret(t)
		body := []byte(`{"type":"call.started","data":{"call_id":"c1"}}`)
		h := http.Header{}
		mustNew(t, secret).SetHeaders(h, "msg_1", time.Now(), body)

		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatalf("NewWebhook: %v", err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Fatalf("library rejects our signature: %v", err)
		}
		if err := wh.Verify(append(body, ' '), h); err == nil {
			t.Fatal("library accepts a tampered body")
		}
	})
	t.Run("RotationVerifiesWithEitherKeyInLibrary", func(t *testing.T) {
		oldSecret, newSecret := mustSecret(t), mustSecret(t)
		body := []byte(`{"n":1}`)
		h := http.Header{}
		mustNew(t, oldSecret, newSecret).SetHeaders(h, "msg_2", time.Now(), body)
		for _, secret := range []string{oldSecret, newSecret} {
			wh, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				t.Fatalf("NewWebhook: %v", err)
			}
			if err := wh.Verify(body, h); err != nil {
				t.Fatalf("library rejects the rotated signature: %v", err)
			}
		}
	})
}

func TestSigner_SetHeaders(t *testing.T) {
	h := http.Header{}
	mustNew(t, vectorSecret).SetHeaders(h, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	for name, want := range map[string]string{
		signer.HeaderID:        vectorID,
		signer.HeaderTimestamp: strconv.Itoa(vectorTimestamp),
		signer.HeaderSignature: vectorSignature,
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if len(h) != 3 {
		t.Errorf("headers = %v, want exactly three", h)
	}
}

func TestSigner_Verify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"id":"msg_1"}`)
	secret, otherSecret := mustSecret(t), mustSecret(t)

	signed := func(s *signer.Signer, at time.Time) http.Header {
		h := http.Header{}
		s.SetHeaders(h, "msg_1", at, body)
		return h
	}
	without := func(name string) http.Header {
		h := signed(mustNew(t, secret), now)
		h.Del(name)
		return h
	}
	with := func(name, value string) http.Header {
		h := signed(mustNew(t, secret), now)
		h.Set(name, value)
		return h
	}
	validSig := mustNew(t, secret).Sign("msg_1", now, body)

	for _, tt := range []struct {
		name      string
		verifier  *signer.Signer
		header    http.Header
		body      []byte
		withError error
	}{
		{name: "Valid", header: signed(mustNew(t, secret), now)},
		{name: "VerifierHasSeveralKeys", verifier: mustNew(t, otherSecret, secret), header: signed(mustNew(t, secret), now)},
		{name: "RotationOldKey", verifier: mustNew(t, secret), header: signed(mustNew(t, secret, otherSecret), now)},
		{name: "RotationNewKey", verifier: mustNew(t, otherSecret), header: signed(mustNew(t, secret, otherSecret), now)},
		{name: "WithinTolerancePast", header: signed(mustNew(t, secret), now.Add(-5*time.Minute))},
		{name: "WithinToleranceFuture", header: signed(mustNew(t, secret), now.Add(5*time.Minute))},
		{name: "OtherVersionsIgnored", header: with(signer.HeaderSignature, "v1a,AAAA v2,xyz "+validSig)},
		{name: "TamperedBody", header: signed(mustNew(t, secret), now), body: []byte(`{"id":"msg_2"}`), withError: signer.ErrNoMatchingSignature},
		{name: "WrongKey", verifier: mustNew(t, otherSecret), header: signed(mustNew(t, secret), now), withError: signer.ErrNoMatchingSignature},
		{name: "TamperedID", header: with(signer.HeaderID, "msg_2"), withError: signer.ErrNoMatchingSignature},
		{name: "SignatureWithoutVersion", header: with(signer.HeaderSignature, strings.TrimPrefix(validSig, "v1,")), withError: signer.ErrNoMatchingSignature},
		{name: "TooOld", header: signed(mustNew(t, secret), now.Add(-5*time.Minute-time.Second)), withError: signer.ErrTimestampTooOld},
		{name: "TooNew", header: signed(mustNew(t, secret), now.Add(5*time.Minute+time.Second)), withError: signer.ErrTimestampTooNew},
		{name: "BadTimestamp", header: with(signer.HeaderTimestamp, "yesterday"), withError: signer.ErrInvalidTimestamp},
		{name: "MissingID", header: without(signer.HeaderID), withError: signer.ErrMissingHeaders},
		{name: "MissingTimestamp", header: without(signer.HeaderTimestamp), withError: signer.ErrMissingHeaders},
		{name: "MissingSignature", header: without(signer.HeaderSignature), withError: signer.ErrMissingHeaders},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.verifier
			if v == nil {
				v = mustNew(t, secret)
			}
			b := body
			if tt.body != nil {
				b = tt.body
			}
			err := v.Verify(tt.header, b, signer.DefaultTolerance, now)
			if tt.withError == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.withError) {
				t.Fatalf("err = %v, want %v", err, tt.withError)
			}
		})
	}

	t.Run("TestVector", func(t *testing.T) {
		h := http.Header{}
		h.Set(signer.HeaderID, vectorID)
		h.Set(signer.HeaderTimestamp, strconv.Itoa(vectorTimestamp))
		h.Set(signer.HeaderSignature, vectorSignature)
		err := mustNew(t, vectorSecret).Verify(h, []byte(vectorBody), signer.DefaultTolerance, time.Unix(vectorTimestamp, 0))
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
	t.Run("StandardWebhooksLibrarySignature", func(t *testing.T) {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatalf("NewWebhook: %v", err)
		}
		at := time.Now()
		sig, err := wh.Sign("msg_lib", at, body)
		if err != nil {
			t.Fatalf("library Sign: %v", err)
		}
		h := http.Header{}
		h.Set(standardwebhooks.HeaderWebhookID, "msg_lib")
		h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
		h.Set(standardwebhooks.HeaderWebhookSignature, sig)
		if err := mustNew(t, secret).Verify(h, body, signer.DefaultTolerance, at); err != nil {
			t.Fatalf("Verify rejects the library's signature: %v", err)
		}
		if err := mustNew(t, otherSecret).Verify(h, body, signer.DefaultTolerance, at); !errors.Is(err, signer.ErrNoMatchingSignature) {
			t.Fatalf("Verify with another key: err = %v, want ErrNoMatchingSignature", err)
		}
	})
}

func BenchmarkSigner_Sign(b *testing.B) {
	s := mustNew(b, mustSecret(b))
	body := bytes.Repeat([]byte("a"), 512)
	ts := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		s.Sign("msg_0191d3c4a5b67c8d9e0f1a2b3c4d5e6f", ts, body)
	}
}

// TestSigner_WithRetiring: a retiring key signs until its expiry and is
// accepted by Verify after it; the Signer it was added to is unchanged.
func TestSigner_WithRetiring(t *testing.T) {
	ts := time.Unix(vectorTimestamp, 0)
	base := mustNew(t, vectorSecret)
	retiring := mustSecret(t)
	s, err := base.WithRetiring(retiring, ts.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	old := mustNew(t, retiring).Sign(vectorID, ts, []byte(vectorBody))
	if got := s.Sign(vectorID, ts, []byte(vectorBody)); got != vectorSignature+" "+old {
		t.Errorf("before expiry: %q, want the current then the retiring signature", got)
	}
	if got := s.Sign(vectorID, ts.Add(time.Second), []byte(vectorBody)); got != mustNew(t, vectorSecret).Sign(vectorID, ts.Add(time.Second), []byte(vectorBody)) {
		t.Errorf("at expiry: %q, want the current signature only", got)
	}
	if got := base.Sign(vectorID, ts, []byte(vectorBody)); got != vectorSignature {
		t.Errorf("the base Signer changed: %q", got)
	}
	h := http.Header{}
	mustNew(t, retiring).SetHeaders(h, vectorID, ts.Add(time.Hour), []byte(vectorBody))
	if err := s.Verify(h, []byte(vectorBody), time.Minute, ts.Add(time.Hour)); err != nil {
		t.Errorf("Verify refuses the retiring key after its expiry: %v", err)
	}
	if _, err := base.WithRetiring("whsec_!!!", ts); !errors.Is(err, signer.ErrInvalidSecret) {
		t.Errorf("a bad retiring secret: %v, want ErrInvalidSecret", err)
	}
}
