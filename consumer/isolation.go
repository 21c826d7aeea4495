package consumer

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Isolation keeps one slow or dead receiver from taking the workers every
// other webhook needs, without changing what happens to any one delivery
// beyond that. Each webhook this process delivers to has a gate:
//
//   - a cap on its attempts in flight (Deliverer.MaxInFlightPerWebhook), so
//     that a slow receiver holds a bounded share of the workers;
//   - a circuit breaker (sony/gobreaker) for receivers that hold workers or
//     are plainly down: Deliverer.BreakerFailures consecutive down verdicts
//     (judge, errors.go: timeouts, slow failures, failed dials) open it;
//     while open no request is made; after Deliverer.BreakerCooldown, or
//     the Retry-After of the answer that kept it open if later, one probe
//     goes through (half-open): an up verdict closes it, a down one opens
//     it again. Failures answered quickly (5xx, 429, resets) are up: they
//     hold a worker for milliseconds, so they never stop the other
//     deliveries of their webhook; each just follows its own schedule.
//     gobreaker's two-step form fits an attempt made between Allow and
//     done, and it needs nothing beyond the standard library.
//
// A delivery that comes due while its webhook's breaker is open is not
// attempted and counts as a failed attempt (*openError, error class
// circuit_open): it is retried on its schedule or dead-lettered once its
// max_retries are spent, as if the receiver had failed it, so dead letters
// and auto-disable come on time and a dead receiver's backlog costs one
// republish per scheduled attempt, never one per cool-down. The probe is
// whichever delivery comes due first after the cool-down.
//
// A delivery refused for the cap is deferred: acked once JetStream has
// stored it again as a message schedule (no MaxAckPending slot held while
// it waits) with its attempt count unchanged and streams.HeaderDeferrals
// raised by one, firing about a second later, each further deferral
// waiting twice as long up to maxBusyDeferral. A receiver whose attempts
// all hang fills its slots with timeouts, which open the breaker; the cap
// only ever defers for about one breaker's worth of failures.

// Defaults of the isolation settings.
const (
	// DefaultBreakerFailures is how many consecutive failed attempts open a
	// webhook's circuit breaker.
	DefaultBreakerFailures = 5
	// DefaultBreakerCooldown is how long an open breaker rejects attempts
	// before it lets a probe through.
	DefaultBreakerCooldown = 30 * time.Second
)

// DefaultMaxInFlightPerWebhook is the per-webhook cap when none is set: a
// quarter of the workers, so that a slow receiver leaves three quarters to
// the others, and three slow ones still leave a quarter.
func DefaultMaxInFlightPerWebhook(workers int) int { return max(workers/4, 1) }

const (
	// At its cap, a webhook that is slow has its excess deferred at once;
	// one that is not makes the worker wait for a slot, up to four of its
	// attempts' average duration, within [minBusyWait, maxBusyWait]. Under a
	// backlog for one busy receiver every worker holds one of its
	// deliveries: waiting for a slot costs less than republishing, and
	// keeps its deliveries in order.
	//
	// A webhook is slow when its attempts take more than minBusyWait and
	// more than slowFactor times the average attempt of this deliverer
	// (all webhooks), or when its slots have been full and none of its
	// attempts has ended for twice its average (it hangs). Slow is
	// relative so that a loaded machine, or receivers that are all far
	// away, do not make every webhook slow.
	minBusyWait = 100 * time.Millisecond
	maxBusyWait = time.Second
	slowFactor  = 4
	// busyDeferral is how long a delivery deferred for the cap waits the
	// first time (schedules have one-second resolution), maxBusyDeferral
	// the longest: a slot frees up within an attempt.
	busyDeferral    = time.Second
	maxBusyDeferral = 30 * time.Second
	// gateIdle is how long a gate with no attempt in flight is kept after
	// its last use, at least: never less than a few cool-downs
	// (isolation.idle), so that an open breaker outlives the quiet spells
	// between its webhook's retries.
	gateIdle = 10 * time.Minute
	// sweepInterval is how often the breaker-state gauge is refreshed and
	// idle gates dropped.
	sweepInterval = time.Second
)

// Reasons a delivery is deferred: the values of the reason label of
// switchboard_deliveries_deferred_total.
const (
	deferCircuitOpen = "circuit_open"
	deferWebhookBusy = "webhook_busy"
)

