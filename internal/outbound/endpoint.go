package outbound

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/signer"
)

// UserAgent is the User-Agent of every webhook request (a webhook's custom
// headers may replace it).
const UserAgent = "Switchboard-Webhooks/1.0"

// Errors of NewEndpoint and Endpoint.NewRequest, besides signer.ErrInvalidSecret.
// Their texts keep the "signer:" they had before the request building
// moved here: they reach dead letters and attempt records (webhook_invalid,
// malformed), which clients read.
var (
	// ErrInvalidWebhook: a webhook cannot be sent to as it stands: its URL,
	// method, auth or properties are unusable.
	ErrInvalidWebhook = errors.New("signer: webhook cannot be sent to")
	// ErrInvalidBody: a body that must carry properties is not a JSON object.
	ErrInvalidBody = errors.New("signer: body is not a JSON object")
)

// Canonical header keys, and the values every request shares (never
// modified): setting canonical keys directly spares http.Header.Set a
// canonical copy of each lowercase key.
var (
	headerWebhookID        = http.CanonicalHeaderKey(signer.HeaderID)
	headerWebhookTimestamp = http.CanonicalHeaderKey(signer.HeaderTimestamp)
	headerWebhookSignature = http.CanonicalHeaderKey(signer.HeaderSignature)
	contentTypeJSON        = []string{"application/json"}
	userAgent              = []string{UserAgent}
)

// Endpoint is a webhook made ready to send to: its URL with any query-string
// token, its fixed headers and its keys, all worked out once, so that each
// request costs only its signatures. Every request for a webhook is built
// by an Endpoint, the deliverer's and the registry's test sends alike, so a
// test send is what a delivery is, byte for byte.
//
// An Endpoint is immutable and safe for concurrent use. It reflects the
// webhook as it was when made; make another when the webhook changes.
type Endpoint struct {
	method     string
	url        string         // with the query-string token, if any
	header     http.Header    // every header but the three signature ones; shared, never modified
	signer     *signer.Signer // the current secret, then the retiring ones with their expiry
	properties []byte         // a JSON object, or nil for none
}

// NewEndpoint returns the Endpoint of wh. Errors wrap signer.ErrInvalidSecret (a
// current or retiring secret that cannot sign) or ErrInvalidWebhook: a URL
// that is not absolute http(s), a method other than POST, PUT or PATCH, an
// unknown auth type or one lacking its credentials, properties that are not
// a JSON object. The registry refuses all of these; a webhook that has them
// anyway (an old or hand-written KV value) must not be sent half right.
func NewEndpoint(wh *switchboard.Webhook) (*Endpoint, error) {
	u, err := url.Parse(wh.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: url: %v", ErrInvalidWebhook, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: url %q is not an absolute http(s) URL", ErrInvalidWebhook, wh.URL)
	}
	method := wh.HTTPMethod()
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil, fmt.Errorf("%w: method %q is not POST, PUT or PATCH", ErrInvalidWebhook, method)
	}
	s, err := signer.New(wh.Secret)
	if err != nil {
		return nil, fmt.Errorf("current secret: %w", err)
	}
	for i, rs := range wh.RetiringSecrets {
		if rs.ExpiresAt.IsZero() { // no expiry given: not signing, as in SigningSecrets
			continue
		}
		if s, err = s.WithRetiring(rs.Secret, rs.ExpiresAt); err != nil {
			return nil, fmt.Errorf("retiring secret %d: %w", i, err)
		}
	}
	e := &Endpoint{method: method, signer: s}
	if e.properties, err = properties(wh.Properties); err != nil {
		return nil, err
	}

	// Later headers win, so the order says who may override whom: custom
	// headers may replace the User-Agent; nothing replaces the auth header;
	// nothing replaces Content-Type and the signature (set per request).
	e.header = make(http.Header, len(wh.Headers)+3)
	e.header["User-Agent"] = userAgent
	for k, v := range wh.Headers {
		e.header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	if err := setAuth(e.header, u, wh.Auth); err != nil {
		return nil, err
	}
	e.header["Content-Type"] = contentTypeJSON
	e.url = u.String()
	return e, nil
}

