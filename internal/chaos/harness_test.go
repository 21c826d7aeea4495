package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

const testKey = "sk_test_chaos_0123456789abcdefghijklmnopqrstu"

// ackWait is the workers' --ack-wait: how long deliveries a dead worker
// held wait before JetStream gives them out again. It is above the test
// webhook's 5 s timeout, as it must be.
const ackWait = 8 * time.Second

// registryProc is a running `switchboard registry`.
type registryProc struct {
	*proc
	url string
}

func startRegistry(ctx context.Context, t *testing.T, natsURL string, replicas int) *registryProc {
	t.Helper()
	p := startProc(t, "registry", buildSwitchboard(t), "registry",
		"--nats-url", natsURL, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--api-key", testKey, "--stream-replicas", strconv.Itoa(replicas),
		"--allow-private-targets", "--log-format", "text")
	r := &registryProc{proc: p, url: p.line(ctx, t, "API:")}
	eventually(ctx, t, "registry ready", func() bool { return httpStatus(ctx, r.url+"/readyz") == http.StatusOK })
	return r
}

// workerProc is a running `switchboard worker`.
type workerProc struct {
	*proc
	url string // of /metrics, /healthz, /readyz
}

// workersPerProcess is each worker's --workers: with the receiver's
// delay it sets the pace, slow enough to kill things mid-flight.
const workersPerProcess = 4

func startWorker(ctx context.Context, t *testing.T, name, natsURL string, replicas int) *workerProc {
	t.Helper()
	p := startWorkerProc(t, name, natsURL, replicas)
	w := &workerProc{proc: p, url: strings.TrimSuffix(p.line(ctx, t, "Metrics:"), "/metrics")}
	eventually(ctx, t, name+" ready", func() bool { return httpStatus(ctx, w.url+"/readyz") == http.StatusOK })
	return w
}

func startWorkerProc(t *testing.T, name, natsURL string, replicas int) *proc {
	t.Helper()
	return startProc(t, name, buildSwitchboard(t), "worker",
		"--nats-url", natsURL, "--listen", "127.0.0.1:0", "--stream-replicas", strconv.Itoa(replicas),
		"--workers", strconv.Itoa(workersPerProcess), "--max-ack-pending", "64", "--ack-wait", ackWait.String(),
		"--retry-initial-interval", "1s", "--retry-max-interval", "1s",
		"--allow-private-targets", "--log-format", "text")
}

// delivered reads the worker's count of deliveries its receivers
// answered 2xx from its /metrics.
func (w *workerProc) delivered(ctx context.Context, t *testing.T) int {
	t.Helper()
	b, err := httpGet(ctx, w.url+"/metrics")
	if err != nil {
		t.Fatalf("%s metrics: %v", w.name, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `switchboard_deliveries_total{outcome="delivered"} `); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s metrics: %q: %v", w.name, sc.Text(), err)
			}
			return int(n)
		}
	}
	t.Fatalf("%s metrics: no switchboard_deliveries_total{outcome=\"delivered\"}", w.name)
	return 0
}

// post sends body as JSON to the registry's API and returns the status.
func (r *registryProc) post(ctx context.Context, path string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body) //nolint:errcheck
	return resp.StatusCode, out.Bytes(), nil
}

// createWebhook registers a webhook for every event type to url, with
// retries enough to outlast any fault of the tests.
func (r *registryProc) createWebhook(ctx context.Context, t *testing.T, url string) {
	t.Helper()
	status, body, err := r.post(ctx, "/v1/webhooks", map[string]any{
		"name": "chaos", "url": url, "events": []string{"*"}, "timeout": 5, "max_retries": 10,
	})
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s %v", status, body, err)
	}
}

