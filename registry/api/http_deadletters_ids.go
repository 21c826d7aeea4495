package api

import (
	"fmt"
	"slices"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// parseReplayIDs checks a replay by ids, naming every bad field, and
// returns the dead letters' sequences, each once, in order.
func parseReplayIDs(in replayInput) ([]uint64, error) {
	fe := switchboard.FieldErrors{}
	switch {
	case in.IDs == nil:
		fe.Add("ids", "is required unless webhook_id is given")
	case len(in.IDs) == 0:
		fe.Add("ids", "must hold at least 1 dead letter id")
	case len(in.IDs) > control.MaxReplay:
		fe.Add("ids", fmt.Sprintf("must hold at most %d dead letter ids", control.MaxReplay))
	}
	for field, v := range map[string]*string{"since": in.Since, "until": in.Until, "reason": in.Reason} {
		if v != nil {
			fe.Add(field, "is a filter of webhook_id; not allowed with ids")
		}
	}
	if len(in.IDs) > control.MaxReplay {
		// Refused whatever the ids say: looking at each would make the work
		// of a refusal grow with the body.
		return nil, fe.Err()
	}
	seqs := make([]uint64, 0, len(in.IDs))
	seen := make(map[uint64]bool, len(in.IDs))
	bad := 0
	for _, id := range in.IDs {
		seq, ok := control.ParseDeadLetterID(id)
		if !ok {
			if bad++; bad <= 10 {
				fe.Add("ids", fmt.Sprintf("%s is not a dead letter id (dl_ and a number)", store.Quote(id)))
			}
			continue
		}
		if !seen[seq] {
			seen[seq] = true
			seqs = append(seqs, seq)
		}
	}
	if bad > 10 {
		fe.Add("ids", fmt.Sprintf("and %d more are not dead letter ids", bad-10))
	}
	if err := fe.Err(); err != nil {
		return nil, err
	}
	slices.Sort(seqs)
	return seqs, nil
}
