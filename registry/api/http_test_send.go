package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/registry/store"
	"github.com/switchboard-hq/switchboard/signer"
)

// TestEventType is the type of the event a test send delivers.
const TestEventType = "webhook.test"

// testEventIDPrefix marks test events apart from published ones (msg_).
const testEventIDPrefix = "evt_"

// maxTestExcerpt is how much of the receiver's answer a test send returns.
const maxTestExcerpt = 1 << 10

// webhookFinder is what the test send needs of the store.
type webhookFinder interface {
	FindWebhookByID(ctx context.Context, id string) (*store.Webhook, error)
}

// testSender serves POST /v1/webhooks/{id}/test: it sends a webhook.test
// event to the webhook now and reports how the receiver answered. The
// request is built by signer.Endpoint, as every delivery's is, and sent
// through the deliverer's kind of client (SSRF guard, no proxy, no
// redirects) within the webhook's timeout: what the receiver sees is what
// a delivery looks like.
type testSender struct {
	store  webhookFinder
	client *http.Client
	logger *slog.Logger
}

// newTestSender returns a testSender whose client is the deliverer's kind,
// dialling through guard (nil: public addresses only). Test sends are few:
// a small pool of idle connections does.
func newTestSender(store webhookFinder, guard *netguard.Guard, logger *slog.Logger) *testSender {
	return &testSender{store: store, client: consumer.NewHTTPClient(2, guard), logger: logger}
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
	req, err := signer.NewRequest(ctx, &wh.Webhook, evt.ID, body, now)
	if err != nil {
		res.Error = err.Error()
		httpjson.Write(w, http.StatusOK, res)
		return
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		res.LatencyMS = milliseconds(time.Since(start))
		res.Error = sendError(err, wh.Timeout())
		s.log(r, wh, &res, err)
		httpjson.Write(w, http.StatusOK, res)
		return
	}
	excerpt, rerr := io.ReadAll(io.LimitReader(resp.Body, maxTestExcerpt))
	resp.Body.Close()
	res.LatencyMS = milliseconds(time.Since(start))
	res.Status = resp.StatusCode
	res.Body = strings.ToValidUTF8(string(excerpt), "\uFFFD")
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		res.Error = fmt.Sprintf("the receiver answered %d: redirects are not followed", resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		res.Error = fmt.Sprintf("the receiver answered %d", resp.StatusCode)
	case rerr != nil:
		res.Error = "reading the answer: " + sendError(rerr, wh.Timeout())
	default:
		res.Success = true
	}
	s.log(r, wh, &res, rerr)
	httpjson.Write(w, http.StatusOK, res)
}

// log notes a test send; a failed request's whole error (cause), which
// the tenant does not see, goes to the operator at info level.
func (s *testSender) log(r *http.Request, wh *store.Webhook, res *testSendResult, cause error) {
	attrs := []any{"tenant", wh.TenantID, "webhook_id", wh.ID,
		"event_id", res.EventID, "status", res.Status, "success", res.Success, "err", res.Error}
	if cause != nil {
		s.logger.InfoContext(r.Context(), "test send failed", append(attrs, "cause", withoutURL(cause).Error())...)
		return
	}
	s.logger.DebugContext(r.Context(), "test send", attrs...)
}

// withoutURL drops the *url.Error layer of a client error: its URL may
// carry a query-string token.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
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
// (netguard.PublicError): without the URL, which may carry a query-string
// token, and without the addresses its host resolved to.
func sendError(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within the webhook's timeout of %v", timeout)
	}
	return netguard.PublicError(err)
}

func milliseconds(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
