package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Checked publishing, shared by the matcher, the registry's recover and
// the attempt recorder: publish asynchronously (pipelined, the fast path),
// then await each ack, and publish again, synchronously, what was refused,
// failed or not acknowledged in time. A message keeps its Nats-Msg-Id
// throughout, so a copy stored by an earlier try is not stored twice.

// Retry says how a message whose publish failed is published again: Tries
// synchronous publishes at most, each bounded by Timeout, the n-th after a
// pause of n × 250 ms (none before the first).
type Retry struct {
	Tries   int
	Timeout time.Duration
}

// Pending is a message published asynchronously, its ack still to check
// (Await).
type Pending struct {
	Msg *nats.Msg
	fut jetstream.PubAckFuture // nil when PublishMsgAsync refused Msg
	// Err is why the asynchronous publish did not store Msg: refused, a
	// failed ack, or none in time. Await sets it; nil when it did store.
	Err error
}

// PublishAsync publishes m without waiting for its ack. Without options
// PublishMsgAsync takes its allocation-free path; m carries its
// Nats-Msg-Id in its header, when it has one.
func PublishAsync(js jetstream.JetStream, m *nats.Msg) Pending {
	fut, err := js.PublishMsgAsync(m)
	return Pending{Msg: m, fut: fut, Err: err}
}

// Await waits for p's ack until expired fires (a caller's timer, which may
// be shared by many messages: their acks are then awaited together) or ctx
// is done (it then returns ctx's error), and when the ack does not come,
// or says the publish failed, publishes p.Msg again as retry says
// (Publish). It returns nil once
// JetStream has stored p.Msg; p.Err then says whether the asynchronous
// publish alone did not.
func (p *Pending) Await(ctx context.Context, js jetstream.JetStream, expired <-chan time.Time, retry Retry) error {
	if p.Err == nil {
		select {
		case <-p.fut.Ok():
			return nil
		case p.Err = <-p.fut.Err():
		case <-expired:
			p.Err = errors.New("no publish ack in time")
		case <-ctx.Done():
			// Stopping: no time to publish again.
			p.Err = fmt.Errorf("no publish ack: %w", ctx.Err())
			return p.Err
		}
	}
	return Publish(ctx, js, p.Msg, retry)
}

// Publish publishes m synchronously, retry.Tries times at most. It
// returns the last try's error, wrapped with m's subject.
func Publish(ctx context.Context, js jetstream.JetStream, m *nats.Msg, retry Retry) error {
	var err error
	for try := range max(retry.Tries, 1) {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("publish %s: %w", m.Subject, ctx.Err())
			case <-time.After(time.Duration(try) * 250 * time.Millisecond):
			}
		}
		pctx, cancel := context.WithTimeout(ctx, retry.Timeout)
		_, err = js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("publish %s: %w", m.Subject, err)
}
