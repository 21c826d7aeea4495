package consumer

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// The ledger. For every event it matches to at least one webhook the
// matcher records which webhooks it chose (streams.Matched on
// streams.MatchedSubject), so that the registry can tell a delivery owed
// and never attempted from one never owed: GET /v1/events/{id} and the
// audit rest on it. The record is stored before the event is acked: an
// event acked has its record, or comes back and is matched again.
//
// Why batches: a message per event cost the matcher about a third more
// CPU (a stored message and its ack per event; measured with
// BenchmarkMatcher). The acker instead acks, in one go, the events whose
// deliveries are stored while it waited, after publishing their records
// as one JSON array (of up to matchedBatch records, and matchedMaxBytes).
// No timer lingers for more: an event that finds the acker idle goes out
// at once, alone.

// Tuning of the matched records.
const (
	// matchedBatch bounds the events acked together, and so their
	// records in one message.
	matchedBatch = 256
	// matchedMaxBytes bounds the JSON of one message, well under NATS's
	// max_payload (1 MiB by default).
	matchedMaxBytes = 256 << 10
	// matchedChunk bounds the webhook ids of one record: an event matched
	// to more has several records (the registry keeps their union), so
	// that none outgrows a message.
	matchedChunk = 2048
)

// matchedRecord returns the JSON of the records of the webhooks evt was
// matched to, one per chunk of up to matchedChunk of them; md is the
// event's metadata, nil when unreadable (event_seq 0).
func matchedRecord(md *jetstream.MsgMetadata, evt *switchboard.Event, matches []*hook) [][]byte {
	var seq uint64
	if md != nil {
		seq = md.Sequence.Stream
	}
	at := time.Now().UTC()
	out := make([][]byte, 0, (len(matches)+matchedChunk-1)/matchedChunk)
	for len(matches) > 0 {
		chunk := matches[:min(len(matches), matchedChunk)]
		matches = matches[len(chunk):]
		b := make([]byte, 0, 160+len(evt.ID)+len(chunk)*34)
		b = append(b, `{"tenant_id":`...)
		b = appendJSONString(b, evt.TenantID)
		b = append(b, `,"event_id":`...)
		b = appendJSONString(b, evt.ID)
		b = append(b, `,"event_type":`...)
		b = appendJSONString(b, evt.Type)
		b = append(b, `,"event_seq":`...)
		b = strconv.AppendUint(b, seq, 10)
		b = append(b, `,"at":"`...)
		b = at.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","webhook_ids":[`...)
		for i, h := range chunk {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, h.id)
		}
		out = append(out, append(b, "]}"...))
	}
	return out
}

// ackMatched publishes the matched records of ready, whose deliveries are
// all stored, and then acks their events; when a record cannot be stored
// it hands those events back instead, to be matched again (their
// deliveries' msg ids deduplicate them). It returns ready emptied, for
// reuse.
func (m *Matcher) ackMatched(ctx context.Context, ready []*pendingEvent, log *slog.Logger) []*pendingEvent {
	size := 2
	for _, pe := range ready {
		for _, rec := range pe.matched {
			size += len(rec) + 1
		}
	}
	data := make([]byte, 0, min(size, matchedMaxBytes))
	var err error
	flush := func() {
		if len(data) > 1 && err == nil {
			err = streams.Publish(ctx, m.JS, streams.MatchedMsg(append(data, ']')), republish)
		}
		data = data[:0]
	}
	for _, pe := range ready {
		for _, rec := range pe.matched {
			if len(data) > 1 && len(data)+len(rec)+2 > matchedMaxBytes {
				flush()
			}
			if len(data) == 0 {
				data = append(data, '[')
			} else {
				data = append(data, ',')
			}
			data = append(data, rec...)
		}
	}
	flush()
	for _, pe := range ready {
		if err != nil {
			if err := pe.msg.NakWithDelay(publishFailureDelay); err != nil {
				log.Warn("nak event", "event_id", pe.id, "err", err)
			}
			continue
		}
		if err := pe.msg.Ack(); err != nil {
			// The deliveries and the record are stored: if the event comes
			// back, the msg ids deduplicate the deliveries and the record
			// changes nothing.
			log.Warn("ack event", "event_id", pe.id, "err", err)
		}
		m.Metrics.events[resultMatched].Inc()
		m.Metrics.deliveriesCreated.Add(float64(len(pe.pubs)))
	}
	if err != nil {
		log.Warn("matched records not stored; handing the events back", "events", len(ready), "err", err)
	}
	clear(ready)
	return ready[:0]
}
