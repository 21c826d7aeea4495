package consumer

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// advance records that the index reflects the bucket up to rev.
func (x *Index) advance(rev uint64) { x.setRevision(rev, false) }

func (x *Index) setRevision(rev uint64, reset bool) {
	x.revMu.Lock()
	defer x.revMu.Unlock()
	if rev == x.rev || !reset && rev < x.rev {
		return
	}
	x.rev = rev
	close(x.revCh)
	x.revCh = make(chan struct{})
}

// awaitCurrent returns once the index holds every change made to the bucket
// before stored, an event's time in SB_EVENTS, so that the event is matched
// against every webhook whose create or update returned before it was
// published, on every worker, even while the watch is down or behind. It
// reads the bucket's last revision from the server (one request) only when
// the last reading was taken before stored: under load one reading serves
// every event stored before it. The reading and stored are both server
// times: on a cluster, the nodes' clocks must agree to within the time
// between a webhook's change returning and an event being published after
// it. It returns only ctx's error; a failed reading is logged and tried
// again.
func (x *Index) awaitCurrent(ctx context.Context, nc *nats.Conn, stored time.Time) error {
	x.init()
	x.probeMu.Lock()
	if stored.IsZero() || !stored.Before(x.probedAt) {
		pause := streams.NewRestartBackOff()
		for {
			rev, at, err := streams.WebhooksRevision(ctx, nc)
			if err == nil {
				x.probedRev, x.probedAt = rev, at
				break
			}
			if ctx.Err() != nil {
				x.probeMu.Unlock()
				return ctx.Err()
			}
			wait := pause.NextBackOff()
			loggerOr(x.Logger).Warn("cannot read the webhooks bucket's revision; matching waits", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				x.probeMu.Unlock()
				return ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	target := x.probedRev
	x.probeMu.Unlock()
	return x.waitRevision(ctx, target)
}

// indexLagWarning is how long matching waits for the index before saying so.
const indexLagWarning = 5 * time.Second

// waitRevision blocks until the index reflects revision rev or ctx is done.
func (x *Index) waitRevision(ctx context.Context, rev uint64) error {
	var warn <-chan time.Time
	for {
		x.revMu.Lock()
		have, ch := x.rev, x.revCh
		x.revMu.Unlock()
		if have >= rev {
			return nil
		}
		if warn == nil {
			t := time.NewTimer(indexLagWarning)
			defer t.Stop()
			warn = t.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-warn:
			loggerOr(x.Logger).Warn("matching waits for the webhook index to catch up with the KV bucket (watch down or behind)",
				"index_revision", have, "bucket_revision", rev)
		}
	}
}
