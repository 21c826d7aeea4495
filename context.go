package switchboard

import "context"

type contextKey int

const (
	tenantContextKey contextKey = iota
	actorContextKey
)

// NewContextWithTenant returns a context carrying the id of the tenant the
// request acts for, as established by API-key authentication.
func NewContextWithTenant(ctx context.Context, tenantID string) context.Context {
	return context.WithValue(ctx, tenantContextKey, tenantID)
}

// TenantFromContext returns the tenant id stored by NewContextWithTenant, or
// "" when the context carries none.
func TenantFromContext(ctx context.Context) string {
	id, _ := ctx.Value(tenantContextKey).(string)
	return id
}

// NewContextWithActor returns a context carrying the name of the API key that
// makes the request; the registry records it as created_by and updated_by.
func NewContextWithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorContextKey, actor)
}

// ActorFromContext returns the name stored by NewContextWithActor, or "".
func ActorFromContext(ctx context.Context) string {
	a, _ := ctx.Value(actorContextKey).(string)
	return a
}
