package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/registry/api"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
)

// deadLetterJSON is a dead letter as a client reads it.
type deadLetterJSON struct {
	ID             string     `json:"id"`
	WebhookID      string     `json:"webhook_id"`
	EventID        string     `json:"event_id"`
	EventType      *string    `json:"event_type"`
	Reason         string     `json:"reason"`
	Attempts       int        `json:"attempts"`
	LastStatus     *int       `json:"last_status"`
	LastError      *string    `json:"last_error"`
	DeadLetteredAt time.Time  `json:"dead_lettered_at"`
	AcceptedAt     *time.Time `json:"accepted_at"`
}

type deadLetterListJSON struct {
	Data       []deadLetterJSON `json:"data"`
	HasMore    bool             `json:"has_more"`
	NextCursor string           `json:"next_cursor"`
}

type replayJSON struct {
	Replayed int      `json:"replayed"`
	NotFound []string `json:"not_found"`
	HasMore  bool     `json:"has_more"`
}

// startDeadLetterAPI starts an api whose Server reads the dead letters in
// its JetStream, and takes webhooks to the tests' receivers on 127.0.0.1
// (its guard lets every address through, as --allow-private-targets does).
func startDeadLetterAPI(tb testing.TB) *apitest.Env {
	tb.Helper()
	a := apitest.Start(tb, nil)
	srv := api.NewServer(a.DB, a.KV)
	srv.JS = a.JS.JS
	srv.Guard = netguard.New(true)
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(ts.Close)
	a.URL = ts.URL
	return a
}

// putDeadLetter stores a dead letter in SB_DEAD as the deliverer does
// (consumer/deadletter.go) and returns its id.
func putDeadLetter(tb testing.TB, js jetstream.JetStream, tenant, webhook, event, reason string, status int) string {
	tb.Helper()
	m := nats.NewMsg(streams.DeadSubject(tenant, webhook))
	m.Header.Set(streams.HeaderEventID, event)
	m.Header.Set(streams.HeaderTenant, tenant)
	m.Header.Set(streams.HeaderWebhookID, webhook)
	m.Header.Set(streams.HeaderAcceptedAt, strconv.FormatInt(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano(), 10))
	m.Header.Set(streams.HeaderReason, reason)
	m.Header.Set(streams.HeaderAttempts, "4")
	if status > 0 {
		m.Header.Set(streams.HeaderLastStatus, strconv.Itoa(status))
		m.Header.Set(streams.HeaderLastError, fmt.Sprintf("status %d", status))
	}
	m.Data = fmt.Appendf(nil, `{"id":%q,"type":"call.started","timestamp":"2026-01-02T03:04:05Z","data":{}}`, event)
	ack, err := js.PublishMsg(context.Background(), m)
	if err != nil {
		tb.Fatal(err)
	}
	return control.DeadLetterID(ack.Sequence)
}

func listDeadLetters(tb testing.TB, a *apitest.Env, key, query string) deadLetterListJSON {
	tb.Helper()
	status, b := a.Do(tb, http.MethodGet, "/v1/dead-letters"+query, key, "")
	if status != http.StatusOK {
		tb.Fatalf("GET /v1/dead-letters%s: %d %s", query, status, b)
	}
	return apitest.Decode[deadLetterListJSON](tb, b)
}

func ids(dls []deadLetterJSON) []string {
	out := make([]string, len(dls))
	for i, dl := range dls {
		out[i] = dl.ID
	}
	return out
}

