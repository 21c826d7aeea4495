package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// The attempt log. Every attempt the deliverer settles is recorded as a
// switchboard.Attempt on streams.AttemptBatchSubject, many to a message,
// asynchronously and before the delivery is acked, and is never waited for
// by the worker.
//
// Why batches: a message per attempt cost JetStream a third of its work
// per delivery (a stored message, and the registry's deliveries and acks).
// The worker hands its encoded record to the recorder without blocking;
// the recorder's goroutine takes whatever records have arrived (up to
// recordBatchCount, and recordBatchBytes of JSON, well under NATS's
// max_payload) and publishes them as one JSON array whose Nats-Msg-Id is
// the id of its first record. No timer lingers for more: a record that
// finds the recorder idle goes out at once, alone, so that the attempts
// API shows it soon after the delivery; under load, the batches grow by
// themselves while the recorder waits for a free slot among the
// recordInflight publishes whose acks are awaited.
//
// Why a record may be lost, and why that is acceptable: the delivery's own
// guarantee rests on SB_DELIVERIES, the retry schedule and SB_DEAD, which
// are stored (and checked) before the ack, whatever becomes of the record.
// A batch JetStream refuses or never acknowledges is published again, with
// the same data and Nats-Msg-Id (so a repeat is deduplicated), by the
// recorder; records of a batch that still fails, and records dropped
// because the recorder is far behind, are logged and counted, one by one,
// in switchboard_attempts_unrecorded_total. A lost record leaves a gap in
// the attempt log, one failure uncounted by auto-disable, and, for a lost
// "delivered" record, an event that a recover call may send once more:
// at least once, which receivers dedupe on webhook-id. Making the record
// part of the ack's guarantee (a synchronous publish per attempt) would
// cost a round trip per delivery for what is observability. Stopping
// publishes what was handed over, then waits up to recordDrain for the
// acks; what is unacknowledged then is counted as lost.

// Tuning of the recorder.
const (
	// recordQueue bounds the records handed over and not yet published.
	// When it is full (JetStream far behind), new records are dropped and
	// counted rather than slow deliveries down.
	recordQueue = 8192
	// recordBatchCount and recordBatchBytes bound a batch: its records and
	// the size of its JSON (records carry up to 2 KiB of error and body;
	// NATS refuses messages over max_payload, 1 MiB by default).
	recordBatchCount = 256
	recordBatchBytes = 256 << 10
	// recordInflight bounds the batches whose publish acks are awaited. It
	// is what makes batches grow under load: while every slot is taken,
	// records gather for the next batch.
	recordInflight = 4
	// recordAckWait bounds the wait for one batch's publish ack.
	recordAckWait = 10 * time.Second
	// recordDrain bounds how long stopping waits for the acks of batches
	// already published.
	recordDrain = 10 * time.Second
)

// attemptTiming is when an attempt's request was made and how long it took.
type attemptTiming struct {
	sent time.Time     // zero when no request was made
	took time.Duration // from building the request to reading its answer
	// status is the receiver's answer; 0 when none came.
	status int
	// body is the start of the answer's body, for the attempt log; a
	// failure's is in its attemptError too, for the dead letter.
	body string
}

// record is an attempt record handed to the recorder: its id and its JSON.
type record struct {
	id   string
	data []byte
}

// pendingBatch is a batch whose publish ack is awaited.
type pendingBatch struct {
	streams.Pending
	ids []string // of its records, in order
}

// attemptRecorder publishes attempt records in batches and checks their
// acks. Its two goroutines, started by start and ended by the function it
// returns: collect, which batches the records and publishes the batches,
// and check, which awaits their acks in order.
type attemptRecorder struct {
	js      jetstream.JetStream
	log     *slog.Logger
	metrics *Metrics
	records chan record       // handed over by the workers, not yet published
	pending chan pendingBatch // published, in order, for check
	// slots holds a token per batch published and not yet checked, so
	// that at most recordInflight are.
	slots chan struct{}
	done  chan struct{} // closed once check has checked the last batch
	// stopped ends the waits once stopping has taken recordDrain: what is
	// still pending then is counted as lost.
	stopped context.Context
	cancel  context.CancelFunc
}

