package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/testenv"
	"github.com/switchboard-hq/switchboard/signer"
)

const examplesDir = "../../docs/examples"

// exampleReceiver is one of docs/examples' receivers, running as a process.
type exampleReceiver struct {
	name string
	url  string
	out  *lockedBuffer
}

// startExample starts cmd (an example receiver) listening on a free
// loopback port with secret, and waits until it says it listens.
func startExample(t *testing.T, name string, cmd *exec.Cmd, secret string) *exampleReceiver {
	t.Helper()
	addr := freeAddr(t)
	out := &lockedBuffer{}
	cmd.Env = append(cmd.Environ(), "WEBHOOK_SECRET="+secret, "LISTEN="+addr)
	exited := startProcess(t, name, cmd, out, 10*time.Second)
	testenv.WaitFor(t, 30*time.Second, name+" listening", func() bool {
		select {
		case <-exited:
			t.Fatalf("%s exited:\n%s", name, out.String())
		default:
		}
		return strings.Contains(out.String(), "listening on "+addr)
	})
	return &exampleReceiver{name: name, url: "http://" + addr + "/webhooks", out: out}
}

// post sends body to r signed with secret as message id, and returns the
// status.
func (r *exampleReceiver) post(t *testing.T, secret, id string, body []byte) int {
	t.Helper()
	s, err := signer.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	s.SetHeaders(req.Header, id, time.Now(), body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReceiverExamples runs the Go, Node and Python receivers that
// docs/receivers.md shows, each with its Standard Webhooks library, against
// real deliveries from a running system: each verifies and handles the
// event, refuses a request signed with another secret, and treats a second
// request with the same webhook-id as a duplicate. The doc must show each
// file as it is.
func TestReceiverExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/receivers.md")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := signer.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	goBin := filepath.Join(dir, "receiver-go")
	build := exec.Command(testenv.Tool(t, "go"), "build", "-o", goBin, "./receiver-go")
	build.Dir = examplesDir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the Go example: %v\n%s", err, out)
	}
	nodeDir := filepath.Join(examplesDir, "receiver-node")
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "standardwebhooks")); err != nil {
		t.Fatalf("the Node example's dependencies are not installed: `make test` installs them (npm ci in %s)", nodeDir)
	}
	node := exec.Command(testenv.Tool(t, "node"), "server.js")
	node.Dir = nodeDir
	python := exec.Command(testenv.Tool(t, "python3"), "server.py")
	python.Dir = filepath.Join(examplesDir, "receiver-python")
	python.Env = append(os.Environ(), "PYTHONPATH="+pythonStandardWebhooks(t))

	receivers := []*exampleReceiver{
		startExample(t, "receiver-go", exec.Command(goBin), secret),
		startExample(t, "receiver-node", node, secret),
		startExample(t, "receiver-python", python, secret),
	}
	for _, file := range []string{"receiver-go/main.go", "receiver-node/server.js", "receiver-python/server.py"} {
		src, err := os.ReadFile(filepath.Join(examplesDir, file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(doc, src) {
			t.Errorf("docs/receivers.md does not show docs/examples/%s as it is", file)
		}
	}

	sys := mustStartSystem(t, testServeConfig(t.TempDir()))
	ctx := context.Background()
	api := apiClient{url: sys.URL, key: testKey}
	var ids []string
	for _, r := range receivers {
		id, err := api.createWebhook(ctx, map[string]any{"name": r.name, "url": r.url, "events": []string{"call.*"}, "secret": secret})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := sys.waitForWebhooks(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if err := api.do(ctx, http.MethodPost, "/v1/events", map[string]any{
		"id": "evt-receivers-1", "type": "call.started", "agent_id": "agent-7", "data": map[string]any{"call_id": "c-42"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	other, err := signer.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range receivers {
		t.Run(r.name, func(t *testing.T) {
			testenv.WaitFor(t, 20*time.Second, r.name+" handled the delivery", func() bool {
				return strings.Contains(r.out.String(), "handled evt-receivers-1 ")
			})
			if !strings.Contains(r.out.String(), `"call_id":"c-42"`) && !strings.Contains(r.out.String(), `"call_id": "c-42"`) {
				t.Errorf("%s did not print the event's data:\n%s", r.name, r.out.String())
			}
			body := []byte(`{"id":"evt-receivers-2","type":"call.ended","timestamp":"2026-01-02T03:04:05Z","data":{}}`)
			if got := r.post(t, other, "evt-receivers-2", body); got != http.StatusUnauthorized {
				t.Errorf("signed with another secret: %d, want 401", got)
			}
			for i := range 2 {
				if got := r.post(t, secret, "evt-receivers-2", body); got != http.StatusNoContent {
					t.Errorf("request %d: %d, want 204", i+1, got)
				}
			}
			testenv.WaitFor(t, 10*time.Second, r.name+" saw the duplicate", func() bool {
				return strings.Contains(r.out.String(), "duplicate evt-receivers-2")
			})
			if n := strings.Count(r.out.String(), "handled evt-receivers-2 "); n != 1 {
				t.Errorf("evt-receivers-2 handled %d times, want once", n)
			}
		})
	}
}

// pythonStandardWebhooks returns the folder holding the Python package
// standardwebhooks. PyPI is out of reach here, but the Go module of the
// Standard Webhooks libraries, which Switchboard's tests already use,
// carries the same package's source in its python/ folder.
func pythonStandardWebhooks(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "go"), "list", "-m", "-f", "{{.Dir}}", "github.com/standard-webhooks/standard-webhooks/libraries")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list the Standard Webhooks module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "python")
	if _, err := os.Stat(filepath.Join(dir, "standardwebhooks", "webhooks.py")); err != nil {
		t.Fatalf("no Python package in the Standard Webhooks module: %v", err)
	}
	return dir
}

// freeAddr returns a loopback address with a port free a moment ago, for a
// process that must be told where to listen.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess starts cmd with its output in out and, when the test ends,
// stops it with SIGTERM (SIGKILL after grace), printing out if the test
// failed. The returned channel is closed once cmd has exited.
func startProcess(t *testing.T, name string, cmd *exec.Cmd, out *lockedBuffer, grace time.Duration) <-chan struct{} {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s printed:\n%s", name, out.String())
		}
	})
	return exited
}
