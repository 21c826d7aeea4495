package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// Matcher turns events into deliveries: for each event in SB_EVENTS it
// finds the matching webhooks in the Index and stores one delivery per
// webhook in SB_DELIVERIES, then acks the event. It never calls a receiver.
//
// Publishes are asynchronous and pipelined across events; an event is acked
// only once JetStream has acknowledged every one of its deliveries, and the
// record of the webhooks it chose (matched.go). A publish that fails is
// retried with the same Nats-Msg-Id (so a repeat is deduplicated), and an
// event whose deliveries still cannot be stored is handed back for
// redelivery, never acked. Each delivery's Nats-Msg-Id is
// streams.DeliveryMsgID, so an event matched twice (after a crash, or
// published twice) yields one delivery per webhook within the duplicates
// window.
type Matcher struct {
	// JS is the JetStream to consume from and publish to. Required.
	JS jetstream.JetStream
	// Index supplies the webhooks. Required; Run waits until it is ready.
	Index *Index
	// Logger receives failures; nil discards.
	Logger *slog.Logger
	// Metrics counts events and deliveries; nil counts into unregistered
	// metrics.
	Metrics *Metrics
}

// Tuning of the matcher.
const (
	matcherMaxAckPending = 8192             // events in flight: pulled, matched, awaiting their publish acks
	matcherPullBatch     = 512              // events per pull
	matcherPipeline      = 1024             // events whose publishes await acks, queued for the acker
	matcherAckWait       = time.Minute      // an event unacked this long is redelivered
	pubAckWait           = 10 * time.Second // wait for one publish ack before publishing again
	republishAttempts    = 3                // synchronous republishes of a failed delivery before the event is handed back
)

// republish is how the matcher publishes again a delivery or matched
// record that was not stored.
var republish = streams.Retry{Tries: republishAttempts, Timeout: pubAckWait}

// lostMsg is what the matcher and the deliverer log when their consumer
// is lost and set up again (streams.Durable): docs/operations.md quotes it.
const lostMsg = "consumer lost; setting it up again"

// pendingEvent is an event whose deliveries are published and awaiting
// their acks.
type pendingEvent struct {
	msg    jetstream.Msg
	id     string
	tenant string
	pubs   []streams.Pending
	// matched holds the JSON of its record of the webhooks chosen
	// (streams.Matched), one object per chunk of them: see matched.go.
	matched [][]byte
}

// Run consumes events until ctx is done. It first waits for the Index to be
// ready, then creates or updates the durable consumer streams.MatcherConsumer.
// On cancellation it stops pulling, hands back events it has not started,
// waits for the publish acks of those it has, acks them, and returns nil.
// It returns an error when the consumer cannot be set up at start; one
// deleted later is set up again.
func (m *Matcher) Run(ctx context.Context) error {
	if m.JS == nil || m.Index == nil {
		return errors.New("consumer: Matcher needs JS and Index")
	}
	if m.Metrics == nil {
		m.Metrics = NewMetrics(nil)
	}
	log := loggerOr(m.Logger)
	if err := m.Index.waitReady(ctx); err != nil {
		return nil
	}
	// Settling uses a context that outlives ctx, so that events already
	// published are acked during shutdown.
	settleCtx := context.WithoutCancel(ctx)
	pending := make(chan *pendingEvent, matcherPipeline)
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		timer := time.NewTimer(pubAckWait)
		defer timer.Stop()
		var ready []*pendingEvent // deliveries stored, matched records not yet
		for pe := range pending {
			if m.settle(settleCtx, pe, timer, log) {
				ready = append(ready, pe)
			}
			// Records go out with whatever else is ready: alone when the
			// matcher is idle, many to a message under load.
			if len(ready) > 0 && (len(pending) == 0 || len(ready) >= matchedBatch) {
				ready = m.ackMatched(settleCtx, ready, log)
			}
		}
	}()

	var matches []*hook // reused: the handler runs serially
	loop := &streams.Durable{
		JS:     m.JS,
		Stream: streams.Events,
		Config: jetstream.ConsumerConfig{
			Durable:       streams.MatcherConsumer,
			Description:   "Switchboard: matches events to webhooks, one delivery per webhook",
			FilterSubject: streams.EventsPrefix + ">",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       matcherAckWait,
			MaxAckPending: matcherMaxAckPending,
		},
		LostMsg: lostMsg,
		Log:     log,
	}
	handle := func(msg jetstream.Msg) {
		if ctx.Err() != nil { // stopping: not started, so handed back
			nak(msg, log)
			return
		}
		var pe *pendingEvent
		pe, matches = m.match(ctx, msg, matches[:0], log)
		if pe != nil {
			pending <- pe // the acker drains it even during shutdown
		}
	}
	err := loop.Run(ctx, nil, loop.Consume(handle, matcherPullBatch))
	close(pending)
	<-ackerDone
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	return nil
}

