package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/switchboard-hq/switchboard/internal/natsembed"
)

// natsAuth is how a process proves who it is to NATS and checks whom it
// talks to: at most one of a .creds file, an nkey seed file or a user and
// password, and TLS. For serve without --nats-url, the nkey or the user and
// password are instead what the embedded server requires of the clients
// --nats-listen lets in.
type natsAuth struct {
	Creds    string // a .creds file (user JWT and nkey seed)
	NKey     string // an nkey seed file
	User     string
	Password string
	TLSCA    string // CA certificate(s) the server's certificate must chain to
	TLSCert  string // client certificate, for servers that verify clients
	TLSKey   string
}

// registerNATSAuthFlags registers the NATS credential and TLS flags; every
// subcommand that connects to NATS shares them.
func registerNATSAuthFlags(fs *flag.FlagSet, a *natsAuth, embedded bool) {
	also := ""
	if embedded {
		also = "; without --nats-url, what the embedded server requires of the clients --nats-listen lets in"
	}
	fs.StringVar(&a.Creds, "nats-creds", a.Creds, "NATS credentials file (.creds: user JWT and nkey seed) to connect with")
	fs.StringVar(&a.NKey, "nats-nkey", a.NKey, "file holding the NATS user nkey seed (SU...) to connect with"+also)
	fs.StringVar(&a.User, "nats-user", a.User, "NATS user name, with --nats-password"+also)
	fs.StringVar(&a.Password, "nats-password", a.Password, "NATS password of --nats-user; prefer the environment variable, which ps does not show")
	fs.StringVar(&a.TLSCA, "nats-tls-ca", a.TLSCA, "PEM file of the CA that signed the NATS servers' certificates; turns TLS on")
	fs.StringVar(&a.TLSCert, "nats-tls-cert", a.TLSCert, "PEM client certificate for NATS servers that verify clients (with --nats-tls-key)")
	fs.StringVar(&a.TLSKey, "nats-tls-key", a.TLSKey, "PEM private key of --nats-tls-cert")
}

// validate names every inconsistent NATS setting. external says whether
// the process connects to a NATS of its own (--nats-url) rather than run
// the embedded one, where only an nkey or a user and password apply.
func (a natsAuth) validate(external bool) []error {
	var errs []error
	methods := 0
	for _, set := range []bool{a.Creds != "", a.NKey != "", a.User != "" || a.Password != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		errs = append(errs, errors.New("--nats-creds, --nats-nkey and --nats-user/--nats-password are alternatives: give one"))
	}
	if (a.User == "") != (a.Password == "") {
		errs = append(errs, errors.New("--nats-user and --nats-password go together"))
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		errs = append(errs, errors.New("--nats-tls-cert and --nats-tls-key go together"))
	}
	if !external {
		if a.Creds != "" {
			errs = append(errs, errors.New("--nats-creds needs --nats-url: the embedded server takes --nats-nkey or --nats-user/--nats-password"))
		}
		if a.TLSCA != "" || a.TLSCert != "" {
			errs = append(errs, errors.New("--nats-tls-* need --nats-url: the embedded server listens without TLS (keep --nats-listen on loopback or a private network)"))
		}
	}
	return errs
}

// options are the nats.Options that present a's credentials and TLS.
func (a natsAuth) options() []nats.Option {
	var opts []nats.Option
	switch {
	case a.Creds != "":
		opts = append(opts, nats.UserCredentials(a.Creds))
	case a.NKey != "":
		opts = append(opts, nkeyFromSeedFile(a.NKey))
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	if a.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	return opts
}

// nkeyFromSeedFile is nats.NkeyOptionFromSeed, whose error would otherwise
// be returned by Connect without the option ever applying: the file is
// read at connect time and its failure reported as an option error.
func nkeyFromSeedFile(path string) nats.Option {
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return func(*nats.Options) error { return fmt.Errorf("--nats-nkey %s: %w", path, err) }
	}
	return opt
}

// embeddedAuth is what the embedded server requires of the clients
// --nats-listen lets in: the user and password given, or the nkey seed
// file given, or by default one created at first start under the data
// directory.
func (a natsAuth) embeddedAuth(dataDir string) natsembed.Auth {
	if a.User != "" {
		return natsembed.Auth{User: a.User, Password: a.Password}
	}
	if a.NKey != "" {
		return natsembed.Auth{NKeySeedFile: a.NKey}
	}
	return natsembed.Auth{NKeySeedFile: filepath.Join(dataDir, natsembed.DefaultNKeySeedFile)}
}

// secrets are the strings of a's settings and of natsURL that must never
// reach a log or an error message.
func (a natsAuth) secrets(natsURL string) []string {
	var s []string
	if a.Password != "" {
		s = append(s, a.Password)
	}
	for _, raw := range strings.Split(natsURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok && p != "" {
				s = append(s, p)
			} else if t := u.User.Username(); t != "" {
				s = append(s, t) // a lone user in a NATS URL is a token
			}
			continue
		}
		// Unparsable: take what sits between "://" and "@" as secret.
		if _, rest, ok := strings.Cut(raw, "://"); ok {
			if info, _, ok := strings.Cut(rest, "@"); ok && info != "" {
				if _, p, ok := strings.Cut(info, ":"); ok && p != "" {
					s = append(s, p)
				} else {
					s = append(s, info)
				}
			}
		}
	}
	return s
}

// redactNATSURL returns natsURL (a comma-separated list of servers) with
// every password and token replaced, for logs and errors.
func redactNATSURL(natsURL string) string {
	return redact(natsURL, natsAuth{}.secrets(natsURL))
}

// redact replaces each secret in s.
func redact(s string, secrets []string) string {
	for _, secret := range secrets {
		s = strings.ReplaceAll(s, secret, "REDACTED")
	}
	return s
}

// redactedError is an error whose message had secrets replaced; errors.Is
// and As still see the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// connectNATS connects to the servers of natsURL with auth's credentials:
// the one place where a Switchboard process dials an external NATS. Its
// error names the servers without the secrets of the URL or of auth.
func connectNATS(natsURL string, auth natsAuth, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(natsURL, append(auth.options(), opts...)...)
	if err != nil {
		secrets := auth.secrets(natsURL)
		msg := fmt.Sprintf("connect to NATS %s: %s", redact(natsURL, secrets), redact(err.Error(), secrets))
		return nil, &redactedError{msg: msg, err: err}
	}
	return nc, nil
}
