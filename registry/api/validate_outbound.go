package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/sealed"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// Rules of what a webhook adds to its deliveries: outbound authentication
// (seed 003), custom headers and properties (seed 004).

// Bounds of outbound authentication, custom headers and properties. They
// keep a webhook's KV entry, and every request made from it, small.
const (
	MaxAuthUsernameLength = 255
	MaxAuthSecretLength   = 4096 // password and token, in bytes
	MaxAuthNameLength     = 128  // header or query parameter name
	MaxHeaderNameLength   = 128
	MaxHeaderValueLength  = 4096 // bytes
	MaxHeadersSize        = 8 << 10
	MaxPropertiesSize     = 16 << 10 // bytes of compact JSON
)

const sealedRule = "must not begin with " + `"` + sealed.Prefix + `"` + ", which marks encrypted values"

// reservedHeaders are set by Switchboard on every delivery, or describe the
// connection or the body, so a webhook may not set them (canonical form).
var reservedHeaders = map[string]string{
	"Webhook-Id":        "is set by Switchboard to sign the request",
	"Webhook-Timestamp": "is set by Switchboard to sign the request",
	"Webhook-Signature": "is set by Switchboard to sign the request",
	"Content-Type":      "is set by Switchboard: the body is JSON",
	"Content-Length":    "is set by Switchboard from the body",
	"Content-Encoding":  "is set by Switchboard from the body",
	"Host":              "is taken from the url",
	"Connection":        "is a hop-by-hop header",
	"Keep-Alive":        "is a hop-by-hop header",
	"Te":                "is a hop-by-hop header",
	"Trailer":           "is a hop-by-hop header",
	"Transfer-Encoding": "is a hop-by-hop header",
	"Upgrade":           "is a hop-by-hop header",
}

// reservedHeader says why name may not be set by a webhook, or "".
func reservedHeader(name string) string {
	canon := http.CanonicalHeaderKey(name)
	if why, ok := reservedHeaders[canon]; ok {
		return why
	}
	if strings.HasPrefix(canon, "Proxy-") {
		return "is a hop-by-hop header"
	}
	return ""
}

// checkAuth returns the outbound authentication that in describes (null:
// none), recording every rule it breaks: basic needs username and password,
// the token types need a token, none takes neither, and never both kinds.
// Name is for header and querystring only; their default name is filled in.
func checkAuth(fe switchboard.FieldErrors, in authInput, null bool) switchboard.Auth {
	if null {
		return switchboard.Auth{Type: switchboard.AuthNone}
	}
	out := switchboard.Auth{
		Type: switchboard.AuthType(in.Type), Username: in.Username,
		Password: in.Password, Token: in.Token, Name: in.Name,
	}
	creds := in.Username != "" || in.Password != ""
	switch out.Type {
	case switchboard.AuthNone:
		for field, v := range map[string]string{"username": in.Username, "password": in.Password, "token": in.Token, "name": in.Name} {
			if v != "" {
				fe.Add("auth."+field, "must not be given with auth type none")
			}
		}
	case switchboard.AuthBasic:
		if in.Username == "" {
			fe.Add("auth.username", "is required with auth type basic")
		}
		if in.Password == "" {
			fe.Add("auth.password", "is required with auth type basic")
		}
		if in.Token != "" {
			fe.Add("auth.token", "must not be given with auth type basic: give username and password, or a token, not both")
		}
		if in.Name != "" {
			fe.Add("auth.name", "is for auth types header and querystring only")
		}
	case switchboard.AuthBearer, switchboard.AuthAuthHeader, switchboard.AuthHeader, switchboard.AuthQueryString:
		if in.Token == "" {
			fe.Add("auth.token", fmt.Sprintf("is required with auth type %s", out.Type))
		}
		if creds {
			for field, v := range map[string]string{"username": in.Username, "password": in.Password} {
				if v != "" {
					fe.Add("auth."+field, fmt.Sprintf("must not be given with auth type %s: give a token, or username and password with type basic, not both", out.Type))
				}
			}
		}
		out.Name = checkAuthName(fe, out.Type, in.Name)
	case "":
		fe.Add("auth.type", "is required: none, basic, bearer, authheader, header or querystring")
	default:
		fe.Add("auth.type", "must be none, basic, bearer, authheader, header or querystring")
	}

	switch {
	case utf8.RuneCountInString(in.Username) > MaxAuthUsernameLength:
		fe.Add("auth.username", fmt.Sprintf("must be at most %d characters", MaxAuthUsernameLength))
	case strings.ContainsRune(in.Username, ':'):
		fe.Add("auth.username", `must not contain ":" (Basic authentication separates it from the password with one)`)
	case strings.ContainsFunc(in.Username, isControl):
		fe.Add("auth.username", "must not contain control characters")
	}
	switch {
	case len(in.Password) > MaxAuthSecretLength:
		fe.Add("auth.password", fmt.Sprintf("must be at most %d bytes", MaxAuthSecretLength))
	case sealed.IsSealed(in.Password):
		fe.Add("auth.password", sealedRule)
	}
	switch {
	case len(in.Token) > MaxAuthSecretLength:
		fe.Add("auth.token", fmt.Sprintf("must be at most %d bytes", MaxAuthSecretLength))
	case sealed.IsSealed(in.Token):
		fe.Add("auth.token", sealedRule)
	case !validHeaderValue(in.Token) || strings.TrimSpace(in.Token) != in.Token:
		// It travels in a header (or a URL, where anything is escaped, but
		// one rule for every type is simpler to state).
		fe.Add("auth.token", "must be usable in a header: no control characters, no leading or trailing spaces")
	}
	return out
}

