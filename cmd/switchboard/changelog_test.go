package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/switchboard-hq/switchboard/registry/store"
)

// CHANGELOG.md names the registry schema of what main holds ("Unreleased")
// and of each release, newest first: a migration added without a line
// there fails here, and so does a release heading out of order or form.
func TestChangelog_NamesTheSchemaAndOrdersReleases(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile(`(?m)^## (.+)$`)
	unreleased := regexp.MustCompile(`^Unreleased \(registry schema (\d+)\)$`)
	release := regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+) \(\d{4}-\d{2}-\d{2}, registry schema (\d+)\)$`)
	hs := heading.FindAllStringSubmatch(string(b), -1)
	if len(hs) == 0 {
		t.Fatal("no ## heading in CHANGELOG.md")
	}
	m := unreleased.FindStringSubmatch(hs[0][1])
	if m == nil {
		t.Fatalf("first heading %q, want %q", hs[0][1], "Unreleased (registry schema N)")
	}
	if got, want := m[1], strconv.Itoa(store.SchemaVersion()); got != want {
		t.Errorf("Unreleased says registry schema %s, this binary migrates to %s: say what the new migration changes", got, want)
	}
	var prev [4]int
	for i, h := range hs[1:] {
		r := release.FindStringSubmatch(h[1])
		if r == nil {
			t.Errorf("heading %q is not \"vX.Y.Z (YYYY-MM-DD, registry schema N)\"", h[1])
			continue
		}
		var cur [4]int
		for j := range cur {
			cur[j], _ = strconv.Atoi(r[j+1])
		}
		if i > 0 && !(cur[0] < prev[0] || cur[0] == prev[0] && (cur[1] < prev[1] || cur[1] == prev[1] && cur[2] < prev[2])) {
			t.Errorf("release %q is listed after a later or equal one: newest first", h[1])
		}
		if i == 0 && cur[3] > store.SchemaVersion() {
			t.Errorf("release %q names a schema newer than this binary's %d", h[1], store.SchemaVersion())
		}
		prev = cur
	}
}
