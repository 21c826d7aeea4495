package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	natsconf "github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// deployDir is deploy/ seen from this package.
const deployDir = "../../deploy"

// switchboardImage is the image deploy/Dockerfile builds and every manifest
// runs.
const switchboardImage = "switchboard:dev"

// helpFlags returns the flags `switchboard <sub> --help` lists, mapped to
// the environment variable it names for each: what a user reads, drawn from
// the real flag sets.
func helpFlags(t *testing.T, sub string) map[string]string {
	t.Helper()
	var helpOut bytes.Buffer
	if err := run(context.Background(), append(strings.Fields(sub), "--help"), &helpOut, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("%s --help: %v", sub, err)
	}
	re := regexp.MustCompile(`^\s+--([a-z0-9-]+)\s.*\[(SWITCHBOARD_[A-Z0-9_]+)\]$`)
	flags := map[string]string{}
	sc := bufio.NewScanner(&helpOut)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = m[2]
		}
	}
	return flags
}

// subcommands returns the subcommands `switchboard --help` lists.
func subcommands(t *testing.T) []string {
	t.Helper()
	var helpOut bytes.Buffer
	_ = run(context.Background(), []string{"--help"}, &helpOut, io.Discard)
	var subs []string
	in := false
	sc := bufio.NewScanner(&helpOut)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "SUBCOMMANDS":
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in:
			subs = append(subs, strings.Fields(line)[0])
		}
	}
	if len(subs) == 0 {
		t.Fatalf("switchboard --help lists no subcommand:\n%s", helpOut.String())
	}
	return subs
}

// flagSets gives each subcommand's flags, once.
type flagSets struct {
	t     *testing.T
	subs  []string
	cache map[string]map[string]string
}

func (f *flagSets) of(sub string) map[string]string {
	f.t.Helper()
	if fl, ok := f.cache[sub]; ok {
		return fl
	}
	var fl map[string]string
	if slices.Contains(f.subs, strings.Fields(sub)[0]) {
		fl = helpFlags(f.t, sub)
	} else {
		f.t.Errorf("switchboard has no subcommand %q (it has %v)", sub, f.subs)
		fl = map[string]string{}
	}
	f.cache[sub] = fl
	return fl
}

// container is what the checks need of a container running switchboard.
type container struct {
	where string
	args  []string          // subcommand and flags
	env   map[string]string // SWITCHBOARD_* only; value "" when from a secret
	ports []int             // ports the container declares
}

// check verifies that c's subcommand exists, each of its flags and
// SWITCHBOARD_* variables is one of that subcommand's, and the port it
// listens on is the one it declares. It returns the flags' values by name
// (flags win over the environment, as in the binary).
func (f *flagSets) check(c container) map[string]string {
	f.t.Helper()
	t := f.t
	if len(c.args) == 0 {
		t.Errorf("%s: no subcommand", c.where)
		return nil
	}
	sub := c.args[0]
	flags := f.of(sub)
	byEnv := map[string]string{}
	for name, env := range flags {
		byEnv[env] = name
	}
	values := map[string]string{}
	for env, v := range c.env {
		name, ok := byEnv[env]
		if !ok {
			t.Errorf("%s: %s is not a variable of `switchboard %s`", c.where, env, sub)
			continue
		}
		values[name] = v
	}
	for i := 1; i < len(c.args); i++ {
		a := c.args[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: argument %q is not a flag", c.where, a)
			continue
		}
		name, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if _, ok := flags[name]; !ok {
			t.Errorf("%s: --%s is not a flag of `switchboard %s`", c.where, name, sub)
			continue
		}
		if !hasValue && i+1 < len(c.args) && !strings.HasPrefix(c.args[i+1], "-") {
			i++
			v = c.args[i]
		}
		values[name] = v
	}
	listen, ok := values["listen"]
	if !ok {
		t.Errorf("%s: --listen is not set; its default, 127.0.0.1:8080, is unreachable from outside the container", c.where)
		return values
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Errorf("%s: listen %q: %v", c.where, listen, err)
		return values
	}
	if host != "0.0.0.0" && host != "" {
		t.Errorf("%s: listens on %s, unreachable from outside the container", c.where, listen)
	}
	if p, _ := strconv.Atoi(port); !slices.Contains(c.ports, p) {
		t.Errorf("%s: listens on port %s but declares %v", c.where, port, c.ports)
	}
	return values
}

