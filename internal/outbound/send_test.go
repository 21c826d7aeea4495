package outbound_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/outbound"
)

// loopback is a client that may reach receivers on 127.0.0.1.
func loopback() *http.Client {
	return outbound.NewHTTPClient(1, netguard.New(false, netip.MustParsePrefix("127.0.0.0/8")))
}

// send POSTs to url through client and returns what Send says.
func send(t *testing.T, client *http.Client, url string) (outbound.Answer, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	return outbound.Send(client, req, make([]byte, outbound.MaxExcerpt))
}

func TestSend_ClassifiesTheAnswer(t *testing.T) {
	long := strings.Repeat("é", 1000) // 2000 bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("fine\x00\nthanks"))
		case "/fail":
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(long))
		case "/busy":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/gone":
			w.WriteHeader(http.StatusGone)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		}
	}))
	defer srv.Close()
	client := loopback()

	ans, err := send(t, client, srv.URL+"/ok")
	if err != nil || ans.Status != 200 || ans.Body != "fine  thanks" || ans.ReadErr != nil {
		t.Errorf("ok: %+v, %v; want 200 with the body made printable", ans, err)
	}
	for _, tt := range []struct {
		path  string
		check func(*outbound.Error) bool
	}{
		{"/fail", func(e *outbound.Error) bool {
			return e.Status == 500 && e.Body == long[:outbound.MaxExcerpt] && !e.Gone() && !e.Redirect()
		}},
		{"/busy", func(e *outbound.Error) bool { return e.Status == 429 && e.RetryAfter == 7*time.Second }},
		{"/gone", func(e *outbound.Error) bool { return e.Gone() && e.RetryAfter == 0 }},
		{"/moved", func(e *outbound.Error) bool {
			return e.Status == http.StatusFound && e.Redirect() && strings.Contains(e.Error(), "redirects are not followed")
		}},
	} {
		ans, err := send(t, client, srv.URL+tt.path)
		var e *outbound.Error
		if !errors.As(err, &e) || !tt.check(e) || ans.Status != e.Status || ans.Body != e.Body {
			t.Errorf("%s: %+v, %#v", tt.path, ans, err)
		}
	}
}

// TestSend_NoAnswerKeepsTheURLOut: the URL may hold a token in its query;
// the error goes to logs, attempt records and test sends' answers.
func TestSend_NoAnswerKeepsTheURLOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ans, err := send(t, loopback(), "http://"+addr+"/hooks?token=s3cret")
	var e *outbound.Error
	if !errors.As(err, &e) || e.Status != 0 || ans.Status != 0 || e.Refused() || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("%+v, %v; want no answer, connection refused", ans, err)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "/hooks") {
		t.Errorf("error %q shows the URL", err)
	}
}

func TestSend_GuardRefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("the guard let a request reach loopback")
	}))
	defer srv.Close()
	_, err := send(t, outbound.NewHTTPClient(1, nil), srv.URL)
	var e *outbound.Error
	if !errors.As(err, &e) || !e.Refused() {
		t.Errorf("%v, want the guard's refusal", err)
	}
}

func TestNewHTTPClient_NoProxy(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	tr, ok := outbound.NewHTTPClient(1, nil).Transport.(*http.Transport)
	if !ok || tr.Proxy != nil {
		t.Errorf("transport %T with a proxy function: the proxy would be the address dialled", tr)
	}
}
