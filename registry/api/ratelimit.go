package api

import (
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
)

// DefaultAPIRateLimit is the requests per second an API key may make unless
// the operator says otherwise (`--api-rate-limit`): ample for managing
// webhooks by hand or by script, and for a modest stream of events through
// POST /v1/events. Upstream services that publish faster use
// producer.Client straight to JetStream, or the operator raises the limit.
const DefaultAPIRateLimit = 100

// rateLimiter gives each API key a token bucket that refills at the limit
// and holds two seconds' worth of requests (at least 1), so that a client
// may burst briefly above its rate but not sustain it.
//
// The buckets live in a map that is never pruned. That is bounded: only a
// key that authenticated gets a bucket, and keys are stored rows that an
// operator creates, not something a client can mint.
type rateLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter // by key id
}

// newRateLimiter returns a limiter of perSecond requests per key, or nil
// (no limit) when perSecond is not positive.
func newRateLimiter(perSecond float64) *rateLimiter {
	if !(perSecond > 0) {
		return nil
	}
	return &rateLimiter{
		limit:   rate.Limit(perSecond),
		burst:   max(1, int(math.Ceil(2*perSecond))),
		buckets: map[string]*rate.Limiter{},
	}
}

// bucket returns the token bucket of key id, creating it full.
func (l *rateLimiter) bucket(id string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[id]
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[id] = b
	}
	return b
}

// wrap answers 429 with Retry-After (whole seconds, at least 1: when the
// next request would be let through) to a request whose key has no token
// left, and passes the others to next. It goes behind authentication: the
// key is in the request's context. A nil limiter lets everything through.
func (l *rateLimiter) wrap(logger *slog.Logger, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		res := l.bucket(keyFromContext(r.Context()).ID).ReserveN(now, 1)
		// res.OK() always holds: the burst is at least 1.
		if wait := res.DelayFrom(now); wait > 0 {
			res.CancelAt(now) // a refused request costs no token
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			httpjson.Error(w, r, logger, switchboard.Errorf(switchboard.ERATELIMITED, "Too many requests."))
			return
		}
		next.ServeHTTP(w, r)
	})
}
