package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/apispec"
	"github.com/switchboard-hq/switchboard/internal/netguard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Settings of Server that the spec's cases need.
var (
	// limitRate makes s answer 429 to a key past rps requests per second
	// (--api-rate-limit).
	limitRate = func(s *Server, rps float64) { s.APIRateLimit = rps }
	// allowPrivateTargets lets s's test route reach receivers on 127.0.0.1
	// (--allow-private-targets).
	allowPrivateTargets = func(s *Server) { s.Guard = netguard.New(true) }
)

// Keys a specCase can send; the zero value is the default tenant's
// bootstrap key, an admin key.
const (
	keyAdmin = ""
	keyNone  = "none"  // no Authorization header
	keyBad   = "bad"   // a well-formed but unknown key
	keyOther = "other" // another tenant's key
	keyUser  = "user"  // a key of the default tenant without the admin flag
	keyNew   = "new"   // the key created by POST /v1/tenants/{tenant_id}/keys
)

// specCase is one exchange with the API. Path and body may hold {name}
// placeholders, filled from specEnv.vars.
type specCase struct {
	name    string
	method  string
	path    string
	key     string
	body    string
	invalid bool // the request departs from the spec on purpose
	want    int
	check   func(t *testing.T, e *specEnv, body map[string]any)
}

// specEnv is a registry API on a real SQLite file and a real embedded
// JetStream, with ingest, reached through a client whose every exchange is
// validated against docs/openapi.yaml.
type specEnv struct {
	url    string
	client *http.Client
	tr     *apispec.Transport
	keys   map[string]string
	vars   map[string]string
	js     *testenv.JetStream
	db     *store.DB
}

// TestOpenAPI drives every route of the spec, success and each error, and
// validates every request and response against it; it then fails for every
// operation and documented status that no case produced, and for every
// route served that the spec lacks (and back).
func TestOpenAPI(t *testing.T) {
	spec := apispec.Load(t)
	e := startSpecEnv(t, spec)

	t.Run("core", func(t *testing.T) { e.runAll(t, coreCases()) })
	t.Run("webhook-fields", func(t *testing.T) { e.runAll(t, webhookFieldCases()) })
	t.Run("agents", func(t *testing.T) { e.runAll(t, agentCases()) })
	t.Run("event-types", func(t *testing.T) {
		e.runAll(t, eventTypeCases())
		e.runAll(t, catalogueCases())
	})
	t.Run("tenancy", func(t *testing.T) {
		e.runAll(t, adminCases())
		t.Run("429/rate-limit", func(t *testing.T) { e.exerciseRateLimit(t) })
	})
	t.Run("keys", func(t *testing.T) {
		e.runAll(t, keyCases())
		t.Run("scopes", func(t *testing.T) { e.exerciseScopes(t, spec) })
	})
	t.Run("attempts", func(t *testing.T) { e.runAll(t, attemptCases()) })
	t.Run("dead-letters", func(t *testing.T) { e.runAll(t, deadLetterCases()) })
	t.Run("portal-links", func(t *testing.T) { e.runAll(t, portalLinkCases()) })
	t.Run("coverage", func(t *testing.T) {
		for _, m := range e.tr.Unexercised(http.StatusTooManyRequests) {
			t.Errorf("never exercised: %s", m)
		}
	})
	t.Run("routes", func(t *testing.T) {
		served := e.servedRoutes(t)
		documented := spec.Operations()
		for _, r := range served {
			if !slices.Contains(documented, r) {
				t.Errorf("served but not in docs/openapi.yaml: %s", r)
			}
		}
		for _, r := range documented {
			if !slices.Contains(served, r) {
				t.Errorf("in docs/openapi.yaml but not served: %s", r)
			}
		}
	})
}

// servedRoutes returns the ServeMux patterns of a Server like the one the
// cases run against.
func (e *specEnv) servedRoutes(t *testing.T) []string {
	t.Helper()
	h, ok := e.newServer(t).Handler().(*handler)
	if !ok {
		t.Fatal("Server.Handler is no longer a *handler: find its routes another way")
	}
	routes := make([]string, 0, len(h.routes))
	for pattern := range h.routes {
		routes = append(routes, pattern)
	}
	sort.Strings(routes)
	return routes
}

