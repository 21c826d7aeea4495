package main

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/signer"
)

// benchReceiver is the bench's webhook receiver on 127.0.0.1. It verifies
// every signature, and counts deliveries per (event, webhook) so that the
// bench reports lost and duplicated deliveries, not just a rate.
//
// Paths: /wh/<k> for webhook k of the fan-out, /ceiling for the raw HTTP
// run, /dead for the receiver that always fails, /bad/<kind> for the bad
// receivers of --bad-share (badKinds), /control for the fast receiver of
// --control.
type benchReceiver struct {
	URL string

	verifier *signer.Signer
	verify   bool
	fanout   int

	counts    []atomic.Uint32 // index n*fanout+k
	latencies []atomic.Int64  // publish-to-receive of the first arrival, ns
	published []atomic.Int64  // publish time of event n, Unix ns
	received  atomic.Int64
	dead      atomic.Int64
	bad       map[string]*atomic.Int64 // attempts by bad kind
	badSig    atomic.Int64
	bufs      sync.Pool
	server    *http.Server
	lastRecvN atomic.Int64 // Unix ns of the latest /wh delivery
}

func startBenchReceiver(secret string, events, fanout int, verify bool) (*benchReceiver, error) {
	v, err := signer.New(secret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &benchReceiver{
		URL:       "http://" + ln.Addr().String(),
		verifier:  v,
		verify:    verify,
		fanout:    fanout,
		counts:    make([]atomic.Uint32, events*fanout),
		latencies: make([]atomic.Int64, events*fanout),
		published: make([]atomic.Int64, events),
		bad:       map[string]*atomic.Int64{},
	}
	for _, kind := range badKinds {
		r.bad[kind] = new(atomic.Int64)
	}
	r.bufs.New = func() any { return new(bytes.Buffer) }
	r.server = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go r.server.Serve(ln) //nolint:errcheck // ends with Close
	return r, nil
}

func (r *benchReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	buf := r.bufs.Get().(*bytes.Buffer)
	defer r.bufs.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(req.Body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	path := req.URL.Path
	if kind, ok := strings.CutPrefix(path, "/bad/"); ok {
		r.serveBad(w, req, kind)
		return
	}
	if path == "/dead" {
		r.dead.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if r.verify {
		if err := r.verifier.Verify(req.Header, buf.Bytes(), 5*time.Minute, time.Now()); err != nil {
			r.badSig.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	if path == "/ceiling" || path == "/control" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	k, err := strconv.Atoi(strings.TrimPrefix(path, "/wh/"))
	n, nerr := strconv.Atoi(strings.TrimPrefix(req.Header.Get(signer.HeaderID), "bench_"))
	if err != nil || nerr != nil || k < 0 || k >= r.fanout || n < 0 || n >= len(r.published) {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	now := time.Now().UnixNano()
	i := n*r.fanout + k
	if r.counts[i].Add(1) == 1 {
		r.latencies[i].Store(now - r.published[n].Load())
	}
	r.received.Add(1)
	r.lastRecvN.Store(now)
	w.WriteHeader(http.StatusNoContent)
}

// The bad receivers of --bad-share: one answering 500 at once, one never
// answering within the webhook's timeout (the minimum, 5 s), one resetting
// the connection, one answering 204 after a second.
var badKinds = []string{"500", "timeout", "reset", "slow"}

// badEventTypes are the event types of the bad receivers' webhooks, in the
// order of badKinds.
var badEventTypes = []string{"call.ended", "call.answered", "agent.logged_in", "agent.logged_out"}

const (
	badTimeoutHold = (switchboard.MinTimeoutSeconds + 1) * time.Second
	badSlowAnswer  = time.Second
)

func (r *benchReceiver) serveBad(w http.ResponseWriter, req *http.Request, kind string) {
	n := r.bad[kind]
	if n == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	n.Add(1)
	wait := func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-req.Context().Done(): // the deliverer gave up: the body was read, so this fires
		}
	}
	switch kind {
	case "500":
		w.WriteHeader(http.StatusInternalServerError)
	case "timeout":
		wait(badTimeoutHold)
		w.WriteHeader(http.StatusNoContent)
	case "reset":
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	case "slow":
		wait(badSlowAnswer)
		w.WriteHeader(http.StatusNoContent)
	}
}

// badAttempts returns the attempts each bad receiver saw.
func (r *benchReceiver) badAttempts() map[string]int64 {
	out := map[string]int64{}
	for k, n := range r.bad {
		out[k] = n.Load()
	}
	return out
}

// reset forgets every delivery, for a second run on the same receiver.
func (r *benchReceiver) reset() {
	for i := range r.counts {
		r.counts[i].Store(0)
		r.latencies[i].Store(0)
	}
	for i := range r.published {
		r.published[i].Store(0)
	}
	r.received.Store(0)
	r.dead.Store(0)
	r.badSig.Store(0)
	r.lastRecvN.Store(0)
	for _, n := range r.bad {
		n.Store(0)
	}
}

// tally returns deliveries never received and received more than once.
func (r *benchReceiver) tally() (lost, dup int) {
	for i := range r.counts {
		switch c := r.counts[i].Load(); {
		case c == 0:
			lost++
		case c > 1:
			dup += int(c - 1)
		}
	}
	return lost, dup
}

func (r *benchReceiver) Close() { r.server.Close() }
