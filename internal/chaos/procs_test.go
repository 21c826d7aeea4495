package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The binaries the tests run: switchboard is built once per test binary
// into tmpDir; nats-server is the one `make test` installs into bin/.
var (
	tmpDir string

	buildOnce      sync.Once
	switchboardBin string
	buildErr       error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "switchboard-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testContext makes sure both binaries are there, then returns a context
// that bounds the test to d: the build is not counted.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	natsServer(t)
	buildSwitchboard(t)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// repoRoot is the folder holding go.mod, above the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// buildSwitchboard returns the path of the switchboard binary, building it on
// first use.
func buildSwitchboard(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		bin := filepath.Join(tmpDir, "switchboard")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/switchboard")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/switchboard: %w\n%s", err, out)
			return
		}
		switchboardBin = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return switchboardBin
}

// natsServer returns the path of the nats-server binary: bin/nats-server
// under the repository root, or one on PATH.
func natsServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "bin", "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	t.Fatalf("no nats-server in %s or on PATH: run make test (it installs nats-server)", bin)
	return ""
}

// proc is a process a test started. Its output goes to a log file, shown
// when the test fails; lines of its standard output are also kept so the
// test can read what it printed (the URL it listens on).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once the process has exited
	err  error         // its exit status, once done is closed

	mu    sync.Mutex
	lines []string
	seen  chan struct{} // signalled on every stdout line
}

// startProc starts bin with args; the test's end kills it if still alive.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, log: logPath, done: make(chan struct{}), seen: make(chan struct{}, 1)}
	p.cmd = exec.Command(bin, args...)
	// Only what the test sets: no SWITCHBOARD_* of the environment.
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	p.cmd.Stderr = logFile
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		<-copied // Wait closes the pipe: read it all first
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s's log (last 4 KiB):\n%s", name, tail(b, 4096))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill %s: %v", p.name, err)
	}
	<-p.done
}

// exited waits for the process to end by itself, up to ctx's deadline,
// and returns everything it wrote and its exit error.
func (p *proc) exited(ctx context.Context, t *testing.T) (string, error) {
	t.Helper()
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatalf("%s did not exit: %v", p.name, ctx.Err())
	}
	b, _ := os.ReadFile(p.log)
	return string(b), p.err
}

// line waits for a line of standard output starting with prefix (after
// spaces) and returns the rest of it, trimmed.
func (p *proc) line(ctx context.Context, t *testing.T, prefix string) string {
	t.Helper()
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
				p.mu.Unlock()
				return strings.TrimSpace(rest)
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.err, prefix, tail(b, 4096))
		case <-ctx.Done():
			t.Fatalf("%s did not print %q: %v", p.name, prefix, ctx.Err())
		}
	}
}

// eventually polls cond every 20 ms until it holds, failing the test when
// ctx ends first.
func eventually(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePorts returns n TCP ports on 127.0.0.1 free at the time of asking.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	var lns []net.Listener
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// natsNode is one nats-server process with its configuration file, which
// it keeps across restarts (same ports, same store).
type natsNode struct {
	name      string
	conf      string
	clientURL string
	monitor   string // base URL of the monitoring endpoint
	proc      *proc
}

const natsSingleConf = `server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: %q }
max_payload: 8MB
`

// The cluster's nodes are configured as deploy/nats/n*.conf, on free
// ports and in temporary folders.
const natsClusterConf = `server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: switchboard
  listen: 127.0.0.1:%d
  routes: [%s]
}
max_payload: 8MB
`

// startNATS starts one nats-server with JetStream in a temporary store.
func startNATS(ctx context.Context, t *testing.T) *natsNode {
	t.Helper()
	ports := freePorts(t, 2)
	dir := t.TempDir()
	n := &natsNode{name: "nats", conf: filepath.Join(dir, "nats.conf"),
		clientURL: fmt.Sprintf("nats://127.0.0.1:%d", ports[0]), monitor: fmt.Sprintf("http://127.0.0.1:%d", ports[1])}
	conf := fmt.Sprintf(natsSingleConf, n.name, ports[0], ports[1], filepath.Join(dir, "store"))
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n.start(ctx, t)
	return n
}

// startNATSCluster starts three nats-servers routed to each other and
// waits until JetStream answers on each.
func startNATSCluster(ctx context.Context, t *testing.T) []*natsNode {
	t.Helper()
	ports := freePorts(t, 9)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[6+i]))
	}
	nodes := make([]*natsNode, 3)
	for i := range nodes {
		dir := t.TempDir()
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), conf: filepath.Join(dir, "nats.conf"),
			clientURL: fmt.Sprintf("nats://127.0.0.1:%d", ports[i]), monitor: fmt.Sprintf("http://127.0.0.1:%d", ports[3+i])}
		conf := fmt.Sprintf(natsClusterConf, n.name, ports[i], ports[3+i], filepath.Join(dir, "store"), ports[6+i], strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n.proc = startProc(t, n.name, natsServer(t), "-c", n.conf)
		nodes[i] = n
	}
	for _, n := range nodes {
		n.waitHealthy(ctx, t)
	}
	return nodes
}

// start starts (or starts again) the node and waits until it is healthy.
func (n *natsNode) start(ctx context.Context, t *testing.T) {
	t.Helper()
	n.proc = startProc(t, n.name, natsServer(t), "-c", n.conf)
	n.waitHealthy(ctx, t)
}

// waitHealthy waits until the node's /healthz says JetStream is ready.
func (n *natsNode) waitHealthy(ctx context.Context, t *testing.T) {
	t.Helper()
	eventually(ctx, t, n.name+" healthy", func() bool {
		return httpStatus(ctx, n.monitor+"/healthz") == http.StatusOK
	})
}

func clusterURL(nodes []*natsNode) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.clientURL
	}
	return strings.Join(urls, ",")
}

// httpStatus is the status of a GET of url, 0 when there is no answer.
func httpStatus(ctx context.Context, url string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	return resp.StatusCode
}

// httpGet returns the body of a 200 answer to a GET of url.
func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return b, err
}
