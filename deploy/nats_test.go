// Package deploy holds deployment files; its tests check them with the tools
// that will read them.
package deploy

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// The cluster files must parse as nats-server parses them, enable
// JetStream, and route to each other.
func TestNATSClusterConfig(t *testing.T) {
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
