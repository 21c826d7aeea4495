package api_test

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// With the SSRF guard on, a URL naming a refused host by its IP address is
// refused at create and at PATCH (422 on url), not created active to fail
// at every delivery; what the guard allows (--allow-cidr) and hostnames
// (checked at dial time) are taken.
func TestWebhooks_URLTheGuardRefuses(t *testing.T) {
	a := apitest.Start(t, func(s *api.Server) {
		s.Guard = netguard.New(false, netip.MustParsePrefix("10.20.0.0/16"))
	})
	wh := a.Create(t, a.Key, "/v1/webhooks", `{"name": "crm", "url": "https://example.com/h", "events": ["*"]}`)
	for url, want := range map[string]int{
		"http://10.1.2.3/h":           422,
		"http://[::1]:8080/h":         422,
		"http://169.254.169.254/h":    422,
		"http://[::ffff:127.0.0.1]/h": 422,
		"http://10.20.1.2/h":          200, // --allow-cidr
		"http://localhost:9/h":        200, // a hostname: checked when dialled
		"https://203.0.113.9/h":       422, // TEST-NET-3, not globally routable
		"https://8.8.8.8/h":           200,
	} {
		status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+wh.ID, a.Key, `{"url": "`+url+`"}`)
		if status != want {
			t.Errorf("PATCH url %s: %d %s, want %d", url, status, b, want)
			continue
		}
		if want == 422 {
			if e := apitest.Decode[apitest.ErrorJSON](t, b); len(e.Errors["url"]) == 0 || len(e.Errors) != 1 {
				t.Errorf("PATCH url %s: errors %v, want one on url", url, e.Errors)
			}
		}
	}
	// PATCH without url leaves a stored URL alone.
	if status, b := a.Do(t, http.MethodPatch, "/v1/webhooks/"+wh.ID, a.Key, `{"timeout": 10}`); status != http.StatusOK {
		t.Errorf("PATCH timeout: %d %s", status, b)
	}
	status, b := a.Do(t, http.MethodPost, "/v1/webhooks", a.Key, `{"name": "lan", "url": "http://192.168.1.10/h", "events": ["*"], "timeout": 1}`)
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusUnprocessableEntity || len(e.Errors["url"]) == 0 || len(e.Errors["timeout"]) == 0 {
		t.Errorf("create on a private address with a bad timeout: %d %s, want 422 naming url and timeout", status, b)
	}
}
