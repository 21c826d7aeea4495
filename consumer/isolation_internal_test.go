package consumer

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sony/gobreaker/v2"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

func TestReceiverFailed(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"success", nil, false},
		{"timeout", &attemptError{Err: context.DeadlineExceeded}, true},
		{"connection reset", &attemptError{Err: errors.New("read: connection reset by peer")}, true},
		{"500", &attemptError{Status: 500}, true},
		{"503", &attemptError{Status: 503, RetryAfter: time.Second}, true},
		{"429", &attemptError{Status: 429}, true},
		{"408", &attemptError{Status: 408}, true},
		{"400", &attemptError{Status: 400}, false},
		{"401", &attemptError{Status: 401}, false},
		{"404", &attemptError{Status: 404}, false},
		{"410", &attemptError{Status: 410}, false},
		{"307", &attemptError{Status: 307}, false},
		{"shutdown", fmt.Errorf("%w: context canceled", errShutdown), false},
		{"deferral", &deferError{Reason: deferWebhookBusy}, false},
	} {
		if got := receiverFailed(tt.err); got != tt.want {
			t.Errorf("%s: receiverFailed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestGate_Breaker drives a gate's breaker through its states: failures
// that count open it, a 4xx and a shutdown do not, and after the cool-down
// one probe goes through.
func TestGate_Breaker(t *testing.T) {
	iso := newIsolation(4, 3, 50*time.Millisecond)
	g := iso.newGate("wh_1")
	attempt := func(err error) error {
		done, aerr := g.breaker.Allow()
		if aerr != nil {
			return aerr
		}
		done(err)
		return nil
	}
	fail := &attemptError{Status: 502}
	for i, err := range []error{fail, fail, &attemptError{Status: 404}, fail, fail, errShutdown} {
		if aerr := attempt(err); aerr != nil {
			t.Fatalf("attempt %d refused: %v", i+1, aerr)
		}
	}
	if s := g.breaker.State(); s != gobreaker.StateClosed {
		t.Fatalf("after 2 failures, a 404, 2 failures and a shutdown: %v, want closed", s)
	}
	if err := attempt(fail); err != nil {
		t.Fatal(err)
	}
	if s := g.breaker.State(); s != gobreaker.StateOpen {
		t.Fatalf("after 3 consecutive failures: %v, want open", s)
	}
	if err := attempt(nil); !errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("attempt while open: %v, want ErrOpenState", err)
	}
	time.Sleep(60 * time.Millisecond)
	done, err := g.breaker.Allow()
	if err != nil {
		t.Fatalf("probe after the cool-down refused: %v", err)
	}
	if _, err := g.breaker.Allow(); !errors.Is(err, gobreaker.ErrTooManyRequests) {
		t.Fatalf("second request while probing: %v, want ErrTooManyRequests", err)
	}
	done(nil)
	if s := g.breaker.State(); s != gobreaker.StateClosed {
		t.Fatalf("after a successful probe: %v, want closed", s)
	}
}

func TestIsolation_Deferrals(t *testing.T) {
	cooldown := 30 * time.Second
	iso := newIsolation(4, 5, cooldown)
	g := iso.newGate("wh_1")
	now := time.Now()
	g.openedAt.Store(now.Add(-20 * time.Second).UnixNano())
	within := func(name string, got, lo, hi time.Duration) {
		t.Helper()
		if got < lo || got > hi {
			t.Errorf("%s: %v, want within [%v, %v]", name, got, lo, hi)
		}
	}
	for range 20 {
		// Opened 20 s ago: a probe is allowed in 10 s.
		within("first deferral, breaker open", iso.openDeferral(g, gobreaker.ErrOpenState, 0, now), 10*time.Second, 12500*time.Millisecond)
		within("probe under way", iso.openDeferral(g, gobreaker.ErrTooManyRequests, 0, now), cooldown, cooldown*5/4)
		within("third deferral", iso.openDeferral(g, gobreaker.ErrOpenState, 2, now), 4*cooldown, 5*cooldown)
		within("many deferrals", iso.openDeferral(g, gobreaker.ErrOpenState, 50, now), 8*cooldown, 10*cooldown)
		within("first busy deferral", iso.busyDeferral(0), time.Second, 1250*time.Millisecond)
		within("fourth busy deferral", iso.busyDeferral(3), 8*time.Second, 10*time.Second)
		within("many busy deferrals", iso.busyDeferral(50), maxBusyDeferral, maxBusyDeferral*5/4)
	}
	h := nats.Header{}
	if n := headerCount(h, streams.HeaderDeferrals); n != 0 {
		t.Errorf("no header: %d deferrals", n)
	}
	h.Set(streams.HeaderDeferrals, "3")
	if n := headerCount(h, streams.HeaderDeferrals); n != 3 {
		t.Errorf("header 3: %d deferrals", n)
	}
}

// TestGate_Acquire: a free slot is taken at once; at the cap, a webhook
// slow compared with the others, or hanging, is refused at once, one that
// is not waits for a slot.
func TestGate_Acquire(t *testing.T) {
	iso := newIsolation(1, 5, time.Second)
	g := iso.newGate("wh_1")
	ctx := context.Background()
	if !g.acquire(ctx, 0) {
		t.Fatal("free slot refused")
	}
	refusedAtOnce := func(name string, overall time.Duration) {
		t.Helper()
		start := time.Now()
		if g.acquire(ctx, int64(overall)) {
			t.Fatalf("%s: slot beyond the cap granted", name)
		}
		if waited := time.Since(start); waited > minBusyWait/2 {
			t.Errorf("%s: waited %v for a slot; it should be deferred at once", name, waited)
		}
	}
	g.latency.Store(int64(2 * time.Second))
	g.progress.Store(time.Now().UnixNano())
	refusedAtOnce("2 s attempts among 20 ms ones", 20*time.Millisecond)
	g.latency.Store(int64(time.Millisecond))
	g.progress.Store(time.Now().Add(-time.Second).UnixNano())
	refusedAtOnce("1 ms attempts, none ended for 1 s", time.Millisecond)

	for name, lat := range map[string]time.Duration{
		"1 ms attempts":               time.Millisecond,
		"2 s attempts among 1 s ones": 2 * time.Second, // the machine, or every receiver, is slow
	} {
		g.latency.Store(int64(lat))
		g.progress.Store(time.Now().UnixNano())
		go func() {
			time.Sleep(10 * time.Millisecond)
			g.release(time.Millisecond)
		}()
		if !g.acquire(ctx, int64(time.Second)) {
			t.Fatalf("%s: did not get the slot freed while it waited", name)
		}
	}
}

func TestIsolation_SweepDropsIdleGates(t *testing.T) {
	index := &Index{}
	index.init()
	for _, id := range []string{"wh_idle", "wh_busy", "wh_recent", "wh_open"} {
		index.byID[id] = &hook{id: id}
	}
	index.byID["wh_deleted"] = &hook{id: "wh_deleted", deleted: true}
	iso := newIsolation(2, 1, time.Minute)
	now := time.Now()
	for _, id := range []string{"wh_idle", "wh_busy", "wh_recent", "wh_deleted", "wh_open", "wh_unknown"} {
		iso.put(iso.get(id))
	}
	iso.gates["wh_idle"].lastUsed = now.Add(-iso.idle - time.Second)
	busy := iso.get("wh_busy") // held by a worker
	busy.lastUsed = now.Add(-iso.idle - time.Second)
	done, _ := iso.gates["wh_open"].breaker.Allow()
	done(&attemptError{Status: 500})

	counts := iso.sweep(now, index)
	for id, want := range map[string]bool{
		"wh_idle": false, "wh_busy": true, "wh_recent": true, "wh_deleted": false, "wh_open": true, "wh_unknown": false,
	} {
		if _, kept := iso.gates[id]; kept != want {
			t.Errorf("%s kept = %v, want %v", id, kept, want)
		}
	}
	if counts[stateOpen] != 1 || counts[stateClosed] != 2 || counts[stateHalfOpen] != 0 {
		t.Errorf("counts = %v, want 2 closed, 1 open", counts)
	}
	iso.put(busy)
}