// switchboardEnv keeps the SWITCHBOARD_* names of env.
func switchboardEnv(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if strings.HasPrefix(k, "SWITCHBOARD_") {
			out[k] = v
		}
	}
	return out
}

// natsServerVersion is the nats-server this binary embeds, e.g. "2.15.2".
func natsServerVersion(t *testing.T) string {
	t.Helper()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build info")
	}
	for _, m := range bi.Deps {
		if m.Path == "github.com/nats-io/nats-server/v2" {
			return strings.TrimPrefix(m.Version, "v")
		}
	}
	t.Fatal("nats-server is not a dependency")
	return ""
}

// checkNATSURL verifies that every server of a --nats-url is host:4222 with
// host among hosts.
func checkNATSURL(t *testing.T, where, natsURL string, hosts []string) {
	t.Helper()
	if natsURL == "" {
		t.Errorf("%s: no --nats-url", where)
	}
	for _, s := range strings.Split(natsURL, ",") {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "nats" {
			t.Errorf("%s: --nats-url server %q is not nats://host:port", where, s)
			continue
		}
		if !slices.Contains(hosts, u.Hostname()) || u.Port() != "4222" {
			t.Errorf("%s: --nats-url server %s is not one of %v on port 4222", where, u.Host, hosts)
		}
	}
}

