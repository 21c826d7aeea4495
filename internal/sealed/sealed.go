// Package sealed encrypts webhook secrets and outbound credentials at rest
// (AES-256-GCM), for the registry, which stores them, and the workers, which
// read them from the KV bucket.
//
// A sealed value is text: Prefix followed by the base64 of a random nonce
// and the ciphertext. Values without Prefix are plaintext stored before an
// encryption key was configured, and read as they are, so that turning
// encryption on needs no migration.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Prefix marks a sealed value. The registry refuses client values that start
// with it (see IsSealed), so that a plaintext is never mistaken for one.
const Prefix = "sealed:v1:"

// KeySize is the size of an encryption key in bytes (AES-256).
const KeySize = 32

// Sentinel errors. Every error this package returns wraps one of them and
// never contains a plaintext or a key.
var (
	// ErrInvalidKey: an encryption key is not the standard base64 of
	// KeySize bytes.
	ErrInvalidKey = errors.New("sealed: invalid encryption key")
	// ErrNoKey: a sealed value was read without an encryption key.
	ErrNoKey = errors.New("sealed: value is encrypted and no encryption key is configured")
	// ErrOpen: a sealed value is corrupt, was sealed under another key, or
	// was moved to another context (see Key.Seal).
	ErrOpen = errors.New("sealed: cannot decrypt value (wrong encryption key or corrupt value)")
)

// Key seals and opens values. A nil *Key is valid and means "no
// encryption": Seal returns plaintexts as they are and Open refuses sealed
// values with ErrNoKey.
type Key struct {
	aead cipher.AEAD
	// previous, when set, opens what Seal sealed under the key this one
	// replaces (WithPrevious): a rotation.
	previous *Key
}

// WithPrevious returns k that also opens values sealed under previous, for
// the time of a rotation: it seals under k alone. A nil previous returns k.
func (k *Key) WithPrevious(previous *Key) *Key {
	if k == nil || previous == nil {
		return k
	}
	return &Key{aead: k.aead, previous: previous.Current()}
}

// Current returns k without its previous key: what opens only the values
// sealed under k itself.
func (k *Key) Current() *Key {
	if k == nil || k.previous == nil {
		return k
	}
	return &Key{aead: k.aead}
}

// ParseKey returns the key that s encodes: the standard base64 (padded, as
// `openssl rand -base64 32` prints it) of KeySize random bytes. Surrounding
// white space is ignored. It returns an error wrapping ErrInvalidKey
// otherwise.
func ParseKey(s string) (*Key, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: not standard base64 (create one with `openssl rand -base64 32`)", ErrInvalidKey)
	}
	if len(raw) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d (create one with `openssl rand -base64 32`)", ErrInvalidKey, len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return &Key{aead: aead}, nil
}

// IsSealed reports whether v is a sealed value.
func IsSealed(v string) bool { return strings.HasPrefix(v, Prefix) }

// Seal returns plaintext sealed under k, bound to context (e.g. the webhook
// id and field name): opening it under another context fails, so a sealed
// value copied into another webhook's row is useless there. The empty
// string, values already sealed and, with a nil k, every value are returned
// as they are.
func (k *Key) Seal(plaintext, context string) string {
	if k == nil || plaintext == "" || IsSealed(plaintext) {
		return plaintext
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	_, _ = rand.Read(nonce) // never fails (crypto/rand, Go >= 1.24)
	out := k.aead.Seal(nonce, nonce, []byte(plaintext), []byte(context))
	return Prefix + base64.RawStdEncoding.EncodeToString(out)
}

// Open returns the plaintext of v, which Seal sealed under context; a value
// without Prefix is a plaintext and is returned as it is. It returns an
// error wrapping ErrNoKey when v is sealed and k is nil, and ErrOpen when v
// cannot be decrypted.
func (k *Key) Open(v, context string) (string, error) {
	enc, ok := strings.CutPrefix(v, Prefix)
	if !ok {
		return v, nil
	}
	if k == nil {
		return "", ErrNoKey
	}
	raw, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil || len(raw) < k.aead.NonceSize() {
		return "", ErrOpen
	}
	nonce, ciphertext := raw[:k.aead.NonceSize()], raw[k.aead.NonceSize():]
	plain, err := k.aead.Open(nil, nonce, ciphertext, []byte(context))
	if err != nil && k.previous != nil {
		return k.previous.Open(v, context)
	}
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}
