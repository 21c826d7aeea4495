package bench

import (
	"context"
	"log/slog"

	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/producer"
)

// StartFunc starts every role of serve in this process, on a free loopback
// port with the SSRF guard opened for loopback, as o says; the command
// provides it, for it owns the wiring.
type StartFunc func(ctx context.Context, o SystemOptions, logger *slog.Logger) (*System, error)

// SystemOptions is what the bench sets of a system it starts; the rest is
// serve's defaults.
type SystemOptions struct {
	DataDir               string
	Workers               int
	MaxAckPending         int
	MaxInFlightPerWebhook int // 0: serve's default
	BreakerFailures       int // 0: serve's default
	Retry                 consumer.RetryPolicy
}

// System is a running system as the bench uses it: through its API, as a
// customer would, and through the producer.
type System struct {
	URL    string // base URL of the HTTP API and of /metrics
	Key    string // an API key of Tenant
	Tenant string // id of the default tenant
	// Producer publishes to the system's JetStream.
	Producer *producer.Client
	// WaitForWebhooks waits until the workers know every webhook in ids.
	WaitForWebhooks func(ctx context.Context, ids []string) error
	// Close stops the system and drains it.
	Close func() error
}
