package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Tool returns the path of an external program a test runs (promtool,
// prometheus, node): from PATH, else from the bin folder at the module's
// root. When it is in neither the test fails, saying that `make test`
// installs it: a check that cannot run must not pass by skipping.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if root, err := ModuleRoot(); err == nil {
		p := filepath.Join(root, "bin", name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	tb.Fatalf("%s is neither in PATH nor in ./bin: `make test` installs it (or `make tools`)", name)
	return ""
}

// ModuleRoot returns the folder of the go.mod of Switchboard's main module,
// found from the working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isMainModule(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// isMainModule reports whether gomod is the main module's go.mod, not a
// nested module's (deploy/grafana has one).
func isMainModule(gomod []byte) bool {
	for line := range strings.Lines(string(gomod)) {
		if strings.TrimSpace(line) == "module github.com/switchboard-hq/switchboard" {
			return true
		}
	}
	return false
}
