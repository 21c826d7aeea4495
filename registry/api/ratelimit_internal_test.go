package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/registry/store"
)

// However short the wait for the next token, Retry-After says at least 1:
// "0" would invite the client to retry at once.
func TestRateLimiter_RetryAfterAtLeastOneSecond(t *testing.T) {
	l := newRateLimiter(1000)
	if l.burst != 2000 {
		t.Errorf("burst %d, want two seconds' worth", l.burst)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := l.wrap(nil, next)
	ctx := context.WithValue(context.Background(), keyContextKey{}, store.Key{ID: "key_1"})
	l.bucket("key_1").AllowN(time.Now(), l.burst) // empty the bucket

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/webhooks", nil).WithContext(ctx))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("%d, Retry-After %q; want 429 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}

	if newRateLimiter(0) != nil || newRateLimiter(-1) != nil {
		t.Error("a rate of 0 or less must mean no limit")
	}
	if got := newRateLimiter(0.1).burst; got != 1 {
		t.Errorf("burst at 0.1/s: %d, want 1", got)
	}
}

// BenchmarkRateLimiter_Wrap measures what the limit adds to a request that
// it lets through: one key (every request on one bucket and one map entry)
// and 1000 keys.
func BenchmarkRateLimiter_Wrap(b *testing.B) {
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, keys := range []int{1, 1000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			h := newRateLimiter(1e9).wrap(nil, next) // never refuses: measure the pass
			reqs := make([]*http.Request, keys)
			for i := range reqs {
				ctx := context.WithValue(context.Background(), keyContextKey{}, store.Key{ID: fmt.Sprintf("key_%d", i)})
				reqs[i] = httptest.NewRequest(http.MethodGet, "/v1/webhooks", nil).WithContext(ctx)
			}
			b.RunParallel(func(pb *testing.PB) {
				w := httptest.NewRecorder()
				i := 0
				for pb.Next() {
					h.ServeHTTP(w, reqs[i%keys])
					i++
				}
			})
		})
	}
}
