package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

const repoRoot = "../.."

// shBlock is a ```sh block of a doc: its commands (continuation lines
// joined, comments dropped) and the scenario a <!-- run: NAME --> comment
// before it assigns it to.
type shBlock struct {
	doc, run string
	lines    []string
}

func shBlocks(t *testing.T, doc string) []shBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, doc))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []shBlock
	var cur *shBlock
	run := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	pending := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "<!-- run: "):
			run = strings.TrimSuffix(strings.TrimPrefix(line, "<!-- run: "), " -->")
		case cur == nil && line == "```sh":
			cur = &shBlock{doc: doc, run: run}
			run = ""
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if l, ok := strings.CutSuffix(line, "\\"); ok {
				pending += l
				continue
			}
			cur.lines = append(cur.lines, pending+line)
			pending = ""
		case cur == nil && strings.TrimSpace(line) != "":
			run = ""
		}
	}
	return blocks
}

// splitEnv splits leading VAR=value words off a command.
func splitEnv(line string) (env []string, args []string) {
	f := strings.Fields(line)
	for len(f) > 0 && strings.Contains(f[0], "=") && !strings.HasPrefix(f[0], "-") {
		env = append(env, f[0])
		f = f[1:]
	}
	return env, f
}

// shell runs line with sh in dir and fails the test unless it succeeds.
func shell(t *testing.T, dir, line string, env ...string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return string(out)
}

