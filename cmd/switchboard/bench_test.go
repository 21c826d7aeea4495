package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/cmd/switchboard/internal/bench"
)

// TestBench_BadReceiversReportsRatio runs the bad-receivers bench small:
// it reports the healthy rate with and without the bad receivers, loses
// nothing, and the bad receivers were tried and their breakers opened.
func TestBench_BadReceiversReportsRatio(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two systems")
	}
	cfg := bench.Config{
		Events: 2000, Fanout: 1, PayloadSize: 256, BadShare: 0.2, Rounds: 1, Verify: true,
		Workers: 16, MaxAckPending: 128, Timeout: time.Minute,
	}
	report := runBench(t, cfg,
		regexp.MustCompile(`lost 0, duplicated 0, bad signatures 0`),
		regexp.MustCompile(`\(d\) round 1: healthy webhooks, baseline +\d+ deliveries/s .* beside bad receivers \(20% of events\) +\d+ deliveries/s .*: \d+\.\d%`),
		regexp.MustCompile(`median of 1: \d+\.\d%`),
		regexp.MustCompile(`CPU per request: ceiling [1-9][\d.]* µs, end to end [1-9][\d.]* µs per delivery: ratio \d+\.\d%`),
		regexp.MustCompile(`attempts at the bad receivers: 500 [1-9]\d* timeout [1-9]\d* reset [1-9]\d* slow [1-9]\d*`),
		// Quick 500s and resets no longer open a breaker (issue 11), and
		// this run ends before the timing-out receiver's 5 s timeouts do:
		// the open-breaker count is reported, the cap's deferrals counted.
		regexp.MustCompile(`switchboard_deliveries_deferred_total\{reason="circuit_open"\} \d`),
		regexp.MustCompile(`switchboard_deliveries_deferred_total\{reason="webhook_busy"\} [1-9]`),
	)
	if strings.Contains(report, "NaN") || strings.Contains(report, "Inf") {
		t.Errorf("report has a NaN or Inf:\n%s", report)
	}
}

// --backlog leaves deliveries pending for a receiver refusing every
// connection, then measures the healthy webhook beside it, and reports the
// backlog's figures.
func TestBench_BacklogReportsRatioAndMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two systems")
	}
	cfg := bench.Config{
		Events: 1000, Fanout: 1, PayloadSize: 256, Backlog: 500, Rounds: 1, Verify: true, SettleRetries: 1,
		Workers: 16, MaxAckPending: 128, Timeout: time.Minute,
	}
	runBench(t, cfg,
		regexp.MustCompile(`lost 0, duplicated 0, bad signatures 0`),
		regexp.MustCompile(`beside a backlog of 500 for a dead receiver +\d+ deliveries/s .*: \d+\.\d%`),
		regexp.MustCompile(`backlog: built in \d+\.\ds, peak RSS [1-9]\d* MB, CPU once settled \d+\.\d% of a core`),
		regexp.MustCompile(`switchboard_deliveries_total\{outcome="retry_scheduled"\} [1-9]`),
	)
}

// runBench runs the bench as cfg says, on systems started as `switchboard
// bench` starts them, within two minutes, and returns its report, failing
// t unless every one of want matches it.
func runBench(t *testing.T, cfg bench.Config, want ...*regexp.Regexp) string {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg.Start = startBenchSystem
	if err := bench.Run(ctx, cfg, &out, io.Discard); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	report := out.String()
	for _, w := range want {
		if !w.MatchString(report) {
			t.Errorf("report lacks %s:\n%s", w, report)
		}
	}
	return report
}
