package producer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
)

// PublishBatch publishes many events at the throughput of asynchronous
// publishing and returns once JetStream has acknowledged every one of them,
// with one Result per event, in order. Each event is normalized and
// validated first; one invalid event fails the whole batch before anything
// is sent. Publishes that JetStream refuses for want of capacity or does
// not acknowledge are sent again under the same message id, up to the
// number of attempts (WithAttempts).
//
// On error some events may have been stored. Publishing the same events
// again is safe: Normalize has set their ids, and JetStream drops the
// duplicates.
//
// Errors: an EINVALID *switchboard.Error whose fields are prefixed with the
// event's index ("[3].type"); an option's error; otherwise the error of the
// last failed publish, wrapped, or ctx's error.
func (c *Client) PublishBatch(ctx context.Context, evts []*switchboard.Event, opts ...PublishOption) ([]Result, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := c.validateBatch(evts, time.Now()); err != nil {
		return nil, err
	}
	b := &batch{
		client:  c,
		evts:    evts,
		msgs:    make([]*nats.Msg, len(evts)),
		results: make([]Result, len(evts)),
		resent:  make([]bool, len(evts)),
	}
	pending := make([]int, len(evts))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 1; ; attempt++ {
		if err := b.send(ctx, pending); err != nil {
			c.metrics.rejectedUnavailable.Add(float64(len(evts) - b.acked))
			return nil, fmt.Errorf("producer: publish batch: %w", err)
		}
		pending, b.failed = b.failed, pending[:0]
		if len(pending) == 0 {
			return b.results, nil
		}
		if attempt == o.attempts {
			c.metrics.rejectedUnavailable.Add(float64(len(pending)))
			return nil, fmt.Errorf("producer: publish batch: %d of %d events not acknowledged after %d attempts: %w",
				len(pending), len(evts), attempt, b.lastErr)
		}
		if err := sleep(ctx, c.RetryWait); err != nil {
			c.metrics.rejectedUnavailable.Add(float64(len(pending)))
			return nil, fmt.Errorf("producer: publish batch: %w", err)
		}
	}
}

// validateBatch normalizes and validates every event, so that a client
// learns of every failing field of every event at once.
func (c *Client) validateBatch(evts []*switchboard.Event, now time.Time) error {
	fe := switchboard.FieldErrors{}
	invalid := 0
	for i, evt := range evts {
		evt.Normalize(now)
		err := evt.Validate()
		if err == nil {
			continue
		}
		var e *switchboard.Error
		if !errors.As(err, &e) {
			return fmt.Errorf("producer: validate event %d: %w", i, err)
		}
		invalid++
		for field, reasons := range e.Fields {
			fe[fmt.Sprintf("[%d].%s", i, field)] = reasons
		}
	}
	c.metrics.rejectedInvalid.Add(float64(invalid))
	return fe.Err()
}

// batch is the state of one PublishBatch call.
type batch struct {
	client  *Client
	evts    []*switchboard.Event
	msgs    []*nats.Msg // encoded on first send, re-sent as they are
	results []Result
	resent  []bool // failed once; see Result.Duplicate
	acked   int

	window  []inflight // sent, ack not yet collected
	failed  []int      // indexes to send again in the next round
	lastErr error      // why the last of failed failed
}

type inflight struct {
	i      int
	future jetstream.PubAckFuture
}

// send publishes the events at indexes asynchronously and collects every
// ack. Events that may succeed when sent again are added to b.failed; the
// error is for what would fail again (see retryable) or ctx's.
func (b *batch) send(ctx context.Context, indexes []int) error {
	for _, i := range indexes {
		// PublishMsgAsync takes no context: without this check a canceled
		// batch would go on sending to its end.
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.sendOne(ctx, i); err != nil {
			return err
		}
	}
	return b.collect(ctx)
}

func (b *batch) sendOne(ctx context.Context, i int) error {
	if b.msgs[i] == nil {
		msg, err := eventMsg(b.evts[i], time.Now())
		if err != nil {
			return err
		}
		b.msgs[i] = msg
	}
	for stalled := false; ; stalled = true {
		f, err := b.client.js.PublishMsgAsync(b.msgs[i])
		if err == nil {
			b.window = append(b.window, inflight{i: i, future: f})
			return nil
		}
		// Too many acks outstanding: the message was NOT sent. Let the
		// acks in flight arrive, then send it once more before counting it
		// as failed for this round.
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) && !stalled {
			if err := b.collect(ctx); err != nil {
				return err
			}
			if err := b.awaitAsyncComplete(ctx); err != nil {
				return err
			}
			continue
		}
		if !retryable(err) {
			return fmt.Errorf("event %s: %w", b.evts[i].ID, err)
		}
		b.fail(i, err)
		return nil
	}
}

// awaitAsyncComplete waits until nothing published through the client's
// JetStream awaits an ack, including other callers' publishes, or
// AttemptTimeout has passed.
func (b *batch) awaitAsyncComplete(ctx context.Context) error {
	t := time.NewTimer(b.client.AttemptTimeout)
	defer t.Stop()
	select {
	case <-b.client.js.PublishAsyncComplete():
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// collect waits for the ack of every publish in the window. When none
// arrives for AttemptTimeout, the rest of the window is failed: their acks
// may be lost, and sending them again is safe.
func (b *batch) collect(ctx context.Context) error {
	timeout := b.client.AttemptTimeout
	t := time.NewTimer(timeout)
	defer t.Stop()
	for n, in := range b.window {
		select {
		case ack := <-in.future.Ok():
			dup := ack.Duplicate && !b.resent[in.i]
			b.results[in.i] = Result{ID: b.evts[in.i].ID, Sequence: ack.Sequence, Duplicate: dup}
			b.acked++
			b.client.metrics.accepted(dup)
		case err := <-in.future.Err():
			if !retryable(err) {
				return fmt.Errorf("event %s: %w", b.evts[in.i].ID, err)
			}
			b.fail(in.i, err)
		case <-t.C:
			for _, rest := range b.window[n:] {
				b.fail(rest.i, jetstream.ErrAsyncPublishTimeout)
			}
			b.window = b.window[:0]
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		t.Reset(timeout)
	}
	b.window = b.window[:0]
	return nil
}

func (b *batch) fail(i int, err error) {
	b.failed = append(b.failed, i)
	b.resent[i] = true
	b.lastErr = err
}
