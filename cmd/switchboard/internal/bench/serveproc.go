package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// envPrefix starts the name of every environment variable a switchboard
// binary reads (SWITCHBOARD_DATA_DIR...).
const envPrefix = "SWITCHBOARD_"

// serveProcess is a `switchboard serve` run by the outage bench.
type serveProcess struct {
	cmd     *exec.Cmd
	pid     int
	api     api
	logPath string
	exited  chan struct{}
}

// startServe runs bin serve with its data under dir/data, on a free
// loopback port, with an API key of its default tenant made up here. The
// environment loses every SWITCHBOARD_ variable, so that the process runs
// on its defaults.
func startServe(ctx context.Context, bin, dir string) (*serveProcess, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	var b [16]byte
	rand.Read(b[:])
	key := "sk_outage_" + hex.EncodeToString(b[:])
	logPath := filepath.Join(dir, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--api-key", key, "--allow-private-targets", "--api-rate-limit", "0")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envPrefix) })
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	p := &serveProcess{
		cmd: cmd, pid: cmd.Process.Pid, logPath: logPath, exited: make(chan struct{}),
		api: api{url: "http://" + addr, key: key, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}},
	}
	go func() { cmd.Wait(); close(p.exited) }()
	return p, nil
}

// stop interrupts the process, as an operator's Ctrl-C, and kills it if it
// has not drained within 30 s.
func (p *serveProcess) stop(stderr io.Writer) {
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(stderr, "bench outage: serve did not stop within 30s of SIGINT; killed")
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitReady waits up to a minute for the process's /readyz.
func waitReady(ctx context.Context, p *serveProcess) error {
	deadline := time.After(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.api.url+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := p.api.hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-p.exited:
			return fmt.Errorf("serve exited before it was ready; see %s", p.logPath)
		case <-deadline:
			return fmt.Errorf("serve not ready within a minute; see %s", p.logPath)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// receiver returns the URL of the webhook's receiver: a loopback port
// nothing listens on or, with --healthy, a server answering 204, which
// the returned closer (nil otherwise) stops.
func (c OutageConfig) receiver() (string, io.Closer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	url := "http://" + l.Addr().String() + "/"
	if !c.Healthy {
		return url, nil, l.Close()
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(l)
	return url, srv, nil
}

// dirSize is the size of the files under dir, in bytes.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// firstLine is the first line of a binary's `version`, with its newline.
func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	if line == "" {
		return "version unknown\n"
	}
	return line + "\n"
}
