package switchboard_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The package rules of docs/architecture.md ("Rules"), checked on the
// tree: who may import whom (go list -deps, test files excluded), who may
// build or read a NATS message, and the size of files and functions.

const module = "github.com/switchboard-hq/switchboard"

// pending are the findings the restructure (issue 13) has not yet removed,
// by file and rule. Each must still occur (so that the list only shrinks),
// and nothing else may.
var pending = map[string]bool{
	"consumer/deliver.go wire":                      true,
	"consumer/retrybatch_fire.go func deliverBatch": true,
	"consumer/retrybatch_fire.go wire":              true,
}

// findings collects a rule's findings, keyed as in pending.
type findings struct {
	t    *testing.T
	seen map[string]bool
}

func newFindings(t *testing.T) *findings { return &findings{t: t, seen: map[string]bool{}} }

func (f *findings) add(key, format string, args ...any) {
	f.seen[key] = true
	if !pending[key] {
		f.t.Errorf(format, args...)
	}
}

// done reports the pending entries of rule (a key suffix) that no longer occur.
func (f *findings) done(rule string) {
	for key := range pending {
		if strings.HasSuffix(key, " "+rule) || rule == "func" && strings.Contains(key, " func ") {
			if !f.seen[key] {
				f.t.Errorf("%s no longer occurs: delete it from pending", key)
			}
		}
	}
}

// deps returns the packages pkg depends on, tests excluded.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func packages(t *testing.T, pattern string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", pattern).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	return strings.Fields(string(out))
}

func TestLayout_Imports(t *testing.T) {
	for _, d := range deps(t, "./registry/store") {
		if strings.HasPrefix(d, "github.com/nats-io/") || d == "net/http" {
			t.Errorf("registry/store depends on %s: the store is SQLite only", d)
		}
	}
	for _, d := range deps(t, "./consumer/...") {
		if strings.HasPrefix(d, module+"/registry") {
			t.Errorf("consumer depends on %s: workers read webhooks from the KV mirror", d)
		}
	}
	for _, p := range packages(t, "./registry/...") {
		if slices.Contains(deps(t, p), module+"/consumer") {
			t.Errorf("%s depends on consumer: the registry makes no deliveries (the test send uses internal/outbound)", p)
		}
	}
	for _, d := range deps(t, "./signer") {
		if strings.HasPrefix(d, module+"/") && d != module+"/signer" {
			t.Errorf("signer depends on %s: it is a leaf receivers import", d)
		}
	}
}

// sourceFiles returns the module's non-test Go files, outside docs/ and
// the Grafana module.
func sourceFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch path {
			case "docs", "deploy/grafana", "bin", ".git":
				return filepath.SkipDir
			}
			if d.Name() == "testdata" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// wireNames are the identifiers that build or read a NATS message or its
// JetStream headers.
var wireNames = map[string][]string{
	"nats":      {"NewMsg", "Header"},
	"jetstream": {"MsgIDHeader", "ExpectedStreamHeader", "ScheduleHeader", "ScheduleTargetHeader", "ScheduleTTLHeader"},
}

// Only internal/streams builds or decodes a message: the other packages
// hand it domain values and get domain values back.
func TestLayout_OnlyStreamsTouchesMessages(t *testing.T) {
	found := newFindings(t)
	defer found.done("wire")
	fset := token.NewFileSet()
	for _, path := range sourceFiles(t) {
		if strings.HasPrefix(path, "internal/streams/") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.CompositeLit); ok {
				if sel, ok := lit.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Msg" {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == "nats" {
						found.add(path+" wire", "%s: nats.Msg{...}: only internal/streams builds messages", fset.Position(lit.Pos()))
					}
				}
			}
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && slices.Contains(wireNames[x.Name], sel.Sel.Name) {
				found.add(path+" wire", "%s: %s.%s: only internal/streams builds or reads messages", fset.Position(sel.Pos()), x.Name, sel.Sel.Name)
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "streams" && strings.HasPrefix(sel.Sel.Name, "Header") {
				found.add(path+" wire", "%s: streams.%s: read headers through internal/streams' decoders", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}

// No file over 400 lines, no function over 80 lines unless its comment
// says why with "(long: ...)".
func TestLayout_Sizes(t *testing.T) {
	found := newFindings(t)
	defer found.done("size")
	defer found.done("func")
	fset := token.NewFileSet()
	for _, path := range sourceFiles(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(src, []byte("\n")); n > 400 {
			found.add(path+" size", "%s: %d lines, over 400: split it by concept", path, n)
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			lines := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
			if lines > 80 && !strings.Contains(fn.Doc.Text(), "(long: ") {
				found.add(path+" func "+fn.Name.Name, "%s: func %s is %d lines, over 80, with no \"(long: why)\" in its comment", fset.Position(fn.Pos()), fn.Name.Name, lines)
			}
		}
	}
}

// The root package holds domain types and errors, no product data: its
// package-level variables are errors only.
func TestLayout_RootHoldsNoData(t *testing.T) {
	fset := token.NewFileSet()
	matches, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range matches {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				for i, v := range s.(*ast.ValueSpec).Values {
					if !isErrorsNew(v) {
						t.Errorf("%s: var %s is not an error: product data belongs in the store", fset.Position(v.Pos()), s.(*ast.ValueSpec).Names[i])
					}
				}
			}
		}
	}
}

// isErrorsNew reports whether e is a call errors.New(...).
func isErrorsNew(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == "errors" && sel.Sel.Name == "New"
}
