package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/mattn/go-sqlite3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// AttemptsConsumer is the durable consumer on SB_ATTEMPTS through which the
// registry ingests the attempt log.
const AttemptsConsumer = "registry-attempts"

// DefaultAttemptRetention is how long the attempt log keeps an attempt.
const DefaultAttemptRetention = 30 * 24 * time.Hour

// retiredHealthConsumer is the durable consumer through which auto-disable
// read SB_ATTEMPTS a second time, before AttemptIngester counted what it
// stores. Run deletes it where an earlier registry left it, so that it does
// not keep every record pending.
const retiredHealthConsumer = "registry_health"

// alertWaker is told when alerts have been queued (Health).
type alertWaker interface {
	Wake()
}

// AttemptIngester reads SB_ATTEMPTS, the record of every delivery attempt,
// through the durable consumer AttemptsConsumer. It stores each attempt in
// the attempt log and counts it towards auto-disable in the same
// transaction (DB.RecordAttempts), many attempts to a transaction, and acks
// their records only after the commit, so a crash loses none (they are
// redelivered) and counts none twice (the stored id says it was seen). It
// also prunes attempts older than Retention.
//
// A record is one attempt (a JSON object, on streams.AttemptSubject) or
// many (a JSON array, on streams.AttemptBatchSubject); either is acked as a
// whole.
type AttemptIngester struct {
	JS     jetstream.JetStream
	DB     *store.DB
	Logger *slog.Logger
	// DisableAfter is the number of consecutive failed deliveries that
	// stops a webhook; 0 never stops one (not even on 410 Gone).
	DisableAfter int
	// Mirror, when set, mirrors a webhook the moment it is stopped, so
	// that workers park its deliveries at once; otherwise the mirror's
	// own loop does it within its interval.
	Mirror *Mirror
	// Alerts, when set, is woken when alerts are queued, to publish them
	// at once rather than at its next look at the queue.
	Alerts alertWaker
	// Retention is how long attempts are kept; 0 keeps them forever.
	Retention time.Duration
	// BodyRetention is how long attempts keep their response body excerpt
	// (ClearAttemptBodies); 0 as long as the attempt.
	BodyRetention time.Duration
	// MaxBytes caps the database's size in use by pruning the oldest
	// attempts (PruneAttemptsToSize); 0 is no cap.
	MaxBytes int64
	// PruneInterval is how often old attempts are pruned; 0 means an hour.
	PruneInterval time.Duration
	// Batch is how many attempts one transaction takes at most (a record
	// of more takes one alone) and how many records one pull asks for;
	// 0 means 512.
	Batch int
}

// ingestMaxWait is how long one pull waits for a full batch.
const ingestMaxWait = 500 * time.Millisecond

// ingestLinger is how long a transaction waits for more records after its
// first: a commit costs about as much as storing a hundred attempts, and
// records trickle in as fast as deliveries end.
const ingestLinger = 100 * time.Millisecond

