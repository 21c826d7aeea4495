// Package apispec holds the API to docs/openapi.yaml: a RoundTripper that
// validates every request a test client sends and every response it gets
// against the spec, and records which operation answered with which status,
// so that a test can fail on any part of the spec it never exercised. It is
// imported by tests only.
package apispec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Path is where the spec lives, found from this file so that tests of any
// package can load it.
func Path() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "openapi.yaml")
}

// Spec is the loaded, validated docs/openapi.yaml.
type Spec struct {
	Doc    *openapi3.T
	router routers.Router
}

// Load reads and validates the spec, failing tb when it is not a valid
// OpenAPI document.
func Load(tb testing.TB) *Spec {
	tb.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(Path())
	if err != nil {
		tb.Fatalf("load %s: %v", Path(), err)
	}
	// The servers name the default address; tests listen elsewhere, and
	// without servers the router matches paths on any host.
	doc.Servers = nil
	// NewRouter validates the document, with the patterns compiled.
	router, err := legacy.NewRouter(doc, openapi3.EnableSchemaPatternValidation())
	if err != nil {
		tb.Fatalf("%s: %v", Path(), err)
	}
	checkPatterns(tb, doc)
	return &Spec{Doc: doc, router: router}
}

// checkPatterns fails tb for every schema pattern that Go's regexp cannot
// compile: kin-openapi then quietly validates that schema with its OpenAPI
// 3.0 validator, which ignores const, if/then and unevaluatedProperties.
func checkPatterns(tb testing.TB, doc *openapi3.T) {
	tb.Helper()
	check := func(where string, ref *openapi3.SchemaRef) {
		_ = ref.WalkSubtree(func(_ string, s *openapi3.SchemaRef) error {
			if s.Value == nil || s.Value.Pattern == "" {
				return nil
			}
			if _, err := regexp.Compile(s.Value.Pattern); err != nil {
				tb.Errorf("%s: pattern %q: %v", where, s.Value.Pattern, err)
			}
			return nil
		})
	}
	for name, ref := range doc.Components.Schemas {
		check("components.schemas."+name, ref)
	}
	for name, ref := range doc.Components.Parameters {
		if ref.Value != nil && ref.Value.Schema != nil {
			check("components.parameters."+name, ref.Value.Schema)
		}
	}
}

// Operations returns every operation of the spec as a ServeMux pattern,
// "METHOD /path/{param}", sorted.
func (s *Spec) Operations() []string {
	var ops []string
	for path, item := range s.Doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	sort.Strings(ops)
	return ops
}

// Result is what the Transport found of one exchange.
type Result struct {
	Operation string // "METHOD /path/{param}"; "" when the spec has none for the request
	Status    int
	// RequestErr says how the request departs from the spec; nil when it
	// conforms.
	RequestErr error
	// Errs are the findings that fail a test: the request matches no
	// operation, the response departs from the spec, or the request's
	// conformance is not what the test declared (see ExpectInvalid).
	Errs []error
}

type resultKey struct{}

type invalidKey struct{}

// WithResult returns a context whose requests' Result the Transport writes
// into res, so that the caller reports the findings itself (e.g. to a
// subtest). Requests sent without one are reported to the Transport's TB.
func WithResult(ctx context.Context, res *Result) context.Context {
	return context.WithValue(ctx, resultKey{}, res)
}

// ExpectInvalid marks the requests sent with the returned context as
// departing from the spec on purpose (a bad field, no API key): the
// Transport then requires the spec to reject the request, so that a rule the
// server enforces cannot be missing from the spec.
func ExpectInvalid(ctx context.Context) context.Context {
	return context.WithValue(ctx, invalidKey{}, true)
}

// Transport validates every exchange against Spec; see Result for what it
// checks. It records the statuses each operation answered with.
type Transport struct {
	Spec *Spec
	Base http.RoundTripper // nil: http.DefaultTransport
	TB   testing.TB        // receives the findings of requests sent without WithResult

	mu   sync.Mutex
	seen map[string]map[int]bool
}

var _ http.RoundTripper = (*Transport)(nil)

// NewClient returns an http.Client whose every exchange goes through a new
// Transport on spec.
func NewClient(tb testing.TB, spec *Spec) (*http.Client, *Transport) {
	t := &Transport{Spec: spec, TB: tb}
	return &http.Client{Transport: t}, t
}

