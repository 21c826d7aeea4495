// Package natsembed runs a nats-server with JetStream inside the process, the
// default that makes `switchboard serve` a single binary with no moving parts.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config sets up the embedded server.
type Config struct {
	// StoreDir holds JetStream's files. Required.
	StoreDir string
	// Listen is "host:port" for NATS clients from other processes (e.g.
	// "127.0.0.1:4222"); empty means in-process connections only.
	Listen string
	// ServerName names the node in logs and in JetStream's metadata.
	ServerName string
}

// Server is a running embedded nats-server.
type Server struct {
	ns *server.Server
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	// nats-server would create it 0750: events, secrets in flight and dead
	// letters are nobody else's to read.
	if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	}
	if cfg.Listen == "" {
		opts.DontListen = true
		opts.Host, opts.Port = "127.0.0.1", -1
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: new server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsembed: server not ready after 30s")
	}
	return &Server{ns: ns}, nil
}

// Connect opens a client connection to the server, in-process when the
// server does not listen.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns), nats.Name("switchboard")}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("natsembed: connect: %w", err)
	}
	return nc, nil
}

// ClientURL is the URL other processes connect to, or "" when the server
// accepts in-process connections only.
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

func splitHostPort(hostport string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, fmt.Errorf("natsembed: listen %q: %w", hostport, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("natsembed: listen %q: bad port: %w", hostport, err)
	}
	return host, port, nil
}
