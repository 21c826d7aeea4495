package netguard

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// PublicError is the text of a failed webhook request that the tenant may
// read (test sends, attempt records, dead letters): err's text with every
// address that name resolution or the network produced taken out. The
// tenant typed the URL's host, so that stays; the addresses it resolved
// to, the resolver that answered and the local address of the connection
// describe the network Switchboard runs in, and go to the operator's log
// (err itself) only. The URL is left out too: its query may hold a token.
func PublicError(err error) string {
	if err == nil {
		return ""
	}
	full := err.Error()
	e := outermostNetError(err)
	if e == nil {
		// An error of unknown shape (a TLS or proxy library's own) may
		// still write an address out.
		return scrubAddrs(full)
	}
	inner, public := e.Error(), describe(e)
	if i := strings.Index(full, inner); i >= 0 {
		return full[:i] + public + full[i+len(inner):]
	}
	return public
}

// outermostNetError returns the first error in err's tree, depth first, of
// a kind that may name addresses, or nil.
func outermostNetError(err error) error {
	switch err.(type) {
	case *url.Error, *net.OpError, *net.DNSError, *net.AddrError, *RefusedError, *os.SyscallError, x509.HostnameError:
		return err
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if next := u.Unwrap(); next != nil {
			return outermostNetError(next)
		}
	case interface{ Unwrap() []error }:
		for _, next := range u.Unwrap() {
			if found := outermostNetError(next); found != nil {
				return found
			}
		}
	}
	return nil
}

// describe is the public text of an error of the kinds outermostNetError
// finds, and of what they wrap.
func describe(err error) string {
	if err == nil {
		return ""
	}
	switch e := err.(type) {
	case *url.Error:
		return describe(e.Err)
	case *net.OpError:
		s := e.Op
		if e.Net != "" {
			s += " " + e.Net
		}
		if e.Err == nil {
			return s
		}
		return s + ": " + describe(e.Err)
	case *net.DNSError:
		// Without e.Server: the resolver is the operator's.
		s := "lookup " + e.Name + ": " + e.Err
		if e.IsTimeout && !strings.Contains(e.Err, "timeout") {
			s += " (timeout)"
		}
		return s
	case *net.AddrError:
		return e.Err
	case *RefusedError:
		if e.hostIsAddr() {
			return fmt.Sprintf("refused: %s is %s address; see --allow-private-targets", e.Host, e.Kind)
		}
		host := e.Host
		if host == "" {
			host = "the host"
		}
		return fmt.Sprintf("refused: %s is %s address; see --allow-private-targets", host, e.Kind)
	case *os.SyscallError:
		return e.Syscall + ": " + describe(e.Err)
	case x509.HostnameError:
		// Its text lists the certificate's names and addresses.
		return "x509: the certificate is not valid for " + e.Host
	}
	if next := errors.Unwrap(err); next != nil {
		if found := outermostNetError(next); found != nil {
			full, inner := err.Error(), found.Error()
			if i := strings.Index(full, inner); i >= 0 {
				return scrubAddrs(full[:i]) + describe(found) + scrubAddrs(full[i+len(inner):])
			}
		}
	}
	return scrubAddrs(err.Error())
}

// scrubAddrs replaces the IP addresses (with or without a port) written in
// s by "[address]": text from an error of unknown shape.
func scrubAddrs(s string) string {
	fields := strings.Fields(s)
	changed := false
	for i, f := range fields {
		core := strings.Trim(f, `"'()<>,;`)
		core = strings.TrimSuffix(core, ":")
		if core == "" {
			continue
		}
		if _, err := netip.ParseAddr(strings.Trim(core, "[]")); err != nil {
			if _, err := netip.ParseAddrPort(core); err != nil {
				continue
			}
		}
		fields[i] = strings.Replace(f, core, "[address]", 1)
		changed = true
	}
	if !changed {
		return s
	}
	return strings.Join(fields, " ")
}
