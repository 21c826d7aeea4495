package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
)

// decode returns the usable attempts of msg, or terminates msg and reports
// false when it holds none: it never will.
func (in *AttemptIngester) decode(msg jetstream.Msg, log *slog.Logger) (attemptRecord, bool) {
	if msg.Subject() == streams.MatchedSubject {
		matched, err := decodeMatched(msg.Data())
		if err != nil {
			log.Error("attempt log: undecodable matched record; terminating it", "err", err)
			if err := msg.TermWithReason("undecodable matched record"); err != nil {
				log.Warn("attempt log: terminate", "err", err)
			}
			return attemptRecord{}, false
		}
		return attemptRecord{msg: msg, matched: toLedger(matched)}, true
	}
	attempts, bad, err := decodeAttempts(msg.Data())
	for _, err := range bad {
		log.Error("attempt log: unusable attempt in a record; dropped", "subject", msg.Subject(), "err", err)
	}
	if err == nil && len(attempts) == 0 {
		err = errors.New("no usable attempt")
	}
	if err != nil {
		log.Error("attempt log: undecodable record; terminating it", "subject", msg.Subject(), "err", err)
		if err := msg.TermWithReason("undecodable attempt record"); err != nil {
			log.Warn("attempt log: terminate", "err", err)
		}
		return attemptRecord{}, false
	}
	return attemptRecord{msg: msg, attempts: attempts}, true
}

// decodeAttempts returns the attempts of a record's data: a JSON object, one
// attempt, or a JSON array of them, told apart by the first byte. An element
// of an array that is not a usable attempt is left out, with an error in
// bad, so that it costs no other; err says the data is neither.
func decodeAttempts(data []byte) (attempts []switchboard.Attempt, bad []error, err error) {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 {
		return nil, nil, errors.New("empty record")
	}
	switch data[0] {
	case '{':
		var a switchboard.Attempt
		if err := json.Unmarshal(data, &a); err != nil {
			return nil, nil, err
		}
		if err := usableAttempt(&a); err != nil {
			return nil, nil, err
		}
		return []switchboard.Attempt{a}, nil, nil
	case '[':
		if err := json.Unmarshal(data, &attempts); err != nil {
			// Which element is at fault? Decode them one by one.
			var raw []json.RawMessage
			if err := json.Unmarshal(data, &raw); err != nil {
				return nil, nil, err
			}
			attempts = make([]switchboard.Attempt, len(raw))
			for i := range raw {
				if err := json.Unmarshal(raw[i], &attempts[i]); err != nil {
					attempts[i] = switchboard.Attempt{} // found unusable below
				}
			}
		}
		kept := attempts[:0]
		for i := range attempts {
			if err := usableAttempt(&attempts[i]); err != nil {
				bad = append(bad, fmt.Errorf("element %d: %w", i, err))
				continue
			}
			kept = append(kept, attempts[i])
		}
		return kept, bad, nil
	}
	return nil, nil, fmt.Errorf("a record is a JSON object or array, not one starting with %q", data[0])
}

// usableAttempt reports what a lacks to be stored and counted.
func usableAttempt(a *switchboard.Attempt) error {
	if a.ID == "" || a.TenantID == "" || a.WebhookID == "" {
		return errIncompleteAttempt
	}
	return nil
}

// errIncompleteAttempt names what an attempt lacks.
var errIncompleteAttempt = errors.New("an attempt needs its id, tenant_id and webhook_id")
