// Package api is the registry's HTTP API under /v1: the Server and its
// routes (server.go, http_*.go, keys_http.go, backlog_http.go,
// audit_http.go), authentication by API key or portal link, a rate limit
// per key, validation (validate*.go), JSON errors and the API's metrics.
// The rows are in registry/store; what needs JetStream (dead letters,
// replay, recover, event lookup, the audit, the Mirror's flush) is done by
// registry/control.
//
// Choices the API makes where the seeds are silent: a webhook's method is
// accepted in any case and stored upper-case ("post" is POST); a PATCH
// replaces auth and headers as a whole when it names them (auth's password
// and token are never shown, so there is nothing to merge with), and null
// clears them, as it does properties; a PATCH of the secret rotates it
// with the default grace period; GET /v1/webhooks/defaults answers with
// events [] (events has no default: at least one is required).
//
// With store.DB.EncryptionKey set, secrets and auth credentials are sealed
// (internal/sealed) in SQLite and, since the Mirror copies rows as stored,
// in the KV bucket; the workers' consumer.Index opens them.
package api
