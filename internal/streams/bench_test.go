package streams_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// BenchmarkStoreConsumeAck measures what JetStream alone costs per message
// of each stream a delivery passes through, on this machine: b.N 512-byte
// messages published asynchronously with a Nats-Msg-Id, as the producer
// and the matcher publish them, and at the same time consumed by a durable
// pull consumer that acks each, until every ack is in. Set beside
// BenchmarkHTTPCeiling in ./consumer (the signed POST alone), its
// cpu-µs/op bounds what end-to-end rate and what share of the HTTP
// ceiling any delivery that stores an event and a delivery can reach on
// the same cores (docs/benchmarks.md).
func BenchmarkStoreConsumeAck(b *testing.B) {
	for _, s := range []struct{ stream, subject string }{
		{streams.Events, streams.EventSubject("t1", "call.started")}, // limits retention
		{streams.Deliveries, streams.DeliverySubject("wh_bench")},    // work queue: an ack removes the message
	} {
		b.Run(s.stream, func(b *testing.B) {
			env := testenv.StartJetStream(b)
			ctx := context.Background()
			cons, err := env.JS.CreateOrUpdateConsumer(ctx, s.stream, jetstream.ConsumerConfig{
				Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1024, FilterSubject: s.subject,
			})
			if err != nil {
				b.Fatal(err)
			}
			data := []byte(`{"id":"msg_x","type":"call.started","data":{"pad":"` + strings.Repeat("x", 460) + `"}}`)
			var acked atomic.Int64
			done := make(chan struct{})

			b.ReportAllocs()
			b.ResetTimer()
			start, cpu := time.Now(), testenv.CPUTime(b)
			cc, err := cons.Consume(func(msg jetstream.Msg) {
				if err := msg.Ack(); err != nil {
					b.Error(err)
				}
				if acked.Add(1) == int64(b.N) {
					close(done)
				}
			}, jetstream.PullMaxMessages(512))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Stop()
			for i := range b.N {
				m := &nats.Msg{Subject: s.subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: {fmt.Sprintf("msg_%d", i)}}}
				for {
					if _, err := env.JS.PublishMsgAsync(m); err == nil {
						break
					}
					<-env.JS.PublishAsyncComplete()
				}
			}
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("%d of %d messages acked after 5 minutes", acked.Load(), b.N)
			}
			elapsed, cpu := time.Since(start), testenv.CPUTime(b)-cpu
			b.StopTimer()
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
		})
	}
}
