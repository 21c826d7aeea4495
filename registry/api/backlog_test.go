package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// backlogJSON is GET /v1/backlog's answer as a client reads it.
type backlogJSON struct {
	ReadAt       time.Time `json:"read_at"`
	TenantID     string    `json:"tenant_id"`
	Limit        int       `json:"limit"`
	TotalPending int64     `json:"total_pending"`
	Webhooks     int       `json:"webhooks"`
	Data         []struct {
		TenantID        string    `json:"tenant_id"`
		WebhookID       string    `json:"webhook_id"`
		Name            string    `json:"name"`
		Status          string    `json:"status"`
		Pending         int64     `json:"pending"`
		OldestMatchedAt time.Time `json:"oldest_matched_at"`
	} `json:"data"`
}

// backlog reads GET /v1/backlog?query with key and fails unless 200.
func backlog(tb testing.TB, a *apitest.Env, key, query string) backlogJSON {
	tb.Helper()
	status, b := a.Do(tb, http.MethodGet, "/v1/backlog?"+query, key, "")
	if status != http.StatusOK {
		tb.Fatalf("GET /v1/backlog?%s: %d %s", query, status, b)
	}
	return apitest.Decode[backlogJSON](tb, b)
}

// pendingOf maps the listed webhooks to their pending counts.
func (b backlogJSON) pendingOf() map[string]int64 {
	out := map[string]int64{}
	for _, w := range b.Data {
		out[w.WebhookID] = w.Pending
	}
	return out
}

