// Package signer signs and verifies webhook requests the Standard Webhooks
// way (https://www.standardwebhooks.com): an HMAC-SHA256 of
// "id.timestamp.body" under each valid secret, sent in the webhook-id,
// webhook-timestamp and webhook-signature headers, so that a receiver using
// any Standard Webhooks library can verify what Switchboard sends.
package signer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names, as the standard spells them. http.Header canonicalizes them
// (Webhook-Id, ...) and receivers read them case-insensitively.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix marks a secret whose key is the base64 text that follows.
const SecretPrefix = "whsec_"

// MinKeySize is the shortest key, in bytes, that DecodeSecret accepts.
const MinKeySize = 32

// DefaultTolerance is how far a timestamp may be from the verifier's clock,
// as the standard suggests: it bounds replays of captured requests.
const DefaultTolerance = 5 * time.Minute

// Sentinel errors. Every error this package returns wraps one of them.
var (
	// ErrInvalidSecret: a secret is empty, is not base64 after SecretPrefix,
	// or (DecodeSecret only) holds fewer than MinKeySize bytes of key.
	ErrInvalidSecret = errors.New("signer: invalid secret")
	// ErrMissingHeaders: a request lacks webhook-id, webhook-timestamp or
	// webhook-signature.
	ErrMissingHeaders = errors.New("signer: missing webhook headers")
	// ErrInvalidTimestamp: webhook-timestamp is not a decimal Unix time.
	ErrInvalidTimestamp = errors.New("signer: invalid webhook-timestamp")
	// ErrTimestampTooOld: the request was signed longer ago than allowed.
	ErrTimestampTooOld = errors.New("signer: timestamp too old")
	// ErrTimestampTooNew: the request claims to be signed in the future.
	ErrTimestampTooNew = errors.New("signer: timestamp too new")
	// ErrNoMatchingSignature: no v1 signature matches any key.
	ErrNoMatchingSignature = errors.New("signer: no matching signature")
)

// signatureVersion is the only scheme the standard defines for symmetric keys.
const signatureVersion = "v1,"

// encodedLen is the length of one base64-encoded HMAC-SHA256.
var encodedLen = base64.StdEncoding.EncodedLen(sha256.Size)

// NewSecret returns a new secret: SecretPrefix followed by the base64 of
// MinKeySize random bytes. The error, wrapped, is the system random
// source's.
func NewSecret() (string, error) {
	var key [MinKeySize]byte
	if _, err := rand.Read(key[:]); err != nil {
		return "", fmt.Errorf("signer: new secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key[:]), nil
}

// DecodeSecret returns the key of secret: the base64-decoded text after
// SecretPrefix, or, without the prefix, the secret's own bytes. It is the
// check for secrets a client submits, so it also requires at least
// MinKeySize bytes of key. Every error wraps ErrInvalidSecret and never
// contains the secret.
func DecodeSecret(secret string) ([]byte, error) {
	key, err := decodeKey(secret)
	if err != nil {
		return nil, err
	}
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("%w: the key is %d bytes, at least %d are required", ErrInvalidSecret, len(key), MinKeySize)
	}
	return key, nil
}

// decodeKey is DecodeSecret without the minimum size.
func decodeKey(secret string) ([]byte, error) {
	if secret == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidSecret)
	}
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return []byte(secret), nil
	}
	// A prefixed secret that is not base64 is a mistake, not a raw key:
	// signing with its text would give signatures nobody can verify.
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: the text after %q is not standard base64", ErrInvalidSecret, SecretPrefix)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: no key after %q", ErrInvalidSecret, SecretPrefix)
	}
	return key, nil
}

// Signer signs with, and verifies against, one or more keys. A Signer is
// safe for concurrent use.
type Signer struct {
	keys []*key
}

// key is one decoded key with a pool of HMACs keyed with it: resetting a
// used HMAC is much cheaper than hmac.New, which allocates and hashes the
// padded key again on every call.
type key struct {
	macs sync.Pool // of *macState
	// expires, when set, is when the key stops signing: a retiring secret
	// (see WithRetiring). Verify ignores it.
	expires time.Time
}

// signsAt reports whether k signs a message signed at ts.
func (k *key) signsAt(ts time.Time) bool {
	return k.expires.IsZero() || ts.Before(k.expires)
}

type macState struct {
	mac hash.Hash
	buf []byte // scratch: the signed prefix, then the HMAC and its base64
}

func newKey(raw []byte) *key {
	k := &key{}
	k.macs.New = func() any {
		return &macState{mac: hmac.New(sha256.New, raw), buf: make([]byte, 0, 192)}
	}
	return k
}

