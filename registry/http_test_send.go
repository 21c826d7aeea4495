package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/outbound"
)

// TestEventType is the type of the event a test send delivers.
const TestEventType = "webhook.test"

// testEventIDPrefix marks test events apart from published ones (msg_).
const testEventIDPrefix = "evt_"

// webhookFinder is what the test send needs of the store.
type webhookFinder interface {
	FindWebhookByID(ctx context.Context, id string) (*Webhook, error)
}

// testSender serves POST /v1/webhooks/{id}/test: it sends a webhook.test
// event to the webhook now and reports how the receiver answered. The
// attempt is a delivery's (internal/outbound): the request built by
// outbound.Endpoint, sent by outbound.Send through the deliverer's kind of
// client (SSRF guard, no proxy, no redirects) within the webhook's
// timeout, the same excerpt of the answer, the URL kept out of errors.
// What the receiver sees is what a delivery looks like, and what the
// tenant reads is what the attempt log would say.
type testSender struct {
	store  webhookFinder
	client *http.Client
	logger *slog.Logger
}

// newTestSender returns a testSender whose client is the deliverer's kind,
// dialling through guard (nil: public addresses only). Test sends are few:
// a small pool of idle connections does.
func newTestSender(store webhookFinder, guard *netguard.Guard, logger *slog.Logger) *testSender {
	return &testSender{store: store, client: outbound.NewHTTPClient(2, guard), logger: logger}
}

// testSendResult is the answer of a test send. Status is 0 when the
// receiver did not answer; Error says why the send failed.
type testSendResult struct {
	Success   bool    `json:"success"`
	Status    int     `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	Body      string  `json:"body"`
	Error     string  `json:"error,omitempty"`
	EventID   string  `json:"event_id"`
}

// send serves the route. Whatever happens at the receiver, refusals of the
// SSRF guard included, the answer is a 200 with success false and the
// reason: the request itself succeeded.
func (s *testSender) send(w http.ResponseWriter, r *http.Request) {
	wh, err := s.store.FindWebhookByID(r.Context(), r.PathValue("id"))
	if err != nil {
		httpjson.Error(w, r, s.logger, err)
		return
	}
	// The answer waits on the receiver for up to the webhook's timeout,
	// which may be longer than the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wh.Timeout() + 10*time.Second))
	now := time.Now().UTC()
	evt := testEvent(&wh.Webhook, now)
	res := testSendResult{EventID: evt.ID}
	body, err := evt.Payload(nil)
	if err != nil {
		httpjson.Error(w, r, s.logger, fmt.Errorf("test send to webhook %s: %w", wh.ID, err))
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), wh.Timeout())
	defer cancel()
	req, err := outbound.NewRequest(ctx, &wh.Webhook, evt.ID, body, now)
	if err != nil {
		res.Error = err.Error()
		httpjson.Write(w, http.StatusOK, res)
		return
	}
	start := time.Now()
	ans, err := outbound.Send(s.client, req, make([]byte, outbound.MaxExcerpt))
	res.LatencyMS = milliseconds(time.Since(start))
	res.Status, res.Body = ans.Status, ans.Body
	cause := ans.ReadErr
	var ae *outbound.Error // stays nil for a 2xx
	errors.As(err, &ae)
	switch {
	case ae != nil && ae.Status == 0:
		res.Error = sendError(ae.Err, wh.Timeout())
		cause = ae.Err
	case ae != nil && ae.Redirect():
		res.Error = fmt.Sprintf("the receiver answered %d: redirects are not followed", ae.Status)
	case ae != nil:
		res.Error = fmt.Sprintf("the receiver answered %d", ae.Status)
	case ans.ReadErr != nil:
		res.Error = "reading the answer: " + sendError(ans.ReadErr, wh.Timeout())
	default:
		res.Success = true
	}
	s.log(r, wh, &res, cause)
	httpjson.Write(w, http.StatusOK, res)
}

// log notes a test send; a failed request's whole error (cause, without
// the URL as outbound.Send returns it), which the tenant does not see,
// goes to the operator at info level.
func (s *testSender) log(r *http.Request, wh *Webhook, res *testSendResult, cause error) {
	attrs := []any{"tenant", wh.TenantID, "webhook_id", wh.ID,
		"event_id", res.EventID, "status", res.Status, "success", res.Success, "err", res.Error}
	if cause != nil {
		s.logger.InfoContext(r.Context(), "test send failed", append(attrs, "cause", cause.Error())...)
		return
	}
	s.logger.DebugContext(r.Context(), "test send", attrs...)
}

// testEvent is the event a test send delivers to wh at now.
func testEvent(wh *switchboard.Webhook, now time.Time) switchboard.Event {
	data, _ := json.Marshal(map[string]string{ // cannot fail for strings
		"webhook_id": wh.ID,
		"message":    "This is a test event sent by Switchboard.",
	})
	return switchboard.Event{
		ID:         switchboard.NewID(testEventIDPrefix),
		TenantID:   wh.TenantID,
		Type:       TestEventType,
		AgentID:    wh.AgentID,
		OccurredAt: now,
		Data:       data,
	}
}

// sendError says why a request got no answer as the tenant may read it
// (netguard.PublicError): err is already without the URL (outbound.Send
// drops it: it may carry a query-string token), and this takes out the
// addresses its host resolved to.
func sendError(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within the webhook's timeout of %v", timeout)
	}
	return netguard.PublicError(err)
}

func milliseconds(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