func TestDeadLetters_List(t *testing.T) {
	a := startDeadLetterAPI(t)
	js := a.JS.JS
	otherKey := a.NewTenant(t, "other")
	other, err := a.DB.EnsureTenant(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	tenant := a.Tenant.ID

	var all []string
	all = append(all, putDeadLetter(t, js, tenant, "wh_a", "evt_1", "retries_exhausted", 500))
	theirs := putDeadLetter(t, js, other.ID, "wh_a", "evt_x", "retries_exhausted", 500)
	all = append(all, putDeadLetter(t, js, tenant, "wh_b", "evt_2", "gone", 410))
	all = append(all, putDeadLetter(t, js, tenant, "wh_a", "evt_3", "webhook_inactive", 0))
	all = append(all, putDeadLetter(t, js, tenant, "wh_a", "evt_4", "retries_exhausted", 503))

	t.Run("fields", func(t *testing.T) {
		got := listDeadLetters(t, a, a.Key, "")
		if !slices.Equal(ids(got.Data), all) || got.HasMore || got.NextCursor != "" {
			t.Fatalf("list = %v, has_more %v, want %v oldest first, no more", ids(got.Data), got.HasMore, all)
		}
		dl := got.Data[1]
		if dl.WebhookID != "wh_b" || dl.EventID != "evt_2" || dl.EventType == nil || *dl.EventType != "call.started" ||
			dl.Reason != "gone" || dl.Attempts != 4 || dl.LastStatus == nil || *dl.LastStatus != 410 ||
			dl.LastError == nil || *dl.LastError != "status 410" || dl.AcceptedAt == nil ||
			!dl.AcceptedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || time.Since(dl.DeadLetteredAt) > time.Minute {
			t.Errorf("dead letter = %+v", dl)
		}
		if inactive := got.Data[2]; inactive.LastStatus != nil || inactive.LastError != nil {
			t.Errorf("no attempt was made, yet %+v", inactive)
		}
	})
	t.Run("filters", func(t *testing.T) {
		if got := listDeadLetters(t, a, a.Key, "?webhook_id=wh_a"); !slices.Equal(ids(got.Data), []string{all[0], all[2], all[3]}) {
			t.Errorf("webhook_id=wh_a: %v", ids(got.Data))
		}
		if got := listDeadLetters(t, a, a.Key, "?reason=retries_exhausted"); !slices.Equal(ids(got.Data), []string{all[0], all[3]}) {
			t.Errorf("reason=retries_exhausted: %v", ids(got.Data))
		}
		if got := listDeadLetters(t, a, a.Key, "?webhook_id=wh_b&reason=retries_exhausted"); len(got.Data) != 0 || got.HasMore {
			t.Errorf("wh_b retries_exhausted: %+v", got)
		}
		every := listDeadLetters(t, a, a.Key, "").Data
		at := every[1].DeadLetteredAt.Format(time.RFC3339Nano)
		if got := listDeadLetters(t, a, a.Key, "?since="+url.QueryEscape(at)); !slices.Equal(ids(got.Data), all[1:]) {
			t.Errorf("since %s: %v", at, ids(got.Data))
		}
		if got := listDeadLetters(t, a, a.Key, "?until="+url.QueryEscape(at)); !slices.Equal(ids(got.Data), all[:2]) {
			t.Errorf("until %s: %v", at, ids(got.Data))
		}
	})
	t.Run("pages", func(t *testing.T) {
		var walked []string
		query := "?limit=2"
		for range 5 {
			page := listDeadLetters(t, a, a.Key, query)
			walked = append(walked, ids(page.Data)...)
			if !page.HasMore {
				break
			}
			query = "?limit=2&cursor=" + page.NextCursor
		}
		if !slices.Equal(walked, all) {
			t.Errorf("pages of 2 walked %v, want %v", walked, all)
		}
		// A cursor is a position, not a snapshot: a dead letter stored
		// since the first page shows on the next.
		first := listDeadLetters(t, a, a.Key, "?limit=3")
		late := putDeadLetter(t, js, tenant, "wh_a", "evt_5", "gone", 410)
		next := listDeadLetters(t, a, a.Key, "?cursor="+first.NextCursor)
		if !slices.Equal(ids(next.Data), []string{all[3], late}) {
			t.Errorf("after %s: %v", first.NextCursor, ids(next.Data))
		}
	})
	t.Run("tenant-isolation", func(t *testing.T) {
		got := listDeadLetters(t, a, otherKey, "")
		if !slices.Equal(ids(got.Data), []string{theirs}) {
			t.Errorf("the other tenant lists %v, want only %s", ids(got.Data), theirs)
		}
		if got := listDeadLetters(t, a, a.Key, "?webhook_id=wh_a"); slices.Contains(ids(got.Data), theirs) {
			t.Errorf("another tenant's dead letter on a webhook id they share: %v", ids(got.Data))
		}
		if got := listDeadLetters(t, a, otherKey, "?cursor="+all[0]); !slices.Equal(ids(got.Data), []string{theirs}) {
			t.Errorf("a cursor from another tenant's page: %v", ids(got.Data))
		}
	})
}

// A request reads at most MaxDeadLetterScan dead letters: a filter that
// selects none of them answers an empty page with a cursor, honestly
// saying there may be more, and the next page finds the match.
func TestDeadLetters_ListScanBound(t *testing.T) {
	a := startDeadLetterAPI(t)
	for i := range control.MaxDeadLetterScan + 10 {
		m := nats.NewMsg(streams.DeadSubject(a.Tenant.ID, "wh_a"))
		m.Header.Set(streams.HeaderEventID, fmt.Sprintf("evt_%d", i))
		m.Header.Set(streams.HeaderReason, "retries_exhausted")
		m.Data = []byte(`{"type":"call.started"}`)
		if _, err := a.JS.JS.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-a.JS.JS.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishes not acked")
	}
	gone := putDeadLetter(t, a.JS.JS, a.Tenant.ID, "wh_a", "evt_gone", "gone", 410)

	first := listDeadLetters(t, a, a.Key, "?reason=gone")
	if len(first.Data) != 0 || !first.HasMore || first.NextCursor == "" {
		t.Fatalf("first page: %d items, has_more %v, cursor %q: want empty, more, a cursor", len(first.Data), first.HasMore, first.NextCursor)
	}
	next := listDeadLetters(t, a, a.Key, "?reason=gone&cursor="+first.NextCursor)
	if !slices.Equal(ids(next.Data), []string{gone}) || next.HasMore {
		t.Errorf("next page: %v, has_more %v; want [%s] and no more", ids(next.Data), next.HasMore, gone)
	}
	// Without a filter a page ends at its limit.
	page := listDeadLetters(t, a, a.Key, "?limit=250")
	if len(page.Data) != 250 || !page.HasMore || page.NextCursor != page.Data[249].ID {
		t.Errorf("unfiltered page: %d items, has_more %v, cursor %s", len(page.Data), page.HasMore, page.NextCursor)
	}
}

func TestDeadLetters_ListValidation(t *testing.T) {
	a := startDeadLetterAPI(t)
	for _, c := range []struct {
		query  string
		fields []string
	}{
		{"?limit=0&cursor=abc&since=yesterday&until=2026-13-01T00:00:00Z&webhook_id=wh.a&reason=Gone!",
			[]string{"limit", "cursor", "since", "until", "webhook_id", "reason"}},
		{"?limit=251", []string{"limit"}},
		{"?cursor=dl_0", []string{"cursor"}},
		{"?cursor=dl_-1", []string{"cursor"}},
		{"?cursor=dl_007", []string{"cursor"}},
		{"?webhook_id=", []string{"webhook_id"}},
		{"?webhook_id=" + url.QueryEscape("*"), []string{"webhook_id"}},
		{"?webhook_id=" + url.QueryEscape(">"), []string{"webhook_id"}},
		{"?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", []string{"until"}},
	} {
		status, b := a.Do(t, http.MethodGet, "/v1/dead-letters"+c.query, a.Key, "")
		if status != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %s, want 422", c.query, status, b)
			continue
		}
		got := apitest.Decode[apitest.ErrorJSON](t, b)
		var named []string
		for f := range got.Errors {
			named = append(named, f)
		}
		slices.Sort(named)
		slices.Sort(c.fields)
		if !slices.Equal(named, c.fields) {
			t.Errorf("%s: errors on %v, want %v", c.query, named, c.fields)
		}
	}
	if status, _ := a.Do(t, http.MethodGet, "/v1/dead-letters", "", ""); status != http.StatusUnauthorized {
		t.Errorf("no key: %d, want 401", status)
	}
}

