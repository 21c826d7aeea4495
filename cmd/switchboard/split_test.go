package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/natsembed"
	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/producer"
)

// externalAuth is the user of the NATS startExternalNATS starts.
var externalAuth = natsAuth{User: "switchboard", Password: "external-nats-password"}

// startExternalNATS starts a NATS that the roles reach by URL, with no
// streams: whichever role starts first creates them. It requires
// externalAuth's user, as a listening server must.
func startExternalNATS(t *testing.T) *natsembed.Server {
	t.Helper()
	ext, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", ServerName: "external",
		Auth: natsembed.Auth{User: externalAuth.User, Password: externalAuth.Password}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ext.Shutdown)
	return ext
}

func testRoleConfig(t *testing.T, r roles, natsURL string) serveConfig {
	cfg := testServeConfig(t.TempDir())
	cfg.Roles = r
	cfg.NATSURL = natsURL
	cfg.NATS = externalAuth
	return cfg
}

// A worker started before any registry sets the streams up itself, and
// delivers for a registry that comes later; once the registry is gone, it
// goes on delivering from the webhooks it holds.
func TestWorker_StartsBeforeRegistryAndOutlivesIt(t *testing.T) {
	ext := startExternalNATS(t)
	recv := testenv.StartReceiver(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	worker := mustStartSystem(t, testRoleConfig(t, roles{Worker: true}, ext.ClientURL()))
	if worker.db != nil {
		t.Error("a worker opened a registry database")
	}
	reg := mustStartSystem(t, testRoleConfig(t, roles{Registry: true}, ext.ClientURL()))
	if reg.index != nil {
		t.Error("a registry runs workers")
	}
	api := apiClient{url: reg.URL, key: testKey}
	id, err := api.createWebhook(ctx, map[string]any{"name": "n", "url": recv.URL, "events": []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.waitForWebhooks(ctx, []string{id}); err != nil {
		t.Fatal(err)
	}
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{"id": "split-1", "type": "call.started", "data": map[string]any{}}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "delivery by the worker of an event ingested by the registry", func() bool {
		return recv.CountByID()["split-1"] == 1
	})
	// The registry serves no deliveries of its own, and the worker no API.
	if resp, err := http.Get(worker.URL + "/v1/webhooks"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusNotFound {
		t.Errorf("worker answers /v1/webhooks with %d, want 404", resp.StatusCode)
	}

	if err := reg.Close(); err != nil {
		t.Fatalf("close registry: %v", err)
	}
	nc, err := nats.Connect(ext.ClientURL(), externalAuth.options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	client := producer.New(js)
	if _, err := client.Publish(ctx, &switchboard.Event{ID: "split-2", TenantID: reg.Tenant, Type: "call.ended", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "delivery while the registry is down", func() bool {
		return recv.CountByID()["split-2"] == 1
	})
}

func TestRun_RegistryAndWorkerNeedNATSURL(t *testing.T) {
	for _, cmd := range []string{"registry", "worker"} {
		t.Run(cmd, func(t *testing.T) {
			err := run(context.Background(), []string{cmd, "--listen", "127.0.0.1:0", "--stream-replicas", "7"}, io.Discard, io.Discard)
			if err == nil {
				t.Fatalf("%s started without --nats-url", cmd)
			}
			for _, want := range []string{"--nats-url is required", "--stream-replicas must be 1 to 5"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q: %v", want, err)
				}
			}
		})
	}
}

// Each subcommand shows the flags of its roles, and only those.
func TestRun_HelpShowsEachRolesFlags(t *testing.T) {
	for _, tc := range []struct {
		cmd       string
		want, not []string
	}{
		{"serve", []string{"SWITCHBOARD_NATS_LISTEN", "SWITCHBOARD_API_KEY", "SWITCHBOARD_WORKERS", "SWITCHBOARD_STREAM_REPLICAS", "SWITCHBOARD_ACK_WAIT"}, nil},
		{"registry", []string{"SWITCHBOARD_NATS_URL", "SWITCHBOARD_API_KEY", "SWITCHBOARD_DATA_DIR", "SWITCHBOARD_STREAM_REPLICAS", "SWITCHBOARD_ALLOW_PRIVATE_TARGETS", "SWITCHBOARD_DISABLE_AFTER"},
			[]string{"SWITCHBOARD_WORKERS", "SWITCHBOARD_RETRY_", "SWITCHBOARD_NATS_LISTEN", "SWITCHBOARD_ACK_WAIT"}},
		{"worker", []string{"SWITCHBOARD_NATS_URL", "SWITCHBOARD_WORKERS", "SWITCHBOARD_RETRY_MULTIPLIER", "SWITCHBOARD_ACK_WAIT", "SWITCHBOARD_STREAM_REPLICAS", "SWITCHBOARD_ALLOW_PRIVATE_TARGETS", "127.0.0.1:8081"},
			[]string{"SWITCHBOARD_API_KEY", "SWITCHBOARD_DATA_DIR", "SWITCHBOARD_NATS_LISTEN", "SWITCHBOARD_DISABLE_AFTER"}},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			var helpOut bytes.Buffer
			if err := run(context.Background(), []string{tc.cmd, "--help"}, &helpOut, io.Discard); err == nil {
				t.Fatal("--help: want flag.ErrHelp")
			}
			help := helpOut.String()
			for _, s := range tc.want {
				if !strings.Contains(help, s) {
					t.Errorf("%s --help does not show %s", tc.cmd, s)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(help, s) {
					t.Errorf("%s --help shows %s, which is not its role's", tc.cmd, s)
				}
			}
		})
	}
}
