package control

import "time"

// What the audit answers (GET /v1/audit, `switchboard audit`).

// AuditCounts are the figures of a tenant, or of all.
type AuditCounts struct {
	EventsAccepted     int `json:"events_accepted"`
	DeliveriesExpected int `json:"deliveries_expected"`
	Delivered          int `json:"delivered"`
	DeadLettered       int `json:"dead_lettered"`
	Retrying           int `json:"retrying"`
	Pending            int `json:"pending"`
	WebhookDeleted     int `json:"webhook_deleted"`
	Unaccounted        int `json:"unaccounted"`
}

func (c *AuditCounts) add(o AuditCounts) {
	c.EventsAccepted += o.EventsAccepted
	c.DeliveriesExpected += o.DeliveriesExpected
	c.Delivered += o.Delivered
	c.DeadLettered += o.DeadLettered
	c.Retrying += o.Retrying
	c.Pending += o.Pending
	c.WebhookDeleted += o.WebhookDeleted
	c.Unaccounted += o.Unaccounted
}

// UnaccountedDelivery is a delivery owed that nothing accounts for.
type UnaccountedDelivery struct {
	EventID   string    `json:"event_id"`
	WebhookID string    `json:"webhook_id"`
	MatchedAt time.Time `json:"matched_at"`
	// LastOutcome is the outcome of its last attempt recorded, "" for none.
	LastOutcome string `json:"last_outcome,omitempty"`
}

// TenantAudit is the audit of one tenant.
type TenantAudit struct {
	TenantID string `json:"tenant_id"`
	AuditCounts
	// Unaccounted lists up to maxUnaccountedListed of them, oldest first.
	UnaccountedDeliveries []UnaccountedDelivery `json:"unaccounted_deliveries"`
}

// AuditReport is what an audit found.
type AuditReport struct {
	Since        time.Time     `json:"since"`
	Until        time.Time     `json:"until"`
	GraceSeconds float64       `json:"grace_seconds"`
	Limit        int           `json:"limit"`
	Tenants      []TenantAudit `json:"tenants"`
	Total        AuditCounts   `json:"total"`
	// Truncated says a bound was reached; Truncation says which. Counts
	// then cover part of the window (events: its start; deliveries owed:
	// the oldest), and deliveries not found in a truncated read of
	// SB_DELIVERIES count as pending, never as unaccounted.
	Truncated  bool     `json:"truncated"`
	Truncation []string `json:"truncation"`
}
