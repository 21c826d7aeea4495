package streams_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

func TestSetup_Idempotent(t *testing.T) {
	env := testenv.StartJetStream(t) // runs Setup once
	ctx := context.Background()
	if err := streams.Setup(ctx, env.JS, streams.DefaultConfig()); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	for _, name := range []string{streams.Events, streams.Deliveries, streams.Dead} {
		if _, err := env.JS.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
	if _, err := streams.OpenWebhooksKV(ctx, env.JS); err != nil {
		t.Errorf("open kv: %v", err)
	}
}

// A process that starts while others run sends no update for streams
// and a bucket that are already as wanted (nats-server reads a stream's
// configuration unlocked while it creates a consumer on it), and still
// updates one whose limits it changes.
func TestSetup_UpdatesOnlyWhatDiffers(t *testing.T) {
	env := testenv.StartJetStream(t) // runs Setup once
	ctx := context.Background()
	updates, err := env.NC.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := streams.Setup(ctx, env.JS, streams.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	cfg := streams.DefaultConfig()
	cfg.DeadMaxAge = 2 * cfg.DeadMaxAge
	if err := streams.Setup(ctx, env.JS, cfg); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := updates.NextMsg(500 * time.Millisecond)
		if err != nil {
			break
		}
		got = append(got, strings.TrimPrefix(m.Subject, "$JS.EVENT.ADVISORY.STREAM.UPDATED."))
	}
	if want := []string{streams.Dead}; !slices.Equal(got, want) {
		t.Errorf("streams updated by a Setup as before and one that raises the dead letters' age: %v, want %v", got, want)
	}
}

// Processes started with different --stream-replicas must not undo each
// other's streams at every start: the second is told, and nothing changes.
func TestSetup_RefusesOtherReplicas(t *testing.T) {
	env := testenv.StartJetStream(t) // streams with 1 replica
	ctx := context.Background()
	cfg := streams.DefaultConfig()
	cfg.Replicas = 3
	err := streams.Setup(ctx, env.JS, cfg)
	var mismatch *streams.ReplicasError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Setup with 3 replicas over 1: err = %v, want a *ReplicasError", err)
	}
	if mismatch.Stream != streams.Events || mismatch.Have != 1 || mismatch.Want != 3 {
		t.Errorf("mismatch = %+v, want SB_EVENTS having 1, wanting 3", *mismatch)
	}
	if got := err.Error(); got != "stream SB_EVENTS has 1 replicas, not 3" {
		t.Errorf("message = %q", got)
	}
	if _, err := streams.WebhooksKV(ctx, env.JS, 3); !errors.As(err, &mismatch) || mismatch.Stream != "KV_"+streams.WebhooksBucket {
		t.Errorf("WebhooksKV with 3 replicas over 1: err = %v, want a *ReplicasError on its stream", err)
	}
	for _, name := range []string{streams.Events, streams.Deliveries, streams.Dead, "KV_" + streams.WebhooksBucket} {
		s, err := env.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 1 {
			t.Errorf("stream %s has %d replicas after the refused Setup, want 1", name, r)
		}
	}
}

// The retry design rests on this: a schedule published to the retry subject
// fires once onto the delivery subject, keeping our headers.
func TestRetrySchedule_FiresOntoDeliverySubjectWithHeaders(t *testing.T) {
	env := testenv.StartJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	msg := nats.NewMsg(streams.RetrySubject("wh_1", 1))
	msg.Header.Set(streams.HeaderAttempts, "2")
	msg.Data = []byte(`{"id":"msg_1"}`)
	if _, err := env.JS.PublishMsg(ctx, msg,
		jetstream.WithScheduleAt(time.Now().Add(time.Second)),
		jetstream.WithScheduleTarget(streams.DeliverySubject("wh_1"))); err != nil {
		t.Fatalf("publish schedule: %v", err)
	}
	cons, err := env.JS.CreateOrUpdateConsumer(ctx, streams.Deliveries, jetstream.ConsumerConfig{
		Durable: "t", FilterSubject: streams.DeliveriesPrefix + ">", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("scheduled message did not fire: %v", err)
	}
	if got.Subject() != streams.DeliverySubject("wh_1") {
		t.Errorf("subject = %q", got.Subject())
	}
	if a := got.Headers().Get(streams.HeaderAttempts); a != "2" {
		t.Errorf("attempts header = %q, want 2", a)
	}
	if string(got.Data()) != `{"id":"msg_1"}` {
		t.Errorf("data = %q", got.Data())
	}
	if err := got.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
}
