package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// scrapeMetrics returns the lines of a /metrics page for the given names.
func scrapeMetrics(ctx context.Context, url string, names ...string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	var out []string
	for line := range strings.Lines(string(body)) {
		for _, n := range names {
			if strings.HasPrefix(line, n+"{") {
				out = append(out, strings.TrimSpace(line))
			}
		}
	}
	return out, nil
}

// sumMetric adds up the values of the lines of a /metrics page that start
// with prefix (a name, or a name and its labels).
func sumMetric(lines []string, prefix string) float64 {
	var n float64
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, prefix); ok && rest != "" && (rest[0] == ' ' || rest[0] == '{') {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			n += v
		}
	}
	return n
}
