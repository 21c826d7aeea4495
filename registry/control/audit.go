package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// The audit: every delivery the matcher owes (the ledger, audit_ledger.go)
// set against what became of it, so that an operator can check Switchboard's
// promise, that an accepted event reaches every webhook it matched or a
// dead letter, rather than trust it.
//
// A delivery owed is, in this order of precedence:
//   - webhook_deleted: its webhook was deleted since (workers drop the
//     deliveries of a deleted webhook, by design);
//   - delivered: its last attempt recorded is delivered;
//   - dead_lettered: its last attempt recorded is dead_lettered, or its dead
//     letter is in SB_DEAD;
//   - retrying: its last attempt recorded failed and a message of it (the
//     scheduled retry, or the retry fired and queued, alone or as an item
//     of a retry batch) is in SB_DELIVERIES,
//     or that attempt is younger than the grace period;
//   - pending: it has no attempt recorded and a message of it is in
//     SB_DELIVERIES (queued, or held by a worker), or it was matched less
//     than the grace period ago;
//   - unaccounted: none of these, twice, auditRecheck apart: no outcome
//     that ends it, no message that will make one, a webhook that still
//     exists, and nothing heard of it for longer than the grace period.
//
// The second look is for what moves while the first looks: a message
// acked just after SB_DELIVERIES was read whose attempt record was not
// ingested yet. It waits for the attempt ingester to have settled every
// record SB_ATTEMPTS holds (a registry catching up after downtime has
// thousands to go): while it has not, suspects count as pending, and the
// report says the audit is truncated. A delivery whose attempt records were all lost (counted by
// the workers in switchboard_attempts_unrecorded_total) is unaccounted
// too: the ledger cannot show what became of it.

// Bounds of an audit.
const (
	// DefaultAuditWindow is how far back `switchboard audit` and GET
	// /v1/audit look unless told, and the periodic audit always.
	DefaultAuditWindow = time.Hour
	// MaxAuditWindow bounds since: SB_EVENTS keeps a week by default.
	MaxAuditWindow = 31 * 24 * time.Hour
	// DefaultAuditGrace is how long a delivery may go unheard of before it
	// can be unaccounted: well above the time from match to attempt record
	// when workers are up.
	DefaultAuditGrace = time.Minute
	// DefaultAuditLimit and MaxAuditLimit bound the events read from
	// SB_EVENTS and the deliveries owed read from the ledger, each.
	DefaultAuditLimit = 100_000
	MaxAuditLimit     = 1_000_000
	// maxQueueScan bounds the deliveries in SB_DELIVERIES read, message
	// by message (a work queue takes no second consumer; a retry batch
	// counts for its items): in a healthy system it holds the deliveries
	// in flight and the scheduled retries.
	maxQueueScan = 50_000
	// auditRecheck is how long the second look waits after the first.
	auditRecheck = 2 * time.Second
	// auditIngestWait bounds how long the second look waits for the
	// attempt ingester to catch up with SB_ATTEMPTS, and auditIngestSettle
	// how long it then waits for the acks of the last records.
	auditIngestWait   = 10 * time.Second
	auditIngestSettle = time.Second
	// maxUnaccountedListed bounds the unaccounted deliveries listed per
	// tenant (all are counted).
	maxUnaccountedListed = 1000
)

// AuditOptions says what an audit reads.
type AuditOptions struct {
	// Since is the start of the window: events accepted, and deliveries
	// matched, at or after it. Required.
	Since time.Time
	// Grace is DefaultAuditGrace when 0.
	Grace time.Duration
	// Limit is DefaultAuditLimit when 0.
	Limit int
	// SkipEvents leaves SB_EVENTS unread (events_accepted 0): what the
	// periodic audit, which only counts the unaccounted, does.
	SkipEvents bool
}

// deliveryKey names a delivery: the webhook and the event (its id).
type deliveryKey struct{ webhook, event string }

// evidence is what the streams say of deliveries: messages of them in
// SB_DELIVERIES, dead letters of them in SB_DEAD.
type evidence struct {
	queued         map[deliveryKey]bool
	dead           map[deliveryKey]bool
	queueTruncated bool
}