// signature returns the base64 HMAC of "msgID.ts.body", in st.buf: valid
// until st is used again.
func (st *macState) signature(msgID string, ts int64, body []byte) []byte {
	st.mac.Reset()
	st.buf = append(st.buf[:0], msgID...)
	st.buf = append(st.buf, '.')
	st.buf = strconv.AppendInt(st.buf, ts, 10)
	st.buf = append(st.buf, '.')
	st.mac.Write(st.buf)
	st.mac.Write(body)
	st.buf = st.mac.Sum(st.buf[:0])
	st.buf = base64.StdEncoding.AppendEncode(st.buf, st.buf)
	return st.buf[sha256.Size:]
}

// New returns a Signer for secrets, in the form DecodeSecret reads. Each
// signature carries one v1 signature per secret, so during a rotation old
// and new secrets both sign and a receiver holding either verifies.
//
// Unlike DecodeSecret, New accepts keys shorter than MinKeySize: the
// registry enforces the minimum on what clients submit, while secrets made
// elsewhere (the standard's own test vectors use 24-byte keys) must still
// sign and verify. Errors wrap ErrInvalidSecret: no secret, an empty one,
// or a prefixed one that is not base64.
func New(secrets ...string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secret given", ErrInvalidSecret)
	}
	s := &Signer{keys: make([]*key, len(secrets))}
	for i, secret := range secrets {
		raw, err := decodeKey(secret)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i, err)
		}
		s.keys[i] = newKey(raw)
	}
	return s, nil
}

// WithRetiring returns a Signer with s's keys and then secret's, which
// signs only before expires: a webhook's retiring secret during a rotation
// keeps signing until its expiry, so that receivers not yet updated still
// verify, and then stops without the Signer being made again. Verify
// accepts it regardless. s is not changed. Errors wrap ErrInvalidSecret.
func (s *Signer) WithRetiring(secret string, expires time.Time) (*Signer, error) {
	raw, err := decodeKey(secret)
	if err != nil {
		return nil, err
	}
	k := newKey(raw)
	k.expires = expires
	return &Signer{keys: append(slices.Clip(s.keys), k)}, nil
}

// Sign returns the webhook-signature value for a message: space-separated
// "v1,<base64 HMAC>" entries, one per key, in the order given to New
// (a key added by WithRetiring only before it expires). Only ts's whole
// seconds are signed.
func (s *Signer) Sign(msgID string, ts time.Time, body []byte) string {
	var out strings.Builder
	out.Grow(len(s.keys) * (len(signatureVersion) + encodedLen + 1))
	unix := ts.Unix()
	for _, k := range s.keys {
		if !k.signsAt(ts) {
			continue
		}
		if out.Len() > 0 {
			out.WriteByte(' ')
		}
		st := k.macs.Get().(*macState)
		out.WriteString(signatureVersion)
		out.Write(st.signature(msgID, unix, body))
		k.macs.Put(st)
	}
	return out.String()
}

// SetHeaders sets the three Standard Webhooks headers on h for a message.
func (s *Signer) SetHeaders(h http.Header, msgID string, ts time.Time, body []byte) {
	h.Set(HeaderID, msgID)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, s.Sign(msgID, ts, body))
}

// Verify checks a received request: it succeeds when its timestamp is
// within tolerance of now and any v1 signature in webhook-signature matches
// any of the Signer's keys. Signatures of other versions are ignored.
//
// Errors: ErrMissingHeaders, ErrInvalidTimestamp, ErrTimestampTooOld,
// ErrTimestampTooNew, ErrNoMatchingSignature.
func (s *Signer) Verify(h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	msgID, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if msgID == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	unix, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrInvalidTimestamp, tsText)
	}
	// Checked before any signature so that replays cost no HMAC.
	ts := time.Unix(unix, 0)
	if now.Sub(ts) > tolerance {
		return fmt.Errorf("%w: signed at %d, %v before now", ErrTimestampTooOld, unix, now.Sub(ts).Truncate(time.Second))
	}
	if ts.Sub(now) > tolerance {
		return fmt.Errorf("%w: signed at %d, %v after now", ErrTimestampTooNew, unix, ts.Sub(now).Truncate(time.Second))
	}

	for _, k := range s.keys {
		st := k.macs.Get().(*macState)
		want := st.signature(msgID, unix, body)
		matched := false
		for sig := range strings.FieldsSeq(sigs) {
			got, ok := strings.CutPrefix(sig, signatureVersion)
			if ok && hmac.Equal([]byte(got), want) {
				matched = true
				break
			}
		}
		k.macs.Put(st)
		if matched {
			return nil
		}
	}
	return ErrNoMatchingSignature
}
