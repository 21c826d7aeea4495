package api

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPLimits bound what clients can hold of an HTTP server: how long a
// request's header, its whole request and its answer may take, how long an
// idle keep-alive connection is kept, and how many connections are open at
// once. A client trickling a header or a body, reading its answer slowly or
// keeping connections idle holds each connection for a bounded time, and
// at most MaxConns of them.
type HTTPLimits struct {
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the reading of a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its header to the end
	// of its answer; a route that waits on a receiver for longer (the test
	// send) extends its own deadline.
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// MaxConns is how many connections are open at once; more wait to be
	// accepted. 0: no bound.
	MaxConns int
	// MaxConnsPerClient is how many of them one client (remote IP address)
	// may hold; one more is closed as soon as it is accepted, so that one
	// client cannot take every slot. 0: no bound (behind a proxy, every
	// client is the proxy).
	MaxConnsPerClient int
}

// DefaultHTTPLimits are the limits of the API's server and of /metrics.
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxConns:          1024,
	}
}

// Validate names every limit that is out of bounds; flag names are given
// with prefix (e.g. "--http-").
func (l HTTPLimits) Validate(prefix string) error {
	var errs []error
	for _, t := range []struct {
		name string
		d    time.Duration
	}{
		{"read-header-timeout", l.ReadHeaderTimeout}, {"read-timeout", l.ReadTimeout},
		{"write-timeout", l.WriteTimeout}, {"idle-timeout", l.IdleTimeout},
	} {
		if t.d <= 0 {
			errs = append(errs, fmt.Errorf("%s%s must be positive, got %v", prefix, t.name, t.d))
		}
	}
	if l.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("%smax-conns must be 0 (no bound) or positive, got %d", prefix, l.MaxConns))
	}
	if l.MaxConnsPerClient < 0 {
		errs = append(errs, fmt.Errorf("%smax-conns-per-client must be 0 (no bound) or positive, got %d", prefix, l.MaxConnsPerClient))
	}
	return errors.Join(errs...)
}

// Server returns an http.Server of h with l's timeouts; serve it on
// Listener's listener for the bound on connections.
func (l HTTPLimits) Server(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
	}
}

// Listener returns ln with at most l.MaxConns connections open at once,
// Accept waiting while that many are, and at most l.MaxConnsPerClient of
// them from one remote IP address. (golang.org/x/net/netutil has the
// first, but x/net is not otherwise needed.)
func (l HTTPLimits) Listener(ln net.Listener) net.Listener {
	if l.MaxConns <= 0 && l.MaxConnsPerClient <= 0 {
		return ln
	}
	ll := &limitListener{Listener: ln, perClient: l.MaxConnsPerClient, clients: map[string]int{}, done: make(chan struct{})}
	if l.MaxConns > 0 {
		ll.sem = make(chan struct{}, l.MaxConns)
	}
	return ll
}

type limitListener struct {
	net.Listener
	sem       chan struct{} // one token per open connection; nil: no bound
	perClient int           // 0: no bound
	mu        sync.Mutex
	clients   map[string]int // open connections per remote IP address
	done      chan struct{}  // closed by Close
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		if l.sem != nil {
			select {
			case l.sem <- struct{}{}:
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.release("")
			return nil, err
		}
		ip := ""
		if l.perClient > 0 {
			ip, _, _ = net.SplitHostPort(c.RemoteAddr().String())
			l.mu.Lock()
			full := l.clients[ip] >= l.perClient
			if !full {
				l.clients[ip]++
			}
			l.mu.Unlock()
			if full {
				c.Close()
				l.release("")
				continue
			}
		}
		return &limitConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

// release gives back the slot of a connection, and its client's when ip
// is set.
func (l *limitListener) release(ip string) {
	if ip != "" {
		l.mu.Lock()
		if l.clients[ip]--; l.clients[ip] <= 0 {
			delete(l.clients, ip)
		}
		l.mu.Unlock()
	}
	if l.sem != nil {
		<-l.sem
	}
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitConn gives its token back once, at its first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
