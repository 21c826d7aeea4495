package streams

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Retry batches. Deliveries of one webhook whose retries (or deferrals)
// are scheduled at the same moment share one message schedule instead of
// one each: under a dead receiver's backlog, a schedule per delivery cost
// the embedded server about 140 bytes of schedule index and a subject in
// its subject tree per pending delivery (docs/benchmarks.md, issue 16).
//
// A batch is a message schedule on RetryBatchSubject, targeting the
// webhook's DeliverySubject like a single retry, with HeaderRetryBatch set
// to the number of items and a body AppendRetryBatch writes. When it
// fires, the deliverer either settles every item at once (breaker open,
// webhook inactive or deleted) or expands it into one delivery message per
// item, each with the Nats-Msg-Id RetryItemMsgID names. A retry that is
// alone when it is scheduled is stored as before, one schedule on
// RetrySubject with the delivery's headers and body.
//
// The body, version 1 (integers are unsigned varints, strings and bytes
// are a varint length then the bytes):
//
//	version (1 byte, = 1)
//	item count
//	per item: stream sequence of the delivery message it retries,
//	          header count, per header: key, value (one value per key),
//	          body
//
// Version 2, which AppendRetryBatch writes, is the byte 2 and then what
// follows version 1's first byte, compressed as one S2 block
// (github.com/klauspost/compress/s2, which the embedded nats-server
// already links). The items of one webhook repeat their header keys and
// mostly their bodies' JSON, so batches shrink 1.5-8 times (random 400-byte
// strings in each body; a bench's small bodies), and with them what the
// server reads and writes at every retry wave and keeps of it in its
// block cache (docs/benchmarks.md, issue 16). Version 1 is still read.
//
// Workers read it from the stream, so its decoder refuses anything
// malformed rather than trust it (FuzzDecodeRetryBatch).

// HeaderRetryBatch marks a retry batch (the schedule, and the message it
// fires): its value is the number of items.
const HeaderRetryBatch = "Sb-Retry-Batch"

// The first byte of a batch body: its version.
const (
	retryBatchPlain      = 1
	retryBatchCompressed = 2
)

// maxRetryBatchDecoded bounds what a compressed batch may claim to
// decompress to: above any batch a worker writes (512 KiB of items and
// one item past it) and any message JetStream takes (8 MiB at most).
const maxRetryBatchDecoded = 8 << 20

// RetryItem is one delivery in a retry batch: the stream sequence of the
// delivery message it follows, and the headers and body the delivery
// message it becomes will carry.
type RetryItem struct {
	Seq    uint64
	Header map[string][]string // first value of each key only
	Body   []byte
}

// RetryBatchSubject is the schedule subject of a batch whose first item
// follows the delivery message to webhook at stream sequence seq; token
// makes it unique (a process-unique id): two batches must never share a
// subject, or the second would replace the first and its items with it,
// some of them perhaps acked already.
func RetryBatchSubject(webhook string, seq uint64, token string) string {
	return RetryPrefix + webhook + "." + strconv.FormatUint(seq, 10) + "." + token
}

// RetryItemMsgID is the Nats-Msg-Id of the delivery message a batch item
// that follows the delivery message at stream sequence seq expands into,
// so that a batch expanded again (its worker failed mid-way and it was
// redelivered within the duplicates window) queues no item twice.
func RetryItemMsgID(event, webhook string, seq uint64) string {
	return DeliveryMsgID(event, webhook) + ".r" + strconv.FormatUint(seq, 10)
}

// AppendRetryBatch appends the body of a batch of items to b, version 2.
func AppendRetryBatch(b []byte, items []RetryItem) []byte {
	raw := appendRetryItems(nil, items)
	b = append(slices.Grow(b, 1+s2.MaxEncodedLen(len(raw))), retryBatchCompressed)
	return b[:len(b)+len(s2.Encode(b[len(b):cap(b)], raw))]
}

// appendRetryItems appends what follows a version 1 body's first byte.
func appendRetryItems(b []byte, items []RetryItem) []byte {
	b = binary.AppendUvarint(b, uint64(len(items)))
	for _, it := range items {
		b = binary.AppendUvarint(b, it.Seq)
		n := 0
		for _, v := range it.Header {
			if len(v) > 0 {
				n++
			}
		}
		b = binary.AppendUvarint(b, uint64(n))
		for k, v := range it.Header {
			if len(v) == 0 {
				continue
			}
			b = appendBytes(b, []byte(k))
			b = appendBytes(b, []byte(v[0]))
		}
		b = appendBytes(b, it.Body)
	}
	return b
}