// Run ingests until ctx is done, then returns nil. It returns an error only
// when the consumer cannot be set up at first; failures later (NATS or
// SQLite unavailable, the consumer deleted) are logged and retried.
func (in *AttemptIngester) Run(ctx context.Context) error {
	if in.JS == nil || in.DB == nil {
		return errors.New("registry: AttemptIngester needs JS and DB")
	}
	log := in.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	batch := in.Batch
	if batch <= 0 {
		batch = 512
	}
	// After a failure, the next try waits from half a second, doubling up
	// to ten; a success starts afresh.
	pause := backoff.NewExponentialBackOff(backoff.WithInitialInterval(500*time.Millisecond), backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0), backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(0))
	loop := &streams.Durable{
		JS:     in.JS,
		Stream: streams.Attempts,
		Config: jetstream.ConsumerConfig{
			Durable:       AttemptsConsumer,
			Description:   "Switchboard registry: copies the attempt log into SQLite, counts failed deliveries",
			FilterSubject: streams.AttemptsPrefix + ">",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Minute,
			MaxAckPending: 8 * batch,
		},
		BackOff: pause,
		LostMsg: "attempt log: ingest", // docs/operations.md quotes it
		Log:     log,
	}
	cons, err := loop.Create(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	switch err := in.JS.DeleteConsumer(ctx, streams.Attempts, retiredHealthConsumer); {
	case err == nil:
		log.Info("attempt log: deleted the retired consumer", "consumer", retiredHealthConsumer)
	case !errors.Is(err, jetstream.ErrConsumerNotFound) && ctx.Err() == nil:
		log.Warn("attempt log: delete the retired consumer", "consumer", retiredHealthConsumer, "err", err)
	}
	// A pull is bounded in bytes too, since a batch record holds many
	// attempts; never below what one record may weigh, or that record
	// would never be handed out.
	maxBytes := max(4<<20, 2*int(in.JS.Conn().MaxPayload()))
	pruneDone := make(chan struct{})
	go func() {
		defer close(pruneDone)
		in.prune(ctx, log)
	}()
	defer func() { <-pruneDone }()

	return loop.Run(ctx, cons, func(ctx context.Context, cons jetstream.Consumer) (lost, err error) {
		// SQLite or NATS unavailable, or the consumer deleted: Run pauses,
		// sets the consumer up again if it is gone, and goes on.
		return in.ingest(ctx, cons, batch, maxBytes, log), nil
	})
}

// attemptRecord is a record of SB_ATTEMPTS and the usable attempts, or the
// matcher's matched records (streams.MatchedSubject), in it.
type attemptRecord struct {
	msg      jetstream.Msg
	attempts []switchboard.Attempt
	matched  []store.Matched
}

// size is what r weighs towards a transaction's batch.
func (r *attemptRecord) size() int { return len(r.attempts) + len(r.matched) }

// ingest pulls up to n records (and maxBytes) and records their attempts as
// they arrive: those that arrive within ingestLinger of one go with it into
// one transaction, up to n attempts.
func (in *AttemptIngester) ingest(ctx context.Context, cons jetstream.Consumer, n, maxBytes int, log *slog.Logger) error {
	batch, err := cons.Fetch(n, jetstream.FetchMaxBytes(maxBytes), jetstream.FetchMaxWait(ingestMaxWait))
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	msgs := batch.Messages()
	var next []attemptRecord // taken from msgs, too many for the last transaction
	for {
		group, count := next, 0
		next = nil
		for _, r := range group {
			count += r.size()
		}
		var linger *time.Timer
		for count < n {
			var msg jetstream.Msg
			ok := false
			if len(group) == 0 {
				msg, ok = <-msgs
			} else {
				if linger == nil {
					linger = time.NewTimer(ingestLinger)
				}
				select {
				case msg, ok = <-msgs:
				case <-linger.C:
				}
			}
			if !ok {
				break
			}
			r, usable := in.decode(msg, log)
			if !usable {
				continue
			}
			if len(group) > 0 && count+r.size() > n {
				next = append(next, r)
				break
			}
			group = append(group, r)
			count += r.size()
		}
		if linger != nil {
			linger.Stop()
		}
		if len(group) == 0 {
			break
		}
		if err := in.record(ctx, group, log); err != nil {
			// SQLite is unavailable: hand back what was pulled, and let
			// Run pause before the next pull.
			for _, r := range next {
				in.handBack(r.msg, log)
			}
			for msg := range msgs {
				in.handBack(msg, log)
			}
			return err
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return fmt.Errorf("fetch: %w", err)
	}
	return nil
}

// record records the attempts of records in one transaction and settles
// each record: acked once all its attempts are committed, handed back for a
// later try otherwise. When the transaction fails, each attempt is tried in
// one of its own, so that one SQLite will not take holds back no other; a
// record handed back for that one is redelivered whole, and its other
// attempts, stored already, change nothing the second time. When SQLite
// itself is unavailable, which no attempt would change, it hands every
// record back and returns the error.
func (in *AttemptIngester) record(ctx context.Context, records []attemptRecord, log *slog.Logger) error {
	// A pulled batch is finished, not abandoned, when ctx ends: it takes
	// milliseconds, and its records would come again.
	dbctx := context.WithoutCancel(ctx)
	all, matched := records[0].attempts, records[0].matched
	if len(records) > 1 {
		all, matched = nil, nil
		for _, r := range records {
			all = append(all, r.attempts...)
			matched = append(matched, r.matched...)
		}
	}
	effs, err := in.DB.RecordLog(dbctx, all, matched, in.DisableAfter)
	if err == nil {
		for _, r := range records {
			in.ack(r.msg, log)
		}
		for i := range all {
			in.applied(ctx, &all[i], effs[i], log)
		}
		return nil
	}
	if unavailable(err) {
		for _, r := range records {
			in.handBack(r.msg, log)
		}
		return err
	}
	together := len(all)+len(matched) > 1
	if together {
		log.Warn("attempt log: attempts not recorded together; recording them one by one", "attempts", len(all), "matched", len(matched), "err", err)
	}
	for _, r := range records {
		failed := false
		if len(r.matched) > 0 {
			if together {
				_, err = in.DB.RecordLog(dbctx, nil, r.matched, 0)
			}
			if err != nil {
				failed = true
				log.Error("attempt log: matched records not recorded; trying again", "events", len(r.matched), "err", err)
			}
		}
		for i := range r.attempts {
			a := &r.attempts[i]
			if together {
				var effs []store.AttemptEffect
				if effs, err = in.DB.RecordAttempts(dbctx, r.attempts[i:i+1], in.DisableAfter); err == nil {
					in.applied(ctx, a, effs[0], log)
					continue
				}
			}
			failed = true
			log.Error("attempt log: attempt not recorded; trying again", "tenant", a.TenantID, "webhook_id", a.WebhookID,
				"event_id", a.EventID, "attempt", a.Number, "err", err)
		}
		if failed {
			in.handBack(r.msg, log)
		} else {
			in.ack(r.msg, log)
		}
	}
	return nil
}

// unavailable reports whether err says SQLite cannot write at all (locked
// by another process past the busy timeout, disk full or read-only, I/O),
// rather than that it will not take some attempt.
func unavailable(err error) bool {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrFull, sqlite3.ErrReadonly, sqlite3.ErrIoErr, sqlite3.ErrCantOpen:
		return true
	}
	return false
}

