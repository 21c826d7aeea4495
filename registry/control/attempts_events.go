package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// Reading SB_EVENTS. JetStream indexes a stream by sequence, subject and
// time, not by header, so an event is found by its id (its Nats-Msg-Id) by
// scanning the narrowest range known to hold it: its tenant and type (the
// subject) and, when the attempt log knows the event, from shortly before
// its first attempt. The registry keeps no index of its own: one would
// mean ingesting every event (a second consumer on SB_EVENTS at full rate
// and a SQLite row per event) to serve a lookup that is rare and that the
// attempt log already narrows to a few messages.

// Bounds of the scans.
const (
	// eventLookback is how long before its first attempt an event is
	// looked for: a delivery normally follows its event within
	// milliseconds; past that, the scan widens to the subject's start.
	eventLookback = 5 * time.Minute
	// maxEventScan bounds the messages one lookup or recover call reads.
	maxEventScan = 100_000
	scanBatch    = 512
	scanWait     = time.Second
	// scanBatchBytes bounds the bodies a recover call holds at once (see
	// scanMaxBytes): a fetch, then the candidates awaiting their publish.
	scanBatchBytes = 4 << 20
)

// eventScan reads SB_EVENTS (or stream) on filter from start (zero: the
// beginning).
type eventScan struct {
	filter      string
	start       time.Time
	headersOnly bool
	stream      string // "": SB_EVENTS; never a work queue, which takes no second consumer
	limit       int    // messages read at most; 0: maxEventScan
}

// errScanLimit says a scan read maxEventScan messages without finishing.
var errScanLimit = errors.New("scan limit reached")

// run calls fn with each message in stream order until fn returns false,
// the end of the stream (as it was when the scan began) is reached, or
// the limit of messages were read (errScanLimit). It reads through an
// ephemeral consumer that it deletes before returning.
func (s eventScan) run(ctx context.Context, js jetstream.JetStream, fn func(jetstream.Msg) bool) error {
	name, limit := s.stream, s.limit
	if name == "" {
		name = streams.Events
	}
	if limit <= 0 {
		limit = maxEventScan
	}
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     s.filter,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       s.headersOnly,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute, // removed even if the delete below is lost
	}
	if !s.start.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &s.start
	}
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("scan %s: %w", name, err)
	}
	last := stream.CachedInfo().State.LastSeq // events stored later are not read
	cons, err := stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("scan %s: %w", name, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, name, cons.CachedInfo().Name)
	}()
	if cons.CachedInfo().NumPending == 0 {
		return nil
	}
	opts := []jetstream.FetchOpt{jetstream.FetchMaxWait(scanWait)}
	if !s.headersOnly {
		// Bodies are the tenant's, up to max_payload each: bound the bytes
		// of a batch, not just its count.
		opts = append(opts, jetstream.FetchMaxBytes(scanMaxBytes(js)))
	}
	for read := 0; ; {
		batch, err := cons.Fetch(scanBatch, opts...)
		if err != nil {
			return fmt.Errorf("scan %s: %w", name, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			read++
			if !fn(msg) {
				return nil
			}
			if md, err := msg.Metadata(); err == nil && (md.NumPending == 0 || md.Sequence.Stream >= last) {
				return nil
			}
			if read >= limit {
				return errScanLimit
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("scan %s: %w", name, err)
		}
		if n == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// scanMaxBytes bounds the bytes of one fetch of a scan that reads bodies:
// room for the largest message NATS takes, which a smaller bound would
// refuse to deliver at all.
func scanMaxBytes(js jetstream.JetStream) int {
	return max(scanBatchBytes, 2*int(js.Conn().MaxPayload()))
}

// FindEvent returns the SB_EVENTS message of event id of tenant, or nil
// when the stream does not hold it (never stored, or past the stream's
// MaxAge). typ and firstAttempt, when known from the attempt log, narrow
// the scan.
func FindEvent(ctx context.Context, js jetstream.JetStream, tenant, id, typ string, firstAttempt time.Time) (*jetstream.RawStreamMsg, error) {
	var seq uint64
	match := func(msg jetstream.Msg) bool {
		if streams.EventID(msg.Subject(), msg.Headers(), nil) == id {
			if md, err := msg.Metadata(); err == nil {
				seq = md.Sequence.Stream
			}
			return false
		}
		return true
	}
	var scans []eventScan
	if typ != "" && !firstAttempt.IsZero() {
		subject := streams.EventSubject(tenant, typ)
		scans = append(scans, eventScan{filter: subject, start: firstAttempt.Add(-eventLookback), headersOnly: true},
			eventScan{filter: subject, headersOnly: true})
	} else {
		scans = append(scans, eventScan{filter: streams.EventsPrefix + tenant + ".>", headersOnly: true})
	}
	for _, s := range scans {
		if err := s.run(ctx, js, match); err != nil && !errors.Is(err, errScanLimit) {
			return nil, fmt.Errorf("find event %s: %w", id, err)
		}
		if seq != 0 {
			break
		}
	}
	if seq == 0 {
		return nil, nil
	}
	stream, err := js.Stream(ctx, streams.Events)
	if err != nil {
		return nil, fmt.Errorf("find event %s: %w", id, err)
	}
	msg, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) { // aged out meanwhile
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find event %s: %w", id, err)
	}
	return msg, nil
}
