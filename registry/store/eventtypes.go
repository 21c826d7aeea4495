package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"

	"github.com/switchboard-hq/switchboard"
)

// Bounds of a tenant's own event types.
const (
	// MaxEventTypeDescriptionLength bounds a description, in characters.
	MaxEventTypeDescriptionLength = 1024
)

// EventType is an entry of a tenant's catalogue: one of
// DefaultEventTypes, or one of the tenant's own (Custom).
type EventType struct {
	switchboard.EventType
	Custom bool
}

// eventTypeRow is a row of the event_types table.
type eventTypeRow struct {
	TenantID    string    `db:"tenant_id"`
	Name        string    `db:"name"`
	Description string    `db:"description"`
	CreatedAt   time.Time `db:"created_at"`
}

// FindEventTypes returns the catalogue of the tenant in ctx: the default
// types in their order, then the tenant's own by name. It returns
// EUNAUTHORIZED when ctx carries no tenant.
func (db *DB) FindEventTypes(ctx context.Context) ([]EventType, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return nil, fmt.Errorf("find event types: %w", err)
	}
	var rows []eventTypeRow
	err = db.db.SelectContext(ctx, &rows,
		`SELECT tenant_id, name, description, created_at FROM event_types WHERE tenant_id = ? ORDER BY name`, tenant)
	if err != nil {
		return nil, fmt.Errorf("find event types: %w", err)
	}
	out := make([]EventType, 0, len(DefaultEventTypes)+len(rows))
	for _, t := range DefaultEventTypes {
		out = append(out, EventType{EventType: t})
	}
	for _, r := range rows {
		out = append(out, EventType{EventType: switchboard.EventType{Name: r.Name, Description: r.Description}, Custom: true})
	}
	return out, nil
}

// CreateEventType adds t to the catalogue of the tenant in ctx; t must be
// valid already. It returns EUNAUTHORIZED when ctx carries no tenant,
// ENOTFOUND when the tenant does not exist, ECONFLICT when the catalogue
// has a type of that name (a default one or the tenant's own) and EINVALID
// when the tenant has its quota of them already (Quotas.EventTypesPerTenant).
func (db *DB) CreateEventType(ctx context.Context, t switchboard.EventType) (EventType, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return EventType{}, fmt.Errorf("create event type %q: %w", t.Name, err)
	}
	conflict := &switchboard.Error{
		Code:    switchboard.ECONFLICT,
		Message: fmt.Sprintf("The event type %s exists already.", Quote(t.Name)),
		Fields:  map[string][]string{"name": {"is already in the catalogue"}},
	}
	if slices.ContainsFunc(DefaultEventTypes, func(d switchboard.EventType) bool { return d.Name == t.Name }) {
		return EventType{}, fmt.Errorf("create event type %q: %w", t.Name, conflict)
	}
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		if err := checkCount(ctx, tx, "event_types", tenant, db.Quotas.EventTypesPerTenant, "name", "event types of its own"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO event_types (tenant_id, name, description, created_at) VALUES (?, ?, ?, ?)`,
			tenant, t.Name, t.Description, Now())
		switch {
		case isConstraint(err, sqlite3.ErrConstraintPrimaryKey), isConstraint(err, sqlite3.ErrConstraintUnique):
			return conflict
		case isConstraint(err, sqlite3.ErrConstraintForeignKey):
			return switchboard.Errorf(switchboard.ENOTFOUND, "Tenant not found.")
		}
		return err
	})
	if err != nil {
		return EventType{}, fmt.Errorf("create event type %q: %w", t.Name, err)
	}
	return EventType{EventType: t, Custom: true}, nil
}

// HasEventType reports whether typ is in the catalogue of the tenant in ctx:
// a default type, or one of the tenant's own. Ingest refuses the others
// (producer.Handler.Catalogue), as webhooks cannot subscribe to them. It
// returns EUNAUTHORIZED when ctx carries no tenant.
func (db *DB) HasEventType(ctx context.Context, typ string) (bool, error) {
	if slices.ContainsFunc(DefaultEventTypes, func(d switchboard.EventType) bool { return d.Name == typ }) {
		return true, nil
	}
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return false, fmt.Errorf("has event type %q: %w", typ, err)
	}
	var n int
	if err := db.db.GetContext(ctx, &n, `SELECT count(*) FROM event_types WHERE tenant_id = ? AND name = ?`, tenant, typ); err != nil {
		return false, fmt.Errorf("has event type %q: %w", typ, err)
	}
	return n > 0, nil
}

// DefaultEventTypes is the catalogue every tenant starts with. The
// operational types are in it so that alert hooks can subscribe to them.
var DefaultEventTypes = []switchboard.EventType{
	{Name: "call.started", Description: "A phone call started."},
	{Name: "call.answered", Description: "A phone call was answered."},
	{Name: "call.ended", Description: "A phone call ended."},
	{Name: "agent.presence_changed", Description: "An agent's presence changed."},
	{Name: "agent.logged_in", Description: "An agent logged in."},
	{Name: "agent.logged_out", Description: "An agent logged out."},
	{Name: "contact.created", Description: "A contact was created."},
	{Name: "contact.changed", Description: "A contact was changed."},
	{Name: "sale.created", Description: "A sale was created."},
	{Name: "sale.changed", Description: "A sale was changed."},
	{Name: switchboard.EventWebhookDisabled, Description: "Alert hooks only: Switchboard stopped a webhook whose deliveries kept failing, or whose receiver answered 410 Gone."},
	{Name: switchboard.EventDeliveryDeadLettered, Description: "Alert hooks only: a delivery was given up and dead-lettered."},
	{Name: switchboard.EventWebhookRecovered, Description: "Alert hooks only: a webhook stopped for too many errors was set active again."},
}
