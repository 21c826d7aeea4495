package control

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// The dead letters are read straight from SB_DEAD, where the deliverer puts
// a delivery it gives up on (consumer/deadletter.go): the registry keeps no
// copy of its own. A dead letter is named by its stream sequence, so ids
// and cursors are ordered the way the stream is, oldest first.

// DeadLetterIDPrefix prefixes a dead letter's id: "dl_" and its sequence in
// SB_DEAD.
const DeadLetterIDPrefix = "dl_"

// Bounds on the work one request does.
const (
	// MaxDeadLetterScan is how many dead letters one request reads at most
	// (a list, or a replay of a webhook's). Filters that select few of them
	// end a page early; its cursor then says where to go on.
	MaxDeadLetterScan = 1000
	// MaxReplay is how many dead letters one replay request re-sends.
	MaxReplay = 1000
	// deadLetterFetch is how many dead letters are fetched at once: bodies
	// are up to about 600 KiB, so this bounds the memory of one request.
	deadLetterFetch = 32
	// deadLetterScanIdle is how long the server keeps a scan's consumer
	// if the request dies without deleting it.
	deadLetterScanIdle = 30 * time.Second
)

// DeadLetter is a delivery the deliverer gave up on, as stored in SB_DEAD.
type DeadLetter struct {
	Seq            uint64 // its sequence in SB_DEAD; its id is DeadLetterID(Seq)
	TenantID       string
	WebhookID      string
	EventID        string
	EventType      string // from the body; "" when the body is not an event
	Reason         string // why it was given up, e.g. retries_exhausted, gone
	Attempts       int    // attempts made
	LastStatus     int    // the receiver's last HTTP status; 0 when it never answered
	LastError      string // why the last attempt failed; "" when none was made
	DeadLetteredAt time.Time
	AcceptedAt     time.Time // when the event was accepted; zero when unknown

	// stored is the message it was read from: its headers and the exact
	// body the receiver would have got, which a replay queues again.
	stored streams.StoredDeadLetter
}

// DeadLetterID returns the id of the dead letter at seq.
func DeadLetterID(seq uint64) string { return DeadLetterIDPrefix + strconv.FormatUint(seq, 10) }

// ParseDeadLetterID returns the sequence a dead letter id names.
func ParseDeadLetterID(id string) (uint64, bool) {
	digits, ok := strings.CutPrefix(id, DeadLetterIDPrefix)
	if !ok || digits == "" || digits[0] < '1' || digits[0] > '9' { // one spelling per id: no sign, no leading zero
		return 0, false
	}
	// Sequences stay far below 2^63; the bound keeps cursor+1 from wrapping.
	seq, err := strconv.ParseUint(digits, 10, 63)
	return seq, err == nil && seq > 0
}

// DeadLetterQuery selects the dead letters of one tenant that a scan visits.
type DeadLetterQuery struct {
	Tenant    string    // required
	WebhookID string    // "" for every webhook of the tenant
	Reason    string    // "" for every reason
	Since     time.Time // dead-lettered at or after; zero for no bound
	Until     time.Time // dead-lettered at or before; zero for no bound
	After     uint64    // the cursor: only sequences above it
	Through   uint64    // only sequences up to it; 0 for no bound
}

// subject is the subject filter of q: the tenant's dead letters, or one
// webhook's. Another tenant's are never read.
func (q DeadLetterQuery) subject() string {
	if q.WebhookID != "" {
		return streams.DeadSubject(q.Tenant, q.WebhookID)
	}
	return streams.DeadPrefix + q.Tenant + ".>"
}

// ScanResult says where a scan stopped.
type ScanResult struct {
	Last uint64 // the sequence of the last dead letter read, matching or not; 0 when none
	End  bool   // nothing selected by the query follows Last
}

// DeadLetters reads, replays and deletes dead letters in SB_DEAD.
type DeadLetters struct {
	JS jetstream.JetStream
}

