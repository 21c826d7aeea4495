package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/outbound"
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

// Deliverer signs and sends deliveries. It consumes SB_DELIVERIES with a
// durable pull consumer (streams.DelivererConsumer) and hands each message
// to one of Workers goroutines, which send the stored body to the webhook
// as its outbound.Endpoint builds the request (method, URL, auth, headers,
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
// This file takes deliveries in and reads their headers;
// deliver_attempt.go makes the attempt (through internal/outbound) and
// deliver_settle.go carries out what decide says of it.
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

// NewHTTPClient returns the client a Deliverer makes when its Client is
// nil: outbound.NewHTTPClient (SSRF guard, no proxy, no redirects, conns
// idle connections per host). It stays here for the programs that set
// Deliverer.Client themselves.
func NewHTTPClient(conns int, guard *netguard.Guard) *http.Client {
	return outbound.NewHTTPClient(conns, guard)
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

// worker holds one worker goroutine's scratch space: the buffer
// outbound.Send reads answers into, reused across its attempts.
type worker struct {
	buf [4096]byte
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

func (d *Deliverer) observeLatency(dlv *delivery) {
	if at, ok := streams.DeliveryAcceptedAt(dlv.header); ok {
		d.Metrics.latency.Observe(time.Since(at).Seconds())
	}
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

// printable is outbound.Printable, for the error texts of attempt records
// and dead letters: the same rule as the answers' excerpts.
func printable(b []byte) string { return outbound.Printable(b) }
