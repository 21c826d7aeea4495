package consumer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// allowLoopback lets deliveries reach the test receivers on 127.0.0.1,
// which the default SSRF guard refuses.
var allowLoopback = netguard.New(false, netip.MustParsePrefix("127.0.0.0/8"))

// testRetry keeps retries quick: about 1 s, then 2 s.
var testRetry = consumer.RetryPolicy{InitialInterval: time.Second, MaxInterval: 2 * time.Second, Multiplier: 2, RandomizationFactor: 0.1}

// system is the consumer side of Switchboard running on an embedded
// JetStream: an Index, and a Matcher and a Deliverer when asked for.
type system struct {
	t         testing.TB
	env       *testenv.JetStream
	kv        jetstream.KeyValue
	index     *consumer.Index
	logs      *logBuffer
	reg       *prometheus.Registry
	metrics   *consumer.Metrics
	stopIndex func() error
	stopMatch func() error
}

func newSystem(t testing.TB, env *testenv.JetStream) *system {
	t.Helper()
	kv, err := streams.OpenWebhooksKV(context.Background(), env.JS)
	if err != nil {
		t.Fatal(err)
	}
	s := &system{t: t, env: env, kv: kv, logs: &logBuffer{}, reg: prometheus.NewRegistry()}
	s.metrics = consumer.NewMetrics(s.reg)
	s.index = &consumer.Index{KV: kv, Logger: s.logger()}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", s.logs.String())
		}
	})
	return s
}

func (s *system) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startIndex runs the index; webhooks put before it are in its snapshot.
func (s *system) startIndex() {
	s.stopIndex = goRun(s.t, "index", s.index.Run)
	testenv.WaitFor(s.t, 10*time.Second, "index ready", s.index.Ready)
}

func (s *system) startMatcher() {
	m := &consumer.Matcher{JS: s.env.JS, Index: s.index, Logger: s.logger(), Metrics: s.metrics}
	s.stopMatch = goRun(s.t, "matcher", m.Run)
}

// deliverer returns a Deliverer with test settings, not yet running.
func (s *system) deliverer() *consumer.Deliverer {
	return &consumer.Deliverer{
		JS: s.env.JS, Index: s.index, Logger: s.logger(), Metrics: s.metrics,
		Retry: testRetry, Workers: 8, MaxAckPending: 64,
		Guard: allowLoopback, // receivers run on 127.0.0.1
	}
}

func (s *system) startDeliverer() func() error {
	return goRun(s.t, "deliverer", s.deliverer().Run)
}

// startAll runs the index, the matcher and a deliverer.
func (s *system) startAll() {
	s.startIndex()
	s.startMatcher()
	s.startDeliverer()
}

// goRun runs fn until the returned stop is called, or the test ends, and
// fails the test if fn returns an error.
func goRun(t testing.TB, name string, fn func(context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New(name + " did not stop within 30s")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	return stop
}

// webhook returns an active webhook of tenant t1 for events, delivering to
// url with a fresh secret.
func webhook(t testing.TB, id, url string, events ...string) switchboard.Webhook {
	t.Helper()
	return switchboard.Webhook{
		ID: id, TenantID: "t1", Name: id, URL: url, Events: events, Secret: newSecret(t),
		TimeoutSeconds: 5, MaxRetries: 3, Status: switchboard.StatusActive,
	}
}

func newSecret(t testing.TB) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

func (s *system) putWebhook(w switchboard.Webhook) {
	s.t.Helper()
	b, err := json.Marshal(w)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.kv.Put(context.Background(), w.ID, b); err != nil {
		s.t.Fatalf("put webhook %s: %v", w.ID, err)
	}
}

func (s *system) deleteWebhook(id string) {
	s.t.Helper()
	if err := s.kv.Delete(context.Background(), id); err != nil {
		s.t.Fatalf("delete webhook %s: %v", id, err)
	}
}

// event returns an event of tenant t1.
func event(id, typ, agent string) switchboard.Event {
	return switchboard.Event{
		ID: id, TenantID: "t1", Type: typ, AgentID: agent,
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Data:       json.RawMessage(`{"call_id":"c-` + id + `"}`),
	}
}

// eventMsg is evt's SB_EVENTS message, as the producer stores it.
func eventMsg(tb testing.TB, evt switchboard.Event) *nats.Msg {
	tb.Helper()
	msg, err := streams.EventMsg(&evt, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

// publishEvent publishes evt as the producer does, with the event id as
// Nats-Msg-Id; withMsgID false leaves it out, as a re-publish after the
// duplicates window would look (the matcher then reads the id from the body).
func (s *system) publishEvent(evt switchboard.Event, withMsgID bool) {
	s.t.Helper()
	msg := eventMsg(s.t, evt)
	if !withMsgID {
		delete(msg.Header, jetstream.MsgIDHeader)
	}
	if _, err := s.env.JS.PublishMsg(context.Background(), msg); err != nil {
		s.t.Fatalf("publish event %s: %v", evt.ID, err)
	}
}

// deliveryMsg is a delivery as the matcher stores it.
func deliveryMsg(t testing.TB, evt switchboard.Event, webhookID string) *nats.Msg {
	t.Helper()
	body, err := evt.Payload(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(streams.DeliverySubject(webhookID))
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, streams.DeliveryMsgID(evt.ID, webhookID))
	m.Header.Set(streams.HeaderEventID, evt.ID)
	m.Header.Set(streams.HeaderTenant, evt.TenantID)
	m.Header.Set(streams.HeaderAcceptedAt, strconv.FormatInt(time.Now().UnixNano(), 10))
	return m
}

// publishDelivery stores a delivery directly, bypassing the matcher.
func (s *system) publishDelivery(evt switchboard.Event, webhookID string) {
	s.t.Helper()
	if _, err := s.env.JS.PublishMsg(context.Background(), deliveryMsg(s.t, evt, webhookID)); err != nil {
		s.t.Fatalf("publish delivery: %v", err)
	}
}

// publishDeliveries publishes n deliveries to webhookID of call.started
// events prefix+"0" to prefix+strconv.Itoa(n-1).
func (s *system) publishDeliveries(prefix, webhookID string, n int) {
	s.t.Helper()
	for i := range n {
		s.publishDelivery(event(prefix+strconv.Itoa(i), "call.started", ""), webhookID)
	}
}

// consumerIdle reports whether a consumer has nothing pending or unacked.
func (s *system) consumerIdle(stream, name string) bool {
	info, err := s.env.JS.Consumer(context.Background(), stream, name)
	if err != nil {
		return false
	}
	ci := info.CachedInfo()
	if fresh, err := info.Info(context.Background()); err == nil {
		ci = fresh
	}
	return ci.NumPending == 0 && ci.NumAckPending == 0
}

// streamMsgs returns how many messages stream holds.
func (s *system) streamMsgs(stream string) uint64 {
	st, err := s.env.JS.Stream(context.Background(), stream)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.Msgs
}

// deadLetters returns every message in SB_DEAD.
func (s *system) deadLetters() []*jetstream.RawStreamMsg {
	s.t.Helper()
	return s.allMsgs(streams.Dead)
}

// allMsgs returns every message in the stream.
func (s *system) allMsgs(stream string) []*jetstream.RawStreamMsg {
	s.t.Helper()
	ctx := context.Background()
	st, err := s.env.JS.Stream(ctx, stream)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// counter returns the value of a counter of the system's registry whose
// labels include the given name=value pair (or any labels when label is "").
func (s *system) counter(name, label, value string) float64 {
	s.t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
