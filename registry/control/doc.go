// Package control holds the registry's background services and the work
// it does on JetStream:
//
//   - the Mirror, which copies every committed webhook change into the
//     JetStream KV bucket the workers read (mirror.go);
//   - the AttemptIngester, which stores SB_ATTEMPTS in the attempt log and
//     the ledger of deliveries owed, counts failures for auto-disable and
//     applies the log's retention (attempts*.go);
//   - Health, which publishes the alerts the store queued (health_run.go);
//   - dead letters in SB_DEAD: reading, replay, purge (deadletters*.go);
//   - Recover, which queues a webhook's undelivered events again
//     (recover.go), and FindEvent, the lookup of one event in SB_EVENTS
//     (attempts_events.go);
//   - the Auditor and RunAudit (audit.go), and the collectors of the
//     backlog and of webhooks by status.
//
// The rows are in registry/store; the HTTP routes that start this work are
// in registry/api.
package control
