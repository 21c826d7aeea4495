package consumer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/netguard"
)

func TestDecide(t *testing.T) {
	policy := RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2}
	for _, tt := range []struct {
		name       string
		withError  error
		made       int
		maxRetries int
		want       decision
	}{
		{"delivered", nil, 1, 3, decision{action: actAck, outcome: outcomeDelivered}},
		{"first failure retries", &attemptError{Status: 500}, 1, 3, decision{action: actRetry, outcome: outcomeRetryScheduled, delay: time.Second}},
		{"third retry fails, one left", &attemptError{Status: 500}, 3, 3, decision{action: actRetry, outcome: outcomeRetryScheduled, delay: 4 * time.Second}},
		{"fourth attempt fails: spent", &attemptError{Status: 500}, 4, 3, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonRetriesExhausted}},
		{"no retries allowed", &attemptError{Err: context.DeadlineExceeded}, 1, 0, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonRetriesExhausted}},
		{"redirect retries", &attemptError{Status: 302}, 1, 3, decision{action: actRetry, outcome: outcomeRetryScheduled, delay: time.Second}},
		{"410 stops at once", &attemptError{Status: 410}, 1, 3, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonGone}},
		{"retry-after replaces the delay", &attemptError{Status: 429, RetryAfter: 30 * time.Second}, 1, 3, decision{action: actRetry, outcome: outcomeRetryScheduled, delay: 30 * time.Second}},
		{"retry-after is capped", &attemptError{Status: 503, RetryAfter: time.Hour}, 1, 3, decision{action: actRetry, outcome: outcomeRetryScheduled, delay: time.Minute}},
		{"shutdown hands back", fmt.Errorf("%w: context canceled", errShutdown), 1, 3, decision{action: actNak, outcome: outcomeRequeued}},
		{"retry not stored", &publishError{Op: "schedule retry", Err: errors.New("timeout")}, 1, 3, decision{action: actNakDelay, outcome: outcomeRequeued, delay: publishFailureDelay}},
		{"webhook deleted", &webhookError{Reason: reasonDeleted}, 1, 0, decision{action: actAck, outcome: outcomeDropped, reason: reasonDeleted}},
		{"webhook not known yet", &webhookError{Reason: reasonUnknown, Tries: 1}, 1, 0, decision{action: actNakDelay, outcome: outcomeRequeued, delay: unknownWebhookDelay}},
		{"webhook never known", &webhookError{Reason: reasonUnknown, Tries: unknownWebhookTries}, 1, 0, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonUnknown}},
		{"breaker open counts as a failed attempt", &openError{}, 1, 3, decision{action: actRetry, outcome: outcomeRetryScheduled, delay: time.Second}},
		{"breaker open, retries spent", &openError{}, 2, 1, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonRetriesExhausted}},
		{"cap reached defers", &deferError{Delay: time.Second}, 4, 3, decision{action: actDefer, outcome: outcomeDeferred, reason: deferWebhookBusy, delay: time.Second}},
		{"webhook inactive", &webhookError{Reason: reasonInactive}, 1, 0, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonInactive}},
		{"webhook invalid", &webhookError{Reason: reasonInvalid, Err: errors.New("bad secret")}, 1, 0, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonInvalid}},
		{"malformed delivery", errNoEventID, 1, 3, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonMalformed}},
		{"unsendable body", fmt.Errorf("%w: %w", errMalformed, errors.New("not an object")), 1, 3, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonMalformed}},
		{"ssrf refusal stops at once", &attemptError{Err: &url.Error{Op: "Post", URL: "http://10.0.0.1/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &netguard.RefusedError{Addr: netip.MustParseAddr("10.0.0.1"), Kind: "a private"}}}}, 1, 3, decision{action: actDeadLetter, outcome: outcomeDeadLettered, reason: reasonRefused}},
		{"connection refused retries", &attemptError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, 1, 3, decision{action: actRetry, outcome: outcomeRetryScheduled, delay: time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(tt.withError, tt.made, tt.maxRetries, policy); got != tt.want {
				t.Errorf("decide(%v, made %d, max %d) = %+v, want %+v", tt.withError, tt.made, tt.maxRetries, got, tt.want)
			}
		})
	}
}
