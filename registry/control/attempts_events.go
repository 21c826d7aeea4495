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
var errScanLimit = streams.ErrScanLimit

// run calls fn with each message in stream order until fn returns false,
// the end of the stream (as it was when the scan began) is reached, or
// the limit of messages were read (errScanLimit): a streams.Scan.
func (s eventScan) run(ctx context.Context, js jetstream.JetStream, fn func(jetstream.Msg) bool) error {
	scan := streams.Scan{
		Stream: s.stream, Filter: s.filter, StartTime: s.start, HeadersOnly: s.headersOnly, StopAtLast: true,
		Limit: s.limit, Batch: scanBatch, Wait: scanWait,
		Idle: time.Minute, // removed even if the delete is lost
	}
	if scan.Stream == "" {
		scan.Stream = streams.Events
	}
	if scan.Limit <= 0 {
		scan.Limit = maxEventScan
	}
	if !s.headersOnly {
		scan.MaxBytes = scanMaxBytes(js)
	}
	return scan.Run(ctx, js, func(msg jetstream.Msg) (bool, error) { return fn(msg), nil })
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