// Breaker states: the values of the state label of
// switchboard_circuit_breakers.
const (
	stateClosed   = "closed"
	stateOpen     = "open"
	stateHalfOpen = "half_open"
)

// deferError says a delivery was not attempted, its webhook's cap being
// reached, and is to be deferred by Delay: the one reason left to defer
// (deferWebhookBusy), an open breaker's refusal being an *openError.
type deferError struct {
	Delay time.Duration
}

func (e *deferError) Error() string {
	return "deferred (" + deferWebhookBusy + ") for " + e.Delay.String()
}

// gate is one webhook's cap and breaker.
type gate struct {
	slots    chan struct{} // one element per attempt in flight
	breaker  *gobreaker.TwoStepCircuitBreaker[struct{}]
	openedAt atomic.Int64 // when the breaker last opened, Unix ns
	// holdUntil (Unix ns) keeps an open breaker open past its cool-down:
	// the Retry-After of the answer that opened it or failed its probe.
	holdUntil atomic.Int64
	// latency is a moving average of the attempts' durations, progress
	// when an attempt last ended or the slots last filled up (Unix ns):
	// together they say whether a slot will free up soon.
	latency  atomic.Int64
	progress atomic.Int64

	// Guarded by isolation.mu.
	users    int       // workers between get and put
	lastUsed time.Time // last put
}

// isolation holds the gates of one Deliverer.
type isolation struct {
	maxInFlight int
	failures    uint32
	cooldown    time.Duration
	idle        time.Duration // how long an unused gate is kept
	latency     atomic.Int64  // moving average of every attempt's duration, ns

	mu    sync.Mutex
	gates map[string]*gate
}

func newIsolation(maxInFlight, failures int, cooldown time.Duration) *isolation {
	return &isolation{
		maxInFlight: maxInFlight, failures: uint32(failures), cooldown: cooldown,
		idle:  max(gateIdle, 8*cooldown, 2*maxBusyDeferral),
		gates: map[string]*gate{},
	}
}

// get returns webhookID's gate, created on first use, and marks it in use
// until put, so that sweep never drops a gate a worker holds.
func (iso *isolation) get(webhookID string) *gate {
	iso.mu.Lock()
	defer iso.mu.Unlock()
	g := iso.gates[webhookID]
	if g == nil {
		g = iso.newGate(webhookID)
		iso.gates[webhookID] = g
	}
	g.users++
	return g
}

func (iso *isolation) put(g *gate) {
	iso.mu.Lock()
	g.users--
	g.lastUsed = time.Now()
	iso.mu.Unlock()
}

func (iso *isolation) newGate(webhookID string) *gate {
	g := &gate{slots: make(chan struct{}, iso.maxInFlight)}
	g.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        webhookID,
		MaxRequests: 1, // one probe when half-open
		Timeout:     iso.cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= iso.failures },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				g.openedAt.Store(time.Now().UnixNano())
			}
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errNoVerdict) },
	})
	return g
}

// What done is told of a verdict: nil is a success, errNoVerdict is left
// out of the counts, errDown is a failure.
var (
	errNoVerdict = errors.New("no verdict")
	errDown      = errors.New("receiver down")
)

func (v verdict) breakerErr() error {
	switch v {
	case verdictUp:
		return nil
	case verdictDown:
		return errDown
	}
	return errNoVerdict
}

