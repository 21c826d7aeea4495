package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// AttemptsConsumer is the durable consumer on SB_ATTEMPTS through which the
// registry ingests the attempt log.
const AttemptsConsumer = "registry-attempts"

// DefaultAttemptRetention is how long the attempt log keeps an attempt.
const DefaultAttemptRetention = 30 * 24 * time.Hour

// AttemptFilter selects the attempts FindAttempts returns, newest first.
type AttemptFilter struct {
	Outcome    switchboard.AttemptOutcome // "" for all
	StatusCode int                        // 0 for all
	Since      time.Time                  // attempts made at or after; zero for no bound
	Until      time.Time                  // attempts made before; zero for no bound
	EventID    string                     // "" for all
	Before     string                     // the cursor: only attempts whose id sorts before it
	Limit      int                        // at most this many (0: DefaultPageSize; capped at MaxPageSize)
}

// attemptRow is a row of the attempts table.
type attemptRow struct {
	ID           string  `db:"id"`
	TenantID     string  `db:"tenant_id"`
	WebhookID    string  `db:"webhook_id"`
	EventID      string  `db:"event_id"`
	EventType    string  `db:"event_type"`
	Attempt      int     `db:"attempt"`
	At           int64   `db:"at"` // Unix nanoseconds
	Outcome      string  `db:"outcome"`
	Reason       string  `db:"reason"`
	StatusCode   int     `db:"status_code"`
	LatencyMS    float64 `db:"latency_ms"`
	ErrorClass   string  `db:"error_class"`
	Error        string  `db:"error"`
	ResponseBody string  `db:"response_body"`
}

const attemptColumns = `id, tenant_id, webhook_id, event_id, event_type, attempt, at, outcome, reason, ` +
	`status_code, latency_ms, error_class, error, response_body`

func newAttemptRow(a *switchboard.Attempt) attemptRow {
	return attemptRow{
		ID: a.ID, TenantID: a.TenantID, WebhookID: a.WebhookID, EventID: a.EventID, EventType: a.EventType,
		Attempt: a.Number, At: a.At.UnixNano(), Outcome: string(a.Outcome), Reason: a.Reason,
		StatusCode: a.StatusCode, LatencyMS: a.LatencyMS, ErrorClass: a.ErrorClass, Error: a.Error,
		ResponseBody: a.ResponseBody,
	}
}

func (r *attemptRow) attempt() switchboard.Attempt {
	return switchboard.Attempt{
		ID: r.ID, TenantID: r.TenantID, WebhookID: r.WebhookID, EventID: r.EventID, EventType: r.EventType,
		Number: r.Attempt, At: time.Unix(0, r.At).UTC(), Outcome: switchboard.AttemptOutcome(r.Outcome),
		Reason: r.Reason, StatusCode: r.StatusCode, LatencyMS: r.LatencyMS, ErrorClass: r.ErrorClass,
		Error: r.Error, ResponseBody: r.ResponseBody,
	}
}