// RoundTrip sends req through Base and validates the exchange.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, ok := req.Context().Value(resultKey{}).(*Result)
	if !ok {
		res = &Result{}
		defer func() {
			for _, err := range res.Errs {
				t.TB.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
			}
		}()
	}
	*res = Result{}
	wantInvalid, _ := req.Context().Value(invalidKey{}).(bool)

	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("apispec: read request body: %w", err)
		}
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}

	input, err := t.validateRequest(req, reqBody, res)
	if err != nil {
		res.Errs = append(res.Errs, err)
	}
	if input != nil {
		switch {
		case res.RequestErr != nil && !wantInvalid:
			res.Errs = append(res.Errs, fmt.Errorf("the request departs from the spec: %w", res.RequestErr))
		case res.RequestErr == nil && wantInvalid:
			res.Errs = append(res.Errs, errors.New("the spec accepts a request the test sends as invalid: a rule of the server is missing from the spec"))
		}
	}

	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("apispec: read response body: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	res.Status = resp.StatusCode
	if input == nil {
		return resp, nil
	}
	t.record(res.Operation, resp.StatusCode)
	if res.RequestErr != nil && resp.StatusCode/100 == 2 {
		res.Errs = append(res.Errs, fmt.Errorf("the server accepted (%d) a request the spec rejects: %v", resp.StatusCode, res.RequestErr))
	}
	if err := t.validateResponse(req.Context(), input, resp, respBody); err != nil {
		res.Errs = append(res.Errs, err)
	}
	return resp, nil
}

// validateRequest finds req's operation and validates req against it,
// setting res.Operation and res.RequestErr. It returns nil and an error when
// the spec has no operation for req.
func (t *Transport) validateRequest(req *http.Request, body []byte, res *Result) (*openapi3filter.RequestValidationInput, error) {
	route, params, err := t.Spec.router.FindRoute(req)
	if err != nil {
		return nil, fmt.Errorf("no operation of the spec serves it: %w", err)
	}
	res.Operation = route.Method + " " + route.Path
	// Validate a copy: validation may rewrite the body it reads.
	clone := req.Clone(req.Context())
	clone.Body = io.NopCloser(bytes.NewReader(body))
	input := &openapi3filter.RequestValidationInput{
		Request:    clone,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			MultiError:          true,
			SkipSettingDefaults: true,
			AuthenticationFunc:  bearerToken,
		},
	}
	res.RequestErr = openapi3filter.ValidateRequest(req.Context(), input)
	return input, nil
}

// bearerToken accepts a request with an `Authorization: Bearer <token>`
// header, the only security scheme of the spec. Whether the key is known is
// the server's to say.
func bearerToken(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if s := in.SecurityScheme; s == nil || s.Type != "http" || !strings.EqualFold(s.Scheme, "bearer") {
		return fmt.Errorf("unsupported security scheme %s", in.SecuritySchemeName)
	}
	scheme, token, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errors.New("no Authorization: Bearer header")
	}
	return nil
}

// validateResponse validates resp against the operation of input.
func (t *Transport) validateResponse(ctx context.Context, input *openapi3filter.RequestValidationInput, resp *http.Response, body []byte) error {
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true},
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("response %d %s departs from the spec: %w", resp.StatusCode, body, err)
	}
	return nil
}

func (t *Transport) record(op string, status int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[string]map[int]bool{}
	}
	if t.seen[op] == nil {
		t.seen[op] = map[int]bool{}
	}
	t.seen[op][status] = true
}

// Unexercised returns, sorted, "METHOD /path STATUS" for every response of
// the spec that no exchange through t produced, and "METHOD /path" for every
// operation never called. A status in anyOperation (e.g. 429, which every
// route documents) counts as exercised everywhere once any operation
// answered with it.
func (t *Transport) Unexercised(anyOperation ...int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	global := map[int]bool{}
	for _, statuses := range t.seen {
		for s := range statuses {
			global[s] = true
		}
	}
	var missing []string
	for path, item := range t.Spec.Doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if len(t.seen[name]) == 0 {
				missing = append(missing, name)
			}
			for code := range op.Responses.Map() {
				status, err := strconv.Atoi(code)
				if err != nil {
					missing = append(missing, fmt.Sprintf("%s %s (not a status code: use numbers)", name, code))
					continue
				}
				if t.seen[name][status] || slices.Contains(anyOperation, status) && global[status] {
					continue
				}
				missing = append(missing, fmt.Sprintf("%s %d", name, status))
			}
		}
	}
	sort.Strings(missing)
	return missing
}