// checkAuthName returns the header (header) or query parameter
// (querystring) that carries the token, its default when name is empty, and
// "" for the other types, which take no name.
func checkAuthName(fe switchboard.FieldErrors, typ switchboard.AuthType, name string) string {
	switch typ {
	case switchboard.AuthHeader:
		if name == "" {
			return switchboard.DefaultAuthHeader
		}
		if len(name) > MaxAuthNameLength || !validHeaderName(name) {
			fe.Add("auth.name", fmt.Sprintf("must be a header name: 1 to %d letters, digits or !#$%%&'*+-.^_`|~", MaxAuthNameLength))
		} else if why := reservedHeader(name); why != "" {
			fe.Add("auth.name", fmt.Sprintf("%s: %s", store.Quote(name), why))
		}
	case switchboard.AuthQueryString:
		if name == "" {
			return switchboard.DefaultAuthQueryParam
		}
		if len(name) > MaxAuthNameLength || strings.ContainsFunc(name, func(r rune) bool { return !isQueryNameChar(r) }) {
			fe.Add("auth.name", fmt.Sprintf("must be a query parameter name: 1 to %d letters, digits or _.~-", MaxAuthNameLength))
		}
	default:
		if name != "" {
			fe.Add("auth.name", "is for auth types header and querystring only")
		}
		return ""
	}
	return name
}

// isQueryNameChar reports whether c may appear unescaped in a query
// parameter's name (RFC 3986 unreserved characters).
func isQueryNameChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_.~-", c)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// validHeaderName reports whether name is an RFC 9110 token, what net/http
// sends. (golang.org/x/net/http/httpguts has the same check but would bring
// x/net and x/text into the build for two functions.)
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v is a header value net/http sends: no
// control characters but horizontal tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// checkHeaders records every custom header that is malformed, too large,
// reserved (see reservedHeaders), set by auth, or a repeat of another in a
// different case. Failures are reported under "headers.<name>".
func checkHeaders(fe switchboard.FieldErrors, field string, headers map[string]string, auth switchboard.Auth) {
	if len(headers) > store.MaxHeaders {
		fe.Add(field, fmt.Sprintf("must hold at most %d headers", store.MaxHeaders))
		return
	}
	// A webhook that authenticates owns Authorization, even with a token in
	// another header: two credentials would leave the receiver guessing.
	taken := map[string]bool{}
	if auth.Type != switchboard.AuthNone && auth.Type != "" {
		taken["Authorization"] = true
	}
	if auth.Type == switchboard.AuthHeader {
		taken[http.CanonicalHeaderKey(auth.Name)] = true
	}
	size := 0
	seen := map[string]string{}
	// In name order, so that of two names differing in case the same one is
	// reported every time.
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		value := headers[name]
		size += len(name) + len(value)
		key := field + "." + name
		if len(name) > MaxHeaderNameLength || !validHeaderName(name) {
			fe.Add(key, fmt.Sprintf("is not a header name: 1 to %d letters, digits or !#$%%&'*+-.^_`|~", MaxHeaderNameLength))
			continue
		}
		canon := http.CanonicalHeaderKey(name)
		switch why := reservedHeader(name); {
		case why != "":
			fe.Add(key, why)
		case taken[canon]:
			fe.Add(key, fmt.Sprintf("is set by auth (type %s): remove it here or change auth", auth.Type))
		}
		if other, ok := seen[canon]; ok {
			fe.Add(key, fmt.Sprintf("repeats %s: header names are case-insensitive", store.Quote(other)))
		}
		seen[canon] = name
		switch {
		case len(value) > MaxHeaderValueLength:
			fe.Add(key, fmt.Sprintf("must have a value of at most %d bytes", MaxHeaderValueLength))
		case !validHeaderValue(value):
			fe.Add(key, "must have a value without control characters")
		case sealed.IsSealed(value):
			fe.Add(key, sealedRule)
		}
	}
	if size > MaxHeadersSize {
		fe.Add(field, fmt.Sprintf("must total at most %d bytes of names and values", MaxHeadersSize))
	}
}