func readYAML(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// Every YAML file under deploy/ parses.
func TestDeployFiles_YAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(deployDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); ext == ".yaml" || ext == ".yml" {
			n++
			if docs := readYAML(t, path); len(docs) == 0 {
				t.Errorf("%s holds no document", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("found %d YAML files under deploy/, want at least 10", n)
	}
}

// TestDeployFiles_Compose checks deploy/compose.yaml against the binary: the
// NATS nodes form one JetStream cluster as nats-server reads their flags and
// config files, and run the nats-server version this binary is tested with;
// every switchboard container uses only its subcommand's flags and
// variables, listens where it says, and finds NATS; Prometheus scrapes the
// ports the services listen on; Grafana's files exist.
func TestDeployFiles_Compose(t *testing.T) {
	fsets := &flagSets{t: t, subs: subcommands(t), cache: map[string]map[string]string{}}
	docs := readYAML(t, filepath.Join(deployDir, "compose.yaml"))
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Volumes     []string          `yaml:"volumes"`
			WorkingDir  string            `yaml:"working_dir"`
			Build       struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
		} `yaml:"services"`
	}
	remarshal(t, docs[0], &compose)
	image := readDockerfile(t)

	// The NATS cluster.
	natsVersion := natsServerVersion(t)
	var natsHosts []string
	for name, s := range compose.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			natsHosts = append(natsHosts, name)
		}
	}
	slices.Sort(natsHosts)
	if len(natsHosts) != 3 {
		t.Fatalf("compose runs NATS nodes %v, want 3", natsHosts)
	}
	serverNames := map[string]bool{}
	secrets := genSecrets(t)
	for _, name := range natsHosts {
		s := compose.Services[name]
		if tag := strings.TrimPrefix(s.Image, "nats:"); !strings.HasPrefix(tag, natsVersion) {
			t.Errorf("%s: image %s, want nats-server %s, the version the tests embed", name, s.Image, natsVersion)
		}
		setNATSEnv(t, name, s.Environment, s.Volumes, secrets)
		opts := natsOptions(t, name, s.Command, s.Volumes)
		if opts == nil {
			continue
		}
		checkNATSSecurity(t, name, opts)
		if !opts.JetStream || opts.Port != 4222 || opts.Host != "0.0.0.0" || opts.Cluster.Port != 6222 {
			t.Errorf("%s: jetstream %v, listen %s:%d, cluster port %d; want jetstream on 0.0.0.0:4222, cluster on 6222",
				name, opts.JetStream, opts.Host, opts.Port, opts.Cluster.Port)
		}
		if dir := filepath.Join(s.WorkingDir, opts.StoreDir); !slices.ContainsFunc(s.Volumes, func(v string) bool {
			src, dst, _ := strings.Cut(v, ":")
			return !strings.HasPrefix(src, ".") && strings.HasPrefix(dir, dst+"/")
		}) {
			t.Errorf("%s: JetStream's store %s (working dir %q) is not on a volume: %v", name, dir, s.WorkingDir, s.Volumes)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		slices.Sort(routes)
		var want []string
		for _, h := range natsHosts {
			want = append(want, h+":6222")
		}
		if !slices.Equal(routes, want) {
			t.Errorf("%s: routes %v, want %v", name, routes, want)
		}
		if serverNames[opts.ServerName] {
			t.Errorf("%s: server_name %q is another node's too", name, opts.ServerName)
		}
		serverNames[opts.ServerName] = true
	}

	// Switchboard's services.
	listenPorts := map[string]string{} // service -> port
	roles := map[string]bool{}
	for name, s := range compose.Services {
		if s.Image != switchboardImage {
			continue
		}
		if s.Build.Dockerfile == "" {
			t.Errorf("%s: no build for %s", name, s.Image)
		} else if _, err := os.Stat(filepath.Join(deployDir, s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: dockerfile: %v", name, err)
		}
		var ports []int
		for _, p := range s.Ports {
			_, cp, _ := strings.Cut(p, ":")
			n, _ := strconv.Atoi(cp)
			ports = append(ports, n)
		}
		// Inside the compose network a container's ports are those its
		// image exposes.
		values := fsets.check(container{where: "compose " + name, args: s.Command, env: switchboardEnv(s.Environment), ports: append(ports, image.exposed...)})
		checkNATSURL(t, "compose "+name, values["nats-url"], natsHosts)
		checkClientSecurity(t, "compose "+name, s.Command, values, func(path string) bool {
			return slices.ContainsFunc(s.Volumes, func(v string) bool {
				src, dst, _ := strings.Cut(strings.TrimSuffix(v, ":ro"), ":")
				return dst == path && strings.HasPrefix(src, "./secrets/")
			})
		})
		if values["stream-replicas"] != "3" {
			t.Errorf("compose %s: stream replicas %q on a 3-node cluster, want 3", name, values["stream-replicas"])
		}
		if _, p, err := net.SplitHostPort(values["listen"]); err == nil {
			listenPorts[name] = p
		}
		if len(s.Command) > 0 {
			roles[s.Command[0]] = true
		}
		if d := values["data-dir"]; d != "" && !slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+d) }) {
			t.Errorf("compose %s: data dir %s is not on a volume (%v)", name, d, s.Volumes)
		}
	}
	if !roles["registry"] || !roles["worker"] {
		t.Errorf("compose runs switchboard %v, want registry and worker", roles)
	}

	// Prometheus scrapes what runs.
	prom := compose.Services["prometheus"]
	if !slices.Contains(prom.Volumes, "./prometheus:/etc/prometheus:ro") {
		t.Errorf("prometheus does not mount deploy/prometheus: %v", prom.Volumes)
	}
	var pcfg struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	remarshal(t, readYAML(t, filepath.Join(deployDir, "prometheus/prometheus.yml"))[0], &pcfg)
	scraped := map[string]bool{}
	for _, sc := range pcfg.ScrapeConfigs {
		var targets []string
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				targets = append(targets, net.JoinHostPort(n, strconv.Itoa(d.Port)))
			}
		}
		for _, tg := range targets {
			host, port, _ := net.SplitHostPort(tg)
			if listenPorts[host] != port {
				t.Errorf("prometheus scrapes %s; that service listens on %q", tg, listenPorts[host])
			}
			scraped[host] = true
		}
	}
	for svc := range listenPorts {
		if !scraped[svc] {
			t.Errorf("prometheus does not scrape %s", svc)
		}
	}

	// Grafana's provisioning and dashboard are the files in deploy/grafana,
	// and its data source is the prometheus service.
	for _, v := range compose.Services["grafana"].Volumes {
		src, _, _ := strings.Cut(v, ":")
		if _, err := os.Stat(filepath.Join(deployDir, src)); err != nil {
			t.Errorf("grafana mounts %s: %v", src, err)
		}
	}
	var ds struct {
		Datasources []struct {
			UID string `yaml:"uid"`
			URL string `yaml:"url"`
		} `yaml:"datasources"`
	}
	remarshal(t, readYAML(t, filepath.Join(deployDir, "grafana/provisioning/datasources/prometheus.yaml"))[0], &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].URL != "http://prometheus:9090" || ds.Datasources[0].UID != "prometheus" {
		t.Errorf("grafana data sources %+v, want uid prometheus at http://prometheus:9090", ds.Datasources)
	}
	dash, err := os.ReadFile(filepath.Join(deployDir, "grafana/switchboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(dash, []byte(`"uid": "prometheus"`)) {
		t.Error("the dashboard does not use the provisioned data source (uid prometheus)")
	}
}