func newAttemptRecorder(js jetstream.JetStream, log *slog.Logger, metrics *Metrics) *attemptRecorder {
	stopped, cancel := context.WithCancel(context.Background())
	return &attemptRecorder{
		js: js, log: log, metrics: metrics,
		records: make(chan record, recordQueue),
		pending: make(chan pendingBatch, recordInflight),
		slots:   make(chan struct{}, recordInflight),
		done:    make(chan struct{}), stopped: stopped, cancel: cancel,
	}
}

// startRecorder starts the Deliverer's recorder and returns the function
// that stops it, which Run calls once no worker records any more.
func (d *Deliverer) startRecorder() (stop func()) {
	d.recorder = newAttemptRecorder(d.JS, d.log, d.Metrics)
	return d.recorder.start()
}

// start runs the recorder until the returned stop, which must be called
// once nothing calls publish any more: it publishes the records handed
// over, and waits for the acks up to recordDrain.
func (r *attemptRecorder) start() (stop func()) {
	go r.collect()
	go r.check()
	return func() {
		close(r.records)
		t := time.AfterFunc(recordDrain, r.cancel)
		<-r.done
		t.Stop()
		r.cancel()
	}
}

// recordAttempt publishes the record of the attempt dlv has just had, as
// settle decided it. Deliveries that had no attempt and are not given up
// (handed back at shutdown, webhook not known yet, webhook deleted,
// refused by an open breaker and retried) are not recorded: nothing
// happened to them that the log should show.
func (d *Deliverer) recordAttempt(dlv *delivery, made int, err error, dec decision) {
	if d.recorder == nil {
		return
	}
	a := switchboard.Attempt{
		TenantID:   dlv.tenant,
		WebhookID:  dlv.webhookID,
		EventID:    dlv.eventID,
		Number:     made,
		StatusCode: dlv.timing.status,
		At:         dlv.timing.sent.UTC(),
		LatencyMS:  float64(dlv.timing.took.Microseconds()) / 1000,
	}
	switch dec.outcome {
	case outcomeDelivered:
		a.Outcome = switchboard.AttemptDelivered
	case outcomeRetryScheduled:
		if errors.As(err, new(*openError)) {
			// Not sent: a dead receiver's backlog would write a record
			// per delivery per scheduled attempt into the registry. Its
			// dead letter is recorded, which is what auto-disable counts.
			return
		}
		a.Outcome = switchboard.AttemptRetrying
	case outcomeDeadLettered:
		a.Outcome = switchboard.AttemptDeadLettered
		a.Reason = switchboard.Reason(dec.reason)
	case outcomeRequeued:
		// A request was made but what follows it was not stored: the
		// delivery comes back and is attempted again.
		if dlv.timing.sent.IsZero() || errors.Is(err, errShutdown) {
			return
		}
		a.Outcome = switchboard.AttemptRetrying
	default:
		return
	}
	if a.At.IsZero() { // given up without a request (webhook inactive, malformed)
		a.At = time.Now().UTC()
	}
	a.EventType = streams.DeliveryEventType(dlv.header, dlv.body)
	a.ResponseBody = dlv.timing.body
	if err != nil {
		a.ErrorClass = errorClass(err)
		a.Error = truncate(printable([]byte(netguard.PublicError(err))), maxLastError)
	}
	a.ID = switchboard.NewID("att_")
	d.recorder.publish(&a)
}

// publish hands the record to the recorder without waiting for it to be
// published.
func (r *attemptRecorder) publish(a *switchboard.Attempt) {
	select {
	case r.records <- record{id: a.ID, data: appendAttempt(make([]byte, 0, 384), a)}:
	default:
		r.lost([]string{a.ID}, errors.New("too many attempt records waiting to be published"))
	}
}

