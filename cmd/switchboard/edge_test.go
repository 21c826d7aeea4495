package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// Clients that trickle a header or a body, or keep connections idle, three
// times as many as the server keeps open, cannot keep the API from
// answering: the timeouts close their connections, and a request waiting
// behind them is served.
func TestServe_SlowClientsCannotExhaustTheAPI(t *testing.T) {
	cfg := testServeConfig(t.TempDir())
	cfg.HTTP.ReadHeaderTimeout = 500 * time.Millisecond
	cfg.HTTP.ReadTimeout = time.Second
	cfg.HTTP.WriteTimeout = 5 * time.Second
	cfg.HTTP.IdleTimeout = time.Second
	cfg.HTTP.MaxConns = 8
	sys := mustStartSystem(t, cfg)
	addr := strings.TrimPrefix(sys.URL, "http://")

	var closed atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	// watch counts a slow connection once the server has closed it.
	watch := func(c net.Conn) {
		go func() {
			_, _ = io.Copy(io.Discard, c)
			closed.Add(1)
		}()
	}
	trickle := func(c net.Conn, prefix string) {
		go func() {
			defer c.Close()
			if _, err := io.WriteString(c, prefix); err != nil {
				return
			}
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := io.WriteString(c, " "); err != nil {
					return
				}
			}
		}()
	}
	const each = 8
	var conns []net.Conn
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range each {
		// A body that never ends.
		c := dial()
		watch(c)
		trickle(c, fmt.Sprintf("POST /v1/webhooks HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", addr, testKey))
		// A header that never ends.
		c = dial()
		watch(c)
		trickle(c, "GET /v1/webhooks HTTP/1.1\r\nHost: "+addr+"\r\nX-Slow: ")
	}
	// Kept alive, then idle. They are answered once the server takes them.
	for range each {
		c := dial()
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
			t.Fatal(err)
		}
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				resp.Body.Close()
			}
			_, _ = io.Copy(io.Discard, c)
			closed.Add(1)
		}()
	}

	client := &http.Client{Timeout: 30 * time.Second}
	req, err := http.NewRequest(http.MethodGet, sys.URL+"/v1/webhooks", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("the API did not answer behind %d slow connections: %v", 3*each, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/webhooks: %d", resp.StatusCode)
	}
	testenv.WaitFor(t, 30*time.Second, "every slow connection closed by the server", func() bool {
		return closed.Load() == 3*each
	})
}

// With --metrics-listen, /metrics is served there and not on --listen,
// where the API stays; the probes answer on both.
func TestServe_MetricsListen(t *testing.T) {
	cfg := testServeConfig(t.TempDir())
	cfg.MetricsListen = "127.0.0.1:0"
	sys := mustStartSystem(t, cfg)
	if sys.MetricsURL == sys.URL {
		t.Fatalf("metrics on %s, as the API", sys.MetricsURL)
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get(sys.MetricsURL + "/metrics"); status != http.StatusOK || !strings.Contains(body, "switchboard_") {
		t.Errorf("GET %s/metrics: %d %.200s", sys.MetricsURL, status, body)
	}
	if status, body := get(sys.URL + "/metrics"); status != http.StatusNotFound {
		t.Errorf("GET %s/metrics on the API's address: %d %.200s, want 404", sys.URL, status, body)
	}
	for _, base := range []string{sys.URL, sys.MetricsURL} {
		if status, _ := get(base + "/healthz"); status != http.StatusOK {
			t.Errorf("GET %s/healthz: %d", base, status)
		}
	}
	if status, _ := get(sys.MetricsURL + "/v1/webhooks"); status != http.StatusNotFound {
		t.Errorf("the API is served on the metrics address: %d", status)
	}
}

// The limits of the HTTP server and the quotas are flags with their
// SWITCHBOARD_ variables; unusable values are refused, each named.
func TestRun_ServeRefusesBadEdgeSettingsNamingEach(t *testing.T) {
	t.Setenv("SWITCHBOARD_HTTP_IDLE_TIMEOUT", "-1s")
	t.Setenv("SWITCHBOARD_MAX_AGENTS_PER_TENANT", "-2")
	err := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:8089",
		"--metrics-listen", "127.0.0.1:8089", "--http-read-timeout", "0s", "--http-max-conns", "-1",
		"--max-headers-per-webhook", "101", "--max-webhooks-per-tenant", "-1"}, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("serve started with unusable settings")
	}
	for _, flag := range []string{"--metrics-listen", "--http-read-timeout", "--http-idle-timeout", "--http-max-conns",
		"--max-headers-per-webhook", "--max-webhooks-per-tenant", "--max-agents-per-tenant"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("error does not name %s: %v", flag, err)
		}
	}
}

// One client holding slow connections gets --http-max-conns-per-client of
// the slots, the others being closed at once: another client is served at
// once, though no timeout has freed a slot.
func TestServe_OneClientCannotTakeEverySlot(t *testing.T) {
	cfg := testServeConfig(t.TempDir())
	cfg.HTTP.ReadHeaderTimeout = time.Hour // nothing is freed by a timeout here
	cfg.HTTP.ReadTimeout = time.Hour
	cfg.HTTP.IdleTimeout = time.Hour
	cfg.HTTP.MaxConns = 8
	cfg.HTTP.MaxConnsPerClient = 4
	sys := mustStartSystem(t, cfg)
	addr := strings.TrimPrefix(sys.URL, "http://")

	var refused atomic.Int64
	for range 12 {
		c, err := net.Dial("tcp", addr) // from 127.0.0.1
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /v1/webhooks HTTP/1.1\r\nHost: "+addr+"\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, _ = io.Copy(io.Discard, c)
			refused.Add(1)
		}()
	}
	testenv.WaitFor(t, 20*time.Second, "the connections past 4 closed", func() bool { return refused.Load() == 8 })

	other := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
	}}
	req, err := http.NewRequest(http.MethodGet, sys.URL+"/v1/webhooks", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := other.Do(req)
	if err != nil {
		t.Fatalf("another client was not served: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/webhooks from another client: %d", resp.StatusCode)
	}
	if n := refused.Load(); n != 8 {
		t.Errorf("%d of the first client's connections closed, want 8", n)
	}
}
