package control

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboard-hq/switchboard/registry/internal/promreg"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// DefaultBacklogTop is how many webhooks switchboard_backlog_deliveries
// reports unless told, and DefaultBacklogInterval how often it is read.
const (
	DefaultBacklogTop      = 10
	DefaultBacklogInterval = 15 * time.Second
)

// BacklogCollector exports switchboard_backlog_deliveries{tenant,webhook_id}
// for the Top webhooks by backlog, as read at its last refresh (Run): a
// bounded number of series whatever the number of webhooks, and a scrape
// that reads no database. A webhook that leaves the top has no series.
type BacklogCollector struct {
	DB     *store.DB
	Logger *slog.Logger
	// Top is how many webhooks are exported; 0 exports none.
	Top int
	// Interval is how often the backlog is read; DefaultBacklogInterval
	// when 0.
	Interval time.Duration

	desc *prometheus.Desc
	mu   sync.Mutex
	last []store.BacklogWebhook
}

var _ prometheus.Collector = (*BacklogCollector)(nil)

// NewBacklogCollector returns a BacklogCollector of the top webhooks of
// db, registered with reg (nil: not exported).
func NewBacklogCollector(db *store.DB, top int, reg prometheus.Registerer) *BacklogCollector {
	c := &BacklogCollector{DB: db, Top: top, desc: prometheus.NewDesc("switchboard_backlog_deliveries",
		"Deliveries matched and not settled yet (no delivered or dead_lettered last attempt), of the --backlog-top webhooks with the most, at the last read of the registry's ledger.",
		[]string{"tenant", "webhook_id"}, nil)}
	if reg != nil {
		c = promreg.Register(reg, c)
	}
	return c
}

// Describe sends the metric's description.
func (c *BacklogCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect sends a series per webhook of the last refresh.
func (c *BacklogCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.last {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(w.Pending), w.TenantID, w.WebhookID)
	}
}

// Refresh reads the top webhooks now.
func (c *BacklogCollector) Refresh(ctx context.Context) error {
	if c.Top <= 0 {
		return nil
	}
	rep, err := c.DB.Backlog(ctx, "", c.Top)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.last = rep.Data
	c.mu.Unlock()
	return nil
}

// Run refreshes every Interval until ctx is done, then returns nil. A
// failed read is logged and leaves the series as they were.
func (c *BacklogCollector) Run(ctx context.Context) error {
	if c.Top <= 0 {
		<-ctx.Done() // like the other background tasks, it ends with ctx
		return nil
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := c.Interval
	if every <= 0 {
		every = DefaultBacklogInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
			log.Warn("backlog: read the top webhooks", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
