package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// Defaults of the Deliverer's settings.
const (
	// DefaultWorkers is how many deliveries one process makes at once.
	DefaultWorkers = 128
	// DefaultMaxAckPending is how many deliveries all deliverer processes
	// together hold unacknowledged: every worker busy plus a pull batch
	// buffered, for a few processes.
	DefaultMaxAckPending = 1024
	// DefaultAckWait is how long JetStream waits for a delivery's ack
	// before giving it to another worker. It exceeds the longest webhook
	// timeout (switchboard.MaxTimeoutSeconds), so that one InProgress as
	// the attempt starts keeps the delivery a worker's until it is settled
	// (see keepAlive).
	DefaultAckWait = switchboard.MaxTimeoutSeconds*time.Second + 30*time.Second
)

// How much of a response is read: the start of a failure's body is kept
// for the dead letter; up to maxDrain bytes are read and discarded so the
// connection can be reused; a longer body closes the connection instead.
const (
	maxExcerpt = 256
	maxDrain   = 64 << 10
)

// Deliverer signs and sends deliveries. It consumes SB_DELIVERIES with a
// durable pull consumer (streams.DelivererConsumer) and hands each message
// to one of Workers goroutines, which send the stored body to the webhook
// as its signer.Endpoint builds the request (method, URL, auth, headers,
// properties, Standard Webhooks signatures) and then settle the message as
// decide says: ack, ack after scheduling a retry, ack after dead-lettering,
// or Nak.
//
// Each webhook's attempts go through a gate (isolation.go): a cap on those
// in flight and a circuit breaker. A delivery the gate refuses is deferred:
// scheduled again and acked, not attempted, its retries untouched.
//
// Attempts are counted in the delivery's HeaderAttempts (attempts already
// made; absent means none). A webhook's max_retries counts retries after
// the first attempt: max_retries = 3 allows up to 4 attempts in all.
//
// Set the fields, then call Run. Fields must not change while Run runs.
type Deliverer struct {
	// JS is the JetStream to consume from and publish to. Required.
	JS jetstream.JetStream
	// Index supplies the webhooks. Required; Run waits until it is ready.
	Index *Index
	// Logger gets one line per attempt: Debug for a success, Info for a
	// scheduled retry, Warn for a dead letter or drop. Nil discards.
	Logger *slog.Logger
	// Metrics counts outcomes; nil counts into unregistered metrics.
	Metrics *Metrics
	// Retry sets the delays between attempts; the zero value means
	// DefaultRetryPolicy.
	Retry RetryPolicy
	// Workers is how many deliveries this process makes at once; 0 means
	// DefaultWorkers.
	Workers int
	// MaxInFlightPerWebhook caps this process's attempts in flight to one
	// webhook, so that a slow receiver holds at most this many workers; 0
	// means DefaultMaxInFlightPerWebhook(Workers). See isolation.go.
	MaxInFlightPerWebhook int
	// BreakerFailures is how many consecutive failed attempts open a
	// webhook's circuit breaker; 0 means DefaultBreakerFailures.
	BreakerFailures int
	// BreakerCooldown is how long an open breaker rejects attempts before
	// it lets one probe through; 0 means DefaultBreakerCooldown.
	BreakerCooldown time.Duration
	// MaxAckPending caps the deliveries the consumer hands out unacked, to
	// every process; 0 means DefaultMaxAckPending. Retries and failures do
	// not hold these slots: they are acked and scheduled.
	MaxAckPending int
	// AckWait: 0 means DefaultAckWait. Keep it above the longest webhook
	// timeout.
	AckWait time.Duration
	// Guard is the SSRF guard of the default Client; nil refuses every
	// address that is not public (see netguard).
	Guard *netguard.Guard
	// Client sends the requests; nil means NewHTTPClient(Workers, Guard).
	// It must not follow redirects.
	Client *http.Client
	// DrainTimeout bounds how long Run, once its context is cancelled,
	// lets attempts in progress finish; those still running are then
	// cancelled and handed back to JetStream. 0 means each attempt runs to
	// its own webhook's timeout.
	DrainTimeout time.Duration

	log      *slog.Logger
	client   *http.Client
	iso      *isolation
	recorder *attemptRecorder // publishes the attempt log (attempts.go)
	retries  *retryBatcher    // publishes retry schedules (retrybatch.go)
	// expandFault, set by tests, stops expanding a fired batch before item
	// i when it returns true, as a worker killed there would.
	expandFault func(i, n int) bool
	// expandTokens holds a token per chunk of a fired batch being expanded
	// (retrybatch.go), bounding the async publishes awaiting acks.
	expandTokens chan struct{}
}