func TestDeadLetters_ReplayValidation(t *testing.T) {
	a := startDeadLetterAPI(t)
	many := make([]string, control.MaxReplay+1)
	for i := range many {
		many[i] = control.DeadLetterID(uint64(i + 1))
	}
	for _, c := range []struct {
		body   string
		fields []string
	}{
		{`{}`, []string{"ids"}},
		{`{"ids": []}`, []string{"ids"}},
		{apitest.JSONBody(t, map[string]any{"ids": many}), []string{"ids"}},
		{`{"ids": ["dl_1", "12", "dl_x"], "reason": "gone", "since": "2026-01-01T00:00:00Z"}`, []string{"ids", "reason", "since"}},
		{`{"ids": ["dl_1"], "webhook_id": "wh_a"}`, []string{"ids"}},
		{`{"webhook_id": "", "since": "soon", "until": "later", "reason": "GONE"}`, []string{"webhook_id", "since", "until", "reason"}},
		{`{"webhook_id": "wh.a.>"}`, []string{"webhook_id"}},
	} {
		status, b := a.Do(t, http.MethodPost, "/v1/dead-letters/replay", a.Key, c.body)
		if status != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %s, want 422", c.body, status, b)
			continue
		}
		got := apitest.Decode[apitest.ErrorJSON](t, b)
		var named []string
		for f := range got.Errors {
			named = append(named, f)
		}
		slices.Sort(named)
		slices.Sort(c.fields)
		if !slices.Equal(named, c.fields) {
			t.Errorf("%s: errors on %v, want %v", c.body, named, c.fields)
		}
	}
	for _, body := range []string{`{"ids": "dl_1"}`, `{"ids": [`, `[]`} {
		if status, b := a.Do(t, http.MethodPost, "/v1/dead-letters/replay", a.Key, body); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", body, status, b)
		}
	}
}