func startSpecEnv(t *testing.T, spec *apispec.Spec) *specEnv {
	t.Helper()
	ctx := context.Background()
	js := testenv.StartJetStream(t)
	db, err := store.Open(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tenant, admin, err := store.Bootstrap(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	user, _, err := db.CreateKey(ctx, tenant.ID, "user")
	if err != nil {
		t.Fatal(err)
	}
	other, err := db.EnsureTenant(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _, err := db.CreateKey(ctx, other.ID, "other")
	if err != nil {
		t.Fatal(err)
	}
	client, tr := apispec.NewClient(t, spec)
	e := &specEnv{
		client: client,
		tr:     tr,
		js:     js,
		db:     db,
		keys: map[string]string{
			keyAdmin: admin, keyUser: user, keyOther: otherKey, keyBad: "sk_" + strings.Repeat("0", 43),
		},
		vars: map[string]string{
			"recv":         testenv.StartReceiver(t, nil).URL,
			"fail_recv":    testenv.StartReceiver(t, func(*http.Request, []byte) int { return http.StatusInternalServerError }).URL,
			"other_tenant": other.ID,
		},
	}
	ts := httptest.NewServer(e.newServer(t).Handler())
	t.Cleanup(ts.Close)
	e.url = ts.URL
	// The other tenant's webhook, for the isolation cases.
	e.run(t, specCase{
		name: "setup", method: http.MethodPost, path: "/v1/webhooks", key: keyOther, want: http.StatusCreated,
		body:  webhookJSON(nil),
		check: save("other_wh", "id"),
	})
	return e
}

// newServer returns a Server on e's database and JetStream, with ingest.
func (e *specEnv) newServer(t *testing.T) *Server {
	t.Helper()
	kv, err := streams.OpenWebhooksKV(context.Background(), e.js.JS)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(e.db, kv)
	s.Ingest = &producer.Handler{Client: producer.New(e.js.JS), Catalogue: e.db}
	s.JS = e.js.JS
	if allowPrivateTargets != nil {
		allowPrivateTargets(s)
	}
	return s
}

func (e *specEnv) runAll(t *testing.T, cases []specCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { e.run(t, c) })
	}
}

// run makes c's exchange and checks it.
func (e *specEnv) run(t *testing.T, c specCase) {
	t.Helper()
	status, body, _ := e.send(t, e.url, c)
	// The ServeMux's own 404 would pass for the API's.
	if status == http.StatusNotFound && strings.Contains(string(body), `"No such route."`) {
		t.Fatalf("%s %s: the route is not served", c.method, e.fill(c.path))
	}
	if status != c.want {
		t.Fatalf("%s %s %s: %d %s, want %d", c.method, e.fill(c.path), e.fill(c.body), status, body, c.want)
	}
	if c.check == nil {
		return
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	c.check(t, e, v)
}

// send makes c's exchange with the API at base and returns the status, the
// body and the headers of the response, reporting every departure from the
// spec to t.
func (e *specEnv) send(t *testing.T, base string, c specCase) (int, []byte, http.Header) {
	t.Helper()
	var res apispec.Result
	ctx := apispec.WithResult(context.Background(), &res)
	if c.invalid {
		ctx = apispec.ExpectInvalid(ctx)
	}
	var rd io.Reader
	if c.body != "" {
		rd = strings.NewReader(e.fill(c.body))
	}
	req, err := http.NewRequestWithContext(ctx, c.method, base+e.fill(c.path), rd)
	if err != nil {
		t.Fatal(err)
	}
	if c.key != keyNone {
		req.Header.Set("Authorization", "Bearer "+e.keys[c.key])
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range res.Errs {
		t.Errorf("%s %s: %v", c.method, e.fill(c.path), err)
	}
	return resp.StatusCode, body, resp.Header
}

func (e *specEnv) fill(s string) string {
	pairs := make([]string, 0, 2*len(e.vars))
	for k, v := range e.vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// exerciseRateLimit sends requests with one key to a server limited to 1
// request per second until one is refused with 429.
func (e *specEnv) exerciseRateLimit(t *testing.T) {
	if limitRate == nil {
		t.Fatal("no rate limit to exercise 429 with: set limitRate to the Server's --api-rate-limit setting")
	}
	s := e.newServer(t)
	limitRate(s, 1)
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for range 20 {
		status, body, header := e.send(t, ts.URL, specCase{method: http.MethodGet, path: "/v1/event-types"})
		switch status {
		case http.StatusOK:
			continue
		case http.StatusTooManyRequests:
			if header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After: %s", body)
			}
			return
		default:
			t.Fatalf("GET /v1/event-types: %d %s", status, body)
		}
	}
	t.Fatal("20 requests at once to a server allowing 1 per second were all served")
}

// save stores the string at key of a response into e.vars[name].
func save(name, key string) func(*testing.T, *specEnv, map[string]any) {
	return func(t *testing.T, e *specEnv, v map[string]any) {
		s, ok := v[key].(string)
		if !ok || s == "" {
			t.Fatalf("no %s in %v", key, v)
		}
		e.vars[name] = s
	}
}

// expect checks that the response holds want at each key (compared as
// JSON), then runs more.
func expect(want map[string]any, more ...func(*testing.T, *specEnv, map[string]any)) func(*testing.T, *specEnv, map[string]any) {
	return func(t *testing.T, e *specEnv, v map[string]any) {
		for k, w := range want {
			wb := []byte(e.fill(jsonOf(w)))
			gb, _ := json.Marshal(v[k])
			if _, ok := v[k]; !ok || string(wb) != string(gb) {
				t.Errorf("%s = %s, want %s (in %v)", k, gb, wb, v)
			}
		}
		for _, f := range more {
			f(t, e, v)
		}
	}
}

// errorsOn checks that a 422 names exactly the given fields; a field may be
// named by its parts ("auth.password" for "auth").
func errorsOn(fields ...string) func(*testing.T, *specEnv, map[string]any) {
	under := func(got, field string) bool { return got == field || strings.HasPrefix(got, field+".") }
	return func(t *testing.T, _ *specEnv, v map[string]any) {
		errs, _ := v["errors"].(map[string]any)
		for got := range errs {
			if !slices.ContainsFunc(fields, func(f string) bool { return under(got, f) }) {
				t.Errorf("errors on %s, want only %v: %v", got, fields, v)
			}
		}
		for _, f := range fields {
			if !slices.ContainsFunc(slices.Collect(maps.Keys(errs)), func(got string) bool { return under(got, f) }) {
				t.Errorf("no error on %s: %v", f, v)
			}
		}
	}
}

// absent checks that the response has none of keys.
func absent(keys ...string) func(*testing.T, *specEnv, map[string]any) {
	return func(t *testing.T, _ *specEnv, v map[string]any) {
		for _, k := range keys {
			if _, ok := v[k]; ok {
				t.Errorf("%s is shown: %v", k, v)
			}
		}
	}
}

// present checks that the response has every key.
func present(keys ...string) func(*testing.T, *specEnv, map[string]any) {
	return func(t *testing.T, _ *specEnv, v map[string]any) {
		for _, k := range keys {
			if _, ok := v[k]; !ok {
				t.Errorf("no %s: %v", k, v)
			}
		}
	}
}

// listLen checks the number of items in a list response.
func listLen(n int) func(*testing.T, *specEnv, map[string]any) {
	return func(t *testing.T, _ *specEnv, v map[string]any) {
		if data, _ := v["data"].([]any); len(data) != n {
			t.Errorf("%d items, want %d: %v", len(data), n, v)
		}
	}
}

var nameSeq int

// webhookJSON returns a valid create body, with a fresh name, changed by
// set: a nil value removes the field.
func webhookJSON(set map[string]any) string {
	nameSeq++
	v := map[string]any{
		"name":   fmt.Sprintf("hook-%d", nameSeq),
		"url":    "{recv}",
		"events": []string{"call.started"},
	}
	for k, x := range set {
		if x == nil {
			delete(v, k)
			continue
		}
		v[k] = x
	}
	return jsonOf(v)
}

// jsonOf marshals v, which holds only JSON values.
func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
