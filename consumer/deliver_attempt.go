package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/outbound"
)

// webhookFor returns the delivery's webhook if deliveries can be made to
// it, else a *webhookError.
func (d *Deliverer) webhookFor(dlv *delivery) (*hook, error) {
	h, ok := d.Index.lookup(dlv.webhookID)
	switch {
	case !ok:
		var tries uint64
		if md, err := dlv.msg.Metadata(); err == nil {
			tries = md.NumDelivered
		}
		return nil, &webhookError{WebhookID: dlv.webhookID, Reason: reasonUnknown, Tries: tries}
	case h.deleted:
		return nil, &webhookError{WebhookID: dlv.webhookID, Reason: reasonDeleted}
	case !h.usable():
		return nil, &webhookError{WebhookID: dlv.webhookID, Reason: reasonInvalid, Err: h.err}
	case h.webhook.Status != switchboard.StatusActive:
		return nil, &webhookError{WebhookID: dlv.webhookID, Reason: reasonInactive}
	}
	return h, nil
}

// attempt sends the delivery once, within the webhook's timeout. It returns
// nil for a 2xx, an *attemptError for any other answer or none (an address
// the SSRF guard refuses included), errMalformed for a body that cannot be
// sent, and errShutdown when ctx (the deliverer's drain deadline) ended it.
func (d *Deliverer) attempt(ctx context.Context, w *worker, h *hook, dlv *delivery) error {
	if ctx.Err() != nil {
		return errShutdown
	}
	rctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	start := time.Now()
	req, err := h.endpoint.NewRequest(rctx, dlv.eventID, dlv.body, start)
	if err != nil {
		return fmt.Errorf("%w: %w", errMalformed, err)
	}

	d.Metrics.inFlight.Inc()
	ans, err := outbound.Send(d.client, req, w.buf[:])
	d.Metrics.inFlight.Dec()
	d.Metrics.duration.Observe(time.Since(start).Seconds())
	dlv.timing.status, dlv.timing.body = ans.Status, ans.Body
	if err == nil {
		return nil
	}
	if ae, ok := err.(*attemptError); ok && ae.Status == 0 && ctx.Err() != nil {
		return fmt.Errorf("%w: %v", errShutdown, ae.Err)
	}
	return err
}

// keepAlive keeps the ack deadline ahead of an attempt of msg that may run
// for timeout: AckWait starts when a delivery is pulled, and one pulled
// while every worker was busy may have waited in the pull buffer for a
// whole attempt of another, so it is restarted as the attempt starts, and
// again every half AckWait while the attempt runs if it can outlast that.
// Without it JetStream would hand the delivery to a second worker
// mid-attempt. The returned stop ends it.
func (d *Deliverer) keepAlive(msg jetstream.Msg, timeout time.Duration) (stop func()) {
	if err := msg.InProgress(); err != nil {
		d.log.Debug("in progress", "err", err)
	}
	every := d.AckWait / 2
	if timeout < every {
		return func() {}
	}
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					d.log.Debug("in progress", "err", err)
				}
			}
		}
	}()
	return func() { close(done); <-ended }
}
