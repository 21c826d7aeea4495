package chaos_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/producer"
)

// Each test delivers a backlog of events to one webhook whose receiver
// takes receiverDelay per request, so that with workersPerProcess
// deliveries in flight a backlog of a couple of thousand takes seconds: a
// fault lands mid-flight. Every test logs N, lost, duplicates and the
// stall: the longest pause in deliveries after the fault.
const receiverDelay = 10 * time.Millisecond

// kill -9 of the only worker while it delivers, then a new one: every
// accepted event is delivered; what the dead worker held unacked comes
// again after --ack-wait, so the only duplicates are among those.
func TestKillWorker_MidFlightLosesNothing(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	const n = 2000
	recv := startSlowReceiver(t, receiverDelay)
	ns := startNATS(ctx, t)
	js := jsClient(t, ns.clientURL)
	reg := startRegistry(ctx, t, ns.clientURL, 1)
	reg.createWebhook(ctx, t, recv.URL)
	ids := reg.mustPublish(ctx, t, "kw", n) // a backlog, before any worker

	w := startWorker(ctx, t, "worker-1", ns.clientURL, 1)
	// Kill only once the matcher has turned every event into a delivery,
	// so that the kill hits deliveries, not events in the matcher's hands.
	eventually(ctx, t, "every event matched", func() bool { return matcherDrained(ctx, js) })
	eventually(ctx, t, "deliveries under way", func() bool { return recv.Count() >= n/10 })
	if got := count(recv, ids).Delivered; got > n*3/4 {
		t.Fatalf("%d of %d delivered before the kill: not mid-flight", got, n)
	}
	w.kill(t)
	killedAt := time.Now()
	before := count(recv, ids).Delivered
	// What JetStream handed the dead worker and never got an ack for:
	// the only deliveries that may come twice.
	held := consumerInfo(ctx, js, streams.Deliveries, streams.DelivererConsumer).NumAckPending

	restartedAt := time.Now()
	startWorker(ctx, t, "worker-2", ns.clientURL, 1)
	eventually(ctx, t, "every event delivered", func() bool { return allDelivered(recv, ids) })
	eventually(ctx, t, "no delivery left to redeliver", func() bool { return delivererDrained(ctx, js) })

	c := count(recv, ids)
	longest, resume := stall(recv, killedAt, restartedAt)
	t.Logf("kill -9 worker: %v; delivered before the kill %d, held unacked by the dead worker %d; "+
		"stall %.1fs (longest pause in deliveries after the kill; the held ones came again after --ack-wait %v), "+
		"first delivery %.2fs after the restart began", c, before, held, longest.Seconds(), ackWait, resume.Seconds())
	if c.Lost != 0 {
		t.Errorf("%d of %d accepted events lost", c.Lost, c.N)
	}
	if c.Duplicates > held {
		t.Errorf("%d duplicates, but the dead worker held only %d deliveries unacked", c.Duplicates, held)
	}
	mustAuditClean(ctx, t, reg, n)
}

// Two workers started on one backlog share it: each delivers part and
// none is lost. With no worker dying none comes twice; when one is killed
// mid-flight, the other finishes, and the only duplicates are among what
// was held unacked at the kill.
func TestTwoWorkers_ShareOneBacklog(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool
	}{{"no deaths", false}, {"one killed", true}} {
		t.Run(tc.name, func(t *testing.T) { testTwoWorkers(t, tc.kill) })
	}
}

