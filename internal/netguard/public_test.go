package netguard_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/netguard"
)

func TestPublicError(t *testing.T) {
	internal := netip.MustParseAddr("10.20.30.40")
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"plain", errors.New("status 500: oops"), "status 500: oops"},
		{"unknown shape", errors.New("tls: handshake with 10.20.30.40:443 failed"), "tls: handshake with [address] failed"},
		{
			"refused name",
			&url.Error{Op: "Post", URL: "https://db.corp.internal/x?token=t", Err: &net.OpError{Op: "dial", Net: "tcp",
				Addr: &net.TCPAddr{IP: net.IP(internal.AsSlice()), Port: 443},
				Err:  &netguard.RefusedError{Addr: internal, Kind: "a private", Host: "db.corp.internal"}}},
			"dial tcp: refused: db.corp.internal is a private address; see --allow-private-targets",
		},
		{
			"refused literal",
			fmt.Errorf("request failed: %w", &net.OpError{Op: "dial", Net: "tcp",
				Err: &netguard.RefusedError{Addr: internal, Kind: "a private", Host: "10.20.30.40"}}),
			"request failed: dial tcp: refused: 10.20.30.40 is a private address; see --allow-private-targets",
		},
		{
			"refused, host unknown",
			&netguard.RefusedError{Addr: internal, Kind: "a private"},
			"refused: the host is a private address; see --allow-private-targets",
		},
		{
			"resolver",
			fmt.Errorf("request failed: %w", &net.OpError{Op: "dial", Net: "tcp",
				Err: &net.DNSError{Err: "no such host", Name: "nope.example.com", Server: "10.0.0.2:53", IsNotFound: true}}),
			"request failed: dial tcp: lookup nope.example.com: no such host",
		},
		{
			"connection refused at the resolved address",
			&net.OpError{Op: "dial", Net: "tcp", Source: &net.TCPAddr{IP: net.ParseIP("10.9.9.9"), Port: 51000},
				Addr: &net.TCPAddr{IP: net.IP(internal.AsSlice()), Port: 8443}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
			"dial tcp: connect: connection refused",
		},
		{
			"certificate names",
			&url.Error{Op: "Post", URL: "https://hooks.example.com/", Err: fmt.Errorf("tls: failed to verify certificate: %w",
				x509.HostnameError{Certificate: &x509.Certificate{IPAddresses: []net.IP{net.IP(internal.AsSlice())}}, Host: "hooks.example.com"})},
			"tls: failed to verify certificate: x509: the certificate is not valid for hooks.example.com",
		},
		{
			"unknown shape",
			&net.OpError{Op: "read", Net: "tcp", Err: errors.New("reset by 10.20.30.40:443, [fd00::1]:80")},
			"read tcp: reset by [address], [address]",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := netguard.PublicError(tt.err); got != tt.want {
				t.Errorf("PublicError(%v)\n = %q\nwant %q", tt.err, got, tt.want)
			}
		})
	}
}

// A name that resolves to loopback is refused, naming the name and never
// the address, while the full error (for the operator's log) names both;
// and a real connection refused names neither address.
func TestPublicError_RealDials(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close() // nothing listens there now

	client := &http.Client{Transport: &http.Transport{DialContext: netguard.New(false).DialContext}}
	_, err = client.Post("http://localhost:"+port+"/hook?token=s3cret", "application/json", nil)
	public := netguard.PublicError(err)
	if !strings.Contains(public, "refused: localhost is a loopback address") || strings.Contains(public, "127.0.0.1") ||
		strings.Contains(public, "::1") || strings.Contains(public, "s3cret") {
		t.Errorf("public error %q, want the refusal of localhost, no address, no token", public)
	}
	if full := err.Error(); !strings.Contains(full, "localhost (127.0.0.1)") && !strings.Contains(full, "localhost (::1)") {
		t.Errorf("full error %q does not name the address", full)
	}

	_, err = netguard.New(true).DialContext(ctx, "tcp", "127.0.0.1:"+port)
	if err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if public := netguard.PublicError(err); strings.Contains(public, "127.0.0.1") || !strings.Contains(public, "connection refused") {
		t.Errorf("public error %q, want connection refused without the address (full: %v)", public, err)
	}
}