// genSecrets runs deploy/gen-secrets.sh into a temporary folder and
// returns it.
func genSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("sh", filepath.Join(deployDir, "gen-secrets.sh"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
	}
	return dir
}

// setNATSEnv sets what a compose NATS node's environment gives nats-server:
// paths under the mount of deploy/secrets become paths into secrets (what
// gen-secrets.sh made), ${VAR...} values come from its .env.
func setNATSEnv(t *testing.T, name string, env map[string]string, volumes []string, secrets string) {
	t.Helper()
	mount := ""
	for _, v := range volumes {
		if src, dst, _ := strings.Cut(strings.TrimSuffix(v, ":ro"), ":"); src == "./secrets" {
			mount = dst
		}
	}
	if mount == "" {
		t.Errorf("%s: deploy/secrets is not mounted", name)
	}
	dotEnv := readEnvFile(t, filepath.Join(secrets, ".env"))
	ref := regexp.MustCompile(`^\$\{([A-Z0-9_]+)(:\?.*)?\}$`)
	for k, v := range env {
		if m := ref.FindStringSubmatch(v); m != nil {
			val, ok := dotEnv[m[1]]
			if !ok {
				t.Errorf("%s: %s=%s: gen-secrets.sh does not write %s", name, k, v, m[1])
			}
			v = val
		} else if rest, ok := strings.CutPrefix(v, mount+"/"); ok && mount != "" {
			v = filepath.Join(secrets, "secrets", rest)
		}
		t.Setenv(k, v)
	}
}

// checkNATSSecurity checks that a node takes clients and routes over TLS
// only (routes showing a certificate of the CA), and authenticated clients
// only, each user with permissions.
func checkNATSSecurity(t *testing.T, name string, opts *server.Options) {
	t.Helper()
	if opts.TLSConfig == nil || opts.TLSConfig.ClientCAs == nil {
		t.Errorf("%s: clients connect without TLS", name)
	}
	if opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("%s: routes are not TLS with verified certificates", name)
	}
	if opts.NoAuthUser != "" {
		t.Errorf("%s: anonymous clients are %s", name, opts.NoAuthUser)
	}
	users := map[string]bool{}
	for _, u := range opts.Users {
		users[u.Username] = true
		if u.Permissions == nil || u.Permissions.Publish == nil || len(u.Permissions.Publish.Allow) == 0 {
			t.Errorf("%s: user %s may publish anything", name, u.Username)
		}
		if u.Password == "" {
			t.Errorf("%s: user %s has no password", name, u.Username)
		}
	}
	if !users["registry"] || !users["worker"] {
		t.Errorf("%s: users %v, want registry and worker", name, users)
	}
}