// handBack has msg redelivered a second from now.
func (in *AttemptIngester) handBack(msg jetstream.Msg, log *slog.Logger) {
	if err := msg.NakWithDelay(time.Second); err != nil {
		log.Warn("attempt log: hand back", "subject", msg.Subject(), "err", err)
	}
}

// ack acks msg, whose attempts are committed: a lost ack redelivers them,
// which changes nothing.
func (in *AttemptIngester) ack(msg jetstream.Msg, log *slog.Logger) {
	if err := msg.Ack(); err != nil {
		log.Warn("attempt log: ack", "subject", msg.Subject(), "err", err)
	}
}

// applied acts on what recording a changed, once committed: a stopped
// webhook is mirrored at once, queued alerts are published.
func (in *AttemptIngester) applied(ctx context.Context, a *switchboard.Attempt, eff store.AttemptEffect, log *slog.Logger) {
	if eff.Disabled {
		log := log.With("tenant", a.TenantID, "webhook_id", a.WebhookID, "event_id", a.EventID, "attempt", a.Number)
		log.Warn("webhook stopped: too many failed deliveries", "failures", eff.Failures, "reason", a.Reason)
		if in.Mirror != nil {
			if err := in.Mirror.Flush(ctx, a.WebhookID); err != nil {
				log.Warn("mirror stopped webhook; the mirror loop retries", "err", err)
			}
		}
	}
	if eff.Alerts > 0 && in.Alerts != nil {
		in.Alerts.Wake()
	}
}

// prune applies Retention, BodyRetention and MaxBytes every PruneInterval
// until ctx is done.
func (in *AttemptIngester) prune(ctx context.Context, log *slog.Logger) {
	if in.Retention <= 0 && in.BodyRetention <= 0 && in.MaxBytes <= 0 {
		return
	}
	every := in.PruneInterval
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		in.pruneOnce(ctx, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
