package outbound

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchboard-hq/switchboard/internal/netguard"
)

// Error is a failed attempt: a non-2xx answer (Status > 0) or none at all
// (Status == 0: timeout, refused connection, TLS failure, the SSRF guard's
// refusal...). It says what happened; what follows from it (retry, dead
// letter, the breaker) is the caller's to decide.
type Error struct {
	Status     int
	RetryAfter time.Duration // from Retry-After on 429 and 503; 0 when absent
	Body       string        // the start of the response body (Answer.Body)
	Err        error         // the transport error when Status == 0, without the URL
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("request failed: %v", e.Err)
	}
	if e.Redirect() {
		return fmt.Sprintf("status %d: redirects are not followed", e.Status)
	}
	if e.Body != "" {
		return fmt.Sprintf("status %d: %s", e.Status, e.Body)
	}
	return fmt.Sprintf("status %d", e.Status)
}

func (e *Error) Unwrap() error { return e.Err }

// Redirect reports whether the receiver answered a 3xx, which is not
// followed: the guard checked the address of the webhook's URL, not of
// wherever a redirect points.
func (e *Error) Redirect() bool { return e.Status >= 300 && e.Status < 400 }

// Gone reports whether the receiver asked never to be called again.
func (e *Error) Gone() bool { return e.Status == http.StatusGone }

// Refused reports whether the SSRF guard refused to connect to the
// receiver: trying again would only be refused again.
func (e *Error) Refused() bool {
	var re *netguard.RefusedError
	return e.Status == 0 && errors.As(e.Err, &re)
}