func testTwoWorkers(t *testing.T, kill bool) {
	ctx := testContext(t, 120*time.Second)
	const n = 1500
	recv := startSlowReceiver(t, receiverDelay)
	ns := startNATS(ctx, t)
	js := jsClient(t, ns.clientURL)
	reg := startRegistry(ctx, t, ns.clientURL, 1)
	reg.createWebhook(ctx, t, recv.URL)
	ids := reg.mustPublish(ctx, t, "tw", n)

	// Start both at once so that neither drains the backlog alone.
	p1 := startWorkerProc(t, "worker-1", ns.clientURL, 1)
	p2 := startWorkerProc(t, "worker-2", ns.clientURL, 1)
	w1 := &workerProc{proc: p1, url: strings.TrimSuffix(p1.line(ctx, t, "Metrics:"), "/metrics")}
	w2 := &workerProc{proc: p2, url: strings.TrimSuffix(p2.line(ctx, t, "Metrics:"), "/metrics")}
	held, d2 := 0, 0
	if kill {
		eventually(ctx, t, "both workers delivering, events all matched", func() bool {
			return w1.delivered(ctx, t) > 0 && w2.delivered(ctx, t) > 0 && matcherDrained(ctx, js)
		})
		d2 = w2.delivered(ctx, t)
		w2.kill(t)
		// Consumer-wide: what the dead worker held, and the survivor's
		// deliveries in flight, which it acks as usual.
		held = consumerInfo(ctx, js, streams.Deliveries, streams.DelivererConsumer).NumAckPending
		if got := count(recv, ids).Delivered; got > n*3/4 {
			t.Fatalf("%d of %d delivered before the kill: not mid-flight", got, n)
		}
	}
	eventually(ctx, t, "every event delivered", func() bool { return allDelivered(recv, ids) })
	eventually(ctx, t, "no delivery left to redeliver", func() bool { return delivererDrained(ctx, js) })

	c := count(recv, ids)
	d1 := w1.delivered(ctx, t)
	if !kill {
		d2 = w2.delivered(ctx, t)
	}
	if kill {
		t.Logf("two workers, worker-2 killed mid-flight: %v; worker-1 delivered %d, worker-2 %d before it died; "+
			"held unacked at the kill (both workers) %d", c, d1, d2, held)
	} else {
		t.Logf("two workers: %v; worker-1 delivered %d, worker-2 %d", c, d1, d2)
	}
	if c.Lost != 0 {
		t.Errorf("%d of %d accepted events lost", c.Lost, c.N)
	}
	if d1 == 0 || d2 == 0 {
		t.Errorf("one worker did all the work: worker-1 %d, worker-2 %d", d1, d2)
	}
	switch {
	case !kill && c.Duplicates != 0:
		t.Errorf("%d duplicates with no worker dying", c.Duplicates)
	case !kill && d1+d2 != n:
		t.Errorf("the workers count %d + %d deliveries, the receiver %d events", d1, d2, n)
	case kill && c.Duplicates > held:
		t.Errorf("%d duplicates, but only %d deliveries were held unacked at the kill", c.Duplicates, held)
	}
	mustAuditClean(ctx, t, reg, n)
}

// nats-server (a process with a store folder) killed and started again on
// the same store while deliveries are in flight: every event accepted
// before, and every event accepted after, is delivered.
func TestRestartNATSServer_MidFlightLosesNothing(t *testing.T) {
	ctx := testContext(t, 75*time.Second)
	const n = 2000
	recv := startSlowReceiver(t, receiverDelay)
	ns := startNATS(ctx, t)
	js := jsClient(t, ns.clientURL)
	reg := startRegistry(ctx, t, ns.clientURL, 1)
	reg.createWebhook(ctx, t, recv.URL)
	ids := reg.mustPublish(ctx, t, "nr", n)
	startWorker(ctx, t, "worker", ns.clientURL, 1)

	eventually(ctx, t, "every event matched", func() bool { return matcherDrained(ctx, js) })
	eventually(ctx, t, "deliveries under way", func() bool { return recv.Count() >= n/10 })
	ns.proc.kill(t)
	stoppedAt := time.Now()
	before := count(recv, ids).Delivered
	time.Sleep(2 * time.Second) // down for a while, as in a real restart
	ns.start(ctx, t)
	restartedAt := time.Now()

	// Ingest works again through the same registry.
	ids = append(ids, reg.mustPublish(ctx, t, "nr-after", n/10)...)
	eventually(ctx, t, "every event delivered", func() bool { return allDelivered(recv, ids) })
	eventually(ctx, t, "no delivery left to redeliver", func() bool { return delivererDrained(ctx, js) })

	c := count(recv, ids)
	longest, resume := stall(recv, stoppedAt, restartedAt)
	t.Logf("nats-server kill -9 and restart (down %.1fs): %v; delivered before the stop %d; "+
		"stall %.1fs, worker resumed %.2fs after nats-server was back",
		restartedAt.Sub(stoppedAt).Seconds(), c, before, longest.Seconds(), resume.Seconds())
	if c.Lost != 0 {
		t.Errorf("%d of %d accepted events lost", c.Lost, c.N)
	}
	mustAuditClean(ctx, t, reg, len(ids))
}

