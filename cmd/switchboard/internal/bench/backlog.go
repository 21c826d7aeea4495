package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard"
)

// buildBacklog publishes c.Backlog events to the backlog webhook, as fast
// as JetStream takes them, and waits until the deliverer has had each
// once (all then wait as scheduled retries); then it measures the
// process's CPU over a quiet window and, if asked, writes a heap profile.
func (c Config) buildBacklog(ctx context.Context, sys *System, res *result, stderr io.Writer) error {
	stop := sampleRSS()
	defer func() { res.BacklogPeakRSS = max(res.BacklogPeakRSS, stop()) }()
	start := time.Now()
	body := json.RawMessage(`{"backlog":true}`)
	const batch = 500
	evts := make([]*switchboard.Event, 0, batch)
	for i := 0; i < c.Backlog; i += batch {
		evts = evts[:0]
		for j := i; j < min(i+batch, c.Backlog); j++ {
			evts = append(evts, &switchboard.Event{ID: fmt.Sprintf("msg_backlog_%d", j), TenantID: sys.Tenant,
				Type: backlogEventType, OccurredAt: time.Now().UTC(), Data: body})
		}
		if _, err := sys.Producer.PublishBatch(ctx, evts); err != nil {
			return fmt.Errorf("publish backlog: %w", err)
		}
	}
	if c.MemProfile != "" {
		// The peak comes while the backlog is published and matched: what
		// holds memory then, beside the profile once settled.
		if err := writeHeapProfile(c.MemProfile + ".build"); err != nil {
			return err
		}
	}
	// Every backlog delivery has been had once when the deliverer has
	// settled as many: retried, deferred (earlier versions) or given up.
	want := c.Backlog * max(c.BacklogHooks, 1)
	if err := waitSettled(ctx, sys, start, want, stderr); err != nil {
		return err
	}
	res.BacklogBuild = time.Since(start)
	// Then its first three retries (5 s, 20 s and 80 s apart, +-20 %) come
	// due; a quiet window after them, before the fourth (5 min 20 s
	// later), shows what a settled backlog costs. A large backlog takes
	// minutes to build, so its waves overlap until the third is done.
	waves := c.SettleRetries
	if waves <= 0 {
		waves = 3
	}
	minWait := time.After(30 * time.Second)
	if err := waitSettled(ctx, sys, start, (1+waves)*want, stderr); err != nil {
		return err
	}
	<-minWait
	cpu0, t0 := cpuNow(), time.Now()
	time.Sleep(10 * time.Second)
	res.BacklogIdleCPU = float64(cpuNow()-cpu0) / float64(time.Since(t0))
	if c.MemProfile != "" {
		if err := writeHeapProfile(c.MemProfile); err != nil {
			return err
		}
	}
	var err error
	res.BacklogCounters, err = scrapeMetrics(ctx, sys.URL+"/metrics", "switchboard_deliveries_total", "switchboard_deliveries_deferred_total", "switchboard_consumer_pending")
	return err
}

// waitSettled waits until the deliverer has settled goal deliveries of
// the backlog (attempts counted as retried, deferred or given up).
func waitSettled(ctx context.Context, sys *System, start time.Time, goal int, stderr io.Writer) error {
	settled := []string{`{outcome="retry_scheduled"} `, `{outcome="deferred"} `, `{outcome="dead_lettered"} `}
	for {
		lines, err := scrapeMetrics(ctx, sys.URL+"/metrics", "switchboard_deliveries_total")
		if err != nil {
			return err
		}
		n := 0.0
		for _, l := range lines {
			for _, m := range settled {
				if v, ok := strings.CutPrefix(l, "switchboard_deliveries_total"+m); ok {
					f, _ := strconv.ParseFloat(v, 64)
					n += f
				}
			}
		}
		fmt.Fprintf(stderr, "bench: backlog %5.1fs  settled %.0f for %d  RSS %d MB\n", time.Since(start).Seconds(), n, goal, readRSS()>>20)
		if int(n) >= goal {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
