package streams

import "strings"

// Reserved keys of the webhooks bucket. Webhook ids never start with "_",
// so these never collide with a webhook; the registry's resync leaves them
// alone and the workers' index does not take them for webhooks.
const (
	// MirrorIDKey holds the id of the registry database that mirrors into
	// the bucket, so that a registry started on another (or an empty)
	// database recognises a bucket that is not its own instead of
	// deleting every webhook in it.
	MirrorIDKey = reservedKeyPrefix + "mirror_id"
	// KeyCheckKey holds a value sealed under the registry's encryption key
	// (KeyCheckPlaintext, sealed in the context KeyCheckKey), so that a
	// worker without that key, or with another, notices at start.
	KeyCheckKey = reservedKeyPrefix + "key_check"

	reservedKeyPrefix = "_sb."
)

// KeyCheckPlaintext is what the value at KeyCheckKey opens to.
const KeyCheckPlaintext = "switchboard encryption key check"

// IsReservedKey reports whether key is one of the bucket's reserved keys
// rather than a webhook id.
func IsReservedKey(key string) bool { return strings.HasPrefix(key, reservedKeyPrefix) }