// checkClientSecurity checks that a switchboard container connects to NATS
// as the user of its role, over TLS with the CA at a path mounted (as
// mounted says) from the secrets, and seals secrets with an encryption key.
func checkClientSecurity(t *testing.T, where string, args []string, values map[string]string, mounted func(path string) bool) {
	t.Helper()
	if len(args) > 0 && values["nats-user"] != args[0] {
		t.Errorf("%s: NATS user %q, want %q (deploy/nats/auth.conf)", where, values["nats-user"], args[0])
	}
	if _, ok := values["nats-password"]; !ok {
		t.Errorf("%s: no NATS password", where)
	}
	if ca := values["nats-tls-ca"]; ca == "" || !mounted(ca) {
		t.Errorf("%s: NATS CA %q is not set or not mounted from the secrets", where, ca)
	}
	if _, ok := values["encryption-key"]; !ok {
		t.Errorf("%s: no --encryption-key: secrets would be stored in plaintext", where)
	}
}

// natsOptions returns a compose NATS node's options as nats-server reads
// its command line and the config file it names (a deploy/nats file mounted
// at /etc/nats).
func natsOptions(t *testing.T, name string, args, volumes []string) *server.Options {
	t.Helper()
	mount := ""
	for _, v := range volumes {
		if src, dst, _ := strings.Cut(strings.TrimSuffix(v, ":ro"), ":"); src == "./nats" {
			mount = dst
		}
	}
	if mount == "" {
		t.Errorf("%s: deploy/nats is not mounted", name)
		return nil
	}
	local := slices.Clone(args)
	for i, a := range local {
		if strings.HasPrefix(a, mount+"/") {
			local[i] = filepath.Join(deployDir, "nats", strings.TrimPrefix(a, mount+"/"))
		}
	}
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noop := func() {}
	opts, err := server.ConfigureOptions(fs, local, noop, noop, noop)
	if err != nil {
		t.Errorf("%s: nats-server %v: %v", name, args, err)
		return nil
	}
	return opts
}

// remarshal decodes a generic YAML document into out.
func remarshal(t *testing.T, doc any, out any) {
	t.Helper()
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// dockerfile is what the checks need of deploy/Dockerfile.
type dockerfile struct {
	env     map[string]string
	exposed []int
	goImage string // the build stage's golang image
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{env: map[string]string{}}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "ENV":
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				d.env[k] = v
			}
		case "EXPOSE":
			p, _ := strconv.Atoi(f[1])
			d.exposed = append(d.exposed, p)
		case "FROM":
			if strings.HasPrefix(f[1], "golang:") {
				d.goImage = f[1]
			}
		}
	}
	return d
}

// TestDeployFiles_Dockerfile checks that the image's defaults are serve's
// variables, that it exposes the port it listens on, and that it builds
// with the Go release this binary is built with.
func TestDeployFiles_Dockerfile(t *testing.T) {
	fsets := &flagSets{t: t, subs: subcommands(t), cache: map[string]map[string]string{}}
	d := readDockerfile(t)
	fsets.check(container{where: "Dockerfile", args: []string{"serve"}, env: switchboardEnv(d.env), ports: d.exposed})
	release := strings.Join(strings.SplitN(strings.TrimPrefix(runtime.Version(), "go"), ".", 3)[:2], ".")
	if !strings.HasPrefix(d.goImage, "golang:"+release) {
		t.Errorf("Dockerfile builds with %s; this binary is built with Go %s", d.goImage, release)
	}
}

