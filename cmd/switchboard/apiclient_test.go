package main

import (
	"context"
	"net/http"
)

// createWebhook creates wh through the API and returns its id, as a
// customer would; tests set up their webhooks with it.
func (a apiClient) createWebhook(ctx context.Context, wh map[string]any) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := a.do(ctx, http.MethodPost, "/v1/webhooks", wh, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}
