// Package deploy holds deployment files; its tests check them with the tools
// that will read them.
package deploy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// secretsEnv runs gen-secrets.sh into a temporary folder and sets the
// environment the node files read, as compose and the docs do.
func secretsEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("sh", "gen-secrets.sh", dir).CombinedOutput(); err != nil {
		t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
	}
	t.Setenv("SB_NATS_TLS_CERT", filepath.Join(dir, "secrets", "nats.pem"))
	t.Setenv("SB_NATS_TLS_KEY", filepath.Join(dir, "secrets", "nats-key.pem"))
	t.Setenv("SB_NATS_TLS_CA", filepath.Join(dir, "secrets", "ca.pem"))
	b, err := os.ReadFile(filepath.Join(dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "SB_NATS_") {
			t.Setenv(k, v)
		}
	}
}

// The cluster files must parse as nats-server parses them, enable
// JetStream, route to each other, take clients and routes over TLS only,
// and let in only the users of auth.conf, each with permissions.
// cmd/switchboard's TestNATSRoles runs them and tries each permission.
func TestNATSClusterConfig(t *testing.T) {
	secretsEnv(t)
	files, err := filepath.Glob("nats/n*.conf")
	if err != nil || len(files) != 3 {
		t.Fatalf("want 3 node files, got %v (%v)", files, err)
	}
	var clusterPorts []string
	var routes [][]string
	names := map[string]bool{}
	for _, f := range files {
		opts, err := server.ProcessConfigFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !opts.JetStream {
			t.Errorf("%s: jetstream not enabled", f)
		}
		if opts.Cluster.Name != "switchboard" {
			t.Errorf("%s: cluster name %q", f, opts.Cluster.Name)
		}
		if names[opts.ServerName] {
			t.Errorf("%s: duplicate server_name %q", f, opts.ServerName)
		}
		names[opts.ServerName] = true
		if opts.TLSConfig == nil || opts.TLSConfig.ClientCAs == nil {
			t.Errorf("%s: clients connect without TLS", f)
		}
		if opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Errorf("%s: routes without TLS or without verified certificates", f)
		}
		users := map[string]bool{}
		for _, u := range opts.Users {
			users[u.Username] = true
			if u.Password == "" || u.Permissions == nil || u.Permissions.Publish == nil || len(u.Permissions.Publish.Allow) == 0 ||
				u.Permissions.Subscribe == nil || len(u.Permissions.Subscribe.Allow) == 0 {
				t.Errorf("%s: user %s without a password or without publish and subscribe allow lists", f, u.Username)
			}
			if u.Account == nil || u.Account.Name != "SWITCHBOARD" {
				t.Errorf("%s: user %s is not in account SWITCHBOARD", f, u.Username)
			}
		}
		if !users["registry"] || !users["worker"] || !users["producer-TENANT_ID"] || len(users) != 3 {
			t.Errorf("%s: users %v, want registry, worker and the producer template", f, users)
		}
		if opts.NoAuthUser != "" {
			t.Errorf("%s: clients without credentials are %s", f, opts.NoAuthUser)
		}
		if opts.MaxPayload < 1<<20 {
			t.Errorf("%s: max_payload %d is below 1 MiB", f, opts.MaxPayload)
		}
		clusterPorts = append(clusterPorts, fmt.Sprintf("%s:%d", opts.Cluster.Host, opts.Cluster.Port))
		var rs []string
		for _, r := range opts.Routes {
			rs = append(rs, r.Host)
		}
		slices.Sort(rs)
		routes = append(routes, rs)
	}
	slices.Sort(clusterPorts)
	for i, rs := range routes {
		if !slices.Equal(rs, clusterPorts) {
			t.Errorf("%s routes to %v, want every node's cluster address %v", files[i], rs, clusterPorts)
		}
	}
}
