package control

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard/registry/internal/promreg"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Auditor runs the audit over the last DefaultAuditWindow every Interval
// and sets switchboard_deliveries_unaccounted to what it counts.
type Auditor struct {
	DB     *store.DB
	JS     jetstream.JetStream
	Logger *slog.Logger
	// Interval is a minute when 0.
	Interval    time.Duration
	unaccounted prometheus.Gauge
}

// NewAuditor returns an Auditor whose gauge is registered with reg (nil:
// not exported).
func NewAuditor(db *store.DB, js jetstream.JetStream, reg prometheus.Registerer) *Auditor {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "switchboard_deliveries_unaccounted",
		Help: "Deliveries matched in the last hour that nothing accounts for (no outcome, no queued message, older than the audit's grace), at the last periodic audit.",
	})
	if reg != nil {
		g = promreg.Register(reg, g)
	}
	return &Auditor{DB: db, JS: js, unaccounted: g}
}

// Run audits until ctx is done, then returns nil. A failed audit is
// logged and leaves the gauge as it was.
func (a *Auditor) Run(ctx context.Context) error {
	log := a.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := a.Interval
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rep, err := RunAudit(ctx, a.DB, a.JS, AuditOptions{Since: time.Now().Add(-DefaultAuditWindow), SkipEvents: true})
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("audit", "err", err)
		case err == nil:
			a.unaccounted.Set(float64(rep.Total.Unaccounted))
			for _, t := range rep.Tenants {
				if t.Unaccounted == 0 {
					continue
				}
				ids := make([]string, 0, 20)
				for _, d := range t.UnaccountedDeliveries[:min(20, len(t.UnaccountedDeliveries))] {
					ids = append(ids, d.EventID+"/"+d.WebhookID)
				}
				log.Error("audit: deliveries unaccounted for", "tenant", t.TenantID, "unaccounted", t.Unaccounted, "first", ids)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