// setAuth sets what auth sends: a header in h, or a parameter of u's query.
func setAuth(h http.Header, u *url.URL, auth switchboard.Auth) error {
	needToken := func() error {
		if auth.Token == "" {
			return fmt.Errorf("%w: auth %s needs a token", ErrInvalidWebhook, auth.Type)
		}
		return nil
	}
	switch auth.Type {
	case "", switchboard.AuthNone:
	case switchboard.AuthBasic:
		if auth.Username == "" {
			return fmt.Errorf("%w: auth basic needs a username", ErrInvalidWebhook)
		}
		h["Authorization"] = []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(auth.Username+":"+auth.Password))}
	case switchboard.AuthBearer:
		if err := needToken(); err != nil {
			return err
		}
		h["Authorization"] = []string{"Bearer " + auth.Token}
	case switchboard.AuthAuthHeader:
		if err := needToken(); err != nil {
			return err
		}
		h["Authorization"] = []string{auth.Token}
	case switchboard.AuthHeader:
		if err := needToken(); err != nil {
			return err
		}
		h[http.CanonicalHeaderKey(cmp.Or(auth.Name, switchboard.DefaultAuthHeader))] = []string{auth.Token}
	case switchboard.AuthQueryString:
		if err := needToken(); err != nil {
			return err
		}
		// Appended, not re-encoded through url.Values, so that the URL's
		// own parameters keep their order and spelling.
		param := url.QueryEscape(cmp.Or(auth.Name, switchboard.DefaultAuthQueryParam)) + "=" + url.QueryEscape(auth.Token)
		if u.RawQuery == "" {
			u.RawQuery = param
		} else {
			u.RawQuery += "&" + param
		}
	default:
		return fmt.Errorf("%w: unknown auth type %q", ErrInvalidWebhook, auth.Type)
	}
	return nil
}

// properties returns a webhook's properties trimmed, nil for none (absent
// or null), or an ErrInvalidWebhook error when they are not a JSON object.
func properties(raw json.RawMessage) ([]byte, error) {
	p := bytes.TrimSpace(raw)
	if len(p) == 0 || string(p) == "null" {
		return nil, nil
	}
	if p[0] != '{' || !json.Valid(p) {
		return nil, fmt.Errorf("%w: properties are not a JSON object", ErrInvalidWebhook)
	}
	return p, nil
}

// NewRequest returns the request that delivers body, a rendered payload
// (switchboard.Event.AppendPayload without properties), as message msgID
// (the event id, the same on every retry), signed at now with every secret
// valid then. The webhook's properties are added to body as its last
// field; without properties, body is sent as it is, uncopied.
//
// The request has the webhook's method and URL (with any query-string
// token), the User-Agent, the custom headers, the auth header,
// Content-Type: application/json and the three Standard Webhooks headers.
// Errors: ErrInvalidBody when properties must be added to a body that is
// not a JSON object.
func (e *Endpoint) NewRequest(ctx context.Context, msgID string, body []byte, now time.Time) (*http.Request, error) {
	if e.properties != nil {
		var err error
		if body, err = withProperties(body, e.properties); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, e.method, e.url, bytes.NewReader(body))
	if err != nil { // NewEndpoint parsed the URL and checked the method
		return nil, fmt.Errorf("%w: %v", ErrInvalidWebhook, err)
	}
	h := make(http.Header, len(e.header)+3)
	maps.Copy(h, e.header)
	h[headerWebhookID] = []string{msgID}
	h[headerWebhookTimestamp] = []string{strconv.FormatInt(now.Unix(), 10)}
	h[headerWebhookSignature] = []string{e.signer.Sign(msgID, now, body)}
	req.Header = h
	return req, nil
}

// NewRequest is NewEndpoint(wh) followed by its NewRequest, for a one-off
// request such as a test send.
func NewRequest(ctx context.Context, wh *switchboard.Webhook, msgID string, body []byte, now time.Time) (*http.Request, error) {
	e, err := NewEndpoint(wh)
	if err != nil {
		return nil, err
	}
	return e.NewRequest(ctx, msgID, body, now)
}

// withProperties returns a copy of the JSON object body with
// `"properties":props` added as its last field, where AppendPayload puts it.
func withProperties(body, props []byte) ([]byte, error) {
	body = bytes.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, ErrInvalidBody
	}
	const field = `"properties":`
	open := body[:len(body)-1]
	out := make([]byte, 0, len(body)+1+len(field)+len(props))
	out = append(out, open...)
	if len(bytes.TrimSpace(open[1:])) > 0 { // not {}
		out = append(out, ',')
	}
	out = append(out, field...)
	out = append(out, props...)
	return append(out, '}'), nil
}
