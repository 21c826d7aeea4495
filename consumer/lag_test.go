package consumer_test

import (
	"context"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard/consumer"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

func TestLagCollector_ReportsEachConsumersBacklog(t *testing.T) {
	env := testenv.StartJetStream(t)
	s := newSystem(t, env)
	reg := prometheus.NewRegistry()
	reg.MustRegister(consumer.NewLagCollector(env.JS, s.logger()))

	// Before any consumer exists the scrape succeeds, without the series.
	if got := gatherLag(t, reg); len(got) != 0 {
		t.Errorf("no consumers yet: got %v, want no series", got)
	}

	recv := testenv.StartReceiver(t, nil)
	s.putWebhook(webhook(t, "wh1", recv.URL, "call.*"))
	s.startIndex()
	s.startMatcher()
	// Run the deliverer once so that its durable consumer exists, then stop
	// it: deliveries the matcher creates next pile up as its backlog.
	stop := s.startDeliverer()
	testenv.WaitFor(t, 10*time.Second, "deliverer consumer created", func() bool {
		_, err := env.JS.Consumer(context.Background(), streams.Deliveries, streams.DelivererConsumer)
		return err == nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	const n = 7
	for i := range n {
		s.publishEvent(event("e"+strconv.Itoa(i), "call.started", ""), true)
	}
	// The matcher acks each event once its delivery is stored, so wait for
	// the state every consumer settles in rather than for the first sign.
	want := map[string]float64{"pending/matcher": 0, "ack_pending/matcher": 0, "pending/deliverer": n, "ack_pending/deliverer": 0}
	var got map[string]float64
	testenv.WaitFor(t, 10*time.Second, "matcher done and deliveries pending", func() bool {
		got = gatherLag(t, reg)
		return maps.Equal(got, want)
	})
	if recv.Count() != 0 {
		t.Errorf("receiver got %d requests with the deliverer stopped", recv.Count())
	}

	// The backlog drains once a deliverer runs again.
	s.startDeliverer()
	testenv.WaitFor(t, 10*time.Second, "deliverer backlog drained", func() bool {
		got = gatherLag(t, reg)
		return got["pending/deliverer"] == 0 && got["ack_pending/deliverer"] == 0 && recv.Count() == n
	})
}

// gatherLag returns the collector's gauges keyed "pending/<consumer>" and
// "ack_pending/<consumer>".
func gatherLag(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		var kind string
		switch f.GetName() {
		case "switchboard_consumer_pending":
			kind = "pending"
		case "switchboard_consumer_ack_pending":
			kind = "ack_pending"
		default:
			t.Errorf("unexpected metric %s", f.GetName())
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" {
					got[kind+"/"+l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return got
}