// InsertAttempts stores attempts in one transaction. An attempt whose id is
// stored already is left as it is, so ingesting a record twice (redelivered
// after a crash between commit and ack) changes nothing.
func (db *DB) InsertAttempts(ctx context.Context, attempts []switchboard.Attempt) error {
	err := db.withTx(ctx, func(tx *sqlx.Tx) error {
		stmt, err := tx.PrepareNamedContext(ctx, `INSERT OR IGNORE INTO attempts (`+attemptColumns+`) VALUES (`+
			`:id, :tenant_id, :webhook_id, :event_id, :event_type, :attempt, :at, :outcome, :reason, `+
			`:status_code, :latency_ms, :error_class, :error, :response_body)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range attempts {
			if _, err := stmt.ExecContext(ctx, newAttemptRow(&attempts[i])); err != nil {
				return fmt.Errorf("attempt %s: %w", attempts[i].ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert %d attempts: %w", len(attempts), err)
	}
	return nil
}

// FindAttempts returns a page of the attempts to deliver to webhook id of
// the tenant in ctx that f selects, newest first, and whether more follow.
// It returns EUNAUTHORIZED when ctx carries no tenant and ENOTFOUND when the
// tenant has no such webhook.
func (db *DB) FindAttempts(ctx context.Context, id string, f AttemptFilter) ([]switchboard.Attempt, bool, error) {
	tenant, err := tenantFrom(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("find attempts of webhook %s: %w", id, err)
	}
	var exists bool
	if err := db.db.GetContext(ctx, &exists, `SELECT count(*) > 0 FROM webhooks WHERE id = ? AND tenant_id = ?`, id, tenant); err != nil {
		return nil, false, fmt.Errorf("find attempts of webhook %s: %w", id, err)
	}
	if !exists {
		return nil, false, fmt.Errorf("find attempts of webhook %s: %w", id, switchboard.Errorf(switchboard.ENOTFOUND, "Webhook not found."))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	where := []string{"tenant_id = ?", "webhook_id = ?"}
	args := []any{tenant, id}
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.Before != "" {
		add("id < ?", f.Before)
	}
	if f.Outcome != "" {
		add("outcome = ?", f.Outcome)
	}
	if f.StatusCode != 0 {
		add("status_code = ?", f.StatusCode)
	}
	if !f.Since.IsZero() {
		add("at >= ?", unixNano(f.Since))
	}
	if !f.Until.IsZero() {
		add("at < ?", unixNano(f.Until))
	}
	if f.EventID != "" {
		add("event_id = ?", f.EventID)
	}
	args = append(args, limit+1)
	var rows []attemptRow
	err = db.db.SelectContext(ctx, &rows, `SELECT `+attemptColumns+` FROM attempts WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, false, fmt.Errorf("find attempts of webhook %s: %w", id, err)
	}
	more := len(rows) > limit
	rows = rows[:min(len(rows), limit)]
	out := make([]switchboard.Attempt, len(rows))
	for i := range rows {
		out[i] = rows[i].attempt()
	}
	return out, more, nil
}

// unixNano is t in Unix nanoseconds, clamped to what an int64 holds
// (years 1678 to 2262), so that a far bound still compares right.
func unixNano(t time.Time) int64 {
	switch {
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	}
	return t.UnixNano()
}

// findEventAttempts returns the attempts to deliver event id of tenant, in
// the order they were made.
func (db *DB) findEventAttempts(ctx context.Context, tenant, id string) ([]switchboard.Attempt, error) {
	var rows []attemptRow
	err := db.db.SelectContext(ctx, &rows, `SELECT `+attemptColumns+` FROM attempts WHERE tenant_id = ? AND event_id = ? ORDER BY at, id`, tenant, id)
	if err != nil {
		return nil, fmt.Errorf("find attempts of event %s: %w", id, err)
	}
	out := make([]switchboard.Attempt, len(rows))
	for i := range rows {
		out[i] = rows[i].attempt()
	}
	return out, nil
}

// deliveredEvents returns those of events that have a delivered attempt to
// webhook of tenant.
func (db *DB) deliveredEvents(ctx context.Context, tenant, webhook string, events []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(events) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In(`SELECT DISTINCT event_id FROM attempts WHERE tenant_id = ? AND webhook_id = ? AND outcome = ? AND event_id IN (?)`,
		tenant, webhook, switchboard.AttemptDelivered, events)
	if err != nil {
		return nil, fmt.Errorf("delivered events of webhook %s: %w", webhook, err)
	}
	var ids []string
	if err := db.db.SelectContext(ctx, &ids, query, args...); err != nil {
		return nil, fmt.Errorf("delivered events of webhook %s: %w", webhook, err)
	}
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// PruneAttempts deletes the attempts made before cutoff, in small
// transactions so that ingestion and the API are never held up long, and
// returns how many it deleted.
func (db *DB) PruneAttempts(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		res, err := db.db.ExecContext(ctx, `DELETE FROM attempts WHERE rowid IN (SELECT rowid FROM attempts WHERE at < ? LIMIT 5000)`, cutoff.UnixNano())
		if err != nil {
			return total, fmt.Errorf("prune attempts before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune attempts: %w", err)
		}
		total += n
		if n < 5000 {
			return total, nil
		}
	}
}

// AttemptIngester copies the attempt log from SB_ATTEMPTS into SQLite: it
// reads batches through the durable consumer AttemptsConsumer, inserts each
// batch in one transaction and acks its records only after the commit, so
// a crash loses none (they are redelivered) and duplicates none (inserts
// are idempotent on the attempt id). It also prunes attempts older than
// Retention.
type AttemptIngester struct {
	JS     jetstream.JetStream
	DB     *DB
	Logger *slog.Logger
	// Retention is how long attempts are kept; 0 keeps them forever.
	Retention time.Duration
	// PruneInterval is how often old attempts are pruned; 0 means an hour.
	PruneInterval time.Duration
	// Batch is how many records one transaction takes at most; 0 means 512.
	Batch int
}

// ingestMaxWait is how long one pull waits for a full batch.
const ingestMaxWait = 500 * time.Millisecond

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
	cfg := jetstream.ConsumerConfig{
		Durable:       AttemptsConsumer,
		Description:   "Switchboard registry: copies the attempt log into SQLite",
		FilterSubject: streams.AttemptsPrefix + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 8 * batch,
	}
	cons, err := in.JS.CreateOrUpdateConsumer(ctx, streams.Attempts, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("create consumer %s on %s: %w", AttemptsConsumer, streams.Attempts, err)
	}
	pruneDone := make(chan struct{})
	go func() {
		defer close(pruneDone)
		in.prune(ctx, log)
	}()
	defer func() { <-pruneDone }()

	pause := time.Duration(0)
	for ctx.Err() == nil {
		if pause > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pause):
			}
		}
		if cons == nil {
			if cons, err = in.JS.CreateOrUpdateConsumer(ctx, streams.Attempts, cfg); err != nil {
				log.Warn("attempt log: set up consumer", "err", err)
				pause = min(max(2*pause, 500*time.Millisecond), 10*time.Second)
				continue
			}
		}
		if err := in.ingestBatch(ctx, cons, batch, log); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("attempt log: ingest", "err", err)
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				cons = nil
			}
			pause = min(max(2*pause, 500*time.Millisecond), 10*time.Second)
			continue
		}
		pause = 0
	}
	return nil
}