// NewHTTPClient returns the HTTP client of deliveries and test sends: it
// dials only the addresses guard allows (nil: public addresses only; see
// netguard), never through a proxy (HTTP_PROXY would let a request reach
// what the guard refuses, and would be the one dialled), never follows
// redirects (a 3xx is a failed attempt), keeps up to conns idle connections
// per host so that each worker can reuse one, and leaves per-request
// deadlines to the caller's context.
func NewHTTPClient(conns int, guard *netguard.Guard) *http.Client {
	conns = max(conns, 1)
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            guard.DialContext,
			ForceAttemptHTTP2:      true,
			MaxIdleConns:           conns * 4,
			MaxIdleConnsPerHost:    conns,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    10 * time.Second,
			ExpectContinueTimeout:  time.Second,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// delivery is one delivery message being worked on.
type delivery struct {
	msg       jetstream.Msg
	header    nats.Header
	body      []byte
	webhookID string
	eventID   string
	tenant    string
	attempts  int // attempts made before this one
	deferrals int // times deferred since the last attempt
	// seq is the stream sequence of the delivery message (for an item of a
	// fired retry batch, of the one it follows): it names its schedule and
	// its dead letter. Read it with streamSeq.
	seq    uint64
	batch  *firedBatch // the fired retry batch it is an item of, nil for a delivery message
	timing attemptTiming
}

// worker holds one worker goroutine's scratch space.
type worker struct {
	buf [4096]byte
}

// drain reads and discards up to maxDrain bytes of a response body, so
// that its connection can be reused; past that, closing the body drops the
// connection, which is cheaper than reading on. Unlike io.CopyN, it
// allocates nothing.
func (w *worker) drain(body io.Reader) {
	for n := 0; n < maxDrain; {
		m, err := body.Read(w.buf[:])
		n += m
		if err != nil {
			return
		}
	}
}

// Run delivers until ctx is done. It first waits for the Index to be ready,
// then creates or updates the durable consumer. On cancellation it stops
// pulling, hands back deliveries not yet started, lets those in progress
// finish (see DrainTimeout), settles them, and returns nil. It returns an
// error when its settings are invalid or the consumer cannot be set up at
// start; one deleted later is set up again.
func (d *Deliverer) Run(ctx context.Context) error {
	if err := d.setDefaults(); err != nil {
		return err
	}
	if err := d.Index.waitReady(ctx); err != nil {
		return nil
	}
	defer d.startRecorder()() // stops once every worker is done (wg.Wait below)
	d.retries = newRetryBatcher(d.JS)
	defer d.retries.start()() // likewise; runs before the recorder's stop
	// Attempts run under attemptCtx, which outlives ctx by DrainTimeout so
	// that a shutdown lets them finish.
	attemptCtx, cancelAttempts := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAttempts()
	work := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	wg.Go(func() { d.sweep(ctx) })
	for range d.Workers {
		wg.Go(func() {
			w := &worker{}
			for msg := range work {
				if ctx.Err() != nil { // stopping and not started: another worker may take it now
					d.handBack(msg)
					continue
				}
				d.deliver(attemptCtx, w, msg)
			}
		})
	}

	loop := &streams.Durable{
		JS:     d.JS,
		Stream: streams.Deliveries,
		Config: jetstream.ConsumerConfig{
			Durable:     streams.DelivererConsumer,
			Description: "Switchboard: signs and sends deliveries",
			// Replays come from the registry on a subject of their own.
			FilterSubjects: []string{streams.DeliveriesPrefix + ">", streams.ReplayPrefix + ">"},
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        d.AckWait,
			MaxAckPending:  d.MaxAckPending,
		},
		LostMsg: lostMsg,
		Log:     d.log,
	}
	handle := func(msg jetstream.Msg) {
		select {
		case work <- msg:
		case <-ctx.Done():
			d.handBack(msg)
		}
	}
	err := loop.Run(ctx, nil, loop.Consume(handle, d.pullBatch()))
	close(work)
	if d.DrainTimeout > 0 {
		t := time.AfterFunc(d.DrainTimeout, cancelAttempts)
		defer t.Stop()
	}
	wg.Wait()
	if err != nil {
		return fmt.Errorf("deliverer: %w", err)
	}
	return nil
}

// handBack Naks a delivery not yet attempted, for another worker to take.
func (d *Deliverer) handBack(msg jetstream.Msg) {
	nak(msg, d.log)
	d.Metrics.outcomes[outcomeRequeued].Inc()
}

func (d *Deliverer) setDefaults() error {
	if d.JS == nil || d.Index == nil {
		return errors.New("consumer: Deliverer needs JS and Index")
	}
	if d.Retry == (RetryPolicy{}) {
		d.Retry = DefaultRetryPolicy()
	}
	if err := d.Retry.Validate(); err != nil {
		return fmt.Errorf("deliverer: %w", err)
	}
	if d.Workers <= 0 {
		d.Workers = DefaultWorkers
	}
	if d.MaxAckPending <= 0 {
		d.MaxAckPending = DefaultMaxAckPending
	}
	if d.MaxInFlightPerWebhook <= 0 {
		d.MaxInFlightPerWebhook = DefaultMaxInFlightPerWebhook(d.Workers)
	}
	if d.BreakerFailures <= 0 {
		d.BreakerFailures = DefaultBreakerFailures
	}
	if d.BreakerCooldown <= 0 {
		d.BreakerCooldown = DefaultBreakerCooldown
	}
	d.expandTokens = make(chan struct{}, expandChunks)
	d.iso = newIsolation(d.MaxInFlightPerWebhook, d.BreakerFailures, d.BreakerCooldown)
	if d.AckWait <= 0 {
		d.AckWait = DefaultAckWait
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	d.log = loggerOr(d.Logger)
	d.client = d.Client
	if d.client == nil {
		d.client = NewHTTPClient(d.Workers, d.Guard)
	}
	return nil
}

// pullBatch sizes pulls: half the workers, so that a batch keeps them busy
// while the next is fetched, and so that the deliveries waiting for a
// worker (the batch, plus one in the handler) never outnumber the workers.
// Every worker ends its attempt within the longest timeout, so each of
// those waits at most one attempt for a worker, within AckWait; keepAlive
// then restarts AckWait as its own attempt starts. A batch of all the
// workers could leave one waiting two attempts, past AckWait, to be
// handed to a second worker while the first is still on it.
func (d *Deliverer) pullBatch() int {
	return max(min(d.Workers/2, d.MaxAckPending), 1)
}

// checkNotScheduled returns errMalformed for a delivery that is not a
// worker's to deliver (streams.CheckNotScheduled).
func checkNotScheduled(h nats.Header) error {
	if err := streams.CheckNotScheduled(h); err != nil {
		return fmt.Errorf("%w: %w", errMalformed, err)
	}
	return nil
}

// deliver makes one attempt of msg and settles it.
func (d *Deliverer) deliver(ctx context.Context, w *worker, msg jetstream.Msg) {
	if streams.IsRetryBatch(msg.Headers()) {
		d.deliverBatch(ctx, msg)
		return
	}
	dlv := delivery{msg: msg, header: msg.Headers(), body: msg.Data()}
	dlv.webhookID, _ = streams.DeliveryWebhook(msg.Subject())
	dlv.readHeaders()
	made := dlv.attempts + 1

	maxRetries := 0
	h, err := d.webhookFor(&dlv)
	if err == nil {
		maxRetries = h.webhook.MaxRetries
		if dlv.tenant == "" {
			dlv.tenant = h.webhook.TenantID
		}
		if dlv.eventID == "" {
			err = errNoEventID
		} else if err = checkNotScheduled(dlv.header); err == nil {
			err = d.attemptIsolated(ctx, w, h, &dlv)
		}
	}
	d.settle(&dlv, made, err, decide(err, made, maxRetries, d.Retry))
}

// webhookFor returns the delivery's webhook if deliveries can be made to
// it, else a *webhookError.
func (d *Deliverer) webhookFor(dlv *delivery) (*hook, error) {
	h, ok := d.Index.lookup(dlv.webhookID)
	switch {
	case !ok:
		var tries uint64
		if md, err := dlv.msg.Metadata(); err == nil {
			tries = md.NumDelivered
		}
		return nil, &webhookError{WebhookID: dlv.webhookID, Reason: reasonUnknown, Tries: tries}
	case h.deleted:
		return nil, &webhookError{WebhookID: dlv.webhookID, Reason: reasonDeleted}
	case !h.usable():
		return nil, &webhookError{WebhookID: dlv.webhookID, Reason: reasonInvalid, Err: h.err}
	case h.webhook.Status != switchboard.StatusActive:
		return nil, &webhookError{WebhookID: dlv.webhookID, Reason: reasonInactive}
	}
	return h, nil
}

// attempt sends the delivery once, within the webhook's timeout. It returns
// nil for a 2xx, an *attemptError for any other answer or none (an address
// the SSRF guard refuses included), errMalformed for a body that cannot be
// sent, and errShutdown when ctx (the deliverer's drain deadline) ended it.
func (d *Deliverer) attempt(ctx context.Context, w *worker, h *hook, dlv *delivery) error {
	if ctx.Err() != nil {
		return errShutdown
	}
	rctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	start := time.Now()
	req, err := h.endpoint.NewRequest(rctx, dlv.eventID, dlv.body, start)
	if err != nil {
		return fmt.Errorf("%w: %w", errMalformed, err)
	}

	d.Metrics.inFlight.Inc()
	resp, err := d.client.Do(req)
	if err != nil {
		d.Metrics.inFlight.Dec()
		d.Metrics.duration.Observe(time.Since(start).Seconds())
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %v", errShutdown, withoutURL(err))
		}
		return &attemptError{Err: withoutURL(err)}
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	dlv.timing.status = resp.StatusCode
	n, _ := io.ReadFull(resp.Body, w.buf[:maxExcerpt])
	excerpt := printable(w.buf[:n])
	w.drain(resp.Body)
	resp.Body.Close()
	d.Metrics.inFlight.Dec()
	d.Metrics.duration.Observe(time.Since(start).Seconds())
	dlv.timing.body = excerpt
	if ok {
		return nil
	}
	return &attemptError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp, time.Now()), Body: excerpt}
}

