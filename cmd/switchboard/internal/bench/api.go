package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// api is the bench's client of a switchboard's HTTP API, used as a
// customer would: to create webhooks and to publish events. The command
// has a fuller one; the bench keeps to the one call it needs (a POST)
// rather than import the command.
type api struct {
	url string
	key string
	hc  *http.Client
}

// answer is an API's answer to a POST, its body read (up to 1 MiB).
type answer struct {
	code   int
	status string
	body   []byte
}

// post sends body, JSON, to path with the key.
func (a api) post(ctx context.Context, path string, body []byte) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url+path, bytes.NewReader(body))
	if err != nil {
		return answer{}, fmt.Errorf("POST %s: %w", path, err)
	}
	req.Header = http.Header{"Authorization": {"Bearer " + a.key}, "Content-Type": {"application/json"}}
	resp, err := a.hc.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{}, fmt.Errorf("POST %s: read the answer: %w", path, err)
	}
	return answer{code: resp.StatusCode, status: resp.Status, body: b}, nil
}

// asError is the answer as the error of a POST to path.
func (r answer) asError(path string) error {
	return fmt.Errorf("POST %s: %s: %s", path, r.status, bytes.TrimSpace(r.body))
}

// createWebhook creates wh and returns its id; an answer other than 2xx
// is an error carrying the body.
func (a api) createWebhook(ctx context.Context, wh map[string]any) (string, error) {
	in, err := json.Marshal(wh)
	if err != nil {
		return "", fmt.Errorf("create webhook: %w", err)
	}
	ans, err := a.post(ctx, "/v1/webhooks", in)
	if err != nil {
		return "", err
	}
	if ans.code/100 != 2 {
		return "", ans.asError("/v1/webhooks")
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(ans.body, &out); err != nil {
		return "", fmt.Errorf("POST /v1/webhooks: decode: %w", err)
	}
	return out.ID, nil
}

// postUntilAccepted posts body to path until the answer is 2xx, waiting a
// little after a 429 or a 503 (the registry's mirror not yet caught up);
// any other answer is an error.
func (a api) postUntilAccepted(ctx context.Context, path string, body []byte) error {
	for {
		ans, err := a.post(ctx, path, body)
		if err != nil {
			return err
		}
		switch {
		case ans.code/100 == 2:
			return nil
		case ans.code == http.StatusTooManyRequests || ans.code == http.StatusServiceUnavailable:
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			return ans.asError(path)
		}
	}
}