// collect publishes the records as they arrive, each batch made of those
// that arrived while the recorder was busy or waiting for a slot, until
// records is closed and drained.
func (r *attemptRecorder) collect() {
	defer close(r.pending)
	var next *record // taken from records, too big for the batch before
	for {
		if next == nil {
			rec, ok := <-r.records
			if !ok {
				return
			}
			next = &rec
		}
		// A slot first: what arrives while it is awaited joins this batch.
		r.slots <- struct{}{}
		data := append(make([]byte, 0, max(4096, len(next.data)+2)), '[')
		data = append(data, next.data...)
		ids := []string{next.id}
		next = nil
	batch:
		for len(ids) < recordBatchCount {
			select {
			case rec, ok := <-r.records:
				if !ok {
					break batch // the next turn returns
				}
				if len(data)+len(rec.data)+2 > recordBatchBytes { // ",", "]"
					next = &rec
					break batch
				}
				data = append(append(data, ','), rec.data...)
				ids = append(ids, rec.id)
			default:
				break batch
			}
		}
		m := streams.AttemptBatchMsg(append(data, ']'), ids[0])
		r.pending <- pendingBatch{Pending: streams.PublishAsync(r.js, m), ids: ids}
	}
}

// check checks the acks of the batches in order, publishing again those
// that failed, until pending is closed and drained.
func (r *attemptRecorder) check() {
	defer close(r.done)
	timer := time.NewTimer(recordAckWait)
	defer timer.Stop()
	for p := range r.pending {
		timer.Reset(recordAckWait)
		if err := p.Await(r.stopped, r.js, timer.C, streams.Retry{Tries: 1, Timeout: publishTimeout}); err != nil {
			r.lost(p.ids, errors.Join(p.Err, err))
		}
		<-r.slots
	}
}

// lost counts and logs records that will not be stored.
func (r *attemptRecorder) lost(ids []string, err error) {
	r.metrics.attemptsUnrecorded.Add(float64(len(ids)))
	r.log.Warn("attempt records not stored", "records", len(ids), "attempt_ids", ids, "err", err)
}

// appendAttempt appends the JSON of a to b, byte for byte what
// json.Marshal writes, without its reflection: it is on every delivery's
// path, where json.Marshal cost about half of recording an attempt.
func appendAttempt(b []byte, a *switchboard.Attempt) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, a.ID)
	b = append(b, `,"tenant_id":`...)
	b = appendJSONString(b, a.TenantID)
	b = append(b, `,"webhook_id":`...)
	b = appendJSONString(b, a.WebhookID)
	b = append(b, `,"event_id":`...)
	b = appendJSONString(b, a.EventID)
	b = append(b, `,"event_type":`...)
	b = appendJSONString(b, a.EventType)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Number), 10)
	b = append(b, `,"at":`...)
	at, err := a.At.MarshalJSON()
	if err != nil { // a year outside 0..9999, where json.Marshal fails: keep the record, timeless
		at = []byte(`"0001-01-01T00:00:00Z"`)
	}
	b = append(b, at...)
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, string(a.Outcome))
	if a.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, string(a.Reason))
	}
	if a.StatusCode != 0 {
		b = append(b, `,"status_code":`...)
		b = strconv.AppendInt(b, int64(a.StatusCode), 10)
	}
	b = append(b, `,"latency_ms":`...)
	if l := math.Abs(a.LatencyMS); l == 0 || l >= 1e-6 && l < 1e21 {
		b = strconv.AppendFloat(b, a.LatencyMS, 'f', -1, 64)
	} else { // not a latency; json.Marshal's exponent form
		v, _ := json.Marshal(a.LatencyMS)
		b = append(b, v...)
	}
	for _, f := range [...]struct{ key, value string }{
		{`,"error_class":`, a.ErrorClass}, {`,"error":`, a.Error}, {`,"response_body":`, a.ResponseBody},
	} {
		if f.value != "" {
			b = append(b, f.key...)
			b = appendJSONString(b, f.value)
		}
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: as it is when nothing in it
// needs escaping (ids, types, most errors), else as json.Marshal writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			v, _ := json.Marshal(s) // cannot fail for a string
			return append(b, v...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// errorClass sorts a failure as switchboard.Attempt.ErrorClass says.
func errorClass(err error) string {
	var ae *attemptError
	if errors.As(err, &ae) {
		var ne net.Error
		switch {
		case ae.Status > 0:
			return "status"
		case ae.Refused():
			return "refused"
		case errors.Is(ae.Err, context.DeadlineExceeded) || errors.As(ae.Err, &ne) && ne.Timeout():
			return "timeout"
		default:
			return "connection"
		}
	}
	if errors.As(err, new(*openError)) {
		return "circuit_open"
	}
	return "invalid"
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
