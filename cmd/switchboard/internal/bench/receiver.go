package bench

import (
	"bytes"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-hq/switchboard/signer"
)

// receiver is the bench's webhook receiver on 127.0.0.1. It verifies
// every signature, and counts deliveries per (event, webhook) so that the
// bench reports lost and duplicated deliveries, not just a rate.
//
// Paths: /wh/<k> for webhook k of the fan-out, /ceiling for the raw HTTP
// run, /dead for the receiver that always fails, /bad/<kind> for the bad
// receivers of --bad-share (badKinds), /control for the fast receiver of
// --control.
type receiver struct {
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

func startReceiver(secret string, events, fanout int, verify bool) (*receiver, error) {
	v, err := signer.New(secret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{
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

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
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

// reset forgets every delivery, for a second run on the same receiver.
func (r *receiver) reset() {
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
func (r *receiver) tally() (lost, dup int) {
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

func (r *receiver) Close() { r.server.Close() }

// percentiles are the publish-to-receive latencies of the first arrivals.
func (r *receiver) percentiles() (p50, p95, p99 time.Duration) {
	var lat []int64
	for i := range r.latencies {
		if v := r.latencies[i].Load(); v > 0 {
			lat = append(lat, v)
		}
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration { return time.Duration(lat[min(int(q*float64(len(lat))), len(lat)-1)]) }
	return at(0.50), at(0.95), at(0.99)
}
