// Package store is the registry's SQLite store (sqlx, migrations in code):
// tenants, API keys and their scopes, webhooks with their sealed secrets,
// agents and portal links, the event-type catalogue (DefaultEventTypes and
// each tenant's own), quotas, the outbox the Mirror drains, the attempt
// log and its retention, the ledger of deliveries owed (Matched), the
// backlog query, and the health state behind auto-disable with the alerts
// it queues.
//
// It imports neither nats nor net/http: what it stores comes from the
// registry's API and background services, which own the wire formats.
//
// Several processes may use the same database file at once: `switchboard
// serve` and CLI commands such as `switchboard key create`.
package store
