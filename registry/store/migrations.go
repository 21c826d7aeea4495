package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// migrations are applied in order; PRAGMA user_version counts those applied.
// Append only: never edit one that has shipped.
var migrations = []string{
	// 1: tenants, API keys, webhooks and the KV mirror's outbox.
	`
CREATE TABLE tenants (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	created_at TIMESTAMP NOT NULL
);

CREATE TABLE api_keys (
	id           TEXT PRIMARY KEY,
	tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	hash         TEXT NOT NULL UNIQUE, -- hex SHA-256 of the key
	created_at   TIMESTAMP NOT NULL,
	last_used_at TIMESTAMP,
	UNIQUE (tenant_id, name)
);

-- No cascade from tenants: every webhook removal must write an outbox row.
CREATE TABLE webhooks (
	id          TEXT PRIMARY KEY,
	tenant_id   TEXT NOT NULL REFERENCES tenants (id),
	agent_id    TEXT, -- NULL: tenant-wide
	name        TEXT NOT NULL,
	url         TEXT NOT NULL,
	events      TEXT NOT NULL, -- JSON array of event-type patterns
	secret      TEXT NOT NULL,
	timeout     INTEGER NOT NULL,
	max_retries INTEGER NOT NULL,
	status      TEXT NOT NULL,
	created_at  TIMESTAMP NOT NULL,
	updated_at  TIMESTAMP NOT NULL,
	created_by  TEXT NOT NULL,
	updated_by  TEXT NOT NULL
);

-- A name is unique within its scope: the whole tenant, or one of its agents.
CREATE UNIQUE INDEX webhooks_scope_name ON webhooks (tenant_id, ifnull(agent_id, ''), name);
CREATE INDEX webhooks_tenant_id ON webhooks (tenant_id, id);

-- One row per committed webhook change not yet mirrored into the KV bucket.
-- AUTOINCREMENT: a sequence number is never reused.
CREATE TABLE webhook_outbox (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	webhook_id TEXT NOT NULL
);
CREATE INDEX webhook_outbox_webhook_id ON webhook_outbox (webhook_id, seq);
`,
	// 2: agents, each tenant's own event types, admin keys.
	`
ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
-- The default tenant's bootstrap key administers the registry (Bootstrap
-- keeps it so); in a database from before admin keys, it is the only one.
UPDATE api_keys SET admin = 1
WHERE name = 'default' AND tenant_id IN (SELECT id FROM tenants WHERE name = 'default');

-- No cascade from tenants, as for webhooks. Webhooks do not reference
-- agents by foreign key (that would mean rebuilding their table); the
-- transaction that creates a webhook checks that its agent exists, and
-- DeleteAgent deletes the agent's webhooks.
CREATE TABLE agents (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	id         TEXT NOT NULL,
	name       TEXT NOT NULL,
	created_at TIMESTAMP NOT NULL,
	updated_at TIMESTAMP NOT NULL,
	PRIMARY KEY (tenant_id, id)
);
-- Agent-scoped webhooks created before agents existed keep their agent.
INSERT INTO agents (tenant_id, id, name, created_at, updated_at)
SELECT tenant_id, agent_id, '', min(created_at), min(created_at)
FROM webhooks WHERE agent_id IS NOT NULL
GROUP BY tenant_id, agent_id;

-- A tenant's own event types; switchboard.DefaultEventTypes are not stored.
CREATE TABLE event_types (
	tenant_id   TEXT NOT NULL REFERENCES tenants (id),
	name        TEXT NOT NULL,
	description TEXT NOT NULL,
	created_at  TIMESTAMP NOT NULL,
	PRIMARY KEY (tenant_id, name)
);
`,
	// 3: how deliveries are sent (method, outbound auth, custom headers and
	// properties), alert hooks, and the secrets retiring after a rotation.
	// Secrets, auth passwords and tokens are sealed (internal/sealed) when
	// an encryption key is configured.
	`
ALTER TABLE webhooks ADD COLUMN method TEXT NOT NULL DEFAULT 'POST';
ALTER TABLE webhooks ADD COLUMN auth TEXT NOT NULL DEFAULT '{"type":"none"}'; -- JSON of switchboard.Auth
ALTER TABLE webhooks ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';           -- JSON object of strings
ALTER TABLE webhooks ADD COLUMN properties TEXT;                              -- JSON object; NULL: none
ALTER TABLE webhooks ADD COLUMN is_alert_hook INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN retiring_secrets TEXT NOT NULL DEFAULT '[]';  -- JSON of []switchboard.RetiringSecret
`,
	// 4: auto-disable and alerts (health.go): consecutive failed deliveries
	// per webhook, the attempts already counted, and the operational events
	// waiting to be published.
	`
-- No row: no failure since the last delivered attempt (or ever).
CREATE TABLE webhook_health (
	webhook_id TEXT PRIMARY KEY REFERENCES webhooks (id) ON DELETE CASCADE,
	failures   INTEGER NOT NULL,
	updated_at TIMESTAMP NOT NULL
);

-- Attempts already counted, so that a redelivered one counts once.
CREATE TABLE health_attempts (
	attempt_id TEXT PRIMARY KEY,
	seen_at    TIMESTAMP NOT NULL
);
CREATE INDEX health_attempts_seen_at ON health_attempts (seen_at);

-- Operational events committed with their cause, not yet in SB_EVENTS.
CREATE TABLE alert_outbox (
	seq   INTEGER PRIMARY KEY AUTOINCREMENT,
	event TEXT NOT NULL -- JSON of switchboard.Event
);
`,
	// 5: the attempt log, ingested from SB_ATTEMPTS (see AttemptIngester).
	// No foreign keys: the log outlives deleted webhooks until retention
	// prunes it. Times are Unix nanoseconds, so that they order and compare
	// as numbers. Ids are "att_" + a UUIDv7: newest first is id order.
	`
CREATE TABLE attempts (
	id            TEXT PRIMARY KEY,
	tenant_id     TEXT NOT NULL,
	webhook_id    TEXT NOT NULL,
	event_id      TEXT NOT NULL,
	event_type    TEXT NOT NULL,
	attempt       INTEGER NOT NULL,
	at            INTEGER NOT NULL,
	outcome       TEXT NOT NULL,
	reason        TEXT NOT NULL,
	status_code   INTEGER NOT NULL,
	latency_ms    REAL NOT NULL,
	error_class   TEXT NOT NULL,
	error         TEXT NOT NULL,
	response_body TEXT NOT NULL
);
CREATE INDEX attempts_webhook ON attempts (tenant_id, webhook_id, id);
CREATE INDEX attempts_event ON attempts (tenant_id, event_id, webhook_id);
CREATE INDEX attempts_at ON attempts (at);
`,
	// 6: the attempts table dedupes what auto-disable counts: one consumer
	// stores and counts each attempt in one transaction (AttemptIngester),
	// so the ids health_attempts kept are in attempts already.
	`
DROP TABLE health_attempts;
`,
	// 7: portal links (portallinks.go): short-lived, scoped credentials for
	// the tenant portal, stored hashed like API keys.
	`
CREATE TABLE portal_links (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	agent_id   TEXT, -- NULL: the whole tenant
	read_only  INTEGER NOT NULL,
	hash       TEXT NOT NULL UNIQUE, -- hex SHA-256 of the token
	created_at TIMESTAMP NOT NULL,
	created_by TEXT NOT NULL,
	expires_at TIMESTAMP NOT NULL,
	revoked_at TIMESTAMP
);
CREATE INDEX portal_links_tenant ON portal_links (tenant_id, id);
`,
	// 8: the ledger (audit_ledger.go): the webhooks the matcher chose for
	// each event, from its records on streams.MatchedSubject. One row per
	// delivery owed; the event's SB_EVENTS sequence tells apart two events
	// of a tenant with one id. Pruned with the attempt log.
	`
CREATE TABLE matched (
	tenant_id  TEXT NOT NULL,
	event_id   TEXT NOT NULL,
	event_seq  INTEGER NOT NULL,
	webhook_id TEXT NOT NULL,
	event_type TEXT NOT NULL,
	matched_at INTEGER NOT NULL, -- Unix nanoseconds
	PRIMARY KEY (tenant_id, event_id, event_seq, webhook_id)
);
CREATE INDEX matched_at ON matched (matched_at);
`,
	// 9: key scopes and expiry (keys.go). The admin column stays, kept
	// true exactly when scope is 'admin'.
	`
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'manage';
UPDATE api_keys SET scope = 'admin' WHERE admin = 1;
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMP; -- NULL: never
`,
	// 10: response body excerpts apart from the attempts (attempts_retention.go),
	// so that --attempt-body-retention frees whole pages: an UPDATE that
	// empties a column leaves its page as full as before, deleting rows
	// stored in time order empties pages, which later writes reuse.
	`
CREATE TABLE attempt_bodies (
	attempt_id TEXT PRIMARY KEY, -- attempts.id
	body       TEXT NOT NULL
);
INSERT INTO attempt_bodies (attempt_id, body) SELECT id, response_body FROM attempts WHERE response_body != '' ORDER BY at;
UPDATE attempts SET response_body = '' WHERE response_body != '';
`,
	// 11: the backlog (backlog.go): which deliveries owed are not settled
	// yet, kept by triggers in the transaction that changes them, so that
	// the top webhooks by backlog are read from a row per webhook, not
	// counted over the ledger. A delivery owed is settled when the last
	// attempt recorded of it (at, then id, as the audit orders them) is
	// delivered or dead_lettered: the audit's rule (audit.go).
	`
ALTER TABLE matched ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;
UPDATE matched SET settled = 1 WHERE ifnull((SELECT a.outcome FROM attempts a
	WHERE a.tenant_id = matched.tenant_id AND a.event_id = matched.event_id AND a.webhook_id = matched.webhook_id
	ORDER BY a.at DESC, a.id DESC LIMIT 1), '') IN ('delivered', 'dead_lettered');
-- The oldest unsettled delivery of a webhook, by seek.
CREATE INDEX matched_pending ON matched (webhook_id, matched_at) WHERE settled = 0;

-- Unsettled rows of matched per webhook; a deleted webhook's row stays
-- (readers join webhooks) until pruning the ledger takes it to 0.
CREATE TABLE backlog (
	webhook_id TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL,
	pending    INTEGER NOT NULL
);
CREATE INDEX backlog_top ON backlog (pending, webhook_id) WHERE pending > 0;
INSERT INTO backlog (webhook_id, tenant_id, pending)
SELECT webhook_id, min(tenant_id), count(*) FROM matched WHERE settled = 0 GROUP BY webhook_id;

-- A row INSERT OR IGNORE ignores fires nothing: a matched record stored
-- twice counts once. One inserted after an attempt that settled it (the
-- ingester may see them in either order) is settled at once.
CREATE TRIGGER matched_backlog_insert AFTER INSERT ON matched BEGIN
	INSERT INTO backlog (webhook_id, tenant_id, pending) VALUES (NEW.webhook_id, NEW.tenant_id, 1)
		ON CONFLICT (webhook_id) DO UPDATE SET pending = pending + 1;
	-- Settled: a final attempt with none after it (a sorter per row would
	-- cost more than the probe of the common case, no attempt yet).
	UPDATE matched SET settled = 1 WHERE rowid = NEW.rowid AND NEW.settled = 0 AND EXISTS (SELECT 1 FROM attempts f
		WHERE f.tenant_id = NEW.tenant_id AND f.event_id = NEW.event_id AND f.webhook_id = NEW.webhook_id
			AND f.outcome IN ('delivered', 'dead_lettered') AND NOT EXISTS (SELECT 1 FROM attempts a
				WHERE a.tenant_id = f.tenant_id AND a.event_id = f.event_id AND a.webhook_id = f.webhook_id
					AND (a.at > f.at OR a.at = f.at AND a.id > f.id)));
END;
-- The row of backlog exists: the insert made it, and none is deleted.
CREATE TRIGGER matched_backlog_settle AFTER UPDATE OF settled ON matched WHEN OLD.settled != NEW.settled BEGIN
	UPDATE backlog SET pending = pending + (CASE WHEN NEW.settled = 0 THEN 1 ELSE -1 END) WHERE webhook_id = NEW.webhook_id;
END;
CREATE TRIGGER matched_backlog_delete AFTER DELETE ON matched WHEN OLD.settled = 0 BEGIN
	UPDATE backlog SET pending = pending - 1 WHERE webhook_id = OLD.webhook_id;
END;
-- A stored attempt (a duplicate id is ignored, and fires nothing) that is
-- the last of its delivery (none later by at, then id) settles it when
-- final and unsettles it when not (a replay of a dead letter owes the
-- delivery again); one that is not the last changes nothing, as the last
-- says what the delivery is. Pruning attempts changes nothing either.
CREATE TRIGGER attempts_backlog_settle AFTER INSERT ON attempts
WHEN NOT EXISTS (SELECT 1 FROM attempts a WHERE a.tenant_id = NEW.tenant_id AND a.event_id = NEW.event_id AND a.webhook_id = NEW.webhook_id
	AND (a.at > NEW.at OR a.at = NEW.at AND a.id > NEW.id))
BEGIN
	UPDATE matched SET settled = (NEW.outcome IN ('delivered', 'dead_lettered'))
	WHERE tenant_id = NEW.tenant_id AND event_id = NEW.event_id AND webhook_id = NEW.webhook_id
		AND settled != (NEW.outcome IN ('delivered', 'dead_lettered'));
END;
`,
}

// SchemaVersion is the schema version this binary migrates a registry to
// (PRAGMA user_version). It refuses to open a registry of a newer one.
func SchemaVersion() int { return len(migrations) }

// migrate applies the migrations this database lacks, all in one
// transaction, so that two processes starting at once migrate it once.
func (db *DB) migrate(ctx context.Context) error {
	return db.withTx(ctx, func(tx *sqlx.Tx) error {
		var version int
		if err := tx.GetContext(ctx, &version, `PRAGMA user_version`); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this binary's %d", version, len(migrations))
		}
		for i := version; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
			return fmt.Errorf("set schema version: %w", err)
		}
		return nil
	})
}