// The backlog counts what the audit would call neither delivered,
// dead-lettered nor webhook_deleted: a final last attempt settles a
// delivery, an earlier one arriving late or a record ingested twice
// changes nothing, a replay's attempt owes it again, an attempt ingested
// before its matched record settles it all the same, a deleted webhook
// leaves the list, pruning the ledger takes its rows out. An admin key sees
// both tenants; a manage key its own only.
func TestBacklog_CountsWhatIsNotSettled(t *testing.T) {
	ctx := context.Background()
	a := apitest.Start(t, nil)
	keyB := a.NewTenant(t, "tenant-b")
	tenantB, err := a.DB.FindTenantByName(ctx, "tenant-b")
	if err != nil {
		t.Fatal(err)
	}
	a1 := a.Create(t, a.Key, "/v1/webhooks", `{"name": "a1", "url": "https://a1.example.com/h", "events": ["*"]}`).ID
	a2 := a.Create(t, a.Key, "/v1/webhooks", `{"name": "a2", "url": "https://a2.example.com/h", "events": ["*"]}`).ID
	b1 := a.Create(t, keyB, "/v1/webhooks", `{"name": "b1", "url": "https://b1.example.com/h", "events": ["*"]}`).ID

	start := time.Now().Add(-time.Hour).UTC()
	var matched []store.Matched
	owe := func(tenant, webhook string, n int) {
		for i := range n {
			matched = append(matched, store.Matched{TenantID: tenant, EventID: fmt.Sprintf("evt_%s_%d", webhook, i),
				EventSeq: uint64(len(matched) + 1), EventType: "call.started", WebhookIDs: []string{webhook},
				At: start.Add(time.Duration(len(matched)) * time.Second)})
		}
	}
	owe(a.Tenant.ID, a1, 5)
	owe(a.Tenant.ID, a2, 3)
	owe(tenantB.ID, b1, 2)
	// Ingested twice, as after a crash between commit and ack.
	for range 2 {
		if err := a.DB.RecordMatched(ctx, matched); err != nil {
			t.Fatal(err)
		}
	}
	want := func(t *testing.T, got backlogJSON, total int64, pending map[string]int64) {
		t.Helper()
		if got.TotalPending != total || fmt.Sprint(got.pendingOf()) != fmt.Sprint(pending) {
			t.Errorf("backlog: total %d %v, want %d %v", got.TotalPending, got.pendingOf(), total, pending)
		}
		for i := 1; i < len(got.Data); i++ {
			if got.Data[i].Pending > got.Data[i-1].Pending {
				t.Errorf("not largest first: %+v", got.Data)
			}
		}
	}
	got := backlog(t, a, a.Key, "")
	want(t, got, 10, map[string]int64{a1: 5, a2: 3, b1: 2})
	if got.Data[0].WebhookID != a1 || got.Data[0].Name != "a1" || got.Data[0].Status != "active" || !got.Data[0].OldestMatchedAt.Equal(start) {
		t.Errorf("first row %+v, want a1, active, oldest %s", got.Data[0], start)
	}
	if time.Since(got.ReadAt) > time.Minute || got.Webhooks != 3 {
		t.Errorf("read_at %s, webhooks %d", got.ReadAt, got.Webhooks)
	}

	attempt := func(id, webhook, event string, outcome switchboard.AttemptOutcome, at time.Time) switchboard.Attempt {
		tenant := a.Tenant.ID
		if webhook == b1 {
			tenant = tenantB.ID
		}
		return switchboard.Attempt{ID: id, TenantID: tenant, WebhookID: webhook, EventID: event, EventType: "call.started",
			Number: 1, At: at, Outcome: outcome}
	}
	record := func(attempts ...switchboard.Attempt) {
		t.Helper()
		if _, err := a.DB.RecordAttempts(ctx, attempts, 0); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	e := func(webhook string, i int) string { return fmt.Sprintf("evt_%s_%d", webhook, i) }
	record(attempt("att_01", a1, e(a1, 0), switchboard.AttemptRetrying, now))
	want(t, backlog(t, a, a.Key, ""), 10, map[string]int64{a1: 5, a2: 3, b1: 2})
	delivered := attempt("att_02", a1, e(a1, 0), switchboard.AttemptDelivered, now.Add(time.Second))
	record(delivered)
	record(delivered) // a duplicate record changes nothing
	// An earlier attempt ingested late is not the last.
	record(attempt("att_00", a1, e(a1, 0), switchboard.AttemptRetrying, now.Add(-time.Second)))
	record(attempt("att_03", a1, e(a1, 1), switchboard.AttemptDeadLettered, now))
	got = backlog(t, a, a.Key, "")
	want(t, got, 8, map[string]int64{a1: 3, a2: 3, b1: 2})
	if !got.Data[0].OldestMatchedAt.After(start) && got.Data[0].WebhookID == a1 {
		t.Errorf("a1's oldest is still its settled first: %+v", got.Data[0])
	}
	// A replay of the dead letter owes the delivery again, until its own
	// final attempt.
	record(attempt("att_04", a1, e(a1, 1), switchboard.AttemptRetrying, now.Add(time.Minute)))
	want(t, backlog(t, a, a.Key, ""), 9, map[string]int64{a1: 4, a2: 3, b1: 2})
	record(attempt("att_05", a1, e(a1, 1), switchboard.AttemptDelivered, now.Add(2*time.Minute)))
	want(t, backlog(t, a, a.Key, ""), 8, map[string]int64{a1: 3, a2: 3, b1: 2})

	// An attempt ingested before its matched record.
	record(attempt("att_06", b1, "evt_late", switchboard.AttemptDelivered, now))
	if err := a.DB.RecordMatched(ctx, []store.Matched{{TenantID: tenantB.ID, EventID: "evt_late", EventSeq: 99,
		EventType: "call.started", WebhookIDs: []string{b1}, At: now}}); err != nil {
		t.Fatal(err)
	}
	want(t, backlog(t, a, a.Key, ""), 8, map[string]int64{a1: 3, a2: 3, b1: 2})

	// Scopes: a manage key sees its own tenant; an admin filters.
	want(t, backlog(t, a, keyB, ""), 2, map[string]int64{b1: 2})
	want(t, backlog(t, a, keyB, "tenant_id="+tenantB.ID), 2, map[string]int64{b1: 2})
	if status, b := a.Do(t, http.MethodGet, "/v1/backlog?tenant_id="+a.Tenant.ID, keyB, ""); status != http.StatusForbidden {
		t.Errorf("B naming A: %d %s, want 403", status, b)
	}
	want(t, backlog(t, a, a.Key, "tenant_id="+tenantB.ID), 2, map[string]int64{b1: 2})
	if got := backlog(t, a, a.Key, "limit=1"); len(got.Data) != 1 || got.TotalPending != 8 || got.Webhooks != 3 {
		t.Errorf("limit=1: %+v", got)
	}
	if status, b := a.Do(t, http.MethodGet, "/v1/backlog?limit=0", a.Key, ""); status != http.StatusUnprocessableEntity {
		t.Errorf("limit=0: %d %s, want 422", status, b)
	}

	// A deleted webhook has no backlog (the audit's webhook_deleted).
	if status, b := a.Do(t, http.MethodDelete, "/v1/webhooks/"+a2, a.Key, ""); status != http.StatusNoContent {
		t.Fatalf("delete a2: %d %s", status, b)
	}
	want(t, backlog(t, a, a.Key, ""), 5, map[string]int64{a1: 3, b1: 2})

	// Pruning the ledger takes its rows out of the counts.
	if _, err := a.DB.PruneMatched(ctx, start.Add(4*time.Second)); err != nil { // a1's first four
		t.Fatal(err)
	}
	want(t, backlog(t, a, a.Key, ""), 3, map[string]int64{a1: 1, b1: 2})
}

// The metric's collector reports the top webhooks only, and a webhook
// that leaves the top leaves the metric.
func TestBacklogCollector_ReportsTheTopOnly(t *testing.T) {
	ctx := context.Background()
	a := apitest.Start(t, nil)
	var ids []string
	var matched []store.Matched
	for i := range 4 {
		id := a.Create(t, a.Key, "/v1/webhooks", fmt.Sprintf(`{"name": "w%d", "url": "https://w%d.example.com/h", "events": ["*"]}`, i, i)).ID
		ids = append(ids, id)
		for j := range i + 1 {
			matched = append(matched, store.Matched{TenantID: a.Tenant.ID, EventID: fmt.Sprintf("evt_%d_%d", i, j),
				EventSeq: uint64(len(matched) + 1), EventType: "call.started", WebhookIDs: []string{id}, At: time.Now()})
		}
	}
	if err := a.DB.RecordMatched(ctx, matched); err != nil {
		t.Fatal(err)
	}
	c := control.NewBacklogCollector(a.DB, 2, nil)
	series := func() map[string]float64 {
		t.Helper()
		if err := c.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		return collectGauge(t, c, "webhook_id")
	}
	if got := series(); fmt.Sprint(got) != fmt.Sprint(map[string]float64{ids[3]: 4, ids[2]: 3}) {
		t.Errorf("top 2: %v, want w3 4, w2 3", got)
	}
	// w3 delivers all but one: w2 and w1 lead, w3's series goes.
	var attempts []switchboard.Attempt
	for j := range 3 {
		attempts = append(attempts, switchboard.Attempt{ID: fmt.Sprintf("att_%d", j), TenantID: a.Tenant.ID, WebhookID: ids[3],
			EventID: fmt.Sprintf("evt_3_%d", j), Number: 1, At: time.Now(), Outcome: switchboard.AttemptDelivered})
	}
	if _, err := a.DB.RecordAttempts(ctx, attempts, 0); err != nil {
		t.Fatal(err)
	}
	if got := series(); fmt.Sprint(got) != fmt.Sprint(map[string]float64{ids[2]: 3, ids[1]: 2}) {
		t.Errorf("top 2 after w3 delivered: %v, want w2 3, w1 2", got)
	}
}

// collectGauge gathers c's series by the value of label.
func collectGauge(t *testing.T, c prometheus.Collector, label string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}
