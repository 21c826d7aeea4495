package api

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/netguard"
)

// checkTarget records in fe, on url, that rawURL names by its literal IP
// address a host the SSRF guard refuses (loopback, private, link-local,
// metadata...): such a webhook could only fail at delivery. Hostnames are
// not resolved here; the guard checks what they resolve to at dial time.
// A URL that does not parse is left to the URL rules.
func checkTarget(g *netguard.Guard, fe switchboard.FieldErrors, rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return
	}
	addr, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]"))
	if err != nil {
		return
	}
	var refused *netguard.RefusedError
	if err := g.Check(addr); errors.As(err, &refused) {
		fe.Add("url", fmt.Sprintf("is %s address (%s), which deliveries may not reach: see --allow-private-targets and --allow-cidr", refused.Kind, refused.Addr))
	}
}
