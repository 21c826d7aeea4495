package streams

import (
	"time"

	"github.com/nats-io/nats.go"
)

// MatchedSubject is where the matcher records, for each event it matched to
// at least one webhook, which webhooks it chose: a JSON Matched per
// message, published with the event's deliveries and acknowledged before
// the event is acked. The registry's attempt ingester reads it with the
// attempts (it is under AttemptsPrefix, one token, so it is neither an
// AttemptSubject nor AttemptBatchSubject) and keeps it as the ledger of
// deliveries owed: GET /v1/events/{id} and the audit compare it with the
// attempt log.
//
// It carries no Nats-Msg-Id: an event matched twice (redelivered after a
// crash, or handed back) may be matched to more webhooks the second time,
// and both records must be kept; the registry stores the union, so a
// repeat changes nothing.
const MatchedSubject = AttemptsPrefix + "matched"

// Matched is the record of one event's matching (MatchedSubject).
type Matched struct {
	TenantID  string `json:"tenant_id"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// EventSeq is the event's sequence in SB_EVENTS: what tells two events
	// of one tenant with the same id (beyond the duplicates window) apart.
	EventSeq uint64 `json:"event_seq"`
	// At is when the matcher chose the webhooks.
	At         time.Time `json:"at"`
	WebhookIDs []string  `json:"webhook_ids"`
}

// MatchedMsg is the message of data, a JSON array of Matched records: the
// matcher publishes the records of many events at once.
func MatchedMsg(data []byte) *nats.Msg {
	// No Nats-Msg-Id: see MatchedSubject.
	return &nats.Msg{Subject: MatchedSubject, Data: data}
}
