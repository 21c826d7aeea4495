package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// apiClient is the little JSON client of the subcommands that talk to the
// API: publish sends events through it, the bench sets up webhooks with it
// as a customer would.
type apiClient struct {
	url string
	key string
	hc  *http.Client // nil: http.DefaultClient
}

func (a apiClient) httpClient() *http.Client {
	if a.hc != nil {
		return a.hc
	}
	return http.DefaultClient
}

// do sends in as JSON (when non-nil) and decodes a 2xx answer into out (when
// non-nil); any other answer is an error carrying the body.
func (a apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := a.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// send sends a request with the key and a JSON body (when non-nil).
func (a apiClient) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

func (a apiClient) createWebhook(ctx context.Context, wh map[string]any) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := a.do(ctx, http.MethodPost, "/v1/webhooks", wh, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}
