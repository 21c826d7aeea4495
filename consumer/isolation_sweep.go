package consumer

import (
	"context"
	"time"

	"github.com/sony/gobreaker/v2"
)

// sweep refreshes the breaker-state gauge and drops idle gates every
// sweepInterval until ctx is done, then zeroes the gauge: the breakers
// end with the Deliverer.
func (d *Deliverer) sweep(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, g := range d.Metrics.breakers {
				g.Set(0)
			}
			return
		case now := <-t.C:
			counts := d.iso.sweep(now, d.Index)
			for s, n := range counts {
				d.Metrics.breakers[s].Set(float64(n))
			}
		}
	}
}

// sweep drops the gates idle for iso.idle, or whose webhook is no longer
// deliverable, and counts the others by breaker state.
func (iso *isolation) sweep(now time.Time, index *Index) map[string]int {
	counts := map[string]int{stateClosed: 0, stateOpen: 0, stateHalfOpen: 0}
	iso.mu.Lock()
	defer iso.mu.Unlock()
	for id, g := range iso.gates {
		if g.users == 0 { // a slot is held only between get and put
			h, ok := index.lookup(id)
			if now.Sub(g.lastUsed) > iso.idle || !ok || h.deleted {
				delete(iso.gates, id)
				continue
			}
		}
		open, _ := g.open(now, iso.cooldown) // also moves an expired open breaker to half-open
		switch {
		case open:
			counts[stateOpen]++
		case g.breaker.State() == gobreaker.StateHalfOpen:
			counts[stateHalfOpen]++
		default:
			counts[stateClosed]++
		}
	}
	return counts
}
