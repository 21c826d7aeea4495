// Package netguard keeps webhook requests off the network Switchboard runs
// in (SSRF protection). A webhook URL is chosen by a customer; without a
// guard, a URL naming 127.0.0.1, 10.0.0.5 or the cloud metadata service
// would make Switchboard call its own neighbours on the customer's behalf.
//
// The check runs on the address actually dialled, in a net.Dialer Control
// hook, after name resolution: a name that resolves to a public address
// when the registry looks and to a private one when the worker dials (DNS
// rebinding) is still refused. The deliverer and the registry's test send
// both dial through it.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Guard decides which addresses webhook requests may reach: every globally
// routable unicast address, plus those in its allowed prefixes; or every
// address when built with allowAll. A nil *Guard is the default policy:
// public addresses only. A Guard is immutable and safe for concurrent use.
type Guard struct {
	allowAll bool
	allowed  []netip.Prefix
}

// New returns a Guard that refuses every address that is not globally
// routable, except those in allowed. allowAll turns the guard off (for
// development, where receivers run on loopback: --allow-private-targets).
func New(allowAll bool, allowed ...netip.Prefix) *Guard {
	return &Guard{allowAll: allowAll, allowed: allowed}
}

// ParsePrefixes parses CIDR ranges ("10.1.0.0/16", "fd00::/8") or single
// addresses ("10.1.2.3"), as --allow-cidr takes them, each entry possibly a
// comma-separated list. Its error names every entry it cannot parse.
func ParsePrefixes(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, entry := range entries {
		for s := range strings.SplitSeq(entry, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q is neither a CIDR range nor an IP address", s))
				continue
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, errors.Join(errs...)
}

// RefusedError is the error of a dial the Guard refused.
type RefusedError struct {
	Addr netip.Addr // the address that was to be dialled
	// Kind says what the address is, as in "a private address": loopback,
	// private, link-local, CGNAT, cloud metadata, ...
	Kind string
	// Host is the host that was asked for (the URL's, before name
	// resolution) when the dial went through Guard.DialContext; "" when
	// unknown.
	Host string
}

func (e *RefusedError) Error() string {
	if e.Host != "" && !e.hostIsAddr() {
		return fmt.Sprintf("refused: %s (%s) is %s address; see --allow-private-targets", e.Host, e.Addr, e.Kind)
	}
	return fmt.Sprintf("refused: %s is %s address; see --allow-private-targets", e.Addr, e.Kind)
}

// hostIsAddr reports whether Host is Addr written as an IP address, so
// that naming the address tells no more than the URL did.
func (e *RefusedError) hostIsAddr() bool {
	a, err := netip.ParseAddr(e.Host)
	return err == nil && a.WithZone("").Unmap() == e.Addr.WithZone("").Unmap()
}

// Check returns nil when addr may be dialled, else a *RefusedError saying
// what kind of address it is.
func (g *Guard) Check(addr netip.Addr) error {
	addr = addr.WithZone("") // prefixes never contain zoned addresses
	if g != nil {
		if g.allowAll {
			return nil
		}
		for _, p := range g.allowed {
			if p.Contains(addr) || p.Contains(addr.Unmap()) {
				return nil
			}
		}
	}
	if kind := classify(addr); kind != "" {
		return &RefusedError{Addr: addr, Kind: kind}
	}
	return nil
}

// Control is a net.Dialer Control hook: it refuses to connect to an address
// that Check refuses. address is what the dialer resolved, "ip:port".
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refused: cannot check %s address %q: %w", network, address, err)
	}
	return g.Check(ap.Addr())
}

// Dialer returns a net.Dialer that dials only what g allows, with the
// connect timeout and keep-alive that webhook requests use.
func (g *Guard) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.Control}
}

// DialContext dials address ("host:port") as Dialer does; a refusal's
// RefusedError also names the host asked for, so that PublicError can say
// what was refused without the address the name resolved to. It is an
// http.Transport's DialContext.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := g.Dialer().DialContext(ctx, network, address)
	var refused *RefusedError
	if err != nil && errors.As(err, &refused) {
		if host, _, serr := net.SplitHostPort(address); serr == nil {
			refused.Host = host // a new error of this dial's Control: not shared
		}
	}
	return conn, err
}