// TestDeployFiles_Kubernetes checks deploy/kubernetes: every switchboard
// container against its subcommand's flags, the registry's data dir on a
// volume claim, each Service's selector and target port against the pods it
// selects, the ServiceMonitor against the Services, and the NATS chart's
// image against the nats-server version the tests embed.
func TestDeployFiles_Kubernetes(t *testing.T) {
	fsets := &flagSets{t: t, subs: subcommands(t), cache: map[string]map[string]string{}}
	files, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	type port struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	}
	type podSpec struct {
		Containers []struct {
			Name  string   `yaml:"name"`
			Image string   `yaml:"image"`
			Args  []string `yaml:"args"`
			Env   []struct {
				Name  string `yaml:"name"`
				Value string `yaml:"value"`
			} `yaml:"env"`
			Ports        []port `yaml:"ports"`
			VolumeMounts []struct {
				Name      string `yaml:"name"`
				MountPath string `yaml:"mountPath"`
			} `yaml:"volumeMounts"`
		} `yaml:"containers"`
		Volumes []struct {
			Name   string `yaml:"name"`
			Secret struct {
				SecretName string `yaml:"secretName"`
			} `yaml:"secret"`
		} `yaml:"volumes"`
	}
	type object struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			Selector map[string]any `yaml:"selector"` // Service: labels; workloads: matchLabels
			Ports    []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort any    `yaml:"targetPort"`
			} `yaml:"ports"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
			VolumeClaimTemplates []struct {
				Metadata struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
			} `yaml:"volumeClaimTemplates"`
			Endpoints []struct {
				Port string `yaml:"port"`
				Path string `yaml:"path"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	var objs []object
	natsValues := false
	for _, f := range files {
		for _, d := range readYAML(t, f) {
			if filepath.Base(f) == "nats-values.yaml" {
				natsValues = true
				checkNATSValues(t, d)
				continue
			}
			var o object
			remarshal(t, d, &o)
			if o.Kind == "" {
				t.Errorf("%s: a document without kind", f)
			}
			objs = append(objs, o)
		}
	}
	if !natsValues {
		t.Error("no nats-values.yaml for the NATS Helm chart")
	}

	matches := func(selector, labels map[string]string) bool {
		for k, v := range selector {
			if labels[k] != v {
				return false
			}
		}
		return len(selector) > 0
	}
	stringMap := func(m map[string]any) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if s, ok := v.(string); ok {
				out[k] = s
			}
		}
		return out
	}
	kinds := map[string]int{}
	roles := map[string]string{} // subcommand -> kind
	for _, o := range objs {
		kinds[o.Kind]++
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
			continue
		}
		where := o.Kind + " " + o.Metadata.Name
		if ml, _ := o.Spec.Selector["matchLabels"].(map[string]any); !matches(stringMap(ml), o.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: selector does not match its pods' labels", where)
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			if c.Image != switchboardImage {
				continue
			}
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			var ports []int
			for _, p := range c.Ports {
				ports = append(ports, p.ContainerPort)
			}
			values := fsets.check(container{where: where, args: c.Args, env: switchboardEnv(env), ports: ports})
			checkNATSURL(t, where, values["nats-url"], []string{"nats.switchboard.svc"})
			pod := o.Spec.Template.Spec
			checkClientSecurity(t, where, c.Args, values, func(path string) bool {
				for _, m := range c.VolumeMounts {
					for _, v := range pod.Volumes {
						if v.Name == m.Name && v.Secret.SecretName == "nats-tls" && strings.HasPrefix(path, m.MountPath+"/") {
							return true
						}
					}
				}
				return false
			})
			if values["stream-replicas"] != "3" {
				t.Errorf("%s: stream replicas %q, want 3", where, values["stream-replicas"])
			}
			if len(c.Args) > 0 {
				roles[c.Args[0]] = o.Kind
			}
			if d := values["data-dir"]; d != "" {
				onClaim := false
				for _, m := range c.VolumeMounts {
					for _, vct := range o.Spec.VolumeClaimTemplates {
						onClaim = onClaim || (m.MountPath == d && m.Name == vct.Metadata.Name)
					}
				}
				if !onClaim {
					t.Errorf("%s: data dir %s is not on a volume claim", where, d)
				}
			}
		}
	}
	if roles["registry"] != "StatefulSet" || roles["worker"] != "Deployment" {
		t.Errorf("roles run as %v, want registry in a StatefulSet and worker in a Deployment", roles)
	}
	if kinds["ServiceMonitor"] != 1 {
		t.Errorf("%d ServiceMonitors, want 1", kinds["ServiceMonitor"])
	}
	checkPrometheusRule(t)

	// Services select pods and name their ports; the ServiceMonitor selects
	// Services and names a port they have.
	var services []object
	for _, s := range objs {
		if s.Kind != "Service" {
			continue
		}
		services = append(services, s)
		var pods []podSpec
		for _, o := range objs {
			if (o.Kind == "Deployment" || o.Kind == "StatefulSet") && matches(stringMap(s.Spec.Selector), o.Spec.Template.Metadata.Labels) {
				pods = append(pods, o.Spec.Template.Spec)
			}
		}
		if len(pods) != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", s.Metadata.Name, len(pods))
			continue
		}
		for _, p := range s.Spec.Ports {
			found := false
			for _, c := range pods[0].Containers {
				for _, cp := range c.Ports {
					found = found || fmt.Sprint(p.TargetPort) == cp.Name || fmt.Sprint(p.TargetPort) == strconv.Itoa(cp.ContainerPort)
				}
			}
			if !found {
				t.Errorf("Service %s: target port %v is no port of its pods", s.Metadata.Name, p.TargetPort)
			}
		}
	}
	for _, sm := range objs {
		if sm.Kind != "ServiceMonitor" {
			continue
		}
		ml, _ := sm.Spec.Selector["matchLabels"].(map[string]any)
		selected := 0
		for _, s := range services {
			if !matches(stringMap(ml), s.Metadata.Labels) {
				continue
			}
			selected++
			for _, e := range sm.Spec.Endpoints {
				if !slices.ContainsFunc(s.Spec.Ports, func(p struct {
					Name       string `yaml:"name"`
					Port       int    `yaml:"port"`
					TargetPort any    `yaml:"targetPort"`
				}) bool {
					return p.Name == e.Port
				}) {
					t.Errorf("ServiceMonitor %s: Service %s has no port %q", sm.Metadata.Name, s.Metadata.Name, e.Port)
				}
				if e.Path != "/metrics" {
					t.Errorf("ServiceMonitor %s scrapes %q, want /metrics", sm.Metadata.Name, e.Path)
				}
			}
		}
		if selected != 2 {
			t.Errorf("ServiceMonitor %s selects %d Services, want the registry's and the workers'", sm.Metadata.Name, selected)
		}
	}
}

