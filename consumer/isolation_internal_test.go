package consumer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sony/gobreaker/v2"

	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

func TestJudge(t *testing.T) {
	refused := &attemptError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	fast, slow := 5*time.Millisecond, 2*slowFailure
	for _, tt := range []struct {
		name  string
		err   error
		took  time.Duration
		probe bool
		want  verdict
	}{
		{"success", nil, fast, false, verdictUp},
		{"slow success", nil, slow, false, verdictUp},
		{"fast 500", &attemptError{Status: 500}, fast, false, verdictUp},
		{"fast 429", &attemptError{Status: 429}, fast, false, verdictUp},
		{"fast 503 with Retry-After", &attemptError{Status: 503, RetryAfter: time.Second}, fast, false, verdictUp},
		{"fast reset", &attemptError{Err: errors.New("read: connection reset by peer")}, fast, false, verdictUp},
		{"fast 404", &attemptError{Status: 404}, fast, false, verdictUp},
		{"slow 500", &attemptError{Status: 500}, slow, false, verdictDown},
		{"slow reset", &attemptError{Err: errors.New("read: connection reset by peer")}, slow, false, verdictDown},
		{"timeout", &attemptError{Err: context.DeadlineExceeded}, fast, false, verdictDown},
		{"connection refused", refused, fast, false, verdictDown},
		{"dns failure", &attemptError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "x.invalid"}}}, fast, false, verdictDown},
		{"probe answered 503 with Retry-After", &attemptError{Status: 503, RetryAfter: time.Second}, fast, true, verdictDown},
		{"probe answered 500", &attemptError{Status: 500}, fast, true, verdictUp},
		{"ssrf refusal", &attemptError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: &netguard.RefusedError{Addr: netip.MustParseAddr("10.0.0.1"), Kind: "a private"}}}, fast, false, verdictNone},
		{"shutdown", fmt.Errorf("%w: context canceled", errShutdown), slow, false, verdictNone},
		{"malformed", errNoEventID, fast, false, verdictNone},
	} {
		if got := judge(tt.err, tt.took, tt.probe); got != tt.want {
			t.Errorf("%s: judge = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestGate_Breaker drives a gate's breaker through its states: down
// verdicts in a row open it, an up or no verdict between them does not
// count, and after the cool-down one probe goes through; a Retry-After
// hold keeps it open past the cool-down.
func TestGate_Breaker(t *testing.T) {
	cooldown := 50 * time.Millisecond
	iso := newIsolation(4, 3, cooldown)
	g := iso.newGate("wh_1")
	attempt := func(v verdict) error {
		done, aerr := g.breaker.Allow()
		if aerr != nil {
			return aerr
		}
		done(v.breakerErr())
		return nil
	}
	for i, v := range []verdict{verdictDown, verdictDown, verdictUp, verdictDown, verdictDown, verdictNone} {
		if aerr := attempt(v); aerr != nil {
			t.Fatalf("attempt %d refused: %v", i+1, aerr)
		}
	}
	if open, _ := g.open(time.Now(), cooldown); open {
		t.Fatal("after 2 downs, an up, 2 downs and no verdict: open, want closed")
	}
	if err := attempt(verdictDown); err != nil {
		t.Fatal(err)
	}
	if open, until := g.open(time.Now(), cooldown); !open || time.Until(until) > cooldown {
		t.Fatalf("after 3 consecutive downs: open %v until %v, want open within the cool-down", open, until)
	}
	if err := attempt(verdictUp); !errors.Is(err, gobreaker.ErrOpenState) {
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
	done(verdictDown.breakerErr())
	g.holdUntil.Store(time.Now().Add(200 * time.Millisecond).UnixNano())
	time.Sleep(60 * time.Millisecond) // past the cool-down, within the hold
	if open, until := g.open(time.Now(), cooldown); !open || time.Until(until) < 100*time.Millisecond {
		t.Fatalf("held by Retry-After: open %v until %v, want open for about 140 ms more", open, until)
	}
	time.Sleep(160 * time.Millisecond)
	if open, _ := g.open(time.Now(), cooldown); open {
		t.Fatal("past the hold: still open")
	}
	if err := attempt(verdictUp); err != nil {
		t.Fatalf("probe after the hold refused: %v", err)
	}
	if s := g.breaker.State(); s != gobreaker.StateClosed {
		t.Fatalf("after a successful probe: %v, want closed", s)
	}
}

func TestIsolation_Deferrals(t *testing.T) {
	iso := newIsolation(4, 5, 30*time.Second)
	within := func(name string, got, lo, hi time.Duration) {
		t.Helper()
		if got < lo || got > hi {
			t.Errorf("%s: %v, want within [%v, %v]", name, got, lo, hi)
		}
	}
	for range 20 {
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
	done(verdictDown.breakerErr())

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