// keepAlive keeps the ack deadline ahead of an attempt of msg that may run
// for timeout: AckWait starts when a delivery is pulled, and one pulled
// while every worker was busy may have waited in the pull buffer for a
// whole attempt of another, so it is restarted as the attempt starts, and
// again every half AckWait while the attempt runs if it can outlast that.
// Without it JetStream would hand the delivery to a second worker
// mid-attempt. The returned stop ends it.
func (d *Deliverer) keepAlive(msg jetstream.Msg, timeout time.Duration) (stop func()) {
	if err := msg.InProgress(); err != nil {
		d.log.Debug("in progress", "err", err)
	}
	every := d.AckWait / 2
	if timeout < every {
		return func() {}
	}
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					d.log.Debug("in progress", "err", err)
				}
			}
		}
	}()
	return func() { close(done); <-ended }
}

// settle carries out dec for the delivery. Acks are fire-and-forget, not
// DoubleAck (about 3x slower): delivery is at least once anyway. If an ack
// is lost, JetStream redelivers the message after AckWait and the receiver
// gets the event again with the same webhook-id, which is what receivers
// dedupe on; a confirmed ack would change nothing but the cost. What must
// be durable before the ack (a retry schedule, a dead letter) is published
// synchronously and checked first.
func (d *Deliverer) settle(dlv *delivery, made int, err error, dec decision) {
	// Publishing what follows an attempt must not be cut short by the
	// shutdown that may be under way: the attempt is done.
	ctx := context.Background()
	var perr error
	switch dec.action {
	case actRetry:
		perr = d.schedule(ctx, dlv, made, 0, dec.delay, retryAfterOf(err), "schedule retry")
	case actDeadLetter:
		perr = d.deadLetter(ctx, dlv, made, err, dec.reason)
	case actDefer:
		perr = d.schedule(ctx, dlv, dlv.attempts, dlv.deferrals+1, dec.delay, 0, "defer")
	}
	if perr != nil { // not stored: the delivery is settled as that failure says
		d.settle(dlv, made, errors.Join(perr, err), decide(perr, made, 0, d.Retry))
		return
	}
	switch dec.action {
	case actRetry:
		d.Metrics.retries.Inc()
	case actDeadLetter:
		d.Metrics.deadLetters.WithLabelValues(dec.reason).Inc()
	case actDefer:
		d.Metrics.deferred[dec.reason].Inc()
	}
	d.recordAttempt(dlv, made, err, dec) // published before the ack, not awaited: see attempts.go

	var aerr error
	switch {
	case dlv.batch != nil:
		// An item of a fired batch: the batch is acked once every item
		// is settled, or handed back whole if one of them asks for it.
		if dec.action == actNak || dec.action == actNakDelay {
			dlv.batch.failed.Store(true)
		}
	default:
		aerr = d.ack(dlv.msg, dec)
	}
	d.Metrics.outcomes[dec.outcome].Inc()
	if dec.outcome == outcomeDelivered {
		d.observeLatency(dlv)
	}
	d.logAttempt(dlv, made, err, aerr, dec)
}

