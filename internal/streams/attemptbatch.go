package streams

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AttemptBatchMsg is the message of a batch of attempt records
// (AttemptBatchSubject): data is the JSON array of switchboard.Attempt,
// firstID the id of the first attempt in it, its Nats-Msg-Id, so that a
// batch published again is stored once.
func AttemptBatchMsg(data []byte, firstID string) *nats.Msg {
	return &nats.Msg{
		Subject: AttemptBatchSubject,
		Data:    data,
		Header:  nats.Header{jetstream.MsgIDHeader: {firstID}},
	}
}
