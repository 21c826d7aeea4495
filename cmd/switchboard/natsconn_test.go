package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/natsembed"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// serve --nats-listen: the embedded server refuses anonymous clients; the
// nkey seed created at first start (0600, under --data-dir, its path
// printed and logged, never its content) lets another process in, and the
// same seed serves the next start. In-process roles need nothing.
func TestServe_NATSListenRequiresAuthentication(t *testing.T) {
	dir := t.TempDir()
	cfg := testServeConfig(dir)
	cfg.NATSListen = "127.0.0.1:-1"
	var logs, stdout bytes.Buffer
	ctx := context.Background()
	sys, err := startSystem(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	first := sys
	t.Cleanup(func() { first.Close() }) // closed again below: a no-op
	sys.printNATSListen(&stdout)

	seedFile := filepath.Join(dir, natsembed.DefaultNKeySeedFile)
	fi, err := os.Stat(seedFile)
	if err != nil {
		t.Fatalf("no nkey seed file at first start: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("seed file mode %v, want 0600", fi.Mode().Perm())
	}
	seed, _ := os.ReadFile(seedFile)
	url := sys.ns.ClientURL()
	if !strings.Contains(stdout.String(), url) || !strings.Contains(stdout.String(), "--nats-nkey "+seedFile) {
		t.Errorf("stdout does not say where NATS listens:\n%s", stdout.String())
	}
	for what, out := range map[string]string{"stdout": stdout.String(), "log": logs.String()} {
		if strings.Contains(out, strings.TrimSpace(string(seed))) {
			t.Errorf("the %s shows the nkey seed", what)
		}
	}
	if !strings.Contains(logs.String(), seedFile) {
		t.Errorf("the log does not say where the seed is:\n%s", logs.String())
	}

	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("an anonymous client got in")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("anonymous client: %v, want an authorization violation", err)
	}
	// A worker of another process, as the printed line says.
	wcfg := testServeConfig(t.TempDir())
	wcfg.Roles = roles{Worker: true}
	wcfg.NATSURL = url
	wcfg.NATS = natsAuth{NKey: seedFile}
	worker := mustStartSystem(t, wcfg)
	testenv.WaitFor(t, 10*time.Second, "the worker of another process ready", worker.ready)
	worker.Close()

	// The in-process roles still work: an event goes in through the API.
	api := apiClient{url: sys.URL, key: testKey}
	if err := api.do(ctx, "POST", "/v1/events", map[string]any{"id": "evt_1", "type": "call.started", "data": map[string]any{}}, nil); err != nil {
		t.Fatalf("ingest through the in-process connection: %v", err)
	}

	if err := sys.Close(); err != nil {
		t.Fatal(err)
	}
	// The next start keeps the seed.
	sys = mustStartSystem(t, cfg)
	if again, _ := os.ReadFile(seedFile); !bytes.Equal(again, seed) {
		t.Error("the seed changed at the second start")
	}
	if sys.ns.CreatedSeed {
		t.Error("the second start says it created the seed")
	}
	nc, err := connectNATS(sys.ns.ClientURL(), natsAuth{NKey: seedFile})
	if err != nil {
		t.Fatalf("the seed of the first start no longer lets clients in: %v", err)
	}
	nc.Close()
}

// With --nats-user and --nats-password, the embedded server takes that user
// instead of an nkey, and refuses a wrong password.
func TestServe_NATSListenWithUserAndPassword(t *testing.T) {
	cfg := testServeConfig(t.TempDir())
	cfg.NATSListen = "127.0.0.1:-1"
	cfg.NATS = natsAuth{User: "ops", Password: "listen-password-0123"}
	sys := mustStartSystem(t, cfg)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, natsembed.DefaultNKeySeedFile)); err == nil {
		t.Error("a seed file was made although a user was given")
	}
	url := sys.ns.ClientURL()
	if nc, err := connectNATS(url, natsAuth{User: "ops", Password: "wrong"}); err == nil {
		nc.Close()
		t.Error("a wrong password got in")
	}
	nc, err := connectNATS(url, cfg.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.Stream(context.Background(), streams.Events); err != nil {
		t.Errorf("the user cannot reach JetStream: %v", err)
	}
}

