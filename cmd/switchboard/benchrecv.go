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

	"github.com/switchboard-hq/switchboard/signer"
)

// benchReceiver is the bench's webhook receiver on 127.0.0.1. It verifies
// every signature, and counts deliveries per (event, webhook) so that the
// bench reports lost and duplicated deliveries, not just a rate.
//
// Paths: /wh/<k> for webhook k of the fan-out, /ceiling for the raw HTTP
// run, /dead for the receiver that always fails.
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
	if path == "/ceiling" {
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
