package consumer_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestConsumePullStall reproduces the stall the short heartbeat of streams.Durable's Consume
// works around (see pullHeartbeat in internal/streams): nats.go v1.55.0's Consume stops asking
// for messages when the last messages of its requests are handled while
// it is still sending its previous request. checkPending then skips the
// refill (fetchInProgress is set) and nothing calls it again once the send
// is done, so no pull request is outstanding and none is made until two
// heartbeats are missed.
//
// The window is a goroutine descheduled between sending the request and
// clearing the flag, so it needs a busy machine: the test loads every CPU
// with busy processes. On a 2-core machine it failed about 1 run in 3. It
// runs only with SWITCHBOARD_REPRO_PULL_STALL=1, since it fails until
// nats.go is fixed and hogs the machine.
var spinSink int

func TestConsumePullStall(t *testing.T) {
	if os.Getenv("SWITCHBOARD_SPIN") == "1" {
		for {
			spinSink++
		}
	}
	if os.Getenv("SWITCHBOARD_REPRO_PULL_STALL") != "1" {
		t.Skip("set SWITCHBOARD_REPRO_PULL_STALL=1 to reproduce nats.go's Consume stall (loads every CPU, fails until fixed upstream)")
	}
	for range runtime.NumCPU() {
		spin := exec.Command(os.Args[0], "-test.run=^TestConsumePullStall$")
		spin.Env = append(os.Environ(), "SWITCHBOARD_SPIN=1")
		if err := spin.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = spin.Process.Kill(); _ = spin.Wait() })
	}

	env := testenv.StartJetStream(t)
	ctx := context.Background()
	for _, name := range []string{"STALL_IN", "STALL_OUT"} {
		if _, err := env.JS.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 300_000
	data := make([]byte, 64)
	for i := range n {
		if _, err := env.JS.PublishAsync("STALL_IN.x", data); err != nil {
			t.Fatal(err)
		}
		if i%4096 == 0 {
			<-env.JS.PublishAsyncComplete()
		}
	}
	<-env.JS.PublishAsyncComplete()
	cons, err := env.JS.CreateOrUpdateConsumer(ctx, "STALL_IN", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		t.Fatal(err)
	}

	// Like the Matcher, the handler publishes on the same connection. A
	// small batch narrows what must arrive inside the window.
	var got, stalls atomic.Int64
	done := make(chan struct{})
	cc, err := cons.Consume(func(jetstream.Msg) {
		if _, err := env.JS.PublishAsync("STALL_OUT.x", data); err != nil {
			t.Error(err)
		}
		if got.Add(1) == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(8), jetstream.PullExpiry(4*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				stalls.Add(1)
				t.Logf("stalled after %d of %d messages: %v", got.Load(), n, err)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-time.After(50 * time.Second):
		t.Fatalf("consumed %d of %d in 50 s", got.Load(), n)
	}
	if s := stalls.Load(); s > 0 {
		t.Fatalf("Consume stalled %d times with a backlog", s)
	}
}
