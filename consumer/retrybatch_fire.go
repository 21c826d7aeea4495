package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker/v2"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// firedBatch is a retry batch being handled: its items are settled
// without an ack of their own, and it is acked once all are, or handed
// back when one could not be.
type firedBatch struct {
	failed  atomic.Bool
	faulted atomic.Bool // a test's expandFault stopped its expansion
}

// deliverBatch handles a fired retry batch (see the top of this file).
func (d *Deliverer) deliverBatch(ctx context.Context, msg jetstream.Msg) {
	if err := msg.InProgress(); err != nil {
		d.log.Debug("in progress", "err", err)
	}
	webhookID, _ := streams.DeliveryWebhook(msg.Subject())
	items, derr := streams.DecodeRetryBatch(msg.Data())
	if derr != nil {
		// Never dropped: the batch as it is goes to SB_DEAD, malformed.
		dlv := delivery{msg: msg, header: msg.Headers(), body: msg.Data(), webhookID: webhookID}
		if h, ok := d.Index.lookup(webhookID); ok && h.usable() {
			dlv.tenant = h.webhook.TenantID
		}
		err := fmt.Errorf("%w: %w", errMalformed, derr)
		d.settle(&dlv, 1, err, decide(err, 1, 0, d.Retry))
		return
	}
	fb := &firedBatch{}
	dlvs := make([]delivery, len(items))
	for i, it := range items {
		dlvs[i] = delivery{
			msg: msg, header: nats.Header(it.Header), body: it.Body, webhookID: webhookID,
			seq: it.Seq, batch: fb,
		}
		if dlvs[i].header == nil {
			dlvs[i].header = nats.Header{}
		}
		dlvs[i].readHeaders()
	}
	if len(dlvs) == 0 {
		ackBatch(d, msg, fb)
		return
	}

	h, err := d.webhookFor(&dlvs[0])
	var we *webhookError
	switch {
	case errors.As(err, &we) && we.Reason == reasonUnknown && we.Tries < unknownWebhookTries:
		// Not known yet: the whole batch waits, as a delivery would.
		d.settle(&delivery{msg: msg, header: msg.Headers(), webhookID: webhookID}, 1, err, decide(err, 1, 0, d.Retry))
		return
	case err == nil:
		g := d.iso.get(webhookID)
		open, until := g.open(time.Now(), d.iso.cooldown)
		halfOpen := !open && g.breaker.State() == gobreaker.StateHalfOpen
		d.iso.put(g)
		if !open && !halfOpen {
			if err := d.expand(webhookID, items); err != nil {
				fb.failed.Store(true)
				fb.faulted.Store(errors.Is(err, errExpandFault))
			}
			ackBatch(d, msg, fb)
			return
		}
		refuse := dlvs
		if halfOpen {
			// One probe is all the breaker lets through: the first item
			// becomes a delivery message, to be attempted as the probe;
			// the others are refused as they would be while it is under
			// way, rather than queued to be refused one by one.
			if err := d.expand(webhookID, items[:1]); err != nil {
				fb.failed.Store(true)
			}
			refuse, until = dlvs[1:], time.Now().Add(d.iso.cooldown)
		}
		var wg sync.WaitGroup
		for i := range refuse {
			dlv := &refuse[i]
			wg.Go(func() {
				if dlv.tenant == "" {
					dlv.tenant = h.webhook.TenantID
				}
				var ierr error = d.refused(until)
				if dlv.eventID == "" {
					ierr = errNoEventID
				}
				made := dlv.attempts + 1
				d.settle(dlv, made, ierr, decide(ierr, made, h.webhook.MaxRetries, d.Retry))
			})
		}
		wg.Wait()
		ackBatch(d, msg, fb)
		return
	}
	// The webhook cannot take them: each is dead-lettered or dropped as a
	// delivery would be.
	var wg sync.WaitGroup
	for i := range dlvs {
		dlv := &dlvs[i]
		wg.Go(func() {
			made := dlv.attempts + 1
			d.settle(dlv, made, err, decide(err, made, 0, d.Retry))
		})
	}
	wg.Wait()
	ackBatch(d, msg, fb)
}

// ackBatch acks a fired batch whose items are all settled, or hands it
// back when what one of them needed stored was not.
func ackBatch(d *Deliverer, msg jetstream.Msg, fb *firedBatch) {
	if fb.faulted.Load() {
		return // a test's expandFault: as if the process had died
	}
	var err error
	if fb.failed.Load() {
		err = msg.NakWithDelay(publishFailureDelay)
	} else {
		err = msg.Ack()
	}
	if err != nil {
		d.log.Warn("retry batch: ack", "err", err)
	}
}

// expandChunk bounds the items one expansion publishes before it awaits
// their acks, and expandChunks the chunks of all workers outstanding at
// once: nats.go refuses async publishes past 4,000 awaiting acks
// (ErrTooManyStalledMsgs), which a few workers expanding batches of a
// thousand would reach.
const (
	expandChunk  = 128
	expandChunks = 8
)

// expand queues each item of a fired batch as a delivery message of its
// own, under the Nats-Msg-Id RetryItemMsgID names, and returns once all
// are stored, or the first error; the caller then hands the batch back, to
// be expanded again, the msg ids keeping those already stored from being
// queued twice.
func (d *Deliverer) expand(webhookID string, items []streams.RetryItem) error {
	for start := 0; start < len(items); start += expandChunk {
		if err := d.expandPart(webhookID, items, start, min(start+expandChunk, len(items))); err != nil {
			d.log.Warn("retry batch: not expanded; handed back", "webhook_id", webhookID, "items", len(items), "err", err)
			d.Metrics.outcomes[outcomeRequeued].Inc()
			return err
		}
	}
	return nil
}

// expandPart publishes items[from:to] holding one of the expandChunks
// tokens, and awaits their acks.
func (d *Deliverer) expandPart(webhookID string, items []streams.RetryItem, from, to int) error {
	d.expandTokens <- struct{}{}
	defer func() { <-d.expandTokens }()
	futs := make([]jetstream.PubAckFuture, 0, to-from)
	var err error
	for i := from; i < to; i++ {
		it := items[i]
		if d.expandFault != nil && d.expandFault(i, len(items)) {
			// As if the process died here: nothing more is published,
			// and the batch is neither acked nor handed back.
			return errExpandFault
		}
		fut, perr := d.JS.PublishMsgAsync(streams.RetryItemMsg(webhookID, it))
		if perr != nil {
			err = perr
			break
		}
		futs = append(futs, fut)
	}
	timer := time.NewTimer(publishTimeout)
	defer timer.Stop()
	for _, fut := range futs {
		select {
		case <-fut.Ok():
		case e := <-fut.Err():
			err = errors.Join(err, e)
		case <-timer.C:
			return errors.Join(err, errors.New("no publish ack"))
		}
	}
	return err
}

// errExpandFault is what expandPart returns when a test's expandFault
// stopped it.
var errExpandFault = errors.New("expansion stopped by a test fault")
