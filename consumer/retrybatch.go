package consumer

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

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
