package consumer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/signer"
)

// benchEvent is an event whose rendered body is about 512 bytes.
func benchEvent(i int) switchboard.Event {
	evt := event(fmt.Sprintf("msg_bench_%d", i), "call.started", "agent-1")
	evt.Data = json.RawMessage(`{"call_id":"c-` + fmt.Sprint(i) + `","pad":"` + strings.Repeat("x", 360) + `"}`)
	return evt
}

// countingReceiver answers 200 to everything and counts.
func countingReceiver(b *testing.B) (url string, count *atomic.Int64) {
	count = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) //nolint:errcheck
		count.Add(1)
	}))
	b.Cleanup(srv.Close)
	return srv.URL, count
}

// prepublish stores msgs with async publishes and waits for their acks.
func prepublish(b *testing.B, js jetstream.JetStream, n int, msg func(i int) (subject string, data []byte, hdr map[string]string)) {
	b.Helper()
	for i := range n {
		subj, data, hdr := msg(i)
		m := nats.NewMsg(subj)
		m.Data = data
		for k, v := range hdr {
			m.Header.Set(k, v)
		}
		for {
			_, err := js.PublishMsgAsync(m)
			if err == nil {
				break
			}
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("prepublish: no acks after 1 minute")
	}
}

// BenchmarkDeliverer measures the deliverer alone: b.N deliveries stored
// beforehand, one fast receiver on loopback, signed POSTs, acks.
func BenchmarkDeliverer(b *testing.B) {
	for _, workers := range []int{32, 64, 128, 256} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			env := testenv.StartJetStream(b)
			s := newSystem(b, env)
			url, count := countingReceiver(b)
			s.putWebhook(webhook(b, "wh_bench", url, "call.started"))
			s.startIndex()
			evt := benchEvent(0)
			body, _ := evt.Payload(nil)
			prepublish(b, env.JS, b.N, func(i int) (string, []byte, map[string]string) {
				id := fmt.Sprintf("msg_bench_%d", i)
				return streams.DeliverySubject("wh_bench"), body, map[string]string{
					jetstream.MsgIDHeader: streams.DeliveryMsgID(id, "wh_bench"), streams.HeaderEventID: id,
					streams.HeaderTenant: "t1",
				}
			})
			d := s.deliverer()
			d.Logger = nil
			d.Workers = workers
			d.MaxAckPending = max(4*workers, 1024)

			b.ReportAllocs()
			b.ResetTimer()
			start, cpu := time.Now(), testenv.CPUTime(b)
			stop := goRun(b, "deliverer", d.Run)
			waitCount(b, count, int64(b.N))
			elapsed, cpu := time.Since(start), testenv.CPUTime(b)-cpu
			b.StopTimer()
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			if err := stop(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
		})
	}
}

// storedEvent returns evt as prepublish stores it: as the producer does.
func storedEvent(tb testing.TB, evt switchboard.Event) (string, []byte, map[string]string) {
	msg := eventMsg(tb, evt)
	h := map[string]string{}
	for k := range msg.Header {
		h[k] = msg.Header.Get(k)
	}
	return msg.Subject, msg.Data, h
}

// BenchmarkMatcher measures the matcher alone: b.N events stored
// beforehand, two matching webhooks each, until every delivery is stored.
func BenchmarkMatcher(b *testing.B) {
	env := testenv.StartJetStream(b)
	s := newSystem(b, env)
	s.putWebhook(webhook(b, "wh_m1", "http://127.0.0.1:1/", "call.started"))
	s.putWebhook(webhook(b, "wh_m2", "http://127.0.0.1:1/", "call.*"))
	s.startIndex()
	prepublish(b, env.JS, b.N, func(i int) (string, []byte, map[string]string) {
		return storedEvent(b, benchEvent(i))
	})

	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), testenv.CPUTime(b)
	s.startMatcher()
	testenv.WaitFor(b, 10*time.Minute, "every delivery stored", func() bool { return s.streamMsgs(streams.Deliveries) == uint64(2*b.N) })
	elapsed, cpu := time.Since(start), testenv.CPUTime(b)-cpu
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(2*b.N)/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkMatcherLive is BenchmarkMatcher with the events published while
// the matcher runs, as in production: events keep arriving after each
// reading of the webhooks bucket's revision (Index.awaitCurrent), so this
// is where that reading costs most.
func BenchmarkMatcherLive(b *testing.B) {
	env := testenv.StartJetStream(b)
	s := newSystem(b, env)
	s.putWebhook(webhook(b, "wh_m1", "http://127.0.0.1:1/", "call.started"))
	s.putWebhook(webhook(b, "wh_m2", "http://127.0.0.1:1/", "call.*"))
	s.startIndex()
	s.startMatcher()
	testenv.WaitFor(b, 10*time.Second, "matcher consumer", func() bool { return s.consumerIdle(streams.Events, streams.MatcherConsumer) })

	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), testenv.CPUTime(b)
	prepublish(b, env.JS, b.N, func(i int) (string, []byte, map[string]string) {
		return storedEvent(b, benchEvent(i))
	})
	testenv.WaitFor(b, 10*time.Minute, "every delivery stored", func() bool { return s.streamMsgs(streams.Deliveries) == uint64(2*b.N) })
	elapsed, cpu := time.Since(start), testenv.CPUTime(b)-cpu
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// BenchmarkPipeline measures events to receiver: b.N events stored
// beforehand, one matching webhook, matcher and deliverer running together.
func BenchmarkPipeline(b *testing.B) {
	env := testenv.StartJetStream(b)
	s := newSystem(b, env)
	url, count := countingReceiver(b)
	s.putWebhook(webhook(b, "wh_p", url, "call.started"))
	s.startIndex()
	prepublish(b, env.JS, b.N, func(i int) (string, []byte, map[string]string) {
		return storedEvent(b, benchEvent(i))
	})
	d := s.deliverer()
	d.Logger = nil
	d.Workers = 128
	d.MaxAckPending = 1024

	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), testenv.CPUTime(b)
	s.startMatcher()
	goRun(b, "deliverer", d.Run)
	waitCount(b, count, int64(b.N))
	elapsed, cpu := time.Since(start), testenv.CPUTime(b)-cpu
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
}

func waitCount(b *testing.B, count *atomic.Int64, n int64) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for count.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d deliveries after 10 minutes", count.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkHTTPCeiling is the yardstick for BenchmarkDeliverer: the same
// client, signer and receiver, 128 goroutines posting with no JetStream.
func BenchmarkHTTPCeiling(b *testing.B) {
	url, count := countingReceiver(b)
	s, err := signer.New(newSecret(b))
	if err != nil {
		b.Fatal(err)
	}
	evt := benchEvent(0)
	body, _ := evt.Payload(nil)
	client := consumer.NewHTTPClient(128, allowLoopback)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), testenv.CPUTime(b)
	var wg sync.WaitGroup
	for range 128 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				s.SetHeaders(req.Header, "msg_bench", time.Now(), body)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), testenv.CPUTime(b)-cpu
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	if count.Load() != int64(b.N) {
		b.Fatalf("%d of %d requests arrived", count.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}
