package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	switchboard "github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

func TestAppendAttempt_IsJSONMarshal(t *testing.T) {
	full := switchboard.Attempt{
		ID: "att_01", TenantID: "t1", WebhookID: "wh_1", EventID: "msg:1", EventType: "call.started", Number: 3,
		At: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Outcome: switchboard.AttemptDeadLettered, Reason: "gone",
		StatusCode: 410, LatencyMS: 12.345, ErrorClass: "status", Error: `status 410: {"error": "gone <now> & forever"}`,
		ResponseBody: "café \u2028 \\ \x01 \xff",
	}
	for name, a := range map[string]switchboard.Attempt{
		"full":          full,
		"zero":          {},
		"delivered":     {ID: "att_2", Outcome: switchboard.AttemptDelivered, StatusCode: 204, LatencyMS: 0.001, At: time.Unix(1, 0).In(time.FixedZone("x", 3600))},
		"huge-latency":  {LatencyMS: 1e22},
		"tiny-latency":  {LatencyMS: 1e-9},
		"whole-latency": {LatencyMS: 1500},
	} {
		want, err := json.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendAttempt(nil, &a); string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func TestErrorClass(t *testing.T) {
	for want, err := range map[string]error{
		"status":       &attemptError{Status: 500},
		"timeout":      &attemptError{Err: context.DeadlineExceeded},
		"connection":   &attemptError{Err: errors.New("connection refused")},
		"refused":      &attemptError{Err: &netguard.RefusedError{}},
		"invalid":      &webhookError{Reason: reasonInactive},
		"circuit_open": &openError{},
	} {
		if got := errorClass(errors.Join(errors.New("wrapped"), err)); got != want {
			t.Errorf("errorClass(%v) = %q, want %q", err, got, want)
		}
	}
	if got := truncate("ééé", 3); got != "é" {
		t.Errorf("truncate cut a rune: %q", got)
	}
}

// storedBatch is a message of SB_ATTEMPTS, decoded.
type storedBatch struct {
	msgID   string
	size    int // of its data
	records []switchboard.Attempt
}

// storedBatches returns the messages of SB_ATTEMPTS in stream order.
func storedBatches(t *testing.T, js jetstream.JetStream) []storedBatch {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, streams.Attempts)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedBatch
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != streams.AttemptBatchSubject {
			t.Errorf("batch on %s", m.Subject)
		}
		b := storedBatch{msgID: m.Header.Get(jetstream.MsgIDHeader), size: len(m.Data)}
		if err := json.Unmarshal(m.Data, &b.records); err != nil {
			t.Fatalf("batch %d: %v", seq, err)
		}
		out = append(out, b)
	}
	return out
}

// testRecorder returns a recorder on env, not started, and the buffer of
// its logs.
func testRecorder(env *testenv.JetStream) (*attemptRecorder, *bytes.Buffer) {
	var logs bytes.Buffer
	return newAttemptRecorder(env.JS, slog.New(slog.NewTextHandler(&logs, nil)), NewMetrics(prometheus.NewRegistry())), &logs
}

// unrecorded is the value of switchboard_attempts_unrecorded_total.
func unrecorded(t *testing.T, r *attemptRecorder) float64 {
	var m dto.Metric
	if err := r.metrics.attemptsUnrecorded.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// queue hands n records to r, numbered from 0, with body bytes of response
// body each, and returns their ids.
func queue(r *attemptRecorder, n, body int) []string {
	ids := make([]string, n)
	for i := range ids {
		a := switchboard.Attempt{
			ID: switchboard.NewID("att_"), TenantID: "t1", WebhookID: "wh_1", EventID: "msg_" + strconv.Itoa(i),
			Number: 1, Outcome: switchboard.AttemptDelivered, StatusCode: 200, ResponseBody: strings.Repeat("x", body),
		}
		ids[i] = a.ID
		r.publish(&a)
	}
	return ids
}

// checkStored checks that batches hold the records of ids, in order, each
// batch under its first record's id.
func checkStored(t *testing.T, batches []storedBatch, ids []string) {
	t.Helper()
	var got []string
	for _, b := range batches {
		if len(b.records) == 0 || b.msgID != b.records[0].ID {
			t.Errorf("batch of %d records has Nats-Msg-Id %q", len(b.records), b.msgID)
			continue
		}
		for _, a := range b.records {
			got = append(got, a.ID)
		}
	}
	if !slices.Equal(got, ids) {
		t.Errorf("stored %d records, want %d in order", len(got), len(ids))
	}
}

func TestRecorder_BatchesWhatHasArrived(t *testing.T) {
	env := testenv.StartJetStream(t)
	r, logs := testRecorder(env)
	// More than the queue holds arrive before the recorder runs: the
	// excess is dropped and counted, the rest published in full batches.
	ids := queue(r, recordQueue+3, 0)
	if got := unrecorded(t, r); got != 3 {
		t.Errorf("unrecorded = %v, want the 3 records the queue had no room for", got)
	}
	r.start()()

	batches := storedBatches(t, env.JS)
	checkStored(t, batches, ids[:recordQueue])
	if len(batches) != recordQueue/recordBatchCount {
		t.Errorf("%d batches, want %d of %d records", len(batches), recordQueue/recordBatchCount, recordBatchCount)
	}
	if got := unrecorded(t, r); got != 3 {
		t.Errorf("unrecorded = %v after stop, want 3:\n%s", got, logs)
	}
}

func TestRecorder_SplitsAtByteBound(t *testing.T) {
	env := testenv.StartJetStream(t)
	r, logs := testRecorder(env)
	// Fewer records than a batch may count, but twice the bytes it may
	// hold.
	n := 150
	body := 2 * recordBatchBytes / n
	ids := queue(r, n, body)
	r.start()()

	batches := storedBatches(t, env.JS)
	checkStored(t, batches, ids)
	if len(batches) < 2 {
		t.Fatalf("%d batches of %d records of %d bytes", len(batches), n, body)
	}
	for i, b := range batches {
		if b.size > recordBatchBytes {
			t.Errorf("batch %d: %d bytes", i, b.size)
		}
		// Split only when the next record would not fit.
		if i < len(batches)-1 && b.size+body+1 <= recordBatchBytes {
			t.Errorf("batch %d: %d bytes of %d records, split early", i, b.size, len(b.records))
		}
	}
	if got := unrecorded(t, r); got != 0 {
		t.Errorf("unrecorded = %v:\n%s", got, logs)
	}
}

func TestRecorder_CountsEveryRecordOfALostBatch(t *testing.T) {
	env := testenv.StartJetStream(t)
	// Without the stream, JetStream refuses every publish, the second too.
	if err := env.JS.DeleteStream(context.Background(), streams.Attempts); err != nil {
		t.Fatal(err)
	}
	r, logs := testRecorder(env)
	ids := queue(r, 5, 0)
	r.start()()

	if got := unrecorded(t, r); got != 5 {
		t.Errorf("unrecorded = %v, want 5 (one per record of the batch)", got)
	}
	for _, id := range ids {
		if !strings.Contains(logs.String(), id) {
			t.Errorf("lost record %s not logged:\n%s", id, logs)
		}
	}
}
