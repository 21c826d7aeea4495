// Package testenv starts the real parts tests run against: an embedded
// JetStream in a temporary directory and HTTP receivers on 127.0.0.1. It is
// imported by tests only.
package testenv

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/cputime"
	"github.com/switchboard-hq/switchboard/internal/natsembed"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// JetStream is an embedded nats-server with Switchboard's streams set up.
type JetStream struct {
	Server *natsembed.Server
	NC     *nats.Conn
	JS     jetstream.JetStream
	Dir    string
}

// StartJetStream starts an embedded JetStream in tb.TempDir(), sets up the
// streams and stops everything when the test ends.
func StartJetStream(tb testing.TB) *JetStream {
	tb.Helper()
	return StartJetStreamIn(tb, tb.TempDir())
}

// StartJetStreamIn is StartJetStream on a given store directory, so that a
// test can stop a server and start another on the same data.
func StartJetStreamIn(tb testing.TB, dir string) *JetStream {
	tb.Helper()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: dir})
	if err != nil {
		tb.Fatalf("start jetstream: %v", err)
	}
	nc, err := srv.Connect()
	if err != nil {
		srv.Shutdown()
		tb.Fatalf("connect: %v", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := streams.Setup(ctx, js, streams.DefaultConfig()); err != nil {
		tb.Fatalf("setup streams: %v", err)
	}
	env := &JetStream{Server: srv, NC: nc, JS: js, Dir: dir}
	tb.Cleanup(env.Stop)
	return env
}

// Stop closes the connection and shuts the server down; safe to call twice.
func (e *JetStream) Stop() {
	if !e.NC.IsClosed() {
		e.NC.Close()
	}
	e.Server.Shutdown()
}

// Request is what a Receiver recorded of one request.
type Request struct {
	Method string
	Header http.Header
	Body   []byte
	At     time.Time
}

// Receiver is an HTTP server on 127.0.0.1 that records every request and
// answers with Respond's status (200 when Respond is nil).
type Receiver struct {
	URL string

	mu       sync.Mutex
	requests []Request
	respond  func(r *http.Request, body []byte) int
}

// StartReceiver starts a Receiver; respond may be nil (always 200).
func StartReceiver(tb testing.TB, respond func(r *http.Request, body []byte) int) *Receiver {
	tb.Helper()
	rc := &Receiver{respond: respond}
	srv := httptest.NewServer(http.HandlerFunc(rc.serveHTTP))
	tb.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

func (rc *Receiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.requests = append(rc.requests, Request{Method: r.Method, Header: r.Header.Clone(), Body: body, At: time.Now()})
	respond := rc.respond
	rc.mu.Unlock()
	status := http.StatusOK
	if respond != nil {
		status = respond(r, body)
	}
	w.WriteHeader(status)
}

// Requests returns a copy of what was received so far.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Request(nil), rc.requests...)
}

// Count returns how many requests were received.
func (rc *Receiver) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.requests)
}

// CountByID returns how many requests carried each webhook-id header.
func (rc *Receiver) CountByID() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	m := make(map[string]int, len(rc.requests))
	for _, r := range rc.requests {
		m[r.Header.Get("webhook-id")]++
	}
	return m
}

// WaitFor polls cond every 10ms until it is true, failing the test after
// timeout with msg.
func WaitFor(tb testing.TB, timeout time.Duration, msg string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CPUTime is the CPU time (user and system) this process has used; it
// skips tb where that cannot be read.
func CPUTime(tb testing.TB) time.Duration {
	tb.Helper()
	d, ok := cputime.Process()
	if !ok {
		tb.Skip("no CPU time on this system")
	}
	return d
}
