package streams

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
// wrong moment, so a busy machine; consumer's TestConsumePullStall
// reproduces it.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = time.Second
)

// NewRestartBackOff paces setting up again what was lost (a consumer, a KV
// watch): from half a second to ten, and never giving up while ctx lives.
func NewRestartBackOff() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(backoff.WithInitialInterval(500*time.Millisecond),
		backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(0))
}

// Durable is a durable pull consumer kept by a loop (Run), shared by the
// matcher, the deliverer and the registry's attempt ingester: created or
// updated at start, and set up again, after a pause, when it is deleted
// under the loop (an operator, a stream restored from backup).
type Durable struct {
	JS     jetstream.JetStream
	Stream string
	Config jetstream.ConsumerConfig
	// BackOff paces what follows a lost consumer or a failed session;
	// nil is NewRestartBackOff. A session that ends well resets it.
	BackOff backoff.BackOff
	// LostMsg is logged, with the error, when a session fails or the
	// consumer cannot be set up again: docs/operations.md quotes it.
	LostMsg string
	Log     *slog.Logger // nil discards
}

// Session is one use of a Durable's consumer. It returns lost != nil when
// the session failed and the loop is to pause and go on (setting the
// consumer up again when lost says it is gone), err != nil when the loop
// is to stop with that error, and neither when it ended well (or ctx is
// done): the loop then starts the next session at once.
type Session func(ctx context.Context, cons jetstream.Consumer) (lost, err error)

// Create creates or updates the consumer.
func (d *Durable) Create(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := d.JS.CreateOrUpdateConsumer(ctx, d.Stream, d.Config)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", d.Config.Durable, d.Stream, err)
	}
	return cons, nil
}

// Run runs session after session on cons until ctx is done, then returns
// nil. With cons nil it creates the consumer first, and returns the error
// when that fails (nil if ctx is done). It returns the err of a session.
func (d *Durable) Run(ctx context.Context, cons jetstream.Consumer, session Session) error {
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pause := d.BackOff
	if pause == nil {
		pause = NewRestartBackOff()
	}
	if cons == nil {
		var err error
		if cons, err = d.Create(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	for {
		var lost error
		if cons == nil {
			cons, lost = d.Create(ctx)
		}
		if lost == nil {
			var err error
			if lost, err = session(ctx, cons); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if lost == nil {
			pause.Reset()
			continue
		}
		if errors.Is(lost, jetstream.ErrConsumerNotFound) || errors.Is(lost, jetstream.ErrConsumerDeleted) {
			cons = nil
		}
		wait := pause.NextBackOff()
		log.Warn(d.LostMsg, "consumer", d.Config.Durable, "stream", d.Stream, "err", lost, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Consume is the Session of a consumer feeding handle, a serial handler,
// batch messages per pull (PullMaxMessages). The session lasts until ctx
// is done, when it drains the messages already pulled through handle
// (which must then hand them back, Nak, at once) and ends once handle is
// no longer running; or until the consumer goes away (lost).
func (d *Durable) Consume(handle jetstream.MessageHandler, batch int) Session {
	return func(ctx context.Context, cons jetstream.Consumer) (lost, err error) {
		gone := make(chan error, 1)
		cc, err := cons.Consume(handle, jetstream.PullMaxMessages(batch),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if errors.Is(err, jetstream.ErrNoHeartbeat) {
					// Pulls to a deleted consumer go unanswered: ask
					// whether it is still there.
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
				if d.Log != nil {
					d.Log.Warn("consume", "consumer", d.Config.Durable, "err", err)
				}
			}), jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat))
		if err != nil {
			return nil, fmt.Errorf("consume %s on %s: %w", d.Config.Durable, d.Stream, err)
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
}