// checkNATSValues checks the NATS Helm chart values: a 3-node JetStream
// cluster on file storage, running the nats-server version the tests embed.
func checkNATSValues(t *testing.T, doc map[string]any) {
	t.Helper()
	var v struct {
		Config struct {
			Cluster struct {
				Enabled  bool `yaml:"enabled"`
				Replicas int  `yaml:"replicas"`
			} `yaml:"cluster"`
			JetStream struct {
				Enabled   bool `yaml:"enabled"`
				FileStore struct {
					Enabled bool `yaml:"enabled"`
				} `yaml:"fileStore"`
			} `yaml:"jetstream"`
		} `yaml:"config"`
		Container struct {
			Image struct {
				Tag string `yaml:"tag"`
			} `yaml:"image"`
		} `yaml:"container"`
	}
	remarshal(t, doc, &v)
	if !v.Config.Cluster.Enabled || v.Config.Cluster.Replicas != 3 || !v.Config.JetStream.Enabled || !v.Config.JetStream.FileStore.Enabled {
		t.Errorf("nats-values.yaml: %+v, want a 3-replica cluster with JetStream on file storage", v.Config)
	}
	var sec struct {
		Config struct {
			Cluster struct {
				TLS struct {
					Enabled    bool   `yaml:"enabled"`
					SecretName string `yaml:"secretName"`
					Merge      struct {
						Verify bool `yaml:"verify"`
					} `yaml:"merge"`
				} `yaml:"tls"`
			} `yaml:"cluster"`
			NATS struct {
				TLS struct {
					Enabled    bool   `yaml:"enabled"`
					SecretName string `yaml:"secretName"`
				} `yaml:"tls"`
			} `yaml:"nats"`
			Merge struct {
				Accounts any `yaml:"accounts"`
			} `yaml:"merge"`
		} `yaml:"config"`
		TLSCA struct {
			Enabled    bool   `yaml:"enabled"`
			SecretName string `yaml:"secretName"`
		} `yaml:"tlsCA"`
		Container struct {
			Env map[string]struct {
				ValueFrom struct {
					SecretKeyRef struct {
						Name string `yaml:"name"`
					} `yaml:"secretKeyRef"`
				} `yaml:"valueFrom"`
			} `yaml:"env"`
		} `yaml:"container"`
	}
	remarshal(t, doc, &sec)
	c := sec.Config
	if !c.NATS.TLS.Enabled || !c.Cluster.TLS.Enabled || !c.Cluster.TLS.Merge.Verify || !sec.TLSCA.Enabled ||
		c.NATS.TLS.SecretName != "nats-tls" || c.Cluster.TLS.SecretName != "nats-tls" || sec.TLSCA.SecretName != "nats-tls" {
		t.Errorf("nats-values.yaml: want TLS from the Secret nats-tls for clients and (verified) routes: %+v %+v", c, sec.TLSCA)
	}
	// The accounts are deploy/nats/auth.conf's, the passwords from a Secret.
	var placeholders []string
	for _, name := range []string{"SB_NATS_REGISTRY_PASSWORD", "SB_NATS_WORKER_PASSWORD", "SB_NATS_PRODUCER_PASSWORD"} {
		t.Setenv(name, "placeholder_"+name)
		placeholders = append(placeholders, "<< $"+name+" >>", "placeholder_"+name)
		if sec.Container.Env[name].ValueFrom.SecretKeyRef.Name == "" {
			t.Errorf("nats-values.yaml: %s does not come from a Secret", name)
		}
	}
	authConf, err := natsconf.ParseFile(filepath.Join(deployDir, "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	toJSON := func(v any) string {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.Encode(v) //nolint:errcheck // maps of strings
		return b.String()
	}
	want := toJSON(authConf["accounts"])
	if got := strings.NewReplacer(placeholders...).Replace(toJSON(c.Merge.Accounts)); got != want {
		t.Errorf("nats-values.yaml's accounts are not deploy/nats/auth.conf's; copy them over:\n got %s\nwant %s", got, want)
	}
	if want := natsServerVersion(t); !strings.HasPrefix(v.Container.Image.Tag, want) {
		t.Errorf("nats-values.yaml: image tag %q, want nats-server %s", v.Container.Image.Tag, want)
	}
}

// checkPrometheusRule checks that the PrometheusRule holds exactly the
// groups of deploy/prometheus/alerts.yml, the file promtool tests.
func checkPrometheusRule(t *testing.T) {
	t.Helper()
	var rule struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Groups any `yaml:"groups"`
		} `yaml:"spec"`
	}
	remarshal(t, readYAML(t, filepath.Join(deployDir, "kubernetes/prometheusrule.yaml"))[0], &rule)
	var alerts struct {
		Groups any `yaml:"groups"`
	}
	remarshal(t, readYAML(t, filepath.Join(deployDir, "prometheus/alerts.yml"))[0], &alerts)
	got, _ := yaml.Marshal(rule.Spec.Groups)
	want, _ := yaml.Marshal(alerts.Groups)
	if rule.Kind != "PrometheusRule" || !bytes.Equal(got, want) {
		t.Errorf("kubernetes/prometheusrule.yaml does not hold the groups of prometheus/alerts.yml; copy them over")
	}
}
