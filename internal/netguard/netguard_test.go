package netguard_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/netguard"
)

func TestGuard_Check(t *testing.T) {
	tests := []struct {
		addr string
		kind string // "" when allowed
	}{
		// Refused IPv4.
		{"127.0.0.1", "a loopback"},
		{"127.255.0.9", "a loopback"},
		{"10.0.0.1", "a private"},
		{"172.16.0.1", "a private"},
		{"172.31.255.254", "a private"},
		{"192.168.1.1", "a private"},
		{"169.254.169.254", "a cloud metadata"},
		{"100.100.100.200", "a cloud metadata"},
		{"168.63.129.16", "a cloud metadata"}, // Azure wire server: public, refused by name
		{"169.254.170.2", "a cloud metadata"},
		{"169.254.170.23", "a cloud metadata"},
		{"169.254.169.253", "a cloud metadata"},
		{"169.254.0.23", "a cloud metadata"},
		{"192.0.0.192", "a cloud metadata"},
		{"::ffff:168.63.129.16", "a cloud metadata"},
		{"fd00:ec2::23", "a cloud metadata"},
		{"169.254.10.1", "a link-local"},
		{"100.64.0.1", "a CGNAT (shared)"},
		{"100.127.255.254", "a CGNAT (shared)"},
		{"0.0.0.0", "an unspecified"},
		{"0.1.2.3", "an unspecified"},
		{"224.0.0.1", "a multicast"},
		{"239.255.255.250", "a multicast"},
		{"255.255.255.255", "a broadcast"},
		{"240.0.0.1", "a reserved (non-global)"},
		{"192.0.0.8", "a reserved (non-global)"},
		{"198.18.0.1", "a reserved (non-global)"},
		{"192.0.2.1", "a documentation"},
		{"203.0.113.7", "a documentation"},
		// Refused IPv6.
		{"::1", "a loopback"},
		{"::", "an unspecified"},
		{"fc00::1", "a private"},
		{"fd12:3456::1", "a private"},
		{"fd00:ec2::254", "a cloud metadata"},
		{"fe80::1", "a link-local"},
		{"fe80::1%eth0", "a link-local"},
		{"fec0::1", "a private"},
		{"ff02::1", "a multicast"},
		{"2001:db8::1", "a documentation"},
		{"2001::1", "a reserved (non-global)"}, // Teredo
		{"100::1", "a reserved (non-global)"},
		{"::a00:1", "a reserved (non-global)"}, // IPv4-compatible 10.0.0.1
		{"4000::1", "a reserved (non-global)"}, // outside 2000::/3
		// IPv4-mapped IPv6 and other IPv6 forms that lead to IPv4 are
		// judged by that IPv4 address.
		{"::ffff:127.0.0.1", "a loopback"},
		{"::ffff:10.0.0.1", "a private"},
		{"::ffff:169.254.169.254", "a cloud metadata"},
		{"::ffff:100.64.0.1", "a CGNAT (shared)"},
		{"::ffff:0.0.0.0", "an unspecified"},
		{"64:ff9b::7f00:1", "a loopback"},        // NAT64 of 127.0.0.1
		{"2002:a00:1::1", "a private"},           // 6to4 of 10.0.0.1
		{"2002:a9fe:a9fe::", "a cloud metadata"}, // 6to4 of 169.254.169.254
		// Allowed: public addresses.
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"::ffff:8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of 8.8.8.8: what an IPv6-only host dials
		{"2002:808:808::1", ""},
		{"168.63.129.17", ""}, // beside Azure's wire server
	}
	var nilGuard *netguard.Guard // the default policy
	strict := netguard.New(false)
	open := netguard.New(true)
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			addr := netip.MustParseAddr(tt.addr)
			for name, g := range map[string]*netguard.Guard{"nil": nilGuard, "New(false)": strict} {
				err := g.Check(addr)
				if tt.kind == "" {
					if err != nil {
						t.Errorf("%s: Check = %v, want nil", name, err)
					}
					continue
				}
				var re *netguard.RefusedError
				if !errors.As(err, &re) {
					t.Fatalf("%s: Check = %v, want a *RefusedError", name, err)
				}
				if re.Kind != tt.kind {
					t.Errorf("%s: kind %q, want %q", name, re.Kind, tt.kind)
				}
				if !strings.HasPrefix(err.Error(), "refused: ") || !strings.HasSuffix(err.Error(), "; see --allow-private-targets") {
					t.Errorf("%s: error %q does not say what to do", name, err)
				}
			}
			if err := open.Check(addr); err != nil {
				t.Errorf("allow-private-targets: Check = %v, want nil", err)
			}
		})
	}
}

func TestRefusedError_Message(t *testing.T) {
	err := netguard.New(false).Check(netip.MustParseAddr("10.0.0.1"))
	if want := "refused: 10.0.0.1 is a private address; see --allow-private-targets"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestGuard_AllowedPrefixes(t *testing.T) {
	prefixes, err := netguard.ParsePrefixes([]string{"10.1.0.0/16, fd00:1::/32", "192.168.7.7"})
	if err != nil {
		t.Fatal(err)
	}
	g := netguard.New(false, prefixes...)
	for addr, allowed := range map[string]bool{
		"10.1.2.3":         true,
		"::ffff:10.1.2.3":  true, // the mapped form of an allowed IPv4 address
		"fd00:1::5":        true,
		"192.168.7.7":      true,
		"10.2.0.1":         false,
		"192.168.7.8":      false,
		"fd00:2::5":        false,
		"127.0.0.1":        false,
		"169.254.169.254":  false,
		"::ffff:127.0.0.1": false,
	} {
		err := g.Check(netip.MustParseAddr(addr))
		if allowed != (err == nil) {
			t.Errorf("Check(%s) = %v, want allowed %v", addr, err, allowed)
		}
	}
}

func TestParsePrefixes_NamesEveryBadEntry(t *testing.T) {
	_, err := netguard.ParsePrefixes([]string{"10.0.0.0/8", "nope", "1.2.3.4/33,", ""})
	if err == nil {
		t.Fatal("no error")
	}
	for _, bad := range []string{`"nope"`, `"1.2.3.4/33"`} {
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("error %q does not name %s", err, bad)
		}
	}
	got, err := netguard.ParsePrefixes([]string{"10.1.2.3/8"})
	if err != nil || len(got) != 1 || got[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("ParsePrefixes(10.1.2.3/8) = %v, %v; want 10.0.0.0/8", got, err)
	}
}

// TestGuard_Dialer dials real listeners: the check runs on the address the
// dialer resolved, so a host name leading to loopback is refused too.
func TestGuard_Dialer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx := context.Background()

	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run("Refused/"+host, func(t *testing.T) {
			c, err := netguard.New(false).Dialer().DialContext(ctx, "tcp", net.JoinHostPort(host, port))
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			var re *netguard.RefusedError
			if !errors.As(err, &re) || re.Kind != "a loopback" {
				t.Fatalf("dial error = %v, want a loopback refusal", err)
			}
		})
	}
	allowLoopback, err := netguard.ParsePrefixes([]string{"127.0.0.0/8,::1"})
	if err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]*netguard.Guard{
		"AllowAll":  netguard.New(true),
		"AllowCIDR": netguard.New(false, allowLoopback...),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := g.Dialer().DialContext(ctx, "tcp", net.JoinHostPort("localhost", port))
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.Close()
		})
	}
}