// RetryItemSize is about what an item adds to a batch body, to keep
// batches within a byte bound without encoding them twice.
func RetryItemSize(it RetryItem) int {
	n := 3*binary.MaxVarintLen64 + len(it.Body)
	for k, v := range it.Header {
		if len(v) > 0 {
			n += 2*binary.MaxVarintLen64 + len(k) + len(v[0])
		}
	}
	return n
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// errBadBatch is wrapped by every error DecodeRetryBatch returns.
var errBadBatch = errors.New("malformed retry batch")

// DecodeRetryBatch reads a batch body. Its items' headers and bodies are
// copies, not views of data.
func DecodeRetryBatch(data []byte) ([]RetryItem, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", errBadBatch)
	}
	switch data[0] {
	case retryBatchPlain:
		data = data[1:]
	case retryBatchCompressed:
		n, err := s2.DecodedLen(data[1:])
		if err != nil || n > maxRetryBatchDecoded {
			return nil, fmt.Errorf("%w: compressed length", errBadBatch)
		}
		if data, err = s2.Decode(make([]byte, n), data[1:]); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadBatch, err)
		}
	default:
		return nil, fmt.Errorf("%w: unknown version", errBadBatch)
	}
	r := batchReader{data: data}
	count := r.uvarint()
	// Every item takes at least 3 bytes: a bound that keeps a forged count
	// from allocating more than the body could hold.
	if r.err != nil || count > uint64(len(r.data))/3 {
		return nil, fmt.Errorf("%w: item count", errBadBatch)
	}
	items := make([]RetryItem, 0, count)
	for range count {
		it := RetryItem{Seq: r.uvarint()}
		nh := r.uvarint()
		if r.err != nil || nh > uint64(len(r.data))/2 {
			return nil, fmt.Errorf("%w: header count", errBadBatch)
		}
		if nh > 0 {
			it.Header = make(map[string][]string, nh)
		}
		for range nh {
			k, v := r.bytes(), r.bytes()
			if r.err != nil {
				return nil, r.err
			}
			it.Header[string(k)] = []string{string(v)}
		}
		it.Body = append([]byte(nil), r.bytes()...)
		if r.err != nil {
			return nil, r.err
		}
		items = append(items, it)
	}
	if len(r.data) != 0 {
		return nil, fmt.Errorf("%w: %d bytes past the last item", errBadBatch, len(r.data))
	}
	return items, nil
}

// batchReader reads a batch body; its first error sticks.
type batchReader struct {
	data []byte
	err  error
}

func (r *batchReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.data)
	if n <= 0 {
		r.err = fmt.Errorf("%w: truncated number", errBadBatch)
		return 0
	}
	r.data = r.data[n:]
	return v
}

func (r *batchReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.data)) {
		r.err = fmt.Errorf("%w: truncated bytes", errBadBatch)
		return nil
	}
	b := r.data[:n]
	r.data = r.data[n:]
	return b
}

// RetryMsg is the schedule of a retry that is alone when it is scheduled:
// on RetrySubject, named by the stream sequence of the delivery message
// it follows, with the delivery's headers and body (it.Header, it.Body).
// The caller adds the schedule's time and target as it publishes.
func RetryMsg(webhook string, it RetryItem) *nats.Msg {
	m := nats.NewMsg(RetrySubject(webhook, it.Seq))
	for k, v := range it.Header {
		m.Header[k] = v
	}
	m.Data = it.Body
	return m
}

// RetryBatchMsg is the schedule of a batch of items, named by its first
// item and token (RetryBatchSubject), its body version 2.
func RetryBatchMsg(webhook, token string, items []RetryItem) *nats.Msg {
	m := nats.NewMsg(RetryBatchSubject(webhook, items[0].Seq, token))
	m.Header.Set(HeaderRetryBatch, strconv.Itoa(len(items)))
	m.Data = AppendRetryBatch(nil, items)
	return m
}

// RetryItemMsg is the delivery message an item of a fired batch to
// webhook expands into: the item's headers and body, under the
// Nats-Msg-Id RetryItemMsgID.
func RetryItemMsg(webhook string, it RetryItem) *nats.Msg {
	m := nats.NewMsg(DeliverySubject(webhook))
	for k, v := range it.Header {
		m.Header[k] = v
	}
	m.Header.Set(jetstream.MsgIDHeader, RetryItemMsgID(m.Header.Get(HeaderEventID), webhook, it.Seq))
	m.Data = it.Body
	return m
}

// IsRetryBatch reports whether h is that of a fired retry batch: set by
// a worker's batch schedule, never by a client (Nats-Scheduler is
// JetStream's own, set to the schedule's subject).
func IsRetryBatch(h nats.Header) bool {
	return h.Get(HeaderRetryBatch) != "" && strings.HasPrefix(h.Get("Nats-Scheduler"), RetryPrefix)
}

// QueuedDeliveries returns the webhook and the event ids of the deliveries
// a message of SB_DELIVERIES stands for: a delivery or replay (one), a
// scheduled retry (one, its webhook its target's), or a retry batch,
// scheduled or fired (each of its items). ok is false for a message of no
// webhook; a batch that cannot be read stands for none (the deliverer
// dead-letters it).
func QueuedDeliveries(subject string, h nats.Header, data []byte) (webhook string, events []string, ok bool) {
	if _, ok := DeliveryWebhook(subject); !ok {
		subject = h.Get(jetstream.ScheduleTargetHeader)
	}
	if webhook, ok = DeliveryWebhook(subject); !ok {
		return "", nil, false
	}
	if h.Get(HeaderRetryBatch) == "" {
		return webhook, []string{h.Get(HeaderEventID)}, true
	}
	items, err := DecodeRetryBatch(data)
	if err != nil {
		return webhook, nil, true
	}
	events = make([]string, 0, len(items))
	for _, it := range items {
		if v := it.Header[HeaderEventID]; len(v) > 0 {
			events = append(events, v[0])
		}
	}
	return webhook, events, true
}

// CheckNotScheduled returns an error for a delivery with headers h that is
// a schedule (replays are consumed as they are stored) or was fired by one
// other than a worker's retry. Only workers schedule; the registry's NATS
// user may publish replays, and a replay carrying schedule headers would
// otherwise turn into a delivery of its making (deploy/nats/auth.conf).
func CheckNotScheduled(h nats.Header) error {
	if h.Get(jetstream.ScheduleHeader) != "" {
		return errors.New("a schedule, not a delivery")
	}
	// Set by JetStream on what a schedule fired, to the schedule's
	// subject; clients cannot set it themselves.
	if s := h.Get("Nats-Scheduler"); s != "" && !strings.HasPrefix(s, RetryPrefix) {
		return fmt.Errorf("scheduled by %s, not a retry", s)
	}
	return nil
}
