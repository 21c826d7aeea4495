package outbound

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		status int
		value  string
		want   time.Duration
	}{
		{429, "7", 7 * time.Second},
		{503, now.Add(time.Minute).Format(http.TimeFormat), time.Minute},
		{503, now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{500, "7", 0}, // only 429 and 503 ask to wait
		{429, "", 0},
		{429, "-3", 0},
		{429, "soon", 0},
	} {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
		if tt.value != "" {
			resp.Header.Set("Retry-After", tt.value)
		}
		if got := parseRetryAfter(resp, now); got != tt.want {
			t.Errorf("status %d, Retry-After %q: %v, want %v", tt.status, tt.value, got, tt.want)
		}
	}
}
