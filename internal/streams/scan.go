package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Scan reads a stream once, in order, through an ephemeral consumer of its
// own: in memory, without acks, deleted when the scan ends (the server
// drops it after Idle should that fail). The registry scans SB_EVENTS
// (event lookup, recover, the audit) and SB_DEAD (listing and replaying
// dead letters) this way: JetStream indexes a stream by sequence, subject
// and time, not by header.
type Scan struct {
	Stream      string
	Filter      string
	Description string
	// StartSeq, when not 0, is the first sequence read; else StartTime,
	// when not zero, the first time; else the stream's start.
	StartSeq  uint64
	StartTime time.Time
	// HeadersOnly reads headers without bodies.
	HeadersOnly bool
	// StopAtLast ends the scan at the stream's last message as it was when
	// the scan began: what is stored meanwhile is not read.
	StopAtLast bool
	// Limit is how many messages are read at most; 0 for no bound.
	Limit int
	// Batch is how many messages one fetch asks for; MaxBytes, when not
	// 0, bounds their bytes too (bodies are the tenants', up to
	// max_payload each).
	Batch    int
	MaxBytes int
	// Wait bounds a fetch that finds fewer messages than Batch; 0 takes
	// what is there at once (FetchNoWait).
	Wait time.Duration
	// Idle is how long the server keeps the consumer of a scan that died
	// without deleting it.
	Idle time.Duration
}

// ErrScanLimit says a scan read Limit messages without finishing.
var ErrScanLimit = errors.New("scan limit reached")

// Run calls visit with each message in stream order until visit returns
// false or an error (returned as it is), the stream's end is reached
// (StopAtLast: as it was when the scan began), or Limit messages were read
// (ErrScanLimit).
func (s Scan) Run(ctx context.Context, js jetstream.JetStream, visit func(jetstream.Msg) (bool, error)) error {
	cfg := s.consumerConfig()
	stream, err := js.Stream(ctx, s.Stream)
	if err != nil {
		return fmt.Errorf("scan %s: %w", s.Stream, err)
	}
	last := stream.CachedInfo().State.LastSeq
	cons, err := stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("scan %s: create consumer: %w", s.Stream, err)
	}
	defer func() {
		// The caller's context may be gone; the consumer must go anyway.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, s.Stream, cons.CachedInfo().Name) // else the server drops it when idle
	}()
	if cons.CachedInfo().NumPending == 0 {
		return nil
	}
	var opts []jetstream.FetchOpt
	if s.Wait > 0 {
		opts = append(opts, jetstream.FetchMaxWait(s.Wait))
	}
	if s.MaxBytes > 0 {
		opts = append(opts, jetstream.FetchMaxBytes(s.MaxBytes))
	}
	for read := 0; ; {
		n := s.Batch
		if s.Limit > 0 {
			n = min(n, s.Limit-read)
		}
		var batch jetstream.MessageBatch
		if s.Wait > 0 {
			batch, err = cons.Fetch(n, opts...)
		} else {
			batch, err = cons.FetchNoWait(n)
		}
		if err != nil {
			return fmt.Errorf("scan %s: fetch: %w", s.Stream, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			read++
			more, err := visit(msg)
			if err != nil || !more {
				return err
			}
			if md, err := msg.Metadata(); err == nil && (md.NumPending == 0 || s.StopAtLast && md.Sequence.Stream >= last) {
				return nil
			}
			if s.Limit > 0 && read >= s.Limit {
				return ErrScanLimit
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("scan %s: fetch: %w", s.Stream, err)
		}
		if got == 0 { // deleted since the consumer counted them
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// consumerConfig is the ephemeral consumer of the scan: in memory, no acks,
// from its start sequence or time.
func (s Scan) consumerConfig() jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Description:       s.Description,
		FilterSubject:     s.Filter,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       s.HeadersOnly,
		MemoryStorage:     true,
		InactiveThreshold: s.Idle,
	}
	switch {
	case s.StartSeq > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = s.StartSeq
	case !s.StartTime.IsZero():
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		start := s.StartTime
		cfg.OptStartTime = &start
	}
	return cfg
}