// A three-node cluster with R3 streams: kill -9 of the node leading the
// deliverer's consumer while deliveries are in flight loses nothing, and
// ingest goes on with two nodes.
func TestKillClusterNode_R3LosesNothing(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	const n = 2000
	recv := startSlowReceiver(t, receiverDelay)
	nodes := startNATSCluster(ctx, t)
	url := clusterURL(nodes)
	js := jsClient(t, url)
	reg := startRegistry(ctx, t, url, 3)

	// A worker told another replica count than the streams have refuses
	// to start, saying why, rather than change them.
	odd := startWorkerProc(t, "worker-r1", url, 1)
	if out, err := odd.exited(ctx, t); err == nil || !strings.Contains(out, "--stream-replicas 1 disagrees") || !strings.Contains(out, "has 3 replicas") {
		t.Errorf("worker with --stream-replicas 1 on R3 streams: exit %v, output:\n%s", err, out)
	}

	reg.createWebhook(ctx, t, recv.URL)
	ids := reg.mustPublish(ctx, t, "cn", n)
	startWorker(ctx, t, "worker", url, 3)
	eventually(ctx, t, "every event matched", func() bool { return matcherDrained(ctx, js) })
	eventually(ctx, t, "deliveries under way", func() bool { return recv.Count() >= n/10 })

	stream, err := js.Stream(ctx, streams.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	if r := stream.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("%s has %d replicas, want 3", streams.Deliveries, r)
	}
	// The deliverer's consumer leader is the node the workers pull from:
	// killing it is the worst case for deliveries.
	info := consumerInfo(ctx, js, streams.Deliveries, streams.DelivererConsumer)
	if info == nil || info.Cluster == nil {
		t.Fatal("no cluster information on the deliverer consumer")
	}
	leader := info.Cluster.Leader
	var victim *natsNode
	for _, nd := range nodes {
		if nd.name == leader {
			victim = nd
		}
	}
	if victim == nil {
		t.Fatalf("leader %q of the deliverer consumer is none of the nodes", leader)
	}
	victim.proc.kill(t)
	killedAt := time.Now()
	before := count(recv, ids).Delivered

	ids = append(ids, reg.mustPublish(ctx, t, "cn-after", n/10)...)
	eventually(ctx, t, "every event delivered", func() bool { return allDelivered(recv, ids) })
	eventually(ctx, t, "no delivery left to redeliver", func() bool { return delivererDrained(ctx, js) })

	c := count(recv, ids)
	longest, _ := stall(recv, killedAt, killedAt)
	t.Logf("kill -9 of %s, leader of the deliverer consumer (%s leader: %s), in a 3-node cluster with R3 streams: %v; "+
		"delivered before the kill %d; stall %.1fs", leader, streams.Deliveries, stream.CachedInfo().Cluster.Leader, c, before, longest.Seconds())
	if c.Lost != 0 {
		t.Errorf("%d of %d accepted events lost", c.Lost, c.N)
	}
}

// A worker started on a fresh NATS, before any registry, sets the streams
// up; once the registry is killed, the worker goes on delivering what was
// accepted and what upstream services publish straight to JetStream.
func TestKillRegistry_WorkersDeliverOn(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	const n = 500
	recv := startSlowReceiver(t, receiverDelay)
	ns := startNATS(ctx, t)
	js := jsClient(t, ns.clientURL)
	startWorker(ctx, t, "worker", ns.clientURL, 1)
	reg := startRegistry(ctx, t, ns.clientURL, 1)
	reg.createWebhook(ctx, t, recv.URL)
	// The worker matches events to the webhook once the KV watch brought
	// it: probe until one is delivered.
	probes := 0
	eventually(ctx, t, "the webhook reached the worker", func() bool {
		if recv.Count() > 0 {
			return true
		}
		probes++
		reg.mustPublish(ctx, t, fmt.Sprintf("probe%d", probes), 1)
		time.Sleep(100 * time.Millisecond)
		return false
	})

	ids := reg.mustPublish(ctx, t, "rd", n)
	reg.kill(t)
	killedAt := time.Now()
	before := count(recv, ids).Delivered
	ids = append(ids, publishDirect(ctx, t, js, "rd-direct", n/5)...)
	eventually(ctx, t, "every event delivered", func() bool { return allDelivered(recv, ids) })
	eventually(ctx, t, "no delivery left to redeliver", func() bool { return delivererDrained(ctx, js) })

	c := count(recv, ids)
	longest, _ := stall(recv, killedAt, killedAt)
	t.Logf("kill -9 registry: %v; delivered before the kill %d; stall %.1fs", c, before, longest.Seconds())
	if before >= n {
		t.Errorf("the backlog was delivered before the registry died: nothing shown")
	}
	if c.Lost != 0 {
		t.Errorf("%d of %d accepted events lost", c.Lost, c.N)
	}
	if c.Duplicates != 0 {
		t.Errorf("%d duplicates with no worker dying", c.Duplicates)
	}
}

// publishDirect publishes events with the producer client straight to
// JetStream, as an upstream service does without the registry, for the
// tenant of the events already in SB_EVENTS.
func publishDirect(ctx context.Context, t *testing.T, js jetstream.JetStream, prefix string, n int) []string {
	t.Helper()
	s, err := js.Stream(ctx, streams.Events)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.GetMsg(ctx, s.CachedInfo().State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	// sb.events.<tenant>.<type>
	tenant := strings.Split(strings.TrimPrefix(first.Subject, streams.EventsPrefix), ".")[0]
	client := producer.New(js)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%05d", prefix, i)
		evt := &switchboard.Event{ID: ids[i], TenantID: tenant, Type: "call.ended", Data: []byte(`{}`)}
		if _, err := client.Publish(ctx, evt); err != nil {
			t.Fatalf("publish %s: %v", ids[i], err)
		}
	}
	return ids
}