// RunAudit audits the deliveries owed since o.Since (see the top of
// audit.go). It reads SB_DELIVERIES and SB_DEAD before the ledger, so that
// a delivery that leaves the queue while it looks has its outcome
// recorded, or in SB_DEAD, before the ledger is read.
func RunAudit(ctx context.Context, db *store.DB, js jetstream.JetStream, o AuditOptions) (*AuditReport, error) {
	if o.Since.IsZero() {
		return nil, errors.New("audit: since is required")
	}
	if o.Grace <= 0 {
		o.Grace = DefaultAuditGrace
	}
	if o.Limit <= 0 {
		o.Limit = DefaultAuditLimit
	}
	a := &auditRun{db: db, js: js, o: o, tenants: map[string]*TenantAudit{},
		rep: &AuditReport{Since: o.Since.UTC(), Until: time.Now().UTC(), GraceSeconds: o.Grace.Seconds(), Limit: o.Limit, Truncation: []string{}}}
	if err := a.countEvents(ctx); err != nil {
		return nil, err
	}
	ev, err := readEvidence(ctx, js, o.Since)
	if err != nil {
		return nil, err
	}
	rows, more, err := db.Ledger(ctx, o.Since, o.Limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if more {
		a.truncated(fmt.Sprintf("deliveries owed: read the %d matched last", o.Limit))
	}
	now := time.Now()
	var suspects []store.LedgerRow
	for _, r := range rows {
		t := a.tenant(r.TenantID)
		t.DeliveriesExpected++
		if !classify(&t.AuditCounts, r, ev, now, o.Grace) {
			suspects = append(suspects, r)
		}
	}
	if len(suspects) > 0 {
		if ev, err = a.recheck(ctx, suspects); err != nil {
			return nil, err
		}
	}
	if ev.queueTruncated {
		a.truncated(fmt.Sprintf("SB_DELIVERIES: read the first %d messages", maxQueueScan))
	}
	return a.report(), nil
}

// auditRun is one RunAudit: its counts by tenant and its report.
type auditRun struct {
	db      *store.DB
	js      jetstream.JetStream
	o       AuditOptions
	rep     *AuditReport
	tenants map[string]*TenantAudit
}

func (a *auditRun) tenant(id string) *TenantAudit {
	t, ok := a.tenants[id]
	if !ok {
		t = &TenantAudit{TenantID: id, UnaccountedDeliveries: []UnaccountedDelivery{}}
		a.tenants[id] = t
	}
	return t
}

func (a *auditRun) truncated(why string) { a.rep.Truncation = append(a.rep.Truncation, why) }

// countEvents counts the events each tenant had accepted since o.Since.
func (a *auditRun) countEvents(ctx context.Context) error {
	if a.o.SkipEvents {
		return nil
	}
	err := eventScan{filter: streams.EventsPrefix + ">", start: a.o.Since, headersOnly: true, limit: a.o.Limit}.run(ctx, a.js, func(msg jetstream.Msg) bool {
		if t, _, ok := streams.SplitEventSubject(msg.Subject()); ok {
			a.tenant(t).EventsAccepted++
		}
		return true
	})
	switch {
	case errors.Is(err, errScanLimit):
		a.truncated(fmt.Sprintf("events: read the first %d accepted", a.o.Limit))
	case err != nil:
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// recheck takes the second look, at the suspects alone, after
// auditRecheck: what is still unaccounted for then is counted as such
// (or as pending when the evidence was not read whole). It returns the
// evidence of that look.
func (a *auditRun) recheck(ctx context.Context, suspects []store.LedgerRow) (*evidence, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(auditRecheck):
	}
	ev, err := readEvidence(ctx, a.js, a.o.Since)
	if err != nil {
		return nil, err
	}
	behind, err := ingestBehind(ctx, a.js)
	if err != nil {
		return nil, err
	}
	if behind > 0 {
		a.truncated(fmt.Sprintf("attempt log: %d records not ingested yet; deliveries not accounted for count as pending", behind))
	}
	// With SB_DELIVERIES not read whole, a suspect is pending unless an
	// outcome came since; reading the log again for each (a query
	// apiece) is then most of a core for a dead receiver's backlog of
	// a million, every minute, to move a few counts from pending to
	// delivered. The report says the queue was truncated.
	if !ev.queueTruncated {
		if suspects, err = a.db.LedgerOf(ctx, suspects); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	now := time.Now()
	for _, r := range suspects {
		t := a.tenant(r.TenantID)
		if classify(&t.AuditCounts, r, ev, now, a.o.Grace) {
			continue
		}
		if ev.queueTruncated || behind > 0 { // not seen, but perhaps in what was not read
			t.Pending++
			continue
		}
		t.Unaccounted++
		if len(t.UnaccountedDeliveries) < maxUnaccountedListed {
			t.UnaccountedDeliveries = append(t.UnaccountedDeliveries, UnaccountedDelivery{
				EventID: r.EventID, WebhookID: r.WebhookID, MatchedAt: time.Unix(0, r.MatchedAt).UTC(), LastOutcome: r.Outcome,
			})
		}
	}
	return ev, nil
}

// report returns the report with its tenants and total, in tenant order.
func (a *auditRun) report() *AuditReport {
	rep := a.rep
	rep.Truncated = len(rep.Truncation) > 0
	for _, t := range a.tenants {
		slices.SortFunc(t.UnaccountedDeliveries, func(a, b UnaccountedDelivery) int { return a.MatchedAt.Compare(b.MatchedAt) })
		rep.Tenants = append(rep.Tenants, *t)
		rep.Total.add(t.AuditCounts)
	}
	slices.SortFunc(rep.Tenants, func(a, b TenantAudit) int { return strings.Compare(a.TenantID, b.TenantID) })
	if rep.Tenants == nil {
		rep.Tenants = []TenantAudit{}
	}
	return rep
}

// classify counts r into c and reports true, or reports false when r is
// suspect: nothing accounts for it.
func classify(c *AuditCounts, r store.LedgerRow, ev *evidence, now time.Time, grace time.Duration) bool {
	k := deliveryKey{r.WebhookID, r.EventID}
	heard := max(r.MatchedAt, r.LastAt)
	recent := now.Sub(time.Unix(0, heard)) < grace
	switch {
	case !r.Exists:
		c.WebhookDeleted++
	case r.Outcome == string(switchboard.AttemptDelivered):
		c.Delivered++
	case r.Outcome == string(switchboard.AttemptDeadLettered) || ev.dead[k]:
		c.DeadLettered++
	case r.Outcome == string(switchboard.AttemptRetrying) && (ev.queued[k] || recent):
		c.Retrying++
	case r.Outcome == "" && (ev.queued[k] || recent):
		c.Pending++
	default:
		return false
	}
	return true
}

// ingestBehind waits up to auditIngestWait for the registry's attempt
// ingester to have been handed every record SB_ATTEMPTS holds now, then up
// to auditIngestSettle for their acks (a commit takes milliseconds; an ack
// lost, as when NATS restarts, is not waited for), and returns how many
// records it has not been handed (all, when its consumer does not exist):
// an outcome may be among those.
func ingestBehind(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	stream, err := js.Stream(ctx, streams.Attempts)
	if err != nil {
		return 0, fmt.Errorf("audit: read %s: %w", streams.Attempts, err)
	}
	last := stream.CachedInfo().State.LastSeq
	deadline := time.Now().Add(auditIngestWait)
	var handedOut time.Time
	for {
		var delivered, floor uint64
		c, err := js.Consumer(ctx, streams.Attempts, AttemptsConsumer)
		switch {
		case err == nil:
			delivered, floor = c.CachedInfo().Delivered.Stream, c.CachedInfo().AckFloor.Stream
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return 0, fmt.Errorf("audit: read consumer %s: %w", AttemptsConsumer, err)
		}
		switch {
		case delivered < last:
			if time.Now().After(deadline) {
				return last - delivered, nil
			}
		case handedOut.IsZero():
			handedOut = time.Now()
			fallthrough
		default:
			if floor >= last || time.Since(handedOut) > auditIngestSettle {
				return 0, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readEvidence reads SB_DELIVERIES whole and SB_DEAD from since.
func readEvidence(ctx context.Context, js jetstream.JetStream, since time.Time) (*evidence, error) {
	ev := &evidence{queued: map[deliveryKey]bool{}, dead: map[deliveryKey]bool{}}
	stream, err := js.Stream(ctx, streams.Deliveries)
	if err != nil {
		return nil, fmt.Errorf("audit: read %s: %w", streams.Deliveries, err)
	}
	last := stream.CachedInfo().State.LastSeq
	for seq, read := uint64(1), 0; seq <= last; read++ {
		if read >= maxQueueScan {
			ev.queueTruncated = true
			break
		}
		msg, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("audit: read %s at %d: %w", streams.Deliveries, seq, err)
		}
		seq = msg.Sequence + 1
		wid, events, ok := streams.QueuedDeliveries(msg.Subject, msg.Header, msg.Data)
		if !ok {
			continue
		}
		for _, id := range events {
			ev.queued[deliveryKey{wid, id}] = true
		}
		// maxQueueScan bounds deliveries, not messages: a batch of a
		// thousand would otherwise let the scan hold millions.
		read += max(len(events)-1, 0)
	}
	err = eventScan{stream: streams.Dead, filter: streams.DeadPrefix + ">", start: since, headersOnly: true, limit: MaxAuditLimit}.run(ctx, js, func(msg jetstream.Msg) bool {
		dl := streams.DecodeDeadLetter(msg.Subject(), msg.Headers(), nil)
		ev.dead[deliveryKey{dl.WebhookID, dl.EventID}] = true
		return true
	})
	if err != nil && !errors.Is(err, errScanLimit) {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return ev, nil
}
