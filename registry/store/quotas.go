package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/switchboard-hq/switchboard"
)

// Quotas bound what one tenant may keep, so that one tenant cannot make
// every matcher scan a huge list of webhooks, or every create read a huge
// catalogue, for everyone. 0 means no bound, except for HeadersPerWebhook,
// which MaxHeaders bounds whatever it says.
type Quotas struct {
	WebhooksPerTenant   int
	AgentsPerTenant     int
	EventTypesPerTenant int // of the tenant's own; the default types do not count
	HeadersPerWebhook   int
}

// DefaultQuotas are the quotas of a DB that Open returns.
func DefaultQuotas() Quotas {
	return Quotas{
		WebhooksPerTenant:   1000,
		AgentsPerTenant:     10_000,
		EventTypesPerTenant: 1000,
		HeadersPerWebhook:   20,
	}
}

// Validate names every quota out of bounds; flag names are given with
// prefix (e.g. "--max-").
func (q Quotas) Validate(prefix string) error {
	var errs []error
	for _, c := range []struct {
		name string
		n    int
	}{
		{"webhooks-per-tenant", q.WebhooksPerTenant}, {"agents-per-tenant", q.AgentsPerTenant},
		{"event-types-per-tenant", q.EventTypesPerTenant},
	} {
		if c.n < 0 {
			errs = append(errs, fmt.Errorf("%s%s must be 0 (no bound) or positive, got %d", prefix, c.name, c.n))
		}
	}
	if q.HeadersPerWebhook < 0 || q.HeadersPerWebhook > MaxHeaders {
		errs = append(errs, fmt.Errorf("%sheaders-per-webhook must be 0 to %d (0: %d), got %d", prefix, MaxHeaders, MaxHeaders, q.HeadersPerWebhook))
	}
	return errors.Join(errs...)
}

// headersPerWebhook is the bound on a webhook's custom headers.
func (q Quotas) headersPerWebhook() int {
	if q.HeadersPerWebhook <= 0 {
		return MaxHeaders
	}
	return q.HeadersPerWebhook
}

// quotaError is the 422 of a tenant over its quota of what, under field.
func quotaError(field string, n int, what, per string) error {
	return &switchboard.Error{
		Code:    switchboard.EINVALID,
		Message: fmt.Sprintf("Quota reached: at most %d %s per %s.", n, what, per),
		Fields:  map[string][]string{field: {fmt.Sprintf("exceeds the quota of %d %s per %s", n, what, per)}},
	}
}

// checkCount returns a quota error when tenant has limit or more rows of
// table already (limit 0: no bound).
func checkCount(ctx context.Context, tx *sqlx.Tx, table, tenant string, limit int, field, what string) error {
	if limit <= 0 {
		return nil
	}
	var n int
	// Counting is cheap at quota sizes: the tables are indexed by tenant.
	if err := tx.GetContext(ctx, &n, `SELECT count(*) FROM `+table+` WHERE tenant_id = ?`, tenant); err != nil {
		return fmt.Errorf("count %s: %w", table, err)
	}
	if n >= limit {
		return quotaError(field, limit, what, "tenant")
	}
	return nil
}

// checkHeaders returns a quota error when wh has more custom headers
// than q allows.
func (q Quotas) checkHeaders(wh *Webhook) error {
	if n := q.headersPerWebhook(); len(wh.Headers) > n {
		return quotaError("headers", n, "custom headers", "webhook")
	}
	return nil
}

// MaxHeaders is the ceiling of Quotas.HeadersPerWebhook: a webhook's custom
// headers keep its KV entry, and every request made from it, small.
const MaxHeaders = 100
