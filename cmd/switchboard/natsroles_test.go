package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/streams"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
	"github.com/switchboard-hq/switchboard/registry/store"
	"github.com/switchboard-hq/switchboard/signer"
)

// natsNode is a real nats-server process running deploy/nats's node
// configuration, alone, with the secrets deploy/gen-secrets.sh made.
type natsNode struct {
	url     string
	secrets string            // the folder gen-secrets.sh wrote
	env     map[string]string // its .env
	log     *lockedBuffer     // the server's output
}

func (n *natsNode) caFile() string { return filepath.Join(n.secrets, "secrets", "ca.pem") }

// auth is what a Switchboard process of role (registry, worker) is given.
func (n *natsNode) auth(role string) natsAuth {
	return natsAuth{User: role, Password: n.env["SB_NATS_"+strings.ToUpper(role)+"_PASSWORD"], TLSCA: n.caFile()}
}

// connect connects as user with password over TLS, with opts. The
// refusals the test provokes are not printed (nats.go's default).
func (n *natsNode) connect(t *testing.T, user, password string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}, opts...)
	nc, err := connectNATS(n.url, natsAuth{User: user, Password: password, TLSCA: n.caFile()}, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startNATSNode runs deploy/nats/n1.conf without its cluster block (one
// node has no quorum), on free ports in a temporary folder, with
// deploy/nats/auth.conf where TENANT_ID is tenant. Everything else, the
// TLS and the permissions, is the shipped files' own.
func startNATSNode(t *testing.T, tenant string) *natsNode {
	t.Helper()
	bin := testenv.Tool(t, "nats-server")
	dir := t.TempDir()
	gen := exec.Command("sh", filepath.Join(deployDir, "gen-secrets.sh"), dir)
	gen.Env = append(os.Environ(), "SB_NATS_HOSTS=localhost")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
	}
	env := readEnvFile(t, filepath.Join(dir, ".env"))

	auth, err := os.ReadFile(filepath.Join(deployDir, "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), bytes.ReplaceAll(auth, []byte("TENANT_ID"), []byte(tenant)), 0o600); err != nil {
		t.Fatal(err)
	}
	node, err := os.ReadFile(filepath.Join(deployDir, "nats", "n1.conf"))
	if err != nil {
		t.Fatal(err)
	}
	port, monitor := freePort(t), freePort(t)
	conf := regexp.MustCompile(`(?ms)^cluster \{.*?^\}\n`).ReplaceAllString(string(node), "")
	for old, repl := range map[string]string{
		"listen: 127.0.0.1:4231": fmt.Sprintf("listen: 127.0.0.1:%d", port),
		"http: 127.0.0.1:8221":   fmt.Sprintf("http: 127.0.0.1:%d", monitor),
		`store_dir: "./data/n1"`: fmt.Sprintf("store_dir: %q", filepath.Join(dir, "store")),
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("deploy/nats/n1.conf has no %q any more: update this test", old)
		}
		conf = strings.ReplaceAll(conf, old, repl)
	}
	if strings.Contains(conf, "cluster {") {
		t.Fatal("could not take the cluster block out of n1.conf")
	}
	confPath := filepath.Join(dir, "node.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	n := &natsNode{url: fmt.Sprintf("nats://localhost:%d", port), secrets: dir, env: env, log: &lockedBuffer{}}
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"),
		"SB_NATS_TLS_CERT=" + filepath.Join(dir, "secrets", "nats.pem"),
		"SB_NATS_TLS_KEY=" + filepath.Join(dir, "secrets", "nats-key.pem"),
		"SB_NATS_TLS_CA=" + n.caFile()}
	for k, v := range env {
		if strings.HasPrefix(k, "SB_NATS_") {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server output:\n%s", n.log.String())
		}
	})
	testenv.WaitFor(t, 20*time.Second, "nats-server healthy", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", monitor))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return n
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// TestNATSRoles runs the registry, a worker and a producer as the users of
// deploy/nats/auth.conf on a real nats-server over TLS: an event published
// by the producer and a replayed dead letter reach a receiver. Then each
// forbidden action is tried and refused: the worker writing the webhook
// bucket or deleting, purging or changing a stream; the registry queueing
// a delivery, directly or through a schedule; the producer publishing
// another tenant's events or reading others' messages; clients without
// credentials or without TLS.
func TestNATSRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The default tenant's id names the producer's user: make it first.
	regDir := t.TempDir()
	db, err := store.Open(filepath.Join(regDir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	tenant, _, err := store.Bootstrap(ctx, db, testKey)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	node := startNATSNode(t, tenant.ID)

	var failing sync.Map // event ids the receiver answers 500
	recv := testenv.StartReceiver(t, func(r *http.Request, _ []byte) int {
		if _, ok := failing.Load(r.Header.Get(signer.HeaderID)); ok {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})

	// The registry and a worker, each as its own user.
	regCfg := testServeConfig(regDir)
	regCfg.Roles = roles{Registry: true}
	regCfg.NATSURL = node.url
	regCfg.NATS = node.auth("registry")
	regCfg.EncryptionKey = node.env["SWITCHBOARD_ENCRYPTION_KEY"]
	// A worker first, as a cluster may see it: it creates the streams.
	wrkCfg := testServeConfig(t.TempDir())
	wrkCfg.Roles = roles{Worker: true}
	wrkCfg.NATSURL = node.url
	wrkCfg.NATS = node.auth("worker")
	wrkCfg.EncryptionKey = regCfg.EncryptionKey
	var asyncErrs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&asyncErrs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("switchboard warnings:\n%s", asyncErrs.String())
		}
	})
	worker, err := startSystem(ctx, wrkCfg, logger)
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	t.Cleanup(func() { worker.Close() })
	reg, err := startSystem(ctx, regCfg, logger)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	t.Cleanup(func() { reg.Close() })
	api := apiClient{url: reg.URL, key: testKey}
	whID, err := api.createWebhook(ctx, map[string]any{"name": "n", "url": recv.URL, "events": []string{"*"}, "max_retries": 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.waitForWebhooks(ctx, []string{whID}); err != nil {
		t.Fatal(err)
	}

	// The producer, with the Go client as an upstream service uses it.
	prodUser, prodPassword := "producer-"+tenant.ID, node.env["SB_NATS_PRODUCER_PASSWORD"]
	var prodErrs lockedBuffer
	prodNC := node.connect(t, prodUser, prodPassword, nats.CustomInboxPrefix("_INBOX_"+tenant.ID),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { fmt.Fprintln(&prodErrs, err) }))
	prodJS, err := jetstream.New(prodNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := producer.New(prodJS).Publish(ctx, &switchboard.Event{ID: "evt_producer", TenantID: tenant.ID, Type: "call.started", Data: []byte(`{}`)}); err != nil {
		t.Fatalf("producer publish: %v", err)
	}
	testenv.WaitFor(t, 20*time.Second, "the producer's event delivered", func() bool { return recv.CountByID()["evt_producer"] == 1 })

	// switchboard publish --nats-url, with the producer's flags.
	var out bytes.Buffer
	err = run(ctx, []string{"publish", "--nats-url", node.url, "--nats-user", prodUser, "--nats-password", prodPassword,
		"--nats-tls-ca", node.caFile(), "--tenant", tenant.ID, "--type", "call.ended", "--id", "evt_cli"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("publish --nats-url as the producer: %v", err)
	}
	testenv.WaitFor(t, 20*time.Second, "the published event delivered", func() bool { return recv.CountByID()["evt_cli"] == 1 })

	// A failed delivery is dead-lettered (no retries) and replayed by the
	// registry through its replay subject.
	failing.Store("evt_dead", true)
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"id": "evt_dead", "type": "call.started", "data": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	deadLetterOf := func(event string) (id, reason string) {
		var list struct {
			Data []struct {
				ID      string `json:"id"`
				EventID string `json:"event_id"`
				Reason  string `json:"reason"`
			} `json:"data"`
		}
		if err := api.do(ctx, http.MethodGet, "/v1/dead-letters", nil, &list); err != nil {
			t.Fatal(err)
		}
		for _, d := range list.Data {
			if d.EventID == event {
				return d.ID, d.Reason
			}
		}
		return "", ""
	}
	var dlID string
	testenv.WaitFor(t, 20*time.Second, "the failed delivery dead-lettered", func() bool {
		dlID, _ = deadLetterOf("evt_dead")
		return dlID != ""
	})
	failing.Delete("evt_dead")
	if err := api.do(ctx, http.MethodPost, "/v1/dead-letters/replay", map[string]any{"ids": []string{dlID}}, nil); err != nil {
		t.Fatalf("replay as the registry: %v", err)
	}
	testenv.WaitFor(t, 20*time.Second, "the replay delivered", func() bool { return recv.CountByID()["evt_dead"] == 2 })
	// A failed attempt is retried through a schedule on sb.retry.
	var retried sync.Map
	recv2 := testenv.StartReceiver(t, func(r *http.Request, _ []byte) int {
		if _, again := retried.LoadOrStore(r.Header.Get(signer.HeaderID), true); again {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	retryWH, err := api.createWebhook(ctx, map[string]any{"name": "retried", "url": recv2.URL, "events": []string{"agent.presence_changed"}, "max_retries": 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.waitForWebhooks(ctx, []string{retryWH}); err != nil {
		t.Fatal(err)
	}
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"id": "evt_retry", "type": "agent.presence_changed", "data": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the retry delivered", func() bool { return recv2.CountByID()["evt_retry"] == 2 })

	// Recover reads SB_EVENTS and queues what has no delivered attempt;
	// every event so far was delivered, so it queues none.
	var recovered struct {
		Queued int `json:"queued"`
	}
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if err := api.do(ctx, http.MethodPost, "/v1/webhooks/"+whID+"/recover?since="+since, nil, &recovered); err != nil {
		t.Errorf("recover as the registry: %v", err)
	}

	// The audit reads SB_EVENTS, SB_DELIVERIES, SB_DEAD and the attempt
	// records' consumer.
	if err := api.do(ctx, http.MethodGet, "/v1/audit?since=1h", nil, nil); err != nil {
		t.Errorf("audit as the registry: %v", err)
	}

	// Deleting a tenant purges its dead letters from SB_DEAD.
	var gone struct {
		ID string `json:"id"`
	}
	if err := api.do(ctx, http.MethodPost, "/v1/tenants", map[string]any{"name": "gone"}, &gone); err != nil {
		t.Fatal(err)
	}
	goneDead := streams.DeadSubject(gone.ID, "wh_gone")
	if _, err := wrkJS0(t, node).Publish(ctx, goneDead, []byte(`{}`)); err != nil {
		t.Fatalf("dead letter as the worker: %v", err)
	}
	if err := api.do(ctx, http.MethodDelete, "/v1/tenants/"+gone.ID, nil, nil); err != nil {
		t.Errorf("delete a tenant as the registry: %v", err)
	}

	// What each role may not do. A refused request either fails with a
	// permissions violation or gets no answer; either way nothing changes,
	// which an allowed reader then checks.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }
	refused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: allowed", what)
		}
	}
	regNC := node.connect(t, "registry", node.env["SB_NATS_REGISTRY_PASSWORD"])
	regJS, _ := jetstream.New(regNC)
	regKV, err := regJS.KeyValue(ctx, streams.WebhooksBucket)
	if err != nil {
		t.Fatal(err)
	}
	wrkNC := node.connect(t, "worker", node.env["SB_NATS_WORKER_PASSWORD"])
	wrkJS, _ := jetstream.New(wrkNC)

	if dead, err := regJS.Stream(ctx, streams.Dead); err != nil {
		t.Fatal(err)
	} else if _, err := dead.GetLastMsgForSubject(ctx, goneDead); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the deleted tenant's dead letter is still in SB_DEAD: %v", err)
	}

	t.Run("worker", func(t *testing.T) {
		kv, err := wrkJS.KeyValue(ctx, streams.WebhooksBucket)
		if err != nil {
			t.Fatalf("the worker cannot open the bucket it reads: %v", err)
		}
		c, done := short()
		_, err = kv.Put(c, "wh_forged", []byte(`{}`))
		done()
		refused("worker KV put", err)
		c, done = short()
		err = kv.Delete(c, whID)
		done()
		refused("worker KV delete", err)
		if _, err := regKV.Get(ctx, "wh_forged"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("the worker's put reached the bucket: %v", err)
		}
		if _, err := regKV.Get(ctx, whID); err != nil {
			t.Errorf("the worker's delete reached the bucket: %v", err)
		}
		for _, name := range []string{streams.Events, streams.Deliveries, "KV_" + streams.WebhooksBucket} {
			c, done := short()
			refused("worker delete stream "+name, wrkJS.DeleteStream(c, name))
			done()
			c, done = short()
			_, err := wrkJS.UpdateStream(c, jetstream.StreamConfig{Name: name, Subjects: []string{"forged.>"}})
			done()
			refused("worker update stream "+name, err)
		}
		s, err := wrkJS.Stream(ctx, streams.Events)
		if err != nil {
			t.Fatal(err)
		}
		c, done = short()
		refused("worker purge SB_EVENTS", s.Purge(c))
		done()
		info, err := regJS.Stream(ctx, streams.Events)
		if err != nil || info.CachedInfo().State.Msgs < 3 {
			t.Errorf("SB_EVENTS after the worker's delete and purge: %v, %+v", err, info)
		}
	})

	t.Run("registry", func(t *testing.T) {
		c, done := short()
		_, err := regJS.Publish(c, streams.DeliverySubject(whID), []byte(`{"id":"evt_forged"}`), jetstream.WithMsgID("forged"))
		done()
		refused("registry publish to "+streams.DeliverySubject(whID), err)
		// A replay scheduled to fire as a delivery: JetStream would
		// publish it, so the deliverer must refuse it.
		m := nats.NewMsg(streams.ReplaySubject(whID))
		m.Header.Set(streams.HeaderEventID, "evt_scheduled")
		m.Header.Set(streams.HeaderTenant, tenant.ID)
		m.Data = []byte(`{"id":"evt_scheduled"}`)
		if _, err := regJS.PublishMsg(ctx, m, jetstream.WithScheduleAt(time.Now().Add(time.Second)),
			jetstream.WithScheduleTarget(streams.DeliverySubject(whID))); err != nil {
			t.Logf("a scheduled replay was refused outright: %v", err)
		} else {
			var reason string
			testenv.WaitFor(t, 20*time.Second, "the scheduled replay dead-lettered", func() bool {
				_, reason = deadLetterOf("evt_scheduled")
				return reason != ""
			})
			if reason != "malformed" {
				t.Errorf("the scheduled replay was dead-lettered as %q, want malformed", reason)
			}
		}
		if n := recv.CountByID()["evt_scheduled"]; n != 0 {
			t.Errorf("a delivery the registry scheduled reached the receiver %d times", n)
		}
		c, done = short()
		refused("registry delete stream SB_DEAD", regJS.DeleteStream(c, streams.Dead))
		done()
	})

	t.Run("producer", func(t *testing.T) {
		other := streams.EventSubject("ten_other", "call.started")
		c, done := short()
		_, err := prodJS.Publish(c, other, []byte(`{}`))
		done()
		refused("producer publish to "+other, err)
		for _, subject := range []string{streams.EventsPrefix + ">", "_INBOX.>", streams.DeliveriesPrefix + ">"} {
			before := len(prodErrs.String())
			sub, err := prodNC.SubscribeSync(subject)
			if err == nil {
				prodNC.Flush()
				testenv.WaitFor(t, 5*time.Second, "the server refusing the subscription to "+subject, func() bool {
					return strings.Contains(strings.ToLower(prodErrs.String()[before:]), "permissions violation")
				})
				sub.Unsubscribe()
			}
		}
		s, err := regJS.Stream(ctx, streams.Events)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetLastMsgForSubject(ctx, other); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("the producer's event for another tenant was stored: %v", err)
		}
		c, done = short()
		_, err = prodJS.Stream(c, streams.Events)
		done()
		refused("producer JetStream API", err)
	})

	t.Run("anonymous", func(t *testing.T) {
		nc, err := nats.Connect(node.url, nats.RootCAs(node.caFile()))
		if err == nil {
			nc.Close()
		}
		refused("connect without credentials", err)
		a := node.auth("worker")
		a.TLSCA = ""
		nc, err = connectNATS(node.url, a)
		if err == nil {
			nc.Close()
		}
		refused("connect without the CA (no TLS trust)", err)
		nc, err = nats.Connect(node.url, nats.UserInfo("worker", node.env["SB_NATS_WORKER_PASSWORD"]), nats.RootCAs(node.caFile()))
		if err != nil {
			t.Errorf("the worker over TLS: %v", err)
		} else {
			nc.Close()
		}
	})

	if recv.CountByID()["evt_forged"] != 0 {
		t.Error("a forged delivery reached the receiver")
	}
	// Nothing the roles do by themselves in the background was refused.
	if strings.Contains(strings.ToLower(asyncErrs.String()), "permission") {
		t.Errorf("a role of Switchboard was refused what it needs:\n%s", asyncErrs.String())
	}
}

// wrkJS0 is JetStream as the worker's user.
func wrkJS0(t *testing.T, node *natsNode) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(node.connect(t, "worker", node.env["SB_NATS_WORKER_PASSWORD"]))
	if err != nil {
		t.Fatal(err)
	}
	return js
}
