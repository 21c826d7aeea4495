package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestPendingAwait_Republishes: a message whose asynchronous publish was
// not stored (no stream took it) is published again by Await, once, under
// its Nats-Msg-Id; Err says why the first publish did not do.
func TestPendingAwait_Republishes(t *testing.T) {
	env := testenv.StartJetStream(t)
	ctx := context.Background()
	m := &nats.Msg{Subject: "PUBTEST.x", Data: []byte("1"), Header: nats.Header{jetstream.MsgIDHeader: {"id-1"}}}
	p := streams.PublishAsync(env.JS, m)
	select {
	case <-env.JS.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("async publish never completed")
	}
	if _, err := env.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "PUBTEST", Subjects: []string{"PUBTEST.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	expired := make(chan time.Time)
	close(expired) // whichever way the first publish ended, it is over
	if err := p.Await(ctx, env.JS, expired, streams.Retry{Tries: 2, Timeout: 5 * time.Second}); err != nil {
		t.Fatalf("Await: %v", err)
	}
	if p.Err == nil {
		t.Error("Err is nil: the first publish had no stream")
	}
	s, err := env.JS.Stream(ctx, "PUBTEST")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("after Await the stream holds %v messages (err %v), want 1", info.State.Msgs, err)
	}
	// Once more under the same msg id: deduplicated, still one message.
	if err := streams.Publish(ctx, env.JS, m, streams.Retry{Tries: 1, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream holds %v messages (err %v), want 1", info.State.Msgs, err)
	}

	// A publish that is stored is not published again.
	ok := streams.PublishAsync(env.JS, &nats.Msg{Subject: "PUBTEST.y", Data: []byte("2")})
	if err := ok.Await(ctx, env.JS, nil, streams.Retry{Tries: 1, Timeout: 5 * time.Second}); err != nil || ok.Err != nil {
		t.Fatalf("Await: %v, Err %v", err, ok.Err)
	}
	if info, _ := s.Info(ctx); info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages, want 2", info.State.Msgs)
	}
}

// TestPublish_Fails: a subject no stream takes fails every try, and says
// which subject.
func TestPublish_Fails(t *testing.T) {
	env := testenv.StartJetStream(t)
	err := streams.Publish(context.Background(), env.JS, &nats.Msg{Subject: "NOSTREAM.x"}, streams.Retry{Tries: 2, Timeout: time.Second})
	if err == nil {
		t.Fatal("published to no stream")
	}
}