// match reads one event, publishes its deliveries asynchronously and
// returns them to be settled; it returns nil when it has already settled
// the event (malformed, no webhook matches, or handed back because ctx
// ended while the index caught up). matches is scratch space, returned for
// reuse.
//
// The event is never decoded: the stored body is already the delivered
// body (see streams.EventMsg), and tenant, type, agent and id come from the
// subject and headers.
func (m *Matcher) match(ctx context.Context, msg jetstream.Msg, matches []*hook, log *slog.Logger) (*pendingEvent, []*hook) {
	evt, err := streams.MatchedEvent(msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		log.Error("undecodable event; terminating it", "subject", msg.Subject(), "err", err)
		if err := msg.TermWithReason("undecodable event"); err != nil {
			log.Warn("terminate event", "subject", msg.Subject(), "err", err)
		}
		m.Metrics.events[resultInvalid].Inc()
		return nil, matches
	}
	// Read once: parsing the reply subject allocates, and the wait, the
	// matched record and the accepted time all need it. nil when unreadable.
	md, _ := msg.Metadata()
	// A webhook whose change was stored before the event must be in the
	// index before the event is matched, however late this worker's watch.
	if err := m.Index.awaitCurrent(ctx, m.JS.Conn(), storedAt(md)); err != nil {
		nak(msg, log) // stopping
		return nil, matches
	}
	matches = m.Index.match(&evt, matches)
	if len(matches) == 0 {
		if err := msg.Ack(); err != nil {
			log.Warn("ack event", "tenant", evt.TenantID, "event_id", evt.ID, "err", err)
		}
		m.Metrics.events[resultUnmatched].Inc()
		return nil, matches
	}
	// Every webhook gets the stored body: the deliverer adds a webhook's
	// properties as it sends (signer.Endpoint), so deliveries stay shared
	// and a change of properties applies to pending retries too.
	body := msg.Data()

	// The webhook id is in each delivery's subject; the rest is shared.
	dels := streams.NewDeliveries(&evt, msg.Headers(), acceptedFallback(md))
	pe := &pendingEvent{msg: msg, id: evt.ID, tenant: evt.TenantID, pubs: make([]streams.Pending, len(matches)), matched: matchedRecord(md, &evt, matches)}
	for i, h := range matches {
		pe.pubs[i] = streams.PublishAsync(m.JS, dels.Delivery(h.id, body))
	}
	return pe, matches
}

// settle waits for every publish ack of pe, publishing again (same msg id)
// what failed, and reports true once all are stored: the event is then
// acked with its matched record (ackMatched). If a delivery still cannot be
// stored it Naks the event with a delay so that it is matched again later,
// and reports false. timer is the acker's, reused across events.
func (m *Matcher) settle(ctx context.Context, pe *pendingEvent, timer *time.Timer, log *slog.Logger) bool {
	timer.Reset(pubAckWait)
	for i := range pe.pubs {
		p := &pe.pubs[i]
		if err := p.Await(ctx, m.JS, timer.C, republish); err != nil {
			log.Warn("deliveries not stored; handing the event back", "tenant", pe.tenant,
				"event_id", pe.id, "webhook_id", strings.TrimPrefix(p.Msg.Subject, streams.DeliveriesPrefix), "first_err", p.Err, "err", err)
			if err := pe.msg.NakWithDelay(publishFailureDelay); err != nil {
				log.Warn("nak event", "event_id", pe.id, "err", err)
			}
			return false
		}
	}
	return true
}

// acceptedFallback is the accepted time of an event whose producer set
// none: when JetStream stored it (md, the event's metadata), else now,
// when the metadata is unreadable (md nil).
func acceptedFallback(md *jetstream.MsgMetadata) time.Time {
	if md != nil {
		return md.Timestamp
	}
	return time.Now()
}

// storedAt is when JetStream stored the event of metadata md, by the
// server's clock; the zero time, which makes the index read the bucket's
// revision afresh, when the metadata could not be read (md nil).
func storedAt(md *jetstream.MsgMetadata) time.Time {
	if md == nil {
		return time.Time{}
	}
	return md.Timestamp
}

// nak hands msg back for immediate redelivery.
func nak(msg jetstream.Msg, log *slog.Logger) {
	if err := msg.Nak(); err != nil {
		log.Warn("nak", "subject", msg.Subject(), "err", err)
	}
}
