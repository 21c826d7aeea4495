// Package registry is Switchboard's source of truth for tenants, API keys
// and webhooks:
//
//   - the store, SQLite through sqlx with migrations in code, is the
//     package registry/store; Bootstrap, which gives a fresh registry its
//     default tenant and key, is there too;
//   - the Mirror, which copies every committed webhook change into the
//     JetStream KV bucket the workers read (mirror.go);
//   - the HTTP API under /v1, with validation, authentication, a rate
//     limit per key, JSON errors and metrics (server.go, http_*.go,
//     validate.go, validate_outbound.go, ratelimit.go, metrics.go).
//
// Choices the API makes where the seeds are silent: a webhook's method is
// accepted in any case and stored upper-case ("post" is POST); a PATCH
// replaces auth and headers as a whole when it names them (auth's password
// and token are never shown, so there is nothing to merge with), and null
// clears them, as it does properties; a PATCH of the secret rotates it
// with the default grace period; GET /v1/webhooks/defaults answers with
// events [] (events has no default: at least one is required).
//
// With DB.EncryptionKey set, secrets and auth credentials are sealed
// (internal/sealed) in SQLite and, since the Mirror copies rows as stored,
// in the KV bucket; the workers' consumer.Index opens them.
package registry