// open reports whether the breaker refuses attempts at now, and until
// when at the earliest.
func (g *gate) open(now time.Time, cooldown time.Duration) (bool, time.Time) {
	hold := time.Unix(0, g.holdUntil.Load())
	if g.breaker.State() == gobreaker.StateOpen { // also moves an expired one to half-open
		return true, latest(hold, time.Unix(0, g.openedAt.Load()).Add(cooldown))
	}
	if now.Before(hold) {
		return true, hold
	}
	return false, time.Time{}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// attemptIsolated makes the delivery's attempt through its webhook's gate:
// it returns an *openError without attempting when the breaker is open, a
// *deferError when the cap is reached, and otherwise what attempt returns.
func (d *Deliverer) attemptIsolated(ctx context.Context, w *worker, h *hook, dlv *delivery) error {
	g := d.iso.get(dlv.webhookID)
	defer d.iso.put(g)

	// An open breaker first: its webhook's slots may all be held by the
	// attempts that opened it, timing out.
	if open, until := g.open(time.Now(), d.iso.cooldown); open {
		return d.refused(until)
	}
	// Then the slot, and only then the breaker's permission: asked before
	// a wait for a slot, the breaker could open during the wait and the
	// attempt would go ahead anyway.
	if !g.acquire(ctx, d.iso.latency.Load()) {
		return &deferError{Delay: d.iso.busyDeferral(dlv.deferrals)}
	}
	start := time.Now()
	if open, until := g.open(start, d.iso.cooldown); open {
		g.release(0)
		return d.refused(until)
	}
	done, err := g.breaker.Allow()
	if err != nil { // open, or half-open with its probe under way
		g.release(0)
		return d.refused(start.Add(d.iso.cooldown))
	}
	probe := g.breaker.State() == gobreaker.StateHalfOpen
	stop := d.keepAlive(dlv.msg, h.timeout)
	err = d.attempt(ctx, w, h, dlv)
	stop()
	took := time.Since(start)
	dlv.timing.sent, dlv.timing.took = start, took // for the attempt log
	// The breaker hears the outcome before the slot frees: otherwise the
	// next attempt could succeed and report first, resetting the count of
	// consecutive failures that this one is about to extend.
	done(judge(err, took, probe).breakerErr())
	var ae *attemptError
	if errors.As(err, &ae) && ae.RetryAfter > 0 && g.breaker.State() == gobreaker.StateOpen {
		g.holdUntil.Store(time.Now().Add(ae.RetryAfter).UnixNano())
	}
	g.release(took)
	// Over about the last 64 attempts: steadier than a gate's average.
	movingAverage(&d.iso.latency, took, 64)
	return err
}

// refused counts a delivery the open breaker kept from its receiver.
func (d *Deliverer) refused(until time.Time) error {
	d.Metrics.deferred[deferCircuitOpen].Inc()
	return &openError{Until: until}
}

// acquire takes a slot: at once when one is free, after a short wait when
// the webhook is not slow compared with overall, the average duration of
// all attempts, or not at all (false).
func (g *gate) acquire(ctx context.Context, overall int64) bool {
	select {
	case g.slots <- struct{}{}:
		if len(g.slots) == cap(g.slots) {
			g.progress.Store(time.Now().UnixNano())
		}
		return true
	default:
	}
	lat := g.latency.Load()
	if time.Now().UnixNano()-g.progress.Load() > max(int64(minBusyWait), 2*lat) {
		return false // full, and none ended for a while: it hangs
	}
	if lat > int64(minBusyWait) && lat > slowFactor*overall {
		return false
	}
	t := time.NewTimer(min(max(4*time.Duration(lat), minBusyWait), maxBusyWait))
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// release frees a slot after an attempt that took took; 0 when none was
// made.
func (g *gate) release(took time.Duration) {
	<-g.slots
	if took == 0 {
		return
	}
	movingAverage(&g.latency, took, 8)
	g.progress.Store(time.Now().UnixNano())
}

// movingAverage adds sample to the exponential moving average in avg over
// about the last n samples; the first sample sets it. Concurrent updates
// may lose a sample: it is an estimate.
func movingAverage(avg *atomic.Int64, sample time.Duration, n int64) {
	a := avg.Load()
	if a == 0 {
		avg.Store(max(int64(sample), 1))
		return
	}
	avg.Store(a + (int64(sample)-a)/n)
}

// busyDeferral is how long a delivery refused for the cap waits.
func (iso *isolation) busyDeferral(deferrals int) time.Duration {
	return spread(grown(busyDeferral, deferrals, maxBusyDeferral))
}

// grown is base doubled once per earlier deferral, at most ceiling.
func grown(base time.Duration, deferrals int, ceiling time.Duration) time.Duration {
	for range min(deferrals, 20) {
		base *= 2
		if base >= ceiling {
			return ceiling
		}
	}
	return min(base, ceiling)
}

// spread adds up to a quarter of d at random, so that deliveries deferred
// together do not all come back in the same second.
func spread(d time.Duration) time.Duration {
	return max(d, time.Second) + rand.N(max(d, time.Second)/4+1)
}