// TestOperationsDoc runs or checks every command of docs/operations.md and
// docs/receivers.md. The backup and restore scenarios run against a real
// registry: a webhook created before the backup survives the restore, one
// created after it is gone from the registry and from the workers' index.
func TestOperationsDoc(t *testing.T) {
	fsets := &flagSets{t: t, subs: subcommands(t), cache: map[string]map[string]string{}}
	var blocks []shBlock
	for _, doc := range []string{"docs/operations.md", "docs/receivers.md", "docs/architecture.md", "deploy/kubernetes/README.md"} {
		blocks = append(blocks, shBlocks(t, doc)...)
	}
	scenarios := map[string][]string{}
	var static []shBlock
	for _, b := range blocks {
		if b.run != "" {
			scenarios[b.run] = append(scenarios[b.run], b.lines...)
		} else {
			static = append(static, b)
		}
	}
	if len(scenarios["backup"]) == 0 || len(scenarios["restore"]) == 0 {
		t.Fatalf("docs/operations.md has no backup or restore commands: %v", scenarios)
	}
	sqlite := testenv.Tool(t, "sqlite3")
	promtool := testenv.Tool(t, "promtool")
	toolPath := "PATH=" + filepath.Dir(sqlite) + string(os.PathListSeparator) + filepath.Dir(promtool) + string(os.PathListSeparator) + os.Getenv("PATH")

	// A running registry with data under dir/data, as in the doc.
	dir := t.TempDir()
	cfg := testServeConfig(filepath.Join(dir, "data"))
	sys := mustStartSystem(t, cfg)
	ctx := context.Background()
	api := apiClient{url: sys.URL, key: testKey}
	before, err := api.createWebhook(ctx, map[string]any{"name": "before", "url": "https://example.com/a", "events": []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range scenarios["backup"] {
		out := shell(t, dir, line, toolPath)
		if strings.Contains(line, "integrity_check") && strings.TrimSpace(out) != "ok" {
			t.Errorf("%s: %s", line, out)
		}
	}
	for _, copy := range []string{"backup/registry.db", "backup/registry-compact.db"} {
		out := shell(t, dir, `sqlite3 `+copy+` "SELECT id FROM webhooks"`, toolPath)
		if strings.TrimSpace(out) != before {
			t.Errorf("%s holds webhooks %q, want %s", copy, out, before)
		}
	}
	after, err := api.createWebhook(ctx, map[string]any{"name": "after", "url": "https://example.com/b", "events": []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.waitForWebhooks(ctx, []string{before, after}); err != nil {
		t.Fatal(err)
	}

	// The static commands, while the system runs (curl scrapes it).
	for _, b := range static {
		for _, line := range b.lines {
			t.Run(b.doc+": "+line, func(t *testing.T) {
				checkDocCommand(t, fsets, line, sys.URL, toolPath)
			})
		}
	}

	if err := sys.Close(); err != nil {
		t.Fatal(err)
	}
	for _, line := range scenarios["restore"] {
		shell(t, dir, line, toolPath)
	}
	sys = mustStartSystem(t, cfg)
	api.url = sys.URL
	if err := api.do(ctx, http.MethodGet, "/v1/webhooks/"+before, nil, nil); err != nil {
		t.Errorf("after the restore: %v", err)
	}
	if err := api.do(ctx, http.MethodGet, "/v1/webhooks/"+after, nil, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("after the restore, the webhook created after the backup: %v, want 404", err)
	}
	testenv.WaitFor(t, 10*time.Second, "workers follow the restored registry", func() bool {
		return sys.index.Has(before) && !sys.index.Has(after)
	})
}

// checkDocCommand runs a command of the docs or, for what cannot run here
// (docker, kubectl, helm), checks that what it names exists.
func checkDocCommand(t *testing.T, fsets *flagSets, line, sysURL, toolPath string) {
	env, args := splitEnv(line)
	if len(args) == 0 {
		t.Fatalf("empty command %q", line)
	}
	switch args[0] {
	case "switchboard":
		if len(args) < 2 {
			t.Fatal("no subcommand")
		}
		// `switchboard key create --tenant acme`: the flags of key create.
		sub := args[1]
		if len(args) > 2 && !strings.HasPrefix(args[2], "-") {
			sub += " " + args[2]
		}
		flags := fsets.of(sub)
		for _, a := range args[2:] {
			if name, ok := strings.CutPrefix(a, "--"); ok {
				name, _, _ = strings.Cut(name, "=")
				if _, ok := flags[name]; !ok {
					t.Errorf("--%s is not a flag of `switchboard %s`", name, sub)
				}
			}
		}
		if args[1] == "version" {
			var out bytes.Buffer
			if err := run(context.Background(), args[1:], &out, &out); err != nil || out.Len() == 0 {
				t.Errorf("%s: %v %q", line, err, out.String())
			}
		}
	case "promtool":
		shell(t, repoRoot, line, toolPath)
	case "curl":
		shell(t, repoRoot, strings.ReplaceAll(line, "http://127.0.0.1:8080", sysURL), toolPath)
	case "go", "node", "python3":
		runUntilListening(t, line, env)
	case "cd":
		// cd docs/examples/receiver-node && npm ci: make test runs it.
		d := args[1]
		if _, err := os.Stat(filepath.Join(repoRoot, d, "package-lock.json")); err != nil || !slices.Contains(args, "npm") {
			t.Errorf("%s: want `cd <dir with package-lock.json> && npm ci`: %v", line, err)
		}
		mk, _ := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
		if !bytes.Contains(mk, []byte(d)) {
			t.Errorf("the Makefile does not install %s", d)
		}
	case "docker", "kubectl", "helm":
		checkDeployCommand(t, args)
	case "sh":
		// sh deploy/gen-secrets.sh: TestNATSRoles and the deploy tests
		// run it.
		if len(args) < 2 || args[1] != "deploy/gen-secrets.sh" {
			t.Errorf("%s: no test runs it", line)
		}
	default:
		t.Errorf("no test runs or checks %q", line)
	}
}

// runUntilListening runs an example receiver's command from the repository
// root on a free port, and stops it once it says it listens.
func runUntilListening(t *testing.T, line string, env []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, args := splitEnv(line)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = repoRoot
	cmd.Env = append(append(os.Environ(), env...), "LISTEN="+addr, "PYTHONPATH="+pythonStandardWebhooks(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // go run starts a child: stop both
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()
	testenv.WaitFor(t, 60*time.Second, line+" listening", func() bool {
		select {
		case <-exited:
			t.Fatalf("%s exited:\n%s", line, out.String())
		default:
		}
		return strings.Contains(out.String(), "listening on "+addr)
	})
}

// checkDeployCommand checks a docker, kubectl or helm command of the docs:
// the files it names exist, and the services and deployments it scales are
// in them.
func checkDeployCommand(t *testing.T, args []string) {
	for i, a := range args {
		if a == "-f" && i+1 < len(args) {
			if _, err := os.Stat(filepath.Join(repoRoot, args[i+1])); err != nil {
				t.Errorf("names %s: %v", args[i+1], err)
			}
		}
	}
	switch {
	case args[0] == "docker" && slices.Contains(args, "--scale"):
		svc, _, _ := strings.Cut(args[slices.Index(args, "--scale")+1], "=")
		b, _ := os.ReadFile(filepath.Join(repoRoot, "deploy/compose.yaml"))
		if !bytes.Contains(b, []byte("\n  "+svc+":\n")) {
			t.Errorf("compose.yaml has no service %s", svc)
		}
	case args[0] == "kubectl" && slices.Contains(args, "scale"):
		i := slices.Index(args, "scale")
		if i+2 >= len(args) || args[i+1] != "deployment" {
			t.Fatalf("want kubectl scale deployment NAME")
		}
		b, _ := os.ReadFile(filepath.Join(repoRoot, "deploy/kubernetes/worker.yaml"))
		if !bytes.Contains(b, []byte("kind: Deployment\nmetadata:\n  name: "+args[i+2]+"\n")) {
			t.Errorf("deploy/kubernetes has no Deployment %s", args[i+2])
		}
	case args[0] == "docker" && args[1] == "build":
		if i := slices.Index(args, "-t"); i < 0 || i+1 >= len(args) || args[i+1] != switchboardImage {
			t.Errorf("docker build does not tag %s, the image the manifests run", switchboardImage)
		}
	case args[0] == "docker" && !slices.Contains(args, "-f"):
		t.Errorf("docker command without -f deploy/compose.yaml")
	case args[0] == "kubectl" && slices.Contains(args, "secret"):
		name := args[slices.Index(args, "generic")+1]
		var keys []string
		for _, a := range args {
			if lit, ok := strings.CutPrefix(a, "--from-literal="); ok {
				key, _, _ := strings.Cut(lit, "=")
				keys = append(keys, key)
			}
			if file, ok := strings.CutPrefix(a, "--from-file="); ok {
				key, path, _ := strings.Cut(file, "=")
				keys = append(keys, key)
				gen, _ := os.ReadFile(filepath.Join(repoRoot, "deploy/gen-secrets.sh"))
				if dir, base := filepath.Split(path); dir != "deploy/secrets/" || !bytes.Contains(gen, []byte(`"$out/`+base+`"`)) {
					t.Errorf("%s is not a file deploy/gen-secrets.sh makes", path)
				}
			}
		}
		if len(keys) == 0 {
			t.Errorf("secret %s has no keys", name)
		}
		var manifests []byte
		for _, f := range []string{"registry.yaml", "worker.yaml", "nats-values.yaml"} {
			b, _ := os.ReadFile(filepath.Join(repoRoot, "deploy/kubernetes", f))
			manifests = append(manifests, b...)
		}
		tlsSecret := bytes.Contains(manifests, []byte("secretName: "+name+"\n"))
		for _, key := range keys {
			ref := regexp.MustCompile(`name: ` + regexp.QuoteMeta(name) + `(\n\s+|, )key: ` + regexp.QuoteMeta(key) + `[\n}]`)
			// The NATS chart reads tls.crt, tls.key and ca.crt of the
			// secretName it is given.
			if !ref.Match(manifests) && !(tlsSecret && slices.Contains([]string{"tls.crt", "tls.key", "ca.crt"}, key)) {
				t.Errorf("deploy/kubernetes reads no key %q of a secret %s", key, name)
			}
		}
	}
}
