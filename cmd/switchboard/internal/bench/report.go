package bench

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// report prints what the run measured: (a) to (c), then with --bad-share
// or --backlog the pairs of runs.
func (c Config) report(w io.Writer, r *result) {
	rate := "as fast as accepted"
	if c.Rate > 0 {
		rate = fmt.Sprintf("%d events/s", c.Rate)
	}
	fmt.Fprintf(w, "\nSwitchboard bench: %d events published %s, fan-out %d, %d-byte bodies, concurrency %d, dead share %.0f%%\n",
		c.Events, rate, c.Fanout, c.PayloadSize, c.Workers, c.DeadShare*100)
	fmt.Fprintf(w, "  (a) ceiling, signed POSTs straight to the receiver: %8.0f req/s\n", r.CeilingRate)
	fmt.Fprintf(w, "  (b) end to end, publish -> JetStream -> delivered:  %8.0f deliveries/s  (%d in %.2fs)\n",
		r.Rate, r.Delivered, r.Elapsed.Seconds())
	fmt.Fprintf(w, "      publish-to-receive latency: p50 %v  p95 %v  p99 %v\n",
		r.P50.Round(time.Millisecond/10), r.P95.Round(time.Millisecond/10), r.P99.Round(time.Millisecond/10))
	if c.Rate == 0 {
		fmt.Fprintf(w, "  (c) ratio (b)/(a): %.1f%%\n", 100*r.Rate/r.CeilingRate)
		if r.CPU > 0 && r.CeilingCPU > 0 {
			fmt.Fprintf(w, "      CPU per request: ceiling %.1f µs, end to end %.1f µs per delivery: ratio %.1f%%\n",
				us(r.CeilingCPU), us(r.CPU), 100*float64(r.CeilingCPU)/float64(r.CPU))
		}
	} else {
		fmt.Fprintln(w, "  (c) ratio: not meaningful at a fixed --rate; run without --rate for throughput")
	}
	fmt.Fprintf(w, "  lost %d, duplicated %d, bad signatures %d", r.Lost, r.Dup, r.BadSignatures)
	if c.DeadShare > 0 {
		fmt.Fprintf(w, ", attempts at the dead receiver %d", r.DeadAttempts)
	}
	fmt.Fprintln(w)
	if c.BadShare > 0 || c.Backlog > 0 {
		c.reportPairs(w, r)
	}
}

// reportPairs prints (d): each round's pair of runs, the median ratio, and
// of the last round the backlog's figures or the bad receivers'.
func (c Config) reportPairs(w io.Writer, r *result) {
	beside := fmt.Sprintf("bad receivers (%.0f%% of events)", c.BadShare*100)
	if c.Backlog > 0 {
		beside = fmt.Sprintf("a backlog of %d for a dead receiver", c.Backlog)
		if c.BacklogHooks > 1 {
			beside = fmt.Sprintf("a backlog of %d for each of %d dead receivers", c.Backlog, c.BacklogHooks)
		}
	}
	ratios := make([]float64, len(r.BadRates))
	for i := range r.BadRates {
		ratios[i] = r.BadRates[i] / r.AloneRates[i]
		fmt.Fprintf(w, "  (d) round %d: healthy webhooks, baseline %6.0f deliveries/s (p99 %v), beside %s %6.0f deliveries/s (p99 %v): %.1f%%\n",
			i+1, r.AloneRates[i], r.AloneP99[i].Round(time.Millisecond), beside, r.BadRates[i], r.BadP99[i].Round(time.Millisecond), 100*ratios[i])
	}
	slices.Sort(ratios)
	baseline := "alone"
	if c.Control {
		baseline = "beside a fast control receiver taking the same events"
	}
	fmt.Fprintf(w, "      healthy throughput kept beside %s, against the baseline %s, median of %d: %.1f%%\n", beside, baseline, len(ratios), 100*ratios[len(ratios)/2])
	if c.Backlog > 0 {
		fmt.Fprintf(w, "      last round, backlog: built in %.1fs, peak RSS %d MB, CPU once settled %.1f%% of a core\n",
			r.BacklogBuild.Seconds(), r.BacklogPeakRSS>>20, 100*r.BacklogIdleCPU)
		for _, line := range r.BacklogCounters {
			fmt.Fprintf(w, "      %s\n", line)
		}
		return
	}
	fmt.Fprintf(w, "      last round, attempts at the bad receivers:")
	for _, kind := range badKinds {
		fmt.Fprintf(w, " %s %d", kind, r.BadAttempts[kind])
	}
	fmt.Fprintln(w)
	for _, line := range r.Isolation {
		fmt.Fprintf(w, "      %s\n", line)
	}
}
