package control

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// WebhookStatusCollector is a prometheus.Collector that reports
// switchboard_webhooks{status}: how many webhooks the registry holds in each
// status, counted in SQLite at each scrape. A rise of
// status="too_many_errors" means the engine has just disabled a webhook.
type WebhookStatusCollector struct {
	DB     *store.DB
	Logger *slog.Logger
	// Timeout bounds the query of one scrape.
	Timeout time.Duration

	desc *prometheus.Desc
}

var _ prometheus.Collector = (*WebhookStatusCollector)(nil)

// NewWebhookStatusCollector returns a WebhookStatusCollector counting in db,
// each scrape's query bounded by 2 s.
func NewWebhookStatusCollector(db *store.DB, logger *slog.Logger) *WebhookStatusCollector {
	return &WebhookStatusCollector{
		DB:      db,
		Logger:  logger,
		Timeout: 2 * time.Second,
		desc: prometheus.NewDesc("switchboard_webhooks",
			"Webhooks in the registry, by status: active, inactive, too_many_errors (disabled by the engine).",
			[]string{"status"}, nil),
	}
}

// Describe sends the metric's description.
func (c *WebhookStatusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect counts the webhooks by status. Every known status is reported,
// at 0 when no webhook has it, so that a rate or an increase over the
// series works from the first disabled webhook on. When the query fails
// the metric is left out of this scrape and the failure logged: the
// other metrics still get through.
func (c *WebhookStatusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	counts, err := c.DB.CountWebhooksByStatus(ctx)
	if err != nil {
		c.Logger.Warn("count webhooks for metrics", "err", err)
		return
	}
	for _, s := range []switchboard.WebhookStatus{switchboard.StatusActive, switchboard.StatusInactive, switchboard.StatusTooManyErrors} {
		if _, ok := counts[string(s)]; !ok {
			counts[string(s)] = 0
		}
	}
	for status, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), status)
	}
}
