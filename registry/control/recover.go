package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// MaxRecoverEvents bounds the deliveries one recover call queues; a call
// that stops there says so (has_more) and where to go on from (next_since).
const MaxRecoverEvents = 10_000

// recoverIDPrefix marks recover calls; their id is part of the Nats-Msg-Id
// of the deliveries they queue.
const recoverIDPrefix = "rcv_"

// RecoverResult is what a recover call did: the answer of POST /v1/webhooks/{id}/recover.
type RecoverResult struct {
	RecoverID string    `json:"recover_id"`
	WebhookID string    `json:"webhook_id"`
	Since     time.Time `json:"since"`
	Queued    int       `json:"queued"`
	Limit     int       `json:"limit"`
	HasMore   bool      `json:"has_more"`
	// NextSince, when HasMore, is the since of the next call: when the
	// first event this call did not look at was accepted.
	NextSince *time.Time `json:"next_since,omitempty"`
}

// DeliveredFunc reports which of events have a delivered attempt to the
// tenant's webhook in the attempt log (store.DB.DeliveredEvents).
type DeliveredFunc func(ctx context.Context, tenant, webhook string, events []string) (map[string]bool, error)

// Recover queues again, with a fresh retry budget, every event accepted
// since then that matches wh (by its current events and agent, whatever its
// status was), was accepted after wh was created, and has no delivered
// attempt to it (delivered). Events are read from SB_EVENTS (so no further
// back than its retention) and queued to SB_DELIVERIES as the matcher
// queues them, the same body and headers, under a Nats-Msg-Id of their own
// (DeliveryMsgID + the recover call's id): the first delivery's id may
// still be in the duplicates window, and a publish retried within this call
// is deduplicated. At most MaxRecoverEvents per call, and at most
// maxEventScan events read.
//
// Events whose delivery is still retrying are queued too: the receiver may
// get them twice, with the same webhook-id, as at-least-once allows.
func Recover(ctx context.Context, js jetstream.JetStream, delivered DeliveredFunc, wh *store.Webhook, since time.Time) (RecoverResult, error) {
	res := RecoverResult{
		RecoverID: switchboard.NewID(recoverIDPrefix), WebhookID: wh.ID, Since: since.UTC(), Limit: MaxRecoverEvents,
	}
	rec := &recovery{js: js, delivered: delivered, wh: wh, res: &res}
	if err := rec.run(ctx, since); err != nil {
		return res, err
	}
	return res, nil
}

// recovery is one recover call under way.
type recovery struct {
	js        jetstream.JetStream
	delivered DeliveredFunc
	wh        *store.Webhook
	res       *RecoverResult
	cand      []*jetstream.RawStreamMsg // matching events whose delivered attempts are not checked yet
	// candBytes is the size of cand's bodies: cand is flushed at
	// scanBatch events or scanBatchBytes, whichever comes first.
	candBytes int
	pubs      []streams.Pending // published by the last flush, until settled
}

// run scans the tenant's events from since and queues the matching ones.
func (rc *recovery) run(ctx context.Context, since time.Time) error {
	match := rc.wh.Webhook
	match.Status = switchboard.StatusActive // the webhook may have been stopped when they came
	var ferr error
	var lastAccepted time.Time // of the last event read
	scan := eventScan{filter: streams.EventsPrefix + rc.wh.TenantID + ".>", start: since}
	err := scan.run(ctx, rc.js, func(msg jetstream.Msg) bool {
		md, err := msg.Metadata()
		if err != nil {
			return true
		}
		// Stored a little after it was accepted: the scan starts at since,
		// the accepted time decides.
		accepted := streams.AcceptedAt(msg.Headers(), md.Timestamp)
		lastAccepted = accepted
		if accepted.Before(since) || accepted.Before(rc.wh.CreatedAt) {
			return true
		}
		evt, err := streams.DecodeEvent(msg.Subject(), msg.Headers(), msg.Data())
		if err != nil || !match.Matches(&evt) {
			return true
		}
		if rc.res.Queued+len(rc.cand) >= MaxRecoverEvents {
			if ferr = rc.flush(ctx); ferr != nil {
				return false
			}
			if rc.res.Queued >= MaxRecoverEvents {
				rc.res.HasMore = true
				next := accepted.UTC()
				rc.res.NextSince = &next
				return false
			}
		}
		rc.cand = append(rc.cand, &jetstream.RawStreamMsg{
			Subject: msg.Subject(), Sequence: md.Sequence.Stream, Header: msg.Headers(), Data: msg.Data(), Time: md.Timestamp,
		})
		rc.candBytes += len(msg.Data())
		if len(rc.cand) == scanBatch || rc.candBytes >= scanBatchBytes {
			ferr = rc.flush(ctx)
		}
		return ferr == nil
	})
	if ferr != nil {
		return ferr
	}
	if errors.Is(err, errScanLimit) {
		// Not an error: the answer says where to go on from.
		rc.res.HasMore = true
		err = nil
		next := lastAccepted.Add(time.Nanosecond).UTC()
		rc.res.NextSince = &next
	}
	if err != nil {
		return err
	}
	return rc.flush(ctx)
}

// flush publishes the candidates that have no delivered attempt, as the
// matcher publishes a delivery, then waits for their acks (settle): what a
// call holds at once is one batch of bodies, whatever the number of
// events it recovers.
func (rc *recovery) flush(ctx context.Context) error {
	if len(rc.cand) == 0 {
		return nil
	}
	ids := make([]string, len(rc.cand))
	for i, m := range rc.cand {
		ids[i] = streams.EventID(m.Subject, m.Header, m.Data)
	}
	delivered, err := rc.delivered(ctx, rc.wh.TenantID, rc.wh.ID, ids)
	if err != nil {
		return err
	}
	for i, m := range rc.cand {
		if delivered[ids[i]] {
			continue
		}
		_, typ, _ := streams.SplitEventSubject(m.Subject)
		evt := switchboard.Event{ID: ids[i], TenantID: rc.wh.TenantID, Type: typ}
		dm := streams.NewDeliveries(&evt, m.Header, m.Time).Replay(rc.wh.ID, rc.res.RecoverID, m.Data)
		rc.pubs = append(rc.pubs, streams.PublishAsync(rc.js, dm))
		rc.res.Queued++
	}
	clear(rc.cand) // let the bodies go
	rc.cand, rc.candBytes = rc.cand[:0], 0
	return rc.settle(ctx)
}

// settle waits for the acks of the last flush's publishes, publishing
// again (same msg id) what failed, so that the answer counts only what
// JetStream stored.
func (rc *recovery) settle(ctx context.Context) error {
	defer func() {
		clear(rc.pubs)
		rc.pubs = rc.pubs[:0]
	}()
	for i := range rc.pubs {
		p := &rc.pubs[i]
		if err := p.Await(ctx, rc.js, time.After(10*time.Second), streams.Retry{Tries: 1, Timeout: 10 * time.Second}); err != nil {
			return fmt.Errorf("queue delivery of event %s: %w", streams.DecodeDelivery(p.Msg.Subject, p.Msg.Header).EventID, err)
		}
	}
	return nil
}