// ingestBatch pulls up to n records, stores them and acks them.
func (in *AttemptIngester) ingestBatch(ctx context.Context, cons jetstream.Consumer, n int, log *slog.Logger) error {
	msgs, err := cons.Fetch(n, jetstream.FetchMaxWait(ingestMaxWait))
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	var got []jetstream.Msg
	attempts := make([]switchboard.Attempt, 0, n)
	for msg := range msgs.Messages() {
		var a switchboard.Attempt
		if err := json.Unmarshal(msg.Data(), &a); err != nil || a.ID == "" || a.TenantID == "" || a.WebhookID == "" {
			log.Error("attempt log: undecodable record; terminating it", "subject", msg.Subject(), "err", err)
			if err := msg.TermWithReason("undecodable attempt record"); err != nil {
				log.Warn("attempt log: terminate", "err", err)
			}
			continue
		}
		got = append(got, msg)
		attempts = append(attempts, a)
	}
	if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && len(got) == 0 {
		return fmt.Errorf("fetch: %w", err)
	}
	if len(got) == 0 {
		return nil
	}
	if err := in.DB.InsertAttempts(context.WithoutCancel(ctx), attempts); err != nil {
		for _, msg := range got {
			_ = msg.Nak() // redelivered; inserts are idempotent
		}
		return err
	}
	for _, msg := range got {
		// A lost ack redelivers the record, which the insert ignores.
		if err := msg.Ack(); err != nil {
			log.Warn("attempt log: ack", "err", err)
		}
	}
	return nil
}

// prune deletes attempts past Retention every PruneInterval until ctx is
// done.
func (in *AttemptIngester) prune(ctx context.Context, log *slog.Logger) {
	if in.Retention <= 0 {
		return
	}
	every := in.PruneInterval
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := in.DB.PruneAttempts(ctx, time.Now().Add(-in.Retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("attempt log: prune", "err", err)
		case n > 0:
			log.Info("attempt log: pruned", "attempts", n, "retention", in.Retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