// ack settles a delivery message as dec says.
func (d *Deliverer) ack(msg jetstream.Msg, dec decision) error {
	switch dec.action {
	case actNak:
		return msg.Nak()
	case actNakDelay:
		return msg.NakWithDelay(dec.delay)
	}
	return msg.Ack()
}

// retryAfterOf returns the Retry-After of the attempt that failed with
// err, 0 when none.
func retryAfterOf(err error) time.Duration {
	var ae *attemptError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

func (d *Deliverer) observeLatency(dlv *delivery) {
	if at, ok := streams.DecodeAcceptedAt(dlv.header.Get(streams.HeaderAcceptedAt)); ok {
		d.Metrics.latency.Observe(time.Since(at).Seconds())
	}
}

// logAttempt writes the one line per attempt: outcome and decision.
func (d *Deliverer) logAttempt(dlv *delivery, made int, err, ackErr error, dec decision) {
	level := slog.LevelWarn
	switch dec.outcome {
	case outcomeDelivered, outcomeDeferred: // a backlog for an open breaker defers thousands a second
		level = slog.LevelDebug
	case outcomeRetryScheduled, outcomeRequeued:
		level = slog.LevelInfo
	}
	if ackErr != nil {
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !d.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("tenant", dlv.tenant), slog.String("webhook_id", dlv.webhookID),
		slog.String("event_id", dlv.eventID), slog.Int("attempt", made),
		slog.String("outcome", dec.outcome),
	}
	var ae *attemptError
	if errors.As(err, &ae) && ae.Status > 0 {
		attrs = append(attrs, slog.Int("status", ae.Status))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	switch dec.action {
	case actRetry:
		attrs = append(attrs, slog.Duration("retry_in", dec.delay))
	case actDeadLetter:
		attrs = append(attrs, slog.String("reason", dec.reason))
	case actAck:
		if dec.reason != "" {
			attrs = append(attrs, slog.String("reason", dec.reason))
		}
	case actNakDelay:
		attrs = append(attrs, slog.Duration("redeliver_in", dec.delay))
	case actDefer:
		attrs = append(attrs, slog.String("reason", dec.reason), slog.Duration("deferred_for", dec.delay))
	}
	if ackErr != nil {
		attrs = append(attrs, slog.String("ack_err", ackErr.Error()))
	}
	d.log.LogAttrs(ctx, level, "delivery attempt", attrs...)
}

// withoutURL drops the *url.Error layer of a client error: its URL may
// carry a query-string token, and the error goes to logs and dead letters.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// readHeaders sets what dlv's headers say of it: its event, tenant and
// counts.
func (dlv *delivery) readHeaders() {
	d := streams.DecodeDelivery("", dlv.header) // the webhook is set from the subject already
	dlv.eventID, dlv.tenant, dlv.attempts, dlv.deferrals = d.EventID, d.TenantID, d.Attempts, d.Deferrals
}

// streamSeq returns the stream sequence of dlv's delivery message (for an
// item of a fired batch, of the one it follows), 0 when unknown. It is
// read when a retry or a dead letter needs it, not on every delivery:
// parsing the message's metadata costs allocations on the hot path.
func (dlv *delivery) streamSeq() uint64 {
	if dlv.seq == 0 && dlv.batch == nil {
		if md, err := dlv.msg.Metadata(); err == nil {
			dlv.seq = md.Sequence.Stream
		}
	}
	return dlv.seq
}

// printable makes b safe for a NATS header value and a log line: valid
// UTF-8 without control characters.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
