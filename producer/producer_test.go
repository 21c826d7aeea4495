package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
)

const tenant = "tn_test"

func newEvent(id, typ string) *switchboard.Event {
	return &switchboard.Event{ID: id, TenantID: tenant, Type: typ, AgentID: "agent_1", Data: json.RawMessage(`{"call_id":"c1"}`)}
}

// newClient returns a client on a fresh embedded JetStream, its metrics
// registered with reg so that tests can read them.
func newClient(tb testing.TB) (*producer.Client, *testenv.JetStream, *prometheus.Registry) {
	tb.Helper()
	env := testenv.StartJetStream(tb)
	reg := prometheus.NewRegistry()
	return producer.New(env.JS, producer.WithMetrics(producer.NewMetrics(reg))), env, reg
}

func streamMsgs(tb testing.TB, js jetstream.JetStream) uint64 {
	tb.Helper()
	s, err := js.Stream(context.Background(), streams.Events)
	if err != nil {
		tb.Fatalf("stream: %v", err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		tb.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

func getMsg(tb testing.TB, js jetstream.JetStream, seq uint64) *jetstream.RawStreamMsg {
	tb.Helper()
	s, err := js.Stream(context.Background(), streams.Events)
	if err != nil {
		tb.Fatalf("stream: %v", err)
	}
	msg, err := s.GetMsg(context.Background(), seq)
	if err != nil {
		tb.Fatalf("get msg %d: %v", seq, err)
	}
	return msg
}

// metric returns the value of the counter name{label=value} in reg.
func metric(tb testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	tb.Fatalf("metric %s{%s=%q} not found", name, label, value)
	return 0
}

func TestClient_Publish(t *testing.T) {
	t.Run("StoredOnSubjectWithHeaders", func(t *testing.T) {
		c, env, reg := newClient(t)
		evt := newEvent("msg_1", "call.started")
		before := time.Now()
		res, err := c.Publish(context.Background(), evt)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		after := time.Now()
		if res.ID != "msg_1" || res.Sequence == 0 || res.Duplicate {
			t.Fatalf("result = %+v", res)
		}

		msg := getMsg(t, env.JS, res.Sequence)
		if want := "sb.events.tn_test.call.started"; msg.Subject != want {
			t.Errorf("subject = %q, want %q", msg.Subject, want)
		}
		if got, want := msg.Header.Get(jetstream.MsgIDHeader), tenant+":msg_1"; got != want {
			t.Errorf("%s = %q, want %s", jetstream.MsgIDHeader, got, want)
		}
		ns, err := strconv.ParseInt(msg.Header.Get(streams.HeaderAcceptedAt), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", streams.HeaderAcceptedAt, err)
		}
		if at := time.Unix(0, ns); at.Before(before) || at.After(after) {
			t.Errorf("accepted at %v, want between %v and %v", at, before, after)
		}
		stored, err := streams.DecodeEvent(msg.Subject, msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("decode stored event: %v", err)
		}
		if stored.ID != "msg_1" || stored.TenantID != tenant || stored.Type != "call.started" ||
			stored.AgentID != "agent_1" || string(stored.Data) != `{"call_id":"c1"}` || stored.OccurredAt.IsZero() {
			t.Errorf("stored event = %+v", stored)
		}
		if got := metric(t, reg, "switchboard_events_accepted_total", "duplicate", "false"); got != 1 {
			t.Errorf("accepted{duplicate=false} = %v, want 1", got)
		}
	})

	t.Run("WithoutMetrics", func(t *testing.T) {
		env := testenv.StartJetStream(t)
		for _, c := range []*producer.Client{producer.New(env.JS), producer.New(env.JS, producer.WithMetrics(nil))} {
			if _, err := c.Publish(context.Background(), newEvent("", "call.started")); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		}
	})

	t.Run("FillsIDAndTime", func(t *testing.T) {
		c, _, _ := newClient(t)
		evt := newEvent("", "call.ended")
		res, err := c.Publish(context.Background(), evt)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if !strings.HasPrefix(res.ID, switchboard.EventIDPrefix) || res.ID != evt.ID {
			t.Errorf("id = %q, event id = %q; want the generated %q... id in both", res.ID, evt.ID, switchboard.EventIDPrefix)
		}
		if evt.OccurredAt.IsZero() {
			t.Error("occurred_at not filled")
		}
	})

	t.Run("DuplicateID", func(t *testing.T) {
		c, env, reg := newClient(t)
		first, err := c.Publish(context.Background(), newEvent("msg_dup", "call.started"))
		if err != nil {
			t.Fatalf("first Publish: %v", err)
		}
		second, err := c.Publish(context.Background(), newEvent("msg_dup", "call.started"))
		if err != nil {
			t.Fatalf("second Publish: %v", err)
		}
		if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence {
			t.Fatalf("first = %+v, second = %+v; want the second a duplicate with the same sequence", first, second)
		}
		if n := streamMsgs(t, env.JS); n != 1 {
			t.Fatalf("%d messages in %s, want 1", n, streams.Events)
		}
		if got := metric(t, reg, "switchboard_events_accepted_total", "duplicate", "true"); got != 1 {
			t.Errorf("accepted{duplicate=true} = %v, want 1", got)
		}
	})

	t.Run("DataKeepsHTMLCharacters", func(t *testing.T) {
		// 500 KiB of '<' would be 3 MiB escaped as \u003c, beyond the
		// payload NATS allows.
		c, env, _ := newClient(t)
		evt := newEvent("msg_big", "call.started")
		evt.Data = json.RawMessage(`{"html":"` + strings.Repeat("<", 500<<10) + `"}`)
		res, err := c.Publish(context.Background(), evt)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		msg := getMsg(t, env.JS, res.Sequence)
		stored, err := streams.DecodeEvent(msg.Subject, msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if string(stored.Data) != string(evt.Data) {
			t.Fatalf("stored data differs from published data (%d vs %d bytes)", len(stored.Data), len(evt.Data))
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			modify func(*switchboard.Event)
			fields []string
		}{
			{name: "NoType", modify: func(e *switchboard.Event) { e.Type = "" }, fields: []string{"type"}},
			{name: "BadType", modify: func(e *switchboard.Event) { e.Type = "call..started" }, fields: []string{"type"}},
			{name: "BadID", modify: func(e *switchboard.Event) { e.ID = "msg 1" }, fields: []string{"id"}},
			{name: "NoTenant", modify: func(e *switchboard.Event) { e.TenantID = "" }, fields: []string{"tenant_id"}},
			{name: "TenantWithDot", modify: func(e *switchboard.Event) { e.TenantID = "tn_a.call" }, fields: []string{"tenant_id"}},
			{name: "TenantWildcard", modify: func(e *switchboard.Event) { e.TenantID = ">" }, fields: []string{"tenant_id"}},
			{name: "DataNotObject", modify: func(e *switchboard.Event) { e.Data = json.RawMessage(`[1]`) }, fields: []string{"data"}},
			{name: "NoData", modify: func(e *switchboard.Event) { e.Data = nil }, fields: []string{"data"}},
			{name: "YearOutOfRange", modify: func(e *switchboard.Event) { e.OccurredAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, fields: []string{"occurred_at"}},
			{
				name:   "EveryField",
				modify: func(e *switchboard.Event) { e.ID, e.Type, e.TenantID, e.Data = "a b", "", "x.y", nil },
				fields: []string{"data", "id", "tenant_id", "type"},
			},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c, env, reg := newClient(t)
				evt := newEvent("msg_1", "call.started")
				tt.modify(evt)
				_, err := c.Publish(context.Background(), evt)
				assertFields(t, err, tt.fields)
				if n := streamMsgs(t, env.JS); n != 0 {
					t.Fatalf("%d messages published, want 0", n)
				}
				if got := metric(t, reg, "switchboard_events_rejected_total", "reason", "invalid"); got != 1 {
					t.Errorf("rejected{reason=invalid} = %v, want 1", got)
				}
			})
		}
	})

	t.Run("BadOption", func(t *testing.T) {
		c, env, _ := newClient(t)
		if _, err := c.Publish(context.Background(), newEvent("msg_1", "call.started"), producer.WithAttempts(0)); err == nil {
			t.Fatal("Publish with 0 attempts succeeded")
		}
		if n := streamMsgs(t, env.JS); n != 0 {
			t.Fatalf("%d messages published, want 0", n)
		}
	})

	t.Run("JetStreamDown", func(t *testing.T) {
		c, env, reg := newClient(t)
		c.AttemptTimeout = 100 * time.Millisecond
		c.RetryWait = 10 * time.Millisecond
		env.Server.Shutdown()
		start := time.Now()
		_, err := c.Publish(context.Background(), newEvent("msg_1", "call.started"), producer.WithAttempts(3))
		if err == nil {
			t.Fatal("Publish succeeded with the server down")
		}
		t.Logf("Publish: %v", err)
		if !strings.Contains(err.Error(), "attempt 3") {
			t.Errorf("err = %v, want it to give up after attempt 3", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Publish took %v with 100ms attempts", d)
		}
		if got := metric(t, reg, "switchboard_events_rejected_total", "reason", "unavailable"); got != 1 {
			t.Errorf("rejected{reason=unavailable} = %v, want 1", got)
		}
	})

	t.Run("Canceled", func(t *testing.T) {
		c, env, _ := newClient(t)
		env.Server.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := c.Publish(ctx, newEvent("msg_1", "call.started"), producer.WithAttempts(1000))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
}

// assertFields fails unless err is an EINVALID *switchboard.Error naming
// exactly fields.
func assertFields(tb testing.TB, err error, fields []string) {
	tb.Helper()
	var e *switchboard.Error
	if !errors.As(err, &e) || e.Code != switchboard.EINVALID {
		tb.Fatalf("err = %v, want an EINVALID *switchboard.Error", err)
	}
	got := slices.Sorted(maps.Keys(e.Fields))
	want := slices.Sorted(slices.Values(fields))
	if !slices.Equal(got, want) {
		tb.Fatalf("failing fields = %v, want %v (%v)", got, want, e)
	}
}

func newEvents(n int, data json.RawMessage) []*switchboard.Event {
	evts := make([]*switchboard.Event, n)
	types := []string{"call.started", "call.ended", "agent.presence_changed"}
	for i := range evts {
		evts[i] = &switchboard.Event{TenantID: tenant, Type: types[i%len(types)], AgentID: fmt.Sprintf("agent_%d", i%7), Data: data}
	}
	return evts
}

func TestClient_PublishBatch(t *testing.T) {
	t.Run("EveryEventOnce", func(t *testing.T) {
		c, env, reg := newClient(t)
		const n = 20_000
		evts := newEvents(n, json.RawMessage(`{"n":1}`))
		results, err := c.PublishBatch(context.Background(), evts)
		if err != nil {
			t.Fatalf("PublishBatch: %v", err)
		}
		if len(results) != n {
			t.Fatalf("%d results, want %d", len(results), n)
		}
		seqs := make(map[uint64]bool, n)
		for i, r := range results {
			if r.ID != evts[i].ID || r.Sequence == 0 || r.Duplicate {
				t.Fatalf("result %d = %+v for event %s", i, r, evts[i].ID)
			}
			seqs[r.Sequence] = true
		}
		if len(seqs) != n {
			t.Fatalf("%d distinct sequences, want %d", len(seqs), n)
		}
		if got := streamMsgs(t, env.JS); got != n {
			t.Fatalf("%d messages in %s, want %d", got, streams.Events, n)
		}
		if got := metric(t, reg, "switchboard_events_accepted_total", "duplicate", "false"); got != n {
			t.Errorf("accepted{duplicate=false} = %v, want %d", got, n)
		}

		// The ids are now set: the same batch again is all duplicates.
		again, err := c.PublishBatch(context.Background(), evts)
		if err != nil {
			t.Fatalf("PublishBatch again: %v", err)
		}
		for i, r := range again {
			if !r.Duplicate || r.Sequence != results[i].Sequence {
				t.Fatalf("republished result %d = %+v, want a duplicate of sequence %d", i, r, results[i].Sequence)
			}
		}
		if got := streamMsgs(t, env.JS); got != n {
			t.Fatalf("%d messages in %s after republishing, want %d", got, streams.Events, n)
		}
	})

	t.Run("InvalidEventSendsNothing", func(t *testing.T) {
		c, env, _ := newClient(t)
		evts := newEvents(5, json.RawMessage(`{}`))
		evts[1].Type = ""
		evts[3].Data = json.RawMessage(`"text"`)
		_, err := c.PublishBatch(context.Background(), evts)
		assertFields(t, err, []string{"[1].type", "[3].data"})
		if n := streamMsgs(t, env.JS); n != 0 {
			t.Fatalf("%d messages published, want 0", n)
		}
	})

	t.Run("RetriesWhenStalled", func(t *testing.T) {
		// Another publisher on the same JetStream context holds every
		// pending slot with publishes nobody acks, until they time out:
		// PublishMsgAsync refuses with ErrTooManyStalledMsgs meanwhile,
		// and a refused event must be sent again, not lost.
		env := testenv.StartJetStream(t)
		js := stalledJetStream(t, env, 500*time.Millisecond)
		c := producer.New(js)
		const n = 1000
		results, err := c.PublishBatch(context.Background(), newEvents(n, json.RawMessage(`{}`)))
		if err != nil {
			t.Fatalf("PublishBatch: %v", err)
		}
		for i, r := range results {
			if r.Sequence == 0 {
				t.Fatalf("result %d has no sequence: %+v", i, r)
			}
		}
		if got := streamMsgs(t, env.JS); got != n {
			t.Fatalf("%d messages in %s, want %d", got, streams.Events, n)
		}
	})

	t.Run("StalledBeyondAttempts", func(t *testing.T) {
		env := testenv.StartJetStream(t)
		js := stalledJetStream(t, env, time.Minute)
		reg := prometheus.NewRegistry()
		c := producer.New(js, producer.WithMetrics(producer.NewMetrics(reg)))
		c.AttemptTimeout = 50 * time.Millisecond
		c.RetryWait = time.Millisecond
		_, err := c.PublishBatch(context.Background(), newEvents(2, json.RawMessage(`{}`)), producer.WithAttempts(2))
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			t.Fatalf("err = %v, want ErrTooManyStalledMsgs", err)
		}
		if got := streamMsgs(t, env.JS); got != 0 {
			t.Fatalf("%d messages in %s, want 0", got, streams.Events)
		}
		if got := metric(t, reg, "switchboard_events_rejected_total", "reason", "unavailable"); got != 2 {
			t.Errorf("rejected{reason=unavailable} = %v, want 2", got)
		}
	})

	t.Run("JetStreamDown", func(t *testing.T) {
		c, env, _ := newClient(t)
		c.AttemptTimeout = 100 * time.Millisecond
		c.RetryWait = 10 * time.Millisecond
		env.Server.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.PublishBatch(ctx, newEvents(10, json.RawMessage(`{}`)))
		if err == nil {
			t.Fatal("PublishBatch succeeded with the server down")
		}
		t.Logf("PublishBatch: %v", err)
		if ctx.Err() != nil {
			t.Fatal("PublishBatch ran until the context expired instead of giving up after its attempts")
		}
	})

	t.Run("Canceled", func(t *testing.T) {
		c, env, _ := newClient(t)
		env.Server.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := c.PublishBatch(ctx, newEvents(10, json.RawMessage(`{}`)), producer.WithAttempts(1000))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
}

// stalledJetStream returns a JetStream context on env's server whose every
// async publish slot is taken by a publish that no one acknowledges until
// ackTimeout.
func stalledJetStream(tb testing.TB, env *testenv.JetStream, ackTimeout time.Duration) jetstream.JetStream {
	tb.Helper()
	const slots = 16
	nc, err := env.Server.Connect()
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	// A subscriber that never answers: without one, the server would
	// answer "no responders" at once and free the slot.
	if _, err := nc.Subscribe("blackhole.>", func(*nats.Msg) {}); err != nil {
		tb.Fatalf("subscribe: %v", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(slots), jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	for i := range slots {
		if _, err := js.PublishAsync(fmt.Sprintf("blackhole.%d", i), []byte("x")); err != nil {
			tb.Fatalf("fill slot %d: %v", i, err)
		}
	}
	if got := js.PublishAsyncPending(); got != slots {
		tb.Fatalf("%d publishes pending, want %d", got, slots)
	}
	return js
}

func BenchmarkClient_PublishBatch(b *testing.B) {
	const batchSize = 10_000
	c, _, _ := newClient(b)
	data := json.RawMessage(`{"payload":"` + strings.Repeat("x", 512-14) + `"}`)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := c.PublishBatch(context.Background(), newEvents(batchSize, data)); err != nil {
			b.Fatalf("PublishBatch: %v", err)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/time.Since(start).Seconds(), "events/s")
}
