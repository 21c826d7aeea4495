package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
)

const (
	webhookColumns = `id, tenant_id, agent_id, name, url, method, events, secret, retiring_secrets, timeout, max_retries, ` +
		`auth, headers, properties, is_alert_hook, status, created_at, updated_at, created_by, updated_by`
	webhookParams = `:id, :tenant_id, :agent_id, :name, :url, :method, :events, :secret, :retiring_secrets, :timeout, :max_retries, ` +
		`:auth, :headers, :properties, :is_alert_hook, :status, :created_at, :updated_at, :created_by, :updated_by`
	// webhookUpdates sets every column that may change.
	webhookUpdates = `name = :name, url = :url, method = :method, events = :events, secret = :secret, ` +
		`retiring_secrets = :retiring_secrets, timeout = :timeout, max_retries = :max_retries, auth = :auth, ` +
		`headers = :headers, properties = :properties, is_alert_hook = :is_alert_hook, status = :status, ` +
		`updated_at = :updated_at, updated_by = :updated_by`
)

// webhookRow is a row of the webhooks table. Its secret, retiring secrets
// and auth credentials are in their stored form: sealed when an encryption
// key was configured as they were written.
type webhookRow struct {
	ID              string         `db:"id"`
	TenantID        string         `db:"tenant_id"`
	AgentID         sql.NullString `db:"agent_id"`
	Name            string         `db:"name"`
	URL             string         `db:"url"`
	Method          string         `db:"method"`
	Events          string         `db:"events"`
	Secret          string         `db:"secret"`
	RetiringSecrets string         `db:"retiring_secrets"`
	Timeout         int            `db:"timeout"`
	MaxRetries      int            `db:"max_retries"`
	Auth            string         `db:"auth"`
	Headers         string         `db:"headers"`
	Properties      sql.NullString `db:"properties"`
	IsAlertHook     bool           `db:"is_alert_hook"`
	Status          string         `db:"status"`
	CreatedAt       time.Time      `db:"created_at"`
	UpdatedAt       time.Time      `db:"updated_at"`
	CreatedBy       string         `db:"created_by"`
	UpdatedBy       string         `db:"updated_by"`
}

// newWebhookRow returns the row of wh, its confidential fields sealed under
// key (nil: as they are).
func newWebhookRow(wh *Webhook, key *sealed.Key) (webhookRow, error) {
	stored := wh.Webhook
	key.SealWebhook(&stored)
	events, err := json.Marshal(stored.Events)
	if err != nil {
		return webhookRow{}, fmt.Errorf("encode events: %w", err)
	}
	// Never "null": the columns hold a JSON array and a JSON object.
	if stored.RetiringSecrets == nil {
		stored.RetiringSecrets = []switchboard.RetiringSecret{}
	}
	if stored.Headers == nil {
		stored.Headers = map[string]string{}
	}
	retiring, err := json.Marshal(stored.RetiringSecrets)
	if err != nil {
		return webhookRow{}, fmt.Errorf("encode retiring secrets: %w", err)
	}
	auth, err := json.Marshal(stored.Auth)
	if err != nil {
		return webhookRow{}, fmt.Errorf("encode auth: %w", err)
	}
	headers, err := json.Marshal(stored.Headers)
	if err != nil {
		return webhookRow{}, fmt.Errorf("encode headers: %w", err)
	}
	return webhookRow{
		ID:              stored.ID,
		TenantID:        stored.TenantID,
		AgentID:         sql.NullString{String: stored.AgentID, Valid: stored.AgentID != ""},
		Name:            stored.Name,
		URL:             stored.URL,
		Method:          stored.HTTPMethod(),
		Events:          string(events),
		Secret:          stored.Secret,
		RetiringSecrets: string(retiring),
		Timeout:         stored.TimeoutSeconds,
		MaxRetries:      stored.MaxRetries,
		Auth:            string(auth),
		Headers:         string(headers),
		Properties:      sql.NullString{String: string(stored.Properties), Valid: len(stored.Properties) > 0},
		IsAlertHook:     stored.IsAlertHook,
		Status:          string(stored.Status),
		CreatedAt:       stored.CreatedAt,
		UpdatedAt:       stored.UpdatedAt,
		CreatedBy:       wh.CreatedBy,
		UpdatedBy:       wh.UpdatedBy,
	}, nil
}

// webhook returns the webhook of r in its stored form: the KV mirror puts
// it as it is, so that the bucket holds only what SQLite holds.
func (r *webhookRow) webhook() (*Webhook, error) {
	wh := &Webhook{
		Webhook: switchboard.Webhook{
			ID:             r.ID,
			TenantID:       r.TenantID,
			AgentID:        r.AgentID.String,
			Name:           r.Name,
			URL:            r.URL,
			Method:         r.Method,
			Secret:         r.Secret,
			TimeoutSeconds: r.Timeout,
			MaxRetries:     r.MaxRetries,
			IsAlertHook:    r.IsAlertHook,
			Status:         switchboard.WebhookStatus(r.Status),
			CreatedAt:      r.CreatedAt,
			UpdatedAt:      r.UpdatedAt,
		},
		CreatedBy: r.CreatedBy,
		UpdatedBy: r.UpdatedBy,
	}
	if r.Properties.Valid {
		wh.Properties = json.RawMessage(r.Properties.String)
	}
	for _, f := range []struct {
		name string
		src  string
		dst  any
	}{
		{"events", r.Events, &wh.Events},
		{"retiring secrets", r.RetiringSecrets, &wh.RetiringSecrets},
		{"auth", r.Auth, &wh.Auth},
		{"headers", r.Headers, &wh.Headers},
	} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			return nil, fmt.Errorf("decode %s of webhook %s: %w", f.name, r.ID, err)
		}
	}
	// Empty collections are absent in the KV form (omitempty), whatever
	// the row says.
	if len(wh.RetiringSecrets) == 0 {
		wh.RetiringSecrets = nil
	}
	if len(wh.Headers) == 0 {
		wh.Headers = nil
	}
	return wh, nil
}

// opened returns the webhook of r with its confidential fields opened with
// key, the form the API works on.
func (r *webhookRow) opened(key *sealed.Key) (*Webhook, error) {
	wh, err := r.webhook()
	if err != nil {
		return nil, err
	}
	if err := key.OpenWebhook(&wh.Webhook); err != nil {
		return nil, err
	}
	return wh, nil
}
