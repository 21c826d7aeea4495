package outbound

import (
	"net/http"
	"time"

	"github.com/switchboard-hq/switchboard/internal/netguard"
)

// NewHTTPClient returns the HTTP client of deliveries and test sends: it
// dials only the addresses guard allows (nil: public addresses only; see
// netguard), never through a proxy (HTTP_PROXY would let a request reach
// what the guard refuses, and would be the one dialled), never follows
// redirects (a 3xx is a failed attempt), keeps up to conns idle connections
// per host so that each worker can reuse one, and leaves per-request
// deadlines to the caller's context.
func NewHTTPClient(conns int, guard *netguard.Guard) *http.Client {
	conns = max(conns, 1)
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            guard.DialContext,
			ForceAttemptHTTP2:      true,
			MaxIdleConns:           conns * 4,
			MaxIdleConnsPerHost:    conns,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    10 * time.Second,
			ExpectContinueTimeout:  time.Second,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
