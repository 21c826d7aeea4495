package streams_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// TestScan: a scan reads in order, from a sequence, up to its limit, and
// leaves no consumer behind.
func TestScan(t *testing.T) {
	env := testenv.StartJetStream(t)
	ctx := context.Background()
	s, err := env.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "SCANTEST", Subjects: []string{"SCANTEST.>"}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := env.JS.Publish(ctx, fmt.Sprintf("SCANTEST.%d", i%2), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(sc streams.Scan) ([]uint64, error) {
		var seqs []uint64
		err := sc.Run(ctx, env.JS, func(msg jetstream.Msg) (bool, error) {
			md, err := msg.Metadata()
			if err != nil {
				return false, err
			}
			seqs = append(seqs, md.Sequence.Stream)
			return true, nil
		})
		return seqs, err
	}
	base := streams.Scan{Stream: "SCANTEST", Filter: "SCANTEST.>", Batch: 3, Idle: time.Minute}
	if seqs, err := read(base); err != nil || len(seqs) != 10 || seqs[0] != 1 || seqs[9] != 10 {
		t.Errorf("all: %v, %v", seqs, err)
	}
	odd := base
	odd.Filter, odd.StartSeq, odd.Wait = "SCANTEST.0", 4, time.Second
	if seqs, err := read(odd); err != nil || fmt.Sprint(seqs) != "[5 7 9]" {
		t.Errorf("filtered from 4: %v, %v", seqs, err)
	}
	limited := base
	limited.Limit = 4
	if seqs, err := read(limited); !errors.Is(err, streams.ErrScanLimit) || len(seqs) != 4 {
		t.Errorf("limit 4: %v, %v", seqs, err)
	}
	stop := errors.New("stop")
	if err := base.Run(ctx, env.JS, func(jetstream.Msg) (bool, error) { return false, stop }); err != stop {
		t.Errorf("visit's error: %v", err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Consumers != 0 {
		t.Errorf("%d consumers left (err %v)", info.State.Consumers, err)
	}
}