// The NATS URL's password (or token) shows neither in the start-up log nor
// in any connect error, however the URL is wrong.
func TestConnectNATS_NeverShowsThePassword(t *testing.T) {
	ext := startExternalNATS(t)
	host := strings.TrimPrefix(ext.ClientURL(), "nats://")
	const secret = "s3cret-in-url-9876"

	// Start-up log of a process given the password in the URL.
	var logs bytes.Buffer
	cfg := testServeConfig(t.TempDir())
	cfg.Roles = roles{Worker: true}
	cfg.NATSURL = "nats://" + externalAuth.User + ":" + externalAuth.Password + "@" + host
	sys, err := startSystem(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sys.Close()
	if strings.Contains(logs.String(), externalAuth.Password) {
		t.Errorf("the log shows the URL's password:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "nats://"+externalAuth.User+":REDACTED@"+host) {
		t.Errorf("the log does not name the server:\n%s", logs.String())
	}

	for name, url := range map[string]string{
		"wrong password":     "nats://" + externalAuth.User + ":" + secret + "@" + host,
		"token":              "nats://" + secret + "@" + host,
		"nothing listening":  "nats://u:" + secret + "@127.0.0.1:1",
		"unparsable port":    "nats://u:" + secret + "@127.0.0.1:port",
		"second of a list":   ext.ClientURL() + ",nats://u:" + secret + "@bad host:4222",
		"password flag only": "nats://" + host,
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testServeConfig(t.TempDir())
			cfg.Roles = roles{Worker: true}
			cfg.NATSURL = url
			if name == "password flag only" {
				cfg.NATS = natsAuth{User: externalAuth.User, Password: secret}
			}
			var logs bytes.Buffer
			sys, err := startSystem(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
			if err == nil {
				sys.Close()
				t.Fatal("connected")
			}
			for what, s := range map[string]string{"error": err.Error(), "log": logs.String()} {
				if strings.Contains(s, secret) {
					t.Errorf("the %s shows the secret: %s", what, s)
				}
			}
			if !strings.Contains(err.Error(), "connect to NATS") {
				t.Errorf("error %q does not say what failed", err)
			}
		})
	}
	// publish --nats-url says the same.
	var errOut bytes.Buffer
	err = run(context.Background(), []string{"publish", "--nats-url", "nats://u:" + secret + "@127.0.0.1:1", "--tenant", "t", "--type", "call.started"}, io.Discard, &errOut)
	if err == nil || strings.Contains(err.Error(), secret) || strings.Contains(errOut.String(), secret) {
		t.Errorf("publish: %v %s", err, errOut.String())
	}
}

// Every NATS credential and TLS flag has its variable, and conflicting ones
// are refused, each named.
func TestRun_NATSAuthFlags(t *testing.T) {
	for _, sub := range []string{"serve", "registry", "worker", "publish"} {
		flags := helpFlags(t, sub)
		for _, f := range []string{"nats-creds", "nats-nkey", "nats-user", "nats-password", "nats-tls-ca", "nats-tls-cert", "nats-tls-key"} {
			if want := envName(f); flags[f] != want {
				t.Errorf("%s --%s: variable %q, want %s", sub, f, flags[f], want)
			}
		}
	}
	err := run(context.Background(), []string{"worker", "--nats-url", "nats://127.0.0.1:1", "--nats-creds", "a.creds", "--nats-user", "u",
		"--nats-tls-cert", "c.pem"}, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("worker started with conflicting NATS settings")
	}
	for _, want := range []string{"--nats-creds, --nats-nkey and --nats-user/--nats-password are alternatives", "--nats-user and --nats-password go together", "--nats-tls-cert and --nats-tls-key go together"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	err = run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--nats-tls-ca", "ca.pem", "--nats-creds", "x.creds"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--nats-tls-* need --nats-url") || !strings.Contains(err.Error(), "--nats-creds needs --nats-url") {
		t.Errorf("serve with TLS flags and no --nats-url: %v", err)
	}
}

// --nats-tls-cert and --nats-tls-key present a client certificate to a
// server that verifies clients; without them it refuses the connection.
func TestConnectNATS_ClientCertificate(t *testing.T) {
	secrets := filepath.Join(genSecrets(t), "secrets")
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: filepath.Join(secrets, "nats.pem"), KeyFile: filepath.Join(secrets, "nats-key.pem"),
		CaFile: filepath.Join(secrets, "ca.pem"), Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, TLSConfig: tc, TLSVerify: true, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	url := strings.Replace(ns.ClientURL(), "127.0.0.1", "localhost", 1)
	auth := natsAuth{TLSCA: filepath.Join(secrets, "ca.pem")}
	if nc, err := connectNATS(url, auth); err == nil {
		nc.Close()
		t.Error("connected without a client certificate")
	}
	auth.TLSCert, auth.TLSKey = filepath.Join(secrets, "nats.pem"), filepath.Join(secrets, "nats-key.pem")
	nc, err := connectNATS(url, auth)
	if err != nil {
		t.Fatalf("with --nats-tls-cert and --nats-tls-key: %v", err)
	}
	nc.Close()
}
