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
	"github.com/nats-io/nuid"
	"github.com/sony/gobreaker/v2"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// Retry batches (internal/streams/retrybatch.go has the wire format).
//
// Why: a message schedule per pending delivery cost the embedded server
// about 140 bytes of schedule index, a subject in its subject tree and a
// stored message each; a dead receiver's backlog of a million deliveries
// held hundreds of megabytes for them (docs/benchmarks.md, issue 16).
//
// How: a worker that must schedule a retry or a deferral hands it to the
// retry batcher and waits, as it waited for its own publish before. The
// batcher's goroutine takes whatever requests have arrived while its
// earlier publishes awaited their acks (no timer: a request that finds it
// idle goes out at once, alone, in the old one-schedule-per-delivery form),
// groups them by webhook and by what sets their delay (the attempt or
// deferral count, or the Retry-After that fixes the time), and publishes
// one schedule per group of up to retryBatchCount items and
// retryBatchBytes. A group's items share the delay its first item drew:
// each delivery's delay still follows the policy's distribution, the
// jitter is drawn per batch. The worker acks its delivery only once
// JetStream has stored the schedule holding it.
//
// When a batch fires (deliverBatch), its webhook's breaker open, or the
// webhook not deliverable, settles every item at once without expanding
// it: a circuit_open failed attempt, scheduled again through the batcher
// (so items keep together) or dead-lettered once max_retries are spent,
// or dead-lettered or dropped as the webhook's state says. Otherwise the
// batch is expanded into one delivery message per item, each with a
// Nats-Msg-Id naming it, and acked once all are stored: a batch redelivered
// within the duplicates window (its worker failed mid-way) queues no item
// twice; one redelivered later (a worker killed mid-expansion comes back
// after AckWait, past the window) may queue an item twice, which is the
// at-least-once the receiver dedupes on webhook-id.

// Tuning of the retry batcher.
const (
	// retryBatchCount and retryBatchBytes bound a batch: its items and the
	// size of its body (NATS refuses messages over max_payload, 1 MiB by
	// default; a delivery body is at most switchboard.MaxPayloadBytes).
	retryBatchCount = 1000
	retryBatchBytes = 512 << 10
	// retryInflight bounds the rounds of schedules whose acks are awaited:
	// while both are, requests gather for the next round.
	retryInflight = 2
	// retryQueue bounds the requests handed over and not yet taken: the
	// workers', and a fired batch's items, one each.
	retryQueue = 1024
)

// retryKey groups the requests whose items may share a schedule.
type retryKey struct {
	webhook   string
	op        string
	attempts  int
	deferrals int
	at        int64 // a fixed fire time, Unix s (Retry-After); 0 when the first item's delay sets it
}

// retryReq is a delivery to schedule again, handed to the batcher.
type retryReq struct {
	dlv   *delivery
	key   retryKey
	delay time.Duration
	done  chan error // one result: nil once stored, else a *publishError
}

// item is the request's delivery as a batch item.
func (r *retryReq) item() streams.RetryItem {
	h := streams.RetryHeader(r.dlv.header, r.key.attempts, r.key.deferrals)
	return streams.RetryItem{Seq: r.dlv.seq, Header: h, Body: r.dlv.body}
}

// retryPublish is one schedule published and its requests.
type retryPublish struct {
	reqs []*retryReq
	fut  jetstream.PubAckFuture // nil when err
	err  error
}

// retryBatcher publishes retry schedules in batches. Its two goroutines,
// started by start and ended by the function it returns: collect, which
// groups the requests and publishes the schedules, and check, which awaits
// their acks in order and answers the requests.
type retryBatcher struct {
	js      jetstream.JetStream
	in      chan *retryReq
	pending chan []retryPublish // a round of publishes, for check
	slots   chan struct{}       // a token per round not yet checked
	done    chan struct{}       // closed once check has answered the last request
	// Counts, for tests and the log: schedules stored, and items in them.
	schedules, items atomic.Int64
}

