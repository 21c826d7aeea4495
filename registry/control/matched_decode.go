package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// decodeMatched returns the records of a MatchedSubject message: a JSON
// object, one record, or an array of them.
func decodeMatched(data []byte) ([]streams.Matched, error) {
	data = bytes.TrimLeft(data, " \t\r\n")
	var out []streams.Matched
	switch {
	case len(data) > 0 && data[0] == '{':
		var m streams.Matched
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		out = []streams.Matched{m}
	case len(data) > 0 && data[0] == '[':
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("a matched record is a JSON object or array")
	}
	for i := range out {
		if out[i].TenantID == "" || out[i].EventID == "" || len(out[i].WebhookIDs) == 0 {
			return nil, fmt.Errorf("matched record %d: needs tenant_id, event_id and webhook_ids", i)
		}
	}
	return out, nil
}

// toLedger converts the matcher's records to the store's, which have the
// same fields without the wire format's JSON tags.
func toLedger(ms []streams.Matched) []store.Matched {
	out := make([]store.Matched, len(ms))
	for i, m := range ms {
		out[i] = store.Matched(m)
	}
	return out
}
