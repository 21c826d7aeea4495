package streams_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestDurable_SetsUpAgain: a consumer deleted under the loop is created
// again and the next session runs on it; a session's err stops the loop.
func TestDurable_SetsUpAgain(t *testing.T) {
	env := testenv.StartJetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &streams.Durable{
		JS: env.JS, Stream: streams.Attempts, BackOff: &backoff.ZeroBackOff{}, LostMsg: "lost",
		Config: jetstream.ConsumerConfig{Durable: "durable-test", AckPolicy: jetstream.AckExplicitPolicy},
	}
	calls := 0
	err := d.Run(ctx, nil, func(ctx context.Context, cons jetstream.Consumer) (lost, err error) {
		calls++
		if _, err := cons.Info(ctx); err != nil {
			t.Errorf("session %d: consumer: %v", calls, err)
		}
		if calls == 1 {
			if err := env.JS.DeleteConsumer(ctx, streams.Attempts, "durable-test"); err != nil {
				t.Fatal(err)
			}
			return jetstream.ErrConsumerDeleted, nil
		}
		cancel()
		return nil, nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("Run: %v after %d sessions, want nil after 2", err, calls)
	}

	fatal := errors.New("fatal")
	if err := d.Run(context.Background(), nil, func(context.Context, jetstream.Consumer) (error, error) { return nil, fatal }); err != fatal {
		t.Errorf("Run: %v, want the session's error", err)
	}
}