func newRetryBatcher(js jetstream.JetStream) *retryBatcher {
	return &retryBatcher{
		js: js, in: make(chan *retryReq, retryQueue),
		pending: make(chan []retryPublish, retryInflight),
		slots:   make(chan struct{}, retryInflight),
		done:    make(chan struct{}),
	}
}

// start runs the batcher until the returned stop, which must be called
// once nothing schedules any more; it returns once every request handed
// over has its answer.
func (b *retryBatcher) start() (stop func()) {
	go b.collect()
	go b.check()
	return func() {
		close(b.in)
		<-b.done
	}
}

// schedule hands req over and waits until its schedule is stored or not.
func (b *retryBatcher) schedule(req *retryReq) error {
	req.done = make(chan error, 1)
	b.in <- req
	return <-req.done
}

// retryGroup is the requests of one schedule being formed.
type retryGroup struct {
	key   retryKey
	reqs  []*retryReq
	items []streams.RetryItem
	size  int
}

// collect publishes the requests as they arrive, each round made of those
// that arrived while the batcher waited for a slot, until in is closed
// and drained.
func (b *retryBatcher) collect() {
	defer close(b.pending)
	for {
		req, ok := <-b.in
		if !ok {
			return
		}
		// A slot first: what arrives while it is awaited joins this round.
		b.slots <- struct{}{}
		var groups []*retryGroup
		open := map[retryKey]*retryGroup{}
		add := func(r *retryReq) {
			it := r.item()
			n := streams.RetryItemSize(it)
			g := open[r.key]
			if g == nil || len(g.reqs) >= retryBatchCount || g.size+n > retryBatchBytes {
				g = &retryGroup{key: r.key}
				open[r.key] = g
				groups = append(groups, g)
			}
			g.reqs = append(g.reqs, r)
			g.items = append(g.items, it)
			g.size += n
		}
		add(req)
	round:
		for {
			select {
			case r, ok := <-b.in:
				if !ok {
					break round // the next turn returns
				}
				add(r)
			default:
				break round
			}
		}
		round := make([]retryPublish, 0, len(groups))
		now := time.Now()
		for _, g := range groups {
			round = append(round, b.publish(g, now))
		}
		b.pending <- round
	}
}

// publish publishes g's schedule without waiting for its ack: a batch
// when it has more than one item, else the delivery's own schedule as
// before batches.
func (b *retryBatcher) publish(g *retryGroup, now time.Time) retryPublish {
	first := g.reqs[0]
	var m *nats.Msg
	if len(g.reqs) == 1 {
		m = streams.RetryMsg(g.key.webhook, g.items[0])
	} else {
		m = streams.RetryBatchMsg(g.key.webhook, nuid.Next(), g.items)
	}
	at := scheduleAt(now, first.delay)
	if g.key.at > 0 {
		at = time.Unix(g.key.at, 0)
	}
	fut, err := b.js.PublishMsgAsync(m, jetstream.WithScheduleAt(at),
		jetstream.WithScheduleTarget(streams.DeliverySubject(g.key.webhook)))
	return retryPublish{reqs: g.reqs, fut: fut, err: err}
}

// check awaits each round's acks in order and answers its requests, until
// pending is closed and drained.
func (b *retryBatcher) check() {
	defer close(b.done)
	timer := time.NewTimer(publishTimeout)
	defer timer.Stop()
	for round := range b.pending {
		timer.Reset(publishTimeout) // the round's publishes went out together
		expired := false
		for _, p := range round {
			if p.err == nil && !expired {
				select {
				case <-p.fut.Ok():
				case p.err = <-p.fut.Err():
				case <-timer.C:
					expired = true
				}
			}
			if p.err == nil && expired { // the round's time is up: what is not acked by now failed
				select {
				case <-p.fut.Ok():
				case p.err = <-p.fut.Err():
				default:
					p.err = errors.New("no publish ack")
				}
			}
			if p.err == nil {
				b.schedules.Add(1)
				b.items.Add(int64(len(p.reqs)))
			}
			for _, r := range p.reqs {
				if p.err != nil {
					r.done <- &publishError{Op: r.key.op, Err: p.err}
				} else {
					r.done <- nil
				}
			}
		}
		<-b.slots
	}
}

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
