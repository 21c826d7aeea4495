package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// RetryPolicy sets the delays between attempts of a delivery: exponential
// with jitter, computed by backoff/v4. Retry n (n = 1 for the first retry)
// waits about InitialInterval * Multiplier^(n-1), capped at MaxInterval,
// then spread by +-RandomizationFactor. A receiver's Retry-After (on 429 and
// 503) replaces the computed delay, capped at MaxInterval.
//
// Retries are NATS message schedules, which fire with one-second
// resolution; delays are rounded up to the next whole second.
type RetryPolicy struct {
	InitialInterval     time.Duration
	MaxInterval         time.Duration
	Multiplier          float64
	RandomizationFactor float64 // 0 <= f < 1
}

// DefaultRetryPolicy is the production policy: 5 s, then x4 per retry, at
// most 1 h, +-20 % jitter. The default max_retries (3) retries after about
// 5 s, 20 s and 80 s, riding out a receiver's restart; the maximum (10)
// keeps trying for about 6 hours (5 s, 20 s, 80 s, 5 min, 21 min, then
// hourly), long enough for an outage to be noticed and fixed.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		InitialInterval:     5 * time.Second,
		MaxInterval:         time.Hour,
		Multiplier:          4,
		RandomizationFactor: 0.2,
	}
}

// Validate returns an error naming the first unusable setting, or nil.
func (p RetryPolicy) Validate() error {
	switch {
	case p.InitialInterval <= 0:
		return fmt.Errorf("retry policy: initial interval must be positive, got %v", p.InitialInterval)
	case p.MaxInterval < p.InitialInterval:
		return fmt.Errorf("retry policy: max interval %v is below the initial interval %v", p.MaxInterval, p.InitialInterval)
	case p.Multiplier < 1:
		return fmt.Errorf("retry policy: multiplier must be at least 1, got %v", p.Multiplier)
	case p.RandomizationFactor < 0 || p.RandomizationFactor >= 1:
		return fmt.Errorf("retry policy: randomization factor must be in [0, 1), got %v", p.RandomizationFactor)
	}
	return nil
}

// delay returns how long to wait before retry n (1-based). It keeps no
// state between calls: it replays the library's sequence n steps, each step
// drawing its own jitter, and uses the last. retryAfter, when positive,
// replaces it (capped at MaxInterval).
func (p RetryPolicy) delay(n int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, p.MaxInterval)
	}
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.InitialInterval),
		backoff.WithMaxInterval(p.MaxInterval),
		backoff.WithMultiplier(p.Multiplier),
		backoff.WithRandomizationFactor(p.RandomizationFactor),
		backoff.WithMaxElapsedTime(0), // never backoff.Stop: max_retries decides when to stop
	)
	d := p.InitialInterval
	for range max(n, 1) {
		d = b.NextBackOff()
	}
	return d
}

// scheduleAt rounds now+delay up to a whole second: schedules have
// one-second resolution and WithScheduleAt truncates, which would otherwise
// fire a retry early.
func scheduleAt(now time.Time, delay time.Duration) time.Time {
	at := now.Add(delay)
	if t := at.Truncate(time.Second); !t.Equal(at) {
		return t.Add(time.Second)
	}
	return at
}

// schedule stores dlv again as a message schedule: it fires once at
// now+delay onto the webhook's delivery subject, with the same body and
// headers, and HeaderAttempts and HeaderDeferrals set to attempts and
// deferrals (left out when 0). A retry raises the attempts and clears the
// deferrals; a deferral keeps the attempts and raises the deferrals.
// retryAfter is the receiver's Retry-After that set delay, 0 when the
// policy drew it.
//
// It goes through the retry batcher (retrybatch.go): stored alone, on a
// schedule subject named by the delivery message's stream sequence (so
// that scheduling the same message again after a crash replaces it), or
// as an item of a batch of the webhook's deliveries due together. It
// returns once JetStream has stored it; only then may the delivery
// message be acked.
func (d *Deliverer) schedule(ctx context.Context, dlv *delivery, attempts, deferrals int, delay, retryAfter time.Duration, op string) error {
	if dlv.streamSeq() == 0 {
		return &publishError{Op: op, Err: errors.New("delivery metadata: no stream sequence")}
	}
	req := &retryReq{dlv: dlv, delay: delay, key: retryKey{webhook: dlv.webhookID, op: op, attempts: attempts, deferrals: deferrals}}
	if retryAfter > 0 { // the receiver's time, not a draw: only those due the same second share it
		req.key.at = scheduleAt(time.Now(), delay).Unix()
	}
	return d.retries.schedule(req)
}

// publishTimeout bounds one publish of a retry or dead letter.
const publishTimeout = 10 * time.Second
