package portal_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/portal"
)

// The portal's files are served from the binary under Prefix, with a
// policy that keeps scripts and requests on its own origin, and none of
// them loads anything from elsewhere (no CDN).
func TestHandler_ServesEmbeddedFilesOnly(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET "+portal.Prefix, portal.Handler())
	ts := httptest.NewServer(mux)
	defer ts.Close()
	remote := regexp.MustCompile(`(?:src|href)=["'](?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//|fetch\(\s*["'\x60]https?:`)
	for path, ctype := range map[string]string{
		"/portal/":        "text/html",
		"/portal/app.js":  "text/javascript",
		"/portal/app.css": "text/css",
	} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %s, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want scripts and requests to its own origin only", path, csp)
		}
		if m := remote.Find(body); m != nil {
			t.Errorf("%s loads from another origin: %s", path, m)
		}
	}
	resp, err := http.Get(ts.URL + "/portal/nosuch.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /portal/nosuch.js: %d, want 404", resp.StatusCode)
	}
}