// publish sends events prefix-00000 .. prefix-(n-1) through POST /v1/events
// from four goroutines. Each is sent again with the same id (the
// idempotency key, as an upstream service would) until it is accepted with
// a 2xx; it returns the ids accepted before ctx ended.
func (r *registryProc) publish(ctx context.Context, prefix string, n int) []string {
	ids := make(chan string)
	go func() {
		defer close(ids)
		for i := range n {
			select {
			case ids <- fmt.Sprintf("%s-%05d", prefix, i):
			case <-ctx.Done():
				return
			}
		}
	}()
	var mu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for id := range ids {
				for ctx.Err() == nil {
					status, _, err := r.post(ctx, "/v1/events", map[string]any{"id": id, "type": "call.started", "data": map[string]any{"id": id}})
					if err == nil && status/100 == 2 {
						mu.Lock()
						accepted = append(accepted, id)
						mu.Unlock()
						break
					}
					select { // 503 while NATS is away, or no answer
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		})
	}
	wg.Wait()
	return accepted
}

// mustPublish is publish that fails the test unless every event is
// accepted.
func (r *registryProc) mustPublish(ctx context.Context, t *testing.T, prefix string, n int) []string {
	t.Helper()
	ids := r.publish(ctx, prefix, n)
	if len(ids) != n {
		t.Fatalf("%d of %d events accepted before %v", len(ids), n, ctx.Err())
	}
	return ids
}

// startSlowReceiver starts a receiver that takes delay to answer 200, so
// that a backlog takes seconds to deliver.
func startSlowReceiver(t *testing.T, delay time.Duration) *testenv.Receiver {
	return testenv.StartReceiver(t, func(*http.Request, []byte) int {
		time.Sleep(delay)
		return http.StatusOK
	})
}

// tally is what a receiver got of the events accepted.
type tally struct {
	N          int // events accepted
	Delivered  int // of them, received at least once
	Lost       int // of them, never received
	Duplicates int // receptions beyond the first
}

func (c tally) String() string {
	return fmt.Sprintf("N=%d delivered=%d lost=%d duplicates=%d", c.N, c.Delivered, c.Lost, c.Duplicates)
}

func count(recv *testenv.Receiver, ids []string) tally {
	got := recv.CountByID()
	c := tally{N: len(ids)}
	for _, id := range ids {
		switch n := got[id]; {
		case n == 0:
			c.Lost++
		default:
			c.Delivered++
			c.Duplicates += n - 1
		}
	}
	return c
}

// allDelivered reports whether every id has been received.
func allDelivered(recv *testenv.Receiver, ids []string) bool {
	return count(recv, ids).Lost == 0
}

// stall measures the receiver's pauses around a fault: the longest gap
// between two consecutive requests received after from (or between from
// and the first), and how long after resumedFrom the first request came.
func stall(recv *testenv.Receiver, from, resumedFrom time.Time) (longest, resume time.Duration) {
	prev := from
	resume = -1
	for _, r := range recv.Requests() {
		if r.At.Before(from) {
			continue
		}
		longest = max(longest, r.At.Sub(prev))
		prev = r.At
		if resume < 0 && !r.At.Before(resumedFrom) {
			resume = r.At.Sub(resumedFrom)
		}
	}
	return longest, resume
}

// jsClient connects the test itself to NATS, to look at consumers.
func jsClient(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// consumerInfo returns the state of a Switchboard consumer, nil when it
// cannot be read right now (NATS restarting, a leader being elected).
func consumerInfo(ctx context.Context, js jetstream.JetStream, stream, name string) *jetstream.ConsumerInfo {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return nil
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil
	}
	return info
}

// drained reports whether a consumer has nothing left: no message pending,
// none handed out unacked. Once the deliverer's is drained, no redelivery
// (a duplicate) can still come.
func drained(ctx context.Context, js jetstream.JetStream, stream, name string) bool {
	info := consumerInfo(ctx, js, stream, name)
	return info != nil && info.NumPending == 0 && info.NumAckPending == 0
}

func matcherDrained(ctx context.Context, js jetstream.JetStream) bool {
	return drained(ctx, js, streams.Events, streams.MatcherConsumer)
}

func delivererDrained(ctx context.Context, js jetstream.JetStream) bool {
	return drained(ctx, js, streams.Deliveries, streams.DelivererConsumer)
}
