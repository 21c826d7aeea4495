package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"

	"github.com/switchboard-hq/switchboard"
)

// Portal links: PortalTokenPrefix followed by keyDigits base62 digits of
// 32 random bytes, so that authentication tells them from API keys by
// their prefix alone.
const (
	PortalTokenPrefix = "spt_"

	// DefaultPortalLinkTTL and MaxPortalLinkTTL bound expires_in: a portal
	// link is handed to a customer, so it should not outlive a working day
	// by much; a week at most.
	DefaultPortalLinkTTL = time.Hour
	MinPortalLinkTTL     = time.Minute
	MaxPortalLinkTTL     = 7 * 24 * time.Hour
)

// PortalLink is a short-lived credential for the tenant portal: it acts for
// its tenant only, for one agent's webhooks only when AgentID is set, never
// writes when ReadOnly, and cannot create API keys or portal links. Only
// the SHA-256 of its token is stored.
type PortalLink struct {
	ID        string     `db:"id"`
	TenantID  string     `db:"tenant_id"`
	AgentID   string     `db:"agent_id"` // "": the whole tenant
	ReadOnly  bool       `db:"read_only"`
	CreatedAt time.Time  `db:"created_at"`
	CreatedBy string     `db:"created_by"`
	ExpiresAt time.Time  `db:"expires_at"`
	RevokedAt *time.Time `db:"revoked_at"`
}

const portalLinkColumns = `id, tenant_id, ifnull(agent_id, '') AS agent_id, read_only, created_at, created_by, expires_at, revoked_at`

// CreatePortalLink creates a portal link of the tenant in ctx valid for ttl
// and returns its token, which is not stored and cannot be shown again.
// agentID, when not "", must be an agent of the tenant. It returns
// EUNAUTHORIZED when ctx carries no tenant, EINVALID for a ttl out of
// MinPortalLinkTTL..MaxPortalLinkTTL or a malformed agent id, and
// ENOTFOUND when the agent does not exist.
func (db *DB) CreatePortalLink(ctx context.Context, agentID string, ttl time.Duration, readOnly bool) (string, PortalLink, error) {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return "", PortalLink{}, fmt.Errorf("create portal link: %w", err)
	}
	fe := switchboard.FieldErrors{}
	if ttl < MinPortalLinkTTL || ttl > MaxPortalLinkTTL {
		fe.Add("expires_in", fmt.Sprintf("must be %d to %d seconds", int(MinPortalLinkTTL.Seconds()), int(MaxPortalLinkTTL.Seconds())))
	}
	if agentID != "" && !switchboard.ValidAgentID(agentID) {
		fe.Add("agent_id", AgentIDRule)
	}
	if err := fe.Err(); err != nil {
		return "", PortalLink{}, fmt.Errorf("create portal link: %w", err)
	}
	token := newPortalToken()
	t := Now()
	l := PortalLink{
		ID: switchboard.NewID("pl_"), TenantID: tenant, AgentID: agentID, ReadOnly: readOnly,
		CreatedAt: t, CreatedBy: switchboard.ActorFromContext(ctx), ExpiresAt: t.Add(ttl),
	}
	err = db.withTx(ctx, func(tx *sqlx.Tx) error {
		if agentID != "" {
			if err := checkAgentExists(ctx, tx, tenant, agentID); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO portal_links
			(id, tenant_id, agent_id, read_only, hash, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			l.ID, l.TenantID, sql.NullString{String: agentID, Valid: agentID != ""}, l.ReadOnly, hashKey(token),
			l.CreatedAt, l.CreatedBy, l.ExpiresAt)
		if isConstraint(err, sqlite3.ErrConstraintForeignKey) {
			return switchboard.Errorf(switchboard.ENOTFOUND, "Tenant not found.")
		}
		return err
	})
	if err != nil {
		return "", PortalLink{}, fmt.Errorf("create portal link: %w", err)
	}
	return token, l, nil
}

// RevokePortalLink revokes the portal link id of the tenant in ctx: its
// token stops working at once. Revoking a revoked link is no error. It
// returns EUNAUTHORIZED when ctx carries no tenant and ENOTFOUND when the
// tenant has no such link.
func (db *DB) RevokePortalLink(ctx context.Context, id string) error {
	tenant, err := TenantFrom(ctx)
	if err != nil {
		return fmt.Errorf("revoke portal link %s: %w", id, err)
	}
	res, err := db.db.ExecContext(ctx,
		`UPDATE portal_links SET revoked_at = ifnull(revoked_at, ?) WHERE tenant_id = ? AND id = ?`, Now(), tenant, id)
	if err != nil {
		return fmt.Errorf("revoke portal link %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return switchboard.Errorf(switchboard.ENOTFOUND, "Portal link not found.")
	}
	return nil
}

// AuthenticatePortalLink returns the portal link whose token is given. It
// returns EUNAUTHORIZED, saying why, when no link has that token or the
// link has expired or was revoked.
func (db *DB) AuthenticatePortalLink(ctx context.Context, token string) (PortalLink, error) {
	var l PortalLink
	err := db.db.GetContext(ctx, &l, `SELECT `+portalLinkColumns+` FROM portal_links WHERE hash = ?`, hashKey(token))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return PortalLink{}, ErrUnknownPortalLink
	case err != nil:
		return PortalLink{}, fmt.Errorf("authenticate portal link: %w", err)
	case l.RevokedAt != nil:
		return PortalLink{}, switchboard.Errorf(switchboard.EUNAUTHORIZED,
			"This portal link was revoked; ask for a new one.")
	case !Now().Before(l.ExpiresAt):
		return PortalLink{}, switchboard.Errorf(switchboard.EUNAUTHORIZED,
			"This portal link expired at %s; ask for a new one.", l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return l, nil
}

// IsPortalToken tells a portal link's token from an API key.
func IsPortalToken(token string) bool { return strings.HasPrefix(token, PortalTokenPrefix) }

func newPortalToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go >= 1.24)
	digits := new(big.Int).SetBytes(b).Text(62)
	return PortalTokenPrefix + strings.Repeat("0", keyDigits-len(digits)) + digits
}

// ErrUnknownPortalLink is AuthenticatePortalLink's answer to a token that no
// link has.
var ErrUnknownPortalLink = switchboard.Errorf(switchboard.EUNAUTHORIZED, "Invalid portal link.")
