package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/switchboard-hq/switchboard"
)

// backlogEventType is the type of the events that build the --backlog,
// and of those of bench outage.
const backlogEventType = "call.ended" // free: --backlog and --bad-share do not mix

// createWebhooks creates the run's webhooks through the API: the fan-out's,
// then the dead one or the bad ones as the flags and mode say.
func (c Config) createWebhooks(ctx context.Context, api api, recvURL, secret string, mode badMode) ([]string, error) {
	var ids []string
	for k := range c.Fanout {
		id, err := api.createWebhook(ctx, map[string]any{
			"name": fmt.Sprintf("bench-%d", k), "url": fmt.Sprintf("%s/wh/%d", recvURL, k),
			"events": []string{"call.started"}, "secret": secret,
		})
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if c.DeadShare > 0 {
		id, err := api.createWebhook(ctx, map[string]any{
			"name": "bench-dead", "url": recvURL + "/dead", "events": []string{"call.ended"},
			"secret": secret, "max_retries": 1,
		})
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if c.BadShare > 0 && mode == badControl {
		id, err := api.createWebhook(ctx, map[string]any{
			"name": "bench-control", "url": recvURL + "/control", "events": badEventTypes, "secret": secret,
		})
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if c.Backlog > 0 && mode == badReal {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		down := "http://" + l.Addr().String() + "/"
		l.Close() // nothing listens: every connection is refused
		for k := range max(c.BacklogHooks, 1) {
			name := "bench-backlog"
			if k > 0 {
				name += "-" + strconv.Itoa(k)
			}
			id, err := api.createWebhook(ctx, map[string]any{
				"name": name, "url": down, "events": []string{backlogEventType}, "secret": secret, "max_retries": 10,
			})
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
	}
	if c.BadShare > 0 && mode == badReal {
		for k, kind := range badKinds {
			id, err := api.createWebhook(ctx, map[string]any{
				"name": "bench-bad-" + kind, "url": recvURL + "/bad/" + kind, "events": []string{badEventTypes[k]},
				"secret": secret, "max_retries": 1, "timeout": switchboard.MinTimeoutSeconds,
			})
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}
