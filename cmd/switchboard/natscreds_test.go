package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// jwtNATS is a real nats-server in operator (decentralised JWT) mode, the
// way NGS, Synadia Cloud and `nsc`-managed clusters run: it trusts one
// operator, knows one account (with JetStream) by its JWT, and lets in
// only users whose JWT that account signed.
type jwtNATS struct {
	url     string
	account nkeys.KeyPair
}

func startJWTNATS(t *testing.T) *jwtNATS {
	t.Helper()
	operator, _ := nkeys.CreateOperator()
	operatorPub, _ := operator.PublicKey()
	oc := jwt.NewOperatorClaims(operatorPub)
	oc.Name = "switchboard-test"
	operatorJWT, err := oc.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(operatorJWT)
	if err != nil {
		t.Fatal(err)
	}

	account, _ := nkeys.CreateAccount()
	accountPub, _ := account.PublicKey()
	ac := jwt.NewAccountClaims(accountPub)
	ac.Name = "SWITCHBOARD"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accountJWT, err := ac.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}

	// Operator mode with JetStream wants a system account.
	system, _ := nkeys.CreateAccount()
	systemPub, _ := system.PublicKey()
	sc := jwt.NewAccountClaims(systemPub)
	sc.Name = "SYS"
	systemJWT, err := sc.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}

	resolver := &server.MemAccResolver{}
	for pub, claim := range map[string]string{accountPub: accountJWT, systemPub: systemJWT} {
		if err := resolver.Store(pub, claim); err != nil {
			t.Fatal(err)
		}
	}
	opts := &server.Options{
		Host:             "127.0.0.1",
		Port:             -1,
		JetStream:        true,
		StoreDir:         t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{opClaims},
		AccountResolver:  resolver,
		SystemAccount:    systemPub,
		NoSigs:           true,
		NoLog:            true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server in operator mode not ready")
	}
	return &jwtNATS{url: ns.ClientURL(), account: account}
}

// creds writes a .creds file (user JWT and seed) of a user that signer
// signed, as `nsc generate creds` does.
func (n *jwtNATS) creds(t *testing.T, signer nkeys.KeyPair, name string) string {
	t.Helper()
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	uc.Name = name
	userJWT, err := uc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// --nats-creds against a server that issues .creds (operator mode): the
// registry and a worker of other processes connect with their own user's
// file and carry an event to its receiver; a user the trusted account did
// not sign is refused, and a worker given its file does not start.
func TestNATSCreds_OperatorMode(t *testing.T) {
	srv := startJWTNATS(t)
	recv := testenv.StartReceiver(t, nil)

	reg := testServeConfig(t.TempDir())
	reg.Roles = roles{Registry: true}
	reg.NATSURL = srv.url
	reg.NATS = natsAuth{Creds: srv.creds(t, srv.account, "registry")}
	registrySys := mustStartSystem(t, reg)

	wrk := testServeConfig(t.TempDir())
	wrk.Roles = roles{Worker: true}
	wrk.NATSURL = srv.url
	wrk.NATS = natsAuth{Creds: srv.creds(t, srv.account, "worker")}
	worker := mustStartSystem(t, wrk)
	testenv.WaitFor(t, 10*time.Second, "the worker ready", worker.ready)

	ctx := context.Background()
	api := apiClient{url: registrySys.URL, key: testKey}
	if _, err := api.createWebhook(ctx, map[string]any{"name": "n", "url": recv.URL, "events": []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		if err := api.do(ctx, "POST", "/v1/events", map[string]any{"id": "evt-" + strconv.Itoa(i), "type": "call.started", "data": map[string]any{"i": i}}, nil); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "every event delivered over the JWT users' connections", func() bool {
		return len(recv.CountByID()) == n
	})

	// A user signed by an account the operator never signed.
	stranger, _ := nkeys.CreateAccount()
	bad := srv.creds(t, stranger, "stranger")
	if nc, err := connectNATS(srv.url, natsAuth{Creds: bad}); err == nil {
		nc.Close()
		t.Fatal("a user of an untrusted account got in")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("untrusted user: %v, want an authorization violation", err)
	}
	badWorker := testServeConfig(t.TempDir())
	badWorker.Roles = roles{Worker: true}
	badWorker.NATSURL = srv.url
	badWorker.NATS = natsAuth{Creds: bad}
	startCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if sys, err := startSystem(startCtx, badWorker, slog.New(slog.DiscardHandler)); err == nil {
		sys.Close()
		t.Fatal("a worker with an untrusted user's .creds started")
	}
}
