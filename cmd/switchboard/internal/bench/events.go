package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/producer"
)

// healthyEvents is how many events go to the healthy webhooks.
func (c Config) healthyEvents() int {
	n := 0
	for i := range c.Events {
		if !c.isDead(i) && !c.isBad(i) {
			n++
		}
	}
	return n
}

// isBad spreads the bad share evenly over the event sequence.
func (c Config) isBad(i int) bool {
	return int(float64(i+1)*c.BadShare) > int(float64(i)*c.BadShare)
}

// isDead spreads the dead share evenly over the event sequence.
func (c Config) isDead(i int) bool {
	return int(float64(i+1)*c.DeadShare) > int(float64(i)*c.DeadShare)
}

// sampleBody is a rendered payload of about PayloadSize bytes.
func (c Config) sampleBody() []byte {
	evt := c.event(0)
	evt.TenantID = "bench"
	evt.Normalize(time.Now())
	b, _ := evt.Payload(nil)
	return b
}

// event is event i of the sequence: to the healthy webhooks, the dead one
// or a bad one as the shares say.
func (c Config) event(i int) switchboard.Event {
	typ := "call.started"
	switch {
	case c.isDead(i):
		typ = "call.ended"
	case c.isBad(i):
		typ = badEventTypes[int(float64(i)*c.BadShare)%len(badKinds)] // bad events in turn
	}
	// The rendered body adds about 130 bytes of envelope around data.
	pad := max(c.PayloadSize-150, 1)
	return switchboard.Event{
		ID:      fmt.Sprintf("bench_%d", i),
		Type:    typ,
		AgentID: "agent-1",
		Data:    json.RawMessage(`{"call_id":"c-` + fmt.Sprint(i) + `","pad":"` + strings.Repeat("x", pad) + `"}`),
	}
}

// badMode says where the --bad-share events go in an end-to-end run.
type badMode int

const (
	badNone    badMode = iota // not published: the healthy webhooks alone
	badControl                // to one more webhook, a fast receiver: the same load, nothing bad
	badReal                   // to the bad receivers
)

// publish sends every event through the producer in batches, stamping each
// event's publish time for the latency figures. With a rate, batches are
// paced every 10ms.
func (c Config) publish(ctx context.Context, pub *producer.Client, tenant string, recv *receiver, withBad bool, published *atomic.Int64) error {
	batch := 500
	var pace *time.Ticker
	if c.Rate > 0 {
		batch = max(1, c.Rate/100)
		pace = time.NewTicker(time.Duration(float64(time.Second) * float64(batch) / float64(c.Rate)))
		defer pace.Stop()
	}
	evts := make([]*switchboard.Event, 0, batch)
	for i := 0; i < c.Events; i += batch {
		if pace != nil {
			select {
			case <-pace.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		evts = evts[:0]
		now := time.Now().UnixNano()
		for j := i; j < min(i+batch, c.Events); j++ {
			if !withBad && c.isBad(j) {
				continue
			}
			e := c.event(j)
			e.TenantID = tenant
			evts = append(evts, &e)
			recv.published[j].Store(now)
		}
		if len(evts) == 0 {
			continue
		}
		if _, err := pub.PublishBatch(ctx, evts); err != nil {
			return err
		}
		published.Add(int64(len(evts)))
	}
	return nil
}