// scan reads at most MaxDeadLetterScan dead letters that q selects, in
// stream order, and calls visit with each; it stops early when visit
// returns false. It reads through an ephemeral consumer of its own, in
// memory, without acks, which it deletes before returning (the server
// drops it after deadLetterScanIdle should that fail).
func (d *DeadLetters) Scan(ctx context.Context, q DeadLetterQuery, visit func(*DeadLetter) (bool, error)) (ScanResult, error) {
	if q.Tenant == "" {
		return ScanResult{}, errors.New("scan dead letters: no tenant")
	}
	scan := streams.Scan{
		Stream: streams.Dead, Filter: q.subject(), Description: "Switchboard: one API request reading dead letters",
		StartTime: q.Since, Limit: MaxDeadLetterScan, Batch: deadLetterFetch, Idle: deadLetterScanIdle,
	}
	if q.After > 0 { // with a cursor the consumer starts after it, not at Since
		scan.StartSeq = q.After + 1
	}
	res := ScanResult{End: true} // unless visit stops early or the limit is reached
	var visitErr error
	err := scan.Run(ctx, d.JS, func(msg jetstream.Msg) (bool, error) {
		md, err := msg.Metadata()
		if err != nil {
			return false, err
		}
		if !q.Until.IsZero() && md.Timestamp.After(q.Until) {
			return false, nil // the stream is in time order: nothing later qualifies
		}
		if q.Through > 0 && md.Sequence.Stream > q.Through {
			return false, nil // stored after the request began
		}
		res.Last = md.Sequence.Stream
		dl := NewDeadLetter(md.Sequence.Stream, md.Timestamp, streams.ReadDeadLetter(msg.Subject(), msg.Headers(), msg.Data()))
		if dl.TenantID != q.Tenant || !q.selects(dl) {
			return true, nil
		}
		more, err := visit(dl)
		if err != nil {
			visitErr = err
			return false, err
		}
		if !more {
			res.End = md.NumPending == 0
		}
		return more, nil
	})
	switch {
	case visitErr != nil:
		return res, visitErr // the caller's, as it is
	case errors.Is(err, streams.ErrScanLimit):
		res.End = false
	case err != nil:
		return res, fmt.Errorf("scan dead letters of tenant %s: %w", q.Tenant, err)
	}
	return res, nil
}

// selects reports whether dl passes q's filters that the consumer does not
// apply itself.
func (q DeadLetterQuery) selects(dl *DeadLetter) bool {
	if q.Reason != "" && dl.Reason != q.Reason {
		return false
	}
	// With a cursor the consumer starts after it, not at Since.
	return q.Since.IsZero() || !dl.DeadLetteredAt.Before(q.Since)
}

// get returns the dead letter at seq if it belongs to tenant, and
// ENOTFOUND otherwise (another tenant's included).
func (d *DeadLetters) Get(ctx context.Context, stream jetstream.Stream, tenant string, seq uint64) (*DeadLetter, error) {
	raw, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "Dead letter %s not found.", DeadLetterID(seq))
	}
	if err != nil {
		return nil, fmt.Errorf("get dead letter %s: %w", DeadLetterID(seq), err)
	}
	dl := NewDeadLetter(raw.Sequence, raw.Time, streams.ReadDeadLetter(raw.Subject, raw.Header, raw.Data))
	if dl.TenantID != tenant || !strings.HasPrefix(raw.Subject, streams.DeadPrefix+tenant+".") {
		return nil, switchboard.Errorf(switchboard.ENOTFOUND, "Dead letter %s not found.", DeadLetterID(seq))
	}
	return dl, nil
}

// replay queues dl for delivery again, as the matcher queued it first: the
// same body and headers, no attempts made (a fresh retry budget). Once
// JetStream has stored it, the dead letter is deleted. Its Nats-Msg-Id
// differs from the first delivery's, which may still be in the
// duplicates window, but is the same for every replay of this dead letter:
// a replay retried (the client's, or this one's after a failed delete)
// within the window is stored once.
func (d *DeadLetters) Replay(ctx context.Context, stream jetstream.Stream, dl *DeadLetter) error {
	// What was decoded goes back as it was: the dead letter's
	// accepted-at header is kept, so latency is measured from the event's
	// acceptance.
	m := dl.stored.Replay(replayMsgIDSuffix(dl))
	if _, err := d.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("replay dead letter %s to webhook %s: %w", DeadLetterID(dl.Seq), dl.WebhookID, err)
	}
	if err := stream.DeleteMsg(ctx, dl.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("replayed dead letter %s; delete it: %w", DeadLetterID(dl.Seq), err)
	}
	return nil
}

// replayMsgIDSuffix names the replay of dl in its Nats-Msg-Id
// (streams.EventDeliveries.Replay).
func replayMsgIDSuffix(dl *DeadLetter) string { return "replay." + strconv.FormatUint(dl.Seq, 10) }

// stream returns SB_DEAD, for gets and deletes.
func (d *DeadLetters) Stream(ctx context.Context) (jetstream.Stream, error) {
	s, err := d.JS.Stream(ctx, streams.Dead)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", streams.Dead, err)
	}
	return s, nil
}

// NewDeadLetter returns the dead letter d, read from its message stored at
// seq at t (streams.ReadDeadLetter).
func NewDeadLetter(seq uint64, t time.Time, d streams.StoredDeadLetter) *DeadLetter {
	return &DeadLetter{
		Seq: seq, TenantID: d.TenantID, WebhookID: d.WebhookID, EventID: d.EventID, EventType: d.EventType,
		Reason: string(d.Reason), Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError,
		DeadLetteredAt: t.UTC(), AcceptedAt: d.AcceptedAt, stored: d,
	}
}