// rangeKind is a non-global range and what an address in it is called.
type rangeKind struct {
	prefix netip.Prefix
	kind   string
}

func ranges(kind string, cidrs ...string) []rangeKind {
	out := make([]rangeKind, len(cidrs))
	for i, c := range cidrs {
		out[i] = rangeKind{netip.MustParsePrefix(c), kind}
	}
	return out
}

// Kinds of refused addresses, as RefusedError.Kind spells them.
const (
	kindMetadata      = "a cloud metadata"
	kindUnspecified   = "an unspecified"
	kindLoopback      = "a loopback"
	kindPrivate       = "a private"
	kindCGNAT         = "a CGNAT (shared)"
	kindLinkLocal     = "a link-local"
	kindMulticast     = "a multicast"
	kindBroadcast     = "a broadcast"
	kindDocumentation = "a documentation"
	kindReserved      = "a reserved (non-global)"
)

// refused lists the ranges of the IANA IPv4 and IPv6 special-purpose
// address registries that are not globally reachable, most specific
// first: the first match names the kind. IPv6 outside 2000::/3 (global
// unicast) is refused as reserved even when not listed.
var refused = slices.Concat(
	ranges(kindMetadata,
		"169.254.169.254/32", // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean, Hetzner...
		"169.254.169.253/32", // AWS VPC DNS resolver
		"169.254.169.123/32", // AWS time sync
		"169.254.170.2/32",   // AWS ECS task metadata and credentials
		"169.254.170.23/32",  // AWS EKS Pod Identity agent (credentials)
		"169.254.0.23/32",    // Tencent Cloud metadata
		"100.100.100.200/32", // Alibaba Cloud metadata
		"192.0.0.192/32",     // Oracle Cloud (classic) metadata
		// Azure's wire server (VM agent, extensions, DNS): a public
		// address, which the rules below would let through.
		"168.63.129.16/32",
		"fd00:ec2::254/128", // AWS metadata over IPv6
		"fd00:ec2::253/128", // AWS DNS resolver over IPv6
		"fd00:ec2::123/128", // AWS time sync over IPv6
		"fd00:ec2::23/128",  // AWS EKS Pod Identity agent over IPv6
	),
	ranges(kindUnspecified, "0.0.0.0/8", "::/128"),
	ranges(kindLoopback, "127.0.0.0/8", "::1/128"),
	ranges(kindPrivate, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10"),
	ranges(kindCGNAT, "100.64.0.0/10"),
	ranges(kindLinkLocal, "169.254.0.0/16", "fe80::/10"),
	ranges(kindBroadcast, "255.255.255.255/32"),
	ranges(kindMulticast, "224.0.0.0/4", "ff00::/8"),
	ranges(kindDocumentation, "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"),
	ranges(kindReserved,
		"192.0.0.0/24",   // IETF protocol assignments
		"192.88.99.0/24", // 6to4 relay anycast (deprecated)
		"198.18.0.0/15",  // benchmarking
		"240.0.0.0/4",    // future use
		"::/96",          // IPv4-compatible (deprecated)
		"64:ff9b:1::/48", // local-use NAT64
		"100::/64",       // discard-only
		"2001::/23",      // IETF protocol assignments, Teredo included
	),
)

var (
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	nat64          = netip.MustParsePrefix("64:ff9b::/96") // IPv4 in the last 32 bits
	sixToFour      = netip.MustParsePrefix("2002::/16")    // IPv4 in bits 16..47
)

// classify returns the kind of a non-global address, or "" for a global
// one. IPv6 forms that embed an IPv4 address (IPv4-mapped, NAT64, 6to4)
// are judged by the IPv4 address they lead to.
func classify(addr netip.Addr) string {
	if !addr.IsValid() {
		return kindReserved
	}
	addr = addr.Unmap()
	if addr.Is6() {
		b := addr.As16()
		switch {
		case nat64.Contains(addr):
			return classify(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(addr):
			return classify(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	for _, r := range refused {
		if r.prefix.Contains(addr) {
			return r.kind
		}
	}
	if addr.Is6() && !globalUnicast6.Contains(addr) {
		return kindReserved
	}
	return ""
}