// checkProperties returns raw, a JSON object or the literal null, compacted
// (nil for null), recording when it is another kind of value or too large.
// raw is well-formed JSON: the request's decoder checked it.
func checkProperties(fe switchboard.FieldErrors, field string, raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		fe.Add(field, "must be a JSON object")
		return nil
	}
	b := buf.Bytes()
	switch {
	case string(b) == "null":
		return nil
	case b[0] != '{':
		fe.Add(field, "must be a JSON object, e.g. {\"crm\": \"acme\"}")
		return nil
	case len(b) > MaxPropertiesSize:
		fe.Add(field, fmt.Sprintf("must be at most %d bytes of JSON", MaxPropertiesSize))
		return nil
	}
	return b
}

// maskedPrefix starts every header value the API shows (see
// maskHeaderValue).
const maskedPrefix = "****"

// maskHeaderValue is how the API shows a custom header's value after the
// create response: users put API keys there, so no more of it than its
// last 4 characters, and those only when it is long enough (16 bytes) for
// them to say little.
func maskHeaderValue(v string) string {
	if len(v) < 16 {
		return maskedPrefix
	}
	r := []rune(v)
	return maskedPrefix + string(r[max(0, len(r)-4):])
}

// maskHeaders returns headers with each value masked; nil for none.
func maskHeaders(headers map[string]string) map[string]string {
	if len(headers) == 0 {
		return nil
	}
	out := make(map[string]string, len(headers))
	for name, v := range headers {
		out[name] = maskHeaderValue(v)
	}
	return out
}

// keepMaskedHeaders returns the headers a request gives, where a value that
// is exactly the masked form of the stored value of that header stands for
// the stored value: a client that reads a webhook and sends its headers
// back as shown keeps them, rather than storing "****".
func keepMaskedHeaders(given, stored map[string]string) map[string]string {
	out := make(map[string]string, len(given))
	for name, v := range given {
		if old, ok := stored[name]; ok && strings.HasPrefix(v, maskedPrefix) && v == maskHeaderValue(old) {
			v = old
		}
		out[name] = v
	}
	return out
}

// checkHostMove records, for a change of wh's url to another host than
// prevURL's, each stored credential that the request does not give again:
// the outbound auth (unless it is none) and the custom headers, which hold
// API keys as often as not. They were given for the old host; sending them
// to the new one on the strength of a url change alone would hand them to
// whoever controls it. A client that means it sends them again (auth, and
// headers: {} or null to drop them).
func checkHostMove(fe switchboard.FieldErrors, in *webhookInput, prevURL string, wh *switchboard.Webhook) {
	if in.URL == nil || sameHost(prevURL, wh.URL) {
		return
	}
	if !in.Auth.Set && wh.Auth.Type != "" && wh.Auth.Type != switchboard.AuthNone {
		fe.Add("auth", "must be given again when url moves to another host: the stored credential is not sent to a new host")
	}
	if !in.Headers.Set && len(wh.Headers) > 0 {
		fe.Add("headers", "must be given again (or null) when url moves to another host: the stored values are not sent to a new host")
	}
}

// sameHost reports whether two webhook URLs name the same host (any
// scheme or port). An unparsable one is another host.
func sameHost(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && ua.Hostname() != "" && strings.EqualFold(ua.Hostname(), ub.Hostname())
}
