package streams_test

import (
	"bytes"
	"reflect"
	"strconv"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

func sampleItems() []streams.RetryItem {
	return []streams.RetryItem{
		{Seq: 7, Header: map[string][]string{streams.HeaderEventID: {"msg_1"}, streams.HeaderTenant: {"t1"}, streams.HeaderAttempts: {"2"}}, Body: []byte(`{"id":"msg_1"}`)},
		{Seq: 1 << 40, Body: []byte{}},
		{Seq: 9, Header: map[string][]string{streams.HeaderDeferrals: {"3"}, "Empty": {""}}, Body: bytes.Repeat([]byte("x"), 300)},
	}
}

// What AppendRetryBatch writes, DecodeRetryBatch reads back as it was.
func TestRetryBatch_RoundTrip(t *testing.T) {
	items := sampleItems()
	got, err := streams.DecodeRetryBatch(streams.AppendRetryBatch(nil, items))
	if err != nil {
		t.Fatal(err)
	}
	items[1].Body = nil // an empty body reads back as nil
	got[1].Body = nil
	if !reflect.DeepEqual(got, items) {
		t.Errorf("got %+v\nwant %+v", got, items)
	}
}

// Truncated, padded or forged bodies are refused, never read in part.
func TestRetryBatch_RefusesMalformed(t *testing.T) {
	good := streams.AppendRetryBatch(nil, sampleItems())
	for name, data := range map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{3}, good[1:]...),
		"length lie":  {2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0},
		"plain as s2": append([]byte{2}, streams.AppendPlainRetryBatch(nil, sampleItems())[1:]...),
		"padded":      append(append([]byte(nil), good...), 0),
		"huge count":  {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"count short": {1, 2, 1, 0, 0},
	} {
		if _, err := streams.DecodeRetryBatch(data); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	for n := 1; n < len(good); n++ {
		if _, err := streams.DecodeRetryBatch(good[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: decoded", n, len(good))
		}
	}
}

// The decoder takes whatever a stream holds: it never panics, and what it
// accepts encodes back to a body it reads the same.
func FuzzDecodeRetryBatch(f *testing.F) {
	f.Add(streams.AppendRetryBatch(nil, sampleItems()))
	f.Add(streams.AppendRetryBatch(nil, nil))
	f.Add([]byte{1, 1, 0, 0, 0})
	f.Add(streams.AppendPlainRetryBatch(nil, sampleItems()))
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := streams.DecodeRetryBatch(data)
		if err != nil {
			return
		}
		again, err := streams.DecodeRetryBatch(streams.AppendRetryBatch(nil, items))
		if err != nil {
			t.Fatalf("re-encoded batch refused: %v", err)
		}
		if len(again) != len(items) {
			t.Fatalf("re-encoded batch has %d items, want %d", len(again), len(items))
		}
		for i := range items {
			if again[i].Seq != items[i].Seq || !bytes.Equal(again[i].Body, items[i].Body) || len(again[i].Header) != len(items[i].Header) {
				t.Fatalf("item %d changed: %+v, want %+v", i, again[i], items[i])
			}
		}
	})
}

// A version 1 body, which workers before compression wrote and may still
// be scheduled, reads as the same items.
func TestRetryBatch_ReadsVersion1(t *testing.T) {
	items := sampleItems()
	got, err := streams.DecodeRetryBatch(streams.AppendPlainRetryBatch(nil, items))
	if err != nil {
		t.Fatal(err)
	}
	items[1].Body, got[1].Body = nil, nil
	if !reflect.DeepEqual(got, items) {
		t.Errorf("got %+v\nwant %+v", got, items)
	}
	for _, it := range items {
		if n := len(streams.AppendPlainRetryBatch(nil, []streams.RetryItem{it})) - 2; n > streams.RetryItemSize(it) {
			t.Errorf("item of %d bytes encoded, RetryItemSize says %d", n, streams.RetryItemSize(it))
		}
	}
}

// A webhook's items repeat their header keys and most of their JSON: the
// compressed body is a fraction of the plain one.
func TestRetryBatch_Compresses(t *testing.T) {
	var items []streams.RetryItem
	for i := range 128 {
		id := "evt_" + strconv.Itoa(100000+i)
		items = append(items, streams.RetryItem{Seq: uint64(5000 + 3*i),
			Header: map[string][]string{streams.HeaderEventID: {id}, streams.HeaderTenant: {"ten_01JDXYZABCDEFGHJKMNPQRSTVW"}, streams.HeaderAttempts: {"3"}},
			Body:   []byte(`{"type":"call.ended","timestamp":"2026-12-02T15:04:05.123456Z","data":{"call_id":"` + id + `","duration_s":61}}`)})
	}
	plain, packed := len(streams.AppendPlainRetryBatch(nil, items)), len(streams.AppendRetryBatch(nil, items))
	t.Logf("128 items: %d bytes plain, %d compressed", plain, packed)
	if packed*3 > plain {
		t.Errorf("compressed batch %d bytes, plain %d: want under a third", packed, plain)
	}
}
