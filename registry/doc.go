// Package registry is Switchboard's source of truth for tenants, API keys
// and webhooks:
//
//   - the store, SQLite through sqlx with migrations in code (db.go,
//     migrations.go, tenants.go, webhooks.go, agents.go, eventtypes.go,
//     outbox.go: the only files that speak SQL);
//   - Bootstrap, which gives a fresh registry its default tenant and key;
//   - the Mirror, which copies every committed webhook change into the
//     JetStream KV bucket the workers read (mirror.go);
//   - the HTTP API under /v1, with validation, authentication, a rate
//     limit per key, JSON errors and metrics (server.go, http_*.go,
//     validate.go, ratelimit.go, metrics.go).
//
// Several processes may use the same database file at once: `switchboard
// serve` and CLI commands such as `switchboard key create`.
package registry