// fillDeadLetters stores n dead letters of webhook with bodies of about 1
// KiB, as the deliverer would.
func fillDeadLetters(tb testing.TB, js jetstream.JetStream, tenant, webhook string, n int) {
	tb.Helper()
	data := strings.Repeat("x", 1000)
	for i := range n {
		m := nats.NewMsg(streams.DeadSubject(tenant, webhook))
		m.Header.Set(streams.HeaderEventID, fmt.Sprintf("evt_%d", i))
		m.Header.Set(streams.HeaderTenant, tenant)
		m.Header.Set(streams.HeaderReason, "retries_exhausted")
		m.Header.Set(streams.HeaderAttempts, "4")
		m.Data = fmt.Appendf(nil, `{"id":"evt_%d","type":"call.started","data":{"x":%q}}`, i, data)
		if _, err := js.PublishMsgAsync(m); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		tb.Fatal("publishes not acked")
	}
}

// BenchmarkDeadLetters_ListPage reads a full page (250) of a tenant's
// 10,000 dead letters through the API.
func BenchmarkDeadLetters_ListPage(b *testing.B) {
	a := startDeadLetterAPI(b)
	fillDeadLetters(b, a.JS.JS, a.Tenant.ID, "wh_a", 10000)
	for b.Loop() {
		if page := listDeadLetters(b, a, a.Key, "?limit=250"); len(page.Data) != 250 {
			b.Fatalf("%d items", len(page.Data))
		}
	}
}

// BenchmarkDeadLetters_ReplayWebhook replays 1000 dead letters of one
// webhook, the most one request does.
func BenchmarkDeadLetters_ReplayWebhook(b *testing.B) {
	a := startDeadLetterAPI(b)
	wh := a.Create(b, a.Key, "/v1/webhooks", apitest.JSONBody(b, map[string]any{
		"name": "crm", "url": "https://example.com/h", "events": []string{"*"}}))
	for b.Loop() {
		b.StopTimer()
		fillDeadLetters(b, a.JS.JS, a.Tenant.ID, wh.ID, control.MaxReplay)
		b.StartTimer()
		if got, _ := replay(b, a, a.Key, apitest.JSONBody(b, map[string]any{"webhook_id": wh.ID}), http.StatusAccepted); got.Replayed != control.MaxReplay {
			b.Fatalf("replayed %d", got.Replayed)
		}
	}
}

// Inputs at the edges of what validation lets through answer 200 or 202,
// never a 5xx.
func TestDeadLetters_EdgeInputs(t *testing.T) {
	a := startDeadLetterAPI(t)
	putDeadLetter(t, a.JS.JS, a.Tenant.ID, "wh_a", "evt_1", "gone", 410)
	long := strings.Repeat("w", 128)
	for _, q := range []string{
		"?cursor=dl_18446744073709551615",
		"?cursor=dl_9223372036854775807",
		"?since=0001-01-01T00:00:00Z",
		"?since=9999-12-31T23:59:59.999999999Z",
		"?until=0001-01-01T00:00:00Z",
		"?since=2026-01-01T00:00:00%2B14:00&until=2026-01-01T00:00:00-12:00",
		"?webhook_id=" + long + "&reason=" + strings.Repeat("r", 64),
	} {
		if status, b := a.Do(t, http.MethodGet, "/v1/dead-letters"+q, a.Key, ""); status != http.StatusOK && status != http.StatusUnprocessableEntity {
			t.Errorf("GET %s: %d %s", q, status, b)
		}
	}
	for _, body := range []string{
		`{"ids": ["dl_18446744073709551615", "dl_9223372036854775807"]}`,
		`{"webhook_id": "` + long + `"}`,
		`{"webhook_id": "wh_a", "since": "9999-12-31T23:59:59Z"}`,
	} {
		if status, b := a.Do(t, http.MethodPost, "/v1/dead-letters/replay", a.Key, body); status >= 500 {
			t.Errorf("POST %s: %d %s", body, status, b)
		}
	}
}
