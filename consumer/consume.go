package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
)

// pullExpiry is how long a pull request waits on the server.
//
// pullHeartbeat is how often the server says that a pull request is still
// waiting; two missed ones make the client pull afresh, and the loop check
// that its consumer still exists. It is short because under load nats.go's
// Consume (v1.55.0) now and then stops pulling: when the messages it asked
// for are all handled between its sending a pull request and clearing its
// fetchInProgress flag, each refill check is skipped, and nothing checks
// again once the flag is clear. No pull request is then outstanding (consumer
// info: no waiting request, nothing pending acks, tens of thousands of
// messages pending) and none is made until the heartbeats are missed:
// with nats.go's default (half the expiry) that stalled a consumer for
// 10 s, with this one for 2 s. It needs a goroutine descheduled at the
// wrong moment, so a busy machine; TestConsumePullStall reproduces it.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = time.Second
)

// newRestartBackOff paces setting up again what was lost (a consumer, a KV
// watch): from half a second to ten, and never giving up while ctx lives.
func newRestartBackOff() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(backoff.WithInitialInterval(500*time.Millisecond),
		backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(0))
}

// pullLoop is the consuming side shared by the Matcher and the Deliverer:
// one durable pull consumer feeding a serial handler.
type pullLoop struct {
	js     jetstream.JetStream
	stream string
	cfg    jetstream.ConsumerConfig
	batch  int                      // PullMaxMessages
	handle jetstream.MessageHandler // runs serially; once ctx is done it must hand messages back (Nak) at once
	log    *slog.Logger
}

// run creates or updates the consumer and feeds handle until ctx is done.
// If the consumer is deleted under it (an operator, a stream restored from
// backup), it creates it again and goes on. On ctx cancellation it drains
// the messages already pulled through handle (which hands them back) and
// returns nil once handle is no longer running. It returns an error when
// the consumer cannot be set up at first.
func (p *pullLoop) run(ctx context.Context) error {
	pause := newRestartBackOff()
	for first := true; ; first = false {
		cons, err := p.js.CreateOrUpdateConsumer(ctx, p.stream, p.cfg)
		if err != nil && ctx.Err() != nil {
			return nil
		}
		if err != nil && first {
			return fmt.Errorf("create consumer %s on %s: %w", p.cfg.Durable, p.stream, err)
		}
		if err == nil {
			var lost error
			if lost, err = p.consume(ctx, cons); err != nil {
				return err
			}
			if lost == nil { // ctx is done and everything is drained
				return nil
			}
			err = lost
		}
		wait := pause.NextBackOff()
		p.log.Warn("consumer lost; setting it up again", "consumer", p.cfg.Durable, "stream", p.stream, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// consume runs one Consume session. It returns lost != nil when the
// consumer went away, and nil, nil when ctx is done and the session is
// drained.
func (p *pullLoop) consume(ctx context.Context, cons jetstream.Consumer) (lost, err error) {
	gone := make(chan error, 1)
	cc, err := cons.Consume(p.handle, jetstream.PullMaxMessages(p.batch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				// Pulls to a deleted consumer go unanswered: ask whether
				// it is still there.
				ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if _, ierr := cons.Info(ictx); errors.Is(ierr, jetstream.ErrConsumerNotFound) {
					err = ierr
				}
				cancel()
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				select {
				case gone <- err:
				default:
				}
				return
			}
			p.log.Warn("consume", "consumer", p.cfg.Durable, "err", err)
		}), jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat))
	if err != nil {
		return nil, fmt.Errorf("consume %s on %s: %w", p.cfg.Durable, p.stream, err)
	}
	select {
	case <-ctx.Done():
		cc.Drain() // what was pulled reaches handle, which hands it back
		<-cc.Closed()
		return nil, nil
	case lost = <-gone:
		cc.Stop()
		<-cc.Closed()
		return lost, nil
	}
}
