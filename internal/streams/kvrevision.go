package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// WebhooksRevision reads the webhooks bucket's last revision and the server's
// time of the reading. The time is in the stream info the server sends
// ("ts"), which jetstream.StreamInfo does not decode.
func WebhooksRevision(ctx context.Context, nc *nats.Conn) (rev uint64, at time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO.KV_"+WebhooksBucket, nil)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("stream info of kv %s: %w", WebhooksBucket, err)
	}
	var info struct {
		State struct {
			LastSeq uint64 `json:"last_seq"`
		} `json:"state"`
		TimeStamp time.Time `json:"ts"`
		Error     *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	switch err := json.Unmarshal(resp.Data, &info); {
	case err != nil:
		return 0, time.Time{}, fmt.Errorf("stream info of kv %s: %w", WebhooksBucket, err)
	case info.Error != nil:
		return 0, time.Time{}, fmt.Errorf("stream info of kv %s: %s", WebhooksBucket, info.Error.Description)
	case info.TimeStamp.IsZero():
		return 0, time.Time{}, fmt.Errorf("stream info of kv %s: the server gives no time (nats-server 2.10 or later needed)", WebhooksBucket)
	}
	return info.State.LastSeq, info.TimeStamp, nil
}
