// Package natsembed runs a nats-server with JetStream inside the process, the
// default that makes `switchboard serve` a single binary with no moving parts.
package natsembed

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
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
	// Auth is what clients must present once Listen lets other processes
	// in: the server then refuses anonymous clients. Without Listen it is
	// ignored: in-process connections are the process's own.
	Auth Auth
}

// DefaultNKeySeedFile is the name, under Switchboard's data directory, of
// the nkey seed file created at first start when the embedded server
// listens and no credentials were given.
const DefaultNKeySeedFile = "nats-user.nk"

// Auth is the one user of a listening embedded server: a user and
// password, or an nkey whose seed is in a file (created, mode 0600, with a
// new user nkey when missing). The user may do everything: it runs every
// role.
type Auth struct {
	User, Password string
	NKeySeedFile   string
}

// Server is a running embedded nats-server.
type Server struct {
	ns   *server.Server
	auth []nats.Option // what Connect presents
	// SeedFile is the nkey seed file clients of other processes
	// authenticate with, "" when the server does not listen or takes a
	// user and password.
	SeedFile string
	// CreatedSeed reports that SeedFile was created at this start.
	CreatedSeed bool
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
	s := &Server{}
	if cfg.Listen == "" {
		opts.DontListen = true
		opts.Host, opts.Port = "127.0.0.1", -1
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
		if err := s.requireAuth(opts, cfg.Auth); err != nil {
			return nil, err
		}
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
	s.ns = ns
	return s, nil
}

// requireAuth makes opts refuse every client but auth's user, and keeps
// what Connect must present.
func (s *Server) requireAuth(opts *server.Options, auth Auth) error {
	switch {
	case auth.User != "":
		if auth.Password == "" {
			return errors.New("natsembed: a user needs a password")
		}
		opts.Users = []*server.User{{Username: auth.User, Password: auth.Password}}
		s.auth = []nats.Option{nats.UserInfo(auth.User, auth.Password)}
	case auth.NKeySeedFile != "":
		created, err := ensureSeedFile(auth.NKeySeedFile)
		if err != nil {
			return err
		}
		kp, err := readSeedFile(auth.NKeySeedFile)
		if err != nil {
			return err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return fmt.Errorf("natsembed: nkey %s: %w", auth.NKeySeedFile, err)
		}
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
		s.auth = []nats.Option{nats.Nkey(pub, kp.Sign)}
		s.SeedFile, s.CreatedSeed = auth.NKeySeedFile, created
	default:
		return errors.New("natsembed: a listening server needs Auth: a user and password or an nkey seed file")
	}
	// Without it, a client could connect and wait unauthenticated for as
	// long as it liked.
	opts.AuthTimeout = 5
	return nil
}

// ensureSeedFile creates path with a new user nkey seed unless it exists,
// reporting whether it did.
func ensureSeedFile(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("natsembed: nkey seed file: %w", err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return false, fmt.Errorf("natsembed: create nkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return false, fmt.Errorf("natsembed: create nkey: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return false, fmt.Errorf("natsembed: nkey seed file: %w", err)
	}
	// O_EXCL: two processes starting on one data dir must not overwrite
	// each other's seed.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("natsembed: nkey seed file: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s\n", seed)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return false, fmt.Errorf("natsembed: write nkey seed file: %w", err)
	}
	return true, nil
}

// readSeedFile reads the user nkey seed in path, refusing a file others
// may read: it is the key to every stream.
func readSeedFile(path string) (nkeys.KeyPair, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("natsembed: nkey seed file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("natsembed: nkey seed file %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("natsembed: nkey seed file: %w", err)
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return nil, fmt.Errorf("natsembed: nkey seed file %s: %w", path, err)
	}
	return kp, nil
}

// Connect opens a client connection to the server, in-process when the
// server does not listen.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append(append([]nats.Option{nats.InProcessServer(s.ns), nats.Name("switchboard")}, s.auth...), opts...)
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
