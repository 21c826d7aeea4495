package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// The attempt log. Every attempt the deliverer settles is published as a
// switchboard.Attempt to streams.AttemptSubject, asynchronously and before
// the delivery is acked, and is never waited for by the worker.
//
// Why a record may be lost, and why that is acceptable: the delivery's own
// guarantee rests on SB_DELIVERIES, the retry schedule and SB_DEAD, which
// are stored (and checked) before the ack, whatever becomes of the record.
// A record JetStream refuses or never acknowledges is published again, with
// the same Nats-Msg-Id (so a repeat is deduplicated), by the recorder's
// goroutine; one that still fails is logged and counted in
// switchboard_attempts_unrecorded_total. A lost record leaves a gap in the
// attempt log, one failure uncounted by auto-disable, and, for a lost
// "delivered" record, an event that a recover call may send once more:
// at least once, which receivers dedupe on webhook-id. Making the record
// part of the ack's guarantee (a synchronous publish per attempt) would
// cost a round trip per delivery for what is observability.

// Tuning of the recorder.
const (
	// recordQueue bounds the records whose publish acks are awaited. When
	// it is full (JetStream far behind), new records are dropped and
	// counted rather than slow deliveries down.
	recordQueue = 8192
	// recordAckWait bounds the wait for one record's publish ack.
	recordAckWait = 10 * time.Second
	// recordDrain bounds how long stopping waits for the acks of records
	// already published.
	recordDrain = 10 * time.Second
)

// attemptTiming is when an attempt's request was made and how long it took.
type attemptTiming struct {
	sent time.Time     // zero when no request was made
	took time.Duration // from building the request to reading its answer
	// status is the receiver's answer; 0 when none came.
	status int
	// body is the start of a 2xx answer's body, for the attempt log (a
	// failure's is in its attemptError).
	body string
}

// pendingRecord is a record whose publish ack is awaited; fut is nil when
// PublishMsgAsync refused it (err says why) and it must be published again.
type pendingRecord struct {
	msg *nats.Msg
	fut jetstream.PubAckFuture
	err error
}

// attemptRecorder publishes attempt records and checks their acks.
type attemptRecorder struct {
	js      jetstream.JetStream
	log     *slog.Logger
	metrics *Metrics
	pending chan pendingRecord
	done    chan struct{}
	// stopped ends the waits once stopping has taken recordDrain: what is
	// still pending then is counted as lost.
	stopped context.Context
}

// startRecorder starts the Deliverer's recorder and returns the function
// that stops it, which Run calls once no worker records any more.
func (d *Deliverer) startRecorder() (stop func()) {
	stopped, cancel := context.WithCancel(context.Background())
	r := &attemptRecorder{
		js: d.JS, log: d.log, metrics: d.Metrics,
		pending: make(chan pendingRecord, recordQueue), done: make(chan struct{}), stopped: stopped,
	}
	d.recorder = r
	go r.run()
	return func() {
		close(r.pending)
		t := time.AfterFunc(recordDrain, cancel)
		<-r.done
		t.Stop()
		cancel()
	}
}

// recordAttempt publishes the record of the attempt dlv has just had, as
// settle decided it. Deliveries that had no attempt and are not given up
// (handed back at shutdown, webhook not known yet, webhook deleted) are
// not recorded: nothing happened to them that the log should show.
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
		a.Outcome = switchboard.AttemptRetrying
	case outcomeDeadLettered:
		a.Outcome = switchboard.AttemptDeadLettered
		a.Reason = dec.reason
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
	a.EventType = eventType(dlv.body)
	a.ResponseBody = dlv.timing.body
	if err != nil {
		a.ErrorClass = errorClass(err)
		a.Error = truncate(printable([]byte(err.Error())), maxLastError)
		var ae *attemptError
		if errors.As(err, &ae) {
			a.ResponseBody = truncate(ae.Body, switchboard.MaxAttemptBody)
		}
	}
	a.ID = switchboard.NewID("att_")
	d.recorder.publish(&a)
}

// publish hands the record to JetStream without waiting for its ack.
func (r *attemptRecorder) publish(a *switchboard.Attempt) {
	data := appendAttempt(make([]byte, 0, 384), a)
	m := &nats.Msg{
		Subject: streams.AttemptSubject(a.TenantID, a.WebhookID),
		Data:    data,
		Header:  nats.Header{jetstream.MsgIDHeader: {a.ID}},
	}
	fut, err := r.js.PublishMsgAsync(m)
	select {
	case r.pending <- pendingRecord{msg: m, fut: fut, err: err}:
	default:
		r.lost(a.ID, errors.New("too many attempt records awaiting their acks"))
	}
}

// run checks the acks of the records in order, publishing again those
// that failed, until pending is closed and drained.
func (r *attemptRecorder) run() {
	defer close(r.done)
	timer := time.NewTimer(recordAckWait)
	defer timer.Stop()
	for p := range r.pending {
		if p.err == nil {
			timer.Reset(recordAckWait)
			select {
			case <-p.fut.Ok():
				continue
			case p.err = <-p.fut.Err():
			case <-timer.C:
				p.err = errors.New("no publish ack")
			case <-r.stopped.Done():
				p.err = errors.New("deliverer stopped before the publish ack")
			}
		}
		ctx, cancel := context.WithTimeout(r.stopped, publishTimeout)
		_, err := r.js.PublishMsg(ctx, p.msg)
		cancel()
		if err != nil {
			r.lost(p.msg.Header.Get(jetstream.MsgIDHeader), errors.Join(p.err, err))
		}
	}
}

func (r *attemptRecorder) lost(id string, err error) {
	r.metrics.attemptsUnrecorded.Inc()
	r.log.Warn("attempt record not stored", "attempt_id", id, "err", err)
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
		b = appendJSONString(b, a.Reason)
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

// eventType reads the "type" of a delivery body (the event's payload, as
// switchboard.Event.AppendPayload writes it: the type, a subject-safe token,
// follows the id) without decoding the rest; "" when it has none.
func eventType(body []byte) string {
	const key = `,"type":"`
	if i := bytes.Index(body, []byte(key)); i >= 0 {
		rest := body[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j > 0 && bytes.IndexByte(rest[:j], '\\') < 0 {
			return string(rest[:j])
		}
	}
	var p struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	return p.Type
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
